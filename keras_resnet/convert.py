"""``kres convert-weights``: read a checkpoint once (see :mod:`keras_resnet.weights`) and save it as a ``.keras``
model. It imports both the builder and the readers, so neither of those has to import the other."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from keras_resnet import fileio, runs
from keras_resnet.errors import KresError
from keras_resnet.model import resnet
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


def convert_checkpoint(cfg: ConvertConfig) -> ConvertResult:
    """Read a checkpoint once and save it as a ``.keras`` model that ``resnet(weights=PATH)`` loads quickly."""
    output = Path(cfg.output)
    if output.suffix != ".keras":
        raise KresError(f"--output must end in .keras, got {output}")
    depth_spec(cfg.depth)
    source = checkpoint_path(cfg.checkpoint)  # a run or export folder: its best.keras, as --weights takes it
    _check_output(source, output)
    fileio.ensure_writable_dir(output.parent)
    checkpoint = read_checkpoint(source, builder=resnet)
    source_head = checkpoint.layers.get(HEAD)
    num_classes = cfg.num_classes or (int(source_head[0].shape[-1]) if source_head else None)
    size = cfg.image_size or _keras_input_size(source) or DEFAULT_IMAGE_SIZE
    # the stem as the checkpoint's first convolution has it: a cifar-stem run's was refused for its 3x3 conv1
    model = resnet(cfg.depth, num_classes=num_classes or 1, include_top=num_classes is not None,
                   input_shape=(size, size, 3), variant=checkpoint.variant, stem=checkpoint_stem(checkpoint.layers))
    report = assign(model, checkpoint, depth=cfg.depth, variant=checkpoint.variant,
                    shape_fix="pass the depth the checkpoint was made for")
    with fileio.atomic_path(output) as tmp:
        model.save(tmp)
    return ConvertResult(output, cfg.depth, checkpoint.variant, num_classes, int(model.count_params()), report.note)


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
