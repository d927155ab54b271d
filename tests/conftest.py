"""Shared test settings: TensorFlow backend, quiet logs, small inputs."""

import io
import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

DIGITS_EPOCHS = 6


@pytest.fixture(scope="session")
def trained_digits_run(tmp_path_factory):
    """A run directory (best.keras, meta.json, config.json) of ResNet-18 trained on the built-in digits at 32 px
    with the digits recipe (imagenet stem), once per test session: about 97% validation top-1 in well under a
    minute of two CPU cores. For tests whose bounds need a model that has learned something."""
    from keras_resnet.data import DataConfig
    from keras_resnet.train import TrainConfig, train

    run = tmp_path_factory.mktemp("digits") / "run"
    result = train(TrainConfig(depth=18, epochs=DIGITS_EPOCHS, output=str(run), seed=0), DataConfig(),
                   stream=io.StringIO())
    assert result.best_val_accuracy >= 0.9, result.best_val_accuracy
    return result.run_dir
