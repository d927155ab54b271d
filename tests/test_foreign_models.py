"""Models kres did not build and damaged weights files are one `Error:` line each, never a traceback."""

import numpy as np
import pytest
from PIL import Image

from kres.main import main


def _one_line(capsys, args):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("... ")]  # export's progress lines
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("foreign")
    images = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(2, 3),
                               keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
    images.save(root / "sequential.keras")
    vectors = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, activation="softmax")])
    vectors.save(root / "vectors.keras")
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(root / "photo.png")
    return root


def test_export_of_a_sequential_model_names_what_kres_expected(capsys, foreign, tmp_path):
    err = _one_line(capsys, ["export", foreign / "sequential.keras", "-o", tmp_path / "out", "--tflite"])
    assert err == (f"Error: {foreign / 'sequential.keras'} is not a kres ResNet: no layer conv1_conv; export a "
                   "model built by kres, or use the TFLite converter directly")


def test_predict_of_a_model_without_image_input(capsys, foreign):
    err = _one_line(capsys, ["predict", foreign / "vectors.keras", foreign / "photo.png"])
    assert "vectors.keras takes inputs of shape 10, not RGB images HxWx3" in err


def test_evaluate_of_a_model_without_image_input(capsys, foreign, tmp_path):
    err = _one_line(capsys, ["evaluate", foreign / "vectors.keras", "--dataset", "synthetic",
                             "--output", tmp_path / "eval"])
    assert "vectors.keras takes inputs of shape 10, not RGB images HxWx3" in err


def _corrupt(path):
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


@pytest.mark.parametrize(("name", "kind"), [("bad.pth", "PyTorch"), ("bad.safetensors", "safetensors")])
def test_convert_weights_of_a_corrupt_file(capsys, tmp_path, name, kind):
    pytest.importorskip("torch" if kind == "PyTorch" else "safetensors")
    bad = _corrupt(tmp_path / name)
    err = _one_line(capsys, ["convert-weights", bad, "--depth", "18", "-o", tmp_path / "out.keras"])
    assert err.startswith(f"Error: cannot read {bad}: not a complete {kind} weights file (")
    assert not (tmp_path / "out.keras").exists()


def test_truncated_pth_is_one_line(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    good = tmp_path / "good.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, good)
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(good.read_bytes()[:2000])
    err = _one_line(capsys, ["convert-weights", bad, "--depth", "18", "-o", tmp_path / "out.keras"])
    assert f"cannot read {bad}: not a complete PyTorch weights file" in err


def test_train_weights_of_a_corrupt_safetensors(capsys, tmp_path):
    pytest.importorskip("safetensors")
    bad = _corrupt(tmp_path / "bad.safetensors")
    err = _one_line(capsys, ["train", "--depth", "18", "--weights", bad, "--epochs", "1", "--batch-size", "2",
                             "--image-size", "32", "--output", tmp_path / "run"])
    assert err.startswith(f"Error: cannot read {bad}: not a complete safetensors weights file (SafetensorError")
