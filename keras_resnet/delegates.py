"""Which TFLite delegates take an exported file, each answered by a check that ran on the file itself.

* XNNPACK: the file is loaded by the LiteRT interpreter (which applies XNNPACK by default) and invoked once;
  the delegate's partitions say which ops it took.
* GPU: TFLite's model analyzer with ``gpu_compatibility=True`` (:func:`keras_resnet.quantize.gpu_compatibility`).
* NNAPI: the op list of the NNAPI delegate and its per-channel rule: NNAPI has per-channel weights
  (TENSOR_QUANT8_SYMM_PER_CHANNEL) only as the filter of its convolutions.
* Edge TPU: the static check of :mod:`keras_resnet.edgetpu`, and the compiler's verdict where it ran.
"""

from __future__ import annotations

import numpy as np

from keras_resnet import _compat
from keras_resnet.quantize import TfliteInfo

# TFLite builtins the NNAPI delegate maps for 8-bit models: a conservative subset of what its validator
# (tensorflow/lite/delegates/nnapi/nnapi_delegate.cc) accepts up to NNAPI 1.3; not checked against a device.
NNAPI_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "FULLY_CONNECTED",
    "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PAD",
    "PRELU", "QUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR",
    "SOFTMAX", "SPACE_TO_DEPTH", "SQUEEZE", "STRIDED_SLICE", "SUB", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
})
NNAPI_PER_CHANNEL_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"})


def xnnpack(content: bytes) -> dict:
    """Run the file once under the default (XNNPACK) interpreter: the ops XNNPACK took and those it left."""
    from keras_resnet.runtime import tflite_interpreter

    interpreter = tflite_interpreter(content)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    ops = _ops_details(interpreter)
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    plain = [op for op in ops if op["op_name"] != "DELEGATE"]
    taken = _delegated(plain, delegates)
    left: dict[str, int] = {}
    for index, op in enumerate(plain):
        if index not in taken:
            left[op["op_name"]] = left.get(op["op_name"], 0) + 1
    # XNNPACK leaves what it has no kernel for (int8 SOFTMAX, the uint8 <-> int8 QUANTIZE ends) to LiteRT's own
    # kernels in the same interpreter: the file still runs, so those are reported, not a rejection.
    return {"accepts": bool(delegates), "partitions": len(delegates), "ops_delegated": len(taken),
            "ops": len(plain), "builtin_kernel_ops": left,
            "check": "invoked once with the LiteRT interpreter's default XNNPACK delegate"}


def _ops_details(interpreter) -> list[dict]:
    # The interpreter's only view of the nodes after delegation (LiteRT 2.x); DELEGATE entries are the
    # delegate's partitions, listed after the model's own ops.
    return list(_compat.interpreter_ops(interpreter))


def _delegated(plain: list[dict], delegates: list[dict]) -> set[int]:
    """Indices of the model's ops inside a delegate partition: walked back from the partition's outputs to
    its inputs."""
    producer = {int(t): i for i, op in enumerate(plain) for t in op["outputs"]}
    taken: set[int] = set()
    for partition in delegates:
        stop = {int(t) for t in partition["inputs"]}
        todo = [int(t) for t in partition["outputs"]]
        while todo:
            tensor = todo.pop()
            index = producer.get(tensor)
            if tensor in stop or index is None or index in taken:
                continue
            taken.add(index)
            todo += [int(t) for t in plain[index]["inputs"] if t >= 0]
    return taken


def nnapi(info: TfliteInfo) -> dict:
    """NNAPI's op list and per-channel rule, read from the flatbuffer."""
    problems = []
    missing = sorted(set(info.op_sequence) - NNAPI_OPS)
    if missing:
        problems.append(f"ops the NNAPI delegate does not map: {', '.join(missing)}")
    per_channel = sorted({op for op, how in info.weight_quantization().items()
                          if how != "per-tensor" and op not in NNAPI_PER_CHANNEL_OPS})
    if per_channel:
        integer = all(t.dtype in ("int8", "uint8") for t in info.inputs)  # else dynamic range: per-channel always
        fix = "export without --per-channel-dense" if integer else "a --quantize int8 or float16 file runs there"
        problems.append(f"per-channel weights in {', '.join(per_channel)}: NNAPI takes them only in convolutions; "
                        + fix)
    signed = any(t.dtype == "int8" for t in info.tensors if not t.constant)
    return {"accepts": not problems, "problems": problems,
            "check": "the NNAPI delegate's op list and per-channel rule, read from the flatbuffer",
            "note": "signed int8 tensors need NNAPI 1.3 (Android 11) or later" if signed else None}


def edgetpu_support(report: dict | None, info: TfliteInfo) -> dict:
    """The Edge TPU check that the export ran (``report``), else the static check run here."""
    from keras_resnet import edgetpu

    if report is None:
        report = edgetpu.check_requirements(info).to_dict()
    compiler = report.get("compiler")
    return {"accepts": bool(report["passed"]), "problems": report["problems"],
            "check": "static check of the flatbuffer" + (" and edgetpu_compiler's log" if compiler else
                                                         " (edgetpu_compiler did not run)"),
            "compiler_log": compiler["log"] if compiler else None}


def support(content: bytes, info: TfliteInfo, gpu: tuple[bool, str], edgetpu_report: dict | None) -> dict:
    """Every delegate's verdict on an exported file, each with the check that gave it."""
    gpu_ok, gpu_text = gpu
    return {"xnnpack": xnnpack(content),
            "gpu": {"accepts": gpu_ok, "check": "TFLite model analyzer, gpu_compatibility=True", "remarks": gpu_text},
            "nnapi": nnapi(info),
            "edgetpu": edgetpu_support(edgetpu_report, info)}
