"""The one float32 rebuild of a Keras model: the saved ``best.keras``/``last.keras`` (train), the model that is
converted (export) and the model QAT starts from all come from here.

A mixed-precision model cannot be converted as it is (the TFLite converter rejects float16 compute graphs) and
should not be saved as it is (a float16 ``.keras`` runs slowly or not at all on a CPU). The rebuild is public Keras:
``keras.models.clone_model`` with each layer re-created from its config under a float32 policy. This module
imports neither train nor export nor qat, so each of them can ask it.
"""

from __future__ import annotations

import os

from keras_resnet import runs
from keras_resnet.errors import KresError


def is_float32(model) -> bool:
    return all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers)


def float32_clone(model, *, trainable: bool | None = None):
    """The same graph, uncompiled, with every layer computing in float32 and new (unset) weights; ``trainable``
    sets every layer's flag (None keeps each layer's own). Operations that are not layers (the v1 channel flip) hold no
    weights and no dtype, so the clone shares them."""
    import keras

    def float32_layer(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer
        config = {**layer.get_config(), "dtype": "float32"}
        if trainable is not None:
            config["trainable"] = trainable
        return layer.__class__.from_config(config)

    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("float32")  # the Input layers the clone creates take the global policy
    try:
        clone = keras.models.clone_model(model, clone_function=float32_layer)
    finally:
        keras.config.set_dtype_policy(previous)
    if clone.compiled:  # Keras 3 compiles the clone of a compiled model, and a saved file would carry a fresh
        # optimizer's zero-filled slots: as many bytes again as the weights. The same layers, uncompiled, with the
        # same input and output structure (``.input``/``.output``: a single tensor stays one, not a list of one):
        clone = keras.Model(clone.input, clone.output, name=clone.name)
    if not is_float32(clone):
        raise KresError(f"could not rebuild {model.name} under float32: save it with a float32 policy")
    return clone


def as_float32(model):
    """``model`` itself when every layer computes in float32, else a float32 rebuild with the same weights."""
    if is_float32(model):
        return model
    rebuilt = float32_clone(model)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def load_float32_model(path: str | os.PathLike):
    """Load a ``.keras`` file (one-line KresError where it is not one) and rebuild it under float32 if needed."""
    return as_float32(runs.load_keras(path))
