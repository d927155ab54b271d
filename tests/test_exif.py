"""EXIF orientation: a photo stored sideways with its orientation tag gives the same pixels as the upright photo in
training, evaluation, calibration, predict and deploy/classify.py."""

import importlib.util
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_resnet import augment, imageio
from keras_resnet.data import DataConfig, calibration_images, load_datasets, load_every_image
from keras_resnet.predict import read_rgb

SIZE = 32
# PIL's exif_transpose method per orientation, and the method that undoes it (to store an upright photo sideways)
_UNDO = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
         5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
         8: Image.Transpose.ROTATE_270}


def _upright():
    """64 high x 48 wide flat 8x8 blocks: JPEG at quality 100 without chroma subsampling keeps them to +-1."""
    blocks = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    return Image.fromarray(np.kron(blocks, np.ones((8, 8, 1), np.uint8)))


def _save(image, path, orientation=None):
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, "JPEG", quality=100, subsampling=0, exif=exif)
    return path


def _stored_sideways(path, orientation):
    image = _upright()
    return _save(image.transpose(_UNDO[orientation]) if orientation in _UNDO else image, path, orientation)


def _close(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 3, np.abs(a - b).max()


@pytest.fixture(scope="module")
def upright_file(tmp_path_factory):
    return _save(_upright(), tmp_path_factory.mktemp("exif") / "upright.jpg")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_read_from_the_jpeg_bytes(tmp_path, orientation):
    contents = tf.io.read_file(str(_stored_sideways(tmp_path / "o.jpg", orientation)))
    assert int(imageio.exif_orientation(contents)) == orientation


def test_no_exif_png_and_garbage_read_as_upright(tmp_path, upright_file):
    _upright().save(tmp_path / "a.png")
    for contents in (tf.io.read_file(str(upright_file)), tf.io.read_file(str(tmp_path / "a.png")),
                     tf.constant(b"\xff\xd8\xff\xe1\x00"), tf.constant(b"")):
        assert int(imageio.exif_orientation(contents)) == 1


@pytest.mark.parametrize("orientation", range(2, 9))
def test_evaluation_and_training_crops_match_the_upright_photo(tmp_path, upright_file, orientation):
    sideways = tf.io.read_file(str(_stored_sideways(tmp_path / "o.jpg", orientation)))
    upright = tf.io.read_file(str(upright_file))
    _close(augment.decode_rgb(sideways), np.asarray(_upright()))
    _close(augment.decode_eval(sideways, SIZE), augment.decode_eval(upright, SIZE))
    for seed in ([1, 2], [3, 4], [5, 6]):  # random windows: off-centre, so a wrong mapping shows
        seed = tf.constant(seed, tf.int64)
        _close(augment.random_resized_crop(sideways, SIZE, seed), augment.random_resized_crop(upright, SIZE, seed))


def test_folder_pipelines_and_calibration_turn_the_photo(tmp_path):
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
        _stored_sideways(tmp_path / split / "a" / "sideways.jpg", 6)
        _save(_upright(), tmp_path / split / "b" / "upright.jpg")
    data = load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=2))
    images, _ = next(iter(data.val))
    _close(images[0], images[1])
    train, _ = next(iter(data.train))
    assert train.shape == (2, SIZE, SIZE, 3)
    calib = list(calibration_images(DataConfig(data_dir=str(tmp_path), image_size=SIZE), 2))
    _close(calib[0][0], calib[1][0])


def _png(image, path, orientation=None):
    """A PNG as PIL writes it: the EXIF in an eXIf chunk before the pixels."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, "PNG", exif=exif)
    return path


def _png_sideways(path, orientation):
    image = _upright()
    return _png(image.transpose(_UNDO[orientation]) if orientation in _UNDO else image, path, orientation)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_read_from_the_png_exif_chunk(tmp_path, orientation):
    path = _png_sideways(tmp_path / "o.png", orientation)
    assert int(imageio.exif_orientation(tf.io.read_file(str(path)))) == orientation
    assert imageio.file_orientation(path) == orientation


def test_a_png_exif_chunk_after_the_pixels_counts_too(tmp_path):
    """PNG allows eXIf after IDAT, and PIL (predict) honours it there."""
    data = _png_sideways(tmp_path / "o.png", 6).read_bytes()
    chunks, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        chunks.append(data[at:at + 12 + length])
        at += 12 + length
    kinds = [chunk[4:8] for chunk in chunks]
    assert kinds.index(b"eXIf") < kinds.index(b"IDAT")  # as PIL writes it: moved behind the pixels here
    exif = chunks.pop(kinds.index(b"eXIf"))
    (tmp_path / "late.png").write_bytes(data[:8] + b"".join(chunks[:-1]) + exif + chunks[-1])
    assert Image.open(tmp_path / "late.png").getexif()[0x0112] == 6
    assert imageio.file_orientation(tmp_path / "late.png") == 6


def test_evaluation_and_training_read_a_sideways_png_as_predict_does(tmp_path):
    """kres evaluate (and training) read a PNG's EXIF orientation as 1, while predict turned it: a folder of
    sideways-stored PNGs scored as the sideways pixels. PNG is lossless: the pixels are exactly the upright ones."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    sideways = _png_sideways(tmp_path / "a" / "sideways.png", 6)
    upright = _png(_upright(), tmp_path / "b" / "upright.png")
    np.testing.assert_array_equal(read_rgb(sideways), np.asarray(_upright()))
    data = load_every_image(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=2))
    images, _ = next(iter(data.val))
    np.testing.assert_array_equal(images[0], images[1])
    split = load_datasets(DataConfig(data_dir=str(tmp_path), val_split=0.5, image_size=SIZE, batch_size=1))
    assert next(iter(split.train))[0].shape == (1, SIZE, SIZE, 3)
    calib = list(calibration_images(DataConfig(data_dir=str(tmp_path), val_split=0.5, image_size=SIZE), 1))
    np.testing.assert_array_equal(calib[0][0], images[0])  # the training image (either), as evaluation sees it
    stored, turned = tf.io.read_file(str(sideways)), tf.io.read_file(str(upright))
    np.testing.assert_array_equal(augment.decode_rgb(stored), np.asarray(_upright()))
    for seed in ([1, 2], [3, 4]):  # the training crop, off-centre: a wrong mapping shows
        seed = tf.constant(seed, tf.int64)
        np.testing.assert_array_equal(
            augment.random_resized_crop(stored, SIZE, seed, imageio.file_orientation(sideways)),
            augment.random_resized_crop(turned, SIZE, seed))


def test_turning_a_photo_prints_nothing_on_the_terminal(tmp_path):
    """A transpose of pixels in a tf.data graph made TensorFlow's oneDNN rewrite print an error line ("oneDNN
    supports DT_UINT8 only on platforms with AVX-512") in every command that read an image folder. A child
    process, as the CLI runs (kres's C++ log level, oneDNN on), so the line is not one printed earlier here."""
    import subprocess
    import sys

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        _stored_sideways(tmp_path / name / "sideways.jpg", 6)
        _save(_upright(), tmp_path / name / "upright.jpg")
    read = ("import sys; import kres.main; from keras_resnet.data import DataConfig, load_datasets\n"
            "data = load_datasets(DataConfig(data_dir=sys.argv[1], val_split=0.5, image_size=32, batch_size=1))\n"
            "print([tuple(images.shape) for images, _ in data.val])\n")
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CONFIG")}
    result = subprocess.run([sys.executable, "-c", read, str(tmp_path)], capture_output=True, text=True,
                            env={**env, "CUDA_VISIBLE_DEVICES": "", "TF_ENABLE_ONEDNN_OPTS": "1"}, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[(1, 32, 32, 3), (1, 32, 32, 3)]"
    assert [line for line in result.stderr.splitlines() if "oneDNN supports" in line] == []


def test_folder_pipelines_read_the_orientation_once_at_the_scan(tmp_path, monkeypatch):
    """Per image, every epoch, the pipelines run TensorFlow ops only: the tag was read when the folder was scanned
    (a Python parse inside tf.data held the GIL and cost 15-20% of the training crop's CPU)."""
    from keras_resnet import imageio

    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            _stored_sideways(tmp_path / split / name / "sideways.jpg", 6)

    def per_image_parse(*args, **kwargs):
        raise AssertionError("the EXIF tag is parsed inside the tf.data pipeline")

    monkeypatch.setattr(imageio, "exif_orientation", per_image_parse)
    data = load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=2))
    for dataset in (data.train, data.val, data.train_from(1, 0)):
        images, _ = next(iter(dataset))
        assert images.shape == (2, SIZE, SIZE, 3)
    calib = list(calibration_images(DataConfig(data_dir=str(tmp_path), image_size=SIZE), 2))
    assert len(calib) == 2


def test_a_pil_decoded_sideways_photo_is_turned_too(tmp_path):
    from keras_resnet.data import _pil_png

    # CMYK JPEGs go through PIL and a PNG, which carries no EXIF: the pixels must be turned before
    exif = Image.Exif()
    exif[0x0112] = 6
    _upright().transpose(_UNDO[6]).convert("CMYK").save(tmp_path / "o.jpg", "JPEG", quality=100, exif=exif)
    _upright().convert("CMYK").save(tmp_path / "upright.jpg", "JPEG", quality=100)
    with Image.open(io.BytesIO(_pil_png(str(tmp_path / "o.jpg").encode()))) as png:
        _close(png.convert("RGB"), Image.open(tmp_path / "upright.jpg").convert("RGB"))


def test_predict_reads_the_photo_upright(tmp_path, upright_file):
    _close(read_rgb(_stored_sideways(tmp_path / "o.jpg", 6)), read_rgb(upright_file))


def test_deploy_classify_reads_the_photo_upright(tmp_path, upright_file):
    spec = importlib.util.spec_from_file_location("classify", Path(__file__).parents[1] / "deploy" / "classify.py")
    classify = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(classify)
    sideways = _stored_sideways(tmp_path / "o.jpg", 8)
    _close(classify.load_image(sideways, SIZE, SIZE), classify.load_image(upright_file, SIZE, SIZE))


def test_a_huge_photo_gives_no_raw_pil_warning(tmp_path, monkeypatch):
    """PIL warns above Image.MAX_IMAGE_PIXELS (89 megapixels) and refuses twice that; the limit is lowered here to
    1 megapixel, so a 1.2-megapixel image stands for a 144-megapixel one (which took 10 s to write and read)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    path = tmp_path / "huge.png"
    Image.new("L", (1200, 1200)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would raise here
        assert read_rgb(path).shape == (1200, 1200, 3)
        from keras_resnet.data import _check_image

        assert _check_image(str(path)) is not None
