"""What every benchmark shares: timing, the machine's description, and writing results."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from keras_resnet import cpu, fileio
from keras_resnet.errors import KresError, counted


def results_home(package_root: Path) -> Path:
    """Where results go: ``benchmarks/results`` of the source checkout that ``package_root`` (the folder holding
    ``keras_resnet``) is, as with ``pip install -e .``; for an installed package, ``benchmarks/results`` in the
    working directory, not in site-packages."""
    if (package_root / "pyproject.toml").is_file() and (package_root / "benchmarks").is_dir():
        return package_root / "benchmarks" / "results"
    return Path("benchmarks") / "results"


RESULTS_DIR = results_home(Path(__file__).resolve().parents[2])


def machine() -> dict:
    """CPU model, vector ISA, oneDNN, core count and accelerator, so a figure is never quoted without its machine."""
    info = {**cpu.describe(), "cores": os.cpu_count(), "python": platform.python_version(), "accelerator": "none"}
    if "tensorflow" in sys.modules and cpu.is_x86():  # the switch TensorFlow actually read at import
        from keras_resnet import _compat

        info["onednn"] = _compat.tensorflow_onednn_enabled()
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        if gpu.returncode == 0 and gpu.stdout.strip():
            info["accelerator"] = gpu.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def machine_line(info: dict, load: tuple[float, ...] | None = None,
                 load_before: tuple[float, ...] | None = None) -> str:
    """``AMD EPYC (family 25 model 17; AVX2, FMA, AVX-512, VNNI, BF16; oneDNN on), 2 cores, no GPU`` for tables
    and titles.

    Kernel ISA caps, when set, follow oneDNN: ``...; oneDNN on; kernels capped: ONEDNN_MAX_CPU_ISA=AVX2), ...``.
    With ``load`` (``os.getloadavg()`` when the measuring ended): ``... no GPU (load average 1.0 at the end)``;
    with ``load_before`` too: ``... (load average 0.2 at the start, 1.0 at the end)``.
    """
    isa = ", ".join(info.get("isa") or []) or "no vector ISA read"
    onednn = "on" if info.get("onednn") else "off"
    caps = info.get("kernel_isa_caps") or {}
    if caps:  # a capped run stands for an older CPU, and must never read as this one's full speed
        onednn += "; kernels capped: " + ", ".join(f"{name}={value}" for name, value in caps.items())
    gpu = "no GPU" if info.get("accelerator") in (None, "none") else info["accelerator"]
    start = f"{load_before[0]:.1f} at the start, " if load and load_before else ""
    busy = f" (load average {start}{load[0]:.1f} at the end)" if load else ""
    generation = f"{info['generation']}; " if info.get("generation") else ""
    return f"{info['cpu']} ({generation}{isa}; oneDNN {onednn}), {info['cores']} cores, {gpu}{busy}"


def synthetic_batch(batch_size: int, image_size: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random batch (seed 0): raw float32 pixels in [0, 255] and one-hot float32 labels."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    y = np.eye(num_classes, dtype="float32")[rng.integers(0, num_classes, batch_size)]
    return x, y


def images_per_second(step: Callable[[], object], batch_size: int, steps: int, warmup: int,
                      sync: Callable[[], object]) -> float:
    """Images/s of ``steps`` calls of ``step`` after ``warmup`` untimed ones; ``sync`` waits for the device."""
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch_size * steps / (time.perf_counter() - start)


def warmed_up(step: Callable[[], object], batch_size: int, steps: int, warmup: int, sync: Callable[[], object],
              context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
              after: Callable[[], object] = lambda: None) -> Callable[[], float]:
    """Warm ``step`` up (``warmup`` untimed steps: compilation happens here) and return its round: images/s of
    ``steps`` timed steps after one untimed one, as other models' rounds ran in between. Each runs inside
    ``context()``; ``after()`` follows the warm-up and each round (a GPU peer hands its cached memory back)."""
    with context():
        for _ in range(warmup):
            step()
        sync()
    after()

    def one_round() -> float:
        with context():
            rate = images_per_second(step, batch_size, steps, 1, sync)
        after()
        return rate

    return one_round


def take_turns(rounds: dict, count: int, on_round: Callable[[int], object] = lambda number: None) -> tuple[dict, dict]:
    """Call each of ``rounds`` (key -> a round, which returns images/s) in turn, ``count`` times, the order
    flipping every time, so that a shared machine's busy minute falls on all of them; ``on_round(n)`` first, n from 1.
    Returns (key -> every rate, key -> the exception that ended it); a round that raises is not called again, and
    its rates so far are kept."""
    if count < 1:
        raise KresError(f"rounds must be 1 or more, not {count}")
    rates, errors = {key: [] for key in rounds}, {}
    for number in range(count):
        on_round(number + 1)
        for key in (list(rounds) if number % 2 == 0 else list(reversed(rounds))):
            if key in errors:
                continue
            try:
                rates[key].append(rounds[key]())
            except Exception as err:
                errors[key] = err
    return rates, errors


UNSTABLE_SPREAD = 2.0  # a model's fastest round this many times its slowest: the machine was not steady


def trust_warning(rounds: list[tuple[str, list[float]]], load_before: tuple[float, ...], load: tuple[float, ...],
                  cores: int) -> str | None:
    """One line where a run's ratios are not to be trusted, else None: some model's rounds (label, images/s of
    each round) more than ``UNSTABLE_SPREAD`` times apart, or the load average (``os.getloadavg()``) above the
    core count at the start, or above it by more than one at the end: the benchmark's own threads keep every core
    busy, so a 1-minute average of 2.1 at the end on 2 cores is the benchmark itself. On a shared machine a peer's
    threads can lose the CPU for whole rounds, and a ratio of medians then says nothing about the code."""
    reasons = []
    spread = [(label, max(rates) / min(rates)) for label, rates in rounds if len(rates) > 1 and min(rates) > 0]
    unstable = [f"{label} differ {ratio:.1f}x" for label, ratio in spread if ratio > UNSTABLE_SPREAD]
    if unstable:
        reasons.append("the rounds of " + ", ".join(unstable))
    busy = [at[0] for at, limit in ((load_before, cores), (load, cores + 1)) if at and at[0] > limit]
    if busy:
        reasons.append(f"the load average {max(busy):.1f} exceeded the {counted(cores, 'core')}")
    if not reasons:
        return None
    return "Warning: " + " and ".join(reasons) + ": the ratios are not to be trusted; rerun on an idle machine"


def rounds_phrase(rounds: int, steps: int, step: str = "timed step") -> str:
    """``the median of 3 alternating rounds of 10 timed steps``, or ``one round of 1 timed step``."""
    return (f"the median of {rounds} alternating rounds" if rounds > 1 else "one round") + f" of {counted(steps, step)}"


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def markdown_table(columns: list[str], rows: list[dict]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def write_results(name: str, payload: dict, table: str, results_dir: str | os.PathLike | None = None,
                  measured: bool = True) -> Path:
    """Write ``<name>.json`` and ``<name>.md`` atomically; return the JSON path. A run that measured nothing of
    ours (every row an error) writes ``<name>-failed.*`` instead, leaving the results of an earlier run whole."""
    out = Path(results_dir) if results_dir else RESULTS_DIR
    fileio.ensure_writable_dir(out)
    if not measured:
        name = f"{name}-failed"
    fileio.write_json(out / f"{name}.json", payload)
    fileio.write_text(out / f"{name}.md", table)
    return out / f"{name}.json"


def nothing_measured(result_file: str | os.PathLike) -> KresError:
    """The error of a run whose every measurement of ours failed, once its rows are written and shown."""
    failed = Path(result_file)
    kept = failed.with_name(failed.name.replace("-failed.json", ".json"))
    return KresError(f"no measurement of ours succeeded (the error column above says why); the rows are in "
                     f"{failed}" + (f", and {kept.name} is left as it was" if kept.is_file() else ""))
