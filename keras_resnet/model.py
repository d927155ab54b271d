"""ResNet-18..152 as plain functional Keras models.

Blocks are small functions on tensors built from one conv-bn-act helper, so the graph holds only stock
``keras.layers`` (plus one channel-reversing slice for the "caffe" input of v1). It serializes to
``.keras`` without custom objects, converts to TFLite and quantizes. Layer names follow
keras.applications (``conv2_block1_1_conv``), so weights load by name.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import keras
from keras import layers

from keras_resnet import _compat
from keras_resnet.errors import KresError
from keras_resnet.specs import (
    DEPTHS,
    FEATURE_NAMES,
    MIN_IMAGE_SIZE,
    NORMALIZATIONS,
    POOLINGS,
    STAGE_NAMES,
    STAGE_WIDTHS,
    STEMS,
    Variant,
    depth_spec,
    variant_spec,
)


@dataclass(frozen=True)
class _Build:
    """Per-model settings every conv-bn-act call needs."""

    variant: Variant
    zero_init_residual: bool


def _conv_bn(
    x, filters: int, kernel: int, stride: int, name: str, build: _Build, *, relu: bool = True,
    zero_gamma: bool = False,
):
    """Conv -> BN (-> ReLU). Strided convs larger than 1x1 pad explicitly and symmetrically,
    as torchvision does, instead of using TF's asymmetric "same"."""
    padding = "same"
    if stride > 1 and kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(filters, kernel, strides=stride, padding=padding,
                      use_bias=build.variant.conv_bias, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(
        epsilon=build.variant.bn_epsilon, momentum=build.variant.bn_momentum,
        gamma_initializer="zeros" if zero_gamma else "ones", name=f"{name}_bn")(x)
    if relu:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def _merge(shortcut, x, name: str, out_dtype: str | None):
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out", dtype=out_dtype)(x)


def basic_block(x, width: int, stride: int, name: str, build: _Build, *, projection: bool,
                out_dtype: str | None = None):
    """Two 3x3 convs; the shortcut is a 1x1 conv + BN projection where the shape changes."""
    shortcut = _conv_bn(x, width, 1, stride, f"{name}_0", build, relu=False) if projection else x
    x = _conv_bn(x, width, 3, stride, f"{name}_1", build)
    x = _conv_bn(x, width, 3, 1, f"{name}_2", build, relu=False, zero_gamma=build.zero_init_residual)
    return _merge(shortcut, x, name, out_dtype)


def bottleneck_block(x, width: int, stride: int, name: str, build: _Build, *, projection: bool,
                     out_dtype: str | None = None):
    """1x1 reduce, 3x3, 1x1 expand (x4). v1.5 strides the 3x3; v1 strides the first 1x1."""
    stride_1x1, stride_3x3 = (1, stride) if build.variant.stride_on_3x3 else (stride, 1)
    out = 4 * width
    shortcut = _conv_bn(x, out, 1, stride, f"{name}_0", build, relu=False) if projection else x
    x = _conv_bn(x, width, 1, stride_1x1, f"{name}_1", build)
    x = _conv_bn(x, width, 3, stride_3x3, f"{name}_2", build)
    x = _conv_bn(x, out, 1, 1, f"{name}_3", build, relu=False, zero_gamma=build.zero_init_residual)
    return _merge(shortcut, x, name, out_dtype)


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def _preprocess(x, variant: Variant, channels: int):
    """Raw 0-255 pixels -> normalised network input, as the model's first layer."""
    norm = NORMALIZATIONS[variant.normalization]
    mean, std = list(norm.mean), list(norm.std)
    if channels == 1:  # grayscale: one channel with the average statistics
        mean, std = [sum(mean) / 3], [sum(std) / 3]
    x = layers.Rescaling(scale=[1.0 / s for s in std], offset=[-m / s for m, s in zip(mean, std)],
                         name="preprocess")(x)
    if norm.bgr and channels == 3:
        x = x[..., ::-1]  # a plain op in .keras files; TFLite export folds it into conv1 (quantize.fuse_input_ops)
    return x


def is_channel_flip(node) -> bool:
    """Whether a graph node is the ``x[..., ::-1]`` RGB -> BGR flip that :func:`_preprocess` adds for v1."""
    args = node.arguments.args
    # a list after a .keras round trip, a tuple when built in this process
    return (_compat.is_getitem(node.operation) and len(args) == 2 and isinstance(args[1], (tuple, list))
            and tuple(args[1]) == (Ellipsis, slice(None, None, -1)))


def _stem(x, stem: str, build: _Build):
    if stem == "cifar":
        return _conv_bn(x, 64, 3, 1, "conv1", build)
    x = _conv_bn(x, 64, 7, 2, "conv1", build)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def _whole(value) -> bool:
    """A whole number (NumPy's too), not a bool and not a float such as 224.0."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_input_shape(input_shape: Sequence[int | None]) -> tuple:
    try:
        shape = (input_shape,) if isinstance(input_shape, (str, bytes)) else tuple(input_shape)  # "abc": 3 sides
    except TypeError:  # input_shape=224 was "'int' object is not iterable"
        shape = (input_shape,)
    if len(shape) != 3:
        raise KresError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    if not all(side is None or _whole(side) for side in shape):  # ('a', 32, 3) was "'<' not supported ..."
        raise KresError(f"input_shape must be (height, width, channels) in whole numbers (None for any size), got "
                        f"{input_shape!r}")
    height, width, channels = shape = tuple(None if side is None else int(side) for side in shape)
    if channels not in (1, 3) and height in (1, 3):  # channels first: "must have 1 or 3 channels, got 224"
        raise KresError(f"input_shape is (height, width, channels), channels last: got {shape}, use "
                        f"{(width, channels, height)}")
    if channels not in (1, 3):
        raise KresError(f"input must have 1 or 3 channels, got {channels}: convert images to RGB or grayscale")
    for side in (height, width):
        if side is not None and side < MIN_IMAGE_SIZE:
            raise KresError(f"image size {side} is too small: use {MIN_IMAGE_SIZE} px or more")
    return shape


def resnet(
    depth: int,
    *,
    num_classes: int = 1000,
    input_shape: Sequence[int | None] = (224, 224, 3),
    include_top: bool = True,
    pooling: str | None = "avg",
    variant: str = "v1.5",
    stem: str = "imagenet",
    zero_init_residual: bool = True,
    classifier_activation: str | None = "softmax",
    dropout: float = 0.0,
    weights: str | None = None,
    name: str | None = None,
) -> keras.Model:
    """Build a ResNet as a functional ``keras.Model`` that takes raw 0-255 RGB (or gray) pixels.

    Args:
        depth: 18, 34, 50, 101 or 152 (see ``keras_resnet.specs.DEPTHS``).
        num_classes: classifier width when ``include_top``.
        input_shape: ``(height, width, channels)``; sides of 32 px or more (or None), 1 or 3 channels.
        include_top: add global pooling and the ``predictions`` Dense layer.
        pooling: "avg", "max" or None: global pooling of the last stage (with or without the top).
        variant: "v1.5" (torchvision numerics) or "v1" (keras.applications numerics).
        stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3/1 conv, no pool).
        zero_init_residual: start each block's last BN gamma at zero, so blocks start as identities.
        classifier_activation: activation of ``predictions``; None for logits.
        dropout: dropout rate before ``predictions``.
        weights: None, "imagenet" or a path to a weights file (see ``keras_resnet.weights``).
        name: model name; defaults to ``resnet50`` (v1.5) or ``resnet50_v1``.
    """
    spec = depth_spec(depth)
    var = variant_spec(variant)
    shape = _check_input_shape(input_shape)
    _check_options(stem, pooling, include_top, num_classes)
    _check_settings(include_top, zero_init_residual, classifier_activation, dropout, name)
    if weights is not None:  # before a ResNet-152 is built for nothing
        from keras_resnet.weights import check_weights  # imported late: it pulls in file formats

        check_weights(weights, depth=depth, variant=variant)

    build = _Build(var, zero_init_residual)
    inputs = keras.Input(shape, name="image")
    x = _preprocess(inputs, var, shape[2])
    x = _stem(x, stem, build)
    # Under mixed precision the model's output stays float32: without a top, the last block casts.
    x = _stages(x, spec, build, last_dtype="float32" if pooling is None and not include_top else None)
    x = _top(x, pooling, include_top, dropout, num_classes, classifier_activation)

    default_name = f"resnet{depth}" + ("" if variant == "v1.5" else "_v1")
    model = keras.Model(inputs, x, name=name or default_name)
    if weights is not None:
        from keras_resnet.weights import load_pretrained  # imported late: it pulls in file formats

        load_pretrained(model, weights, depth=int(depth), variant=variant, include_top=include_top,
                        builder=resnet)
    return model


def _stages(x, spec, build: _Build, last_dtype: str | None):
    """conv2..conv5: each stage's blocks, the first one strided (past conv2) and projected where the shape
    changes."""
    block_fn = BLOCKS[spec.block]
    in_channels = 64
    for stage, (stage_name, width, repeats) in enumerate(zip(STAGE_NAMES, STAGE_WIDTHS, spec.repeats)):
        for index in range(repeats):
            stride = 2 if stage > 0 and index == 0 else 1
            last = stage == 3 and index == repeats - 1
            x = block_fn(x, width, stride, f"{stage_name}_block{index + 1}", build,
                         projection=stride != 1 or in_channels != width * spec.expansion,
                         out_dtype=last_dtype if last else None)
            in_channels = width * spec.expansion
    return x


def _check_options(stem: str, pooling: str | None, include_top: bool, num_classes) -> None:
    if stem not in STEMS:
        raise KresError(f"unknown stem {stem!r}: choose one of {', '.join(STEMS)}")
    if pooling not in POOLINGS:
        raise KresError(f"unknown pooling {pooling!r}: choose 'avg', 'max' or None")
    if include_top and pooling is None:
        raise KresError("include_top needs pooling='avg' or 'max'")
    # NumPy's integers (y.max() + 1) are taken; True is not a class count
    if include_top and (not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool)
                        or num_classes < 1):
        raise KresError(f"num_classes must be a positive integer, got {num_classes!r}")


def _check_settings(include_top, zero_init_residual, classifier_activation, dropout, name) -> None:
    """The arguments Keras would refuse with a traceback, or take as something else ("no" is true)."""
    for flag, value in (("include_top", include_top), ("zero_init_residual", zero_init_residual)):
        if value not in (True, False):  # NumPy's bools and 0/1 are equal to one of them
            raise KresError(f"{flag} must be True or False, got {value!r}")
    if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise KresError(f"dropout must be a rate from 0 up to (not including) 1, got {dropout!r}")
    if include_top:
        try:
            keras.activations.get(classifier_activation)
        except (ValueError, TypeError):
            raise KresError(f"unknown classifier_activation {classifier_activation!r}: pass the name of a Keras "
                            "activation ('softmax', 'sigmoid') or None for logits") from None
    if name is not None and (not isinstance(name, str) or "/" in name):
        raise KresError(f"name must be a string without '/', got {name!r}")


def _top(x, pooling: str | None, include_top: bool, dropout: float, num_classes: int,
         classifier_activation: str | None):
    """Global pooling and the classifier, both in float32 (the model's output stays float32 under mixed
    precision)."""
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool", dtype="float32")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool", dtype="float32")(x)
    if include_top:
        if dropout:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(int(num_classes), activation=classifier_activation, name="predictions",
                         dtype="float32")(x)
    return x


def _shorthand(depth: int):
    def build(**kwargs) -> keras.Model:
        return resnet(depth, **kwargs)

    build.__name__ = build.__qualname__ = f"ResNet{depth}"
    signature = inspect.signature(resnet)  # help() and editors showed (**kwargs)
    build.__signature__ = signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "depth"])
    build.__doc__ = f"ResNet-{depth}: ``resnet({depth}, **kwargs)``; see :func:`resnet`."
    return build


ResNet18 = _shorthand(18)
ResNet34 = _shorthand(34)
ResNet50 = _shorthand(50)
ResNet101 = _shorthand(101)
ResNet152 = _shorthand(152)


def stage_output_names(depth: int) -> dict[str, str]:
    """``{"C2": "conv2_block3_out", ...}``: the layer that ends each stage."""
    spec = depth_spec(depth)
    return {feature: f"{stage}_block{repeats}_out"
            for feature, stage, repeats in zip(FEATURE_NAMES, STAGE_NAMES, spec.repeats)}


def depth_of(model: keras.Model) -> int:
    """Recover the depth of a model built by :func:`resnet` from its layer names."""
    names = {layer.name for layer in model.layers}
    bottleneck = "conv2_block1_3_conv" in names  # ResNet-34 and -50 repeat their blocks alike (3, 4, 6, 3)
    for depth, spec in DEPTHS.items():
        if (spec.block == "bottleneck") == bottleneck and all(
                n in names for n in stage_output_names(depth).values()) and not any(
                n in names for n in _next_block_names(depth)):
            return depth
    raise KresError(f"model {model.name!r} is not a keras_resnet ResNet: its stage layers are missing")


def _next_block_names(depth: int) -> list[str]:
    spec = depth_spec(depth)
    return [f"{stage}_block{repeats + 1}_out" for stage, repeats in zip(STAGE_NAMES, spec.repeats)]


def feature_model(model: keras.Model) -> keras.Model:
    """A model with the same inputs and weights that outputs ``{"C2": ..., "C5": ...}``.

    C2..C5 have strides 4, 8, 16 and 32 (4x less with the cifar stem, which neither strides nor pools): the usual
    inputs of an FPN.
    """
    names = stage_output_names(depth_of(model))
    outputs = {feature: model.get_layer(layer).output for feature, layer in names.items()}
    return keras.Model(model.inputs, outputs, name=f"{model.name}_features")


def backbone(depth: int, **kwargs) -> keras.Model:
    """``feature_model(resnet(depth, include_top=False, pooling=None, **kwargs))``."""
    if given := sorted({"include_top", "pooling"} & set(kwargs)):  # a TypeError: "got multiple values"
        raise KresError(f"backbone() outputs C2..C5, with no top or pooling: leave out {' and '.join(given)}, or "
                        "build resnet(depth, include_top=..., pooling=...)")
    return feature_model(resnet(depth, include_top=False, pooling=None, **kwargs))
