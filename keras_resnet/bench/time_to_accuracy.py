"""Time to accuracy: wall seconds for ``kres train`` (the real CLI, in a fresh process) on the built-in digits to
reach a validation top-1 target.

The clock starts when the process is launched, so Python and TensorFlow start-up, data loading and model
building count, as they do for a user. ``history.csv`` is polled while training runs (it is rewritten atomically
at every epoch's end); the first epoch whose ``val_accuracy`` reaches the target stops the clock, and by default
the run is then ended early. The epochs' own ``epoch_time_s`` (written by the training loop) give the time spent
in training proper.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from keras_resnet import runs
from keras_resnet.bench.common import machine, machine_line, markdown_table, write_results
from keras_resnet.errors import KresError
from keras_resnet.specs import depth_spec

POLL_S = 0.1


@dataclass
class Config:
    depth: int = 18
    target: float = 0.97  # validation top-1
    train_args: tuple[str, ...] = ()  # more `kres train` options; default: the digits recipe unchanged
    stop_at_target: bool = True  # end the run once the target is reached
    timeout_s: float = 1800.0
    output: str | None = None  # run directory to keep; default: a temporary one, removed afterwards
    results_name: str = "time_to_accuracy"


# `kres train`'s options the benchmark passes itself (train_command), under the benchmark's own option: after `--`
# they were passed twice, and the later won (`-- --depth 50` trained ResNet-50 under a ResNet-18 title).
OWN_TRAIN_OPTIONS = {"--depth": "--depth", "--output": "--output", "-o": "--output"}


def own_option(arg: str) -> str | None:
    """The benchmark's option that ``arg`` (one of the arguments after ``--``) would set again, or None."""
    name = arg.split("=", 1)[0]
    if name in OWN_TRAIN_OPTIONS:
        return OWN_TRAIN_OPTIONS[name]
    return "--output" if arg.startswith("-o") else None  # -orun


def first_reaching(rows: list[dict], target: float) -> dict | None:
    """The first history row whose ``val_accuracy`` is at least ``target``."""
    return next((r for r in rows if r.get("val_accuracy", -1.0) >= target), None)


def train_command(cfg: Config, run_dir: Path) -> list[str]:
    launcher = "import sys; from kres.main import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", launcher, "train", "--depth", str(cfg.depth), "--output", str(run_dir),
            *cfg.train_args]


def epoch_line(row: dict, seconds: float) -> str:
    """``epoch 3: validation top-1 95.00% (41 s since launch)``: one line of progress per epoch the run writes."""
    accuracy = row.get("val_accuracy")
    shown = f"{accuracy:.2%}" if isinstance(accuracy, float) else "not measured"
    return f"epoch {row.get('epoch')}: validation top-1 {shown} ({seconds:.0f} s since launch)"


def time_training(cfg: Config, run_dir: Path, log_path: Path,
                  say: Callable[[str], object] = lambda line: None) -> dict:
    """Launch ``kres train``, watch ``history.csv``; return the timings and the history seen. ``say`` gets a line
    at the launch and for each epoch as its row appears."""
    from keras_resnet.callbacks import read_history

    history = run_dir / "history.csv"
    command = train_command(cfg, run_dir)
    say(f"launching kres {' '.join(command[3:])} (its output: {log_path})")
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ,
                                "TF_CPP_MIN_LOG_LEVEL": "2"})
        reached_s, seen_mtime, rows = None, None, []
        try:
            while True:
                finished = proc.poll() is not None
                mtime = history.stat().st_mtime_ns if history.is_file() else None
                if mtime != seen_mtime:
                    seen_mtime, seen, rows = mtime, len(rows), read_history(history)
                    for row in rows[seen:]:
                        say(epoch_line(row, time.perf_counter() - start))
                    if reached_s is None and first_reaching(rows, cfg.target):
                        reached_s = time.perf_counter() - start
                        if cfg.stop_at_target:
                            say(f"reached {cfg.target:.2%}: ending the run")
                            break
                if finished:
                    break
                if time.perf_counter() - start > cfg.timeout_s:
                    raise KresError(f"kres train ran past --timeout {cfg.timeout_s:.0f} s; see {log_path}")
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        total_s = time.perf_counter() - start
    if proc.returncode not in (0, None) and reached_s is None:
        tail = log_path.read_text().strip().splitlines()[-1:] or ["no output"]
        raise KresError(f"kres train failed (exit {proc.returncode}): {tail[0]}")
    return {"reached_s": reached_s, "process_s": total_s, "rows": rows, "command": command[3:]}


SHOWN_SETTINGS = ("epochs", "batch_size", "image_size", "optimizer", "lr", "warmup_epochs", "weight_decay",
                  "label_smoothing", "ema", "seed")


def train_settings(run_dir: Path) -> dict | None:
    """What the run trained with, from its ``config.json`` (the recipe filled in): a result names its recipe even
    when the recipe's defaults change later."""
    config = runs.read_config(run_dir)
    if config is None:
        return None
    train = {k: v for k, v in config.get("train", {}).items() if k != "output"}
    data = {k: v for k, v in config.get("data", {}).items() if k not in ("data_dir", "tfds_dir")}
    return {"recipe": config.get("recipe"), **train, "data": data, "resolved": config.get("resolved")}


def settings_line(settings: dict) -> str:
    shown = ", ".join(f"{k} {settings[k]:g}" if isinstance(settings[k], float) else f"{k} {settings[k]}"
                      for k in SHOWN_SETTINGS if k in settings)
    return f"Recipe {settings.get('recipe')}: {shown}."


def shown_command(cfg: Config) -> str:
    """The ``kres train`` command the run was, for a title: its options, less a temporary run folder's path."""
    output = ["--output", str(cfg.output)] if cfg.output else []
    return " ".join(["kres", "train", "--depth", str(cfg.depth), *output, *cfg.train_args])


def _data_phrase(cfg: Config) -> str:
    """`` on the built-in digits`` unless the options name other data."""
    named = any(arg.split("=")[0] in ("--dataset", "--data-dir") for arg in cfg.train_args)
    return "" if named else " on the built-in digits"


def run(cfg: Config, say: Callable[[str], object] = lambda line: None) -> dict:
    """Time ``kres train`` to the target; write JSON and markdown; return the payload. ``say`` gets the launch
    and one line per epoch."""
    depth_spec(cfg.depth)
    for arg in cfg.train_args:
        if own_option(arg):
            raise KresError(f"{arg} after `--` is set by the benchmark itself: give {own_option(arg)} before `--`, "
                            "as kres bench time-to-accuracy's own option")
    if not 0.0 < cfg.target <= 1.0:
        raise KresError(f"--target {cfg.target:g} is no accuracy to reach: give a fraction above 0 and at most 1, "
                        "e.g. 0.97")
    if cfg.output and Path(cfg.output).exists() and any(Path(cfg.output).iterdir()):
        raise KresError(f"{cfg.output} is not empty and kres train would resume it; give a new --output")
    with tempfile.TemporaryDirectory(prefix="kres-tta-") as tmp:
        run_dir = Path(cfg.output) if cfg.output else Path(tmp) / "run"
        timing = time_training(cfg, run_dir, Path(tmp) / "train.log", say=say)
        settings = train_settings(run_dir)
    rows = timing["rows"]
    hit = first_reaching(rows, cfg.target)
    best = max((r.get("val_accuracy", 0.0) for r in rows), default=None)
    result = {"model": f"keras_resnet ResNet-{cfg.depth}", "data": "built-in digits (1,797 8x8, 20% validation)",
              "target": cfg.target, "reached": hit is not None, "epoch": hit["epoch"] if hit else None,
              "val_accuracy": hit["val_accuracy"] if hit else best, "wall_s_to_target": timing["reached_s"]}
    if hit and all("epoch_time_s" in r for r in rows[: rows.index(hit) + 1]):
        result["train_s_to_target"] = sum(r["epoch_time_s"] for r in rows[: rows.index(hit) + 1])
        result["startup_and_overhead_s"] = result["wall_s_to_target"] - result["train_s_to_target"]
    columns = ["model", "target", "reached", "epoch", "val_accuracy", "wall_s_to_target", "train_s_to_target",
               "startup_and_overhead_s"]
    if not cfg.stop_at_target:  # the whole run: what `kres train` costs a user, and where it ends
        result["whole_run_s"] = timing["process_s"]
        result["best_val_accuracy"] = best
        columns += ["whole_run_s", "best_val_accuracy"]
    payload = {"benchmark": "time_to_accuracy", "config": asdict(cfg), "machine": machine(),
               "command": "kres " + " ".join(timing["command"]), "train_settings": settings, "result": result,
               "history": rows, "process_s": timing["process_s"], "load": os.getloadavg()}
    m = payload["machine"]
    title = (f"Time to {cfg.target:.0%} validation top-1, `{shown_command(cfg)}`{_data_phrase(cfg)}, "
             f"on {machine_line(m, payload['load'])}\n\n")
    if settings:
        title += settings_line(settings) + "\n\n"
    shown = {k: f"{v:.2%}" if (k.endswith("accuracy") or k == "target") and isinstance(v, float) else v
             for k, v in result.items()}
    table = title + markdown_table(columns, [shown])  # 99.72%, where two decimals of a fraction would say 1.00
    payload["results_file"] = str(write_results(cfg.results_name, payload, table))
    payload["table"] = table
    return payload
