"""kres predict: decoding of every image mode, the evaluation preprocessing, top-k, errors."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_resnet import predict as pr
from keras_resnet import resnet
from keras_resnet.data import DataConfig, load_datasets
from keras_resnet.errors import KresError
from keras_resnet.meta import ModelMeta
from keras_resnet.runtime import Predictor
from kres.main import main


@pytest.mark.parametrize("mode, value, rgb", [
    ("L", 100, (100, 100, 100)),
    ("RGBA", (10, 20, 30, 0), (10, 20, 30)),  # alpha dropped, colour kept
    ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
    ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
    ("I;16", 65535, (255, 255, 255)),  # 16-bit grey scaled to 8 bits
    ("1", 1, (255, 255, 255)),
])
def test_read_rgb_turns_every_mode_into_uint8_rgb(tmp_path, mode, value, rgb):
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    Image.new(mode, (5, 3), value).save(path)
    out = pr.read_rgb(path)
    assert out.dtype == np.uint8 and out.shape == (3, 5, 3)
    assert tuple(out[1, 2]) == rgb


def test_read_rgb_palette_with_transparency(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    image.save(tmp_path / "p.png", transparency=0)
    assert tuple(pr.read_rgb(tmp_path / "p.png")[0, 0]) == (200, 100, 50)


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "bad.png").write_text("not an image"), "cannot read image .*bad.png"),
    (lambda d: (d / "empty.jpg").write_bytes(b""), "cannot read image .*empty.jpg"),
    (lambda d: None, "image .*missing.png does not exist"),
    (lambda d: (d / "folder.png").mkdir(), "folder.png is a directory"),
])
def test_unreadable_image_is_a_clear_error_naming_it(tmp_path, make, message):
    make(tmp_path)
    name = next((p.name for p in tmp_path.iterdir()), "missing.png")
    with pytest.raises(KresError, match=message):
        pr.read_rgb(tmp_path / name)


def test_truncated_png_is_a_clear_error(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(KresError, match=r"cannot read image .*t\.png"):
        pr.read_rgb(tmp_path / "t.png")


def test_preprocessing_matches_the_evaluation_pipeline(tmp_path):
    """A file through predict's preprocessing equals the same file through load_datasets(...).val."""
    rng = np.random.default_rng(2)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 255, (45, 70, 3), np.uint8)).save(tmp_path / split / cls / "0.png")
    val = load_datasets(DataConfig(data_dir=str(tmp_path), image_size=32, batch_size=1, cache=False)).val
    from_pipeline = np.concatenate([images for images, _ in val.as_numpy_iterator()])
    stub = StubPredictor(tmp_path / "model.keras")
    prepare = pr.preprocessor(stub, 32)
    ours = np.stack([prepare(pr.read_rgb(tmp_path / "val" / cls / "0.png")) for cls in ("a", "b")])
    assert ours.shape == (2, 32, 32, 3) and ours.dtype == from_pipeline.dtype == np.uint8
    np.testing.assert_array_equal(ours, from_pipeline)


class StubPredictor(Predictor):
    """Scores class i by how close the image's mean is to 50 * i; records what it was given."""

    kind = "stub"

    def __init__(self, path, labels=("zero", "one", "two", "three")):
        meta = ModelMeta(18, "v1.5", "cifar", [32, 32, 3], "torch", [0.0] * 3, [1.0] * 3, labels=list(labels))
        super().__init__(Path(path), (32, 32, 3), meta)
        self.seen = []

    def _predict_batch(self, images):
        self.seen.append(images.shape)
        means = images.reshape(len(images), -1).mean(axis=1, keepdims=True)
        scores = -np.abs(means - 50.0 * np.arange(4)[None])
        return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)


def test_predict_top_k_with_labels_from_meta(tmp_path, monkeypatch):
    stub = StubPredictor(tmp_path / "m.keras")
    monkeypatch.setattr(pr, "load_predictor", lambda path, num_threads=None: stub)
    for name, level in (("dark.png", 2), ("bright.jpg", 149)):
        Image.new("L", (40, 48), level).save(tmp_path / name, quality=100)
    results = pr.predict(pr.PredictConfig(str(tmp_path / "m.keras"), [str(tmp_path / "dark.png"),
                                                                       str(tmp_path / "bright.jpg")], top_k=3))
    assert stub.seen == [(2, 32, 32, 3)]
    assert [p.label for p in results[0].predictions] == ["zero", "one", "two"]
    assert [p.label for p in results[1].predictions] == ["three", "two", "one"]
    scores = [p.score for p in results[1].predictions]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1 / (1 + np.exp(-49) + np.exp(-99)
                                                                                        + np.exp(-149)), abs=1e-3)
    assert len(pr.predict(pr.PredictConfig("m", [str(tmp_path / "dark.png")], top_k=9))[0].predictions) == 4


def test_tied_scores_rank_the_lower_class_index_first_as_classify_does():
    """An int8 model scored circle and trïangle the same: kres predict and deploy/classify.py put them in other
    orders (their top-1 disagreed); both put the lower class index first."""
    scores = np.array([[0.38671875, 0.2265625, 0.38671875], [0.25, 0.5, 0.25]], np.float32)
    ranked = pr.top_k(scores, ["circle", "square", "trïangle"], 3)
    assert [[(p.label, p.index, p.score) for p in row] for row in ranked] == [
        [("circle", 0, 0.38671875), ("trïangle", 2, 0.38671875), ("square", 1, 0.2265625)],
        [("square", 1, 0.5), ("circle", 0, 0.25), ("trïangle", 2, 0.25)]]


def test_bad_image_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    (tmp_path / "ok.png").write_bytes(b"")
    loaded = []
    monkeypatch.setattr(pr, "load_predictor", lambda *a, **k: loaded.append(a))
    with pytest.raises(KresError, match=r"ok\.png"):
        pr.predict(pr.PredictConfig("m.keras", [str(tmp_path / "ok.png")]))
    assert not loaded


def test_unreadable_images_are_skipped_and_the_rest_predicted_in_order(tmp_path, monkeypatch):
    """One bad file among many stopped the whole command before any prediction."""
    stub = StubPredictor(tmp_path / "m.keras")
    loaded = []
    monkeypatch.setattr(pr, "load_predictor", lambda path, num_threads=None: loaded.append(path) or stub)
    Image.new("L", (40, 48), 2).save(tmp_path / "dark.png")
    Image.new("L", (40, 48), 149).save(tmp_path / "bright.png")
    (tmp_path / "empty.png").write_bytes(b"")
    images = [str(tmp_path / name) for name in ("dark.png", "empty.png", "gone.png", "bright.png")]
    results = pr.predict(pr.PredictConfig("m.keras", images, top_k=1, batch_size=1))
    assert [r.image for r in results] == images and len(loaded) == 1
    assert [r.predictions[0].label if r.predictions else None for r in results] == ["zero", None, None, "three"]
    assert [r.error for r in results] == [
        None, f"cannot read image {images[1]} (it is empty: 0 bytes): pass a JPEG, PNG, BMP, "
              "GIF, TIFF or WebP file", f"image {images[2]} does not exist", None]
    assert stub.seen == [(1, 32, 32, 3), (1, 32, 32, 3)]
    with pytest.raises(KresError, match=rf"^none of the 2 images can be read: cannot read image {images[1]} "):
        pr.predict(pr.PredictConfig("m.keras", images[1:3]))
    with pytest.raises(KresError, match=rf"^image {images[2]} does not exist$"):  # one bad file, named twice
        pr.predict(pr.PredictConfig("m.keras", [images[2], images[2]]))
    assert len(loaded) == 1  # refused before the model loads


def test_a_folder_stands_for_its_images_as_classify_takes_it(tmp_path, monkeypatch):
    """A folder was "a directory, not an image: pass image files" where deploy/classify.py takes a folder's images."""
    stub = StubPredictor(tmp_path / "m.keras")
    monkeypatch.setattr(pr, "load_predictor", lambda path, num_threads=None: stub)
    photos, empty = tmp_path / "circle", tmp_path / "empty"
    (photos / "sub").mkdir(parents=True)
    empty.mkdir()
    Image.new("L", (40, 48), 149).save(photos / "b.PNG")
    Image.new("L", (40, 48), 2).save(photos / "a.jpg")
    Image.new("L", (40, 48), 2).save(photos / ".hidden.png")
    Image.new("L", (40, 48), 2).save(photos / "sub" / "c.png")
    (photos / "notes.txt").write_text("not an image")
    results = pr.predict(pr.PredictConfig("m.keras", [str(photos), str(empty)], top_k=1))
    assert [(r.image, r.predictions[0].label if r.predictions else None) for r in results] == [
        (str(photos / "a.jpg"), "zero"), (str(photos / "b.PNG"), "three"), (str(empty), None)]
    assert results[2].error == (f"{empty} holds no images (JPEG, PNG, BMP, GIF, TIFF or WebP files directly inside "
                                "it): pass image files, or a folder of them")


def test_none_readable_names_each_image_and_a_huge_one_is_too_large_not_unreadable(tmp_path, monkeypatch):
    """Where no image could be read, only the first was named ("none of the 2 images can be read: image nope.png
    does not exist"); an image over Pillow's pixel limit was "cannot read ...: pass a JPEG, PNG, ..." for a PNG."""
    monkeypatch.setattr(pr, "load_predictor", lambda path, num_threads=None: pytest.fail("no model is needed"))
    (tmp_path / "notes.txt").write_text("not an image")
    names = [str(tmp_path / name) for name in ("nope.png", "notes.txt", *(f"gone{i}.png" for i in range(5)))]
    with pytest.raises(KresError) as caught:
        pr.predict(pr.PredictConfig("m.keras", names[:2]))
    assert str(caught.value) == (
        f"none of the 2 images can be read: image {names[0]} does not exist; cannot read image {names[1]} (cannot "
        f"identify image file '{names[1]}'): pass a JPEG, PNG, BMP, GIF, TIFF or WebP file")
    with pytest.raises(KresError, match=rf"^none of the 7 images can be read: image {names[0]} does not exist; .*; "
                                        rf"image {tmp_path / 'gone2.png'} does not exist; and 2 more$"):
        pr.predict(pr.PredictConfig("m.keras", names))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the hard limit is twice this: 200 pixels
    Image.new("RGB", (15, 14)).save(tmp_path / "big.png")
    with pytest.raises(KresError) as caught:
        pr.predict(pr.PredictConfig("m.keras", [str(tmp_path / "big.png")]))
    assert str(caught.value) == (f"image {tmp_path / 'big.png'} is too large to read (Image size (210 pixels) exceeds "
                                 "limit of 200 pixels, could be decompression bomb DOS attack.): scale it down")


def test_each_image_is_decoded_once_and_a_truncated_one_is_skipped(tmp_path, monkeypatch):
    """Every image was decoded twice: once to check it before the model loaded, again to predict it (a
    12000x12000 photo took 48 s). The check now reads headers; a truncated image fails at its one decode."""
    stub = StubPredictor(tmp_path / "m.keras")
    monkeypatch.setattr(pr, "load_predictor", lambda path, num_threads=None: stub)
    Image.new("L", (40, 48), 2).save(tmp_path / "dark.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    decoded = []
    real = pr.read_rgb
    monkeypatch.setattr(pr, "read_rgb", lambda path: decoded.append(Path(path).name) or real(path))
    images = [str(tmp_path / "t.png"), str(tmp_path / "dark.png")]
    results = pr.predict(pr.PredictConfig("m.keras", images, top_k=1))
    assert decoded == ["t.png", "dark.png"] and stub.seen == [(1, 32, 32, 3)]
    assert results[0].error.startswith(f"cannot read image {images[0]} (") and not results[0].predictions
    assert results[1].error is None and results[1].predictions[0].label == "zero"
    with pytest.raises(KresError, match=rf"^cannot read image {images[0]} \("):  # the only image: the error
        pr.predict(pr.PredictConfig("m.keras", images[:1]))
    with pytest.raises(KresError, match=rf"^none of the 2 images can be read: cannot read image {images[0]} \("):
        pr.predict(pr.PredictConfig("m.keras", [images[0], images[0] + "x"]))


def test_digits_model_uses_the_whole_frame(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"data": {"dataset": None, "image_size": 32}}))
    stub = StubPredictor(tmp_path / "best.keras")
    assert pr._trained_on_digits(stub)
    glyph = np.zeros((8, 8, 3), np.uint8)
    glyph[:, 0] = 255  # a stroke on the frame's edge survives (a 0.875 centre crop would cut it off)
    assert pr.preprocessor(stub, 32)(glyph)[:, 0].mean() > 100
    (tmp_path / "config.json").write_text(json.dumps({"data": {"dataset": "cifar10"}}))
    assert not pr._trained_on_digits(stub)


def test_cli_predict_with_a_real_model(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = resnet(18, num_classes=3, input_shape=(32, 32, 3), stem="cifar", zero_init_residual=False)
    model.save(tmp_path / "best.keras")
    ModelMeta.from_model(model, ["ant", "bee", "cow"]).save(tmp_path)
    image = np.random.default_rng(5).integers(0, 255, (50, 40, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")

    assert main(["predict", str(tmp_path), str(tmp_path / "x.png"), "--top-k", "2", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    stub = StubPredictor(tmp_path / "best.keras")
    expected = model.predict(pr.preprocessor(stub, 32)(image)[None], verbose=0)[0]
    best = np.argsort(-expected)[:2]
    assert [p["label"] for p in result["predictions"]] == [["ant", "bee", "cow"][i] for i in best]
    np.testing.assert_allclose([p["score"] for p in result["predictions"]], expected[best], atol=1e-5)

    assert main(["predict", str(tmp_path), str(tmp_path / "x.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("x.png") and len(out) == 4  # the file, then 3 classes (top-5 capped at 3)

    # an export folder (model.keras and meta.json): it said "holds no model ...: train into it first"
    exported = tmp_path / "export"
    exported.mkdir()
    (exported / "model.keras").write_bytes((tmp_path / "best.keras").read_bytes())
    ModelMeta.load(tmp_path).save(exported)
    assert main(["predict", str(exported), str(tmp_path / "x.png"), "--top-k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["predictions"] == result["predictions"]

    assert main(["predict", str(tmp_path), str(tmp_path / "nope.png")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("Error: image ")

    # the model copied away from its meta.json: numbered classes, said (they were shown without a word)
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "best.keras").write_bytes((tmp_path / "best.keras").read_bytes())
    assert main(["predict", str(alone / "best.keras"), str(tmp_path / "x.png"), "--top-k", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [  # and the resize, which is the digits' own for a model trained on them
        "note: no meta.json beside best.keras: its classes are shown as class_0 ... class_2 and images are resized as "
        "for ImageNet (shorter side, centre crop) whatever it was trained with; copy its run's meta.json beside it for "
        "their names and its own resize"]
    assert captured.out.splitlines()[1].split()[1] == f"class_{best[0]}"
    # beside the meta.json of another model (an export of another model into the same folder): it printed that
    # model's class names for these outputs, exit status 0
    ModelMeta(**{**ModelMeta.from_model(model).to_dict(), "labels": ["ant", "bee"]}).save(alone)  # (from_model refuses)
    assert main(["predict", str(alone / "best.keras"), str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.splitlines() == [  # (a .keras model is checked against it as it loads)
        f"Error: {alone / 'meta.json'} describes another model (2 classes) than best.keras (3 classes): put best.keras "
        "in a folder of its own, or with the meta.json of the run that made it"]
    (alone / "meta.json").unlink()

    # a bad file among good ones: the good ones predicted, the bad one said last on stderr, exit status 1
    assert main(["predict", str(tmp_path), str(tmp_path / "nope.png"), str(tmp_path / "x.png")]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].endswith("x.png") and len(captured.out.splitlines()) == 4
    assert captured.err.splitlines() == [f"skipped: image {tmp_path / 'nope.png'} does not exist"]
    assert main(["predict", str(tmp_path), str(tmp_path / "nope.png"), str(tmp_path / "x.png"), "--json"]) == 1
    listed = json.loads(capsys.readouterr().out)
    assert [(r["image"], r["error"] is None, len(r["predictions"])) for r in listed] == [
        (str(tmp_path / "nope.png"), False, 0), (str(tmp_path / "x.png"), True, 3)]

    assert main(["predict", str(tmp_path), str(tmp_path / "x.png"), "--threads", "2"]) == 2  # was ignored
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "Error: --threads sets the TFLite interpreter's threads, and best.keras is not a .tflite model: drop --threads")


def test_a_model_that_is_not_square_is_one_line_that_says_so(tmp_path, capsys):
    """The builder makes 48x64 models; predict said it "takes 48x64x3 images but got 48x48x3: use data at 48x64 px
    (e.g. --image-size 48)", and with --image-size 64 that it took 48x48 images; evaluate, that "the models take
    different input sizes"."""
    from keras_resnet.model import resnet

    (tmp_path / "m").mkdir()
    resnet(18, num_classes=3, input_shape=(48, 64, 3)).save(tmp_path / "m" / "wide.keras")
    Image.new("RGB", (64, 48), (10, 200, 30)).save(tmp_path / "x.png")
    line = ("Error: wide.keras takes 48x64 images, and kres predict and evaluate take square models only: run it in "
            "your own code on images resized to 48x64 (raw 0-255 RGB pixels)")
    for args in ([], ["--image-size", "64"]):
        assert main(["predict", str(tmp_path / "m" / "wide.keras"), str(tmp_path / "x.png"), *args]) == 2
        assert capsys.readouterr().err.splitlines() == [line]
    assert main(["evaluate", str(tmp_path / "m" / "wide.keras"), "--dataset", "synthetic"]) == 2
    assert capsys.readouterr().err.splitlines() == [line]


@pytest.fixture(scope="module")
def brightness_export(tmp_path_factory) -> Path:
    """A folder as kres export writes it: ``model_int8.tflite`` (32 px, uint8 in and out) of three classes ant, bee,
    cow that score an image's mean brightness (cow the brightest), its ``meta.json`` (a full-frame resize, as the
    digits'), ``labels.txt`` and ``model_int8.card.json``. An image bright along its left edge tells the full frame
    (it keeps that edge: cow) from a centre crop (it cuts it off: a dark image)."""
    from keras_resnet import export as ex
    from keras_resnet.quantize import convert, describe_tflite

    inputs = keras.Input((32, 32, 3))
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    dense.set_weights([np.tile(np.float32([[0.0, 0.1, 0.2]]) / 3, (3, 1)), np.zeros(3, np.float32)])
    rng = np.random.default_rng(1)
    calibration = lambda: (rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32) for _ in range(4))  # noqa: E731
    folder = tmp_path_factory.mktemp("export")
    content = convert(model, "int8", calibration)
    (folder / "model_int8.tflite").write_bytes(content)
    meta = ModelMeta(18, "v1.5", "imagenet", [32, 32, 3], "torch", [123.675, 116.28, 103.53], [58.395, 57.12, 57.375],
                     labels=["ant", "bee", "cow"], extra={"resize": "full_frame"})
    meta.save(folder)
    (folder / "labels.txt").write_text("ant\nbee\ncow\n")
    card = ex.model_card(folder / "model_int8.tflite", meta, describe_tflite(folder / "model_int8.tflite", content),
                         None, "int8", None)
    (folder / "model_int8.card.json").write_text(json.dumps(card))
    return folder


def _device_folder(export: Path, folder: Path, *names: str) -> Path:
    """``export``'s model copied into ``folder`` with ``names`` (deploy/README.md step 3: no meta.json)."""
    folder.mkdir()
    for name in ("model_int8.tflite", *names):
        (folder / name).write_bytes((export / name).read_bytes())
    return folder / "model_int8.tflite"


def _edge_lit(tmp_path: Path) -> Path:
    pixels = np.zeros((40, 48, 3), np.uint8)
    pixels[:, :8] = 255
    Image.fromarray(pixels).save(tmp_path / "edge.png")
    return tmp_path / "edge.png"


def test_a_tflite_beside_its_card_predicts_as_in_its_export_folder(brightness_export, tmp_path, capsys):
    """deploy/README.md's folder (the .tflite, its card, labels.txt; no meta.json): kres predict numbered the
    classes and resized by centre crop ("no meta.json beside model_int8.tflite: ..."), where classify.py, and kres
    predict in the export folder, read the card's full-frame resize and the labels: other scores and classes."""
    image = _edge_lit(tmp_path)
    assert main(["predict", str(brightness_export / "model_int8.tflite"), str(image), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)[0]["predictions"]
    assert [p["label"] for p in exported] == ["cow", "bee", "ant"] and exported[0]["score"] > 0.9
    device = _device_folder(brightness_export, tmp_path / "dev", "model_int8.card.json", "labels.txt")
    assert main(["predict", str(device), str(image), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["predictions"] == exported and captured.err == ""
    (device.parent / "labels.txt").write_text("yes\nno\n")  # another model's: the card's, as classify.py takes them
    assert main(["predict", str(device), str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["predictions"] == exported
    # labels.txt alone: the names, and a note that the resize is a guess
    alone = _device_folder(brightness_export, tmp_path / "labels_only", "labels.txt")
    assert main(["predict", str(alone), str(image), "--top-k", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1].split()[1] in ("ant", "bee", "cow")
    assert captured.err.splitlines() == [
        "note: no meta.json or model_int8.card.json beside model_int8.tflite: images are resized as for ImageNet "
        "(shorter side, centre crop) whatever it was trained with; copy its card from its kres export folder beside "
        "it for its own resize"]
    (alone.parent / "labels.txt").unlink()  # none of them: the note as before
    assert main(["predict", str(alone), str(image), "--top-k", "1"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "note: no meta.json beside model_int8.tflite: its classes are shown as class_0 ... class_2 and images are "
        "resized as for ImageNet (shorter side, centre crop) whatever it was trained with; copy its run's meta.json "
        "beside it for their names and its own resize"]


def test_kres_evaluate_takes_the_classes_of_a_tflites_card(brightness_export, tmp_path, capsys):
    """Evaluate reads a model's facts where predict does: a folder of two of the model's classes, by name, is
    scored (it was "model_int8.tflite has 3 outputs but the data has 2 classes")."""
    device = _device_folder(brightness_export, tmp_path / "dev", "model_int8.card.json")
    for name in ("cow", "ant"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.new("RGB", (40, 48), 255 if name == "cow" else 0).save(tmp_path / "data" / name / "0.png")
    assert main(["evaluate", str(device), "--data-dir", str(tmp_path / "data"), "--all-images", "--json",
                 "--output", str(tmp_path / "eval")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"][0]["metrics"]["per_class"] == {"ant": 1.0, "bee": None, "cow": 1.0}
    assert report["warnings"] == []


def test_a_card_of_another_model_is_refused_naming_what_differs(brightness_export, tmp_path, capsys):
    device = _device_folder(brightness_export, tmp_path / "dev", "labels.txt")
    card = json.loads((brightness_export / "model_int8.card.json").read_text())
    card["output"]["shape"] = [1, 10]
    (device.parent / "model_int8.card.json").write_text(json.dumps(card))
    assert main(["predict", str(device), str(_edge_lit(tmp_path))]) == 2
    assert capsys.readouterr().err == (
        f"Error: {device.parent / 'model_int8.card.json'} describes another model (output shape [1, 10]) than "
        "model_int8.tflite (output shape [1, 3]): copy this model's card from its kres export folder, or remove it\n")
    card = json.loads((brightness_export / "model_int8.card.json").read_text())  # the same tensors, another file
    card["model_sha256"] = "0" * 64
    (device.parent / "model_int8.card.json").write_text(json.dumps(card))
    assert main(["predict", str(device), str(_edge_lit(tmp_path))]) == 2
    assert capsys.readouterr().err == (
        f"Error: {device.parent / 'model_int8.card.json'} is the card of another model_int8.tflite (the file's "
        "SHA-256 is not the one it records: exported again since, or copied from another export): copy this model's "
        "card from its kres export folder, or remove it\n")
    (device.parent / "model_int8.card.json").write_text('{"input": {"resize": "center_crop"}}')  # not kres export's
    assert main(["predict", str(device), str(_edge_lit(tmp_path))]) == 2
    assert capsys.readouterr().err == (
        f"Error: {device.parent / 'model_int8.card.json'} is not a model card kres export wrote (no 'architecture'): "
        "copy it again from the kres export folder, or remove it\n")


def test_a_logits_models_card_says_its_scores_are_logits(brightness_export, tmp_path):
    from keras_resnet.meta import deployed_facts
    from keras_resnet.runtime import load_predictor

    device = _device_folder(brightness_export, tmp_path / "dev", "model_int8.card.json")
    predictor = load_predictor(device)
    assert (predictor.labels, predictor.meta.extra) == (["ant", "bee", "cow"], {"resize": "full_frame"})
    card = json.loads((device.parent / "model_int8.card.json").read_text())
    card["output"]["meaning"] = "class scores (logits), not probabilities; dequantize as (q - zero_point) * scale"
    (device.parent / "model_int8.card.json").write_text(json.dumps(card))
    meta, labels, names_file = deployed_facts(device, {"input": card["input"], "output": card["output"]})
    assert (meta.extra, labels, meta.depth, meta.input_shape) == ({"resize": "full_frame", "scores": "logits"},
                                                                   ["ant", "bee", "cow"], 18, [32, 32, 3])
    assert names_file == device.parent / "model_int8.card.json"


@pytest.mark.parametrize(("beside", "names_file"), [
    (("model_int8.card.json", "labels.txt"), "labels.txt"),  # labels.txt first, as classify.py picks
    (("model_int8.card.json",), "model_int8.card.json"),
    (("labels.txt",), "labels.txt"),
    ((), None),  # class_0, class_1, class_2: no file names them
])
def test_a_models_class_names_say_which_file_they_came_from(brightness_export, tmp_path, beside, names_file):
    """kres evaluate called the names of a .tflite's card or labels.txt "its meta.json"'s (test_evaluate)."""
    from keras_resnet.runtime import load_predictor

    assert load_predictor(brightness_export / "model_int8.tflite").labels_from == brightness_export / "meta.json"
    predictor = load_predictor(_device_folder(brightness_export, tmp_path / "dev", *beside))
    assert predictor.labels_from == (tmp_path / "dev" / names_file if names_file else None)


def _full_frame_as_the_card_says(rgb: np.ndarray, size: int) -> np.ndarray:
    """The card's ``resize_how`` for ``full_frame``, word for word, in NumPy (float64)."""
    height, width = rgb.shape[:2]
    y = (np.arange(size) + 0.5) * height / size - 0.5
    x = (np.arange(size) + 0.5) * width / size - 0.5
    rows, cols = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - rows)[:, None, None], (x - cols)[None, :, None]
    padded = np.pad(rgb.astype(np.float64), ((1, 1), (1, 1), (0, 0)))  # a pixel outside the image counts as 0

    def pixels(r, c):
        return padded[np.clip(r, -1, height) + 1][:, np.clip(c, -1, width) + 1]

    return np.round((1 - fy) * (1 - fx) * pixels(rows, cols) + (1 - fy) * fx * pixels(rows, cols + 1)
                    + fy * (1 - fx) * pixels(rows + 1, cols) + fy * fx * pixels(rows + 1, cols + 1))


def _centre_crop_as_the_card_says(rgb: np.ndarray, size: int) -> np.ndarray:
    """The card's ``resize_how`` for ``center_crop``, word for word, with PIL."""
    height, width = rgb.shape[:2]
    shorter = int(size / 0.875)
    s = shorter / min(height, width)
    new_h, new_w = (shorter, round(width * s)) if height <= width else (round(height * s), shorter)
    resized = np.stack([np.asarray(Image.fromarray(rgb[..., c].astype(np.float32), "F").resize(
        (new_w, new_h), Image.BILINEAR)) for c in range(3)], axis=-1)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.round(resized[top:top + size, left:left + size])


def test_the_cards_resize_words_reproduce_predicts_pixels():
    """The card said "resize the whole image to the input size": PIL's and tf.image's resizes of a digit moved the
    digits model's scores by 0.11-0.51 from kres predict's. Its words now give predict's pixels, each within 1
    (float64 against TensorFlow's float32, and their ties, rounded to even)."""
    from types import SimpleNamespace

    from keras_resnet.data import CENTER_CROP, FULL_FRAME, RESIZE_HOW

    assert RESIZE_HOW[FULL_FRAME] == (
        "resample the whole image to the input size (size x size), bilinear without antialiasing: output pixel (row "
        "i, column j) is the image at y = (i + 0.5) * height / size - 0.5, x = (j + 0.5) * width / size - 0.5 (pixel "
        "centres at whole numbers), from the pixels (row, column) (Y, X), (Y, X + 1), (Y + 1, X) and (Y + 1, X + 1) "
        "weighted (1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx) and fy * fx, where Y = floor(y), X = floor(x), "
        "fy = y - Y and fx = x - X; a pixel outside the image counts as 0 (PIL's and tf.image's resize repeat the "
        "edge pixels instead, and PIL antialiases when it shrinks); then round half to even, as numpy.round")
    assert RESIZE_HOW[CENTER_CROP] == (
        "with size the input size, scale the image by s = int(size / 0.875) / its shorter side (the shorter side "
        "becomes int(size / 0.875), the longer round(longer * s)), bilinear with antialiasing, as PIL's "
        "Image.resize(..., Image.BILINEAR) computes it on float pixels (mode F, a channel at a time) and "
        "tf.image.resize(..., antialias=True); cut the central size x size square, its top-left corner at "
        "((new height - size) // 2, (new width - size) // 2); then round half to even, as numpy.round")
    rng = np.random.default_rng(0)
    for resize, as_said in ((FULL_FRAME, _full_frame_as_the_card_says), (CENTER_CROP, _centre_crop_as_the_card_says)):
        model = SimpleNamespace(path=Path("model_int8.tflite"), meta=SimpleNamespace(extra={"resize": resize}))
        for shape in ((8, 8), (40, 48), (100, 37), (33, 70)):  # up and down, either side the shorter
            rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
            ours = pr.preprocessor(model, 32)(rgb).astype(int)
            assert np.abs(ours - as_said(rgb, 32)).max() <= 1, (resize, shape)
            assert np.mean(ours != as_said(rgb, 32)) < 0.01, (resize, shape)
    digit = np.zeros((8, 8, 3), np.uint8)
    digit[2:6, 3] = 255
    model = SimpleNamespace(path=Path("model_int8.tflite"), meta=SimpleNamespace(extra={"resize": FULL_FRAME}))
    np.testing.assert_array_equal(pr.preprocessor(model, 32)(digit), _full_frame_as_the_card_says(digit, 32))


def test_help_says_how_images_are_resized_for_either_kind_of_model(capsys):
    """It said images "are resized and centre-cropped as in evaluation", not so for a digits model (whole frame)."""
    assert main(["predict", "--help"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert ("they are resized as in evaluation: the shorter side and a centre crop, or the whole frame for a model "
            "trained on the built-in digits (as its run, meta.json or card records).") in said


def test_a_labels_txt_with_a_bom_or_a_name_twice_beside_a_tflite(brightness_export, tmp_path):
    """A labels.txt saved by Notepad (a byte-order mark) named the first class "\\ufeffant", which evaluate then found
    in no folder; one naming a class twice matched two classes to one output (a review, 2026-12-06)."""
    from keras_resnet.runtime import load_predictor

    device = _device_folder(brightness_export, tmp_path / "dev", "model_int8.card.json")
    (device.parent / "labels.txt").write_text("\ufeffant\nbee\ncow\n", encoding="utf-8")
    assert load_predictor(device).labels == ["ant", "bee", "cow"]
    (device.parent / "labels.txt").write_text("ant\nant\ncow\n", encoding="utf-8")
    with pytest.raises(KresError) as err:
        load_predictor(device)
    assert str(err.value) == (f"{device.parent / 'labels.txt'} does not name the classes of model_int8.tflite (its "
                              "labels name 'ant' twice: each class needs a name of its own): copy it again from the "
                              "kres export folder, or remove it")


def test_a_labels_txt_of_another_count_beside_a_card_is_said_to_be_passed_over(brightness_export, tmp_path, capsys):
    """kres predict showed the card's names without a word where classify.py said the labels.txt beside the model
    names another number of classes (a review, 2026-12-06)."""
    device = _device_folder(brightness_export, tmp_path / "dev", "model_int8.card.json")
    (device.parent / "labels.txt").write_text("ant\nbee\n", encoding="utf-8")
    assert main(["predict", str(device), str(_edge_lit(tmp_path)), "--json"]) == 0
    captured = capsys.readouterr()
    assert "note: labels.txt beside model_int8.tflite holds 2 labels for the model's 3 classes: it is passed over; " \
           "copy the labels.txt from this model's kres export folder" in captured.err.splitlines()
    assert {p["label"] for p in json.loads(captured.out)[0]["predictions"]} <= {"ant", "bee", "cow"}
    (device.parent / "labels.txt").write_text("ant\nbee\ncow\n", encoding="utf-8")  # as many: no note
    assert main(["predict", str(device), str(_edge_lit(tmp_path))]) == 0
    assert "passed over" not in capsys.readouterr().err
