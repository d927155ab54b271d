"""Quantization-aware training: the tf_keras rebuild, the Keras 3 guard, and QAT of the trained digits to int8."""

import io
import json
import re
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from keras_resnet import qat
from keras_resnet.errors import KresError
from keras_resnet.model import resnet

SIZE = 32


@pytest.fixture(scope="module")
def model():
    return resnet(18, num_classes=3, input_shape=(SIZE, SIZE, 3), variant="v1", zero_init_residual=False)


def test_keras3_model_gets_an_explaining_error(model):
    with pytest.raises(KresError, match=r"needs a tf_keras model.*only wraps tf_keras.*qat.to_tf_keras"):
        qat.require_tf_keras_model(model)
    with pytest.raises(KresError, match="needs a tf_keras model"):
        qat.quantize_tf_keras_model(model)


def test_tf_keras_rebuild_has_the_same_layers_and_outputs(model):
    import tf_keras

    rebuilt = qat.to_tf_keras(model)
    assert isinstance(rebuilt, tf_keras.Model)
    qat.require_tf_keras_model(rebuilt)
    assert [layer.name for layer in rebuilt.layers if layer.weights] == [
        layer.name for layer in model.layers if layer.weights]
    assert rebuilt.count_params() == model.count_params()
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(rebuilt(x).numpy(), model(x).numpy(), atol=1e-5)


def test_tf_keras_rebuild_of_the_fused_input_end(model):
    from keras_resnet.quantize import fuse_input_ops

    rebuilt = qat.to_tf_keras(fuse_input_ops(model))  # v1: the channel flip is in conv1's kernel now
    preprocess = rebuilt.get_layer("preprocess")
    assert type(preprocess).__name__ == "DepthwiseConv2D" and not preprocess.trainable
    wrapped = qat.quantize_tf_keras_model(rebuilt)  # the input statistics stay fixed under fake quantization
    assert wrapped.trainable_weights and not [w for w in wrapped.trainable_weights if "preprocess" in w.name]
    assert "ReverseChannels" not in {type(layer).__name__ for layer in rebuilt.layers}
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(rebuilt(x).numpy(), model(x).numpy(), atol=1e-5)


def test_per_channel_fake_quant_is_tensorflows_bit_for_bit_with_its_gradient():
    """kres's broadcast per-channel fake quantization (TensorFlow's CPU kernel loops over the channels) gives
    TensorFlow's op's outputs and input gradients exactly, eagerly and in a tf.function (where Grappler's constant
    folding turned a division by the level count into a product and moved some channels' scale by a bit):
    symmetric ranges as tfmot sets them for convolution kernels, an asymmetric one, and a channel of zeros, whose
    range is [0, 0]."""
    import tensorflow as tf

    def both(kernel, low, high, upstream):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(kernel)
            theirs = tf.quantization.fake_quant_with_min_max_vars_per_channel(kernel, low, high, num_bits=8,
                                                                              narrow_range=True)
            ours = qat.fake_quant_per_channel(kernel, low, high)
        return (ours, theirs, tape.gradient(ours, kernel, output_gradients=upstream),
                tape.gradient(theirs, kernel, output_gradients=upstream))

    rng = np.random.default_rng(0)
    for shape in [(7, 7, 3, 64), (3, 3, 128, 128), (1, 1, 64, 128), (64, 10)]:
        kernel = rng.normal(0.0, 0.05, shape).astype(np.float32)
        kernel[..., 0] = 0.0
        kernel = tf.constant(kernel)
        largest = tf.reduce_max(tf.abs(kernel), axis=list(range(len(shape) - 1)))
        upstream = tf.constant(rng.normal(size=shape).astype(np.float32))
        for low, high in [(-largest, largest), (-largest / 2, largest / 3)]:
            for run in (both, tf.function(both)):
                ours, theirs, our_gradient, their_gradient = (t.numpy() for t in run(kernel, low, high, upstream))
                np.testing.assert_array_equal(ours, theirs)
                np.testing.assert_array_equal(our_gradient, their_gradient)
                assert np.count_nonzero(ours[..., 0]) == 0 and len(np.unique(ours[..., 1])) > 20


def test_the_qat_model_trains_with_kres_fake_quant_and_converts_from_tensorflows(model):
    """Every convolution kernel's per-channel quantizer is swapped (ResNet-18: 20 convolutions), the dense layer's
    per-tensor one is not; in training it fake-quantizes as tfmot's own would, and outside training it is tfmot's
    own, whose TensorFlow op the converter reads."""
    import tensorflow as tf

    from keras_resnet import _compat

    quantizers = _compat.weight_quantizers(qat.quantize_tf_keras_model(qat.to_tf_keras(model)))
    ours = [name for name, _, quantizer, _ in quantizers if isinstance(quantizer, qat._ChannelWeightQuantizer)]
    assert len(ours) == 20 and all("conv" in name for name in ours), ours
    assert [name for name, *_ in quantizers if name not in ours] == ["quant_predictions"]
    name, kernel, quantizer, variables = quantizers[-2]
    assert name in ours  # the last convolution's
    variables["min_var"].assign(tf.fill(variables["min_var"].shape, -6.0))  # as tfmot initializes them
    variables["max_var"].assign(tf.fill(variables["max_var"].shape, 6.0))
    trained = quantizer(kernel, True, weights=variables)
    ranges = [variables[name].numpy() for name in ("min_var", "max_var")]
    np.testing.assert_array_equal(ranges[1], tf.reduce_max(tf.abs(kernel), axis=[0, 1, 2]))
    np.testing.assert_array_equal(ranges[0], -ranges[1])
    reference = quantizer.quantizer(kernel, True, weights=variables)  # tfmot's own
    np.testing.assert_array_equal(trained.numpy(), reference.numpy())
    np.testing.assert_array_equal(variables["max_var"].numpy(), ranges[1])
    graph = tf.function(lambda w: quantizer(w, False, weights=variables)).get_concrete_function(kernel).graph
    assert "FakeQuantWithMinMaxVarsPerChannel" in {op.type for op in graph.get_operations()}


def test_the_qat_model_of_a_logits_model_names_its_output_logits(tmp_path):
    """The fake-quantized model has no plain ``predictions`` layer to read the activation off: its .tflite would
    have called a logits model's outputs "probabilities", where the float model's exports say "logits"."""
    logits = resnet(18, num_classes=3, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    logits.save(tmp_path / "logits.keras")
    assert qat._fake_quantized_model(tmp_path / "logits.keras", edgetpu=False)[2] == "logits"



def test_qat_of_a_logits_model_writes_a_tflite_whose_signature_says_logits(tmp_path):
    """The QAT .tflite's signature must name a logits model's outputs as its float exports do: without the float
    model's name passed to the converter it says "probabilities" (the wrapped model has no plain predictions
    layer). A conv and a classifier without softmax, one fine-tuning step on four images, calibrated on two."""
    import keras
    import tensorflow as tf
    from signatures import signature_outputs

    from keras_resnet.data import Datasets

    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0, -0.5, name="preprocess")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv1_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    keras.Model(inputs, keras.layers.Dense(3, name="predictions")(x)).save(tmp_path / "logits.keras")
    images = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    batches = tf.data.Dataset.from_tensors((images, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]))
    data = Datasets(train=batches, val=batches, class_names=["a", "b", "c"], num_train=4, num_val=4)
    path = qat.quantization_aware_finetune(tmp_path / "logits.keras", None, 1, tmp_path / "qat", 1e-6,
                                           steps_per_epoch=1, calibration_steps=2, datasets=data, stream=io.StringIO())
    outputs = signature_outputs(path.read_bytes(), images[0])
    assert list(outputs) == ["logits"] and outputs["logits"].shape == (1, 3)


@pytest.fixture(scope="module")
def qat_on_digits(trained_digits_run, tmp_path_factory):
    """Two QAT epochs on the trained digits run, once for the tests below (the slowest step of this file: the
    fine-tuning under fake quantization and the int8 conversion). Records the fake-quantized model and its
    trainable weights as they were before the fine-tuning."""
    from keras_resnet import export as ex
    from keras_resnet.meta import find_meta

    source = ex.resolve_source(trained_digits_run)
    meta = find_meta(source.model_path)
    data_cfg = ex.data_config_for(source, meta)
    made = []
    wrap = qat.quantize_tf_keras_model

    def recording(model):
        wrapped = wrap(model)
        made.append((wrapped, [np.array(w.numpy()) for w in wrapped.trainable_weights]))
        return wrapped

    out = tmp_path_factory.mktemp("qat")
    stderr, stdout = _Terminal(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(qat, "quantize_tf_keras_model", recording)
        patch.setattr(sys, "stderr", stderr)
        patch.setattr(sys, "stdout", stdout)
        path = qat.quantization_aware_finetune(source.model_path, data_cfg, 2, out, calibration_steps=50)
    (wrapped, before), = made
    return SimpleNamespace(path=path, out=out, source=source, meta=meta, data_cfg=data_cfg, wrapped=wrapped,
                           before=before, stderr=stderr.getvalue(), stdout=stdout.getvalue())


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_qat_shows_the_live_bar_and_epoch_lines_of_kres_train(qat_on_digits):
    lines = qat_on_digits.stderr.split("\n")
    metrics = r"loss \d\.\d{4} accuracy \d\.\d{4} val_loss \d\.\d{4} val_accuracy \d\.\d{4}"
    assert len(lines) == 3 and lines[-1] == "", qat_on_digits.stderr
    for epoch, line in enumerate(lines[:2], 1):
        *bars, last = line.split("\r")
        assert re.fullmatch(rf"Epoch {epoch}/2 \d+\.\ds [1-9][\d,]* img/s {metrics}\x1b\[K", last), last
        assert bars[-1].startswith(f"Epoch {epoch}/2 [{'=' * 24}] 22/22 "), bars  # 1438 images, batch 64
    assert qat_on_digits.stdout == ""  # not tf_keras's own "22/22 - 13s - loss: ..." line


def test_qat_trains_a_step_and_converts_to_int8(qat_on_digits):
    from keras_resnet.edgetpu import check_requirements
    from keras_resnet.meta import ModelMeta
    from keras_resnet.quantize import inspect_tflite, require_builtin_only

    path, out = qat_on_digits.path, qat_on_digits.out
    labels = [str(digit) for digit in range(10)]
    assert qat_on_digits.meta.labels == labels
    assert path == out / "model_qat_int8.tflite" and path.is_file()
    assert (out / "labels.txt").read_text() == "".join(f"{label}\n" for label in labels)
    assert ModelMeta.load(out).labels == labels
    assert ModelMeta.load(out).extra["qat_epochs"] == 2
    # the digest of the model it was fine-tuned from: another run's export into RUN/qat/ was taken as this one's
    from keras_resnet.meta import weights_digest
    from keras_resnet.rebuild import load_float32_model

    source = load_float32_model(qat_on_digits.source.model_path)
    assert ModelMeta.load(out).extra["weights_digest"] == weights_digest(source)
    assert qat.made_before(out, qat_on_digits.source.model_path, 2) == path  # train's rerun of a finished run
    assert qat.made_before(out, qat_on_digits.source.model_path, 3) is None
    info = inspect_tflite(path.read_bytes())
    require_builtin_only(info)
    assert info.inputs[0].dtype == "uint8" and info.inputs[0].shape == [1, SIZE, SIZE, 3]
    assert info.outputs[0].dtype == "uint8" and info.ops["CONV_2D"] == 20
    assert info.ops["DEPTHWISE_CONV_2D"] == 1 and "MUL" not in info.ops  # the normalisation, as in post-training
    assert check_requirements(info).passed
    from signatures import signature_outputs  # named as the SavedModel's output (it said "output_0")

    assert list(signature_outputs(path.read_bytes(), np.zeros((SIZE, SIZE, 3)))) == ["probabilities"]
    with pytest.raises(KresError, match="QAT epochs must be 1 or more"):
        qat.quantization_aware_finetune(qat_on_digits.source.model_path, qat_on_digits.data_cfg, 0, out / "again")


def test_qat_on_trained_digits_changes_weights_and_agrees_with_keras(qat_on_digits):
    from keras_resnet import export as ex
    from keras_resnet.quantize import inspect_tflite
    from keras_resnet.runtime import KerasPredictor, TFLitePredictor, tflite_interpreter

    wrapped, before = qat_on_digits.wrapped, qat_on_digits.before
    changed = [w.name for w, old in zip(wrapped.trainable_weights, before) if not np.array_equal(w.numpy(), old)]
    assert len(changed) >= 1
    source, meta, path = qat_on_digits.source, qat_on_digits.meta, qat_on_digits.path
    images, labels = ex.heldout_data(qat_on_digits.data_cfg, 1000)
    reference = KerasPredictor(source.model_path, ex.load_float32_model(source.model_path), meta).predict(images)
    got = TFLitePredictor(path, tflite_interpreter(path.read_bytes()), meta).predict(images)
    agreement = ex.compare(reference, got, labels)
    assert agreement["images"] == len(labels) >= 300
    assert agreement["top1_agreement"] >= 0.97, agreement
    assert abs(agreement["top1"] - agreement["reference_top1"]) <= 0.01, agreement
    from keras_resnet.train import qat_card

    # train's card, as export writes beside its files, with the accuracy measured as above
    card = json.loads(qat_card(path, source.model_path, qat_on_digits.data_cfg).read_text())
    labels = [str(digit) for digit in range(10)]
    assert card["labels"] == labels and card["input"]["dtype"] == "uint8" and card["delegates"]["xnnpack"]["accepts"]
    assert set(card["tflite"]["ops"]) == set(inspect_tflite(path.read_bytes()).ops)  # with their versions
    assert card["accuracy"] == {"top1": agreement["top1"], "images": agreement["images"], "dataset": "digits",
                                "keras_top1": agreement["reference_top1"],
                                "measured": "on validation images of this dataset, against the Keras model"}
    made_before = qat_card(path, source.model_path, qat_on_digits.data_cfg, again=False)  # a rerun: kept
    assert json.loads(made_before.read_text()) == card
    made_before.write_text(json.dumps({**card, "accuracy": None}))  # as kres wrote it before it measured
    assert json.loads(qat_card(path, source.model_path, qat_on_digits.data_cfg, again=False).read_text()) == card


def test_calibration_without_a_data_config_takes_the_first_validation_images():
    import tensorflow as tf

    images = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
    val = tf.data.Dataset.from_tensor_slices((images, np.zeros(5))).batch(2)
    got = list(qat._representative(None, SimpleNamespace(val=val), 3)())
    assert [g.shape for g in got] == [(1, 2, 2, 3)] * 3 and {g.dtype for g in got} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(np.concatenate(got), images[:3].astype(np.float32))
