"""Every use of a private Keras, TensorFlow, LiteRT, tfmot or torchvision name, of scikit-learn's file layout, and
of what Keras imports at its start, behind one door.

Each entry says which public gap it fills and the versions it was checked on; tests/test_compat.py fails with
the installed version named when one of these names moves. pyproject allows Keras 3.13-3.15, but only the
versions below were checked. Checked on Keras 3.15.1, TensorFlow 2.21.0, ai-edge-litert 2.3.0, torchvision 0.28.0,
tensorflow-model-optimization 0.8.0 and scikit-learn 1.9.1. Nothing else in the package imports ``keras.src`` or
``tensorflow.python`` or touches an underscore attribute of a framework object.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.abc
import importlib.metadata
import importlib.util
import json
import os
import sys
import types
from collections.abc import Iterator

from keras_resnet.errors import KresError

CHECKED = "Keras 3.15.1, TensorFlow 2.21.0"


def versions() -> str:
    """The installed versions, for the messages of the tests that guard this module."""
    import keras
    import tensorflow as tf

    return f"Keras {keras.__version__}, TensorFlow {tf.__version__} (checked on {CHECKED})"


# --- Keras graph traversal --------------------------------------------------------------------------------------
# Keras 3 has public ``model.operations`` (ops in an order) and ``model.input``/``model.output``, but no public
# way to reach the call sites (nodes: which tensors went in, with which arguments) an op was used at. Rebuilding
# a graph op by op (quantize.fuse_input_ops, qat.to_tf_keras) needs them.

def graph_nodes(model) -> Iterator:
    """The nodes of a functional model, inputs first (``Functional._nodes_by_depth``; checked on Keras 3.15.1
    only, though pyproject allows 3.13 and 3.14 too)."""
    by_depth = model._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        yield from by_depth[depth]


def is_getitem(operation) -> bool:
    """Whether an op is ``x[...]`` on a symbolic tensor. Its class (``keras.src.ops.numpy.GetItem``) is not
    exported, so it is matched by name."""
    return type(operation).__name__ == "GetItem"


# --- importing Keras ---------------------------------------------------------------------------------------------
# ``import keras`` imports scikit-learn (for ``keras.wrappers``, its scikit-learn estimators) and matplotlib.pyplot
# (for ``keras.visualization``) whenever they are installed, each inside ``try: ... except ImportError``. kres uses
# neither feature but installs both packages (the digits dataset; curves and confusion matrices), so every kres
# command paid for them at start: 0.85 s of ``import keras``'s 4.2-4.5 s on 2 CPU cores. With them skipped,
# ``keras.wrappers``' estimators and ``keras.visualization``'s plots say scikit-learn / matplotlib is not installed,
# in that process only; the packages themselves import as usual afterwards (so does the ``matplotlib`` package,
# which skipping too saved nothing measurable). Checked on Keras 3.15.1, its patch releases taken as the same;
# other Keras versions are imported as they are.
# Only under the backends kres supports, where it was checked: the torch backend imports torch._dynamo, whose trace
# rules look scikit-learn up at import, so there the skip itself failed the import ("No module named 'sklearn'").
KERAS_OPTIONAL_IMPORTS = ("sklearn", "matplotlib.pyplot")
KERAS_OPTIONAL_IMPORTS_CHECKED = ("3.15.",)
KERAS_OPTIONAL_IMPORTS_BACKENDS = ("tensorflow", "jax")
# Under the TensorFlow backend ``import keras`` imports TensorFlow, whose ``tensorflow/lite/python/util.py`` does
# ``from jax import jit`` inside ``try: ... except ImportError`` wherever JAX is installed, for
# ``TFLiteConverter.experimental_from_jax`` alone, which kres does not use: 0.46 s of every kres command's start
# (AMD EPYC Zen 3, 2 cores, December 2026). Keras 3.15's ``keras/src/callbacks/orbax_checkpoint.py`` imports JAX the
# same way, to patch ``jax.monitoring`` for its Orbax callback, which kres does not use either. Skipped, that
# converter says "Cannot import jit from jax" in that process only; ``import jax`` itself works as usual afterwards.
# Checked on TensorFlow 2.21 with Keras 3.15 (KERAS_OPTIONAL_IMPORTS_CHECKED).
TENSORFLOW_OPTIONAL_IMPORTS = ("jax",)
TENSORFLOW_OPTIONAL_IMPORTS_CHECKED = ("2.21.",)


class _SkipImports(importlib.abc.MetaPathFinder):
    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == name or fullname.startswith(name + ".") for name in self.names):
            raise ModuleNotFoundError(f"No module named {fullname!r} (skipped while importing Keras)", name=fullname)
        return None


def skips_keras_optional_imports(keras_version: str) -> bool:
    return (keras_version.startswith(KERAS_OPTIONAL_IMPORTS_CHECKED)
            and keras_backend_to_load() in KERAS_OPTIONAL_IMPORTS_BACKENDS)


def keras_backend_to_load() -> str | None:
    """The backend ``import keras`` is about to load, worked out as Keras 3.15's ``backend/config.py`` does:
    KERAS_BACKEND, else keras.json's under KERAS_HOME (else ~/.keras, or /tmp/.keras where ~ is read-only), else
    tensorflow. None where keras.json cannot be read."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    if "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    try:
        with open(os.path.join(os.path.expanduser(home), "keras.json")) as f:
            config = json.load(f)
    except FileNotFoundError:
        return "tensorflow"
    except ValueError:  # Keras reads a damaged keras.json as {}
        return "tensorflow"
    except OSError:
        return None
    return config.get("backend", "tensorflow") if isinstance(config, dict) else None


def skips_tensorflow_optional_imports(tensorflow_version: str | None) -> bool:
    """Whether ``import keras`` is about to import a TensorFlow checked to treat the imports above as optional."""
    return (tensorflow_version is not None and tensorflow_version.startswith(TENSORFLOW_OPTIONAL_IMPORTS_CHECKED)
            and keras_backend_to_load() == "tensorflow" and "tensorflow" not in sys.modules)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def import_keras() -> None:
    """``import keras`` without the optional imports above, where this Keras (and the TensorFlow it imports) was
    checked to treat them as optional."""
    if not skips_keras_optional_imports(_version("keras") or ""):
        importlib.import_module("keras")
        return
    names = KERAS_OPTIONAL_IMPORTS
    if skips_tensorflow_optional_imports(_version("tensorflow")):
        names += TENSORFLOW_OPTIONAL_IMPORTS
    finder = _SkipImports(names)
    sys.meta_path.insert(0, finder)
    try:
        importlib.import_module("keras")
    finally:
        sys.meta_path.remove(finder)


# --- saving ------------------------------------------------------------------------------------------------------
# Keras's saving walks each object's attributes, skipping those a bare Layer, Optimizer or Metric has; it builds
# such a bare object to list them. Its cache of those lists stores them under "saving_attr_skipset_<type>" and looks
# them up under "saving_attr_skiplist_<type>", so it never hits: every save and load builds a throwaway object per
# layer: 75 bare Layers, about 70 ms, in each save or load of ResNet-18 (AMD EPYC Zen 3, where a checkpoint takes
# 0.3-0.5 s; `kres train` saves one every epoch, and best.keras on every better one). Checked on Keras 3.15.1; no
# public switch.

def cache_saving_skipsets() -> None:
    """Compute each kind of object's skip list once per process; the lists are Keras's own, unchanged. Where the
    name has moved this does nothing (saves are slower, not wrong); tests/test_compat.py says so."""
    try:
        from keras.src.saving import saving_lib
    except ImportError:
        return
    lookup = getattr(saving_lib, "get_attr_skipset", None)
    if lookup is not None and not hasattr(lookup, "cache_info"):
        saving_lib.get_attr_skipset = functools.cache(lookup)


# --- the multi-worker fit ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def multi_worker_fit(model, element_spec, scope):
    """Work around two failures of ``fit`` under MultiWorkerMirroredStrategy (Keras 3.15.1, TF 2.21.0), for the
    ``fit`` inside this block only; both patches are undone on exit.

    1. ``fit`` fetches a first batch and reduces it across replicas only to learn its shapes; that eager reduce
       of a PerReplica batch fails. ``Trainer._symbolic_build`` builds from the dataset's element spec instead,
       which gives the same shapes (there is no public "build from a spec" for the metrics and optimizer).
    2. Each step's scalar logs are averaged with ``strategy.reduce("MEAN", v, axis=0)``
       (``keras.src.backend.tensorflow.trainer.reduce_per_replica``), which fails on a scalar; ``axis=None`` is the
       mean across replicas that was meant. No public hook sets the reduction.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def build(iterator=None, data_batch=None):
        with scope():
            model._symbolic_build(data_batch=element_spec)

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    model._maybe_symbolic_build = build  # an instance attribute over the class's method
    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original
        with contextlib.suppress(AttributeError):
            del model._maybe_symbolic_build


def has_multi_worker_hooks(model) -> bool:
    """Whether the names :func:`multi_worker_fit` replaces are still where it expects them."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    return (callable(getattr(tf_trainer, "reduce_per_replica", None))
            and callable(getattr(model, "_symbolic_build", None))
            and callable(getattr(model, "_maybe_symbolic_build", None)))


# --- fused batch norm ------------------------------------------------------------------------------------------

@contextlib.contextmanager
def fused_batch_norm():
    """Training steps traced inside this block run BatchNormalization as TensorFlow's fused kernel
    (``FusedBatchNormV3`` and its one-op gradient) instead of Keras 3's separate moments, normalize and update
    ops; ResNet-18's CPU training step is about 20% faster with oneDNN (Zen 4, TF 2.21.0). Keras 3 dropped the
    ``fused=`` argument Keras 2 had, so there is no public switch: ``BatchNormalization.call`` is replaced for
    the block only and restored on exit. The saved model is unchanged (same class, same variables).

    The fused path is taken only where it computes what Keras computes: TensorFlow backend, training a trainable
    layer on NHWC images, no mask, no renorm or synchronized statistics. The moving statistics follow Keras
    (biased batch variance; the kernel returns the unbiased one). Everything else calls Keras's own ``call``.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        yield
        return
    cls = keras.layers.BatchNormalization
    original = cls.__dict__["call"]

    def call(self, inputs, training=None, mask=None):
        if training is True and _fusable(self, inputs, mask):
            return _fused_batch_norm_call(self, inputs)
        return original(self, inputs, training=training, mask=mask)

    cls.call = call
    try:
        yield
    finally:
        cls.call = original


def _fusable(layer, inputs, mask) -> bool:
    return (layer.trainable and mask is None and not layer.renorm and not layer.synchronized
            and len(inputs.shape) == 4 and layer.axis in (-1, 3))


def _fused_batch_norm_call(layer, inputs):
    import tensorflow as tf

    x = tf.cast(inputs, "float32")  # as Keras: the statistics in float32 even under mixed precision
    channels = x.shape[-1]
    scale = tf.cast(layer.gamma, "float32") if layer.scale else tf.ones((channels,))
    offset = tf.cast(layer.beta, "float32") if layer.center else tf.zeros((channels,))
    y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, epsilon=layer.epsilon,
                                                         data_format="NHWC", is_training=True)
    shape = tf.shape(x)
    n = tf.cast(shape[0] * shape[1] * shape[2], "float32")
    variance = tf.where(n > 1, unbiased * (n - 1) / tf.maximum(n, 1), tf.zeros_like(unbiased))
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + tf.cast(mean, layer.moving_mean.dtype) * (1 - momentum))
    layer.moving_variance.assign(
        layer.moving_variance * momentum + tf.cast(variance, layer.moving_variance.dtype) * (1 - momentum))
    return tf.cast(y, layer.compute_dtype)


# --- optimizer ---------------------------------------------------------------------------------------------------

def uses_weight_decay(optimizer, variable) -> bool:
    """The optimizer's own decision whether ``variable`` is decayed (``Optimizer._use_weight_decay``): Keras has no
    public query for its exclusion list."""
    return bool(optimizer._use_weight_decay(variable))


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer under mixed_float16


def built_variables(optimizer) -> list:
    """The model variables ``optimizer`` was built with, in the order of its slots (``Optimizer._trainable_variables``):
    Keras exports no way to read them, and its ``stateless_apply`` (the JAX trainer's update) takes exactly these."""
    return list(_inner(optimizer)._trainable_variables)


def ema_pairs(optimizer) -> list[tuple]:
    """(model variable, its moving average) for an optimizer built with ``use_ema=True``: Keras keeps the averages
    in ``Optimizer._model_variables_moving_average``, in the order of ``_trainable_variables``, and exports no way
    to read them (its own ``keras.callbacks.SwapEMAWeights`` reaches in the same way)."""
    inner = _inner(optimizer)
    if not getattr(inner, "use_ema", False):
        return []
    return list(zip(inner._trainable_variables, inner._model_variables_moving_average, strict=True))


def keep_weights_when_fit_ends(optimizer) -> None:
    """Stop ``fit`` from overwriting the model's weights with their moving averages when it returns (Keras calls
    the public ``Optimizer.finalize_variable_values`` there, keras/src/backend/*/trainer.py). kres trains in
    segments, one ``fit`` each, and validates and saves the averages itself; an overwrite between segments would
    make a resumed run differ from an uninterrupted one."""
    _inner(optimizer).finalize_variable_values = lambda var_list: None


# --- TensorFlow --------------------------------------------------------------------------------------------------

def freeze_variables(concrete_function):
    """The function with its variables turned into constants (``tensorflow.python.framework.convert_to_constants``).
    TF exports no public freezing; the converter needs Keras 3 variables frozen, or the flatbuffer keeps
    VAR_HANDLE/READ_VARIABLE ops and calibration fails."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(concrete_function)


def interpreter_ops(interpreter) -> list[dict]:
    """Per-op details of an allocated LiteRT / tf.lite interpreter (``Interpreter._get_ops_details``): the public
    API lists tensors, not ops, and the benchmarks count the ops a delegate took."""
    return interpreter._get_ops_details()


def tensorflow_onednn_enabled() -> bool:
    """Whether the imported TensorFlow runs its oneDNN kernels. No public API reports it (tf.sysconfig describes
    the build, not the runtime switch). Checked on TensorFlow 2.21.0."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


# --- scikit-learn's digits ----------------------------------------------------------------------------------------
# The built-in dataset is the one ``sklearn.datasets.load_digits`` returns, but importing scikit-learn took 1.0 s of
# the README's main job (AMD EPYC Zen 3, 2 cores, December 2026), to read a 57 kB file. The file is read where
# load_digits reads it (``sklearn/datasets/data/digits.csv.gz``: 64 pixels and the label a row; pyproject allows
# scikit-learn 1.4 and later 1.x, checked on 1.9.1); where it is not there, through load_digits itself.

DIGITS_FILE = ("datasets", "data", "digits.csv.gz")


def digits_file() -> str | None:
    """The path of scikit-learn's digits file, found without importing scikit-learn; None where it is not there."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), *DIGITS_FILE)
    return path if os.path.isfile(path) else None


def load_digits() -> tuple:
    """``(images, labels)`` as ``sklearn.datasets.load_digits()`` gives them: 1797 float64 8x8 images of 0-16
    ink levels, and their int labels."""
    import numpy as np

    path = digits_file()
    if path is None:
        from sklearn.datasets import load_digits as sklearn_load_digits

        digits = sklearn_load_digits()
        return digits.images, digits.target
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


# --- torchvision -------------------------------------------------------------------------------------------------

TORCHVISION_META_MODULE = "torchvision._meta_registrations"


def stub_torchvision_operators() -> None:
    """Let a CUDA build of torchvision import under a CPU-only torch: its private module that registers compiled
    operators (``torchvision._meta_registrations``, torchvision 0.28) is replaced by an empty one; the model code
    that weights.py needs is pure Python. There is no public switch to skip the registration."""
    for name in [m for m in sys.modules if m.startswith("torchvision")]:
        del sys.modules[name]
    sys.modules[TORCHVISION_META_MODULE] = types.ModuleType(TORCHVISION_META_MODULE)


def set_per_channel_dense(converter, per_channel: bool) -> None:
    """Per-channel or per-tensor int8 weights for FULLY_CONNECTED.

    Since 2024 the converter quantizes dense weights per output channel by default (FULLY_CONNECTED v4..). NNAPI
    takes per-channel weights (TENSOR_QUANT8_SYMM_PER_CHANNEL) only in its convolutions, Coral's op table says
    FullyConnected takes "only the default format", and TFLite Micro added a runtime check because its kernels
    read such files wrong (tensorflow/tflite-micro#2602). The only switch is a private converter attribute, with
    no public option in TensorFlow 2.21 (checked on 2.21.0); a TF without it fails here by name instead of
    silently going per-channel.
    """
    name = "_experimental_disable_per_channel_quantization_for_dense_layers"
    if not hasattr(converter, name):
        raise KresError(f"this TensorFlow's TFLite converter has no {name}: per-tensor dense weights were "
                        "checked on TensorFlow 2.21")
    setattr(converter, name, not per_channel)


def quantize_calibrated(calibrated_model: bytes, io_dtype: str, per_channel_dense: bool,
                        denylisted_nodes: list[str]) -> bytes:
    """A calibrated TFLite model (``QuantizationDebugger.calibrated_model``) quantized to int8 with
    ``denylisted_nodes`` kept in float. The debugger's public ``get_nondebug_quantized_model`` makes the same call
    (``tensorflow.lite.python.convert.mlir_quantize``) with float32 input and output and per-channel dense weights,
    whatever its converter was set to; the mixed model must match the exported int8 model's (checked on
    TensorFlow 2.21.0)."""
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    io_type = tf.as_dtype(io_dtype)
    return mlir_quantize(calibrated_model, input_data_type=io_type, output_data_type=io_type,
                         disable_per_channel_for_dense_layers=not per_channel_dense,
                         denylisted_nodes=denylisted_nodes)


def _weight_var_lists(qat_model) -> list[tuple]:
    """(layer, its private ``_weight_vars`` list) for each tfmot ``QuantizeWrapper`` of ``qat_model``: the
    (weight, quantizer, range variables) entries the wrapper built and calls its quantizers from."""
    return [(layer, layer._weight_vars) for layer in qat_model.layers if hasattr(layer, "_weight_vars")]


def weight_quantizers(qat_model) -> list[tuple]:
    """Each weight quantizer of a tfmot-wrapped model as (layer name, weight, quantizer, its range variables), in
    the wrappers' order."""
    return [(layer.name, *entry) for layer, entries in _weight_var_lists(qat_model) for entry in entries]


def replace_weight_quantizers(qat_model, replacement) -> int:
    """Swap each weight quantizer of a tfmot-wrapped model for ``replacement(quantizer)`` where that is not None;
    returns how many were swapped. A ``QuantizeWrapper`` keeps the quantizers it built, with their range
    variables, in its private ``_weight_vars`` list and calls them from there; tfmot's public way to choose them, a
    ``QuantizeConfig`` per layer, would replace its default 8-bit scheme's configs (and their layer transforms)
    whole. Checked on tensorflow-model-optimization 0.8.0."""
    swapped = 0
    for _, entries in _weight_var_lists(qat_model):
        for index, (weight, quantizer, variables) in enumerate(entries):
            new = replacement(quantizer)
            if new is not None:
                entries[index] = (weight, new, variables)
                swapped += 1
    return swapped
