"""``kres export``: SavedModel (TFSMLayer parity in a fresh process), mixed-precision rebuild, the int8 export with
its report and model card, every user error, and atomic writes."""

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_resnet import export as ex
from keras_resnet import fileio
from keras_resnet.meta import ModelMeta

SIZE = 32
LABELS = ["zero", "one", "two"]
DATA = {"dataset": "synthetic", "synthetic_classes": 3, "synthetic_size": 6, "image_size": SIZE, "seed": 5}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory whose model was built under the mixed_float16 policy."""
    import keras

    from keras_resnet.model import resnet

    run = tmp_path_factory.mktemp("run")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = resnet(18, num_classes=3, input_shape=(SIZE, SIZE, 3), zero_init_residual=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("conv1_conv").compute_dtype == "float16"
    model.save(run / "best.keras")
    ModelMeta.from_model(model, LABELS).save(run)
    return run


@pytest.fixture(scope="module")
def trained_run(run_dir, tmp_path_factory):
    """``run_dir`` with the config.json that ``kres train`` writes beside the model."""
    run = tmp_path_factory.mktemp("trained_run")
    for name in ("best.keras", "meta.json"):
        shutil.copy(run_dir / name, run / name)
    (run / "config.json").write_text(json.dumps({"data": DATA, "train": {}}))
    return run


@pytest.fixture(scope="module")
def heldout():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, SIZE, SIZE, 3)).astype(np.float32), np.array([0, 1, 2, 0, 1, 2])


@pytest.fixture(scope="module")
def exported(trained_run, heldout, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    images = heldout[0]
    cfg = ex.ExportConfig(source=str(trained_run), output=str(out), saved_model=True, edgetpu=True,
                          calibration_steps=4)
    messages = []
    result = ex.export(cfg, messages.append, calibration=lambda: (img[None] for img in images[:4]), heldout=heldout)
    assert messages[0] == f"loading {trained_run / 'best.keras'}"
    return result


def test_mixed_precision_model_is_exported_from_a_float32_rebuild(run_dir, exported, heldout):
    import keras

    mixed = keras.saving.load_model(run_dir / "best.keras", compile=False)
    rebuilt = keras.saving.load_model(exported.output_dir / "model.keras", compile=False)
    assert {layer.compute_dtype for layer in rebuilt.layers} == {"float32"}
    assert {layer.compute_dtype for layer in mixed.layers} >= {"float16"}
    for a, b in zip(mixed.weights, rebuilt.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(rebuilt.predict(heldout[0], verbose=0), mixed.predict(heldout[0], verbose=0),
                               atol=2e-2)


def test_export_writes_int8_card_labels_and_report(exported, heldout):
    out = exported.output_dir
    names = sorted(p.name for p in out.iterdir())
    assert names == ["converter.log", "export_report.json", "export_report.txt", "labels.txt", "meta.json",
                     "model.keras", "model_int8.card.json", "model_int8.tflite", "saved_model"]  # no .lock left
    cfg = ex.validate(ex.ExportConfig(source="run", output=str(out), saved_model=True, edgetpu=True))
    assert [name for name in names if ex.may_write(cfg, name)] == names  # what the check before converting expects
    assert (out / "labels.txt").read_text() == "zero\none\ntwo\n"
    report = json.loads((out / "export_report.json").read_text())
    entry = report["artifacts"]["model_int8.tflite"]
    assert entry["size_bytes"] == (out / "model_int8.tflite").stat().st_size
    # the digests that tell a later reader the card and the converter.log are this export's (a review, 2026-12-06)
    card = json.loads((out / "model_int8.card.json").read_text())
    assert card["model_sha256"] == hashlib.sha256((out / "model_int8.tflite").read_bytes()).hexdigest()
    assert report["converter_log_sha256"] == hashlib.sha256((out / "converter.log").read_bytes()).hexdigest()[:16]
    assert entry["ops"]["CONV_2D"] == 20 and entry["flex_ops"] == []
    assert entry["edgetpu"]["passed"] and entry["edgetpu"]["cpu_ops"] == {}
    assert isinstance(entry["gpu_delegate_compatible"], bool)
    agreement = entry["agreement"]
    # the report's figures are those of the written file (the bounds on a trained model are below)
    from keras_resnet.runtime import KerasPredictor, TFLitePredictor, tflite_interpreter

    images = heldout[0]
    ours = TFLitePredictor(out / "model_int8.tflite", tflite_interpreter(out / "model_int8.tflite"), None)
    keras_probs = KerasPredictor(out / "model.keras", ex.load_float32_model(out / "model.keras"), None).predict(images)
    assert agreement == ex.compare(keras_probs, ours.predict(images), heldout[1])
    assert agreement["reference_top1"] == report["keras_top1"]
    card = json.loads((out / "model_int8.card.json").read_text())
    assert card["input"]["shape"] == [1, SIZE, SIZE, 3] and card["input"]["dtype"] == "uint8"
    assert card["input"]["zero_point"] == 0 and card["output"]["scale"] == pytest.approx(1 / 256)
    assert card["labels"] == LABELS and card["normalization"]["name"] == "torch"
    assert card["input"]["resize"] == "center_crop"  # synthetic data: evaluated by shorter side and centre crop
    assert card["normalization"]["inside_model"] is True
    assert card["tflite"]["weights"] == {"DEPTHWISE_CONV_2D": "per-channel", "CONV_2D": "per-channel",
                                         "FULLY_CONNECTED": "per-tensor"}
    assert card["tflite"]["ops"]["FULLY_CONNECTED"] >= 1 and set(card["tflite"]["ops"]) == set(entry["ops"])
    assert card["tflite"]["min_runtime_version"].count(".") == 2
    delegates = card["delegates"]
    assert entry["delegates"] == {"xnnpack": True, "gpu": card["gpu_delegate_compatible"], "nnapi": True,
                                  "edgetpu": True}
    xnnpack = delegates["xnnpack"]  # one partition: everything but the uint8 ends and the int8 softmax
    assert xnnpack["partitions"] == 1 and xnnpack["builtin_kernel_ops"] == {"QUANTIZE": 2, "SOFTMAX": 1}
    assert xnnpack["ops_delegated"] == xnnpack["ops"] - 3
    assert delegates["edgetpu"]["check"] == "static check of the flatbuffer (edgetpu_compiler did not run)"
    assert delegates["nnapi"]["problems"] == []
    assert card["accuracy"]["top1"] == agreement["top1"] and card["accuracy"]["dataset"] == "synthetic"
    text = (out / "export_report.txt").read_text()
    assert text == exported.text and "Edge TPU check passes" in text and "top-1 agreement" in text


def test_kres_export_int8_keeps_the_converter_off_the_terminal(trained_digits_run, tmp_path):
    out = tmp_path / "out"
    kres = "import sys; from kres.main import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", kres, "export", str(trained_digits_run), "-o", str(out),
                             "--tflite", "--quantize", "int8", "--calibration-steps", "8", "--eval-images", "0"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    chatter = [line for line in result.stderr.splitlines()
               if "deprecated" in line.lower() or "fully_quantize" in line or "UserWarning" in line
               or "tf_tfl_flatbuffer_helpers" in line or "trackable_obj" in line]
    assert chatter == [], chatter
    log = (out / "converter.log").read_text()
    assert "fully_quantize: 0" in log  # the chatter is kept, in the export directory
    assert "model_int8.tflite" in result.stdout and "delegates: xnnpack yes" in result.stdout


def test_int8_export_of_trained_digits_agrees_with_keras(trained_digits_run, tmp_path):
    result = ex.export(ex.ExportConfig(source=str(trained_digits_run), output=str(tmp_path / "out"), tflite=True,
                                       quantize="int8"))
    entry = result.report["artifacts"]["model_int8.tflite"]
    agreement = entry["agreement"]
    assert agreement["images"] >= 300 and result.report["keras_top1"] >= 0.9
    assert agreement["top1_agreement"] >= 0.97, agreement
    assert abs(agreement["top1"] - agreement["reference_top1"]) <= 0.01, agreement
    assert entry["weight_quantization"]["FULLY_CONNECTED"] == "per-tensor"


@pytest.mark.parametrize(("data", "dataset", "resize"), [
    ({"dataset": None, "data_dir": None}, "digits", "full_frame"),
    ({"dataset": None, "data_dir": "/photos/pets"}, "pets", "center_crop"),  # a folder is not "digits"
])
def test_model_card_names_the_data_and_its_resize(data, dataset, resize):
    from keras_resnet.data import DataConfig

    io = {"shape": [1, 32, 32, 3], "dtype": "uint8", "scale": [1.0], "zero_point": [0]}
    tflite = {"inputs": [io], "outputs": [io], "gpu_delegate_compatible": True}
    meta = ModelMeta(18, "v1.5", "imagenet", [32, 32, 3], "torch", [0.0] * 3, [1.0] * 3, LABELS)
    agreement = {"images": 8, "top1_agreement": 0.75, "max_abs_diff": 0.5, "reference_top1": 0.625, "top1": 0.5}
    card = ex.model_card(Path("m.tflite"), meta, tflite, agreement, "int8", DataConfig(**data))
    assert (card["accuracy"]["dataset"], card["input"]["resize"]) == (dataset, resize)
    assert {k: card["accuracy"][k] for k in ("top1", "images", "keras_top1")} == {"top1": 0.5, "images": 8,
                                                                                  "keras_top1": 0.625}


def test_data_given_at_export_changes_what_is_measured_not_how_the_model_resizes(run_dir, tmp_path):
    """A digits run exported with --data-dir (a folder of digit PNGs): its card and exported meta.json said centre
    crop, the folder's rule, and predict beside the export then resized its images so (0.66 for a 9 became
    0.48 for a 5 in a user's check); the card also said it was measured "on the run's validation data"."""
    from PIL import Image

    from keras_resnet.predict import _trained_on_digits
    from keras_resnet.runtime import load_predictor

    run = tmp_path / "run"
    run.mkdir()
    for name in ("best.keras", "meta.json"):
        shutil.copy(run_dir / name, run / name)
    (run / "config.json").write_text(json.dumps({"data": {"dataset": None, "data_dir": None, "image_size": SIZE},
                                                 "train": {}}))
    for label in LABELS:
        (tmp_path / "pngs" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (SIZE, SIZE), (80 * i, 0, 0)).save(tmp_path / "pngs" / label / f"{i}.png")
    out = tmp_path / "out"
    ex.export(ex.ExportConfig(source=str(run), output=str(out), saved_model=True, tflite=True, quantize="float32",
                              data_dir=str(tmp_path / "pngs")))
    meta = ModelMeta.load(out)
    assert (meta.extra["resize"], meta.extra["data"]["data_dir"]) == ("full_frame", str(tmp_path / "pngs"))
    card = json.loads((out / "model_float32.card.json").read_text())
    assert (card["input"]["resize"], card["accuracy"]["dataset"]) == ("full_frame", "pngs")
    assert card["accuracy"]["measured"] == "on validation images of this dataset, against the Keras model"
    assert _trained_on_digits(load_predictor(out / "model_float32.tflite"))
    again = tmp_path / "again"  # its model.keras exported again keeps the run's resize
    ex.export(ex.ExportConfig(source=str(out / "model.keras"), output=str(again), saved_model=True, eval_images=0))
    assert ModelMeta.load(again).extra["resize"] == "full_frame"


def test_a_model_without_meta_json_exported_with_its_data_takes_the_datas_class_names(tmp_path):
    """A bare .keras (no run, no meta.json) exported with --dataset digits: labels.txt and the cards said class_0 ...
    class_9, which an app shows, while the accuracy was measured on the digits 0-9."""
    import keras

    from keras_resnet.model import resnet

    keras.utils.set_random_seed(0)
    resnet(18, num_classes=10, input_shape=(SIZE, SIZE, 3)).save(tmp_path / "m.keras")
    said = []
    ex.export(ex.ExportConfig(source=str(tmp_path / "m.keras"), output=str(tmp_path / "out"), saved_model=True,
                              dataset="digits", eval_images=0), progress=said.append)
    assert (tmp_path / "out" / "labels.txt").read_text() == "".join(f"{digit}\n" for digit in range(10))
    assert ModelMeta.load(tmp_path / "out").labels == [str(digit) for digit in range(10)]
    assert ("note: m.keras has no meta.json: its 10 classes take the data's names, in order (0, 1, 2, 3, 4 ...); "
            "copy its run's meta.json beside it where they differ") in said, said
    # data that cannot be read, where the export needs none of it (no held-out check, no int8): names stay generic
    ex.export(ex.ExportConfig(source=str(tmp_path / "m.keras"), output=str(tmp_path / "out2"), saved_model=True,
                              data_dir=str(tmp_path / "gone"), eval_images=0))
    assert (tmp_path / "out2" / "labels.txt").read_text().splitlines()[:2] == ["class_0", "class_1"]


def test_a_model_whose_meta_json_numbers_its_classes_says_they_are_matched_to_the_datas_by_position(tmp_path,
                                                                                                    monkeypatch):
    """A library model saved with ModelMeta.from_model(model) (class_0, class_1, class_2) exported with --data-dir
    of the folders ant, bee, cat: its held-out accuracy was measured with output 0 as ant ... without a word."""
    import keras
    from PIL import Image

    from keras_resnet.model import resnet

    keras.utils.set_random_seed(0)
    model = resnet(18, num_classes=3, input_shape=(SIZE, SIZE, 3))
    (tmp_path / "lib").mkdir()
    model.save(tmp_path / "lib" / "model.keras")
    ModelMeta.from_model(model).save(tmp_path / "lib")
    for folder, names in (("pngs", ("ant", "bee", "cat")), ("numbers", ("class_0", "class_1", "class_2"))):
        for i, name in enumerate(names):
            (tmp_path / folder / name).mkdir(parents=True)
            for j in range(2):
                Image.new("RGB", (SIZE, SIZE), (80 * i, 40 * j, 0)).save(tmp_path / folder / name / f"{j}.png")

    class Opened(Exception):
        """Stops the export once the model, its meta.json and the data are read (the notes are said by then)."""

    def stop(*args):
        raise Opened

    monkeypatch.setattr(ex, "_another_model", stop)
    said = {}
    # no held-out images: nothing is matched, nothing said; data whose classes are those numbers: nothing to say
    for folder, eval_images in (("pngs", 2), ("pngs", 0), ("numbers", 2)):
        said[folder, eval_images] = []
        with pytest.raises(Opened):
            ex.export(ex.ExportConfig(source=str(tmp_path / "lib" / "model.keras"), output=str(tmp_path / "out"),
                                      saved_model=True, data_dir=str(tmp_path / folder), eval_images=eval_images),
                      progress=said[folder, eval_images].append)
    assert [line for line in said["pngs", 2] if line.startswith("note:")] == [
        "note: model.keras's meta.json names its classes by number: they are matched to the data's classes by "
        "position, a folder's sorted by name (class_0=ant, class_1=bee, class_2=cat); save its meta.json with "
        "ModelMeta.from_model(model, labels=[...]) to match them by name"]
    assert not [line for line in said["pngs", 0] + said["numbers", 2] if line.startswith("note:")]


def test_a_folder_too_small_to_split_says_exports_own_fix(trained_run, tmp_path):
    """It said "raise --val-split", an option export does not have (new-user walk)."""
    from keras_resnet.errors import KresError

    for name in LABELS[:2]:  # two of its classes, an image each
        (tmp_path / "few" / name).mkdir(parents=True)
        Image.new("RGB", (SIZE, SIZE)).save(tmp_path / "few" / name / "0.png")
    with pytest.raises(KresError) as err:
        ex.export(ex.ExportConfig(source=str(trained_run), output=str(tmp_path / "out"),
                                  data_dir=str(tmp_path / "few")))
    assert str(err.value) == (f"{tmp_path / 'few'} holds 2 images, too few for a validation split of 0.2 (2 train / 0 "
                              "val): add images, or use train/ and val/ folders")
    assert type(err.value) is KresError and not (tmp_path / "out").exists()


def test_data_of_other_classes_than_the_models_is_refused_before_anything_is_written(run_dir, tmp_path, capsys):
    """A 3-output model without names for its classes (no meta.json, or one of class_0, class_1, class_2) exported
    with --data-dir of 4 classes: its held-out images were scored by position ("top-1 0.3333 on 3 images", the dog
    scored as nothing), into the report and the cards, where evaluate refuses the data in one line. A model that
    names them (ant, bee, cat) with data of ant, bee, dog: refused as evaluate does, naming the model's file; so is a
    run on synthetic data, whose class_0, class_1, class_2 are names (it was scored by position, with a note)."""
    for folder, classes in (("four", ("ant", "bee", "cat", "dog")), ("abd", ("ant", "bee", "dog"))):
        for i, name in enumerate(classes):
            (tmp_path / folder / name).mkdir(parents=True)
            for j in range(2):
                Image.new("RGB", (SIZE, SIZE), (60 * i, 40 * j, 0)).save(tmp_path / folder / name / f"{j}.png")
    models = {}
    numbered = ["class_0", "class_1", "class_2"]
    for name, labels in (("bare", None), ("numbered", numbered), ("named", ["ant", "bee", "cat"]),
                         ("synthetic", numbered)):
        (tmp_path / name).mkdir()
        shutil.copy(run_dir / "best.keras", tmp_path / name / "best.keras")
        if labels is not None:
            meta = ModelMeta.load(run_dir)
            ModelMeta(meta.depth, meta.variant, meta.stem, meta.input_shape, meta.normalization, meta.mean, meta.std,
                      labels).save(tmp_path / name)
        models[name] = str(tmp_path / name / "best.keras")
    # a run on synthetic data: class_0, class_1, class_2 are its data's names (scored by position, with a note)
    (tmp_path / "synthetic" / "config.json").write_text(json.dumps({"data": DATA, "train": {}}))
    earlier = tmp_path / "earlier"  # an output folder that holds something already keeps it as it was
    earlier.mkdir()
    (earlier / "keep.txt").write_text("mine")
    count = ("Error: best.keras has 3 outputs but the data has 4 classes: export with --data-dir or --dataset of the "
             "data it was trained on, or leave both out\n")
    named = ("Error: the data has classes best.keras was not trained on (dog): export with --data-dir or --dataset "
             "of its classes, or leave both out (ant, bee, cat; image folders are named after them)\n")
    synthetic = ("Error: the data has classes best.keras was not trained on (ant, bee, dog): export with --data-dir "
                 "or --dataset of its classes, or leave both out (class_0, class_1, class_2; image folders are named "
                 "after them)\n")
    for model, data, output, message in ((models["bare"], "four", "out", count),
                                         (models["numbered"], "four", "earlier", count),
                                         (models["named"], "abd", "out", named),
                                         (models["synthetic"], "abd", "out", synthetic)):
        code, err = cli(["export", model, "-o", str(tmp_path / output), "--tflite", "--data-dir",
                         str(tmp_path / data)], capsys)
        assert (code, err.splitlines()[-1] + "\n") == (2, message), err
        assert "note:" not in err
        assert not (tmp_path / "out").exists()
        assert [path.name for path in earlier.iterdir()] == ["keep.txt"]
        assert (earlier / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(("dtype", "meaning"), [
    ("uint8", "class probabilities (softmax); dequantize as (q - zero_point) * scale"),
    ("int8", "class probabilities (softmax); dequantize as (q - zero_point) * scale"),
    ("float32", "class probabilities (softmax)"),  # the float cards said to dequantize them too
])
def test_the_cards_output_says_to_dequantize_integer_outputs_only(dtype, meaning):
    io = {"shape": [1, 32, 32, 3], "dtype": dtype, "scale": [1 / 256] if dtype != "float32" else [],
          "zero_point": [0] if dtype != "float32" else []}
    meta = ModelMeta(18, "v1.5", "imagenet", [32, 32, 3], "torch", [0.0] * 3, [1.0] * 3, LABELS)
    card = ex.model_card(Path("m.tflite"), meta, {"inputs": [io], "outputs": [io], "gpu_delegate_compatible": True},
                         None, "float32" if dtype == "float32" else "int8", None)
    assert card["output"]["meaning"] == meaning


@pytest.mark.parametrize(("dtype", "scale", "zero_point", "said"), [
    ("uint8", 1.0, 0, "RGB pixels 0-255 as they are, uint8, resized"),
    ("int8", 1.0, -128, "RGB pixels 0-255 minus 128 (q = pixel - 128), int8, resized"),  # it said "0-255" as well
    # dark calibration images (pixels 0-97): the input is not raw pixels, and brighter ones clip
    ("uint8", 0.3804, 0, "RGB pixels 0-255 quantized as q = round(pixel / scale) + zero_point, clipped to 0..255: "
                         "pixels above 97 clip"),
    ("float32", None, None, "RGB pixels 0-255 as float32, resized"),
])
def test_the_cards_input_format_follows_the_inputs_type_scale_and_zero_point(dtype, scale, zero_point, said):
    io = {"dtype": dtype, "scale": [scale] if scale else [], "zero_point": [zero_point] if scale else []}
    assert ex.input_format(io).startswith(said)


def test_an_input_that_does_not_take_raw_pixels_is_warned_of_once():
    dark = {"dtype": "uint8", "scale": [0.3804], "zero_point": [0]}  # calibrated on pixels 0-97
    assert ex.input_range_warning("model_int8.tflite", dark, []) == (
        "model_int8.tflite takes pixels up to 97 only (its calibration images were no brighter): brighter pixels "
        "clip, and its input is not raw pixels (the card says how to feed it); calibrate on images that span 0-255")
    assert ex.input_range_warning("model_int8.tflite", dark, ["calibration images do not look like ..."]) is None
    for full in ({"dtype": "uint8", "scale": [1.0], "zero_point": [0]},
                 {"dtype": "int8", "scale": [1.0], "zero_point": [-128]},
                 {"dtype": "float32", "scale": [], "zero_point": []}):
        assert ex.input_range_warning("m.tflite", full, []) is None


def test_exported_files_remember_the_runs_data(exported):
    """evaluate and predict on an exported file, far from its run, use the data it was trained on."""
    from keras_resnet.evaluate import training_data_config
    from keras_resnet.runtime import load_predictor

    out = exported.output_dir
    for name in ("model_int8.tflite", "model.keras", "saved_model"):
        assert training_data_config(out / name, load_predictor(out / name).meta) == DATA, name


def test_exported_files_remember_the_data_they_were_exported_with(run_dir, tmp_path):
    """A bare .keras exported with --dataset digits: the card's accuracy and resize are the digits' (full frame),
    and so must be what predict and evaluate read from the exported meta.json (it had no data: centre crop)."""
    from keras_resnet.predict import _trained_on_digits
    from keras_resnet.runtime import load_predictor

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "best.keras", bare / "model.keras")
    out = tmp_path / "out"
    ex.export(ex.ExportConfig(source=str(bare / "model.keras"), output=str(out), saved_model=True, dataset="digits",
                              eval_images=0))
    assert ModelMeta.load(out).extra["data"] == {"data_dir": None, "dataset": None}
    assert _trained_on_digits(load_predictor(out / "model.keras"))
    # a relative --data-dir is kept absolute, as train keeps it: the exported meta.json is read from other folders
    assert ex.moved_data(None, ex.ExportConfig(source="m", output="o", data_dir="photos")) == {
        "data_dir": str(Path.cwd() / "photos"), "dataset": None}
    assert ex.moved_data(None, ex.ExportConfig(source="m", output="o", data_dir="gs://b/photos"))["data_dir"] == \
        "gs://b/photos"


def test_savedmodel_in_a_fresh_process_gives_the_keras_outputs(exported, heldout, tmp_path):
    import keras

    images = heldout[0]  # integer-valued pixels, so the uint8 signature sees exactly the same input
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import numpy as np, keras, tensorflow as tf
        images = np.load({str(tmp_path / "images.npy")!r})
        path = {str(exported.output_dir / "saved_model")!r}
        as_float = keras.layers.TFSMLayer(path, call_endpoint="serving_float32")(images)["probabilities"]
        uint8_layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
        as_uint8 = uint8_layer(images.astype(np.uint8))["probabilities"]
        loaded = tf.saved_model.load(path)
        via_tf = loaded.signatures["serving_default"](image=tf.constant(images.astype(np.uint8)))["probabilities"]
        print(len(loaded.variables), len(loaded.trainable_variables), len(loaded.non_trainable_variables))
        np.save({str(tmp_path / "out.npy")!r}, np.stack([np.asarray(as_float), np.asarray(as_uint8), via_tf.numpy()]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    reference = keras.saving.load_model(exported.output_dir / "model.keras")
    # its variables, for fine-tuning the SavedModel, as ExportArchive.track() gave them
    assert result.stdout.split() == [str(len(reference.variables)), str(len(reference.trainable_variables)),
                                     str(len(reference.non_trainable_variables))]
    expected = reference.predict(images, verbose=0)
    got = np.load(tmp_path / "out.npy")
    assert got.shape == (3, 6, 3)
    for outputs in got:
        np.testing.assert_allclose(outputs, expected, atol=1e-5)
    # each weight stored once: keras.export.ExportArchive's track(model) stored every one twice (keras #23553), a
    # SavedModel twice the model's size, loaded into twice its memory by TF Serving
    from keras_resnet.quantize import weights_bytes

    stored = sum(f.stat().st_size for f in (exported.output_dir / "saved_model" / "variables").iterdir())
    weights = weights_bytes(reference)
    assert weights < stored < 1.01 * weights, (stored, weights)


def test_each_tflite_names_its_output_as_the_savedmodel_does(exported, float16_added, heldout):
    """The SavedModel said "probabilities" and every .tflite's signature "output_0": an Android app reading outputs
    by name (LiteRT's signature runner) needed another name per format."""
    import tensorflow as tf
    from signatures import signature_outputs

    saved = tf.saved_model.load(str(exported.output_dir / "saved_model")).signatures["serving_default"]
    assert list(saved.structured_outputs) == ["probabilities"]
    for path in (exported.output_dir / "model_int8.tflite", float16_added.output_dir / "model_float16.tflite"):
        outputs = signature_outputs(path.read_bytes(), heldout[0][0])
        assert list(outputs) == ["probabilities"] and outputs["probabilities"].shape == (1, 3), path.name


def cli(argv, capsys) -> tuple[int, str]:
    from kres.main import main

    code = main(argv)
    return code, capsys.readouterr().err


def test_errors_are_one_line(tmp_path, run_dir, capsys):
    not_model = tmp_path / "notes.keras"
    not_model.write_text("not a model")
    (tmp_path / "empty_run").mkdir()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    broken = tmp_path / "broken_run"
    broken.mkdir()
    shutil.copy(run_dir / "best.keras", broken / "best.keras")
    (broken / "config.json").write_text("{not json")
    saved = tmp_path / "exported" / "saved_model"
    saved.mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"")
    cases = [
        (["export", str(not_model), "-o", str(tmp_path / "o")], "is not a .keras model"),
        (["export", str(tmp_path / "empty_run"), "-o", str(tmp_path / "o")],
         "holds no model (best.keras, last.keras, model.keras): pass a run or export folder, or a .keras file"),
        (["export", str(saved), "-o", str(tmp_path / "o")],  # it said "holds no model (no best.keras ..."
         f"{saved} is a SavedModel, which export does not read: export from the run directory, or the .keras file "
         f"beside it ({saved.parent / 'model.keras'})"),
        (["export", str(run_dir), "-o", str(tmp_path / "o"), "--tflite", "--quantize", "int4"],
         "unknown quantize mode 'int4': choose one of float32, float16, dynamic, int8"),
        (["export", str(run_dir), "-o", str(blocker / "sub")], "cannot write to"),
        (["export", str(tmp_path / "missing"), "-o", str(tmp_path / "o")], "does not exist"),
        (["export", str(run_dir), "-o", str(tmp_path / "o"), "--io-dtype", "int16"], "unknown --io-dtype 'int16'"),
        (["export", str(run_dir), "-o", str(tmp_path / "o"), "--qat"], "--qat fine-tunes on the training data"),
        (["export", str(run_dir), "-o", str(tmp_path / "o"), "--edgetpu", "--per-channel-dense"],
         "--per-channel-dense files run on XNNPACK only: the Edge TPU needs per-tensor dense weights"),
        (["export", str(broken), "-o", str(tmp_path / "o")],
         f"{broken / 'config.json'} is not a valid run config (Expecting property name"),
        (["export", str(run_dir), "-o", str(run_dir)],  # its meta.json and labels.txt were overwritten
         f"{run_dir} is a training run directory; export into another --output (e.g. {run_dir / 'export'})"),
        (["export", str(run_dir), "-o", str(tmp_path / "model.tflite")],
         f"--output is the folder for the artifacts, not a file name: try {tmp_path / 'model'}"),
        (["export", str(run_dir), "-o", str(tmp_path / "o"), "--tflite", "--quantize", "float16", "--io-dtype",
          "int8"], "--io-dtype int8 is the input and output type of int8 models, and none is made"),
        # options that shape int8 models (or the Edge TPU check) only: each was ignored, silently
        (["export", str(run_dir), "-o", str(tmp_path / "o"), "--saved-model", "--per-channel-dense"],
         "--per-channel-dense lays out int8 weights, and no int8 model is made: add --quantize int8"),
        (["export", str(run_dir), "-o", str(tmp_path / "o"), "--tflite", "--calibration-steps", "10"],
         "--calibration-steps is for int8 models, and none is made: add --quantize int8"),
        (["export", str(run_dir), "-o", str(tmp_path / "o"), "--tflite", "--quantize", "int8", "--allow-cpu-ops"],
         "--allow-cpu-ops relaxes the Edge TPU check, which runs with --edgetpu only"),
        (["export", str(run_dir), "-o", str(tmp_path / "o"), "--tflite", "--qat-epochs", "3"],
         "--qat-epochs is the length of --qat's fine-tuning: add --qat"),
    ]
    for argv, message in cases:
        code, err = cli(argv, capsys)
        assert code == 2, (argv, err)
        assert err.startswith("Error: ") and message in err and err.count("\n") == 1, err
        assert "Traceback" not in err
    # nothing is written for a rejected export, not even an empty output directory
    assert not (tmp_path / "o").exists()


def test_heldout_images_of_a_folder_with_fewer_images_than_the_runs_batch(tmp_path):
    """A run's data moved to a smaller folder (export --data-dir): its batch size of 8 was checked against the
    training images, which the held-out images do not need, and export has no --batch-size to lower."""
    from PIL import Image

    from keras_resnet.data import DataConfig

    for label, colour in enumerate(((200, 0, 0), (0, 0, 200))):
        (tmp_path / str(label)).mkdir()
        for i in range(2):
            Image.new("RGB", (40, 40), colour).save(tmp_path / str(label) / f"{i}.png")
    images, labels = ex.heldout_data(DataConfig(data_dir=str(tmp_path), image_size=32, batch_size=8,
                                                val_split=0.5), 100)
    assert images.shape == (2, 32, 32, 3) and sorted(labels.tolist()) == [0, 1]


def test_heldout_labels_are_the_models_outputs_of_their_class_names(tmp_path):
    """A moved --data-dir with some of the model's classes, or one more, shifted every label by position: the
    accuracy figures and the card were computed against the wrong classes, silently."""
    from PIL import Image

    from keras_resnet.data import DataConfig
    from keras_resnet.errors import KresError

    meta = ModelMeta(depth=18, variant="v1.5", stem="imagenet", input_shape=[32, 32, 3],
                     normalization="torch", mean=[0.0] * 3, std=[1.0] * 3, labels=["cat", "dog", "owl"])
    for name, colour in (("dog", (200, 0, 0)), ("owl", (0, 0, 200))):
        (tmp_path / "two" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 40), colour).save(tmp_path / "two" / name / f"{i}.png")
    data = DataConfig(data_dir=str(tmp_path / "two"), image_size=32, val_split=0.5)
    images, labels = ex.heldout_data(data, 100, meta)
    assert sorted(labels.tolist()) == [1, 2]  # dog and owl, the model's outputs 1 and 2 (the data's 0 and 1)
    assert [int(image[0, 0, 0] > 100) for image in images] == [int(label == 1) for label in labels]  # dog is red
    _, by_position = ex.heldout_data(data, 100)  # no names: the data's own order, as before
    assert sorted(by_position.tolist()) == [0, 1]

    shutil.copytree(tmp_path / "two" / "dog", tmp_path / "two" / "aardvark")
    with pytest.raises(KresError, match=r"^the data has classes the model was not trained on \(aardvark\): export "
                                        r"with --data-dir or --dataset of its classes"):
        ex.heldout_data(data, 100, meta)


@pytest.mark.parametrize("flags, names", [
    ({}, ["float32"]),
    ({"edgetpu": True}, ["int8"]),
    ({"tflite": True, "quantize": "float16"}, ["float16"]),
    ({"qat": True}, ["qat_int8"]),
    ({"qat": True, "edgetpu": True}, ["qat_int8"]),  # the QAT model is the one checked: no float32 beside it
    ({"qat": True, "quantize": "int8"}, ["int8", "qat_int8"]),
    ({"saved_model": True}, []),
    ({"saved_model": True, "quantize": "int8"}, ["int8"]),  # --quantize asks for a TFLite model: it made none
    ({"quantize": "dynamic"}, ["dynamic"]),
])
def test_tflite_models_written_for_each_flag_combination(flags, names):
    assert ex.tflite_names(ex.validate(ex.ExportConfig(source="run", output="out", **flags))) == names


def test_int8_calibrated_on_synthetic_images_says_so(run_dir, tmp_path):
    """A bare .keras (no run, no --data-dir) is calibrated on synthetic images: the docstring promised a note in the
    report, and neither the report nor the terminal said anything."""
    import keras

    cfg = ex.validate(ex.ExportConfig(source=str(run_dir / "best.keras"), output=str(tmp_path), quantize="int8"))
    said, report = [], {}
    job = ex._Job(cfg, ex.resolve_source(cfg.source), tmp_path, keras.Sequential(), None, None, said.append)
    ex._check_int8_inputs(job, report)
    assert said == [f"warning: {ex.SYNTHETIC_CALIBRATION}"] and report["warnings"] == [ex.SYNTHETIC_CALIBRATION]
    assert "calibrated on synthetic images" in ex.SYNTHETIC_CALIBRATION


def test_a_model_the_edgetpu_check_refuses_is_not_left_under_its_name(exported, trained_run, heldout, tmp_path,
                                                                       monkeypatch):
    from keras_resnet import edgetpu
    from keras_resnet.errors import KresError

    content = (exported.output_dir / "model_int8.tflite").read_bytes()
    monkeypatch.setattr(ex, "convert", lambda *args, **kwargs: content)  # the conversion is tested above

    def refused(*args, **kwargs):
        raise KresError("model is not fully Edge TPU compatible: a simulated CPU op")

    monkeypatch.setattr(edgetpu, "check", refused)
    out = tmp_path / "out"
    out.mkdir()
    earlier = {name: f"an earlier export's {name}" for name in (
        "model_int8.tflite", "model_int8.card.json", "model_int8_edgetpu.tflite", "model_int8_edgetpu.log")}
    for name, text in earlier.items():
        (out / name).write_text(text)
    with pytest.raises(KresError, match="a simulated CPU op"):
        ex.export(ex.ExportConfig(source=str(trained_run), output=str(out), edgetpu=True, eval_images=0),
                  calibration=lambda: (img[None] for img in heldout[0][:2]))
    # Nothing of this export is left (the refused model, its card, meta.json, labels.txt), and the earlier export
    # is whole: the refused model had replaced its model_int8.tflite, and its card and compiled model were removed.
    assert {p.name: p.read_text() for p in out.iterdir()} == earlier


def test_export_without_progress_keeps_the_qat_epoch_lines_off_stderr(exported, trained_run, tmp_path, monkeypatch,
                                                                       capsys):
    """``export(cfg)`` with no progress prints nothing of its own, but --qat's fine-tuning printed its epoch lines
    on stderr; with progress (the CLI's) they go on stderr as train's do."""
    from keras_resnet import qat

    int8 = (exported.output_dir / "model_int8.tflite").read_bytes()

    def finetune(model_path, data_cfg, epochs, output_dir, *, stream=None, **kwargs):  # tested in test_qat
        (stream or sys.stderr).write("Epoch 1/1 9.9s 99 img/s loss 0.5000\n")
        path = Path(output_dir) / qat.QAT_TFLITE_NAME
        path.write_bytes(int8)
        return path

    monkeypatch.setattr(qat, "quantization_aware_finetune", finetune)
    said = []
    for progress in (None, said.append):
        result = ex.export(ex.ExportConfig(source=str(trained_run), output=str(tmp_path / "o"), qat=True,
                                           qat_epochs=1, eval_images=0), progress)
        assert "model_qat_int8.tflite" in result.report["artifacts"]
        assert capsys.readouterr().err == ("" if progress is None else "Epoch 1/1 9.9s 99 img/s loss 0.5000\n")
    assert "quantization-aware fine-tuning, 1 epoch, then converting to TFLite (qat_int8)" in said


def test_a_failed_export_leaves_the_output_folder_as_it_was(exported, trained_run, heldout, tmp_path, monkeypatch):
    """A re-export that failed at its int8 conversion had already replaced meta.json, labels.txt and the float32
    model, beside the earlier int8 model and the earlier report, which described files no longer there. Only the
    failed conversion's log is moved in, where its error line says it is."""
    from keras_resnet.errors import KresError

    out = Path(shutil.copytree(exported.output_dir, tmp_path / "out"))
    (out / "converter.log").write_text("the earlier export's\n")

    def files():
        return {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    before = files()
    assert len(before) > 5 and Path("saved_model/saved_model.pb") in before
    real = ex.convert

    def int8_fails(model, mode, *args, log=None, **kwargs):
        if mode != "int8":
            return real(model, mode, *args, log=log, **kwargs)
        Path(log).write_text("what the converter said\n")
        raise KresError(f"TFLite conversion (int8) failed: a simulated error (the converter's log: {log})")

    monkeypatch.setattr(ex, "convert", int8_fails)
    with pytest.raises(KresError) as err:
        ex.export(ex.ExportConfig(source=str(trained_run), output=str(out), saved_model=True, tflite=True,
                                  quantize="int8", eval_images=0),
                  calibration=lambda: (img[None] for img in heldout[0][:2]))
    assert str(err.value) == ("TFLite conversion (int8) failed: a simulated error (the converter's log: "
                              f"{out / 'converter.log'})")
    assert files() == {**before, Path("converter.log"): b"what the converter said\n"}
    before = files()

    def int8_interrupted(model, mode, *args, log=None, **kwargs):
        if mode != "int8":
            return real(model, mode, *args, log=log, **kwargs)
        Path(log).write_text("half of what the converter said\n")
        raise KeyboardInterrupt  # Ctrl-C: the folder, converter.log too, as it was (the message says so)

    monkeypatch.setattr(ex, "convert", int8_interrupted)
    with pytest.raises(KeyboardInterrupt):
        ex.export(ex.ExportConfig(source=str(trained_run), output=str(out), tflite=True, quantize="int8",
                                  eval_images=0), calibration=lambda: (img[None] for img in heldout[0][:2]))
    assert files() == before
    monkeypatch.setattr(ex, "convert", real)
    result = ex.export(ex.ExportConfig(source=str(trained_run), output=str(out), tflite=True, eval_images=0))
    assert result.output_dir == out and all(path.parent == out for path in result.files), result.files
    assert {path.name for path in result.files} == {"meta.json", "labels.txt", "model_float32.tflite",
                                                     "model_float32.card.json"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the staging folder is gone
    earlier = json.loads((exported.output_dir / "export_report.json").read_text())["files"]
    assert json.loads((out / "export_report.json").read_text())["files"] == sorted(
        {p.name for p in result.files} | set(earlier) - {"converter.log"})  # the earlier export's models stay, listed
    # float32 says nothing, and the converter.log there is the failed conversion's, not the one the earlier report
    # recorded for its int8 model (by its digest): it goes, as before reports kept the earlier entries
    assert not (out / "converter.log").exists()


def _saved_run(tmp_path, name, depth, labels):
    """A run folder holding a fresh (untrained) ResNet and its meta.json."""
    from keras_resnet.model import resnet

    folder = tmp_path / name
    folder.mkdir()
    model = resnet(depth, num_classes=len(labels), input_shape=(SIZE, SIZE, 3))
    model.save(folder / "best.keras")
    ModelMeta.from_model(model, list(labels)).save(folder)
    return folder


def test_may_write_names_what_each_export_writes_and_nothing_else():
    """The names an export is checked against before its conversions: a superset of what it writes."""
    def names(**options) -> list[str]:
        cfg = ex.validate(ex.ExportConfig(source="run", output="out", **options))
        candidates = ["saved_model", "model.keras", "quant_debug.csv", "quant_debug.png",
                      *(f"model_{m}{ext}" for m in ("float32", "float16", "int8", "qat_int8", "int8_mixed")
                        for ext in (".tflite", ".card.json", "_edgetpu.tflite", "_edgetpu.log"))]
        return [name for name in candidates if ex.may_write(cfg, name)]

    assert names() == ["saved_model", "model.keras", "model_float32.tflite", "model_float32.card.json"]
    every = ("meta.json", "labels.txt", "converter.log", "export_report.json", "export_report.txt")
    assert all(ex.may_write(ex.validate(ex.ExportConfig(source="run", output="out", qat=True)), n) for n in every)
    assert names(quantize="float16") == ["saved_model", "model.keras", "model_float16.tflite",
                                         "model_float16.card.json"]
    assert names(tflite=True, quantize="float16") == ["model_float16.tflite", "model_float16.card.json"]
    assert names(edgetpu=True) == ["model_int8.tflite", "model_int8.card.json", "model_int8_edgetpu.tflite",
                                   "model_int8_edgetpu.log"]
    assert names(qat=True, edgetpu=True) == ["model_qat_int8.tflite", "model_qat_int8.card.json",
                                             "model_qat_int8_edgetpu.tflite", "model_qat_int8_edgetpu.log"]
    assert names(tflite=True, quantize="int8", debug=True) == [
        "quant_debug.csv", "quant_debug.png", "model_int8.tflite", "model_int8.card.json"]
    assert names(tflite=True, quantize="int8", float_worst=2) == [
        "quant_debug.csv", "quant_debug.png", "model_int8.tflite", "model_int8.card.json",
        "model_int8_mixed.tflite", "model_int8_mixed.card.json"]
    assert names(tflite=True, quantize="int8", float_layers=("conv1_conv",)) == [
        "model_int8.tflite", "model_int8.card.json", "model_int8_mixed.tflite", "model_int8_mixed.card.json"]


def test_an_export_of_another_model_that_would_leave_its_files_is_refused(exported, trained_run, tmp_path):
    """A second model exported into a folder holding another's export replaced meta.json and labels.txt and left
    the first one's other models beside them: predict printed the second model's class names for the first's
    outputs, exit status 0. The staged files of such an export are not moved in."""
    from keras_resnet.errors import KresError

    out = Path(shutil.copytree(exported.output_dir, tmp_path / "out"))
    labels = ModelMeta.load(out).labels
    before = sorted(p.name for p in out.iterdir())
    left = "model_int8.card.json, model_int8.tflite"  # exported's that this export (SavedModel and .keras) leaves
    other, said = _saved_run(tmp_path, "other", 18, ["ant", "bee"]), []
    with pytest.raises(KresError) as err:
        ex.export(ex.ExportConfig(source=str(other), output=str(out), eval_images=0), said.append)
    assert str(err.value) == (f"{out} holds the export of another model (classes: 3; best.keras's: 2) with files "
                              f"this export does not replace ({left}): export into another --output, add the "
                              "options that write them, or remove them first")
    assert said == [f"loading {other / 'best.keras'}"]  # refused before any conversion (it was after them all)
    assert sorted(p.name for p in out.iterdir()) == before
    # the same classes and input, another architecture: refused too
    with pytest.raises(KresError, match=r"another model \(model: ResNet-18 v1\.5 imagenet stem; best\.keras's: "
                                        r"ResNet-34 v1\.5 imagenet stem\) with files"):
        ex.export(ex.ExportConfig(source=str(_saved_run(tmp_path, "deeper", 34, labels)), output=str(out),
                                  eval_images=0))
    # the same architecture, classes and input, other weights (another run): meta.json's digest tells them apart
    digest = ModelMeta.load(out).extra["weights_digest"]
    assert len(digest) == 16
    retrained = _saved_run(tmp_path, "retrained", 18, labels)
    with pytest.raises(KresError, match=rf"another model \(weights: digest {digest}; best\.keras's: digest "
                                        r"[0-9a-f]{16}\) with files this export does not replace \(model_int8\.card"):
        ex.export(ex.ExportConfig(source=str(retrained), output=str(out), eval_images=0))
    assert sorted(p.name for p in out.iterdir()) == before
    # the same model from a copy of its run (a run copied from the training machine), or the export's own
    # model.keras, is not another model
    copied = Path(shutil.copytree(trained_run, tmp_path / "copied"))
    training = subprocess.Popen(["sleep", "60"])  # a run still training: its lock file names a live process
    (copied / ".lock").write_text(f"PID {training.pid} on {socket.gethostname()}")
    said = []
    try:
        result = ex.export(ex.ExportConfig(source=str(copied), output=str(out), tflite=True, eval_images=0),
                           said.append)
    finally:
        training.kill()
        training.wait()
    assert result.report["source"] == str(copied / "best.keras")
    assert said[0] == (f"note: {copied} is in use by PID {training.pid} on {socket.gethostname()} (still training?): "
                       "exporting its best.keras as it is now")  # it said nothing (new-user walk)
    ex.export(ex.ExportConfig(source=str(out / "model.keras"), output=str(out), eval_images=0))
    assert ModelMeta.load(out).extra["weights_digest"] == digest


def test_leftovers_of_two_quantize_modes_are_not_said_to_go_with_more_options(exported, tmp_path):
    """One export writes one --quantize mode: "add the options that write them" could not be followed for the
    float16 and int8 files of another model's export (new-user walk; a second --quantize replaces the first)."""
    from keras_resnet.errors import KresError

    out = Path(shutil.copytree(exported.output_dir, tmp_path / "out"))
    for name in ("model_float16.tflite", "model_float16.card.json"):  # as an earlier --quantize float16 left them
        (out / name).write_bytes(b"")
    other = _saved_run(tmp_path, "other", 18, ["ant", "bee"])
    with pytest.raises(KresError) as err:
        ex.export(ex.ExportConfig(source=str(other), output=str(out), eval_images=0))
    assert str(err.value).endswith(
        "(model_float16.card.json, model_float16.tflite, model_int8.card.json, model_int8.tflite): export into "
        "another --output, or remove them first (one export writes one --quantize mode, and these are of 2: "
        "float16, int8)")


def test_a_file_that_the_export_may_write_and_did_not_is_refused_after_converting(exported, heldout, tmp_path,
                                                                                  monkeypatch):
    """The check before converting lets through what this export may write; the Edge TPU compiler's files are
    written only where it is installed (here it is not), so another model's compiler log is caught by the check
    after."""
    from keras_resnet import edgetpu
    from keras_resnet.errors import KresError

    monkeypatch.setattr(edgetpu, "compiler_available", lambda: False)  # as on a machine without it

    out = Path(shutil.copytree(exported.output_dir, tmp_path / "out"))
    shutil.rmtree(out / "saved_model")
    (out / "model.keras").unlink()
    (out / "model_int8_edgetpu.log").write_text("another model's compiler log\n")
    before = sorted(p.name for p in out.iterdir())
    said = []
    with pytest.raises(KresError, match=r"another model \(classes: 3; best\.keras's: 2\) with files this export does "
                                        r"not replace \(model_int8_edgetpu\.log\)"):
        ex.export(ex.ExportConfig(source=str(_saved_run(tmp_path, "other", 18, ["ant", "bee"])), output=str(out),
                                  edgetpu=True, calibration_steps=2, eval_images=0), said.append,
                  calibration=lambda: (image[None] for image in heldout[0][:2]))
    assert "converting to TFLite (int8)" in said
    assert sorted(p.name for p in out.iterdir()) == before


def test_another_model_that_replaces_every_file_of_the_earlier_export_goes_on(trained_run, tmp_path):
    """A run trained further (or another run) exported again with the same options replaces every file: refused
    at first, though nothing of the earlier model would have been left."""
    f32 = tmp_path / "f32"
    ex.export(ex.ExportConfig(source=str(trained_run), output=str(f32), tflite=True, eval_images=0))
    first = ModelMeta.load(f32).extra["weights_digest"]
    retrained = _saved_run(tmp_path, "retrained", 18, ModelMeta.load(f32).labels)
    ex.export(ex.ExportConfig(source=str(retrained), output=str(f32), tflite=True, eval_images=0))
    assert ModelMeta.load(f32).extra["weights_digest"] not in (None, first)
    # an export written before meta.json had a digest: another run of the same architecture is not told apart
    meta = ModelMeta.load(f32)
    del meta.extra["weights_digest"]
    meta.save(f32)
    ex.export(ex.ExportConfig(source=str(trained_run), output=str(f32), eval_images=0))  # model_float32.* stay
    assert ModelMeta.load(f32).extra["weights_digest"] == first and (f32 / "model_float32.tflite").is_file()


def test_an_export_folder_is_a_source_as_a_run_folder_is(exported):
    """It said "holds no model (no best.keras or last.keras): train into it first" (new-user walk)."""
    source = ex.resolve_source(exported.output_dir)
    assert (source.model_path, source.run_dir) == (exported.output_dir / "model.keras", None)


def test_a_run_without_its_first_model_says_whether_it_is_still_training(tmp_path):
    """A run still in its first epoch was told "holds no model ...: pass a run or export folder" (walk)."""
    import socket

    from keras_resnet import runlock
    from keras_resnet.errors import KresError
    from keras_resnet.runtime import load_predictor

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": DATA, "train": {}}))
    stopped = (f"{run} holds no model: its run stopped before its first epoch ended; resume it with kres train "
               f"--resume --output {run}")
    for load in (ex.resolve_source, load_predictor):
        with pytest.raises(KresError) as err:
            load(run)
        assert str(err.value) == stopped
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # the lock's name, as a live training process of this host writes it
        (run / runlock.LOCK_FILE).write_text(f"PID {sleeper.pid} on {socket.gethostname()}\n")
        with pytest.raises(KresError) as err:
            ex.resolve_source(run)
        assert str(err.value) == (f"{run} holds no model yet: its run is training (PID {sleeper.pid} on "
                                  f"{socket.gethostname()}); wait for the end of its first epoch")
    finally:
        sleeper.kill()
        sleeper.wait()
    # a process of another host (a shared folder) may be training: it cannot be checked from here
    (run / runlock.LOCK_FILE).write_text("PID 12 on elsewhere\n")
    with pytest.raises(KresError, match=r"its run may be training on another host \(PID 12 on elsewhere\)"):
        ex.resolve_source(run)
    (run / runlock.LOCK_FILE).unlink()  # checkpointed, then its models removed: not "before its first epoch"
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "state.json").write_text(json.dumps({"steps": 44, "weights": "ckpt-44.weights.h5"}))
    with pytest.raises(KresError) as err:
        ex.resolve_source(run)
    assert str(err.value) == (f"{run} holds no model: best.keras and last.keras were removed; kres train --resume "
                              f"--output {run} goes on from its checkpoint of step 44 and writes last.keras at its end")
    (run / "checkpoint" / "state.json").write_text(json.dumps({"steps": 44, "weights": None, "complete": True}))
    with pytest.raises(KresError, match=r"holds no model: its run finished, and its best\.keras and last\.keras were "
                                        r"removed$"):
        ex.resolve_source(run)


def test_an_exported_keras_file_is_exported_again_with_the_data_its_meta_json_records(exported, tmp_path):
    """Its int8 model was calibrated on synthetic images, with no accuracy figures ("no training data known"),
    though the meta.json beside it records the data (evaluate read it): 16 points of top-1 lost on the digits."""
    said = []
    result = ex.export(ex.ExportConfig(source=str(exported.output_dir / "model.keras"), output=str(tmp_path / "again"),
                                       tflite=True, quantize="int8", eval_images=0), said.append)
    # 100 calibration steps asked for (the default), of the run's 6 training images: it said nothing
    assert result.report["artifacts"]["model_int8.tflite"]["calibration_images"] == 6
    assert "calibrated on 6 images, all that the calibration data holds (--calibration-steps 100)" in said
    assert "\n  calibrated on 6 images\n" in result.text
    assert ex.SYNTHETIC_CALIBRATION not in result.report["warnings"]  # (the data's class names are not the model's
    # here, so no held-out figures)
    assert ModelMeta.load(tmp_path / "again").extra["data"] == ModelMeta.load(exported.output_dir).extra["data"]


def test_the_edgetpu_compilers_files_are_in_the_export_report(exported, trained_run, heldout, tmp_path,
                                                               monkeypatch):
    from keras_resnet import edgetpu

    content = (exported.output_dir / "model_int8.tflite").read_bytes()
    monkeypatch.setattr(ex, "convert", lambda *args, **kwargs: content)
    out = tmp_path / "out"

    def compiled(path, output_dir, allow_cpu_ops=False, shown_dir=None):  # as edgetpu_compiler writes them
        files = [Path(output_dir) / "model_int8_edgetpu.log", Path(output_dir) / "model_int8_edgetpu.tflite"]
        for file in files:
            file.write_text("x")
        report = edgetpu.check_requirements(Path(path).read_bytes())
        report.compiler = edgetpu.CompilerReport(ops=[], edgetpu_ops=1, cpu_ops_total=0, subgraphs=1, files=files)
        return report

    monkeypatch.setattr(edgetpu, "check", compiled)
    result = ex.export(ex.ExportConfig(source=str(trained_run), output=str(out), edgetpu=True, eval_images=0),
                       calibration=lambda: (img[None] for img in heldout[0][:2]))
    assert {"model_int8_edgetpu.tflite", "model_int8_edgetpu.log"} <= set(result.report["files"])
    assert result.report["artifacts"]["model_int8.tflite"]["edgetpu"]["compiler"]["files"] == [
        "model_int8_edgetpu.log", "model_int8_edgetpu.tflite"]


def test_converter_log_is_this_exports_and_only_where_the_converter_said_something(exported, trained_run, tmp_path,
                                                                                   monkeypatch):
    """An earlier int8 export's converter text stayed in a float16 export's converter.log; a float32 export wrote
    an empty one."""
    content = (exported.output_dir / "model_int8.tflite").read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    (out / "converter.log").write_text("input_inference_type: UINT8\n")  # an earlier export's
    monkeypatch.setattr(ex, "convert", lambda *args, **kwargs: content)  # a converter that says nothing
    result = ex.export(ex.ExportConfig(source=str(trained_run), output=str(out), tflite=True, eval_images=0))
    assert not (out / "converter.log").exists() and "converter.log" not in result.report["files"]


@pytest.fixture(scope="module")
def float16_added(exported, trained_run, heldout, tmp_path_factory):
    """A float16 model exported into a copy of ``exported``'s folder (SavedModel, int8 with the Edge TPU check),
    measured on 4 of the 6 held-out images that ``exported``'s models were measured on."""
    out = Path(shutil.copytree(exported.output_dir, tmp_path_factory.mktemp("added") / "out"))
    return ex.export(ex.ExportConfig(source=str(trained_run), output=str(out), tflite=True, quantize="float16"),
                     heldout=(heldout[0][:4], heldout[1][:4]))


def _earlier_lines(text: str, name: str) -> list[str]:
    """The lines of ``text`` (a report's) on the artifact ``name``, as a later report shows them, kept."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}: "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return [lines[start].replace(f"{name}:", f"{name} (earlier export):", 1), *lines[start + 1:end]]


def test_a_format_exported_beside_others_keeps_their_entries_in_the_report(exported, float16_added):
    """int8 (Edge TPU) then float16 into one folder: the report described the float16 model only; the int8
    model's size, ops, agreement, calibration and Edge TPU lines were gone, "files" no longer named it, though it
    was there, and the int8 conversion's converter.log was removed (new-user walk)."""
    out = float16_added.output_dir
    earlier = json.loads((exported.output_dir / "export_report.json").read_text())
    report = json.loads((out / "export_report.json").read_text())
    assert list(report["artifacts"]) == ["model_float16.tflite", "saved_model", "model_int8.tflite"]
    assert {name: report["artifacts"][name] for name in ("saved_model", "model_int8.tflite")} == earlier["artifacts"]
    assert report["from_earlier_export"] == ["saved_model", "model_int8.tflite"]
    assert report["artifacts"]["model_float16.tflite"]["agreement"]["images"] == 4  # this export's held-out images
    assert report["heldout_images"] == 4 and earlier["artifacts"]["model_int8.tflite"]["agreement"]["images"] == 6
    assert report.get("warnings", []) == earlier["warnings"] == []  # (kept with the int8 model: the test below)
    assert report["files"] == sorted([*earlier["files"], "model_float16.card.json", "model_float16.tflite"])
    assert sorted(p.name for p in out.iterdir()) == sorted([*report["files"], *ex.REPORT_FILES])
    # float16's converter said nothing: the int8 conversion's text stays
    assert (out / "converter.log").read_text() == (exported.output_dir / "converter.log").read_text()
    lines = (out / "export_report.txt").read_text().splitlines()
    assert "\n".join(lines) + "\n" == float16_added.text
    assert lines[:2] == [exported.text.splitlines()[0], f"  keras float32 top-1 {report['keras_top1']:.4f} on 4 "
                                                        "held-out images"]
    assert lines[2].startswith("model_float16.tflite: ")
    kept = [*_earlier_lines(exported.text.replace("saved_model/:", "saved_model:"), "saved_model"),
            *_earlier_lines(exported.text, "model_int8.tflite"), *(f"warning: {w}" for w in earlier["warnings"])]
    assert kept[0].startswith("saved_model (earlier export): signatures ") and "  Edge TPU check passes" in kept
    assert lines[-len(kept):] == [kept[0].replace("saved_model ", "saved_model/ ", 1), *kept[1:]]


def test_the_same_format_exported_again_replaces_its_entry(float16_added, trained_run, heldout, tmp_path):
    out = Path(shutil.copytree(float16_added.output_dir, tmp_path / "out"))
    before = json.loads((out / "export_report.json").read_text())
    result = ex.export(ex.ExportConfig(source=str(trained_run), output=str(out), tflite=True, quantize="float16"),
                       heldout=heldout)
    report = json.loads((out / "export_report.json").read_text())
    assert list(report["artifacts"]) == ["model_float16.tflite", "saved_model", "model_int8.tflite"]
    assert report["artifacts"]["model_float16.tflite"]["agreement"]["images"] == 6  # this export's, not the 4
    assert {n: report["artifacts"][n] for n in ("saved_model", "model_int8.tflite")} == {
        n: before["artifacts"][n] for n in ("saved_model", "model_int8.tflite")}
    assert report["files"] == before["files"]  # each once
    assert result.text.count("model_float16.tflite") == 1 and result.text.count("model_int8.tflite") == 1


@pytest.mark.parametrize(("written", "problem"), [
    ("{", "it is not JSON"),
    ({"artifacts": []}, "it is not an export report kres reads"),
    ({"classes": 2}, "it describes another model: ResNet-18 v1.5, input 32x32x3, 2 classes"),
])
def test_an_earlier_report_that_cannot_be_kept_is_said_and_nothing_of_it_is_kept(exported, trained_run, tmp_path,
                                                                               written, problem):
    out = Path(shutil.copytree(exported.output_dir, tmp_path / "out"))
    path = out / "export_report.json"
    path.write_text(written if isinstance(written, str) else json.dumps({**json.loads(path.read_text()), **written}))
    said = []
    result = ex.export(ex.ExportConfig(source=str(trained_run), output=str(out), tflite=True, quantize="float16",
                                       eval_images=0), said.append)
    note = (f"the earlier export_report.json in {out} is not kept ({problem}): the models it described are not in "
            "the new one; export them again, or remove them")
    assert f"note: {note}" in said
    assert list(result.report["artifacts"]) == ["model_float16.tflite"] and result.report["notes"] == [note]
    assert "warnings" not in result.report  # a note on this folder, not a warning about a model
    assert result.report["files"] == ["labels.txt", "meta.json", "model_float16.card.json", "model_float16.tflite"]
    assert result.text.endswith(f"\nnote: {note}\n") and not (out / "converter.log").exists()


def test_earlier_debugger_figures_stay_with_their_files_and_a_removed_models_entry_goes(exported, trained_run,
                                                                                          tmp_path):
    out = Path(shutil.copytree(exported.output_dir, tmp_path / "out"))
    section = {"images": 6, "image_source": "held-out", "seconds": 1.5, "near_zero": [],
               "worst": [{"layer": "conv1_conv", "op": "CONV_2D", "sqnr_db": 20.5, "rmse_over_scale": 0.25}],
               "csv": "quant_debug.csv", "png": "quant_debug.png"}
    earlier = json.loads((out / "export_report.json").read_text())
    earlier["quant_debug"], earlier["files"] = section, sorted([*earlier["files"], section["csv"], section["png"]])
    earlier["warnings"] = ["calibration images do not look like the training data"]  # about the int8 model
    (out / "export_report.json").write_text(json.dumps(earlier))
    (out / "quant_debug.csv").write_text("layer\nconv1_conv\n")
    (out / "quant_debug.png").write_bytes(b"png")
    shutil.rmtree(out / "saved_model")  # removed by hand: its entry goes, model.keras stays in "files"
    result = ex.export(ex.ExportConfig(source=str(trained_run), output=str(out), tflite=True, quantize="float16",
                                       eval_images=0))
    assert list(result.report["artifacts"]) == ["model_float16.tflite", "model_int8.tflite"]
    assert result.report["quant_debug"] == section
    assert result.report["from_earlier_export"] == ["model_int8.tflite", "quant_debug"]
    assert result.report["files"] == sorted(
        {*earlier["files"], "model_float16.card.json", "model_float16.tflite"} - {"saved_model"})
    assert "warnings" not in result.report  # float16 has none of its own
    assert result.report["earlier_export_warnings"] == earlier["warnings"]  # the int8 model stays: its warnings
    assert result.text.endswith("warning (earlier export): calibration images do not look like the training data\n"
                                "quantization debugger (earlier export) on 6 held-out images (1.5 s): worst layers "
                                "by median channel SQNR\n  conv1_conv (CONV_2D): 20.5 dB, rmse/scale 0.25\n"
                                "  per-layer figures in quant_debug.csv and quant_debug.png\n")


def test_quantize_alone_still_writes_the_savedmodel_too():
    cfg = ex.validate(ex.ExportConfig(source="run", output="out", quantize="int8"))
    assert (cfg.saved_model, cfg.tflite) == (True, True)
    cfg = ex.validate(ex.ExportConfig(source="run", output="out", saved_model=True, quantize="int8"))
    assert (cfg.saved_model, cfg.tflite) == (True, True)


def test_interrupted_write_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    final = tmp_path / "model_int8.tflite"

    def half_then_fail(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        fileio.write_bytes(final, b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_savedmodel_leaves_no_directory(tmp_path, monkeypatch):
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs)))

    def fail_midway(archive, path):
        (Path(path) / "saved_model.pb").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ex, "_write_archive", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        ex.export_saved_model(model, tmp_path / "saved_model")
    assert list(tmp_path.iterdir()) == []


def test_a_meta_json_of_another_model_beside_a_keras_file_is_refused(tmp_path):
    """A fine-tuned .keras saved into its run's folder was exported as the run's model: "ResNet-18 ... 10 classes"
    for a 5-class ResNet-34 (labels.txt of 10 names for 5 outputs), and predicted without a word."""
    from keras_resnet.errors import KresError
    from keras_resnet.model import resnet
    from keras_resnet.runtime import load_predictor

    run = _saved_run(tmp_path, "run", 18, [str(i) for i in range(10)])
    resnet(34, num_classes=5, input_shape=(64, 64, 3), variant="v1").save(run / "tuned.keras")
    expected = (f"{run / 'meta.json'} describes another model (ResNet-18, v1.5, {SIZE}x{SIZE}x3, 10 classes) than "
                "tuned.keras (ResNet-34, v1, 64x64x3, 5 classes): put tuned.keras in a folder of its own, or with the "
                "meta.json of the run that made it")
    with pytest.raises(KresError) as err:
        ex.export(ex.ExportConfig(source=str(run / "tuned.keras"), output=str(tmp_path / "out"), eval_images=0))
    assert str(err.value) == expected
    assert not (tmp_path / "out").exists()
    with pytest.raises(KresError) as err:
        load_predictor(run / "tuned.keras")  # kres predict and evaluate
    assert str(err.value) == expected
    assert load_predictor(run / "best.keras").labels == [str(i) for i in range(10)]  # its own model: as before
    resnet(18, num_classes=10, input_shape=(None, None, 3)).save(run / "any.keras")  # any size: run at the run's
    assert load_predictor(run / "any.keras").labels == [str(i) for i in range(10)]


def test_a_model_of_any_image_size_is_one_line_at_export(tmp_path):
    """input_shape=(None, None, 3), which the builder takes, failed with a TypeError traceback when its images were
    to be read, though none were asked for; the TFLite path named an --image-size that export does not have."""
    from keras_resnet.errors import KresError
    from keras_resnet.model import resnet

    (tmp_path / "m").mkdir()
    resnet(18, num_classes=3, input_shape=(None, None, 3)).save(tmp_path / "m" / "any.keras")
    for options in ({"saved_model": True}, {"tflite": True}):
        with pytest.raises(KresError) as err:
            ex.export(ex.ExportConfig(source=str(tmp_path / "m" / "any.keras"), output=str(tmp_path / "out"),
                                      eval_images=0, **options))
        assert str(err.value) == ("the model takes any image size (input (None, None, None, 3)): export needs a fixed "
                                  "one: build it again with input_shape=(224, 224, 3) (or the size it was trained at), "
                                  "load its weights and save it"), options


def test_a_runs_moved_tfds_data_is_found_with_tfds_dir(tmp_path, capsys):
    """A run's TFDS folder moved: export said "pass --tfds-dir", which it did not take ("No such option"), and
    --dataset alone kept looking in the old folder."""
    from keras_resnet.errors import KresError
    from kres.main import main

    run = {"dataset": "tf_flowers", "data_dir": None, "tfds_dir": "/old/tfds", "val_split": 0.2, "seed": 0}
    moved = str(tmp_path / "tfds")
    assert ex.moved_data(run, ex.ExportConfig(source="r", output="o", tfds_dir=moved)) == {**run, "tfds_dir": moved}
    assert ex.moved_data(run, ex.ExportConfig(source="r", output="o", dataset="cifar10", tfds_dir=moved)) == {
        **run, "dataset": "cifar10", "tfds_dir": moved}
    assert ex.moved_data(run, ex.ExportConfig(source="r", output="o")) == run  # nothing given: the run's own
    folders = {**run, "dataset": None, "data_dir": "/photos", "tfds_dir": None}
    with pytest.raises(KresError, match=r"^--tfds-dir says where TFDS data lives, and the model's run did not read a "
                                        r"TFDS dataset \(or none is recorded\): name one with --dataset$"):
        ex.moved_data(folders, ex.ExportConfig(source="r", output="o", tfds_dir=moved))
    with pytest.raises(KresError, match=r"^--tfds-dir says where TFDS data lives, and --dataset digits is built in: "
                                        r"drop --tfds-dir$"):  # it was ignored
        ex.moved_data(run, ex.ExportConfig(source="r", output="o", dataset="digits", tfds_dir=moved))
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "out"), "--tfds-dir", moved, "--data-dir",
                 str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "Error: --tfds-dir is where TFDS data lives and --data-dir names image folders: pass one of them"]


def test_what_a_model_outputs_is_read_off_the_model_whatever_its_meta_json_says():
    """A meta.json saying logits beside a softmax model named the SavedModel's output "logits" (read off meta.json)
    and each .tflite's "probabilities" (read off the model); its card and predict called them logits."""
    from keras_resnet.meta import with_scores
    from keras_resnet.model import resnet

    said = ModelMeta(18, "v1.5", "imagenet", [SIZE, SIZE, 3], "torch", [0.0] * 3, [1.0] * 3, LABELS,
                     extra={"scores": "logits", "resize": "full_frame"})
    softmax = resnet(18, num_classes=3, input_shape=(SIZE, SIZE, 3))
    assert with_scores(said, softmax).extra == {"resize": "full_frame"}
    logits = resnet(18, num_classes=3, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    assert with_scores(ModelMeta.from_model(logits, labels=LABELS), logits).extra["scores"] == "logits"


def test_a_logits_model_is_exported_and_predicted_as_logits(tmp_path, capsys):
    """classifier_activation=None (documented: "None for logits"): the card said "class probabilities (softmax)",
    and predict showed logits as scores, without a word."""
    from keras_resnet.model import resnet
    from kres.main import main

    (tmp_path / "m").mkdir()
    model = resnet(18, num_classes=3, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    model.save(tmp_path / "m" / "logits.keras")
    said = []
    ex.export(ex.ExportConfig(source=str(tmp_path / "m" / "logits.keras"), output=str(tmp_path / "out"), tflite=True,
                              saved_model=True, eval_images=0), said.append)
    assert "note: logits.keras outputs logits, not class probabilities: so do its exported files, and their cards " \
           "say so" in said
    card = json.loads((tmp_path / "out" / "model_float32.card.json").read_text())
    assert card["output"]["meaning"] == "class scores (logits), not probabilities"
    assert ModelMeta.load(tmp_path / "out").extra["scores"] == "logits"
    # the SavedModel called them "probabilities" (a walk, 2026-12-06): its output key says logits, as the report does
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tmp_path / "out" / "saved_model"))
    for signature in ("serving_default", "serving_float32"):
        assert list(loaded.signatures[signature].structured_outputs) == ["logits"], signature
    report = json.loads((tmp_path / "out" / "export_report.json").read_text())
    assert report["artifacts"]["saved_model"]["output"] == "logits"
    assert "saved_model/: signatures serving_default, serving_float32 -> logits" in \
        (tmp_path / "out" / "export_report.txt").read_text()
    from signatures import signature_outputs  # the .tflite's signature too (it said "output_0")

    tflite = (tmp_path / "out" / "model_float32.tflite").read_bytes()
    assert list(signature_outputs(tflite, np.zeros((SIZE, SIZE, 3), np.float32))) == ["logits"]
    ex.export_saved_model(model, tmp_path / "own")  # the library's call: the key read off the model itself
    assert list(tf.saved_model.load(str(tmp_path / "own")).signatures["serving_default"].structured_outputs) == [
        "logits"]
    Image.new("RGB", (SIZE, SIZE), (90, 20, 200)).save(tmp_path / "x.png")
    for path in (tmp_path / "out" / "model_float32.tflite", tmp_path / "m" / "logits.keras"):
        assert main(["predict", str(path), str(tmp_path / "x.png")]) == 0
        assert f"{path.name} outputs logits, not class probabilities: the scores shown are logits" in \
            capsys.readouterr().err
    softmax = ModelMeta(18, "v1.5", "imagenet", [32, 32, 3], "torch", [0.0] * 3, [1.0] * 3, LABELS)
    assert ex._output_meaning(softmax) == "class probabilities (softmax)"  # a model of kres's own, as before


def test_the_runs_training_folder_changed_since_gets_no_held_out_figures(run_dir, tmp_path):
    """One image added to the run's folder: its split drawn again takes images the model trained on; export printed
    "keras float32 top-1 0.5714 on 42 held-out images" and wrote it into the cards, where evaluate refuses it."""
    from dataclasses import replace
    from types import SimpleNamespace

    from keras_resnet.data import DataConfig, load_held_out

    for label in LABELS:
        (tmp_path / "pngs" / label).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (SIZE, SIZE), (60 * i, 0, 0)).save(tmp_path / "pngs" / label / f"{i}.png")
    data = DataConfig(data_dir=str(tmp_path / "pngs"), image_size=SIZE, batch_size=1)
    before = load_held_out(data, 100)
    assert (before.num_train, before.num_val) == (10, 2)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(run_dir / "best.keras", run / "best.keras")
    (run / "config.json").write_text(json.dumps({"data": {"data_dir": str(tmp_path / "pngs"), "image_size": SIZE},
                                                 "train": {}, "resolved": {"num_train": 10, "num_val": 2}}))
    said, report = [], {}
    job = SimpleNamespace(cfg=ex.ExportConfig(source=str(run), output="o"), data_cfg=data, say=said.append,
                          source=ex.resolve_source(run), meta=None)
    assert ex._changed_split(job) is None  # as it was trained on: measured
    shutil.copy(tmp_path / "pngs" / "one" / "0.png", tmp_path / "pngs" / "one" / "added.png")
    problem = (f"{tmp_path / 'pngs'} has changed since best.keras was trained on it (10 training and 2 validation "
               "images then, 10 and 3 now), so its validation split would hold images the model trained on")
    ex._keras_reference(job, None, report)
    assert said == [f"warning: {problem}: no held-out figures are measured on it (the report and the cards have no "
                    "accuracy); pass --data-dir a folder of held-out images to measure them, or put the folder "
                    "back as it was"]
    assert report == {"heldout_skipped": problem} and not hasattr(job, "images")
    text = ex.report_text({"model": "ResNet-18 v1.5", "source": "best.keras", "input_shape": [32, 32, 3],
                           "classes": 3, "artifacts": {}, **report})
    assert text.splitlines()[1] == f"  no held-out figures: {problem}"
    said.clear()
    ex._keras_reference(SimpleNamespace(**{**vars(job), "cfg": replace(job.cfg, eval_images=0)}), None, {})
    assert said == []  # --eval-images 0 measures nothing: nothing to say


def test_files_made_from_a_replaced_int8_model_are_not_listed_and_are_said(exported, trained_run, heldout, tmp_path):
    """int8 again without --edgetpu beside an earlier --edgetpu --debug export: the report listed the compiler's
    files and kept the debugger's figures of the int8 model this export replaced (a review, 2026-12-06)."""
    out = Path(shutil.copytree(exported.output_dir, tmp_path / "out"))
    earlier = json.loads((out / "export_report.json").read_text())
    made = ["model_int8_edgetpu.log", "model_int8_edgetpu.tflite", "quant_debug.csv", "quant_debug.png"]
    for name in made:
        (out / name).write_text("of the earlier int8 model\n")
    earlier["files"] = sorted([*earlier["files"], *made])
    earlier["quant_debug"] = {"images": 6, "image_source": "held-out", "seconds": 1.5, "near_zero": [], "worst": [],
                              "csv": "quant_debug.csv", "png": "quant_debug.png"}
    earlier["warnings"] = ["calibration images do not look like the training data"]
    (out / "export_report.json").write_text(json.dumps(earlier))
    said = []
    result = ex.export(ex.ExportConfig(source=str(trained_run), output=str(out), tflite=True, quantize="int8",
                                       saved_model=False, eval_images=0), said.append,
                       calibration=lambda: (img[None] for img in heldout[0][:2]))
    note = (f"model_int8_edgetpu.log, model_int8_edgetpu.tflite, quant_debug.csv, quant_debug.png in {out} are left "
            "from the earlier export, made from a model this export replaces, and not in the new report: remove "
            "them, or export again with the options that write them")
    assert f"note: {note}" in said and result.report["notes"] == [note]
    assert result.report["from_earlier_export"] == ["saved_model"]
    assert "quant_debug" not in result.report and "earlier_export_warnings" not in result.report
    assert not set(made) & set(result.report["files"]) and "model.keras" in result.report["files"]
    assert result.text.count("note: ") == 1 and "(earlier export)" not in result.text.replace("saved_model/ (", "")


def test_earlier_debugger_figures_whose_files_are_gone_are_not_kept(exported, trained_run, tmp_path):
    """The earlier debugger section was kept while the int8 model stayed, its quant_debug.csv/.png deleted: the
    report pointed at files that were not there (a review, 2026-12-06)."""
    out = Path(shutil.copytree(exported.output_dir, tmp_path / "out"))
    earlier = json.loads((out / "export_report.json").read_text())
    earlier["quant_debug"] = {"images": 6, "image_source": "held-out", "seconds": 1.5, "near_zero": [], "worst": [],
                              "csv": "quant_debug.csv", "png": "quant_debug.png"}
    (out / "export_report.json").write_text(json.dumps(earlier))
    result = ex.export(ex.ExportConfig(source=str(trained_run), output=str(out), tflite=True, quantize="float16",
                                       eval_images=0))
    assert result.report["from_earlier_export"] == ["saved_model", "model_int8.tflite"]
    assert "quant_debug" not in result.report and "quantization debugger" not in result.text
