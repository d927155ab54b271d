"""Shared test settings: TensorFlow backend, quiet logs, small inputs."""

import fcntl
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
    minute of two CPU cores. For tests whose bounds need a model that has learned something. Under pytest-xdist
    the workers share one training: the first trains under a lock, the others wait for it and reuse its run."""
    from keras_resnet.data import DataConfig
    from keras_resnet.train import TrainConfig, train

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one folder for all the workers
    run, done = shared / "digits" / "run", shared / "digits" / "best_val_accuracy"
    run.parent.mkdir(exist_ok=True)
    with open(shared / "digits.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            result = train(TrainConfig(depth=18, epochs=DIGITS_EPOCHS, output=str(run), seed=0), DataConfig(),
                           stream=io.StringIO())
            done.write_text(str(result.best_val_accuracy))
    best = float(done.read_text())
    assert best >= 0.9, best
    return run
