"""Accuracy of one model, or two side by side, on a labelled dataset: top-1/5, loss, per class, confusion.

``compute_metrics`` is plain numpy on probabilities and labels, so the numbers are testable without a
model. ``evaluate`` loads the model(s) through ``keras_resnet.runtime``, picks the data (the options given,
else the data the model was trained on, read from its run's ``config.json``), streams the validation split
through every model, and writes ``evaluation.json`` and a confusion-matrix PNG per model.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_resnet import fileio
from keras_resnet.errors import KresError, OneClassOnly, counted, first_five, split_fix
from keras_resnet.meta import (
    META_FILENAME,
    SCORES_KEY,
    class_key,
    data_names_note,
    generic_labels,
    meta_path,
    numbered_names_note,
    numbers_are_names,
    outputs_of,
    require_outputs_for,
)
from keras_resnet.runs import changed_split, same_folder, training_counts, training_data_config
from keras_resnet.runtime import Predictor, check_runnable, load_predictor

EVAL_JSON = "evaluation.json"
LOSS_EPSILON = 1e-7  # probabilities are clipped here before the log, as Keras' cross-entropy does
MAX_ANNOTATED_CLASSES = 20  # the confusion PNG writes counts in the cells up to this many classes
MAX_NAMED_CLASSES = 50  # and names the classes on its axes up to this many


@dataclass
class EvalConfig:
    """What ``kres evaluate`` takes. With no ``dataset``/``data_dir``/``tfds_dir`` the model's own training
    data is used. ``image_size`` defaults to the model's input size; a different explicit size is an error."""

    models: list[str]
    dataset: str | None = None  # a TFDS name, "synthetic", or "digits" for the built-in digits
    data_dir: str | None = None
    tfds_dir: str | None = None
    image_size: int | None = None
    batch_size: int = 64
    output: str | None = None  # directory for evaluation.json and the PNGs; default: eval/ beside the model
    num_threads: int | None = None  # TFLite interpreter threads
    all_images: bool = False  # every image of data_dir's class folders (a held-out test folder), not a split of them

    @property
    def has_data_option(self) -> bool:
        return any(v is not None for v in (self.dataset, self.data_dir, self.tfds_dir))


@dataclass
class Metrics:
    num_examples: int
    top1: float
    top5: float
    top_k: int  # k of the "top5" figure: min(5, number of classes)
    loss: float  # mean categorical cross-entropy of the probabilities
    per_class: dict[str, float | None]  # accuracy per true class; None where a class has no examples
    confusion: list[list[int]]  # [true][predicted] counts

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ModelReport:
    path: str
    kind: str
    input_shape: list
    metrics: Metrics
    seconds: float
    confusion_png: str | None = None

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["images_per_second"] = round(self.metrics.num_examples / self.seconds, 1) if self.seconds else None
        return out


@dataclass
class Comparison:
    """How closely model B follows model A on the same images."""

    top1_agreement: float  # fraction of images where both pick the same class
    max_abs_diff: float  # largest difference between any two output probabilities
    mean_abs_diff: float
    top1_delta: float  # B's top-1 minus A's, in accuracy points (fraction)


@dataclass
class EvalResult:
    data: dict  # the data settings used (a DataConfig as a dict) and the class names
    models: list[ModelReport]
    comparison: Comparison | None = None
    json_path: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"data": self.data, "models": [m.to_dict() for m in self.models],
                "comparison": dataclasses.asdict(self.comparison) if self.comparison else None,
                "warnings": self.warnings}


# --- metrics (numpy only) -------------------------------------------------------------------------------------

def compute_metrics(probs: np.ndarray, labels: np.ndarray, class_names: list[str] | None = None,
                    k: int = 5) -> Metrics:
    """Top-1, top-k, cross-entropy, per-class accuracy and the confusion matrix.

    ``probs`` is [N,K] probabilities; ``labels`` is [N] class indices or [N,K] one-hot (or soft) targets.
    Ties rank the lower class index first, so top-1 is ``argmax`` and agrees with the confusion matrix.
    """
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2:
        raise KresError(f"probabilities must be [N, classes], got shape {probs.shape}")
    n, num_classes = probs.shape
    labels = np.asarray(labels)
    if labels.ndim == 2:
        if labels.shape != probs.shape:
            raise KresError(f"labels {labels.shape} and model outputs {probs.shape} differ: "
                            "the model was trained for a different number of classes than the data has")
        targets = labels.astype(np.float64)
        true = np.argmax(labels, axis=1)
    else:
        true = labels.astype(np.int64)
        if n and (true.min() < 0 or true.max() >= num_classes):
            raise KresError(f"labels run to class {true.max()} but the model has {num_classes} outputs")
        targets = np.eye(num_classes)[true]
    if len(true) != n:
        raise KresError(f"{len(true)} labels for {n} predictions")
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise KresError(f"{len(names)} class names for a model with {num_classes} outputs")

    k = min(k, num_classes)
    ranked = np.argsort(-probs, axis=1, kind="stable")
    pred = ranked[:, 0]
    in_top_k = (ranked[:, :k] == true[:, None]).any(axis=1)
    clipped = np.clip(probs, LOSS_EPSILON, 1.0)
    loss = float(np.mean(-np.sum(targets * np.log(clipped), axis=1))) if n else float("nan")

    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (true, pred), 1)
    support = confusion.sum(axis=1)
    per_class = {name: (float(confusion[i, i] / support[i]) if support[i] else None) for i, name in enumerate(names)}
    return Metrics(
        num_examples=int(n),
        top1=float(np.mean(pred == true)) if n else float("nan"),
        top5=float(np.mean(in_top_k)) if n else float("nan"),
        top_k=int(k), loss=loss, per_class=per_class, confusion=confusion.tolist(),
    )


def compare_outputs(probs_a: np.ndarray, probs_b: np.ndarray) -> tuple[float, float, float]:
    """(top-1 agreement, max abs difference, mean abs difference) of two models' outputs on the same images."""
    a, b = np.asarray(probs_a, np.float64), np.asarray(probs_b, np.float64)
    if a.shape != b.shape:
        raise KresError(f"the two models give outputs of shapes {a.shape} and {b.shape}: they cannot be compared")
    if not len(a):
        return float("nan"), float("nan"), float("nan")
    agree = float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))
    diff = np.abs(a - b)
    return agree, float(diff.max()), float(diff.mean())


def save_confusion_png(confusion, class_names: list[str], path: str | os.PathLike, title: str) -> Path:
    """Row-normalised confusion matrix (true down, predicted across), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion, np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, rows, out=np.zeros(counts.shape, np.float64), where=rows > 0)
    k = len(class_names)
    side = min(4 + 0.4 * k, 24)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if k <= MAX_NAMED_CLASSES:
        ax.set_xticks(range(k), class_names, rotation=90 if k > 10 else 0, fontsize=8)
        ax.set_yticks(range(k), class_names, fontsize=8)
    if k <= MAX_ANNOTATED_CLASSES:
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    path = Path(path)
    import warnings

    try:
        with warnings.catch_warnings():  # said once, by evaluate (missing_glyphs), not per glyph and per drawing
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
            fig.tight_layout()
            with fileio.atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def missing_glyphs(texts: list[str]) -> str:
    """The characters of ``texts`` that the plots' font (the first of matplotlib's family: its own DejaVu Sans unless
    configured) cannot draw; matplotlib draws a box for each, and warns once a glyph and drawing."""
    from matplotlib import font_manager

    font = font_manager.get_font(font_manager.findfont(font_manager.FontProperties()))
    return "".join(dict.fromkeys(c for text in texts for c in text if c.isprintable() and not font.get_char_index(
        ord(c))))


def _glyph_notes(class_names: list[str], png_names: list[str]) -> list[str]:
    missing = missing_glyphs(class_names) if len(class_names) <= MAX_NAMED_CLASSES else ""
    return [f"the plot's font has no glyph for {missing!r}: the class names in {' and '.join(png_names)} show a box "
            "for each (the text and evaluation.json have them whole)"] if missing else []


# --- where the data comes from ------------------------------------------------------------------------------

def _names(predictors: list[Predictor]) -> list[str]:
    """Each model's file name, or its path where two share a name (two runs' best.keras)."""
    names = [p.path.name for p in predictors]
    return names if len(set(names)) == len(names) else [str(p.path) for p in predictors]


def _image_size(cfg: EvalConfig, predictors: list[Predictor], recorded: int | None) -> int:
    """The model's own size; an explicit --image-size must match it. Dynamic models take the explicit size,
    then the size in their meta.json, then the training config's."""
    fixed = {p.input_shape[0] for p in predictors if p.input_shape[0] is not None}
    fixed |= {p.input_shape[1] for p in predictors if p.input_shape[1] is not None}
    if len(fixed) > 1:
        sizes = ", ".join(f"{name}: {p.input_shape[0]} px" for name, p in zip(_names(predictors), predictors))
        raise KresError(f"the models take different input sizes ({sizes}); compare models of the same size")
    if fixed:
        size = fixed.pop()
        if cfg.image_size is not None and cfg.image_size != size:
            names = " and ".join(p.path.name for p in predictors)
            raise KresError(f"{names} takes {size}x{size} images, not --image-size {cfg.image_size}: drop "
                            f"--image-size or evaluate a model exported at {cfg.image_size} px")
        return size
    if cfg.image_size is not None:
        return cfg.image_size
    for p in predictors:
        if p.meta is not None and p.meta.input_shape and p.meta.input_shape[0]:
            return int(p.meta.input_shape[0])
    if recorded:
        return int(recorded)
    raise KresError("the model takes any image size and none is recorded: pass --image-size")


def data_config(cfg: EvalConfig, predictors: list[Predictor]):
    """The ``DataConfig`` to evaluate on (no augmentation; the validation split is what is read)."""
    from keras_resnet.data import DataConfig, recorded_tfds_dataset

    names = {f.name for f in dataclasses.fields(DataConfig)}
    if cfg.has_data_option:
        given = {key: value for key, value in (("dataset", cfg.dataset), ("data_dir", cfg.data_dir),
                                               ("tfds_dir", cfg.tfds_dir)) if value is not None}
        try:
            recorded = training_data_config(cfg.models[0], predictors[0].meta)
        except KresError:
            recorded = {}
        if "dataset" not in given and "data_dir" not in given:  # --tfds-dir alone: where the run's TFDS data is
            given["dataset"] = recorded_tfds_dataset(recorded)
        base = {"dataset": None, "data_dir": None, "tfds_dir": None, **given}
        # The training run's split (seed, val_split) keeps its validation images unseen: kept for its own data,
        # and for any image folder when it trained on one (the folder may have moved).
        if _same_source(recorded, base) or (recorded.get("data_dir") and "data_dir" in given):
            base = {**{k: v for k, v in recorded.items() if k in names}, **given}
    else:
        recorded = training_data_config(cfg.models[0], predictors[0].meta)
        base = {k: v for k, v in recorded.items() if k in names}
    size = _image_size(cfg, predictors, base.get("image_size"))
    # batch_size 1: load_datasets checks the batch against the TRAIN split, which evaluation never reads;
    # the validation split is re-batched at the requested size. One pass, so no cache.
    base.update(image_size=size, batch_size=1, cache=False, randaugment=False, mixup_alpha=0.0, cutmix_alpha=0.0)
    return DataConfig(**{k: v for k, v in base.items() if k in names})


def _load(data_cfg, every_image: bool):
    """The images to score: every image of the folder, or the validation split; a folder too small to split is
    said with evaluate's fix (it said "raise --val-split", which evaluate does not have)."""
    from keras_resnet.data import is_split, load_datasets, load_every_image

    folder = data_cfg.data_dir
    # train/ beside val/: val/ alone is what is scored, and --all-images of the whole folder is refused
    whole = ("score every image of it with --all-images" if folder is None or is_split(folder) else
             f"score its val/ alone with --data-dir {Path(folder).expanduser() / 'val'} --all-images")
    with split_fix("score every image of it with --all-images, add images, or use train/ and val/ folders"), \
            split_fix(whole, OneClassOnly):
        return load_every_image(data_cfg) if every_image else load_datasets(data_cfg)


def _same_source(recorded: dict, given: dict) -> bool:
    from keras_resnet.data import DIGITS

    def norm(data: dict):
        folder = data.get("data_dir")
        dataset = data.get("dataset")
        # a run config records the built-in digits as dataset None; `--dataset digits` names the same data
        return (DIGITS if dataset is None and not folder else dataset), (os.path.realpath(folder) if folder else None)

    return bool(recorded) and norm(recorded) == norm(given)


def _default_output(model_path: Path) -> Path:
    folder = model_path if model_path.is_dir() and not (model_path / "saved_model.pb").is_file() else model_path.parent
    return folder / "eval"


# --- the command ------------------------------------------------------------------------------------------

ProgressFn = Callable[[int, int], None]  # (images done, images in all)


def _check_options(cfg: EvalConfig) -> None:
    """What is refused before any model or image is read."""
    if not 1 <= len(cfg.models) <= 2:
        raise KresError(f"evaluate takes one model, or two to compare; got {len(cfg.models)}")
    if cfg.batch_size < 1:
        raise KresError(f"--batch-size must be 1 or more, got {cfg.batch_size}")
    if cfg.all_images and cfg.data_dir is None:
        raise KresError("--all-images scores every image of a folder of held-out images: name it with --data-dir")
    if cfg.output and Path(cfg.output).suffix.lower() in (".json", ".png"):  # it made a folder of that name
        raise KresError(f"--output is the folder for evaluation.json and its plots, not a file name: try "
                        f"{Path(cfg.output).with_suffix('')}")


def evaluate(cfg: EvalConfig, progress: ProgressFn | None = None) -> EvalResult:
    """Evaluate one model, or compare two on the same data; writes evaluation.json and confusion PNGs."""
    _check_options(cfg)
    out_dir = Path(cfg.output) if cfg.output else _default_output(Path(cfg.models[0]))
    predictors = [load_predictor(m, num_threads=cfg.num_threads) for m in cfg.models]
    check_runnable(cfg.num_threads, predictors)

    from keras_resnet.data import is_split

    data_cfg = data_config(cfg, predictors)
    every_image = _every_image(cfg, data_cfg.data_dir, predictors[0])
    datasets = _load(data_cfg, every_image)
    split = data_cfg.data_dir is not None and is_split(data_cfg.data_dir) and not every_image
    own = _own_split(cfg, predictors[0], data_cfg.data_dir, datasets, split)
    class_names, outputs = _class_order(predictors, list(datasets.class_names))
    # Made once the models and the data are accepted (a refused command made DATA/eval/, a class folder to the
    # next command), before the long work.
    _make_output(out_dir, given=cfg.output is not None)
    warnings = [skipped_warning(datasets.skipped, data_cfg.data_dir)] if datasets.skipped_files else []
    warnings += _data_names_notes(predictors, class_names)

    val = datasets.val.unbatch().batch(cfg.batch_size)
    probs, labels, seconds = _run(predictors, val, datasets.num_val, cfg.batch_size, progress)
    if outputs is not None:
        labels = outputs[np.argmax(labels, axis=1)]
    reports = []
    one, two = ["confusion_matrix.png"], ["confusion_matrix_a.png", "confusion_matrix_b.png"]
    png_names = one if len(predictors) == 1 else two
    for p, pr, sec, png_name in zip(predictors, probs, seconds, png_names):
        metrics = compute_metrics(pr, labels, class_names)
        png = save_confusion_png(metrics.confusion, class_names, out_dir / png_name,
                                 f"{p.path.name} ({p.kind}): top-1 {metrics.top1:.2%} on {metrics.num_examples}")
        reports.append(ModelReport(path=str(p.path), kind=p.kind, input_shape=list(p.input_shape), metrics=metrics,
                                   seconds=round(sec, 3), confusion_png=str(png)))
    warnings += _glyph_notes(class_names, png_names)
    comparison = None
    if len(predictors) == 2:
        agree, max_diff, mean_diff = compare_outputs(probs[0], probs[1])
        comparison = Comparison(top1_agreement=agree, max_abs_diff=max_diff, mean_abs_diff=mean_diff,
                                top1_delta=reports[1].metrics.top1 - reports[0].metrics.top1)
    # A folder without val/ is split as training split it: only its validation share is scored (say how much).
    data_info = {**dataclasses.asdict(data_cfg), "batch_size": cfg.batch_size, "class_names": class_names,
                 "num_val": int(datasets.num_val), "every_image": every_image, "classes_seen": _classes_seen(labels),
                 "skipped_files": int(datasets.skipped_files), "skipped": datasets.skipped_listed(),
                 "split_from": int(datasets.num_train + datasets.num_val) if split else None, "own_split": own,
                 "source": "options" if cfg.has_data_option else "training config"}
    result = EvalResult(data=data_info, models=reports, comparison=comparison, warnings=warnings)
    json_path = out_dir / EVAL_JSON
    fileio.write_json(json_path, _finite(result.to_dict()))
    # An earlier evaluation's images, of one model or two, beside this one's: removed once this one's evaluation.json
    # names its own (removed first, an interrupted evaluation left the earlier evaluation.json naming gone files).
    for stale in set(one + two) - set(png_names):
        (out_dir / stale).unlink(missing_ok=True)
    result.json_path = str(json_path)
    return result


def _make_output(out_dir: Path, given: bool) -> None:
    """The output folder; the default one beside the model, where it cannot be made, asks for ``--output``."""
    try:
        fileio.ensure_writable_dir(out_dir)
    except KresError as err:
        if given:
            raise
        raise KresError(f"{str(err).removesuffix('; choose another output path')} (the default, beside the "
                        "model): pass --output a folder you can write to") from None


def _every_image(cfg: EvalConfig, folder: str | None, predictor: Predictor) -> bool:
    """Whether every image of the data folder is scored: asked for (``--all-images``), or a ``val/`` that has no
    ``train/`` beside it (nothing of it was trained on). Not the folder the model was trained on, whose images
    beyond its validation split were trained on."""
    from keras_resnet.data import check_split_names, is_split

    if folder is None:
        return False
    root = Path(folder).expanduser()
    if cfg.all_images:
        if not is_split(root):
            raise KresError(f"{root} has train/ and val/, and all of val/ is scored already: drop --all-images")
        trained_on = _trained_on(cfg.models[0], predictor)
        if trained_on and same_folder(trained_on, root):
            raise KresError(f"{predictor.path.name} was trained on {trained_on}: --all-images would score its "
                            "training images too; drop it to score the validation split, or name a folder of "
                            "held-out images")
        if trained_on and _inside_training_images(root, Path(trained_on).expanduser()):
            raise KresError(f"{root} holds images {predictor.path.name} was trained on (it was trained on "
                            f"{trained_on}): --all-images would score them; name a folder of held-out images")
        return True
    if len(_class_folders(root)) == 1:  # a lone validation/ (or Val/) is a folder of held-out images, not one class
        check_split_names(root, held_out_only=True)
    return (root / "val").is_dir() and not (root / "train").is_dir()


def _inside_training_images(root: Path, trained_on: Path) -> bool:
    """Whether ``root`` is a folder inside the training folder, other than its held-out ``val/`` (and what is in
    it): its ``train/``, or one class of a folder split by --val-split."""
    from keras_resnet.data import is_split

    root, trained_on = Path(os.path.realpath(root)), Path(os.path.realpath(trained_on))
    held_out = None if is_split(trained_on) else trained_on / "val"
    return (root.is_relative_to(trained_on) and root != trained_on
            and not (held_out is not None and root.is_relative_to(held_out)))


def _trained_on(model: str, predictor: Predictor) -> str | None:
    """The image folder the model was trained on, as its run recorded it; None for other data or no run."""
    try:
        return training_data_config(model, predictor.meta).get("data_dir")
    except KresError:
        return None


def _check_split_unchanged(model: str, predictor: Predictor, folder: str | None, datasets) -> bool:
    """Whether the validation split (of ``folder``, None where none is drawn) is that of the folder the model was
    trained on; where that folder has changed since (:func:`keras_resnet.runs.changed_split`), the split takes
    images the model trained on (evaluate scored them, and said nothing), and that is an error."""
    trained_on = _trained_on(model, predictor) if folder is not None else None
    if trained_on is None or not same_folder(trained_on, folder):
        return False
    problem = changed_split(model, folder, (datasets.num_train, datasets.num_val), predictor.path.name)
    if problem:
        raise KresError(f"{problem}: put the folder back as it was, or evaluate on held-out images (--data-dir DIR "
                        "--all-images)")
    return True


def _own_split(cfg: EvalConfig, predictor: Predictor, folder: str | None, datasets, split: bool) -> bool:
    """Whether the split scored is the run's own: of the folder it recorded, unchanged (:func:`_check_split_unchanged`),
    or of one that looks like that folder moved (:func:`_moved_training_folder`); either refuses what cannot be."""
    return (_check_split_unchanged(cfg.models[0], predictor, folder if split else None, datasets)
            or _moved_training_folder(cfg, predictor, folder, datasets, split))


def _moved_training_folder(cfg: EvalConfig, predictor: Predictor, folder: str | None, datasets, split: bool) -> bool:
    """Whether the data folder, not the one the run recorded, looks like it moved or copied: the model's classes and
    as many images as its run trained and validated on. Its split is the run's (kept for any folder: it may have
    moved), so ``--all-images`` is not hinted on it; asked for, it would score the training images (65.70% where
    the split gave 53.66%), and is refused as it is on the recorded folder."""
    if folder is None or not (split or cfg.all_images):
        return False
    total = datasets.num_val + (datasets.num_train if split else 0)
    trained_on = _like_training_folder(cfg.models[0], predictor, list(datasets.class_names), total)
    if trained_on is not None and cfg.all_images:
        raise KresError(f"{folder} looks like the folder {predictor.path.name} was trained on, moved or copied (the "
                        f"classes and the {total} images of {trained_on}, as its run recorded them): --all-images "
                        "would score its training images too; drop it to score the validation split, or name a "
                        "folder of held-out images")
    return trained_on is not None


def _like_training_folder(model: str, predictor: Predictor, class_names: list[str], total: int) -> str | None:
    """The image folder the model was trained on (as its run recorded it) where data of ``class_names`` and ``total``
    images could be it: the model's classes (as many, where it names none) and its run's count of images."""
    trained_on, counts = _trained_on(model, predictor), training_counts(model)
    if not trained_on or counts is None or sum(counts) != total:
        return None
    named = _named([predictor])
    if named and {class_key(n) for n in named[0].labels} != {class_key(n) for n in class_names}:
        return None
    return trained_on if named or len(class_names) == predictor.num_outputs else None


def _class_folders(root: Path) -> list[str]:
    from keras_resnet.data import class_folder_names

    try:
        return class_folder_names(root)
    except OSError:
        return []  # said by the class folder scan, with its fix


def skipped_warning(skipped: tuple[str, ...], folder) -> str:
    """What evaluation says of the ``skipped`` files of ``folder`` (:attr:`keras_resnet.data.Datasets.skipped`)."""
    return (f"skipped {counted(len(skipped), 'unreadable image file')} in {folder} (empty, truncated or not an "
            f"image: {first_five(skipped)}); the figures leave them out")


def _run(predictors: list[Predictor], dataset, total: int, batch_size: int, progress: ProgressFn | None):
    """Stream the batches once, through every model; keep only probabilities and labels."""
    probs: list[list[np.ndarray]] = [[] for _ in predictors]
    labels: list[np.ndarray] = []
    seconds = [0.0] * len(predictors)
    done = 0
    for images, targets in dataset.as_numpy_iterator():
        for i, p in enumerate(predictors):
            start = time.perf_counter()
            probs[i].append(p.predict(images, batch_size=batch_size))
            seconds[i] += time.perf_counter() - start
        labels.append(np.asarray(targets))
        done += len(images)
        if progress is not None:
            progress(done, total)
    if not labels:
        raise KresError("the evaluation split is empty: give the data a validation split with images in it")
    outputs = [_probabilities(p, np.concatenate(out)) for p, out in zip(predictors, probs)]
    return outputs, np.concatenate(labels), seconds


def _probabilities(predictor: Predictor, outputs: np.ndarray) -> np.ndarray:
    """A logits model's outputs through a softmax, so that its loss (and a comparison with a model of
    probabilities) is of probabilities: it scored the cross-entropy of clipped logits; other models' as they are."""
    if predictor.meta is None or predictor.meta.extra.get(SCORES_KEY) != "logits":
        return outputs
    exp = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _classes_seen(labels: np.ndarray) -> int:
    """How many classes the validation images hold (labels one-hot, or the models' output indices)."""
    return int(np.unique(labels if labels.ndim == 1 else np.argmax(labels, axis=1)).size)


def _class_order(predictors: list[Predictor], data_classes: list[str]) -> tuple[list[str], np.ndarray | None]:
    """The classes to score, and the model output of each of the data's classes (None: the same order).

    Where the models name their classes (meta.json), a data class is the output of its name: a folder of some of
    them, or in another order, scores right, and a class the model does not know is an error. Models with no
    names (or class_0, class_1, ...) take the data's classes in order, as many as they have outputs.
    """
    named = _named(predictors)
    if not named:
        for p in predictors:
            require_outputs_for(p.path.name, p.num_outputs, data_classes, "evaluate it on the data it was trained on")
        return data_classes, None
    labels = named[0].labels
    if any(p.labels != labels for p in named):
        classes = "; ".join(f"{name}: {len(p.labels)} ({first_five(p.labels)})"
                            for name, p in zip(_names(named), named))
        raise KresError(f"{' and '.join(_names(named))} have other classes ({classes}): compare two models of the "
                        "same classes")
    names = _names(predictors)  # two runs' best.keras by their paths
    namer = next(name for p, name in zip(predictors, names) if p is named[0])
    # the file of the names: meta.json, or a .tflite's labels.txt or card (all were called its meta.json)
    names_file = named[0].labels_from.name if named[0].labels_from is not None else META_FILENAME
    for p, name in zip(predictors, names):
        if p.num_outputs != len(labels):
            fix = ("compare two models of the same classes" if len(predictors) == 2
                   else f"its {names_file} belongs to another model: export it again from its run")
            raise KresError(f"{name} has {p.num_outputs} outputs for the {len(labels)} classes "
                            f"{namer}'s {names_file} names: {fix}")
    synthetic = "the synthetic data it was trained on (--dataset synthetic), or on " if generic_labels(labels) else ""
    outputs = outputs_of(labels, data_classes, named[0].path.name, f"evaluate it on {synthetic}data of its classes")
    return labels, None if outputs is None else np.array(outputs)


def _data_names_notes(predictors: list[Predictor], class_names: list[str]) -> list[str]:
    """The note, as export says it, for each model without a meta.json where the classes are the data's names in
    order (no model names them: :func:`_class_order`), and for each whose meta.json numbers its classes (class_0,
    ...) where the data's are named; evaluate scored them under those names without a word."""
    if _named(predictors):
        return []
    notes = [data_names_note(p.path.name, class_names) if meta_path(p.path) is None
             else numbered_names_note(p.path.name, list(p.meta.labels) if p.meta else [], class_names)
             for p in predictors]
    return [note for note in notes if note]


def _named(predictors: list[Predictor]) -> list[Predictor]:
    """The models whose meta.json (or a .tflite's card or labels.txt) names their classes: not class_0, class_1,
    ... (numbered where the names were not known), unless those are the names of the data it was trained on
    (:func:`keras_resnet.meta.numbers_are_names`)."""
    return [p for p in predictors if p.labels
            and (not generic_labels(p.labels) or numbers_are_names(p.labels, p.path, p.meta))]


def _finite(value):
    """NaN is not JSON: write null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
