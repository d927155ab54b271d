"""``kres info``."""

from __future__ import annotations

import json

import click

from keras_resnet.errors import counted
from keras_resnet.specs import STEMS
from kres.options import depth_option, image_size_option, num_classes_option, variant_option


@click.command(help="Print the layers, parameters, multiply-adds and stage output shapes of a ResNet.")
@depth_option()
@image_size_option()
@num_classes_option()
@variant_option()
@click.option("--stem", type=click.Choice(STEMS), default=STEMS[0], show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(depth: int, image_size: int, num_classes: int, variant: str, stem: str, as_json: bool) -> None:
    from keras_resnet.model import resnet
    from keras_resnet.summary import summarize

    model = resnet(depth, num_classes=num_classes, input_shape=(image_size, image_size, 3),
                   variant=variant, stem=stem)
    summary = summarize(model)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        return
    classes = counted(num_classes, "class", "classes")
    click.echo(f"{summary.name} ({variant}, {stem} stem) at {image_size}x{image_size}x3, {classes}")
    click.echo(f"  weight layers     {summary.weight_layers} (convs and dense on the main path)")
    click.echo(f"  keras layers      {summary.layers}")
    click.echo(f"  trainable params  {summary.trainable_params:,}")
    click.echo(f"  total params      {summary.total_params:,}")
    click.echo(f"  multiply-adds     {_scaled(summary.macs)} ({summary.macs:,})")
    click.echo("  stage outputs:")
    for stage, shape in summary.stages.items():
        click.echo(f"    {stage:<5} {' x '.join(map(str, shape))}")
    click.echo(f"    out   {' x '.join(map(str, summary.output_shape))}")


def _scaled(count: int) -> str:
    """``4.09 G`` (ResNet-50 at 224 px), ``14.46 T`` (ResNet-18 at 20000: it said ``14457.60 G``), ``148.05 M``."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count:,}"
