"""Options shared by several commands, so each is spelled and validated once."""

from __future__ import annotations

import difflib
import math
import os

import click

from keras_resnet.runs import FOLDER_MODELS
from keras_resnet.specs import DEPTHS, MIN_IMAGE_SIZE, VARIANTS

FOLDER_MODEL_ORDER = ", else ".join(FOLDER_MODELS)  # for help texts: the order runs.folder_model picks in


class PathType(click.Path):
    """click's Path, but an empty one ("" from an unset shell variable) is an error: it meant the current folder,
    and ``kres export -o ""`` wrote its files there. An option named ``--...-dir`` is a folder: a file given there
    is said to be one (``--tfds-dir afile.txt`` was "does not exist")."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("is empty: give a file or folder name", param, ctx)
        folder = self.file_okay and param is not None and (param.name or "").endswith("_dir")
        if folder and isinstance(value, str) and os.path.isfile(os.path.expanduser(value)):
            self.fail(f"Directory '{value}' is a file.", param, ctx)  # click's words where file_okay=False
        return super().convert(value, param, ctx)


class DatasetName(click.ParamType):
    """--dataset: an empty name ("" from an unset shell variable) is refused here, as an empty path is; it reached
    TFDS, whose "Parsing builder name string  failed." did not say what was wrong."""

    name = "text"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("is empty: give a TFDS name (cifar10, ...), 'synthetic' or 'digits'", param, ctx)
        return value


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


class FiniteFloat(click.ParamType):
    """A real number, optionally in a range: NaN and infinity would train to a NaN model, so they are one line
    here, before TensorFlow is imported. ``off``: a value taken beside the range, which turns the option off."""

    name = "float"

    def __init__(self, min: float | None = None, max: float | None = None, min_open: bool = False,
                 max_open: bool = False, off: float | None = None):
        self.min, self.max, self.min_open, self.max_open, self.off = min, max, min_open, max_open, off

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if number == self.off:
            return number
        low = self.min is not None and (number <= self.min if self.min_open else number < self.min)
        high = self.max is not None and (number >= self.max if self.max_open else number > self.max)
        if (low or high) and self.off is not None:
            self.fail(f"{value!r} is neither {self.off:g} (off) nor in the range {self._range()}", param, ctx)
        if low or high:
            self.fail(f"{value!r} is not in the range {self._range()}", param, ctx)
        return number

    def _range(self) -> str:
        low = "" if self.min is None else f"{self.min}{'<' if self.min_open else '<='}"
        high = "" if self.max is None else f"{'<' if self.max_open else '<='}{self.max}"
        return f"{low}x{high}"


class Whole(click.IntRange):
    """``click.IntRange``, whose refusal of a word or a fraction says "is not a valid integer" (click's own said
    "'1.5' is not a valid integer range", and --help showed "INTEGER RANGE")."""

    name = "integer"


class SuggestingGroup(click.Group):
    """A group that answers a misspelt command with the one meant, as click does for a misspelt option."""

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as err:
            close = difflib.get_close_matches(args[0], self.list_commands(ctx), n=1) if args else []
            if not close:
                raise
            raise click.UsageError(f"{err.message} Did you mean '{close[0]}'?", ctx) from None


def depth_option(required: bool = True, default: int | None = None, note: str = ""):
    # Click treats an explicit default=None as a value, which would skip the required check.
    extra = {"default": default, "show_default": True} if default is not None else {}
    return click.option("--depth", type=DepthType(), required=required and default is None,
                        help="ResNet depth: " + ", ".join(map(str, DEPTHS)) + "." + note, **extra)


def variant_option():
    return click.option("--variant", type=click.Choice(list(VARIANTS)), default="v1.5", show_default=True,
                        help="v1.5: torchvision numerics (stride on the 3x3). v1: keras.applications layer for layer.")


# Bounds no real use reaches: a larger --image-size or --num-classes was a traceback from deep inside TensorFlow
# (or an out-of-memory error blaming --image-size), and 2**63 px printed a 31-digit multiply-add count.
MAX_IMAGE_SIZE = 4096
MAX_NUM_CLASSES = 100_000


def image_size_option(default: int | None = 224, note: str = ""):
    """--image-size, bounded alike in every command (--help shows the range after ``note``)."""
    return click.option("--image-size", type=Whole(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE), default=default,
                        show_default=default is not None,
                        help=f"Input side in pixels.{' ' + note if note else ''}")


def num_classes_option(default: int | None = 1000, least: int = 1, note: str = ""):
    """--num-classes, bounded alike in every command that takes it (--help shows the range)."""
    return click.option("--num-classes", type=Whole(least, MAX_NUM_CLASSES), default=default,
                        show_default=default is not None,
                        help=f"Classifier width.{' ' + note if note else ''}")
