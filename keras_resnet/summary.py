"""Size and cost of a model: parameters, multiply-adds and the shape of each stage."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import keras

from keras_resnet.errors import KresError
from keras_resnet.model import depth_of, stage_output_names


@dataclass
class ModelSummary:
    name: str
    depth: int
    input_shape: list
    layers: int  # Keras layers, the input layer included
    weight_layers: int  # convs and dense layers on the main path: the "50" of ResNet-50
    trainable_params: int
    total_params: int
    macs: int  # multiply-adds of convs and dense layers for one image
    stages: dict[str, list] = field(default_factory=dict)  # stage -> output shape (no batch)
    output_shape: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _count(weights) -> int:
    return int(sum(math.prod(w.shape) for w in weights))


def layer_macs(layer) -> int:
    """Multiply-adds of one conv or dense layer for one image (0 for every other layer)."""
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        cin = layer.input.shape[-1]
        _, h, w, cout = layer.output.shape
        return int(h * w * cout * kh * kw * cin // layer.groups)
    if isinstance(layer, keras.layers.Dense):
        return int(layer.input.shape[-1] * layer.units)
    return 0


def summarize(model: keras.Model) -> ModelSummary:
    """Count what ``kres info`` prints. The input's height and width must be known (multiply-adds depend on them)."""
    if None in model.input_shape[1:3]:
        raise KresError(f"{model.name} takes any image size (input {tuple(model.input_shape)}): summarize a model "
                        "built with a fixed input_shape, e.g. (224, 224, 3)")
    depth = depth_of(model)
    stages = {"stem": list(model.get_layer("conv1_relu").output.shape[1:])}
    if any(layer.name == "pool1_pool" for layer in model.layers):
        stages["stem"] = list(model.get_layer("pool1_pool").output.shape[1:])
    for feature, layer in stage_output_names(depth).items():
        stages[feature] = list(model.get_layer(layer).output.shape[1:])
    weighted = [layer for layer in model.layers
                if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    return ModelSummary(
        name=model.name,
        depth=depth,
        input_shape=list(model.input_shape[1:]),
        layers=len(model.layers),
        weight_layers=sum(1 for layer in weighted if not layer.name.endswith("_0_conv")),
        trainable_params=_count(model.trainable_weights),
        total_params=_count(model.weights),
        macs=sum(layer_macs(layer) for layer in weighted),
        stages=stages,
        output_shape=_output_shape(model),
    )


def _output_shape(model: keras.Model) -> list:
    """The output's shape without the batch; one shape each for a model of several outputs (a backbone's C2..C5:
    the list of shapes was cut as if one shape, dropping C2 and keeping the batch of the others)."""
    if len(model.outputs) == 1:
        return list(model.outputs[0].shape[1:])
    return [list(output.shape[1:]) for output in model.outputs]
