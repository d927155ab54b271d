"""What every benchmark shares: timing, the machine's description, and writing results."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from keras_resnet import fileio

RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def machine() -> dict:
    """CPU model, core count and accelerator, so a figure is never quoted without its machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "accelerator": "none"}
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        if gpu.returncode == 0 and gpu.stdout.strip():
            info["accelerator"] = gpu.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


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


def write_results(name: str, payload: dict, table: str, results_dir: str | os.PathLike | None = None) -> Path:
    """Write ``<name>.json`` and ``<name>.md`` atomically; return the JSON path."""
    out = Path(results_dir) if results_dir else RESULTS_DIR
    fileio.ensure_writable_dir(out)
    fileio.write_json(out / f"{name}.json", payload)
    fileio.write_text(out / f"{name}.md", table)
    return out / f"{name}.json"
