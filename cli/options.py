"""Options shared by several commands, so each is spelled and validated once."""

from __future__ import annotations

import click

from keras_resnet.specs import DEPTHS, MIN_IMAGE_SIZE, VARIANTS


class DepthType(click.ParamType):
    """A depth from the table; anything else is one line that lists the valid depths."""

    name = "depth"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and value in DEPTHS:
            return value
        try:
            depth = int(value)
        except (TypeError, ValueError):
            depth = None
        if depth not in DEPTHS:
            self.fail(f"unsupported depth {value!r}: choose one of {', '.join(map(str, DEPTHS))}", param, ctx)
        return depth

    def get_metavar(self, param, ctx=None):
        return "[" + "|".join(map(str, DEPTHS)) + "]"


def depth_option(required: bool = True, default: int | None = None):
    # Click treats an explicit default=None as a value, which would skip the required check.
    extra = {"default": default, "show_default": True} if default is not None else {}
    return click.option("--depth", type=DepthType(), required=required and default is None,
                        help="ResNet depth: " + ", ".join(map(str, DEPTHS)) + ".", **extra)


def variant_option():
    return click.option("--variant", type=click.Choice(list(VARIANTS)), default="v1.5", show_default=True,
                        help="v1.5: torchvision numerics (stride on the 3x3). v1: keras.applications layer for layer.")


def image_size_option(default: int | None = 224):
    return click.option("--image-size", type=click.IntRange(min=MIN_IMAGE_SIZE), default=default,
                        show_default=default is not None, help=f"Input side in pixels ({MIN_IMAGE_SIZE} or more).")
