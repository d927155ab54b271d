"""Will an int8 TFLite model run on a Coral Edge TPU? A static check of the flatbuffer, and the compiler's log.

The Edge TPU runs only fully 8-bit models with static shapes, one subgraph and ops from Coral's documented
list of supported operations. The compiler maps ops to the Edge TPU up to the first op it cannot map; that op
and every op after it run on the CPU. The static check here needs no compiler, so it runs anywhere (CI);
where ``edgetpu_compiler`` is installed (Debian/Ubuntu x86_64, see deploy/README.md) its log is parsed too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from keras_resnet.errors import KresError
from keras_resnet.fileio import ensure_writable_dir
from keras_resnet.quantize import TfliteInfo, inspect_tflite

# TFLite builtin ops the Edge TPU runs, after Coral's "Supported operations" table
# (coral.ai/docs/edgetpu/models-intro/#supported-operations), in TFLite schema names.
SUPPORTED_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN",
    "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT",
    "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM",
    "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
})
# The highest opcode version of each op that edgetpu_compiler 16.0 (2021, the last release) is known to parse.
# A newer version stops the compile before any mapping with "Didn't find op for builtin opcode 'X' version 'N'".
# From the rejections reported to Coral:
#   CONV_2D 6 (google-coral/edgetpu#631, TF 2.9 files; TF 2.8's up to 5 compiled), QUANTIZE 3 (per-channel
#   requantize, google-coral/edgetpu#879), TRANSPOSE_CONV 4 (google-coral/edgetpu#845), EXP 2
#   (google-coral/libedgetpu#71), REVERSE_V2 3 (google-coral/edgetpu#340), RSQRT 2 (google-coral/edgetpu#384,
#   compiler 15).
# The other entries are the versions that gave each op of Coral's supported list
# (coral.ai/docs/edgetpu/models-intro/#supported-operations) its int8 kernel, before the 2021 compiler: an
# inference, not a reported compile, so raise one only with a compiler log that shows it parsing. Our ResNet
# files carry CONV_2D 3, DEPTHWISE_CONV_2D 3, FULLY_CONNECTED 4, QUANTIZE 1, RESHAPE 1, ADD, PAD, MEAN,
# MAX_POOL_2D and SOFTMAX 2. A supported op missing from the table fails the check until it is added.
MAX_OP_VERSIONS = {
    "ADD": 2, "AVERAGE_POOL_2D": 2, "CONCATENATION": 2, "CONV_2D": 5, "DEPTHWISE_CONV_2D": 3, "EXP": 1,
    "EXPAND_DIMS": 1, "FULLY_CONNECTED": 4, "L2_NORMALIZATION": 2, "LOGISTIC": 2,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 2, "MAXIMUM": 2, "MAX_POOL_2D": 2, "MEAN": 2, "MINIMUM": 2, "MUL": 2,
    "PACK": 2, "PAD": 2, "PRELU": 1, "QUANTIZE": 2, "REDUCE_MAX": 2, "REDUCE_MIN": 2, "RELU": 2, "RELU6": 2,
    "RELU_N1_TO_1": 1, "RESHAPE": 1, "RESIZE_BILINEAR": 3, "RESIZE_NEAREST_NEIGHBOR": 3, "REVERSE_V2": 2,
    "RSQRT": 1, "SLICE": 2, "SOFTMAX": 2, "SPACE_TO_DEPTH": 2, "SPLIT": 2, "SQUEEZE": 1, "STRIDED_SLICE": 2,
    "SUB": 2, "SUM": 2, "SQUARED_DIFFERENCE": 1, "TANH": 2, "TRANSPOSE": 2, "TRANSPOSE_CONV": 3,
}
EIGHT_BIT = ("int8", "uint8")
COMPILER = "edgetpu_compiler"
MAPPED = "Mapped to Edge TPU"


@dataclass
class CompilerReport:
    """What ``edgetpu_compiler -s`` said: per-op mapping, and the ops left on the CPU."""

    ops: list[dict]  # {"op": "CONV_2D", "count": 20, "status": "Mapped to Edge TPU"}
    edgetpu_ops: int | None
    cpu_ops_total: int | None
    subgraphs: int | None
    output_model: str | None = None
    log: str = ""
    files: list[Path] = field(default_factory=list)  # what the compiler wrote: <name>_edgetpu.tflite and .log

    @property
    def cpu_ops(self) -> dict[str, int]:
        cpu: dict[str, int] = {}
        for row in self.ops:
            if row["status"] != MAPPED:
                cpu[row["op"]] = cpu.get(row["op"], 0) + row["count"]
        return cpu

    @property
    def all_on_edgetpu(self) -> bool:
        return not self.cpu_ops and not self.cpu_ops_total


@dataclass
class EdgeTpuReport:
    passed: bool
    problems: list[str]  # one line each; structural problems and ops that fall back to the CPU
    cpu_ops: dict[str, int]  # static check: op -> count of ops that would fall back to the CPU
    ops: dict[str, int]
    compiler: CompilerReport | None = None
    notes: list[str] = field(default_factory=list)
    structural: bool = False  # a problem other than CPU ops: --allow-cpu-ops does not waive it

    @property
    def files(self) -> list[Path]:
        """The files the compiler wrote (none when it did not run), for the export's file list."""
        return list(self.compiler.files) if self.compiler is not None else []

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.compiler is not None:
            data["compiler"]["cpu_ops"] = self.compiler.cpu_ops
            data["compiler"]["files"] = [path.name for path in self.compiler.files]  # beside the report
        return data


def check_requirements(content: bytes | TfliteInfo) -> EdgeTpuReport:
    """Check the Edge TPU's model requirements statically, from the flatbuffer alone."""
    info = content if isinstance(content, TfliteInfo) else inspect_tflite(content)
    problems: list[str] = []
    if info.subgraphs != 1:
        problems.append(f"{info.subgraphs} subgraphs: the Edge TPU runs a single subgraph")
    # a float32, float16 or dynamic-range file (float input) is no Edge TPU model at all: its weights' op versions
    # and float tensors' shapes got fixes that do not apply ("reshape [512, 3, 3, 512]": float16 weights)
    integer = all(t.dtype in EIGHT_BIT for t in info.inputs)
    problems += flatbuffer_problems(info) if integer else []
    activations = [t for t in info.tensors if not t.constant]
    sixteen = sorted({f"{t.dtype} {t.name}" for t in activations if t.dtype == "int16"})
    if sixteen:
        problems.append(f"{len(sixteen)} 16-bit activation tensors (e.g. {sixteen[0]}): the Edge TPU runs 8-bit "
                        "activations only: convert in int8 mode, not the 16x8 mode")
    wide = sorted({f"{t.dtype} {t.name}" for t in activations if t.dtype not in (*EIGHT_BIT, "int16")})
    if wide:
        fix = "quantize fully to int8" if integer else "the Edge TPU runs full-integer models: --quantize int8"
        problems.append(f"{len(wide)} non-8-bit activation tensors (e.g. {wide[0]}): {fix}")
    dynamic = [f"{t.name} {t.shape_signature}" for t in info.tensors if not t.static]
    if dynamic:
        problems.append(f"{len(dynamic)} tensors with a dynamic shape (e.g. {dynamic[0]}): convert with static "
                        "shapes (a fixed batch of 1 and a fixed image size)")
    for t in info.inputs:
        if not t.shape or t.shape[0] != 1:
            problems.append(f"input {t.name} has shape {t.shape}: the Edge TPU needs batch 1")
    # Coral: "if a tensor has more than 3 dimensions, only the 3 innermost may have a size greater than 1"
    too_deep = [f"{t.name} {t.shape}" for t in activations
                if integer and len(t.shape) > 3 and any(d != 1 for d in t.shape[:-3])]
    if too_deep:
        problems.append(f"{len(too_deep)} tensors have more than 3 dimensions larger than 1 (e.g. {too_deep[0]}): "
                        "the Edge TPU takes at most 3; reshape so only the 3 innermost are larger than 1")

    cpu_ops: dict[str, int] = {}
    for op in info.op_sequence:
        if op not in SUPPORTED_OPS:
            cpu_ops[op] = cpu_ops.get(op, 0) + 1
    notes = []
    structural = bool(problems)
    if cpu_ops:
        problems.append("ops the Edge TPU does not support (they run on the CPU): "
                        + ", ".join(f"{op} x{n}" for op, n in cpu_ops.items()))
        first = next(i for i, op in enumerate(info.op_sequence) if op not in SUPPORTED_OPS)
        later = len(info.op_sequence) - first - 1
        if later:
            notes.append(f"the compiler maps ops only up to the first unsupported one ({info.op_sequence[first]}, "
                         f"op #{first}); the {later} ops after it would run on the CPU too")
    return EdgeTpuReport(passed=not problems, problems=problems, cpu_ops=cpu_ops, ops=dict(info.ops), notes=notes,
                         structural=structural)


def flatbuffer_problems(info: TfliteInfo) -> list[str]:
    """What the compiler would reject in the op codes and weights: one line per op kind, naming op, version
    and fix."""
    problems = []
    for op, version in info.op_versions.items():
        known = MAX_OP_VERSIONS.get(op)
        if op in SUPPORTED_OPS and known is None:
            problems.append(f"{op} version {version}: not in this check's version table; add the highest "
                            "version edgetpu_compiler accepts to keras_resnet.edgetpu.MAX_OP_VERSIONS")
        elif known is not None and version > known:
            problems.append(f"{op} version {version}: edgetpu_compiler 16.0 parses {op} only up to version "
                            f"{known} and rejects the whole file; convert without the newer form of {op} (e.g. "
                            "an older TensorFlow or a plain int8 variant of the layer)")
    dense = [op.weights for op in info.operators if op.name == "FULLY_CONNECTED" and op.weights is not None
             and op.weights.per_channel]
    if dense:
        problems.append(f"FULLY_CONNECTED x{len(dense)} with per-channel weights ({len(dense[0].scale)} scales in "
                        f"{dense[0].name}): Coral takes only the default (per-tensor) format; export without "
                        "--per-channel-dense")
    requant = [out for op in info.operators if op.name == "QUANTIZE" for out in op.outputs if out.per_channel]
    if requant:
        problems.append(f"QUANTIZE x{len(requant)} with a per-channel output ({len(requant[0].scale)} scales in "
                        f"{requant[0].name}): the Edge TPU takes per-tensor activations only; quantize "
                        "activations per-tensor (the default int8 mode)")
    return problems


_ROW = re.compile(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")


def parse_compiler_log(text: str) -> CompilerReport:
    """Parse the summary and the operation table that ``edgetpu_compiler -s`` prints."""

    def number(label: str) -> int | None:
        match = re.search(rf"{label}:\s*(\d+)", text)
        return int(match.group(1)) if match else None

    ops, in_table = [], False
    for line in text.splitlines():
        if re.match(r"^\s*Operator\s+Count\s+Status\s*$", line):
            in_table = True
            continue
        if in_table:
            match = _ROW.match(line.strip())
            if match:
                ops.append({"op": match.group(1), "count": int(match.group(2)), "status": match.group(3)})
            elif line.strip() and ops:
                in_table = False
    output = re.search(r"Output model:\s*(\S+)", text)
    return CompilerReport(
        ops=ops,
        edgetpu_ops=number("Number of operations that will run on Edge TPU"),
        cpu_ops_total=number("Number of operations that will run on CPU"),
        subgraphs=number("Number of Edge TPU subgraphs"),
        output_model=output.group(1) if output else None,
        log=text,
    )


def compiler_available() -> bool:
    return shutil.which(COMPILER) is not None


def run_compiler(tflite_path: str | Path, output_dir: str | Path, timeout_s: int = 600,
                 shown_dir: str | Path | None = None) -> CompilerReport:
    """Run ``edgetpu_compiler -s`` on ``tflite_path``; writes ``<name>_edgetpu.tflite`` and its ``.log`` into
    ``output_dir`` and lists them in the report's ``files``. The paths in its log and report name ``shown_dir``
    where the files will be (an export writes them into a staging folder first)."""
    exe = shutil.which(COMPILER)
    if exe is None:
        raise KresError(f"{COMPILER} is not on PATH: install it from Coral's apt repository (see deploy/README.md)")
    output_dir = ensure_writable_dir(output_dir)
    # The compiler writes straight to its output names: compile into a temporary folder beside them and move
    # the results in when it succeeds, so an interrupted compile leaves no half-written model.
    shown = str(shown_dir or output_dir)
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".edgetpu-") as tmp:

        def named(text: str) -> str:  # (tmp is inside output_dir)
            return text.replace(tmp, shown).replace(str(output_dir), shown)

        result = _compile(exe, tflite_path, tmp, timeout_s)
        text = named(result.stdout + result.stderr)
        if result.returncode != 0:
            last = next((line for line in reversed(text.splitlines()) if line.strip()), "no output")
            raise KresError(f"{COMPILER} failed (exit {result.returncode}): {last.strip()}")
        files = []
        for produced in sorted(Path(tmp).iterdir()):
            if produced.suffix == ".log":
                produced.write_text(named(produced.read_text(errors="replace")))
            files.append(output_dir / produced.name)
            os.replace(produced, files[-1])
    report = parse_compiler_log(text)
    report.files = files
    return report


def _compile(exe: str, tflite_path: str | Path, out: str, timeout_s: int) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([exe, "-s", "-o", out, str(tflite_path)], capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise KresError(f"{COMPILER} did not finish within {timeout_s} s on {Path(tflite_path).name}: check that "
                        f"`{COMPILER} --version` runs, or export without --edgetpu") from None
    except OSError as err:  # not executable, or built for another machine (it is x86_64 Linux only)
        raise KresError(f"{COMPILER} at {exe} could not run ({err.strerror or err}): reinstall it from Coral's "
                        "apt repository on x86_64 Linux (see deploy/README.md)") from None


def check(tflite_path: str | Path, output_dir: str | Path, allow_cpu_ops: bool = False,
          use_compiler: bool | None = None, shown_dir: str | Path | None = None) -> EdgeTpuReport:
    """Static check, then the compiler when installed (its files into ``output_dir``, its paths named as in
    ``shown_dir``); raise KresError when an op would run on the CPU."""
    tflite_path = Path(tflite_path)
    report = check_requirements(tflite_path.read_bytes())
    if use_compiler is None:
        use_compiler = compiler_available()
    if use_compiler:
        report.compiler = run_compiler(tflite_path, output_dir, shown_dir=shown_dir)
        if not report.compiler.all_on_edgetpu:
            cpu = ", ".join(f"{op} x{n}" for op, n in report.compiler.cpu_ops.items()) or "see the log"
            report.problems.append(f"{COMPILER} maps {report.compiler.cpu_ops_total} ops to the CPU: {cpu}")
            report.passed = False
    else:
        report.notes.append(f"{COMPILER} not on PATH: static check only")
    if report.structural or (not report.passed and not allow_cpu_ops):
        raise KresError("model is not fully Edge TPU compatible: " + "; ".join(report.problems)
                        + ("" if report.structural else " (pass --allow-cpu-ops to export anyway)"))
    return report
