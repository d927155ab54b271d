"""deploy/classify.py's full-frame preprocessing (the card's ``input.resize`` for the built-in digits) gives the
pixels that training's evaluation and ``kres predict`` give: ``augment.digits_resize``, then ``to_pixels``; and
what it reads (16-bit images), prints (TensorFlow's start-up lines, the invoke's time, labels, errors) and
returns."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


@pytest.fixture(scope="module")
def classify():
    spec = importlib.util.spec_from_file_location("classify", REPO / "deploy" / "classify.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluated(pixels: np.ndarray, size: int = SIZE) -> np.ndarray:
    import tensorflow as tf

    from keras_resnet import augment

    return augment.to_pixels(augment.digits_resize(tf.constant(pixels, tf.float32), size)).numpy()


def _saved(tmp_path: Path, name: str, pixels: np.ndarray) -> Path:
    path = tmp_path / f"{name}.png"
    Image.fromarray(pixels).save(path)
    return path


def test_full_frame_upscales_real_digits_as_evaluation_does(classify, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits().images[:20]  # 0-16 ink, as data.py scales it to 0-255, grey as RGB
    glyphs = np.repeat(np.round(digits * (255.0 / 16.0)).astype(np.uint8)[..., None], 3, axis=-1)
    for index, glyph in enumerate(glyphs):
        got = classify.load_image(_saved(tmp_path, str(index), glyph), SIZE, SIZE, "full_frame")
        assert got.shape == (SIZE, SIZE, 3) and got.dtype == np.float32
        np.testing.assert_array_equal(got, _evaluated(glyph), err_msg=f"digit {index}")
    # the strokes fade to 0 beyond the glyph's edge, as training's constant fill does (PIL repeats the edge)
    edge = glyphs[0].copy()
    edge[:, 0] = 255
    got = classify.load_image(_saved(tmp_path, "edge", edge), SIZE, SIZE, "full_frame")
    assert got[SIZE // 2, 0, 0] == _evaluated(edge)[SIZE // 2, 0, 0] == 159  # 5/8 of 255, rounded


def test_full_frame_shrinks_without_antialiasing_as_evaluation_does(classify, tmp_path):
    import tensorflow as tf

    from keras_resnet import augment

    pixels = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    got = classify.load_image(_saved(tmp_path, "big", pixels), SIZE, SIZE, "full_frame")
    np.testing.assert_array_equal(got, _evaluated(pixels))
    # a non-square input size: the same map, per axis
    photo = pixels[:40]
    matrix = augment._centred_affine(photo.shape[:2], (24, SIZE), 1.0, 0.0)
    expected = augment.to_pixels(augment._affine(tf.constant(photo, tf.float32), matrix, (24, SIZE), 0.0)).numpy()
    np.testing.assert_array_equal(classify.load_image(_saved(tmp_path, "wide", photo), 24, SIZE, "full_frame"),
                                  expected)


def test_16_bit_and_other_grey_modes_are_read_as_predict_reads_them(classify, tmp_path):
    """A 16-bit grey PNG (PIL's I;16) went through PIL's convert("RGB"), which clips at 255: a mid-grey digit
    became white. kres predict scales 0-65535 to 0-255 (and 32-bit grey above 255 too)."""
    from keras_resnet.predict import preprocessor, read_rgb

    glyph = np.zeros((40, 48), np.uint16)
    glyph[8:32, 20:28] = 32768  # a mid-grey stroke: 127 in 8 bits (32768 * 255 / 65535 = 127.5, truncated)
    glyph[8:12, 12:36] = 65535
    digit = tmp_path / "digit16.png"
    Image.fromarray(glyph).save(digit)
    with Image.open(digit) as stored:
        assert stored.mode == "I;16"
    got = classify.load_image(digit, SIZE, SIZE, "full_frame")
    assert got[SIZE // 2, SIZE // 2].tolist() == [127, 127, 127]  # convert("RGB") read 255
    assert got.max() == 255 and got.min() == 0
    wide = tmp_path / "wide32.tif"
    Image.fromarray(glyph.astype(np.int32) * 2 - 1000).save(wide)  # mode I, values -1000 to 130,070
    small = tmp_path / "small32.tif"
    Image.fromarray((glyph // 257).astype(np.int32)).save(small)  # mode I within 0-255: taken as it is
    palette = tmp_path / "palette.png"
    Image.fromarray(np.uint8(glyph // 257)).convert("P").save(palette, transparency=0)
    photo_model = SimpleNamespace(path=tmp_path / "model.tflite", meta=None)  # centre crop
    for path in (digit, wide, small, palette):
        with Image.open(path) as stored:
            np.testing.assert_array_equal(np.asarray(classify.to_rgb(stored)), read_rgb(path), err_msg=path.name)
        np.testing.assert_array_equal(classify.load_image(path, SIZE, SIZE),
                                      preprocessor(photo_model, SIZE)(read_rgb(path)), err_msg=path.name)
    with Image.open(small) as stored:
        assert stored.mode == "I" and np.asarray(classify.to_rgb(stored))[20, 24].tolist() == [127, 127, 127]
