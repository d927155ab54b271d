"""What each ResNet is: the depth table, the variants and the input normalisations.

Everything that differs between depths or variants is read from here: the builder, the CLI's
``--depth`` choices, the tests and the exporters never spell an architecture out themselves.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from keras_resnet.errors import KresError

STAGE_WIDTHS = (64, 128, 256, 512)
"""Filters of the first conv of each stage (C2..C5); a bottleneck block's output is 4x this."""

STAGE_NAMES = ("conv2", "conv3", "conv4", "conv5")
FEATURE_NAMES = ("C2", "C3", "C4", "C5")


@dataclass(frozen=True)
class DepthSpec:
    block: str  # "basic" or "bottleneck"
    repeats: tuple[int, int, int, int]

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1


DEPTHS: dict[int, DepthSpec] = {
    18: DepthSpec("basic", (2, 2, 2, 2)),
    34: DepthSpec("basic", (3, 4, 6, 3)),
    50: DepthSpec("bottleneck", (3, 4, 6, 3)),
    101: DepthSpec("bottleneck", (3, 4, 23, 3)),
    152: DepthSpec("bottleneck", (3, 8, 36, 3)),
}


@dataclass(frozen=True)
class Normalization:
    """How raw 0-255 RGB pixels become the network's input: ``(x * scale_rgb[c]) + offset_rgb[c]``.

    ``bgr`` reverses the channel order after scaling (the "caffe" convention of keras.applications).
    """

    name: str
    mean: tuple[float, float, float]  # in 0-255 units, RGB order
    std: tuple[float, float, float]  # in 0-255 units, RGB order
    bgr: bool = False


NORMALIZATIONS: dict[str, Normalization] = {
    # torchvision / timm ImageNet statistics, expressed in pixel units.
    "torch": Normalization(
        "torch", (0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255)
    ),
    # keras.applications.resnet.preprocess_input: RGB->BGR, subtract the ImageNet mean, no scaling.
    "caffe": Normalization("caffe", (123.68, 116.779, 103.939), (1.0, 1.0, 1.0), bgr=True),
}


@dataclass(frozen=True)
class Variant:
    """Numerics that separate torchvision-style v1.5 from keras.applications-style v1."""

    name: str
    stride_on_3x3: bool  # bottleneck stride on the 3x3 (v1.5) or on the first 1x1 (v1)
    conv_bias: bool
    bn_epsilon: float
    bn_momentum: float
    normalization: str  # key of NORMALIZATIONS


VARIANTS: dict[str, Variant] = {
    "v1.5": Variant("v1.5", stride_on_3x3=True, conv_bias=False, bn_epsilon=1e-5, bn_momentum=0.9,
                    normalization="torch"),
    "v1": Variant("v1", stride_on_3x3=False, conv_bias=True, bn_epsilon=1.001e-5, bn_momentum=0.99,
                  normalization="caffe"),
}

STEMS = ("imagenet", "cifar")
POOLINGS = ("avg", "max", None)
MIN_IMAGE_SIZE = 32

# Training choices, here so that the CLI lists them without starting Keras; distribute, optim and the
# benchmarks validate against the same tuples.
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")  # the Keras dtype policies a model is built under
PRECISIONS = ("auto", *POLICIES)  # --precision: "auto" picks a policy for the hardware
OPTIMIZERS = ("sgd", "adamw")
MAX_EPOCHS = 100_000  # far beyond any recipe; a larger count overflowed the step counter (a traceback)
MAX_SEED = 2**32 - 1  # NumPy's seeds (keras.utils.set_random_seed) stop here

# Training options' bounds, checked by kres train while parsing and by the library (train.resolve, data.validate).
# Far above any rate that trains (the recipes' are 0.8 at most), and far below what overflows: TensorFlow casts the
# scaled rate to float32 (--lr 1e300 printed NumPy's "overflow encountered in cast"), and --lr 1e308 times a batch
# above 256 was inf ("cannot write config.json: a value is not a finite number").
MAX_LR = 10**9
# Keras's SGD and AdamW shrink the kernels by the learning rate times the weight decay each step: the recipes' are
# 5e-5 to 5e-4 (sgd) and 0.05 (adamw). Above 1 the run learned nothing without a word (--weight-decay 4 ended at 11%
# on the digits), from 1e9 it diverged blaming --lr, and 1e300 printed NumPy's "overflow encountered in cast" first.
MAX_WEIGHT_DECAY = 1
# The most below 1 that float32, which trains, keeps apart from 1: --ema 0.99999999999 was 1.0 there (the saved
# average never left the first step's weights) and --label-smoothing 0.99999999999 made every target uniform.
BELOW_ONE = 0.999_999
# Mixup and CutMix draw their blend from Beta(alpha, alpha) through TensorFlow's gamma sampler: below 0.05 its
# draws stop at float32's least normal number and blended half and half (--mixup 1e-6: every batch 50/50, the
# opposite of nearly no mixing); at 1,000 every blend is already 0.5 +- 0.011, and 1e300 overflowed to a NaN loss.
MIX_ALPHA = (0.05, 1000)


def depth_spec(depth: int) -> DepthSpec:
    """The spec of ``depth``, or a one-line error that lists the valid depths."""
    try:  # a whole number (NumPy's too) or its digits; 18.9 was taken as 18
        return DEPTHS[int(depth) if isinstance(depth, str) else operator.index(depth)]
    except (KeyError, TypeError, ValueError):
        valid = ", ".join(str(d) for d in DEPTHS)
        raise KresError(f"unsupported depth {depth!r}: choose one of {valid}") from None


def largest_activation(depth: int, stem: str, image_size: int) -> tuple[int, str]:
    """The values in the largest activation one image makes (the stem's conv output, or a bottleneck net's first
    stage at 4x its width: what training holds at least once per image, with the gradient of each), and its shape
    HxWxC. The imagenet stem's 7x7/2 conv and 3x3/2 max-pool each halve the side (rounding up); the cifar stem's
    3x3/1 conv neither."""
    side = math.ceil(image_size / 2) if stem == "imagenet" else image_size
    stage = math.ceil(side / 2) if stem == "imagenet" else side
    width = STAGE_WIDTHS[0] * depth_spec(depth).expansion
    return max([(side * side * STAGE_WIDTHS[0], f"{side}x{side}x{STAGE_WIDTHS[0]}"),
                (stage * stage * width, f"{stage}x{stage}x{width}")], key=lambda found: found[0])  # the stem's on a tie


def variant_spec(variant: str) -> Variant:
    try:
        return VARIANTS[variant]
    except (KeyError, TypeError):  # TypeError: a list, unhashable
        raise KresError(f"unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}") from None
