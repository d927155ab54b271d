"""``kres convert-weights``: read a checkpoint once (see :mod:`keras_resnet.weights`) and save it as a ``.keras``
model. It imports both the builder and the readers, so neither of those has to import the other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keras_resnet import fileio
from keras_resnet.errors import KresError
from keras_resnet.model import resnet
from keras_resnet.specs import depth_spec
from keras_resnet.weights import HEAD, assign, read_checkpoint


@dataclass
class ConvertConfig:
    """What ``kres convert-weights`` takes."""

    checkpoint: str
    depth: int
    output: str  # a .keras path
    num_classes: int | None = None  # None: the checkpoint's own classifier (none -> a model without a top)
    image_size: int = 224


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
    fileio.ensure_writable_dir(output.parent)
    checkpoint = read_checkpoint(cfg.checkpoint, builder=resnet)
    source_head = checkpoint.layers.get(HEAD)
    num_classes = cfg.num_classes or (int(source_head[0].shape[-1]) if source_head else None)
    model = resnet(cfg.depth, num_classes=num_classes or 1, include_top=num_classes is not None,
                   input_shape=(cfg.image_size, cfg.image_size, 3), variant=checkpoint.variant)
    report = assign(model, checkpoint, depth=cfg.depth, variant=checkpoint.variant)
    with fileio.atomic_path(output) as tmp:
        model.save(tmp)
    return ConvertResult(output, cfg.depth, checkpoint.variant, num_classes, int(model.count_params()), report.note)
