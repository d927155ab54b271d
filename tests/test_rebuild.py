from __future__ import annotations

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
