"""TFLite conversion: float32 parity with Keras, full-integer int8 with builtin ops only, uint8 I/O, batch 1."""

from pathlib import Path

import numpy as np
import pytest

from keras_resnet.errors import KresError
from keras_resnet.model import resnet
from keras_resnet.quantize import convert, fuse_input_ops, inspect_tflite, require_builtin_only
from keras_resnet.runtime import TFLitePredictor, tflite_interpreter

SIZE = 32


@pytest.fixture(scope="module")
def model():
    # zero_init_residual=False: an all-zero folded kernel has no int8 scale and makes the converter complain
    return resnet(18, num_classes=5, input_shape=(SIZE, SIZE, 3), zero_init_residual=False)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (6, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def float32_tflite(model):
    return convert(model, "float32")


@pytest.fixture(scope="module")
def int8_tflite(model, images):
    return convert(model, "int8", lambda: (img[None] for img in images[:4]))


def run(content: bytes, images: np.ndarray) -> np.ndarray:
    from pathlib import Path

    return TFLitePredictor(Path("model.tflite"), tflite_interpreter(content), None).predict(images)


def test_float32_tflite_matches_keras_within_1e4(model, float32_tflite, images):
    expected = model.predict(images, verbose=0)
    got = run(float32_tflite, images)
    assert got.shape == (6, 5)
    assert np.max(np.abs(got - expected)) < 1e-4


def test_the_tflite_signature_names_its_output_as_the_savedmodel_does(float32_tflite, int8_tflite, images):
    """An app reading outputs by name (LiteRT's signature runner) got "output_0" from every .tflite, where the
    SavedModel of the same export says "probabilities"."""
    from signatures import signature_outputs

    image = np.round(images[0])
    for content in (float32_tflite, int8_tflite):
        outputs = signature_outputs(content, image)
        assert list(outputs) == ["probabilities"]
        assert outputs["probabilities"].shape == (1, 5)
    by_name = signature_outputs(float32_tflite, image)["probabilities"]
    np.testing.assert_allclose(by_name, run(float32_tflite, image[None]), atol=1e-6)  # as classify.py reads it


def test_a_feature_model_converts_with_its_own_output_names(images):
    """Naming a classifier's output (above) nested a feature model's C2-C5 under "probabilities", which the converter
    refused with a multi-line ValueError (it converted before)."""
    from signatures import signature_outputs

    from keras_resnet.model import feature_model

    features = feature_model(resnet(18, num_classes=5, input_shape=(SIZE, SIZE, 3)))
    outputs = signature_outputs(convert(features, "float32"), images[0])
    assert sorted(outputs) == ["C2", "C3", "C4", "C5"]
    want = features(np.round(images[:1]))
    for name, value in outputs.items():
        assert value.shape == tuple(want[name].shape), name
        np.testing.assert_allclose(value, want[name], rtol=0, atol=1e-4 * float(np.abs(want[name]).max()))


def test_float32_tflite_is_static_batch_1_float_io(float32_tflite):
    info = inspect_tflite(float32_tflite)
    assert info.inputs[0].shape == [1, SIZE, SIZE, 3] and info.inputs[0].dtype == "float32"
    assert info.ops["CONV_2D"] == 20 and info.ops["FULLY_CONNECTED"] == 1
    assert info.subgraphs == 1 and info.custom_ops == []


def test_int8_is_builtin_int8_with_uint8_io_and_batch_1(int8_tflite, float32_tflite):
    info = inspect_tflite(int8_tflite)
    require_builtin_only(info)
    assert info.custom_ops == [] and info.flex_ops == []
    (inp,), (out,) = info.inputs, info.outputs
    assert (inp.dtype, inp.shape, inp.shape_signature) == ("uint8", [1, SIZE, SIZE, 3], [1, SIZE, SIZE, 3])
    assert (out.dtype, out.shape) == ("uint8", [1, 5])
    # raw 0-255 pixels go straight in: the calibrated input range is 0..255, so scale ~1 and zero point 0
    assert inp.zero_point == [0] and abs(inp.scale[0] - 1.0) < 0.01
    assert out.scale == [pytest.approx(1 / 256)] and out.zero_point == [0]
    activations = {t.dtype for t in info.tensors if not t.constant}
    assert activations <= {"int8", "uint8"}
    assert set(info.ops) <= {"QUANTIZE", "RESHAPE", "DEPTHWISE_CONV_2D", "ADD", "PAD", "CONV_2D", "MAX_POOL_2D",
                             "MEAN", "FULLY_CONNECTED", "SOFTMAX"}
    assert info.ops["CONV_2D"] == 20 and info.ops["DEPTHWISE_CONV_2D"] == 1  # the normalisation: no MUL
    assert info.ops["ADD"] == 8  # the 8 residual merges
    assert info.size_bytes <= 0.27 * len(float32_tflite)


@pytest.mark.parametrize("variant", ["v1.5", "v1"])
def test_fuse_input_ops_is_the_same_function_with_a_depthwise_normalisation(variant, images):
    trained = resnet(18, num_classes=5, input_shape=(SIZE, SIZE, 3), variant=variant, zero_init_residual=False,
                     classifier_activation=None)
    before = np.asarray(trained(images))
    fused = fuse_input_ops(trained)
    kinds = [type(op).__name__ for op in fused.operations]
    assert kinds[:5] == ["InputLayer", "Reshape", "DepthwiseConv2D", "Reshape", "ZeroPadding2D"]
    assert "Rescaling" not in kinds and "GetItem" not in kinds  # v1's channel flip is in conv1's kernel now
    assert len(fused.operations) == len(trained.operations) + (1 if variant == "v1" else 2)
    logits = np.asarray(fused(images))
    if variant == "v1.5":
        np.testing.assert_allclose(logits, before, rtol=0, atol=1e-5 * np.abs(before).max())
    else:  # conv1 sums its three channels in the other order
        np.testing.assert_allclose(logits, before, rtol=0, atol=1e-4 * np.abs(before).max())
    assert type(trained.operations[1]).__name__ == "Rescaling"  # the trained model is untouched
    np.testing.assert_array_equal(np.asarray(trained(images)), before)


def test_fuse_input_ops_keeps_dict_outputs_and_leaves_unknown_graphs_alone(images):
    import keras

    from keras_resnet.model import feature_model

    base = resnet(18, num_classes=5, input_shape=(SIZE, SIZE, 3), variant="v1", zero_init_residual=False)
    features = feature_model(base)
    fused = fuse_input_ops(features)
    assert fused is not features
    got, want = fused(images[:2]), features(images[:2])
    assert sorted(got) == sorted(want) == ["C2", "C3", "C4", "C5"]
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-4 * float(np.abs(value).max()))
    # the flipped pixels also feed something other than conv1: the graph is converted as it is
    flipped = base.get_layer("conv1_pad").input
    odd = keras.Model(base.inputs, [base.output, keras.layers.GlobalAveragePooling2D()(flipped)])
    assert fuse_input_ops(odd) is odd
    flip_out = keras.Model(base.inputs, flipped)  # the flipped pixels are an output: left alone too
    assert fuse_input_ops(flip_out) is flip_out


def test_fuse_input_ops_leaves_a_model_without_preprocess_alone():
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    plain = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs)))
    assert fuse_input_ops(plain) is plain


def test_int8_io_dtype_int8(images):
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    small = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    info = inspect_tflite(convert(small, "int8", lambda: (img[None] for img in images[:2]), io_dtype="int8"))
    assert info.inputs[0].dtype == "int8" and info.outputs[0].dtype == "int8"
    assert info.inputs[0].zero_point == [-128]


def test_the_converters_savedmodel_is_made_in_the_work_folder_and_absl_is_given_back(model, tmp_path, monkeypatch):
    """It was made in /tmp, where a killed export left it (87 MB for ResNet-18); and a failed conversion left
    absl's records going nowhere for the rest of the process."""
    import logging

    from keras_resnet import fileio
    from keras_resnet import quantize as q

    made = []

    def fails(model, directory, output):
        made.append(Path(directory))
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(q, "batch1_saved_model", fails)
    with pytest.raises(RuntimeError, match="conversion failed"):
        convert(model, "float32", work_dir=tmp_path, log=tmp_path / "converter.log")
    assert made[0].parent == tmp_path and made[0].name.startswith(fileio.CONVERT_TEMP_PREFIX)
    assert not made[0].exists() and logging.getLogger("absl").propagate


def test_unknown_mode_and_missing_calibration_are_user_errors(model):
    with pytest.raises(KresError, match="unknown quantize mode 'int4'"):
        convert(model, "int4")
    with pytest.raises(KresError, match="int8 quantization needs calibration images"):
        convert(model, "int8")
    with pytest.raises(KresError, match="not a TFLite flatbuffer"):
        inspect_tflite(b"definitely not a flatbuffer")


def test_float16_and_dynamic_range(model, float32_tflite, images):
    expected = model.predict(images, verbose=0)
    half = convert(model, "float16")
    info = inspect_tflite(half)
    assert info.inputs[0].dtype == "float32" and "DEQUANTIZE" in info.ops  # float16 weights, float32 compute
    assert 0.45 < len(half) / len(float32_tflite) < 0.55
    assert np.max(np.abs(run(half, images) - expected)) < 1e-2
    dynamic = convert(model, "dynamic")
    info = inspect_tflite(dynamic)
    assert info.inputs[0].dtype == "float32" and info.outputs[0].dtype == "float32"
    assert len(dynamic) <= 0.27 * len(float32_tflite)


@pytest.mark.parametrize("mode", ["float16", "dynamic"])
def test_float16_and_dynamic_agree_with_keras_on_trained_digits(trained_digits_run, mode):
    from keras_resnet import export as ex
    from keras_resnet.meta import find_meta

    source = ex.resolve_source(trained_digits_run)
    trained = ex.load_float32_model(source.model_path)
    images, labels = ex.heldout_data(ex.data_config_for(source, find_meta(source.model_path)), 1000)
    agreement = ex.compare(trained.predict(images, verbose=0), run(convert(trained, mode), images), labels)
    assert agreement["images"] >= 300
    assert agreement["top1_agreement"] >= 0.97, agreement
    assert abs(agreement["top1"] - agreement["reference_top1"]) <= 0.01, agreement
