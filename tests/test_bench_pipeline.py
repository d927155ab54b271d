"""``kres bench pipeline`` at a tiny size: JPEGs are generated once, both pipelines run, ratios are quotients."""

import json

import numpy as np
import pytest
from PIL import Image

from kres.main import main


@pytest.fixture
def results(tmp_path, monkeypatch):
    from keras_resnet.bench import common

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    return tmp_path / "results"


def test_generated_jpegs_look_like_photos(tmp_path):
    from keras_resnet.bench.pipeline import Config, jpeg_folder

    cfg = Config(images=6, classes=3, width=120, height=90, cache_dir=str(tmp_path))
    folder = jpeg_folder(cfg)
    files = sorted(folder.glob("*/*.jpg"))
    assert [f.parent.name for f in files] == ["class_0", "class_0", "class_1", "class_1", "class_2", "class_2"]
    pixels = np.asarray(Image.open(files[0]))
    assert pixels.shape == (90, 120, 3)
    assert pixels.std() > 20  # not flat colour
    assert np.abs(np.diff(pixels.astype(int), axis=1)).mean() > 2  # pixel-level texture (noise)
    stamp = (folder / "complete.json").stat().st_mtime_ns
    assert jpeg_folder(cfg) == folder and (folder / "complete.json").stat().st_mtime_ns == stamp  # cached


def test_photos_of_the_smallest_size_allowed_are_made(tmp_path, capsys):
    """--width/--height 32 to 41 (which the help allows) ended in a traceback ("ValueError: low >= high") where the
    objects drawn took 20 px to half the side; --images 2 (allowed too) failed in a worker: too few to split."""
    from keras_resnet.bench.pipeline import Config, jpeg_folder

    folder = jpeg_folder(Config(images=3, classes=3, width=32, height=41, cache_dir=str(tmp_path)))
    assert [np.asarray(Image.open(f)).shape for f in sorted(folder.glob("*/*.jpg"))] == [(41, 32, 3)] * 3
    assert main(["bench", "pipeline", "--images", "2"]) == 2
    assert "Invalid value for '--images': 2 is not in the range x>=3." in capsys.readouterr().err


def test_pipeline_smoke(tmp_path, results, capsys):
    code = main(["bench", "pipeline", "--images", "40", "--width", "100", "--height", "75", "--image-size", "32",
                 "--batch-size", "8", "--batches", "2", "--warmup", "1", "--rounds", "1", "--cores", "1",
                 "--cache-dir", str(tmp_path / "cache"), "--name", "smoke"])
    assert code == 0, capsys.readouterr().err
    data = json.loads((results / "smoke.json").read_text())
    assert data["data"]["images"] == 40
    rows = {r["pipeline"].split(" ")[0]: r for r in data["rows"]}
    assert set(rows) == {"naive", "keras_resnet.data"}
    for row in rows.values():
        assert row["cores"] == 1 and row["images_per_s"] > 0 and row["images_per_cpu_s"] > 0
        assert row["images_per_s_per_core"] == row["images_per_s"] / 1
        assert row["rounds"] == [[row["images_per_s"], row["images_per_cpu_s"]]]  # one round: the median is it
    per_core, per_cpu_s = data["ratios"]
    ours, naive = rows["keras_resnet.data"], rows["naive"]
    assert per_core["value"] == ours["images_per_s_per_core"] / naive["images_per_s_per_core"]
    assert per_cpu_s["value"] == ours["images_per_cpu_s"] / naive["images_per_cpu_s"]
    for ratio in (per_core, per_cpu_s):
        assert ratio["cores"] == 1 and ratio["target"] == 1.5 and ratio["met"] == (ratio["value"] >= 1.5)
    table = (results / "smoke.md").read_text()
    assert "| naive (read, decode_jpeg, crop, resize; float32 batches, sequential) | 1 |" in table


def test_naive_pipeline_delivers_what_ours_does_as_float32(tmp_path):
    from keras_resnet.bench.pipeline import Config, jpeg_folder, naive_pipeline, ours_pipeline

    cfg = Config(images=10, classes=2, width=80, height=60, image_size=32, batch_size=4, cache_dir=str(tmp_path))
    folder = jpeg_folder(cfg)
    (naive, n_naive), (ours, n_ours) = naive_pipeline(folder, cfg), ours_pipeline(folder, cfg)
    assert (n_naive, n_ours) == (10, 8)  # ours holds back 20% for validation
    # the same batches for the model, except that tf.image.resize hands the naive one float32 pixels and ours
    # rounds them to uint8 (the model casts): a quarter of the bytes to batch and move
    for spec_naive, spec_ours in zip(naive.element_spec, ours.element_spec):
        assert spec_naive.shape == spec_ours.shape
    assert [s.dtype.name for s in naive.element_spec] == ["float32", "float32"]
    assert [s.dtype.name for s in ours.element_spec] == ["uint8", "float32"]
    images, labels = next(iter(naive))
    assert images.shape == (4, 32, 32, 3) and labels.shape == (4, 2)
    assert float(images.numpy().min()) >= 0 and float(images.numpy().max()) <= 255


@pytest.mark.parametrize(("args", "message"), [
    (["--cores", "99"], "--cores must be between 1 and"),
    (["--images", "10", "--batch-size", "64"], "--images of at least 1.25x --batch-size"),
])
def test_pipeline_bad_options(results, capsys, args, message):
    assert main(["bench", "pipeline", *args]) == 2
    assert message in capsys.readouterr().err
    assert not results.exists()


def test_pipeline_says_the_generation_and_each_core_count_on_stderr(tmp_path, results, monkeypatch, capsys):
    """It printed nothing until the final table."""
    from keras_resnet.bench import pipeline

    figures = {1: (100.0, 40.0), 2: (300.0, 90.0)}  # cores -> ours', naive's images/s
    monkeypatch.setattr(pipeline, "available_cores", lambda: [0, 1])
    monkeypatch.setattr(pipeline, "measure_pinned", lambda folder, cfg, cpus: {
        key: {"wall": figure, "cpu": figure, "rounds": [[figure, figure]]}
        for key, figure in zip(("ours", "naive"), figures[len(cpus)])})
    args = ["bench", "pipeline", "--images", "3", "--width", "32", "--height", "32", "--batch-size", "2",
            "--cache-dir", str(tmp_path / "cache"), "--name", "fake"]
    assert main(args) == 0
    folder = tmp_path / "cache" / "jpegs-3x32x32-q90-c4"
    assert capsys.readouterr().err.splitlines() == [
        f"generating 3 JPEGs of 32x32 in {folder} (once) ...",
        "1 core: both pipelines, 5 rounds of 6 batches each, in a process of their own ...",
        "1 core: ours 100.0 images/s per core, naive 40.0",
        "2 cores: both pipelines, 5 rounds of 6 batches each, in a process of their own ...",
        "2 cores: ours 150.0 images/s per core, naive 45.0"]
    assert main([*args, "--cores", "1", "--rounds", "1", "--batches", "1"]) == 0  # the JPEGs are made once
    assert capsys.readouterr().err.splitlines() == [
        "1 core: both pipelines, 1 round of 1 batch each, in a process of their own ...",
        "1 core: ours 100.0 images/s per core, naive 40.0"]
