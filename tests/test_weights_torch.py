"""torchvision parity: a random torchvision ResNet (BN statistics included), converted, gives torchvision's logits.

Needs CPU torch (``pip install torch==2.13.0``) and torchvision installed with ``--no-deps``; torchvision's
C++ operator registrations are replaced by an empty module, since only its pure-Python model code is used.
"""


import numpy as np
import pytest

import keras_resnet
from keras_resnet import weights as kw
from keras_resnet.specs import DEPTHS
from kres.main import main

torch = torchvision = None  # imported when this file's tests run: collecting it in each test worker took 2.5 s

SIZE = 64
MEAN = np.array([0.485, 0.456, 0.406], dtype="float32")
STD = np.array([0.229, 0.224, 0.225], dtype="float32")


@pytest.fixture(scope="module", autouse=True)
def _torch_and_torchvision():
    global torch, torchvision
    torch = pytest.importorskip("torch", reason="torch is not installed (the test extra installs torch==2.13.0 CPU)")
    try:
        torchvision = kw.import_torchvision()
    except ImportError as err:  # a broken or missing torchvision: skip with the reason, never pass silently
        pytest.skip(str(err))


def random_torchvision(depth: int, num_classes: int = 1000, seed: int = 0):
    """torchvision's ResNet with random weights and random BN gamma, beta, running mean and variance."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, f"resnet{depth}")(num_classes=num_classes)
    last_bn = "bn3" if DEPTHS[depth].block == "bottleneck" else "bn2"
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                # A smaller gamma on each block's last BN keeps the residual sum of deep nets near 1,
                # so float32 round-off stays far below the tolerance.
                module.weight.uniform_(0.1, 0.3) if name.endswith(last_bn) else module.weight.uniform_(0.5, 1.0)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def torchvision_logits(model, pixels: np.ndarray) -> np.ndarray:
    normalised = (pixels / 255.0 - MEAN) / STD  # torchvision's input; ours takes the raw pixels
    with torch.no_grad():
        return model(torch.from_numpy(normalised.transpose(0, 3, 1, 2).copy())).numpy()


def _pixels(seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")


@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_converted_torchvision_resnet_gives_torchvision_logits(depth):
    reference = random_torchvision(depth)
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    ours = keras_resnet.resnet(depth, num_classes=1000, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    report = kw.assign(ours, kw.Checkpoint(kw.torchvision_to_keras(state), "state dict", "torchvision"),
                       depth=depth, variant="v1.5")
    assert report.head_loaded
    assert report.layers_loaded == len([layer for layer in ours.layers if layer.weights])
    x = _pixels()
    expected = torchvision_logits(reference, x)
    got = ours(x, training=False).numpy()
    assert np.abs(expected).max() > 0.1 and np.std(expected) > 0.01  # real, varied logits
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_pth_file_loads_through_resnet_and_convert_weights(tmp_path, capsys):
    reference = random_torchvision(18, num_classes=10, seed=1)
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "r18.pth")  # a wrapped training checkpoint
    x = _pixels(1)
    expected = torchvision_logits(reference, x)

    model = keras_resnet.resnet(18, num_classes=10, input_shape=(SIZE, SIZE, 3), classifier_activation=None,
                                weights=str(tmp_path / "r18.pth"))
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, atol=1e-4, rtol=0)

    out = tmp_path / "r18.keras"
    assert main(["convert-weights", str(tmp_path / "r18.pth"), "--depth", "18", "--output", str(out),
                 "--image-size", str(SIZE)]) == 0
    assert "ResNet-18 v1.5, 10 classes" in capsys.readouterr().out
    converted = keras_resnet.resnet(18, num_classes=10, input_shape=(SIZE, SIZE, 3), classifier_activation=None,
                                    weights=str(out))
    np.testing.assert_allclose(converted(x, training=False).numpy(), expected, atol=1e-4, rtol=0)
