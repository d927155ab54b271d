"""The layout of a run directory, in one place: what ``kres train`` writes and every other command reads.

::

    runs/NAME/
        config.json          train, data and resolved settings (CONFIG_FILE)
        labels.txt           class names, one a line (LABELS_FILE)
        meta.json            per-model facts (keras_resnet.meta)
        best.keras           best validation top-1, float32 (BEST_MODEL)
        last.keras           after the last epoch, float32 (LAST_MODEL)
        history.csv, curves.png, logs/
        checkpoint/state.json and ckpt-STEP.weights.h5 (state.json records each one's size and SHA-256)
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
import zipfile
from pathlib import Path

from keras_resnet import fileio
from keras_resnet.errors import KresError, first_line

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.txt"
BEST_MODEL = "best.keras"
LAST_MODEL = "last.keras"
MODEL_NAMES = (BEST_MODEL, LAST_MODEL)  # the order a run directory is searched for its model
FOLDER_MODELS = (*MODEL_NAMES, "model.keras")  # what a run or export folder given as a model file stands for
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
LOGS_DIR = "logs"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
LATEST = "latest"  # runs/latest -> the newest run


def write_labels(folder: str | os.PathLike, labels) -> None:
    """``folder``'s labels.txt, atomically: one class name a line, in the model's output order (what apps and
    deploy/classify.py read beside a model)."""
    fileio.write_text(Path(folder) / LABELS_FILE, labels_text(labels))


def class_key(name: str) -> str:
    """A class name as names are compared: in Unicode's composed form (NFC), so that a folder macOS named in the
    decomposed form (NFD: "tri" + U+0308 for "trï") is the class of the same name."""
    return unicodedata.normalize("NFC", name)


def labels_text(labels) -> str:
    """labels.txt's text: one class name a line."""
    return "".join(f"{label}\n" for label in labels)


def find_model(run_dir: str | os.PathLike) -> Path | None:
    """``best.keras``, else ``last.keras`` of ``run_dir``; None where it holds neither."""
    run_dir = Path(run_dir)
    return next((run_dir / n for n in MODEL_NAMES if (run_dir / n).is_file()), None)


def folder_model(folder: str | os.PathLike) -> Path | None:
    """The model a run or export folder given in a model's place stands for: best.keras, else last.keras, else
    (an export) model.keras; None where it holds none of them."""
    folder = Path(folder)
    return next((folder / name for name in FOLDER_MODELS if (folder / name).is_file()), None)


def no_model_yet(folder: str | os.PathLike) -> str | None:
    """Why a run folder holds no model, and what to do (training its first epoch, stopped there, or its models
    removed); None for a folder that is no run. Such a run was told "pass a run or export folder", as if none."""
    folder = Path(folder)
    if not is_run_dir(folder):
        return None
    from keras_resnet.runlock import holder

    who = holder(folder, elsewhere=True)
    state = read_checkpoint_state(folder) or {}
    if who is not None:  # a process of another host cannot be checked from here: its lock may be stale
        training = "is training" if who == holder(folder) else "may be training on another host"
        return f"{folder} holds no model yet: its run {training} ({who}); wait for the end of its first epoch"
    resume = f"kres train --resume --output {folder}"
    if state.get("complete"):
        return f"{folder} holds no model: its run finished, and its best.keras and last.keras were removed"
    if state.get("steps"):
        return (f"{folder} holds no model: best.keras and last.keras were removed; {resume} goes on from its "
                f"checkpoint of step {state['steps']} and writes last.keras at its end")
    return f"{folder} holds no model: its run stopped before its first epoch ended; resume it with {resume}"


def read_config(run_dir: str | os.PathLike) -> dict | None:
    """The run's whole ``config.json``; None where there is none, KresError where it is not valid JSON."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as err:  # not JSON, or not UTF-8
        raise KresError(f"{path} is not a valid run config ({err}); repair it or re-run 'kres train'") from None
    except OSError as err:
        raise KresError(f"cannot read {path}: {err.strerror or err}") from None
    if not isinstance(data, dict):
        raise KresError(f"{path} is not a valid run config (not a JSON object); repair it or re-run 'kres train'")
    return data


def data_config(run_dir: str | os.PathLike) -> dict | None:
    """The ``data`` entry (a DataConfig as a dict) of the run's ``config.json``; None where there is none."""
    data = (read_config(run_dir) or {}).get("data")
    return dict(data) if isinstance(data, dict) else None


def is_run_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def _config_dirs(model_path: Path) -> list[Path]:
    """Directories that may hold the run's config.json: the run dir itself, the model's folder and the
    folder above it (an export dir holding saved_model/)."""
    start = model_path if model_path.is_dir() else model_path.parent
    return [start, start.parent]


def training_data_config(model_path: str | os.PathLike, meta=None) -> dict:
    """The ``DataConfig`` (as a dict) the model was trained with.

    Looked up in order: ``config.json`` in the run dir / beside the model / one folder up;
    the ``data`` entry of the model's ``meta`` (its meta.json's, a ``ModelMeta``) ``extra``; a ``run_dir`` recorded
    there.
    """
    model_path = Path(model_path)
    extra = meta.extra if meta is not None else {}
    recorded = [data_config(d) for d in _config_dirs(model_path)]
    recorded.append(dict(extra["data"]) if isinstance(extra.get("data"), dict) else None)
    if extra.get("run_dir"):
        recorded.append(data_config(extra["run_dir"]))
    for data in recorded:
        if data is not None:
            return data
    raise KresError(f"no training data is recorded for {model_path} (no {CONFIG_FILE} with a 'data' entry "
                    "beside it or in its meta.json): pass --dataset, --data-dir or --tfds-dir")


def training_counts(model_path: str | os.PathLike) -> tuple[int, int] | None:
    """(training images, validation images) as the model's run recorded them in its ``config.json`` (beside the
    model, or one folder up); None where no run config records them."""
    for folder in _config_dirs(Path(model_path)):
        config = read_config(folder) or {}
        if isinstance(config.get("data"), dict):  # the config training_data_config reads
            counts = [(config.get("resolved") or {}).get(key) for key in ("num_train", "num_val")]
            return tuple(counts) if all(isinstance(n, int) for n in counts) else None
    return None


def same_folder(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths (``~``, links and ``..`` resolved) name one folder."""
    return os.path.realpath(Path(a).expanduser()) == os.path.realpath(Path(b).expanduser())


def changed_split(model_path: str | os.PathLike, folder: str | os.PathLike, now: tuple[int, int],
                  name: str) -> str | None:
    """Why the validation split of ``folder`` would hold images the model (``name``, at ``model_path``) trained on:
    ``folder`` is the image folder its run trained on (its ``config.json``) and holds other counts of (training,
    validation) images ``now`` than the run recorded. The split is drawn again from the folder's files, so an image
    added or removed moves images between the two (train refuses to resume on such a folder). The clause that says
    so, which each command ends with its fix; None where the split is the run's, or nothing is recorded to tell."""
    counts = training_counts(model_path)
    if counts is None or counts == tuple(now):
        return None
    trained_on = training_data_config(model_path).get("data_dir")  # the config that recorded the counts
    if not trained_on or not same_folder(trained_on, folder):
        return None
    return (f"{folder} has changed since {name} was trained on it ({counts[0]} training and {counts[1]} validation "
            f"images then, {now[0]} and {now[1]} now), so its validation split would hold images the model trained on")


def weights_problem(path: str | os.PathLike, size: int | None, sha256: str | None = None) -> str | None:
    """Why a ``.weights.h5`` file cannot be trusted (missing, wrong size, unreadable, or its bytes not the ones
    written: ``sha256``, the digest state.json records, where it records one), or None."""
    import h5py

    path = Path(path)
    if not path.is_file():
        return "the file is missing"
    if size is not None and path.stat().st_size != size:
        return f"{path.stat().st_size} bytes where {size} were written"
    try:
        with h5py.File(path, "r") as handle:
            arrays = []
            handle.visititems(lambda _, item: arrays.append(item) if isinstance(item, h5py.Dataset) else None)
            for array in arrays:
                array.id.get_storage_size()
    except Exception as err:  # h5py raises OSError, KeyError, RuntimeError for damaged files
        return (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
    if not arrays:
        return "it holds no weights"
    # Bytes changed in place (a disk error, a bad copy) leave a file h5py reads: only its digest tells.
    actual = fileio.file_sha256(path) if sha256 else None
    if actual and actual != sha256:
        return f"its bytes changed since it was written: SHA-256 {actual[:16]}, not {sha256[:16]}"
    return None


def read_checkpoint_state(run_dir: str | os.PathLike) -> dict | None:
    """``state.json``, or None when there is none; a state that cannot be read is an error, never a restart."""
    path = Path(run_dir) / CHECKPOINT_DIR / STATE_FILE
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict) or not isinstance(state.get("steps"), int):
            raise ValueError("no step count")
        return state
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:  # JSONDecodeError is a ValueError
        raise KresError(f"{path} cannot be read ({str(err).splitlines()[0][:80]}), so {run_dir} cannot be resumed: "
                        f"start a new run with another --output{start_again_hint(run_dir)}") from None


def nothing_trained(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` stopped before its first checkpoint (it has none, no model and no history)."""
    return not any((Path(run_dir) / name).exists() for name in (CHECKPOINT_DIR, *MODEL_NAMES, HISTORY_FILE))


def start_again_hint(run_dir: str | os.PathLike) -> str:
    """What a refusal to go on with ``run_dir`` adds to "start a new run with another --output": that --weights
    starts it from its best.keras (else last.keras), where there is one (the hint named one that a run stopped
    inside its first epoch never wrote: new-user walk); else that it has none, or that removing it loses nothing."""
    model = find_model(run_dir)  # best.keras, else last.keras
    if model is not None:
        return f" (--weights {model} starts it from this one)"
    if nothing_trained(run_dir):
        return f" (it stopped before its first checkpoint: removing {run_dir} loses nothing)"
    why = "" if (Path(run_dir) / HISTORY_FILE).exists() else ": it stopped before its first epoch ended"
    return f" ({run_dir} has no {BEST_MODEL} to start from{why})"


def checkpoint_weights(run_dir: str | os.PathLike, stream=None) -> tuple[int, Path | None]:
    """The step and weights file of ``run_dir``'s last good checkpoint, or ``(0, None)`` when it has none.

    A damaged latest checkpoint falls back to the one before it, and says so on ``stream``; with no good
    checkpoint left, or a run with checkpointed history but no state, it is a KresError.
    """
    run_dir = Path(run_dir)
    state = read_checkpoint_state(run_dir)
    if state is None or not state.get("weights"):
        if state is None and any((run_dir / CHECKPOINT_DIR).glob("ckpt-*.weights.h5")):
            raise KresError(f"{run_dir / CHECKPOINT_DIR / STATE_FILE} is missing, so {run_dir} cannot be resumed: "
                            f"start a new run with another --output{start_again_hint(run_dir)}")
        return 0, None
    problems = []
    for entry in (state, state.get("previous")):
        if not entry:
            continue
        path = run_dir / CHECKPOINT_DIR / entry["weights"]
        problem = weights_problem(path, entry.get("bytes"), entry.get("sha256"))
        if problem is None:
            if problems:
                (stream or sys.stderr).write(f"checkpoint {problems[0]}; resuming from {path.name}, "
                                             "the one before it\n")
            return int(entry["steps"]), path
        problems.append(f"{entry['weights']} is damaged ({problem})")
    raise KresError(f"{' and '.join(problems)}: no good checkpoint left in {run_dir}; start a new run with "
                    f"another --output{start_again_hint(run_dir)}")


def checkpoint_metrics(run_dir: str | os.PathLike, steps: int) -> list | None:
    """The training metrics' running state saved with the checkpoint of ``steps`` (a mid-epoch one), or None."""
    state = read_checkpoint_state(run_dir) or {}
    for entry in (state, state.get("previous") or {}):
        if entry.get("steps") == steps and "metrics" in entry:
            return entry["metrics"]
    return None


def not_a_zip(path: str | os.PathLike, hint: str) -> str:
    """Why a model file that is not a zip archive cannot be read: a ``.keras`` file is one, so one named so is
    damaged (a truncated copy, a full disk), and a run's other model is offered where it holds one. A file that
    cannot be opened (no read permission) and a TFLite model given a .keras name are told as such."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except IsADirectoryError:
        head = b""
    except OSError as err:  # is_zipfile says False for a file it cannot open: the cause is not the file's contents
        fix = "give your user read permission on it" if isinstance(err, PermissionError) else hint
        return f"cannot read {path}: {(err.strerror or str(err)).lower()}; {fix}"
    if head[4:8] == b"TFL3":  # the identifier a TFLite flatbuffer carries
        return (f"{path} is a TFLite model named {path.suffix or 'without a suffix'}, not a .keras model; rename it "
                f"{path.with_suffix('.tflite').name}")
    if path.suffix != ".keras":
        return f"{path} is not a .keras model (a .keras file is a zip archive); {hint}"
    other = next((path.parent / name for name in MODEL_NAMES if name != path.name and path.name in MODEL_NAMES
                  and zipfile.is_zipfile(path.parent / name)), None)
    fix = f"pass {other} instead" if other else f"copy it again, or {hint}"
    size = path.stat().st_size if path.is_file() else 0
    return (f"{path} is not a .keras model (a .keras file is a zip archive): it is damaged ({size:,} bytes, "
            f"truncated?); {fix}")


def load_keras(path: str | os.PathLike, hint: str = "pass the file written by 'kres train' or 'kres export'"):
    """A ``.keras`` file as a Keras model (no compile, safe mode); a one-line KresError for anything else."""
    import keras

    if not zipfile.is_zipfile(path):
        raise KresError(not_a_zip(path, hint))
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises ValueError, BadZipFile, OSError, ... for a file that is not a model
        raise KresError(f"{path} is not a loadable .keras model ({first_line(err)}); {hint}") from None
