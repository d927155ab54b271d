"""Quantization-aware fine-tuning, the only place that uses tf_keras.

tensorflow-model-optimization 0.8 quantizes only tf_keras (Keras 2) models, while everything else in keras_resnet
is Keras 3. So the trained Keras 3 graph is rebuilt layer for layer in tf_keras (it holds only stock layers plus
one channel-reversing slice for v1), the weights are copied by layer name, the copy is fine-tuned with tfmot's
fake-quantization wrappers and converted to a full-integer int8 TFLite model.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from keras_resnet import _compat, runlock, runs
from keras_resnet.errors import KresError

QAT_TFLITE_NAME = "model_qat_int8.tflite"
DEFAULT_LEARNING_RATE = 1e-4
# Config keys left to tf_keras' defaults: the weights are copied afterwards, and dtype policies differ.
_SKIP_KEYS = ("name", "dtype", "trainable", "kernel_initializer", "bias_initializer", "beta_initializer",
              "gamma_initializer", "moving_mean_initializer", "moving_variance_initializer", "kernel_regularizer",
              "bias_regularizer", "activity_regularizer", "beta_regularizer", "gamma_regularizer",
              "kernel_constraint", "bias_constraint", "beta_constraint", "gamma_constraint",
              "depthwise_initializer", "depthwise_regularizer", "depthwise_constraint")
_STOCK_LAYERS = ("ZeroPadding2D", "Conv2D", "BatchNormalization", "Activation", "Add", "MaxPooling2D",
                 "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Dense", "Rescaling", "Dropout",
                 "Reshape", "DepthwiseConv2D")  # the last two: quantize.fuse_input_ops' normalisation


def finetune_line(epochs: int) -> str:
    """What train and export say as the fine-tuning starts."""
    return f"quantization-aware fine-tuning, {epochs} epoch" + ("s" if epochs > 1 else "")


def require_tf_keras_model(model) -> None:
    """Fail with an explanation when ``model`` is a Keras 3 model: tfmot cannot wrap it."""
    import tf_keras

    if not isinstance(model, tf_keras.Model):
        raise KresError(
            f"quantization-aware training needs a tf_keras model, got {type(model).__module__}."
            f"{type(model).__name__}: tensorflow-model-optimization 0.8 only wraps tf_keras (Keras 2) layers; "
            "rebuild it first with keras_resnet.qat.to_tf_keras(model) (quantization_aware_finetune does this)")


@functools.cache
def _reverse_channels_layer():
    import tf_keras

    class ReverseChannels(tf_keras.layers.Layer):
        """``x[..., ::-1]``: the RGB -> BGR flip of the "caffe" input (variant v1)."""

        def call(self, inputs):
            return inputs[..., ::-1]

    return ReverseChannels


def _tf_keras_layer(op):
    """The tf_keras twin of one Keras 3 operation of the graph."""
    import tf_keras

    kind = type(op).__name__
    if kind not in _STOCK_LAYERS:
        raise KresError(f"layer {op.name!r} ({kind}) has no tf_keras rebuild for QAT: the graph must hold only "
                        f"{', '.join(_STOCK_LAYERS)} and the v1 channel flip")
    cls = getattr(tf_keras.layers, kind)
    accepted = set(inspect.signature(cls.__init__).parameters)
    config = {k: v for k, v in op.get_config().items() if k in accepted and k not in _SKIP_KEYS}
    return cls(name=op.name, trainable=op.trainable, **config)


def to_tf_keras(model):
    """The same architecture rebuilt in tf_keras, layer for layer, with the weights copied by layer name and each
    layer's ``trainable`` flag kept. (tfmot's weight-quantizing wrappers train a kernel whatever the flag says, so
    the fused input normalisation is annotated output-only in :func:`quantize_tf_keras_model`.)"""
    import keras
    import tf_keras

    from keras_resnet.model import is_channel_flip

    if isinstance(model, tf_keras.Model):
        return model
    reverse_cls = _reverse_channels_layer()
    tensors: dict[int, object] = {}
    for node in _compat.graph_nodes(model):  # inputs first
        op = node.operation
        if isinstance(op, keras.layers.InputLayer):
            out = node.output_tensors[0]
            tensors[id(out)] = tf_keras.Input(shape=tuple(out.shape[1:]), name=op.name, dtype="float32")
            continue
        inputs = [tensors[id(t)] for t in node.input_tensors]
        if _compat.is_getitem(op):
            if not is_channel_flip(node):
                raise KresError(f"slice {op.name!r} is not the v1 channel flip: QAT cannot rebuild it")
            layer = reverse_cls(name=op.name)
        else:
            layer = _tf_keras_layer(op)
        tensors[id(node.output_tensors[0])] = layer(inputs if len(inputs) > 1 else inputs[0])
    outputs = [tensors[id(t)] for t in model.outputs]
    rebuilt = tf_keras.Model([tensors[id(t)] for t in model.inputs], outputs[0] if len(outputs) == 1 else outputs,
                             name=model.name)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            rebuilt.get_layer(layer.name).set_weights(weights)
    return rebuilt


def _quantize_configs():
    import tensorflow_model_optimization as tfmot

    quantizers = tfmot.quantization.keras.quantizers

    class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """No weights to quantize; fake-quantize the output (the normalised input of conv1)."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                      narrow_range=False)]

        def get_config(self):
            return {}

    class PassThroughQuantizeConfig(OutputQuantizeConfig):
        """A channel permutation: exact on quantized values, so no quantizer at all."""

        def get_output_quantizers(self, layer):
            return []

    return OutputQuantizeConfig, PassThroughQuantizeConfig


def quantize_tf_keras_model(model):
    """Wrap a tf_keras ResNet with tfmot's default 8-bit fake quantization (what ``quantize_model`` does, with
    configs for the two layers tfmot has no entry for: Rescaling and the v1 channel flip, which remain only where
    :func:`keras_resnet.quantize.fuse_input_ops` left a model as it was)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    require_tf_keras_model(model)
    qk = tfmot.quantization.keras
    output_cfg, passthrough_cfg = _quantize_configs()

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.InputLayer):
            return layer
        kind = type(layer).__name__
        # The input normalisation (a Rescaling, or fuse_input_ops' frozen depthwise op) keeps float weights under
        # fake quantization, so they cannot train (a wrapper that quantizes weights trains them even when frozen);
        # only its output is fake-quantized, and the converter quantizes the op from the calibration images.
        if kind == "Rescaling" or layer.name == "preprocess":
            return qk.quantize_annotate_layer(layer, quantize_config=output_cfg())
        if kind == "ReverseChannels":
            return qk.quantize_annotate_layer(layer, quantize_config=passthrough_cfg())
        return qk.quantize_annotate_layer(layer)

    annotated = tf_keras.models.clone_model(model, clone_function=annotate)
    scope = {"OutputQuantizeConfig": output_cfg, "PassThroughQuantizeConfig": passthrough_cfg,
             "ReverseChannels": _reverse_channels_layer()}
    with qk.quantize_scope(scope):
        wrapped = qk.quantize_apply(annotated)
    _compat.replace_weight_quantizers(wrapped, _ChannelWeightQuantizer.replacing)
    return wrapped


def fake_quant_per_channel(inputs, range_min, range_max, num_bits: int = 8, narrow_range: bool = True):
    """``tf.quantization.fake_quant_with_min_max_vars_per_channel`` (channels last) as broadcast ops, with its
    gradient for ``inputs`` (passed where they lie within the nudged range); the ranges get no gradient.

    The same arithmetic as TensorFlow's kernel (``fake_quant_ops_functor.h``: the range nudged so that zero is one
    of the levels, and a channel whose range is [0, 0] made zeros): eagerly and in a tf.function the two agree bit
    for bit (tests/test_qat.py). TensorFlow's CPU kernel loops over the channels, each a strided view of the tensor: for
    ResNet-18's convolution kernels at one thread it took 540 ms a step forward and backward, these ops 75 ms
    (Intel Xeon family 6 model 207, TensorFlow 2.21), most of a QAT step at 32 px."""
    import tensorflow as tf

    quant_min, quant_max = float(1 if narrow_range else 0), float(2 ** num_bits - 1)
    empty = tf.logical_and(tf.equal(range_min, 0.0), tf.equal(range_max, 0.0))
    width = tf.where(empty, 1.0, range_max - range_min)  # an empty channel's levels are not used
    # DivNoNan divides as RealDiv does; a RealDiv by a constant becomes a product with its reciprocal in Grappler's
    # constant folding inside a tf.function, which rounds some channels' scale differently from the kernel
    scale = tf.math.divide_no_nan(width, quant_max - quant_min)
    inverse = (quant_max - quant_min) / width  # computed, not 1 / scale, as the kernel does
    zero_point = quant_min - range_min / scale  # an empty channel's range_min is 0
    zero_point = tf.clip_by_value(tf.floor(zero_point + 0.5), quant_min, quant_max)  # std::round, zero_point >= 0
    nudged_min, nudged_max = (quant_min - zero_point) * scale, (quant_max - zero_point) * scale
    quant_zero = tf.floor(-nudged_min * inverse + 0.5)

    @tf.custom_gradient
    def fake_quant(x):
        clamped = tf.maximum(tf.minimum(x, nudged_max), nudged_min)
        levels = tf.floor((clamped - nudged_min) * inverse - quant_zero + 0.5)
        out = tf.where(empty, 0.0, levels * scale)

        def grad(upstream):
            inside = tf.logical_or(tf.logical_and(x >= nudged_min, x <= nudged_max), empty)
            return upstream * tf.cast(inside, upstream.dtype)

        return out, grad

    return fake_quant(inputs)


class _ChannelWeightQuantizer:
    """tfmot's per-channel weight quantizer (``LastValueQuantizer``: the range is the weights' own, symmetric,
    narrow) with :func:`fake_quant_per_channel` while training. Outside training it is tfmot's own, so the graph
    the converter reads holds TensorFlow's op, and the range variables are the same in both."""

    def __init__(self, quantizer):
        self.quantizer = quantizer

    @classmethod
    def replacing(cls, quantizer):
        """The replacement for ``quantizer``, or None where it is not a per-channel, symmetric, narrow one."""
        import tensorflow_model_optimization as tfmot

        if isinstance(quantizer, tfmot.quantization.keras.quantizers.LastValueQuantizer) and quantizer.per_axis \
                and quantizer.symmetric and quantizer.narrow_range:
            return cls(quantizer)
        return None

    def __call__(self, inputs, training, weights, **kwargs):
        import tensorflow as tf

        if not training:
            return self.quantizer(inputs, training, weights=weights, **kwargs)
        axes = list(range(len(inputs.shape) - 1))
        batch_min, batch_max = tf.reduce_min(inputs, axis=axes), tf.reduce_max(inputs, axis=axes)
        # tfmot's symmetric narrow range: zero always inside, and min = -max
        range_min = weights["min_var"].assign(tf.minimum(batch_min, -batch_max))
        range_max = weights["max_var"].assign(tf.maximum(batch_max, -batch_min))
        return fake_quant_per_channel(inputs, range_min, range_max, self.quantizer.num_bits, narrow_range=True)


@runlock.releasing
def quantization_aware_finetune(model_path, data_cfg, epochs: int, output_dir, learning_rate: float | None = None,
                                *, steps_per_epoch: int | None = None, io_dtype: str = "uint8",
                                calibration_steps: int = 100, datasets=None, edgetpu: bool = False,
                                stream=None) -> Path:
    """Fine-tune the ``.keras`` model at ``model_path`` under fake quantization, convert it to full-integer int8
    TFLite and write ``output_dir/model_qat_int8.tflite``; returns that path.

    ``data_cfg`` is the run's ``DataConfig``; ``datasets`` (a ``keras_resnet.data.Datasets``) skips loading it.
    ``edgetpu``: the model is for the Edge TPU (see :func:`keras_resnet.quantize.fuse_input_ops`).
    ``stream``: where each epoch's line goes (standard error by default).
    """
    from keras_resnet import fileio
    from keras_resnet.quantize import convert

    if epochs < 1:
        raise KresError(f"QAT epochs must be 1 or more, got {epochs}")
    output_dir = fileio.ensure_writable_dir(output_dir)
    runlock.acquire(output_dir)
    qat_model, digest, output = _fake_quantized_model(model_path, edgetpu)
    if datasets is None:
        import keras

        from keras_resnet.data import load_datasets

        # As train does: tf.data's seeded shuffles also read TensorFlow's global seed, so without this the
        # fine-tuning batches (and the int8 model) depended on whatever ran earlier in the process.
        keras.utils.set_random_seed(data_cfg.seed)
        datasets = load_datasets(data_cfg)
    _finetune(qat_model, datasets, epochs, learning_rate, steps_per_epoch, stream)
    content = convert(qat_model, "int8", _representative(data_cfg, datasets, calibration_steps), io_dtype,
                      work_dir=output_dir, output=output)
    return _write(content, model_path, output_dir, epochs, digest)


def _fake_quantized_model(model_path, edgetpu: bool):
    """The float32 model with the input end as post-training int8 has it (one depthwise op for the
    normalisation, v1's flip in conv1), rebuilt in tf_keras and wrapped for fake quantization, so the QAT model
    gets the same fast int8 graph; the weights digest of the model it starts from (for meta.json); and its output
    name (the wrapped model has no plain ``predictions`` layer to tell logits from probabilities)."""
    from keras_resnet.meta import model_output_name, weights_digest
    from keras_resnet.quantize import fuse_input_ops
    from keras_resnet.rebuild import load_float32_model

    model = load_float32_model(model_path)
    return (quantize_tf_keras_model(to_tf_keras(fuse_input_ops(model, rows=not edgetpu))), weights_digest(model),
            model_output_name(model))


def _finetune(qat_model, datasets, epochs: int, learning_rate: float | None, steps_per_epoch: int | None,
              stream) -> None:
    import tf_keras

    qat_model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate or DEFAULT_LEARNING_RATE),
                      loss=tf_keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    from keras_resnet.data import without_autotune_thread  # the stream lives as long as the fit

    batch_size = datasets.train.element_spec[0].shape[0]  # static: the batches drop their remainder
    steps = steps_per_epoch or datasets.num_train // batch_size  # tf_keras cannot count the stream's batches
    qat_model.fit(datasets.train.with_options(without_autotune_thread()), validation_data=datasets.val,
                  epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0,
                  callbacks=[_progress(epochs, batch_size, steps, stream)])


def _progress(epochs: int, batch_size: int, steps: int, stream):
    """``kres train``'s epoch line (time, images/s, metrics) for tf_keras's ``fit``, which takes only tf_keras
    callbacks: its own ``verbose=2`` line says neither images/s nor what the other kres commands print."""
    import tf_keras

    from keras_resnet.callbacks import ProgressBar

    bar = ProgressBar(epochs, batch_size, stream=stream)

    class Progress(tf_keras.callbacks.Callback):
        def set_params(self, params):
            super().set_params(params)
            bar.set_params({**params, "steps": params.get("steps") or steps})

        def on_epoch_begin(self, epoch, logs=None):
            bar.on_epoch_begin(epoch, logs)

        def on_train_batch_end(self, batch, logs=None):
            bar.on_train_batch_end(batch, logs)

        def on_epoch_end(self, epoch, logs=None):
            bar.on_epoch_end(epoch, logs)

    return Progress()


def _representative(data_cfg, datasets, calibration_steps: int):
    """Calibration batches [1,H,W,3]: the training images through eval preprocessing, as for post-training int8;
    without a data config, the first validation images."""

    def representative() -> Iterator[np.ndarray]:
        if data_cfg is not None:
            from keras_resnet.data import calibration_images

            yield from calibration_images(data_cfg, calibration_steps)
            return
        count = 0
        for images, _ in datasets.val:
            for image in np.asarray(images):
                yield image[None].astype(np.float32)
                count += 1
                if count >= calibration_steps:
                    return

    return representative


def made_before(output_dir, model_path, epochs: int) -> Path | None:
    """The QAT model in ``output_dir`` when it was fine-tuned for ``epochs`` from ``model_path`` as it is now (the
    .tflite newer than the model), so a finished run found finished again is not fine-tuned again; else None."""
    from keras_resnet.meta import find_meta

    final = Path(output_dir) / QAT_TFLITE_NAME
    meta = find_meta(output_dir) if final.is_file() else None
    if meta is None or meta.extra.get("qat_epochs") != epochs:
        return None
    return final if final.stat().st_mtime >= Path(model_path).stat().st_mtime else None


def _write(content: bytes, model_path, output_dir: Path, epochs: int, digest: str) -> Path:
    from keras_resnet import fileio
    from keras_resnet.meta import WEIGHTS_DIGEST, find_meta

    final = Path(output_dir) / QAT_TFLITE_NAME
    fileio.write_bytes(final, content)
    meta = find_meta(model_path)
    if meta is not None:  # so the .tflite travels with its labels (runtime.load_predictor reads meta.json)
        meta.extra["qat_epochs"] = epochs  # after the .tflite: with it, meta.json says the model is whole
        meta.extra[WEIGHTS_DIGEST] = digest  # of the model it was fine-tuned from: an export's check reads it
        meta.save(output_dir)
        runs.write_labels(output_dir, meta.labels)
    return Path(os.fspath(final))
