"""Where int8 loses accuracy: the quantization debugger finds a layer whose activation range one outlier channel
blew up, keeping it in float restores top-1, the CSV covers every conv and dense layer of a ResNet, and
calibration images in the wrong scale or channel order get a one-line warning."""

import csv
import dataclasses
import json
import math

import numpy as np
import pytest

from keras_resnet import export as ex
from keras_resnet import quant_debug as qd
from keras_resnet.errors import KresError
from keras_resnet.meta import ModelMeta
from keras_resnet.quantize import inspect_tflite

SIZE = 32
CLASSES = 4
OUTLIER_GAIN = 300.0  # int8 loses 44 points here; at 200 only 4, at 1000 conv3_conv drowns too


def _bad_images(seed: int = 0):
    """Four classes whose mean colours differ by little against the noise: small activations carry the answer."""
    rng = np.random.default_rng(seed)
    palette = rng.uniform(110, 140, (CLASSES, 3))
    labels = rng.integers(0, CLASSES, 400)
    images = np.clip(palette[labels][:, None, None, :] + rng.normal(0, 40, (400, SIZE, SIZE, 3)), 0, 255)
    return images.astype(np.float32), labels


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    """A small trained CNN, then one channel of conv2_conv scaled up 300x and conv3_conv's weights on it scaled
    down as much: the float model computes the same function, but conv2_conv's int8 range is 300x too wide."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    images, labels = _bad_images()
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.Rescaling(1 / 255.0, -0.5, name="preprocess")(inputs)
    x = layers.Conv2D(8, 3, strides=2, activation="relu", name="conv1_conv")(x)
    x = layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2_conv")(x)
    x = layers.Conv2D(16, 3, activation="relu", name="conv3_conv")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(CLASSES, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images[:300], labels[:300], epochs=30, batch_size=32, verbose=0)
    kernel, bias = model.get_layer("conv2_conv").get_weights()
    kernel[..., 0] *= OUTLIER_GAIN
    bias[0] *= OUTLIER_GAIN
    model.get_layer("conv2_conv").set_weights([kernel, bias])
    kernel3, bias3 = model.get_layer("conv3_conv").get_weights()
    kernel3[:, :, 0, :] /= OUTLIER_GAIN  # ReLU commutes with a positive scale: the float outputs do not change
    model.get_layer("conv3_conv").set_weights([kernel3, bias3])

    run = tmp_path_factory.mktemp("bad_run")
    model.save(run / "best.keras")
    stats = qd.channel_stats(images[:300])
    ModelMeta(depth=18, variant="v1", stem="cifar", input_shape=[SIZE, SIZE, 3], normalization="custom",
              mean=[127.5] * 3, std=[255.0] * 3, labels=[f"c{i}" for i in range(CLASSES)],
              extra={qd.STATS_KEY: stats}).save(run)
    return run


def _export_bad(bad_run, out, calibration_scale=1.0, **flags):
    images, labels = _bad_images()
    cfg = ex.ExportConfig(source=str(bad_run), output=str(out), tflite=True, quantize="int8", **flags)
    messages = []
    result = ex.export(cfg, messages.append, calibration=lambda: (x[None] * calibration_scale for x in images[:64]),
                       heldout=(images[300:], labels[300:]))
    return result, messages


def test_outlier_layer_is_the_worst_and_keeping_it_in_float_restores_top1(bad_run, tmp_path):
    result, messages = _export_bad(bad_run, tmp_path, debug=True, float_layers=("conv2_conv",))
    report = result.report
    float_top1 = report["keras_top1"]
    int8_top1 = report["artifacts"]["model_int8.tflite"]["agreement"]["top1"]
    section = report["quant_debug"]
    mixed_top1 = section["comparison"][qd.MIXED_NAME]["top1"]
    print(result.text)
    assert float_top1 >= 0.9
    assert float_top1 - int8_top1 >= 0.10  # full int8 loses at least 10 points
    assert section["worst"][0]["layer"] == "conv2_conv"
    assert abs(mixed_top1 - float_top1) <= 0.01  # within 1 point of float
    assert section["comparison"]["int8"]["top1"] == int8_top1
    assert section["comparison"]["float32"]["top1"] == float_top1
    assert all(section["comparison"][n]["latency_ms"] > 0 for n in ("float32", "int8", qd.MIXED_NAME))
    # the right scale: no calibration warning, and the recorded statistics were really compared
    assert report["warnings"] == [] and not any(m.startswith("warning") for m in messages)
    rows = list(csv.DictReader((tmp_path / qd.CSV_NAME).open()))
    assert list(rows[0]) == list(qd.CSV_FIELDS)
    worst_row = min((r for r in rows if r["layer"] != "predictions"), key=lambda r: float(r["sqnr_db"]))
    assert worst_row["layer"] == "conv2_conv" and worst_row["op"] == "CONV_2D"
    assert (tmp_path / qd.PNG_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mixed = tmp_path / f"model_{qd.MIXED_NAME}.tflite"
    assert str(mixed) in map(str, result.files)
    cfg = ex.validate(ex.ExportConfig(source=str(bad_run), output=str(tmp_path), tflite=True, quantize="int8",
                                      debug=True, float_layers=("conv2_conv",)))
    written = sorted(path.name for path in tmp_path.iterdir())
    assert [name for name in written if ex.may_write(cfg, name)] == written  # the check before converting expects
    card = json.loads((tmp_path / f"model_{qd.MIXED_NAME}.card.json").read_text())  # as every .tflite has
    assert (card["model"], card["quantization"], card["input"]["dtype"]) == (mixed.name, qd.MIXED_NAME, "uint8")
    assert card["accuracy"]["top1"] == result.report["artifacts"][mixed.name]["agreement"]["top1"]
    assert f"model_{qd.MIXED_NAME}.card.json" in result.report["files"]
    # the mixed model is a drop-in for model_int8.tflite: uint8 in and out, per-tensor dense weights
    mixed_info = inspect_tflite(mixed.read_bytes())
    int8_info = inspect_tflite((tmp_path / "model_int8.tflite").read_bytes())
    assert [t.dtype for t in mixed_info.inputs + mixed_info.outputs] == ["uint8", "uint8"]
    assert [t.dtype for t in int8_info.inputs + int8_info.outputs] == ["uint8", "uint8"]
    assert mixed_info.weight_quantization()["FULLY_CONNECTED"] == "per-tensor"
    assert int8_info.weight_quantization()["FULLY_CONNECTED"] == "per-tensor"
    assert any("conv2_conv" in t for t in section["float_tensors"])
    assert any("conv3_conv" in t for t in section["float_tensors"])  # its reader, or the range comes back
    assert "int8_mixed: top-1" in result.text and "conv2_conv (CONV_2D)" in result.text


def test_mixed_model_follows_the_exports_io_dtype_and_per_channel_dense(bad_run, tmp_path):
    result, _ = _export_bad(bad_run, tmp_path, float_layers=("conv2_conv",), io_dtype="int8", per_channel_dense=True)
    for name in ("model_int8.tflite", f"model_{qd.MIXED_NAME}.tflite"):
        info = inspect_tflite((tmp_path / name).read_bytes())
        assert [t.dtype for t in info.inputs + info.outputs] == ["int8", "int8"], name
        assert info.weight_quantization()["FULLY_CONNECTED"] == "per-channel", name
    section = result.report["quant_debug"]
    assert abs(section["comparison"][qd.MIXED_NAME]["top1"] - result.report["keras_top1"]) <= 0.01


def test_calibration_in_0_1_gets_one_warning_line(bad_run, tmp_path):
    result, messages = _export_bad(bad_run, tmp_path, calibration_scale=1 / 255)
    warnings = [m for m in messages if m.startswith("warning:")]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "0-1 floats where the model takes 0-255 pixels" in warnings[0]
    assert result.report["warnings"] == [warnings[0].removeprefix("warning: ")]
    assert f"{warnings[0]}\n" in result.text


def test_calibration_check_names_the_cause_on_the_run_pipeline():
    from keras_resnet.data import DataConfig, calibration_images

    data = DataConfig(dataset="synthetic", synthetic_classes=3, synthetic_size=24, image_size=SIZE, seed=5)
    recorded = qd.training_stats(data)
    images = np.concatenate(list(calibration_images(data, 24)))
    assert qd.calibration_warning(qd.channel_stats(images), recorded) is None
    assert "0-1 floats" in qd.calibration_warning(qd.channel_stats(images / 255), recorded)
    assert "BGR images" in qd.calibration_warning(qd.channel_stats(images[..., ::-1]), recorded)
    assert "255 times too large" in qd.calibration_warning(qd.channel_stats(images * 255), recorded)


def test_a_few_calibration_images_are_not_called_other_images():
    """5-10 of the run's own training images (a few colour classes) were told they did not look like the training
    data; the margins widen for small samples, and a real mistake is still caught."""
    recorded = {"mean": [100.0] * 3, "std": [60.0] * 3}
    rng = np.random.default_rng(0)
    few = rng.normal(130.0, 60.0, (5, 8, 8, 3))  # half a std off: a small sample's chance
    assert qd.channel_stats(few)["images"] == 5
    assert qd.calibration_warning(qd.channel_stats(few), recorded) is None
    assert "other images" in qd.calibration_warning(qd.channel_stats(np.concatenate([few] * 20)), recorded)
    assert "0-1 floats" in qd.calibration_warning(qd.channel_stats(few / 255), recorded)


def test_resnet_debug_csv_has_every_conv_and_dense_layer(tmp_path, capfd):
    """Also: the debugger's conversions keep the converter's output off the terminal (file descriptors
    included), as the export's own do: it printed "fully_quantize: 0, ..." for each."""
    import keras

    from keras_resnet.model import resnet
    from kres.main import main

    run = tmp_path / "run"
    run.mkdir()
    model = resnet(18, num_classes=3, input_shape=(SIZE, SIZE, 3))
    model.save(run / "best.keras")
    ModelMeta.from_model(model, [f"class_{i}" for i in range(3)]).save(run)  # the synthetic data's classes
    data = {"dataset": "synthetic", "synthetic_classes": 3, "synthetic_size": 8, "image_size": SIZE, "seed": 5,
            "batch_size": 4}
    (run / "config.json").write_text(json.dumps({"data": data, "train": {}}))
    code = main(["export", str(run), "-o", str(tmp_path / "out"), "--tflite", "--quantize", "int8", "--debug",
                 "--calibration-steps", "8"])
    out, err = capfd.readouterr()
    assert code == 0, err
    noise = ("... ", "E0000")  # progress lines, and TensorFlow's first look for a GPU (the CLI filters it at startup)
    assert [line for line in err.splitlines() if not line.startswith(noise) or "fully_quantize" in line] == []
    assert "fully_quantize" in (tmp_path / "out" / "converter.log").read_text()
    rows = list(csv.DictReader((tmp_path / "out" / qd.CSV_NAME).open()))
    weighted = {layer.name for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))}
    assert len(weighted) == 21  # 20 convs (17 + 3 projection shortcuts) and the classifier
    assert weighted <= {row["layer"] for row in rows}
    report = json.loads((tmp_path / "out" / "export_report.json").read_text())
    assert len(report["quant_debug"]["worst"]) == qd.WORST_LISTED
    assert report["quant_debug"]["seconds"] < 120
    assert "worst layers by median channel SQNR" in out


@pytest.mark.parametrize("flags, message", [
    (["--edgetpu", "--float-layers", "conv1_conv"], "cannot be used with --edgetpu: the Edge TPU needs every op"),
    (["--tflite", "--quantize", "float16", "--debug"], "--debug works on the post-training int8 model"),
    (["--tflite", "--quantize", "int8", "--float-layers", "a", "--float-worst", "2"], "not both"),
    # each exited 0 without the mixed model asked for
    (["--tflite", "--quantize", "int8", "--float-layers", ""], "Error: Invalid value for '--float-layers': '' names "
     "no layer: give Keras layer names, such as conv2_conv (--debug reports the worst) (see 'kres export --help')"),
    (["--tflite", "--quantize", "int8", "--float-layers", ",,,"], "'--float-layers': ',,,' names no layer: "),
    (["--tflite", "--quantize", "int8", "--float-worst", "0"], "Error: Invalid value for '--float-worst': 0 is not "
     "in the range x>=1. (see 'kres export --help')"),
])
def test_option_errors_are_one_line(tmp_path, capsys, flags, message):
    from kres.main import main

    code = main(["export", str(tmp_path), "-o", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("Error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_unknown_float_layer_fails_before_converting(bad_run, tmp_path):
    with pytest.raises(KresError, match="no layer named conv9_conv in the model: use Keras layer names"):
        _export_bad(bad_run, tmp_path, float_layers=("conv2_conv", "conv9_conv"))
    assert not (tmp_path / "model_int8.tflite").exists()


def test_unknown_float_layer_is_one_line():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="predictions")])
    with pytest.raises(KresError, match="no layer named conv9_conv in the model"):
        qd.check_float_layers(model, ["predictions", "conv9_conv"])


def test_tflite_names_map_to_keras_layers():
    order = {name: i for i, name in enumerate(["preprocess", "conv1_conv", "conv1_bn", "conv1_relu",
                                                "conv2_block1_add", "conv2_block1_out", "predictions"])}
    weighted = {"conv1_conv", "predictions"}
    fused = "resnet18_1/conv1_relu_1/Relu;resnet18_1/conv1_bn_1/FusedBatchNormV3;resnet18_1/conv1_conv_1/convolution"
    assert qd.keras_layer_of(fused, order, weighted) == "conv1_conv"
    assert qd.keras_layer_of("m/conv2_block1_out_1/Relu;m/conv2_block1_add_1/Add", order, weighted) == \
        "conv2_block1_out"
    assert qd.keras_layer_of("Identity", order, weighted) is None


# --- layers TFLite fuses, and the mixed model's input and dense weights -------------------------------------------

def _fused_model(activation: str | None = "softmax"):
    """conv -> batch norm -> ReLU, a residual add -> ReLU, dropout and a classifier, with ResNet's layer names:
    the converter folds conv1_bn and conv1_relu into conv1_conv's op and conv2_block1_add into conv2_block1_out's,
    and drops the dropout."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3), name="image")
    x = layers.Rescaling(1 / 255.0, -0.5, name="preprocess")(inputs)
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv1_conv")(x)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.ReLU(name="conv1_relu")(x)
    y = layers.Conv2D(8, 3, padding="same", name="conv2_block1_1_conv")(x)
    y = layers.Add(name="conv2_block1_add")([x, y])
    y = layers.ReLU(name="conv2_block1_out")(y)
    y = layers.GlobalAveragePooling2D(name="avg_pool")(y)
    y = layers.Dropout(0.1, name="top_dropout")(y)
    return keras.Model(inputs, layers.Dense(3, activation=activation, name="predictions")(y))


def _debug_fused(activation: str | None = "softmax", **settings):
    images = np.random.default_rng(2).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    return qd.run_debugger(_fused_model(activation), lambda: (x[None] for x in images), images[:2], **settings)


@pytest.fixture(scope="module")
def fused_run():
    return _debug_fused()


@pytest.mark.parametrize("layers, message", [
    (["conv1_bn"], "--float-layers: conv1_bn is fused into conv1_conv in TFLite: name conv1_conv instead (the "
                   "layer column of quant_debug.csv lists the names that work)"),
    (["conv1_conv", "conv1_relu", "conv2_block1_add"],
     "--float-layers: conv1_relu is fused into conv1_conv; conv2_block1_add is fused into conv2_block1_out in "
     "TFLite: name conv1_conv, conv2_block1_out instead"),
    (["top_dropout"], "--float-layers: top_dropout is fused into avg_pool in TFLite: name avg_pool instead"),
])
def test_float_layer_fused_in_tflite_is_refused_with_the_layer_to_name(fused_run, layers, message):
    """It matched no tensor, and the "mixed" model came out plain int8."""
    with pytest.raises(KresError) as caught:
        qd.mixed_model(fused_run, layers)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize("layers, message", [
    (["conv1_bn"], "--float-layers: conv1_bn is fused into conv1_conv in TFLite: name conv1_conv instead (the "
                   "layer column of quant_debug.csv lists the names that work)"),
    (["conv1_conv", "conv1_relu", "top_dropout"],
     "--float-layers: conv1_relu is fused into conv1_conv; top_dropout is fused into avg_pool in TFLite: name "
     "conv1_conv, avg_pool instead"),
])
def test_a_fused_float_layer_the_keras_graph_shows_is_refused_before_any_conversion(layers, message):
    """It was refused after the whole export: the SavedModel, every .tflite, QAT and the debugger."""
    with pytest.raises(KresError) as caught:
        qd.check_float_layers(_fused_model(), layers)
    assert str(caught.value).startswith(message)
    qd.check_float_layers(_fused_model(), ["conv1_conv", "conv2_block1_out", "conv2_block1_add"])  # TFLite tells


def test_export_refuses_a_fused_float_layer_before_writing_debug_files(tmp_path):
    model = _fused_model()
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    ModelMeta(depth=18, variant="v1", stem="cifar", input_shape=[16, 16, 3], normalization="custom",
              mean=[127.5] * 3, std=[255.0] * 3, labels=["a", "b", "c"]).save(run)
    images = np.random.default_rng(3).uniform(0, 255, (6, 16, 16, 3)).astype(np.float32)
    cfg = ex.ExportConfig(source=str(run), output=str(tmp_path / "out"), tflite=True, quantize="int8", debug=True,
                          float_layers=("conv1_bn",))
    with pytest.raises(KresError, match=r"^--float-layers: conv1_bn is fused into conv1_conv in TFLite: name "
                                        r"conv1_conv instead"):
        ex.export(cfg, calibration=lambda: (x[None] for x in images[:4]), heldout=(images, np.arange(6) % 3))
    assert not (tmp_path / "out" / qd.CSV_NAME).exists()
    assert not (tmp_path / "out" / f"model_{qd.MIXED_NAME}.tflite").exists()


def test_float_layer_named_as_the_fused_op_computes_in_float(fused_run):
    content, names = qd.mixed_model(fused_run, ["conv1_conv", "conv2_block1_out"])
    assert any("conv1_conv" in n for n in names) and any("conv2_block1_add" in n for n in names)
    float_ops = {op.name for op in inspect_tflite(content).operators if op.outputs[0].dtype == "float32"}
    assert {"CONV_2D", "ADD"} <= float_ops


def test_mixed_model_takes_the_int8_exports_io_type_and_dense_weights(fused_run):
    """It came out with float32 input and output and per-channel dense weights whatever the export asked for."""
    default = inspect_tflite(qd.mixed_model(fused_run, ["conv2_block1_1_conv"])[0])
    assert [t.dtype for t in default.inputs + default.outputs] == ["uint8", "uint8"]
    assert default.weight_quantization()["FULLY_CONNECTED"] == "per-tensor"
    asked = inspect_tflite(qd.mixed_model(_debug_fused(io_dtype="int8", per_channel_dense=True),
                                          ["conv2_block1_1_conv"])[0])
    assert [t.dtype for t in asked.inputs + asked.outputs] == ["int8", "int8"]
    assert asked.weight_quantization() == {"DEPTHWISE_CONV_2D": "per-channel", "CONV_2D": "per-channel",
                                           "FULLY_CONNECTED": "per-channel"}


def test_the_mixed_model_names_its_output_as_the_exported_files_do(fused_run):
    """model_int8_mixed.tflite had no signature at all (get_signature_list() was {}), where every other .tflite's
    serving_default names its output as the SavedModel does: an app reading outputs by name could not run it."""
    from signatures import signature_outputs

    image = np.random.default_rng(4).uniform(0, 255, (16, 16, 3))
    for run, name in ((fused_run, "probabilities"), (_debug_fused(activation=None), "logits")):
        outputs = signature_outputs(qd.mixed_model(run, ["conv2_block1_1_conv"])[0], image)
        assert list(outputs) == [name] and outputs[name].shape == (1, 3)
        assert outputs[name].dtype == np.uint8  # the int8 export's output type, as before


def test_a_pad_row_gives_no_figures_of_its_own_and_a_stray_value_is_no_error():
    """pool1_pad's row said rmse/scale 378,977 and a whole-tensor SQNR of 0 dB (its plot line fell to 0), though an
    int8 PAD copies its input exactly: the debugger's float reference of the PAD held one stray value (5e27, or NaN,
    or 1,600) in its first element."""
    from types import SimpleNamespace

    fields = "op_name,tensor_name,tensor_idx,scale,zero_point,signal_power,noise_power,channel_sqnr_db"
    dump = "\n".join([fields, "CONV_2D,m/conv1_conv_1/convolution,3,0.03,-128,0.55,4.6e-05,40.5",
                       "PAD,m/pool1_pad_1/Pad,4,0.03,-128,0.55,1.3e10,151.7",
                       "MAX_POOL_2D,m/pool1_pool_1/MaxPool2d,5,0.03,-128,0.6,4e-17,151.7"]) + "\n"
    debugger = SimpleNamespace(layer_statistics_dump=lambda out: out.write(dump))
    model = SimpleNamespace(layers=[SimpleNamespace(name=n) for n in ("conv1_conv", "pool1_pad", "pool1_pool")])
    conv, pad, pool = qd._rows(debugger, model)
    assert (pad.layer, pad.op, pad.sqnr_db) == ("pool1_pad", "PAD", 151.7)
    assert math.isnan(pad.rmse_over_scale) and math.isnan(pad.tensor_sqnr_db)
    assert conv.rmse_over_scale == pytest.approx(math.sqrt(4.6e-05) / 0.03)
    assert conv.tensor_sqnr_db == pytest.approx(10 * math.log10(0.55 / 4.6e-05))
    assert pool.rmse_over_scale == pytest.approx(math.sqrt(4e-17) / 0.03)
    low = dataclasses.replace(pad, sqnr_db=3.0)  # ranked by its SQNR, a PAD would be "worst": it adds no error
    assert [r.layer for r in qd.DebugRun([conv, low, pool, pool], None, 8).worst(skip_output=False)] == [
        "conv1_conv", "pool1_pool"]


@pytest.fixture(scope="module")
def quiet_run():
    """A conv whose output is about zero (weights 1e-4 of their initial values) added to a loud one: the converter
    gives it the sum's scale, where int8 rounds all of it to zero, as a ResNet block's last conv with its BN gamma
    still near zero (zero_init_residual, a short run) and an identity shortcut."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.Rescaling(1 / 255.0, -0.5, name="preprocess")(inputs)
    loud = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv1_conv")(x)
    quiet = layers.Conv2D(8, 3, padding="same", name="quiet_conv")(loud)
    x = layers.Add(name="add")([loud, quiet])
    x = layers.Conv2D(8, 3, activation="relu", name="conv3_conv")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, layers.Dense(CLASSES, activation="softmax", name="predictions")(x))
    kernel, bias = model.get_layer("quiet_conv").get_weights()
    model.get_layer("quiet_conv").set_weights([kernel * 1e-4, bias])
    images = np.random.default_rng(0).uniform(0, 255, (8, SIZE, SIZE, 3)).astype(np.float32)
    return qd.run_debugger(model, lambda: (x[None] for x in images), images)


def test_a_conv_whose_output_is_about_zero_is_not_ranked_worst(quiet_run):
    """Such convs topped the worst layers at 0.0 dB with rmse/scale 0.08 (below plain rounding), and --float-worst
    kept them in float: the file grew from 10.8 to 19.2 MiB and top-1 stayed the same."""
    assert "quiet_conv" not in [row.layer for row in quiet_run.worst(len(quiet_run.rows))]
    quiet = next(row for row in quiet_run.rows if row.layer == "quiet_conv")
    assert quiet.sqnr_db < 1 and quiet.rmse_over_scale < 0.29 and quiet.signal_over_scale < qd.NEAR_ZERO_STEPS
    assert quiet_run.near_zero() == ["quiet_conv"]
    loud = next(row for row in quiet_run.rows if row.layer == "conv1_conv")
    assert loud.signal_over_scale > 10 and not loud.near_zero


def test_the_report_names_the_layers_left_unranked_and_why():
    section = {"images": 8, "image_source": "held-out", "seconds": 1.0, "near_zero": ["conv4_block2_2_conv"],
               "worst": [{"layer": "conv1_conv", "op": "CONV_2D", "sqnr_db": 30.0, "rmse_over_scale": 0.3}]}
    assert qd.report_lines({"quant_debug": section})[1:] == [
        "  conv1_conv (CONV_2D): 30.0 dB, rmse/scale 0.30",
        "  not ranked: conv4_block2_2_conv (1 layer whose float output is under half an int8 step, e.g. a block's "
        "last conv with its BN gamma near zero: about 0 dB, yet an error below rounding)"]
