"""``kres convert-weights``: read a checkpoint once (see :mod:`keras_resnet.weights`) and save it as a ``.keras``
model. It imports both the builder and the readers, so neither of those has to import the other."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from keras_resnet import fileio, runs
from keras_resnet.errors import KresError, counted, first_line
from keras_resnet.meta import (
    META_FILENAME,
    RESIZE_KEY,
    WEIGHTS_DIGEST,
    ModelMeta,
    check_describes,
    find_meta,
    model_resize,
    weights_digest,
    with_scores,
)
from keras_resnet.model import resnet
from keras_resnet.runs import training_data_config
from keras_resnet.specs import depth_spec
from keras_resnet.weights import HEAD, assign, checkpoint_path, checkpoint_stem, read_checkpoint

DEFAULT_IMAGE_SIZE = 224  # torchvision's and keras.applications' ImageNet models


@dataclass
class ConvertConfig:
    """What ``kres convert-weights`` takes."""

    checkpoint: str  # a weights file, or a run or export folder (its model: runs.folder_model)
    depth: int
    output: str  # a .keras path
    num_classes: int | None = None  # None: the checkpoint's own classifier (none -> a model without a top)
    image_size: int | None = None  # None: a .keras checkpoint's own input size, else DEFAULT_IMAGE_SIZE


@dataclass
class ConvertResult:
    path: Path
    depth: int
    variant: str
    num_classes: int | None  # None: saved without a top
    params: int
    note: str
    beside: list[Path] = field(default_factory=list)  # meta.json and labels.txt written beside it (its source's)
    meta_note: str = ""  # one line where the source's meta.json could not come along (other classes)


def convert_checkpoint(cfg: ConvertConfig) -> ConvertResult:
    """Read a checkpoint once and save it as a ``.keras`` model that ``resnet(weights=PATH)`` loads quickly, with
    the facts of its source's meta.json (class names, resize, data) in a meta.json beside it."""
    output = Path(cfg.output)
    if output.suffix != ".keras":
        raise KresError(f"--output must end in .keras, got {output}: try {output.with_suffix('.keras')}")
    depth_spec(cfg.depth)
    source = checkpoint_path(cfg.checkpoint)  # a run or export folder: its best.keras, as --weights takes it
    _check_output(source, output)
    fileio.ensure_writable_dir(output.parent)
    found, unread = _source_meta(source, output)
    checkpoint = read_checkpoint(source, builder=resnet)
    source_head = checkpoint.layers.get(HEAD)
    num_classes = cfg.num_classes or (int(source_head[0].shape[-1]) if source_head else None)
    source_size = _keras_input_size(source)
    size = cfg.image_size or source_size or DEFAULT_IMAGE_SIZE
    # the stem as the checkpoint's first convolution has it: a cifar-stem run's was refused for its 3x3 conv1
    model = resnet(cfg.depth, num_classes=num_classes or 1, include_top=num_classes is not None,
                   input_shape=(size, size, 3), variant=checkpoint.variant, stem=checkpoint_stem(checkpoint.layers))
    report = assign(model, checkpoint, depth=cfg.depth, variant=checkpoint.variant,
                    shape_fix="pass the depth the checkpoint was made for")
    meta, meta_note = _converted_meta(found, source, source_size, source_head, model, output)
    files = _beside(meta, output) if meta is not None else {}
    _save_with(model, output, files)
    return ConvertResult(output, cfg.depth, checkpoint.variant, num_classes, int(model.count_params()), report.note,
                         list(files), meta_note or unread)


def _source_meta(source: Path, output: Path) -> tuple[ModelMeta | None, str]:
    """The meta.json of a ``.keras`` source, or None and why none is written beside ``output`` (a damaged one
    refused the conversion, which needs none)."""
    if source.suffix.lower() != ".keras":
        return None, ""
    try:
        return find_meta(source), ""
    except KresError as err:
        return None, _no_meta(output, first_line(err))


def _no_meta(output: Path, why: str) -> str:
    """The note of a conversion whose source's meta.json does not come along, and ``why``."""
    return f"no {META_FILENAME} is written beside {output.name}: {why}"


def _save_with(model, output: Path, files: dict[Path, str]) -> None:
    """The model, after the meta.json and labels.txt beside it (``files``): a run stopped between them leaves those,
    which the same command keeps and goes on; one whose model could not be written removes them."""
    for path, text in files.items():
        fileio.write_text(path, text)
    try:
        with fileio.atomic_path(output) as tmp:
            model.save(tmp)
    except BaseException:
        for path in files:
            path.unlink(missing_ok=True)
        raise


def _converted_meta(found: ModelMeta | None, source: Path, source_size: int | None, source_head, model,
                    output: Path) -> tuple[ModelMeta | None, str]:
    """The meta.json of the converted ``model``: the facts read off it, with the class names and ``extra`` of its
    ``source``'s (``found``; a run's gains the resize and data its config.json records, as an export's has them),
    and a weights digest of its own where the source's had one; ``source_size`` is the source's input side. None
    where there is no source meta.json, or where the classes are new (--num-classes): then a note says why."""
    if found is None:
        return None, ""
    own = ModelMeta.from_model(model)
    classes = int(source_head[0].shape[-1]) if source_head else 0
    try:
        check_describes(found, replace(own, input_shape=[source_size, source_size, 3], labels=["?"] * classes), source)
    except KresError as err:  # another model's (a fine-tuned one saved into its run's folder): not carried over
        return None, _no_meta(output, first_line(err))
    if len(own.labels) != len(found.labels):
        return None, _no_meta(output, f"its classifier is new ({counted(len(own.labels), 'class', 'classes')}; "
                                      f"{source.name}'s {META_FILENAME} names {len(found.labels)}), so its classes "
                                      f"have no names yet; fine-tune it on your data (kres train --weights {output}) "
                                      "to name them")
    extra = dict(found.extra)
    if own.input_shape != [source_size, source_size, 3]:  # measured at the source's size, not this one
        extra = {key: value for key, value in extra.items() if key not in ("val_accuracy", "best_val_accuracy")}
    try:
        data = training_data_config(source, found)
    except KresError:  # none recorded (a model saved from Python): the source's extra as it is
        data = None
    if data is not None:
        extra = {**extra, "data": data, RESIZE_KEY: model_resize(extra, data)}
    if WEIGHTS_DIGEST in extra:
        extra[WEIGHTS_DIGEST] = weights_digest(model)
    return with_scores(replace(own, labels=list(found.labels), extra=extra), model), ""


def _beside(meta: ModelMeta, output: Path) -> dict[Path, str]:
    """The meta.json and labels.txt to write beside the converted model, and their text (those there already for
    this model stay); ones of another model there (its run's, another conversion's) are a KresError: they are never
    replaced."""
    meta_json = output.parent / META_FILENAME
    files = {meta_json: fileio.json_text(meta_json, meta.to_dict())}
    if meta.labels:
        files[output.parent / runs.LABELS_FILE] = runs.labels_text(meta.labels)
    for path in files:
        if path.exists() and not _describes(path, meta):
            raise KresError(f"{path} beside --output {output} is another model's: choose an --output in a folder of "
                            f"its own, where {output.name}'s {path.name} is written beside it")
    return {path: text for path, text in files.items() if not path.exists()}


def _describes(path: Path, meta: ModelMeta) -> bool:
    """Whether the meta.json or labels.txt at ``path`` says what ``meta`` does of the model: its architecture,
    input, class names and resize (a converted run's own folder, at its size: kept, as written before)."""
    try:
        if path.name == runs.LABELS_FILE:
            return path.read_text(encoding="utf-8").splitlines() == list(meta.labels)
        there = ModelMeta.load(path.parent)
    except (OSError, ValueError):  # unreadable, not UTF-8, not a meta.json (a KresError): not this model's
        return False
    facts = ("depth", "variant", "stem", "input_shape", "labels", "normalization", "mean", "std")
    return all(getattr(there, name) == getattr(meta, name) for name in facts) and \
        there.extra.get(RESIZE_KEY) in (None, meta.extra.get(RESIZE_KEY))  # a run's: its config.json says it


def _check_output(checkpoint: Path, output: Path) -> None:
    """Never write over a file: ``-o best.keras`` of a run replaced the model its meta.json describes, and an
    --output that is the checkpoint itself replaced the only copy of the weights."""
    if not (output.exists() or output.is_symlink()):
        return
    if checkpoint.exists() and os.path.samefile(checkpoint, output):
        raise KresError(f"--output {output} is the checkpoint being converted: choose another --output")
    if output.name in runs.MODEL_NAMES and runs.is_run_dir(output.parent):
        raise KresError(f"--output {output} is the model of the run {output.parent}: choose another --output")
    raise KresError(f"--output {output} exists: choose another --output, or remove that file first")


def _keras_input_size(path: Path) -> int | None:
    """The input side of a ``.keras`` model with a square input, read from its config (no Keras needed); None for
    other files, so a checkpoint from a 32 px run converts to a 32 px model unless --image-size says otherwise."""
    if path.suffix.lower() != ".keras":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            layers = json.loads(archive.read("config.json"))["config"]["layers"]
        shape = next(layer["config"]["batch_shape"] for layer in layers if layer["class_name"] == "InputLayer")
    except (OSError, ValueError, KeyError, TypeError, StopIteration, zipfile.BadZipFile):
        return None  # read_checkpoint says what is wrong with the file
    return shape[1] if len(shape) == 4 and shape[1] == shape[2] and isinstance(shape[1], int) else None
