"""Keras callbacks of `kres train`: progress, resumable checkpoints, history, best model, curves.

Every file is written atomically, so a SIGKILL at any moment leaves the run directory readable and
resumable from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from keras_resnet import _compat, fileio, runs, terminal
from keras_resnet.errors import KresError, first_line
from keras_resnet.optim import host_copy


def iterations_of(model: keras.Model) -> int:
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def weight_averages(model: keras.Model) -> dict:
    """The optimizer's moving averages (``--ema``) by ``id`` of the variable each averages; empty without them."""
    return {id(v): a for v, a in _compat.ema_pairs(model.optimizer)} if model.optimizer else {}


def saved_weights(model: keras.Model) -> list[np.ndarray]:
    """The weights ``best.keras`` and ``last.keras`` hold, in ``model.weights`` order: the model's own, with the
    optimizer's moving averages in place of the trainable ones when it keeps them (``--ema``)."""
    averages = weight_averages(model)
    return [host_copy(averages.get(id(v), v)) for v in model.weights]


class ValidateAverages(keras.callbacks.Callback):
    """Validation sees the optimizer's moving average of the weights (``--ema``), the weights that are saved.

    Before each validation the averages are copied into the model and after it the weights are put back from a
    copy: bit for bit, so checkpoints and resumed runs hold the same training weights as an uninterrupted run.
    (Keras's ``SwapEMAWeights`` swaps in place by adding and subtracting, which rounds the weights.) BN statistics
    are the model's own; they are not averaged.
    """

    def __init__(self):
        super().__init__()
        self._kept = None

    def on_test_begin(self, logs=None):
        pairs = _compat.ema_pairs(self.model.optimizer)
        self._kept = [(var, host_copy(var)) for var, _ in pairs]
        for var, average in pairs:
            var.assign(host_copy(average))

    def on_test_end(self, logs=None):
        for var, value in self._kept or ():
            var.assign(value)
        self._kept = None


class ProgressBar(keras.callbacks.Callback):
    """One line per epoch with training images/s and the epoch's metrics; a live bar when stderr is a terminal,
    else (a log file, CI, nohup) a line every ``log_interval`` seconds of an epoch that takes longer.

    The first epoch's rate includes tracing the step function (and XLA compilation). Keras's ``ProgbarLogger``
    shows neither images/s nor the epoch time, and does not put them into the logs the other callbacks write.
    """

    def __init__(self, epochs: int, global_batch: int, stream=None, min_interval: float = 0.25,
                 log_interval: float = 60.0, clock=time.perf_counter):
        super().__init__()
        self.clock = clock
        self.epochs = epochs
        self.global_batch = global_batch
        self.stream = stream or sys.stderr
        self.live = terminal.is_live(self.stream)
        self.min_interval = min_interval if self.live else log_interval
        self.later = None  # the epoch line held for :meth:`line_after`'s callback to print

    def line_after(self) -> keras.callbacks.Callback:
        """A callback that prints the epoch line where it stands in the list (last: once the epoch is saved); the
        bar itself, earlier, still puts the epoch's images/s and time into the logs the others write."""
        self.later = []
        bar = self

        class EpochLine(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                while bar.later:
                    bar._write(bar.later.pop(0))

        return EpochLine()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.start = self.last_draw = self.train_end = self.clock()
        self.first_step = None
        self.steps_done = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done = batch + 1
        self.train_end = now = self.clock()
        total = self.params.get("steps") or 0
        if self.live:
            if now - self.last_draw < self.min_interval and self.steps_done < total:
                return
        elif now - self.last_draw < self.min_interval or self.steps_done == total:  # the epoch's line comes next
            return
        self.last_draw = now
        rate = self.steps_done * self.global_batch / max(now - self.start, 1e-9)
        width = 24
        filled = int(width * self.steps_done / total) if total else 0
        done = f"[{'=' * filled}{'.' * (width - filled)}] " if self.live else "step "
        line = f"Epoch {self.epoch + 1}/{self.epochs} {done}{self.steps_done}{f'/{total}' if total else ''} " \
               f"{rate:,.0f} img/s {_format_logs(logs)}"
        self.stream.write(f"\r{terminal.fit_line(line, self.stream)}\x1b[K" if self.live else f"{line}\n")
        self.stream.flush()
        terminal.live_line(self.live)

    def on_epoch_end(self, epoch, logs=None):
        elapsed = self.clock() - self.start  # training and validation
        rate = self.steps_done * self.global_batch / max(self.train_end - self.start, 1e-9)  # training only
        logs = logs if logs is not None else {}
        logs["images_per_s"] = rate
        logs["epoch_time_s"] = elapsed
        line = f"Epoch {epoch + 1}/{self.epochs} {elapsed:.1f}s {rate:,.0f} img/s {_format_logs(logs)}"
        if self.later is not None:
            self.later.append(line)
        else:
            self._write(line)

    def _write(self, line: str) -> None:
        self.stream.write(f"\r{line}\x1b[K\n" if self.live else f"{line}\n")
        self.stream.flush()
        terminal.live_line(False)


def _format_logs(logs) -> str:
    parts = []
    for key, value in (logs or {}).items():
        if key in ("images_per_s", "epoch_time_s"):
            continue
        with contextlib.suppress(TypeError, ValueError):
            value = float(value)
            parts.append(f"{key} {value:.4g}" if key in ("learning_rate", "lr") else f"{key} {value:.4f}")
    return " ".join(parts)


class Checkpointer(keras.callbacks.Callback):
    """Saves weights + optimizer state every epoch and every ``every_steps`` steps inside one.

    The weights go to a new file, which is read back (every array present, the file whole) and hashed before
    ``state.json`` (written atomically) points at it with its size and SHA-256; the checkpoint before it is kept as
    ``previous``, so a latest checkpoint damaged later (even in place, h5py still reading it) still leaves one to
    resume from. Older files are removed.
    ``state.json`` counts the training steps run; that is the optimizer's step counter too, except
    under float16 loss scaling, which does not count the steps it skips. Keras's ``BackupAndRestore`` drops its
    backup when a ``fit`` ends (and train calls ``fit`` once per phase), writes in place rather than atomically,
    and records no step count to check a resumed run against.
    """

    def __init__(self, directory: Path, steps_per_epoch: int, every_steps: int | None = None):
        super().__init__()
        self.directory = Path(directory)
        self.steps_per_epoch = steps_per_epoch
        self.every_steps = every_steps
        self.step = self.fit_start = self.last_saved = 0
        self.written: set[str] = set()  # the weights files this process wrote (and hashed)

    def start_fit(self, step: int) -> None:
        """Called before each ``fit``: the global step its first batch follows."""
        self.step = self.fit_start = self.last_saved = step

    def on_train_batch_end(self, batch, logs=None):
        self.step = self.fit_start + batch + 1
        if self.every_steps and self.step - self.last_saved >= self.every_steps:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.step = self.fit_start = (epoch + 1) * self.steps_per_epoch
        if self.last_saved != self.step:  # not saved already by the batch hook
            self.save()

    def save(self, complete: bool = False) -> None:
        """A checkpoint; ``complete=True`` marks the run finished and drops the weights (last.keras has them). A
        Ctrl-C or SIGTERM meanwhile waits for it to be written (a second one does not)."""
        with fileio.interrupts_held(f"finishing the checkpoint of step {self.step} before stopping (a second "
                                    "Ctrl-C stops at once, without it)"):
            self._save(complete)

    def _save(self, complete: bool) -> None:
        state_path = self.directory / runs.STATE_FILE
        if complete:
            fileio.write_json(state_path, {"steps": self.step, "iterations": iterations_of(self.model),
                                           "weights": None, "complete": True})
            for old in self.directory.glob("ckpt-*.weights.h5"):
                old.unlink(missing_ok=True)
            return
        require_finite_weights(self.model, self.step)
        weights = self.directory / f"ckpt-{self.step}.weights.h5"
        variables = [*self.model.weights, *(self.model.optimizer.variables if self.model.optimizer else [])]
        with fileio.atomic_path(weights, need=fileio.with_headers(variables_bytes(variables))) as tmp:
            self.model.save_weights(tmp, overwrite=True)
            _test_hook("KRES_TEST_KILL_IN_CHECKPOINT", self.step)
            problem = runs.weights_problem(tmp, None)
            if problem:
                raise OSError(f"{weights.name} did not read back: {problem}")
            digest = fileio.file_sha256(tmp)  # once a checkpoint (0.14 s for ResNet-50+SGD, 205 MB): resume checks it
        state = runs.read_checkpoint_state(self.directory.parent) or {}
        previous = _entry(state) if state.get("weights") != weights.name else state.get("previous")
        # Its digest is checked only where another process wrote it: one this process hashed, it need not again.
        if previous and runs.weights_problem(self.directory / previous["weights"], previous.get("bytes"),
                                             None if previous["weights"] in self.written else previous.get("sha256")):
            previous = None  # a damaged latest (resumed from the one before) is not worth keeping
        entry = {"steps": self.step, "iterations": iterations_of(self.model), "weights": weights.name,
                 "bytes": weights.stat().st_size, "sha256": digest}
        if self.step % self.steps_per_epoch:  # mid-epoch: the running means a resumed epoch goes on with
            entry["metrics"] = metric_state(self.model)
        if previous and previous["weights"] != weights.name:
            entry["previous"] = previous
        fileio.write_json(state_path, {**entry, "complete": False})
        self.written.add(weights.name)
        keep = {weights.name, entry.get("previous", {}).get("weights")}
        for old in self.directory.glob("ckpt-*.weights.h5"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
        self.last_saved = self.step


class RunFolderKept(keras.callbacks.Callback):
    """Ends the run in one line where its folder was removed while it trained, checked at each step (before a
    checkpoint inside the epoch) and each epoch's end: the saves made it again, half-full (no config.json, meta.json
    or lock), and the run failed later on "no meta.json"."""

    def __init__(self, config: Path):
        super().__init__()
        self.config = Path(config)

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()

    def _check(self) -> None:
        if not self.config.is_file():
            raise KresError(f"{self.config.parent} was removed while training (its {self.config.name} is gone, and "
                            "its checkpoints with it): start the run again")


class EpochEndHeld(keras.callbacks.Callback):
    """Runs ``callbacks`` as if each were in the list, their epoch ends (history row, best model, checkpoint, the
    epoch's line) with Ctrl-C and SIGTERM held until all are done: an epoch trained and validated is saved whole,
    then the signal ends the run, which resumes after that epoch. Without it, a Ctrl-C in the second or so of those
    saves lost the epoch."""

    def __init__(self, callbacks: list):
        super().__init__()
        self.callbacks = callbacks
        base = keras.callbacks.Callback
        for name in dir(base):  # only the hooks one of them has: Keras dispatches the others as it did
            if name.startswith("on_") and name != "on_epoch_end" and any(
                    getattr(type(callback), name) is not getattr(base, name) for callback in callbacks):
                setattr(self, name, self._forward(name))

    def _forward(self, name: str):
        def each(*args, **kwargs):
            for callback in self.callbacks:
                getattr(callback, name)(*args, **kwargs)
        return each

    def set_model(self, model):
        super().set_model(model)
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)

    def on_epoch_end(self, epoch, logs=None):
        with fileio.interrupts_held(f"saving epoch {epoch + 1} before stopping (a second Ctrl-C stops at once, and "
                                    "the epoch is trained again on resuming)"):
            for callback in self.callbacks:
                callback.on_epoch_end(epoch, logs)


def metric_state(model: keras.Model) -> list:
    """The training metrics' running totals and counts (loss, accuracy, top-5), as JSON numbers."""
    return [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in model.metrics_variables]


class RestoreMetrics(keras.callbacks.Callback):
    """Adds a mid-epoch checkpoint's running totals and counts back when its epoch resumes, so the epoch's loss and
    accuracy in history.csv and on the terminal are over all its steps, as an uninterrupted run's are, not over the
    steps after the resume only. Added after the first resumed step: the compiled metrics have no variables before
    it, and every one of them (means) is a total and a count, which add up."""

    def __init__(self, values: list):
        super().__init__()
        self.values = values

    def on_train_batch_end(self, batch, logs=None):
        if self.values is None:
            return
        variables = self.model.metrics_variables  # under JAX, reading the model syncs its state first
        if len(variables) == len(self.values):
            for variable, value in zip(variables, self.values):
                variable.assign_add(np.asarray(value, dtype=variable.dtype))
        self.values = None  # once


class FiniteLoss(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, before any later callback saves a checkpoint or a model.

    First in the callback list: at an epoch's end it also checks the weights, so a step whose loss was
    still finite but whose update was not never reaches best.keras or a checkpoint.
    """

    def __init__(self, checkpointer: Checkpointer, lr: float | None = None):
        super().__init__()
        self.checkpointer = checkpointer
        self.lr = lr

    def _stop(self, what: str, step: int) -> None:
        lower = f" than {self.lr:g}" if self.lr else ""
        saved = self.checkpointer.last_saved  # 0: none (a run's first checkpoint comes after a step)
        kept = f"the checkpoint of step {saved} is kept" if saved else "no checkpoint was written before it"
        raise KresError(f"training diverged: the {what} at step {step}; {kept}; start again with a lower "
                        f"--lr{lower} (and another --output)")

    def _check_weights(self, step: int) -> None:
        bad = non_finite_weight(self.model)
        if bad is not None:
            self._stop(f"weights became non-finite ({bad})", step)

    def on_train_batch_end(self, batch, logs=None):
        step, saver = self.checkpointer.fit_start + batch + 1, self.checkpointer
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(f"loss became {float(loss)}", step)
        if saver.every_steps and step - saver.last_saved >= saver.every_steps:  # the loss comes before the update
            self._check_weights(step)

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.checkpointer.steps_per_epoch
        for key in ("loss", "val_loss"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                self._stop(f"{key} became {float(value)}", step)
        self._check_weights(step)


def _entry(state: dict) -> dict | None:
    """The latest checkpoint of a state.json as a ``previous`` entry (None when it names no weights)."""
    if not state.get("weights"):
        return None
    return {k: state[k] for k in ("steps", "iterations", "weights", "bytes", "sha256", "metrics") if k in state}


def _test_hook(name: str, step: int) -> None:
    """Tests stop a process at an exact point (a SIGKILL while a checkpoint is half written) through an env var."""
    if os.environ.get(name) == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def variables_bytes(variables) -> int:
    return sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)


def non_finite_weight(model: keras.Model) -> str | None:
    """The path of the first weight holding a NaN or an infinity, or None."""
    for weight in model.weights:
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(weight))):
            return weight.path
    return None


def require_finite_weights(model: keras.Model, step: int) -> None:
    """A diverged model is never checkpointed or saved: the last good checkpoint stays the one to resume from."""
    bad = non_finite_weight(model)
    if bad is not None:
        raise KresError(f"training diverged: weight {bad} is not finite at step {step}; "
                        "start again with a lower --lr (and another --output)")


HISTORY_FIELDS_FIRST = ("epoch", "learning_rate", "loss", "accuracy", "val_loss", "val_accuracy")


class HistoryWriter(keras.callbacks.Callback):
    """``history.csv`` (one row per finished epoch, rewritten atomically) and ``curves.png``.

    Keras's ``CSVLogger`` appends to the file in place (a kill can leave half a row), and on a resume it cannot
    drop the rows of epochs that are trained again; it also logs no learning rate.

    The history is written every epoch; the curves (half a second of matplotlib, 10% of a digits epoch on two
    CPU cores) after the first epoch, then at most every ``plot_every_s`` seconds, and at the end of each fit.
    """

    def __init__(self, run_dir: Path, rows: list[dict], learning_rate: Callable[[], float] | None = None,
                 plot: bool = True, plot_every_s: float = 30.0):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.rows = rows
        self.learning_rate = learning_rate
        self.plot = plot
        self.plot_every_s = plot_every_s
        self.plotted_at: float | None = None  # time.monotonic() of the last drawing; None: not drawn yet
        self.stale = False

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        if self.learning_rate is not None:
            row["learning_rate"] = self.learning_rate()
        for key, value in (logs or {}).items():
            with contextlib.suppress(TypeError, ValueError):
                row[key] = float(value)
        self.rows[:] = [r for r in self.rows if int(r["epoch"]) < epoch + 1] + [row]
        write_history(self.run_dir / runs.HISTORY_FILE, self.rows)
        self.stale = self.plot
        if self.plotted_at is None or time.monotonic() - self.plotted_at >= self.plot_every_s:
            self._draw()

    def on_train_end(self, logs=None):
        self._draw()

    def _draw(self) -> None:
        if self.stale:
            plot_curves(self.rows, self.run_dir / runs.CURVES_FILE)
            self.plotted_at, self.stale = time.monotonic(), False


def write_history(path: Path, rows: list[dict]) -> None:
    keys = [k for k in HISTORY_FIELDS_FIRST if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r} - set(keys))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    fileio.write_text(path, buffer.getvalue())


def read_history(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        return []
    parsed = []
    for row in rows:
        clean = {}
        for key, value in row.items():
            if value in ("", None):
                continue
            clean[key] = int(value) if key == "epoch" else float(value)
        parsed.append(clean)
    return parsed


class BestModelSaver(keras.callbacks.Callback):
    """Calls ``save(path)`` with ``best.keras`` whenever ``monitor`` beats its best so far.

    Keras's ``ModelCheckpoint`` saves the training model itself (its mixed-precision policy and optimizer) in
    place; here ``save`` writes the float32 rebuild atomically, and ``best`` carries the value over a resume.
    """

    def __init__(self, path: Path, save: Callable[[Path], None], monitor: str = "val_accuracy",
                 best: float = -math.inf):
        super().__init__()
        self.path = Path(path)
        self.save_fn = save
        self.monitor = monitor
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(value)
        if not math.isfinite(value):
            return
        if value > self.best or not self.path.exists():
            self.best = max(self.best, value)
            self.save_fn(self.path)


def plot_curves(rows: list[dict], path: Path) -> None:
    """Loss and top-1 accuracy per epoch, train and validation, as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    # Fixed margins that fit the labels: tight_layout measured every text first, a third of the 0.2 s drawing
    # (AMD EPYC Zen 3), which a run pays after its first epoch and at its end.
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.92, wspace=0.18)
    epochs = [r["epoch"] for r in rows]
    for index, (metric, title) in enumerate((("loss", "loss"), ("accuracy", "top-1 accuracy"))):
        axis = figure.add_subplot(1, 2, index + 1)
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            points = [(e, r[key]) for e, r in zip(epochs, rows) if key in r]
            if points:
                axis.plot(*zip(*points), marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    with fileio.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def curves_drawn_after_history(run_dir: Path) -> bool:
    """Whether ``curves.png`` was written after ``history.csv`` (:class:`HistoryWriter` draws each fit's last rows
    after writing them), so drawing the history's rows again would give the same picture. Where a file system keeps
    coarse times and the two are equal, it says no."""
    try:
        return (run_dir / runs.CURVES_FILE).stat().st_mtime_ns > (run_dir / runs.HISTORY_FILE).stat().st_mtime_ns
    except OSError:
        return False


class TensorBoardScalars(keras.callbacks.Callback):
    """Per-epoch scalars (loss, accuracy, learning rate, images/s) as TensorBoard event files in ``logs/``.

    Written with ``tf.summary.write`` and the scalars plugin's metadata, so it needs only TensorFlow,
    not the ``tensorboard`` package (which ``keras.callbacks.TensorBoard`` requires).
    """

    def __init__(self, log_dir: Path, stream=None):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.writers = {}
        self.stream = stream or sys.stderr
        self.off = False  # the logs could not be written: said once, and training goes on without them

    def _writer(self, name: str):
        import tensorflow as tf

        if name not in self.writers:
            self.writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self.writers[name]

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        if self.off:
            return
        metadata = tf.compat.v1.SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"
        try:
            for key, value in (logs or {}).items():
                with contextlib.suppress(TypeError, ValueError):
                    value = float(value)
                    split, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
                    with self._writer(split).as_default():
                        tf.summary.write(f"epoch_{tag}", tf.constant(value, tf.float32), step=epoch + 1,
                                         metadata=metadata.SerializeToString())
            for writer in self.writers.values():
                writer.flush()
        except Exception as err:  # TensorFlow's own file writer, outside fileio: a full disk is still one line
            if fileio.is_out_of_space(err):
                raise fileio.out_of_space_error(self.log_dir / "events", 0, None) from None
            if not isinstance(err, (tf.errors.PermissionDeniedError, tf.errors.NotFoundError,
                                    tf.errors.FailedPreconditionError)):
                raise
            # Not writable (another user's run, a read-only folder): a traceback, and the epoch was lost with it.
            self.off = True
            with contextlib.suppress(Exception):
                self.on_train_end()
            terminal.end_live_line(self.stream)
            self.stream.write(f"warning: TensorBoard logs cannot be written to {self.log_dir} ({first_line(err)}): "
                              "training goes on without them\n")

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()
        self.writers = {}
