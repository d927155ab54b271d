"""keras_resnet.runtime: .keras, SavedModel, float and quantized .tflite and run dirs behind one predict()."""

import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import resnet
from keras_resnet.errors import KresError
from keras_resnet.meta import ModelMeta
from keras_resnet.runtime import SavedModelPredictor, load_predictor, tflite_interpreter

LABELS = ["cat", "dog", "fox", "owl"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A ResNet-18 at 32 px as a run dir (best.keras + meta.json), a SavedModel with a uint8
    ``serving_default`` beside a float signature (as ``kres export`` writes it) and a float32 .tflite."""
    root = tmp_path_factory.mktemp("runtime")
    keras.utils.set_random_seed(0)
    model = resnet(18, num_classes=4, input_shape=(32, 32, 3), stem="cifar", zero_init_residual=False)
    run = root / "run"
    run.mkdir()
    model.save(run / "best.keras")
    ModelMeta.from_model(model, LABELS).save(run)

    export = root / "export"
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda x: model(tf.cast(x, tf.float32), training=False),
                         input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.uint8)])
    archive.add_endpoint("serving_float", lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
    archive.write_out(str(export / "saved_model"), verbose=False)
    (export / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    ModelMeta.from_model(model, LABELS).save(export)

    images = np.random.default_rng(1).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    return {"run": run, "export": export, "model": model, "images": images,
            "expected": model.predict(images, verbose=0)}


def _tiny_tflite(path, *, batch=None, int_io=None, seed=0):
    """A small conv net converted to .tflite: float32, or full-integer with ``int_io`` (tf.uint8 / tf.int8) I/O."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3), batch_size=batch)
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int_io is not None:
        rng = np.random.default_rng(seed)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)]
                                                    for _ in range(16))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = int_io
        converter.inference_output_type = int_io
    path.write_bytes(converter.convert())
    return model


def test_run_dir_loads_best_keras_with_its_meta(exported):
    predictor = load_predictor(exported["run"])
    assert predictor.kind == "keras"
    assert predictor.path.name == "best.keras"
    assert predictor.input_shape == (32, 32, 3)
    assert predictor.labels == LABELS
    assert predictor.meta.depth == 18 and predictor.meta.stem == "cifar"


def test_run_dir_falls_back_to_last_keras(exported, tmp_path):
    shutil.copy(exported["run"] / "best.keras", tmp_path / "last.keras")
    predictor = load_predictor(tmp_path)
    assert predictor.path.name == "last.keras"
    assert predictor.labels == ["class_0", "class_1", "class_2", "class_3"]  # no meta.json: read off the model


def test_keras_savedmodel_and_float_tflite_agree_within_1e4(exported):
    images, expected = exported["images"], exported["expected"]
    assert expected.shape == (5, 4)
    for path, kind in [(exported["run"] / "best.keras", "keras"), (exported["export"] / "saved_model", "savedmodel"),
                       (exported["export"] / "model.tflite", "tflite")]:
        predictor = load_predictor(path)
        assert predictor.kind == kind
        assert predictor.input_shape == (32, 32, 3)
        out = predictor.predict(images, batch_size=2)  # batches of 2, 2, 1: the dynamic tflite input is resized
        assert out.dtype == np.float32 and out.shape == (5, 4)
        np.testing.assert_allclose(out, expected, atol=1e-4, err_msg=kind)
    assert load_predictor(exported["export"] / "model.tflite").labels == LABELS  # meta.json beside the export


def test_savedmodel_prefers_float_signature_and_rounds_for_uint8(exported):
    predictor = load_predictor(exported["export"] / "saved_model")
    assert predictor.input_dtype == np.float32  # float signature chosen: resized pixels are not rounded
    uint8_fn = predictor.loaded.signatures["serving_default"]
    (name, spec), = uint8_fn.structured_input_signature[1].items()
    assert spec.dtype == tf.uint8
    uint8 = SavedModelPredictor(predictor.path, uint8_fn, name, spec, next(iter(uint8_fn.structured_outputs)), None)
    integer_pixels = np.round(exported["images"])
    np.testing.assert_allclose(uint8.predict(integer_pixels), exported["model"].predict(integer_pixels, verbose=0),
                               atol=1e-4)
    np.testing.assert_allclose(uint8.predict(integer_pixels.astype(np.uint8)), uint8.predict(integer_pixels),
                               atol=0)


@pytest.mark.parametrize("io_type", [tf.uint8, tf.int8])
def test_quantized_tflite_quantizes_input_and_dequantizes_output(tmp_path, io_type):
    path = tmp_path / "q.tflite"
    model = _tiny_tflite(path, batch=1, int_io=io_type)
    predictor = load_predictor(path)
    np_type = io_type.as_numpy_dtype
    assert predictor.input_dtype == np_type and predictor.quantized_input
    assert predictor.static_batch == 1
    scale, zero = predictor.input_scale, predictor.input_zero_point
    assert scale > 0
    pixels = np.array([0.0, 1.0, 127.4, 254.6, 255.0], np.float32)
    info = np.iinfo(np_type)
    np.testing.assert_array_equal(predictor.quantize(pixels),
                                  np.clip(np.round(pixels / scale + zero), info.min, info.max).astype(np_type))
    out_scale, out_zero = predictor.output_scale, predictor.output_zero_point
    np.testing.assert_allclose(predictor.dequantize(np.array([out_zero, out_zero + 10], np_type)),
                               [0.0, 10 * out_scale], rtol=1e-6)

    images = np.random.default_rng(3).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    out = predictor.predict(images, batch_size=4)  # static batch 1: run image by image
    assert out.dtype == np.float32 and out.shape == (5, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=0.02)
    np.testing.assert_allclose(out, model.predict(images, verbose=0), atol=0.02)


def test_static_batch_larger_than_the_rest_is_padded(tmp_path):
    path = tmp_path / "b3.tflite"
    model = _tiny_tflite(path, batch=3)
    predictor = load_predictor(path)
    assert predictor.static_batch == 3
    images = np.random.default_rng(4).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict(images, batch_size=8), model.predict(images, verbose=0), atol=1e-5)


def test_tflite_interpreter_takes_bytes(exported):
    interpreter = tflite_interpreter((exported["export"] / "model.tflite").read_bytes(), num_threads=1)
    assert list(interpreter.get_input_details()[0]["shape"][1:]) == [32, 32, 3]


def test_making_an_interpreter_keeps_litert_s_delegate_line_off_the_terminal(exported):
    """LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." once a process, whatever the log
    level (ai-edge-litert 2.x); kres's interpreters catch it. Separate processes: the line comes once a process."""
    model, env = str(exported["export"] / "model.tflite"), {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    raw = subprocess.run([sys.executable, "-c", "import sys; from ai_edge_litert.interpreter import Interpreter; "
                          "Interpreter(model_path=sys.argv[1]).allocate_tensors()", model],
                         capture_output=True, text=True, timeout=120, env=env)
    assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in raw.stderr.splitlines(), raw.stderr
    ours = subprocess.run([sys.executable, "-c", "import sys; from keras_resnet.runtime import tflite_interpreter; "
                           "tflite_interpreter(sys.argv[1]); print('made', file=sys.stderr)", model],
                          capture_output=True, text=True, timeout=300, env=env)
    assert ours.returncode == 0 and ours.stderr.splitlines()[-1] == "made", ours.stderr
    assert "XNNPACK" not in ours.stderr


def test_input_size_mismatch_is_a_clear_error(exported):
    predictor = load_predictor(exported["export"] / "model.tflite")
    with pytest.raises(KresError, match=r"takes 32x32x3 images but got 40x40x3.*--image-size 32"):
        predictor.predict(np.zeros((1, 40, 40, 3), np.float32))


@pytest.mark.parametrize("name, content, message", [
    ("x.tflite", "not a model\n", "not a valid TFLite model"),
    ("x.keras", "not a model\n", r"not a \.keras model"),
    ("x.txt", "hello\n", "not a model kres can run"),
])
def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(KresError, match=message):
        load_predictor(tmp_path / name)


def test_zip_that_is_not_a_keras_model(tmp_path):
    shutil.make_archive(str(tmp_path / "z"), "zip", root_dir=tmp_path, base_dir=".")
    (tmp_path / "z.zip").rename(tmp_path / "z.keras")
    with pytest.raises(KresError, match=r"not a loadable \.keras model"):
        load_predictor(tmp_path / "z.keras")


def test_a_folder_of_tflite_models_alone_names_them(tmp_path):
    """An export folder of .tflite models alone "holds no model (best.keras, ...): pass a run or export folder"."""
    (tmp_path / "model_int8_edgetpu.tflite").write_bytes(b"")
    with pytest.raises(KresError) as raised:
        load_predictor(tmp_path)
    assert str(raised.value) == (f"{tmp_path} holds no Keras model or SavedModel, only the TFLite model "
                                 f"model_int8_edgetpu.tflite: pass that file, {tmp_path / 'model_int8_edgetpu.tflite'}")
    (tmp_path / "model_int8.tflite").write_bytes(b"")
    (tmp_path / "model_float32.tflite").write_bytes(b"")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    with pytest.raises(KresError) as raised:
        load_predictor(tmp_path)
    assert str(raised.value) == (f"{tmp_path} holds no Keras model or SavedModel, only TFLite models "
                                 "(model_float32.tflite, model_int8.tflite, model_int8_edgetpu.tflite): pass one of "
                                 f"them, e.g. {tmp_path / 'model_float32.tflite'}")


def test_run_dir_without_model_and_missing_path(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(KresError, match="holds no model"):
        load_predictor(tmp_path)
    with pytest.raises(KresError, match="does not exist"):
        load_predictor(tmp_path / "missing.keras")
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(KresError, match="not a loadable SavedModel"):
        load_predictor(tmp_path / "sm")


def test_an_edge_tpu_model_is_named_so_with_the_model_to_pass_instead(tmp_path, monkeypatch):
    """`kres predict model_int8_edgetpu.tflite` in the device folder deploy/README.md points kres at said "not a valid
    TFLite model ... re-export it with 'kres export --tflite'" (a review, 2026-12-06; classify.py names the op)."""
    import ai_edge_litert.interpreter as litert

    from keras_resnet.errors import KresError

    class EdgeTpuOnly:  # what LiteRT raises without the Edge TPU delegate (its message, 2.x)
        def __init__(self, **_kwargs):
            raise RuntimeError("Encountered unresolved custom op: edgetpu-custom-op.\nSee instructions: "
                               "https://www.tensorflow.org/lite/guide/ops_custom Node number 0 (edgetpu-custom-op) "
                               "failed to prepare.")

    monkeypatch.setattr(litert, "Interpreter", EdgeTpuOnly)
    compiled = tmp_path / "model_int8_edgetpu.tflite"
    with pytest.raises(KresError) as err:
        tflite_interpreter(compiled)
    assert str(err.value) == (f"{compiled} runs on an Edge TPU only (its edgetpu-custom-op), which kres does not "
                              "drive: pass model_int8.tflite, the model it was compiled from, to run it on the CPU, or "
                              "run this one on the device with deploy/classify.py")
