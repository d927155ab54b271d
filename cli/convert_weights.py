"""``kres convert-weights``."""

from __future__ import annotations

import click

from kres.options import FOLDER_MODEL_ORDER, PathType, depth_option, image_size_option, num_classes_option


@click.command(help="Turn a torchvision ResNet checkpoint (.pth, .safetensors, .npz) or a keras.applications .h5 "
                    "into a .keras model that `kres train --weights` and `resnet(weights=PATH)` load. A .keras "
                    f"file, or a run or export folder (its {FOLDER_MODEL_ORDER}), is made again at --image-size or "
                    "--num-classes.")
@click.argument("checkpoint", type=PathType())
@depth_option()
@click.option("--output", "-o", required=True, type=PathType(dir_okay=False), help="The .keras file to write.")
@num_classes_option(default=None,
                    note="Default: the checkpoint's own (a different width keeps a fresh classifier).")
@image_size_option(default=None, note="Default: a .keras checkpoint's own, else 224.")
def convert_weights(checkpoint: str, depth: int, output: str, num_classes: int | None,
                    image_size: int | None) -> None:
    from keras_resnet.convert import ConvertConfig, convert_checkpoint
    from keras_resnet.weights import in_folder

    # progress, as export shows it (a folder's model by its name): stdout holds the result
    click.echo(f"... reading {in_folder(checkpoint)}", err=True)
    result = convert_checkpoint(ConvertConfig(checkpoint=checkpoint, depth=depth, output=output,
                                              num_classes=num_classes, image_size=image_size))
    top = f"{result.num_classes} classes" if result.num_classes else "no top"
    click.echo(f"Wrote {result.path}: ResNet-{result.depth} {result.variant}, {top}, {result.params:,} parameters")
    if result.beside:  # its source's class names, resize and data, so predict and evaluate read them
        click.echo(f"Wrote {' and '.join(path.name for path in result.beside)} beside it: its source's classes and "
                   "preprocessing")
    if result.meta_note:
        click.echo(f"note: {result.meta_note}", err=True)
