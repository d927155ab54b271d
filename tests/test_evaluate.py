"""kres evaluate: exact metrics on hand-made cases, the data lookup, A/B comparison, JSON and PNG, errors."""

import dataclasses
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import data as data_module
from keras_resnet import evaluate as ev
from keras_resnet import resnet
from keras_resnet.data import DataConfig, Datasets, load_datasets, load_every_image
from keras_resnet.errors import KresError
from keras_resnet.meta import ModelMeta
from keras_resnet.runtime import Predictor
from kres.main import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- metrics by hand -----------------------------------------------------------------------------------------

PROBS = np.array([
    [0.7, 0.2, 0.1],  # true a: right
    [0.1, 0.6, 0.3],  # true c: wrong, c second
    [0.5, 0.4, 0.1],  # true c: wrong, c last
    [0.2, 0.3, 0.5],  # true c: right
    [0.0, 1.0, 0.0],  # true a: wrong with probability 0 (1e-7 in the loss); 2nd by the tie rule, so in top-2
])
TRUE = np.array([0, 2, 2, 2, 0])


def test_metrics_exact_on_a_hand_made_case():
    m = ev.compute_metrics(PROBS, TRUE, ["a", "b", "c"], k=2)
    assert m.num_examples == 5
    assert m.top1 == pytest.approx(2 / 5)
    assert m.top_k == 2 and m.top5 == pytest.approx(4 / 5)
    assert m.per_class == {"a": pytest.approx(1 / 2), "b": None, "c": pytest.approx(1 / 3)}
    assert m.confusion == [[1, 1, 0], [0, 0, 0], [1, 1, 1]]
    expected_loss = -(math.log(0.7) + math.log(0.3) + math.log(0.1) + math.log(0.5) + math.log(1e-7)) / 5
    assert m.loss == pytest.approx(expected_loss, rel=1e-9)


def test_one_hot_labels_give_the_same_metrics_and_top5_caps_at_the_class_count():
    by_index = ev.compute_metrics(PROBS, TRUE, ["a", "b", "c"])
    by_one_hot = ev.compute_metrics(PROBS, np.eye(3)[TRUE], ["a", "b", "c"])
    assert by_index == by_one_hot
    assert by_index.top_k == 3 and by_index.top5 == 1.0


def test_top5_of_seven_classes_and_ties_go_to_the_lower_index():
    probs = np.array([[0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05],   # true 5: 6th -> not in top-5
                      [0.05, 0.08, 0.10, 0.12, 0.15, 0.20, 0.30],   # true 2: 5th -> in top-5
                      [0.40, 0.40, 0.05, 0.05, 0.04, 0.03, 0.03]])  # true 1: tie with 0 -> 0 is top-1
    m = ev.compute_metrics(probs, np.array([5, 2, 1]))
    assert m.top_k == 5
    assert m.top5 == pytest.approx(2 / 3)
    assert m.top1 == 0.0
    assert m.confusion[1][0] == 1


def test_compare_outputs_exact():
    a = np.array([[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]])
    b = np.array([[0.7, 0.3], [0.9, 0.1], [0.5, 0.5]])
    agree, max_diff, mean_diff = ev.compare_outputs(a, b)
    assert agree == pytest.approx(2 / 3)
    assert max_diff == pytest.approx(0.5)
    assert mean_diff == pytest.approx((0.1 + 0.1 + 0.5 + 0.5) / 6)
    with pytest.raises(KresError, match="cannot be compared"):
        ev.compare_outputs(a, b[:, :1])


def test_metric_inputs_that_do_not_fit():
    with pytest.raises(KresError, match="different number of classes"):
        ev.compute_metrics(PROBS, np.eye(4)[[0, 1, 2, 3, 0]])
    with pytest.raises(KresError, match="3 outputs"):
        ev.compute_metrics(PROBS, np.array([0, 1, 2, 3, 0]))


# --- the whole evaluate() with stub models and stub data (exact numbers, no network) ---------------------------

class StubPredictor(Predictor):
    """Predicts the class written in each image's first pixel (or a fixed class) with probability 0.8."""

    kind = "stub"

    def __init__(self, path, fixed=None, labels=None):
        super().__init__(Path(path), (32, 32, 3), None if labels is None else SimpleNamespace(labels=labels, extra={}))
        self.fixed = fixed

    @property
    def num_outputs(self):
        return 3

    def _predict_batch(self, images):
        pred = np.full(len(images), self.fixed) if self.fixed is not None else images[:, 0, 0, 0].astype(int)
        probs = np.full((len(images), 3), 0.1, np.float32)
        probs[np.arange(len(images)), pred] = 0.8
        return probs


STUB_PRED = [0, 1, 0, 0, 2, 2]
STUB_TRUE = [0, 1, 2, 0, 1, 2]


@pytest.fixture
def stub_world(monkeypatch, tmp_path):
    images = np.stack([np.full((32, 32, 3), p, np.float32) for p in STUB_PRED])
    labels = np.eye(3, dtype=np.float32)[STUB_TRUE]
    val = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)  # batches of 4 and 2
    seen = []

    def fake_load_datasets(cfg):
        seen.append(cfg)
        return Datasets(train=val, val=val, class_names=["x", "y", "z"], num_train=6, num_val=6)

    monkeypatch.setattr(data_module, "load_datasets", fake_load_datasets)
    monkeypatch.setattr(ev, "load_predictor", lambda path, num_threads=None: StubPredictor(
        path, fixed=0 if str(path).endswith("b") else None))
    return tmp_path, seen


def test_evaluate_end_to_end_exact_with_stubs(stub_world):
    tmp_path, seen = stub_world
    cfg = ev.EvalConfig(models=["model_a", "model_b"], dataset="synthetic", batch_size=5, output=str(tmp_path / "o"))
    result = ev.evaluate(cfg, progress=lambda done, total: None)
    assert seen[0].image_size == 32 and seen[0].dataset == "synthetic" and not seen[0].cache
    a, b = result.models
    assert a.metrics.top1 == pytest.approx(4 / 6)
    assert a.metrics.loss == pytest.approx(-(4 * math.log(0.8) + 2 * math.log(0.1)) / 6, rel=1e-6)
    assert a.metrics.confusion == [[2, 0, 0], [0, 1, 1], [1, 0, 1]]
    assert a.metrics.per_class == {"x": 1.0, "y": 0.5, "z": 0.5}
    assert b.metrics.top1 == pytest.approx(2 / 6)
    assert result.comparison.top1_agreement == pytest.approx(3 / 6)
    assert result.comparison.max_abs_diff == pytest.approx(0.7)
    assert result.comparison.top1_delta == pytest.approx(-2 / 6)

    saved = json.loads((tmp_path / "o" / "evaluation.json").read_text())
    assert saved["models"][0]["metrics"]["confusion"] == [[2, 0, 0], [0, 1, 1], [1, 0, 1]]
    assert saved["comparison"]["top1_agreement"] == pytest.approx(0.5)
    assert saved["data"]["class_names"] == ["x", "y", "z"] and saved["data"]["source"] == "options"
    for name in ("confusion_matrix_a.png", "confusion_matrix_b.png"):
        assert (tmp_path / "o" / name).read_bytes()[:8] == PNG_MAGIC
    assert not list((tmp_path / "o").glob(".*tmp*"))  # atomic writes leave no temporaries


def test_an_interrupted_evaluation_leaves_the_earlier_one_whole(stub_world, monkeypatch):
    """One model evaluated into a folder of a two-model evaluation removed confusion_matrix_a/_b.png first: a
    Ctrl-C while it drew its own left the earlier evaluation.json naming images no longer there (walk)."""
    tmp_path, _ = stub_world
    out = tmp_path / "o"
    ev.evaluate(ev.EvalConfig(models=["model_a", "model_b"], dataset="synthetic", batch_size=5, output=str(out)))
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(earlier) == ["confusion_matrix_a.png", "confusion_matrix_b.png", "evaluation.json"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(ev, "save_confusion_png", interrupted)
        with pytest.raises(KeyboardInterrupt):
            ev.evaluate(ev.EvalConfig(models=["model_a"], dataset="synthetic", batch_size=5, output=str(out)))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier
    ev.evaluate(ev.EvalConfig(models=["model_a"], dataset="synthetic", batch_size=5, output=str(out)))
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "evaluation.json"]


def test_a_folder_without_val_says_only_its_validation_split_is_scored(stub_world, capsys):
    from kres.evaluate import _print

    tmp_path, _ = stub_world
    (tmp_path / "photos" / "x").mkdir(parents=True)
    result = ev.evaluate(ev.EvalConfig(models=["m"], data_dir=str(tmp_path / "photos"), output=str(tmp_path / "o"),
                                       image_size=32))
    assert result.data["split_from"] == 12  # the stub's 6 training and 6 validation images
    _print(result)
    assert capsys.readouterr().out.startswith(f"Data: {tmp_path / 'photos'}, 6 of its 12 images (the validation "
                                              "split: --val-split 0.2, seed 0; --all-images scores all 12), 3 "
                                              "classes, 32 px (data named on the command line)\n")
    (tmp_path / "photos" / "val").mkdir()
    (tmp_path / "photos" / "train").mkdir()
    assert ev.evaluate(ev.EvalConfig(models=["m"], data_dir=str(tmp_path / "photos"), output=str(tmp_path / "o"),
                                     image_size=32)).data["split_from"] is None  # val/ beside train/ is read whole


def test_a_folder_of_some_of_the_models_classes_says_how_many(capsys):
    """It said "3 classes" (the model's) for a validation folder of 2 of them."""
    from kres.evaluate import _print

    assert ev._classes_seen(np.eye(3)[[0, 2, 0]]) == 2 and ev._classes_seen(np.array([1, 1, 2])) == 2
    data = {"dataset": None, "data_dir": "pets", "num_val": 12, "split_from": None, "class_names": ["a", "b", "c"],
            "classes_seen": 2, "image_size": 32, "source": "options"}
    _print(SimpleNamespace(data=data, models=[], comparison=None, warnings=[], json_path="e.json"))
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "Data: pets, 12 images, 2 of its 3 classes, 32 px (data named on the command line)"


def test_explicit_image_size_that_does_not_fit_the_model(stub_world):
    tmp_path, seen = stub_world
    cfg = ev.EvalConfig(models=["m"], dataset="synthetic", image_size=40, output=str(tmp_path))
    with pytest.raises(KresError, match=r"takes 32x32 images, not --image-size 40"):
        ev.evaluate(cfg)
    assert not seen  # refused before any data was loaded


def test_class_count_mismatch(stub_world, monkeypatch):
    tmp_path, _ = stub_world
    four = Datasets(train=None, val=None, class_names=list("abcd"), num_train=1, num_val=1)
    monkeypatch.setattr(data_module, "load_datasets", lambda cfg: four)
    with pytest.raises(KresError, match="3 outputs but the data has 4 classes"):
        ev.evaluate(ev.EvalConfig(models=["m"], dataset="synthetic", output=str(tmp_path)))


def test_the_datas_classes_are_the_models_outputs_of_their_names(stub_world, monkeypatch):
    """The model names its classes z, x, y; the data's folders are x, y, z: each image is scored against the
    output of its class's name (they were scored by position, with a warning)."""
    tmp_path, _ = stub_world
    named = {"zxy": ["z", "x", "y"], "other": ["x", "y", "q"], "xyz": ["x", "y", "z"]}
    monkeypatch.setattr(ev, "load_predictor", lambda path, num_threads=None: StubPredictor(
        path, labels=named[Path(path).name]))
    result = ev.evaluate(ev.EvalConfig(models=["zxy"], dataset="synthetic", output=str(tmp_path / "o")))
    metrics = result.models[0].metrics  # true outputs 1 2 0 1 2 0, predicted 0 1 0 0 2 2
    assert metrics.confusion == [[1, 0, 1], [2, 0, 0], [0, 1, 1]] and metrics.top1 == pytest.approx(2 / 6)
    assert list(metrics.per_class) == ["z", "x", "y"] and result.warnings == []
    with pytest.raises(KresError, match=r"^the data has classes other was not trained on \(z\): evaluate it on "
                                        r"data of its classes \(x, y, q; image folders are named after them\)$"):
        ev.evaluate(ev.EvalConfig(models=["other"], dataset="synthetic", output=str(tmp_path / "o")))
    with pytest.raises(KresError, match=r"^zxy and xyz have other classes \(zxy: 3 \(z, x, y\); xyz: 3 \(x, y, z\)\): "
                                        r"compare two models of the same classes$"):
        ev.evaluate(ev.EvalConfig(models=["zxy", "xyz"], dataset="synthetic", output=str(tmp_path / "o")))
    # two runs' best.keras: named by their paths (it said "best.keras and best.keras have other classes")
    monkeypatch.setattr(ev, "load_predictor", lambda path, num_threads=None: StubPredictor(
        path, labels=["z", "x", "y"] if "a" in Path(path).parts else ["x", "y", "z"]))
    with pytest.raises(KresError, match=r"^a/best\.keras and b/best\.keras have other classes \(a/best\.keras: 3 "):
        ev.evaluate(ev.EvalConfig(models=["a/best.keras", "b/best.keras"], dataset="synthetic",
                                  output=str(tmp_path / "o")))


def test_a_model_without_meta_json_says_its_classes_take_the_datas_names(stub_world):
    """A lone .keras or .tflite scored per class under the data's folder names, in order, without a word, where
    export and predict say so."""
    tmp_path, _ = stub_world
    for name in ("mymodel.keras", "model_int8.tflite"):
        result = ev.evaluate(ev.EvalConfig(models=[str(tmp_path / name)], dataset="synthetic",
                                           output=str(tmp_path / "o")))
        assert result.warnings == [f"{name} has no meta.json: its 3 classes take the data's names, in order (x, y, "
                                   "z); copy its run's meta.json beside it where they differ"]
    assert len(ev.evaluate(ev.EvalConfig(models=[str(tmp_path / "a"), str(tmp_path / "b")], dataset="synthetic",
                                         output=str(tmp_path / "o"))).warnings) == 2
    (tmp_path / "meta.json").write_text("{}")  # a meta.json beside it: the model is not without one
    assert ev.evaluate(ev.EvalConfig(models=[str(tmp_path / "mymodel.keras")], dataset="synthetic",
                                     output=str(tmp_path / "o"))).warnings == []


def test_a_model_whose_meta_json_numbers_its_classes_says_they_are_matched_to_the_datas_by_position(stub_world,
                                                                                                    monkeypatch):
    """A library model saved with ModelMeta.from_model(model) names its classes class_0, class_1, class_2: scored on
    the folders x, y, z by position (the only way to score it), without a word."""
    tmp_path, _ = stub_world
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "meta.json").write_text("{}")
    numbered = ["class_0", "class_1", "class_2"]
    monkeypatch.setattr(ev, "load_predictor", lambda path, num_threads=None: StubPredictor(path, labels=numbered))
    result = ev.evaluate(ev.EvalConfig(models=[str(tmp_path / "lib" / "model.keras")], dataset="synthetic",
                                       output=str(tmp_path / "o")))
    assert result.warnings == ["model.keras's meta.json names its classes by number: they are matched to the data's "
                               "classes by position, a folder's sorted by name (class_0=x, class_1=y, class_2=z); save "
                               "its meta.json with ModelMeta.from_model(model, labels=[...]) to match them by name"]
    assert list(result.models[0].metrics.per_class) == ["x", "y", "z"]
    # data whose classes are those numbers: nothing to say
    datasets = data_module.load_datasets(None)
    monkeypatch.setattr(data_module, "load_datasets", lambda cfg: dataclasses.replace(datasets, class_names=numbered))
    result = ev.evaluate(ev.EvalConfig(models=[str(tmp_path / "lib" / "model.keras")], dataset="synthetic",
                                       output=str(tmp_path / "o")))
    assert result.warnings == [] and list(result.models[0].metrics.per_class) == numbered


def test_training_data_lookup(tmp_path):
    run = tmp_path / "run"
    (run / "export" / "saved_model").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"data": {"dataset": "synthetic", "image_size": 48}}))
    assert ev.training_data_config(run)["dataset"] == "synthetic"
    assert ev.training_data_config(run / "best.keras")["image_size"] == 48
    assert ev.training_data_config(run / "export" / "model.tflite")["dataset"] == "synthetic"  # one folder up
    lone = tmp_path / "lone"
    lone.mkdir()
    with pytest.raises(KresError, match=r"no training data is recorded.*--dataset"):
        ev.training_data_config(lone / "model.tflite")
    meta_only = StubPredictor(lone / "model.tflite")
    meta_only.meta = ModelMeta(18, "v1.5", "cifar", [32, 32, 3], "torch", [0.0] * 3, [1.0] * 3,
                               extra={"data": {"dataset": "cifar10"}})
    assert ev.training_data_config(lone / "model.tflite", meta_only.meta) == {"dataset": "cifar10"}
    meta_only.meta.extra = {"run_dir": str(run)}
    assert ev.training_data_config(lone / "model.tflite", meta_only.meta)["image_size"] == 48


# --- a real ResNet-18 run dir through the CLI ---------------------------------------------------------------------

SYNTHETIC = {"dataset": "synthetic", "synthetic_classes": 4, "synthetic_size": 12, "image_size": 32, "seed": 0}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("evaluate") / "run"
    run.mkdir()
    keras.utils.set_random_seed(0)
    model = resnet(18, num_classes=4, input_shape=(32, 32, 3), stem="cifar", zero_init_residual=False)
    model.save(run / "best.keras")
    ModelMeta.from_model(model).save(run)
    (run / "config.json").write_text(json.dumps({"data": SYNTHETIC, "train": {}}))
    (run / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return run, model


def test_cli_evaluates_a_run_on_its_training_data_and_compares_with_tflite(run_dir, capsys):
    run, model = run_dir
    (run / "eval").mkdir(exist_ok=True)
    (run / "eval" / "confusion_matrix.png").write_bytes(PNG_MAGIC)  # an earlier evaluation's, of one model
    assert main(["evaluate", str(run), str(run / "model.tflite"), "--json", "--batch-size", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"]["source"] == "training config" and report["data"]["num_val"] == 12
    assert [m["kind"] for m in report["models"]] == ["keras", "tflite"]
    assert report["comparison"]["top1_agreement"] == 1.0
    assert report["comparison"]["max_abs_diff"] < 1e-4

    images, labels = zip(*load_datasets(DataConfig(**SYNTHETIC, batch_size=1)).val.as_numpy_iterator())
    expected = ev.compute_metrics(model.predict(np.concatenate(images), verbose=0), np.concatenate(labels),
                                  [f"class_{i}" for i in range(4)])
    got = report["models"][0]["metrics"]
    assert got["confusion"] == expected.confusion
    assert got["top_k"] == 4 and got["top5"] == pytest.approx(expected.top5)  # 4 classes: "top5" is top-4
    assert got["top1"] == pytest.approx(expected.top1) and got["loss"] == pytest.approx(expected.loss, rel=1e-5)
    assert Path(report["json_path"]) == run / "eval" / "evaluation.json"
    assert (run / "eval" / "confusion_matrix_a.png").read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in (run / "eval").glob("*.png")) == ["confusion_matrix_a.png", "confusion_matrix_b.png"]


def test_cli_table_output(run_dir, capsys, tmp_path):
    run, _ = run_dir
    # Naming the training dataset again keeps the run's other data settings (4 synthetic classes, seed).
    assert main(["evaluate", str(run / "best.keras"), "--dataset", "synthetic", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "top-4" in out and "(data named on the command line)" in out
    assert "12 images, 4 classes" in out
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == PNG_MAGIC
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["data"]["dataset"] == "synthetic" and saved["data"]["synthetic_classes"] == 4


@pytest.mark.parametrize("args, message", [
    (["{tmp}/nothing.keras"], "does not exist"),
    (["{tmp}"], "holds no model"),
    (["{run}/best.keras", "--dataset", "synthetic", "--image-size", "64"], "takes 32x32 images, not --image-size 64"),
    (["{run}/model.tflite", "{run}/best.keras", "{run}/best.keras"], "one model, or two"),
    # synthetic data's classes are class_0 ... class_3 (meta.json): the digits' 0-9 are others (see the test below)
    (["{run}/best.keras", "--dataset", "digits"], "the data has classes best.keras was not trained on (0, 1, 2, 3, 4 "
                                                  "and 5 more)"),
    (["{run}/best.keras", "--output", "{run}/config.json/out"], "cannot write to"),
    # it sets LiteRT's threads, and was ignored for a Keras model
    (["{run}/best.keras", "--threads", "4"], "--threads sets the TFLite interpreter's threads, and best.keras is not a "
                                             ".tflite model: drop --threads"),
])
def test_cli_errors_are_one_line(run_dir, tmp_path, capsys, args, message):
    run, _ = run_dir
    argv = ["evaluate", *[a.format(tmp=tmp_path, run=run) for a in args]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("Error:") and message in err[-1]
    assert "Traceback" not in "\n".join(err)
    # a refused command makes no folder: `kres evaluate DATA` made DATA/eval/, a class folder to the next command
    assert not (tmp_path / "eval").exists()


def test_a_run_on_synthetic_data_is_not_scored_under_other_classes(run_dir, tmp_path, capsys):
    """Its meta.json's class_0, class_1, ... are synthetic data's names: evaluated on the digits it took their
    names 0-9, in order, and scored 10% without a word. Numbered labels of a model whose data is not recorded, and a
    model without meta.json, still take the data's classes in order (as many as it has outputs)."""
    run, _ = run_dir
    assert main(["evaluate", str(run / "best.keras"), "--dataset", "digits", "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "Error: the data has classes best.keras was not trained on (0, 1, 2, 3, 4 and 5 more): evaluate it on the "
        "synthetic data it was trained on (--dataset synthetic), or on data of its classes (class_0, class_1, "
        "class_2, class_3; image folders are named after them)")
    for beside in ([], ["meta.json"]):  # a lone copy; a copy with its numbered meta.json but no run
        lone = tmp_path / f"lone{len(beside)}"
        lone.mkdir()
        for name in ["best.keras", *beside]:
            (lone / name).write_bytes((run / name).read_bytes())
        assert main(["evaluate", str(lone / "best.keras"), "--dataset", "digits"]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            "Error: best.keras has 4 outputs but the data has 10 classes: evaluate it on the data it was trained on")


def test_an_output_that_cannot_be_made_says_what_is_in_the_way_and_names_the_option(run_dir, tmp_path, capsys):
    """A broken link as --output was "File exists"; the default folder beside a model that cannot hold it said
    "choose another output path", an option evaluate does not have."""
    run, _ = run_dir
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    args = ["evaluate", str(run / "best.keras"), "--dataset", "synthetic"]
    assert main([*args, "--output", str(tmp_path / "broken")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"Error: cannot write to {tmp_path / 'broken'}: a file or a broken link is in the way; choose another output "
        "path")
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("best.keras", "config.json"):
        (alone / name).write_bytes((run / name).read_bytes())
    (alone / "eval").write_text("the user's")  # where the default output would go
    assert main(["evaluate", str(alone / "best.keras")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"Error: cannot write to {alone / 'eval'}: a file or a broken link is in the way (the default, beside the "
        "model): pass --output a folder you can write to")


def test_a_file_name_as_output_is_refused_before_a_folder_of_that_name_is_made(tmp_path, capsys):
    """`-o out/eval.json` made a folder named eval.json with evaluation.json in it (new-user walk); export refused
    such a name already."""
    for name in ("eval.json", "confusion.PNG"):
        assert main(["evaluate", str(tmp_path / "m.keras"), "--output", str(tmp_path / "out" / name)]) == 2
        assert capsys.readouterr().err == (f"Error: --output is the folder for evaluation.json and its plots, not a "
                                           f"file name: try {tmp_path / 'out' / name.split('.')[0]}\n")
    assert not (tmp_path / "out").exists()


def test_cli_model_with_no_recorded_data(run_dir, tmp_path, capsys):
    run, _ = run_dir
    (tmp_path / "m.tflite").write_bytes((run / "model.tflite").read_bytes())
    assert main(["evaluate", str(tmp_path / "m.tflite")]) == 2
    assert "no training data is recorded" in capsys.readouterr().err


def test_naming_the_builtin_digits_keeps_the_runs_split(tmp_path):
    """A run config records the digits as dataset None: `--dataset digits` must keep its seed and val_split,
    or the "validation" images would include ones the model trained on."""
    (tmp_path / "config.json").write_text(json.dumps(
        {"data": {"dataset": None, "data_dir": None, "seed": 7, "val_split": 0.3, "image_size": 32}}))
    model = StubPredictor(tmp_path / "best.keras")
    for dataset in ("digits", None):
        cfg = ev.data_config(ev.EvalConfig(models=[str(tmp_path)], dataset=dataset), [model])
        assert (cfg.seed, cfg.val_split, cfg.image_size) == (7, 0.3, 32), dataset
    other = ev.data_config(ev.EvalConfig(models=[str(tmp_path)], dataset="synthetic"), [model])
    assert (other.seed, other.val_split) == (0, 0.2)  # different data: the run's split does not apply


def test_data_options_replace_only_what_they_name_in_the_runs_data(tmp_path):
    """--tfds-dir alone is where the run's TFDS data now lives (it evaluated on the digits); --dataset keeps the
    run's --tfds-dir; another image folder for a run trained on a folder keeps the run's split."""
    run = {"dataset": "cifar10", "data_dir": None, "tfds_dir": "/data/tfds", "seed": 7, "val_split": 0.3}
    (tmp_path / "config.json").write_text(json.dumps({"data": run}))
    model = StubPredictor(tmp_path / "best.keras")

    def evaluated_on(**options):
        cfg = ev.data_config(ev.EvalConfig(models=[str(tmp_path)], image_size=32, **options), [model])
        return cfg.dataset, cfg.data_dir, cfg.tfds_dir, cfg.seed, cfg.val_split

    assert evaluated_on(tfds_dir="/new/tfds") == ("cifar10", None, "/new/tfds", 7, 0.3)
    assert evaluated_on(dataset="cifar10") == ("cifar10", None, "/data/tfds", 7, 0.3)
    assert evaluated_on(dataset="svhn_cropped") == ("svhn_cropped", None, None, 0, 0.2)
    (tmp_path / "config.json").write_text(json.dumps({"data": {**run, "dataset": None, "data_dir": "/gone/pets"}}))
    assert evaluated_on(data_dir="/moved/pets") == (None, "/moved/pets", "/data/tfds", 7, 0.3)
    with pytest.raises(KresError, match=r"^--tfds-dir says where TFDS data lives, and the model's run did not read a "
                                        r"TFDS dataset \(or none is recorded\): name one with --dataset$"):
        evaluated_on(tfds_dir="/new/tfds")


def test_class_names_the_plots_font_lacks_are_one_note_not_a_warning_a_glyph(tmp_path, recwarn):
    """Class folders named in Chinese or with an emoji printed matplotlib's 'UserWarning: Glyph 29483 (...) missing
    from font(s) DejaVu Sans.' and its source line, twice, on the terminal (under --json too)."""
    names = ["猫 cat", "dog", "Ünïcödé 🐟"]
    ev.save_confusion_png(np.eye(3, dtype=int), names, tmp_path / "c.png", "best.keras: top-1 100%")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)
    assert [str(w.message) for w in recwarn] == []
    assert ev._glyph_notes(names, ["confusion_matrix.png"]) == [
        "the plot's font has no glyph for '猫🐟': the class names in confusion_matrix.png show a box for each (the "
        "text and evaluation.json have them whole)"]
    assert ev._glyph_notes(["dog", "Ünïcödé"], ["confusion_matrix.png"]) == []


def test_unreadable_images_skipped_are_reported(stub_world, monkeypatch, capsys):
    tmp_path, _ = stub_world
    fake = data_module.load_datasets

    def with_skipped(cfg):
        return dataclasses.replace(fake(cfg), skipped=("cat/empty.jpg", "dog/cut.png"))

    monkeypatch.setattr(data_module, "load_datasets", with_skipped)
    photos = tmp_path / "photos"
    code = main(["evaluate", "model_a", "--data-dir", str(photos), "--image-size", "32", "--output",
                 str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (f"Warning: skipped 2 unreadable image files in {photos} (empty, truncated or not an image: "
            "cat/empty.jpg, dog/cut.png); the figures leave them out") in err
    data = json.loads((tmp_path / "o" / "evaluation.json").read_text())["data"]
    assert (data["skipped_files"], data["skipped"]) == (2, ["cat/empty.jpg", "dog/cut.png"])


def test_best_keras_of_a_digits_run_scores_what_training_validated(trained_digits_run, tmp_path):
    """`kres evaluate` of a run's best.keras on the run's own validation images counts, to the image, the best val
    top-1 of history.csv: the same images, preprocessing and weights (under the digits recipe's --ema 0.9, the
    averages; test_train and test_callbacks check exactly that the averages are what is saved and validated)."""
    from keras_resnet.callbacks import read_history

    assert json.loads((trained_digits_run / "config.json").read_text())["train"]["ema"] == 0.9
    best = max(row["val_accuracy"] for row in read_history(trained_digits_run / "history.csv"))
    metrics = ev.evaluate(ev.EvalConfig(models=[str(trained_digits_run / "best.keras")],
                                        output=str(tmp_path))).models[0].metrics
    assert metrics.num_examples == 359
    assert round(metrics.top1 * 359) == round(best * 359), (metrics.top1, best)


def _image_folder(root: Path, classes: dict[str, int]) -> Path:
    """PNG photos of flat colour, ``count`` in each class folder, 40x40 (larger than the model's 32 px)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_a_held_out_folder_is_scored_whole_with_all_images_and_a_val_folder_alone_without(run_dir, tmp_path,
                                                                                            capsys):
    """A test folder of DIR/<class>/ was scored on a 20% split of it, with no way to score every image; a folder
    of DIR/val/<class>/ alone (nothing trained on) was refused for having no train/."""
    run, model = run_dir
    named = tmp_path / "named"  # the run's model, its classes named: a test folder may hold some of them
    named.mkdir()
    (named / "best.keras").write_bytes((run / "best.keras").read_bytes())
    ModelMeta.from_model(model, labels=["cat", "dog", "fox", "owl"]).save(named)
    folder = _image_folder(tmp_path / "test", {"cat": 6, "dog": 5, "owl": 4})
    assert main(["evaluate", str(named / "best.keras"), "--data-dir", str(folder), "--output", str(tmp_path / "a"),
                 "--json"]) == 0
    split = json.loads(capsys.readouterr().out)["data"]
    assert (split["num_val"], split["split_from"], split["every_image"]) == (3, 15, False)

    assert main(["evaluate", str(named / "best.keras"), "--data-dir", str(folder), "--all-images",
                 "--output", str(tmp_path / "b"), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert (whole["data"]["num_val"], whole["data"]["split_from"], whole["data"]["every_image"]) == (15, None, True)
    assert whole["data"]["classes_seen"] == 3
    # every image, scored against the output of its class's name (owl is the model's 4th output)
    data = load_every_image(DataConfig(data_dir=str(folder), image_size=32, batch_size=64))
    images, labels = zip(*data.val.as_numpy_iterator())
    truth = np.array([0, 1, 3])[np.argmax(np.concatenate(labels), axis=1)]
    assert sorted(np.bincount(truth, minlength=4).tolist()) == [0, 4, 5, 6]
    expected = ev.compute_metrics(model.predict(np.concatenate(images), verbose=0), truth, ["cat", "dog", "fox", "owl"])
    got = whole["models"][0]["metrics"]
    assert got["confusion"] == expected.confusion and got["top1"] == pytest.approx(expected.top1)

    # val/ alone is held out whole, no option needed; the table says so
    held_out = tmp_path / "held_out"
    held_out.mkdir()
    folder.rename(held_out / "val")
    assert main(["evaluate", str(named / "best.keras"), "--data-dir", str(held_out), "--output",
                 str(tmp_path / "c")]) == 0
    assert capsys.readouterr().out.startswith(f"Data: {held_out}, all 15 of its images, 3 of its 4 classes, 32 px")
    (held_out / "val").rename(held_out / "validation")  # scored as one class, "validation", that the model lacks
    (held_out / ".ipynb_checkpoints").mkdir()  # hidden: not a class folder, so validation/ is still alone
    assert main(["evaluate", str(named / "best.keras"), "--data-dir", str(held_out), "--output",
                 str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"Error: {held_out} has validation/, held-out images that kres reads from val/: rename validation/ to val/"]
    (held_out / "validation").rename(held_out / "val")

    # the folder the model was trained on: the rest of it was trained on, so --all-images is refused and not hinted
    own = _image_folder(tmp_path / "own", {"cat": 3, "dog": 3})
    (named / "config.json").write_text(json.dumps({"data": {"data_dir": str(own), "image_size": 32}}))
    assert main(["evaluate", str(named / "best.keras"), "--output", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Data: {own}, 1 of its 6 images (the validation split: --val-split 0.2, seed 0), ")
    assert "--all-images" not in out  # it said "--all-images scores all 6"
    assert main(["evaluate", str(named / "best.keras"), "--data-dir", str(own), "--all-images"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"Error: best.keras was trained on {own}: --all-images would score its training images too; drop it to "
        "score the validation split, or name a folder of held-out images"]


def _named_run(run_dir, folder: Path, data: Path, counts: tuple[int, int] | None = None) -> Path:
    """The fixture's model in a run folder of its own, its classes named cat, dog, fox and owl, trained (its
    config.json says) on ``data``, with ``counts`` (training, validation images) where given."""
    run, model = run_dir
    folder.mkdir()
    (folder / "best.keras").write_bytes((run / "best.keras").read_bytes())
    ModelMeta.from_model(model, labels=["cat", "dog", "fox", "owl"]).save(folder)
    config = {"data": {"data_dir": str(data), "image_size": 32}, "train": {}}
    if counts is not None:
        config["resolved"] = {"num_train": counts[0], "num_val": counts[1]}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_the_training_folder_changed_since_is_refused_as_its_split_would_take_training_images(run_dir, tmp_path,
                                                                                               capsys):
    """One image added to a folder split by --val-split draws another split: 11 of 48 "validation" images had
    been trained on in a user's run, and evaluate scored them (100% top-1) without a word."""
    own = _image_folder(tmp_path / "own", {"cat": 5, "dog": 5})
    named = _named_run(run_dir, tmp_path / "named", own, counts=(8, 2))
    assert main(["evaluate", str(named), "--output", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.startswith(f"Data: {own}, 2 of its 10 images (the validation split")
    # named on the command line, the training folder gets no hint of --all-images, which is refused on it
    assert main(["evaluate", str(named), "--data-dir", str(own), "--output", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.startswith(
        f"Data: {own}, 2 of its 10 images (the validation split: --val-split 0.2, seed 0), ")
    (own / "cat" / "0.png").rename(own / "cat" / "0 copy.png")  # moved within the folder: the same images
    assert main(["evaluate", str(named), "--output", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    (own / "dog" / "5.png").write_bytes((own / "dog" / "0.png").read_bytes())
    expected = [f"Error: {own} has changed since best.keras was trained on it (8 training and 2 validation images "
                "then, 9 and 2 now), so its validation split would hold images the model trained on: put the folder "
                "back as it was, or evaluate on held-out images (--data-dir DIR --all-images)"]
    for args in ([], ["--data-dir", str(own)], ["--data-dir", str(tmp_path / "." / "own")]):
        assert main(["evaluate", str(named), "--output", str(tmp_path / "b"), *args]) == 2
        assert capsys.readouterr().err.splitlines() == expected
    assert not (tmp_path / "b").exists()
    # another folder of held-out images is scored on its split, whatever its size
    other = _image_folder(tmp_path / "other", {"cat": 3, "owl": 4})
    assert main(["evaluate", str(named), "--data-dir", str(other), "--output", str(tmp_path / "c")]) == 0
    assert capsys.readouterr().out.startswith(f"Data: {other}, 1 of its 7 images (the validation split")


def test_the_training_folder_moved_is_scored_on_the_runs_split_and_all_images_is_refused_on_it(run_dir, tmp_path,
                                                                                               capsys):
    """`mv shapes shapes_moved`: evaluate kept the run's split, and hinted "--all-images scores all 207", which
    scored the training images too (65.70% where the split gave 53.66%), while the recorded path was refused."""
    own = _image_folder(tmp_path / "own", {"cat": 3, "dog": 3, "fox": 2, "owl": 2})
    named = _named_run(run_dir, tmp_path / "named", own, counts=(8, 2))
    moved = own.rename(tmp_path / "moved")
    assert main(["evaluate", str(named), "--data-dir", str(moved), "--output", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.startswith(
        f"Data: {moved}, 2 of its 10 images (the validation split: --val-split 0.2, seed 0), ")
    assert main(["evaluate", str(named), "--data-dir", str(moved), "--all-images", "--output",
                 str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"Error: {moved} looks like the folder best.keras was trained on, moved or copied (the classes and the 10 "
        f"images of {own}, as its run recorded them): --all-images would score its training images too; drop it to "
        "score the validation split, or name a folder of held-out images"]
    assert not (tmp_path / "b").exists()
    # a folder of held-out images of the same classes: hinted, and scored whole
    test = _image_folder(tmp_path / "test", {"cat": 3, "dog": 3, "fox": 3, "owl": 2})
    assert main(["evaluate", str(named), "--data-dir", str(test), "--output", str(tmp_path / "c")]) == 0
    assert "; --all-images scores all 11)" in capsys.readouterr().out
    assert main(["evaluate", str(named), "--data-dir", str(test), "--all-images", "--output", str(tmp_path / "c"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["num_val"] == 11


def test_a_folder_too_small_to_split_says_evaluates_own_fix(run_dir, tmp_path, capsys):
    """It said "raise --val-split", an option evaluate does not have (new-user walk); --all-images scores it."""
    folder = _image_folder(tmp_path / "few", {"class_0": 1, "class_1": 1})
    assert main(["evaluate", str(run_dir[0]), "--data-dir", str(folder), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"Error: {folder} holds 2 images, too few for a validation split of 0.2 (2 train / 0 val): score every image "
        "of it with --all-images, add images, or use train/ and val/ folders"]
    assert not (tmp_path / "out").exists()


def test_a_folder_of_one_class_says_evaluates_own_fix_and_the_fix_works(run_dir, tmp_path, capsys):
    """It said "a classifier needs at least 2 class folders", training's rule: --all-images scores such a folder
    (new-user walk)."""
    folder = _image_folder(tmp_path / "one", {"class_0": 5})
    assert main(["evaluate", str(run_dir[0]), "--data-dir", str(folder), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"Error: {folder} has images of one class only ('class_0'): score every image of it with --all-images"]
    assert not (tmp_path / "out").exists()
    assert main(["evaluate", str(run_dir[0]), "--data-dir", str(folder), "--all-images", "--output",
                 str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["num_val"] == 5
    # train/ of one class beside val/: --all-images of the whole folder is refused, so its val/ alone is named
    split = _image_folder(tmp_path / "tv", {"train/class_0": 3, "val/class_0": 2, "val/class_1": 2})
    (split / "train" / "class_1").mkdir()
    assert main(["evaluate", str(run_dir[0]), "--data-dir", str(split), "--output", str(tmp_path / "out2")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"Error: {split / 'train'} has images of one class only ('class_0'): score its val/ alone with --data-dir "
        f"{split / 'val'} --all-images"]
    assert main(["evaluate", str(run_dir[0]), "--data-dir", str(split / "val"), "--all-images", "--output",
                 str(tmp_path / "out2"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["num_val"] == 4


def test_all_images_of_a_folder_inside_the_training_folder_is_refused(run_dir, tmp_path, capsys):
    """`--data-dir DATA/train --all-images` scored every training image (91.67%) without a word, where DATA itself
    was refused; and the refusal named the folder as typed (a link), not the one the model was trained on."""
    data = _image_folder(tmp_path / "data", {"train/cat": 3, "train/dog": 3, "val/cat": 2, "val/dog": 2})
    flat = _image_folder(tmp_path / "flat", {"cat": 3, "dog": 3})
    for trained_on, given in ((data, data / "train"), (data, data / "train" / "cat"), (flat, flat / "dog")):
        named = _named_run(run_dir, tmp_path / "named", trained_on)
        assert main(["evaluate", str(named), "--data-dir", str(given), "--all-images",
                     "--output", str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"Error: {given} holds images best.keras was trained on (it was trained on {trained_on}): --all-images "
            "would score them; name a folder of held-out images"]
        shutil.rmtree(named)
    named = _named_run(run_dir, tmp_path / "named", data)  # its val/ was held out: scored whole
    assert main(["evaluate", str(named), "--data-dir", str(data / "val"), "--all-images",
                 "--output", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["num_val"] == 4
    link = tmp_path / "link"
    link.symlink_to(flat)
    shutil.rmtree(named)
    named = _named_run(run_dir, tmp_path / "named", flat)
    assert main(["evaluate", str(named), "--data-dir", str(link), "--all-images"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"Error: best.keras was trained on {flat}: --all-images would score its training images too; drop it to "
        "score the validation split, or name a folder of held-out images"]


@pytest.mark.parametrize("layout, args, message", [
    ({}, ["--all-images"], "--all-images scores every image of a folder of held-out images: name it with "
                           "--data-dir"),
    ({"train/class_0": 2, "val/class_0": 2}, ["--data-dir", "{data}", "--all-images"],
     "{data} has train/ and val/, and all of val/ is scored already: drop --all-images"),
    ({"train/class_0": 2}, ["--data-dir", "{data}", "--all-images"],
     "{data} has train/ but no val/: name the folder of held-out images (its <class>/ folders) with --data-dir"),
])
def test_all_images_that_cannot_be_done_is_one_line(run_dir, tmp_path, capsys, layout, args, message):
    run, _ = run_dir
    data = _image_folder(tmp_path / "data", layout)
    argv = ["evaluate", str(run / "best.keras"), "--output", str(tmp_path / "out"),
            *[a.format(data=data) for a in args]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"Error: {message.format(data=data)}"]
    assert not (tmp_path / "out").exists()


def test_classes_the_model_was_not_trained_on_say_how_many_more():
    """'--dataset digits' against a 3-class model listed 5 of the 7 unknown digits as if they were all."""
    from keras_resnet.meta import outputs_of

    with pytest.raises(KresError, match=r"^the data has classes m was not trained on \(c, d, e, f, g and 2 more\): "):
        outputs_of(["a", "b"], ["a", *"cdefghi"], "m", "fix")


def test_class_folders_named_in_the_other_unicode_form_are_the_models_classes():
    """A test folder copied from macOS names "trïangle" in NFD ("tri" + U+0308): it was refused as a class the model
    was not trained on, though the names look the same."""
    import unicodedata

    from keras_resnet.meta import outputs_of

    labels = ["circle", "cross", "red square", "tr\u00efangle"]
    nfd = [unicodedata.normalize("NFD", name) for name in labels]
    assert nfd[3] != labels[3]
    assert outputs_of(labels, nfd, "m", "fix") is None  # the model's classes, in its order
    assert outputs_of(labels, [nfd[3], nfd[0]], "m", "fix") == [3, 0]
    assert outputs_of(nfd, ["tr\u00efangle", "cross"], "m", "fix") == [3, 1]


def test_a_logits_models_outputs_are_scored_as_their_softmax():
    """A logits model (classifier_activation=None) was scored with the cross-entropy of its clipped logits."""
    from keras_resnet import evaluate as ev

    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)

    class Model:
        def __init__(self, scores):
            self.meta = SimpleNamespace(extra={"scores": scores} if scores else {})

        def predict(self, images, batch_size):
            return logits[:len(images)]

    batches = tf.data.Dataset.from_tensor_slices((np.zeros((2, 4, 4, 3), np.float32), np.eye(3)[[0, 2]])).batch(2)
    (soft, plain), labels, _ = ev._run([Model("logits"), Model(None)], batches, 2, 2, None)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(soft, expected, rtol=1e-6)
    np.testing.assert_array_equal(plain, logits)  # probabilities already: as they are
    metrics = ev.compute_metrics(soft, labels, ["a", "b", "c"])
    assert metrics.loss == pytest.approx(-np.mean(np.log([expected[0, 0], expected[1, 2]])), rel=1e-6)


@pytest.mark.parametrize("names_file", ["meta.json", "labels.txt", "model_int8.card.json"])
def test_outputs_and_classes_that_differ_name_the_file_of_the_classes(tmp_path, names_file):
    """A .tflite copied without its meta.json takes its names from its labels.txt or card: the error said they were
    its meta.json's."""
    keras_model, tflite = StubPredictor(tmp_path / "best.keras"), StubPredictor(tmp_path / "model_int8.tflite")
    tflite.meta = SimpleNamespace(labels=["cat", "dog"], extra={})
    if names_file == "meta.json":
        (tmp_path / "meta.json").write_text("{}")  # where the meta came from (the stub's meta is given)
    else:
        tflite.names_file = tmp_path / names_file
    assert tflite.labels_from == tmp_path / names_file
    with pytest.raises(KresError) as caught:
        ev._class_order([keras_model, tflite], ["x", "y", "z"])
    assert str(caught.value) == (f"best.keras has 3 outputs for the 2 classes model_int8.tflite's {names_file} names: "
                                 "compare two models of the same classes")


def test_two_models_of_one_file_name_are_named_by_their_paths_where_outputs_and_classes_differ(tmp_path):
    """'best.keras has 10 outputs for the 2 classes best.keras's meta.json names', of two runs' best.keras."""
    a, b = StubPredictor(tmp_path / "run" / "best.keras"), StubPredictor(tmp_path / "rimg" / "best.keras")
    b.meta = SimpleNamespace(labels=["cat", "dog"], extra={})
    with pytest.raises(KresError) as caught:
        ev._class_order([a, b], ["x", "y", "z"])
    assert str(caught.value) == (f"{tmp_path / 'run' / 'best.keras'} has 3 outputs for the 2 classes "
                                 f"{tmp_path / 'rimg' / 'best.keras'}'s meta.json names: compare two models of the "
                                 "same classes")
