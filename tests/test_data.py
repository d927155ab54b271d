"""Input pipelines: built-in digits, synthetic data, determinism, augmentation geometry and config errors."""

import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import augment
from keras_resnet.data import DataConfig, calibration_images, load_datasets, stratified_split
from keras_resnet.errors import KresError

SIZE = 32


def first_batch(ds):
    images, labels = next(iter(ds))
    return images.numpy(), labels.numpy()


@pytest.fixture(scope="module")
def digits():
    return load_datasets(DataConfig(image_size=SIZE, batch_size=8))


def test_digits_sizes_and_element_spec(digits):
    assert (digits.num_train, digits.num_val) == (1438, 359)  # 1797 = 1438 + round(0.2 * 1797)
    assert digits.class_names == [str(i) for i in range(10)]
    assert digits.skipped_files == 0
    spec = digits.train.element_spec
    assert spec[0].shape.as_list() == [8, SIZE, SIZE, 3] and spec[0].dtype == tf.uint8
    assert spec[1].shape.as_list() == [8, 10] and spec[1].dtype == tf.float32
    assert digits.val.element_spec[0].shape.as_list() == [None, SIZE, SIZE, 3]
    assert digits.val.element_spec[0].dtype == tf.uint8
    assert digits.val.element_spec[1].dtype == tf.float32


def test_digits_batches_are_raw_pixels_and_one_hot(digits):
    images, labels = first_batch(digits.train)
    assert images.dtype == np.uint8 and images.min() == 0 and images.max() > 200
    np.testing.assert_array_equal(labels.sum(axis=1), np.ones(8))
    assert set(np.unique(labels)) == {0.0, 1.0}
    # Every training batch is full; the last validation batch keeps the remainder.
    assert sum(1 for _ in digits.train) == 1438 // 8
    val_sizes = [int(x.shape[0]) for x, _ in digits.val]
    assert sum(val_sizes) == 359 and val_sizes[-1] == 359 % 8


def test_digits_val_split_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    train, val = stratified_split(labels, 0.2, seed=0)
    assert len(val) == 20 and len(train) == 80
    assert np.bincount(labels[val]).tolist() == [10, 6, 4]
    assert not set(train) & set(val)
    assert stratified_split(labels, 0.2, seed=0)[1].tolist() == val.tolist()
    assert stratified_split(labels, 0.2, seed=1)[1].tolist() != val.tolist()


def test_digits_validation_images_are_the_upscaled_glyphs(digits):
    """Eval upscales the whole 8x8 frame (no crop): a batch's mean ink matches the source's."""
    from sklearn.datasets import load_digits

    images, _ = first_batch(digits.val)
    ink = load_digits().images.mean() * 255 / 16
    assert abs(images.mean() - ink) < 25
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey replicated to RGB


def test_same_seed_same_batches_different_seed_different():
    cfg = DataConfig(image_size=SIZE, batch_size=4, seed=3)
    a, la = first_batch(load_datasets(cfg).train)
    b, lb = first_batch(load_datasets(cfg).train)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    c, _ = first_batch(load_datasets(DataConfig(image_size=SIZE, batch_size=4, seed=4)).train)
    assert not np.array_equal(a, c)


def test_each_epoch_is_reshuffled():
    ds = load_datasets(DataConfig(image_size=SIZE, batch_size=4)).train
    first, second = first_batch(ds), first_batch(ds)
    assert not np.array_equal(first[0], second[0])


def test_synthetic():
    data = load_datasets(DataConfig(dataset="synthetic", image_size=SIZE, batch_size=4, synthetic_classes=3,
                                    synthetic_size=10))
    assert (data.num_train, data.num_val, len(data.class_names)) == (10, 10, 3)
    assert sum(1 for _ in data.train) == 2
    images, labels = first_batch(data.val)
    assert images.shape == (4, SIZE, SIZE, 3) and labels.shape == (4, 3)
    assert images.dtype == np.uint8 and images.max() > images.min()


def test_mixup_cutmix_randaugment_keep_shapes_and_label_mass():
    cfg = DataConfig(image_size=SIZE, batch_size=4, mixup_alpha=0.4, cutmix_alpha=1.0, randaugment=True)
    images, labels = first_batch(load_datasets(cfg).train)
    assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == np.float32  # a blend is not a whole pixel
    assert images.min() >= 0.0 and images.max() <= 255.0
    np.testing.assert_allclose(labels.sum(axis=1), np.ones(4), rtol=1e-5)


def test_cutmix_label_weight_is_the_pasted_area():
    images = tf.stack([tf.zeros([SIZE, SIZE, 3]), tf.fill([SIZE, SIZE, 3], 255.0)])
    labels = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    mixed, mixed_labels = augment.cutmix(images, labels, tf.constant([1, 2]), alpha=1.0)
    pasted = float((mixed[0, ..., 0] == 255.0).numpy().mean())
    np.testing.assert_allclose(mixed_labels[0].numpy(), [1 - pasted, pasted], atol=1e-6)


def test_randaugment_every_op_runs():
    image = tf.random.stateless_uniform([SIZE, SIZE, 3], [0, 0], 0, 255)
    outputs = {float(tf.reduce_sum(augment.randaugment(image, tf.constant([i, 7]), layers=1))) for i in range(40)}
    assert len(outputs) > 8  # many different ops were drawn


def test_eval_resize_shorter_side_then_centre_crop():
    """A 100x50 image whose columns count 0..99: the shorter side goes to int(32/0.875)=36, so the width goes to
    72 and the centre crop keeps resized columns 20..51, i.e. source columns around 28..71."""
    columns = tf.tile(tf.range(100, dtype=tf.float32)[None, :, None], [50, 1, 3])
    out = augment.resize_shorter_center_crop(columns, SIZE).numpy()
    assert out.shape == (SIZE, SIZE, 3)
    assert augment.eval_resize_size(SIZE) == 36
    # resized column j samples source column (j + 0.5) * 100 / 72 - 0.5
    expected_first, expected_last = (20 + 0.5) * 100 / 72 - 0.5, (51 + 0.5) * 100 / 72 - 0.5
    assert abs(out[16, 0, 0] - expected_first) < 1.0 and abs(out[16, -1, 0] - expected_last) < 1.0


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_random_resized_crop_rounds_to_whole_pixels(fmt):
    """The training crop's uint8 output is the bilinear resize of the decoded window, rounded (half up): black and
    white stay exactly 0 and 255, and nothing wraps around. Large JPEG windows decode at a DCT scale."""
    rng = np.random.default_rng(4)
    photo = tf.constant(rng.integers(0, 256, (150, 200, 3)), tf.uint8)
    encode = tf.io.encode_png if fmt == "png" else tf.io.encode_jpeg
    scales = set()
    for image in (photo, tf.zeros_like(photo), tf.fill(tf.shape(photo), tf.constant(255, tf.uint8))):
        contents = encode(image)
        decoded = tf.io.decode_image(contents, channels=3)
        for i in range(8):
            seed = tf.constant([i, 3])
            out = augment.random_resized_crop(contents, SIZE, seed).numpy()
            window = augment.random_crop_window(tf.constant([150, 200]), seed)
            y, x, h, w = window.numpy().tolist()
            if fmt == "jpeg":  # only the window is decoded (its edge's chroma upsampling differs from a full decode)
                ratio = augment.JPEG_SCALES[int(augment.jpeg_scale_index(window, SIZE))]
                scales.add(ratio)
                source = tf.io.decode_and_crop_jpeg(contents, window // ratio, channels=3, ratio=ratio)
            else:
                source = decoded[y:y + h, x:x + w]
            reference = tf.image.resize(source, [SIZE, SIZE]).numpy()
            assert out.dtype == np.uint8 and out.shape == (SIZE, SIZE, 3)
            np.testing.assert_array_equal(out, np.floor(reference + 0.5).astype(np.uint8))
        if image is not photo:
            assert set(np.unique(out)) == {int(decoded[0, 0, 0])}  # 0 or 255 (JPEG keeps them exact too)
    if fmt == "jpeg":
        assert scales == {1, 2, 4}  # windows of 32-63, 64-127 and 128-150 px on the shorter side


def test_jpeg_scale_keeps_the_crop_at_least_the_output_size():
    index = {(h, w): int(augment.jpeg_scale_index(tf.constant([0, 0, h, w]), 64))
             for h, w in [(63, 500), (64, 64), (127, 900), (128, 128), (255, 300), (256, 256), (3000, 4000)]}
    assert index == {(63, 500): 0, (64, 64): 0, (127, 900): 0, (128, 128): 1, (255, 300): 1, (256, 256): 2,
                     (3000, 4000): 3}
    assert augment.JPEG_SCALES == (1, 2, 4, 8)


def test_random_resized_crop_window_is_in_range():
    shape = tf.constant([300, 400])
    for i in range(20):
        y, x, h, w = augment.random_crop_window(shape, tf.constant([i, 0])).numpy().tolist()
        assert y >= 0 and y + h <= 300 and x >= 0 and x + w <= 400
        area = h * w / (300 * 400)
        assert 0.08 - 0.01 <= area <= 1.0
        assert h * w == 300 * 400 or 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05


def test_calibration_images_are_deterministic_eval_images():
    cfg = DataConfig(image_size=SIZE)
    first = list(calibration_images(cfg, 5))
    again = list(calibration_images(cfg, 5))
    assert len(first) == 5 and all(x.shape == (1, SIZE, SIZE, 3) and x.dtype == np.float32 for x in first)
    assert all(np.array_equal(x, np.round(x)) for x in first)  # whole pixels: what evaluation feeds the model
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, words", [
    ({"image_size": 16}, "image size 16"),
    ({"batch_size": 0}, "batch size 0"),
    ({"val_split": 1.0}, "validation split"),
    ({"mixup_alpha": -1.0}, "mixup"),
    ({"dataset": "synthetic", "data_dir": "/tmp"}, "not both"),
    ({"batch_size": 4096}, "^batch size 4096 is larger than the 1438 training images: pass --batch-size 1024 or less$"),
])
def test_config_errors(kwargs, words):
    with pytest.raises(KresError, match=words):
        load_datasets(DataConfig(**{"image_size": SIZE, "batch_size": 8, **kwargs}))


@pytest.mark.parametrize(("data", "name", "resize"), [
    (DataConfig(), "digits", "full_frame"),
    (DataConfig(dataset="digits"), "digits", "full_frame"),
    ({"dataset": None, "data_dir": None}, "digits", "full_frame"),  # as config.json records the default
    (DataConfig(dataset="cifar10"), "cifar10", "center_crop"),
    (DataConfig(dataset="synthetic"), "synthetic", "center_crop"),
    ({"dataset": None, "data_dir": "/data/pets/"}, "pets", "center_crop"),
])
def test_data_names_and_eval_resize(data, name, resize):
    from keras_resnet.data import data_name, eval_resize

    assert (data_name(data), eval_resize(data)) == (name, resize)


def test_a_models_resize_is_its_meta_jsons_then_its_datas_then_centre_crop():
    """One rule for the model cards, an export's meta.json and a conversion's (each spelled it out)."""
    from keras_resnet.meta import model_resize

    digits, folder = {"dataset": None, "data_dir": None}, {"dataset": None, "data_dir": "/data/digit-pngs"}
    assert model_resize({"resize": "full_frame"}, folder) == "full_frame"  # recorded: a digits run's, at export
    assert model_resize({}, digits) == "full_frame" and model_resize({}, folder) == "center_crop"
    assert model_resize({"resize": None}, digits) == "full_frame" and model_resize({}, None) == "center_crop"


def test_the_training_stream_runs_no_autotuning_thread(digits):
    """kres train's stream lives as long as a fit; deleting it could wait up to a minute for tf.data's autotuning
    thread (keras_resnet.data.without_autotune_thread), so that thread is off there (and in QAT's fit)."""
    assert digits.train_from(0, 0).options().autotune.enabled is False
    assert digits.train_from(3, 5).options().autotune.enabled is False
    assert digits.val.options().autotune.enabled is not False  # short-lived iterators keep autotuning


_EVERY_PIPELINE = """
import os
import sys
import tempfile
import numpy as np
from PIL import Image
from keras_resnet.data import DataConfig, calibration_images, load_datasets, load_held_out
folder = sys.argv[1]
for index, name in enumerate(["a", "a", "b", "b"]):
    Image.fromarray(np.full((40, 48, 3), 60 * index, np.uint8)).save(f"{folder}/{name}/{index}.png")
for cfg in (DataConfig(image_size=32, batch_size=2, mixup_alpha=0.2),
            DataConfig(data_dir=folder, val_split=0.5, image_size=32, batch_size=1)):
    data = load_datasets(cfg)
    print(next(iter(data.train))[0].shape, next(iter(data.train_from(1, 1)))[0].shape,
          next(iter(data.val))[0].shape, next(calibration_images(cfg, 1)).shape,
          next(iter(load_held_out(cfg, 1).val))[0].shape)
print(sorted(os.listdir(tempfile.gettempdir())))
"""


def test_building_and_reading_every_pipeline_leaves_nothing_in_the_temporary_folder(tmp_path):
    """AutoGraph rewrote each function of the pipelines into a generated file in the temporary folder, removed
    when the process exits normally but never where it is killed (SIGKILL, the out-of-memory killer): the test
    suite's killed runs left dozens in /tmp. The rewrite took 1.2-1.7 s of each pipeline's start. A fresh process,
    so that no function was rewritten (and cached) before it; the folder is listed before it exits. Where it
    could not rewrite one (the two lambdas of load_held_out on a line), it printed a warning of nine lines for each:
    `kres export --eval-images N` of a run with more validation images than N showed two on the terminal."""
    import os
    import subprocess
    import sys

    temporary, images = tmp_path / "tmp", tmp_path / "images"
    temporary.mkdir()
    for name in ("a", "b"):
        (images / name).mkdir(parents=True)
    result = subprocess.run([sys.executable, "-c", _EVERY_PIPELINE, str(images)], capture_output=True, text=True,
                            env={**os.environ, "TMPDIR": str(temporary), "CUDA_VISIBLE_DEVICES": ""}, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "AutoGraph" not in result.stderr, result.stderr[-2000:]
    assert result.stdout.split("\n") == [
        "(2, 32, 32, 3) (2, 32, 32, 3) (2, 32, 32, 3) (1, 32, 32, 3) (1, 32, 32, 3)",
        "(1, 32, 32, 3) (1, 32, 32, 3) (1, 32, 32, 3) (1, 32, 32, 3) (1, 32, 32, 3)", "[]", ""]
