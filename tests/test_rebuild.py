from __future__ import annotations

import warnings

import keras
import numpy as np

from keras_resnet.model import resnet
from keras_resnet.rebuild import as_float32, float32_clone, is_float32


def test_a_mixed_precision_model_rebuilds_under_float32_with_the_same_outputs():
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = resnet(18, num_classes=3, input_shape=(32, 32, 3), variant="v1", stem="cifar")
    finally:
        keras.config.set_dtype_policy(previous)
    for layer in mixed.layers[-3:]:
        layer.trainable = False
    assert not is_float32(mixed)
    rebuilt = as_float32(mixed)
    assert is_float32(rebuilt) and [la.name for la in rebuilt.layers] == [la.name for la in mixed.layers]
    assert not rebuilt.layers[-1].trainable  # as_float32 keeps each layer's flag
    assert all(layer.trainable for layer in float32_clone(mixed, trainable=True).layers)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    assert np.allclose(rebuilt.predict_on_batch(images), mixed.predict_on_batch(images), atol=2e-2)
    assert as_float32(rebuilt) is rebuilt


def test_the_float32_clone_of_a_compiled_model_saves_no_optimizer(tmp_path):
    model = resnet(18, num_classes=3, input_shape=(32, 32, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    model.train_on_batch(np.zeros((2, 32, 32, 3), np.float32), np.zeros((2,), np.int32))
    clone = float32_clone(model, trainable=True)
    assert not clone.compiled and getattr(clone, "optimizer", None) is None and clone.name == model.name
    clone.set_weights(model.get_weights())
    clone.save(tmp_path / "m.keras")
    weight_bytes = sum(w.numpy().nbytes for w in clone.weights)
    size = (tmp_path / "m.keras").stat().st_size
    assert weight_bytes < size < 1.05 * weight_bytes  # with the optimizer's momentum it was twice the weights
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert getattr(loaded, "optimizer", None) is None
    # The same structure as the model: one named input and one output, not lists of one (which would make every
    # direct call of the loaded file warn that its inputs do not match).
    config, original = clone.get_config(), model.get_config()
    assert (config["input_layers"], config["output_layers"]) == (original["input_layers"], original["output_layers"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tuple(loaded(np.zeros((2, 32, 32, 3), np.float32)).shape) == (2, 3)
