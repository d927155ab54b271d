"""Each private name keras_resnet/_compat.py relies on is still where it expects it; a failure names the installed
Keras and TensorFlow versions, so whoever upgrades knows which entry to revisit."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from processes import kres_env

from keras_resnet import _compat

MOVED = f"moved under {_compat.versions()}: update keras_resnet/_compat.py"


def _tiny(flip: bool = False) -> keras.Model:
    inputs = keras.Input((4, 4, 3), name="image")
    x = inputs[..., ::-1] if flip else inputs
    x = keras.layers.Conv2D(2, 1, name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(x))


def test_graph_nodes_come_inputs_first():
    names = [node.operation.name for node in _compat.graph_nodes(_tiny())]
    assert names == ["image", "conv", "pool", "dense"], f"Functional._nodes_by_depth {MOVED}"
    node = list(_compat.graph_nodes(_tiny()))[1]
    assert hasattr(node, "arguments") and len(node.input_tensors) == 1, f"Node.arguments/input_tensors {MOVED}"


def test_a_slice_is_a_getitem_op():
    assert sum(_compat.is_getitem(op) for op in _tiny(flip=True).operations) == 1, f"GetItem {MOVED}"
    assert not any(_compat.is_getitem(op) for op in _tiny().operations)


def test_multi_worker_fit_patches_only_inside_the_block():
    from keras.src.backend.tensorflow import trainer as tf_trainer

    model = _tiny()
    assert _compat.has_multi_worker_hooks(model), f"reduce_per_replica / Trainer._symbolic_build {MOVED}"
    original = tf_trainer.reduce_per_replica
    spec = (tf.TensorSpec((None, 4, 4, 3)), tf.TensorSpec((None, 2)))
    with _compat.multi_worker_fit(model, spec, tf.distribute.get_strategy().scope):
        assert tf_trainer.reduce_per_replica is not original
        assert "_maybe_symbolic_build" in vars(model)
    assert tf_trainer.reduce_per_replica is original
    assert "_maybe_symbolic_build" not in vars(model)


def test_weight_decay_query_follows_the_exclusion_list():
    model = _tiny()
    optimizer = keras.optimizers.AdamW(1e-3, weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if "bias" in v.path])
    optimizer.build(model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if _compat.uses_weight_decay(optimizer, v)}
    assert decayed == {"conv/kernel", "dense/kernel"}, f"Optimizer._use_weight_decay {MOVED}"


def test_built_variables_are_those_the_optimizer_was_built_with_in_its_order():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"), keras.layers.Dense(2, name="b")])
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables[::-1])
    built = [v.path.split("/", 1)[1] for v in _compat.built_variables(optimizer)]  # after "sequential/"
    assert built == ["b/bias", "b/kernel", "a/bias", "a/kernel"], f"Optimizer._trainable_variables {MOVED}"


def test_freeze_variables_leaves_no_variable_ops():
    variable = tf.Variable(3.0)

    @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)])
    def times(x):
        return x * variable

    frozen = _compat.freeze_variables(times.get_concrete_function())
    ops = {op.type for op in frozen.graph.get_operations()}
    assert not ops & {"VarHandleOp", "ReadVariableOp"}, f"convert_variables_to_constants_v2 {MOVED}"
    assert np.allclose(frozen(tf.constant([1.0, 2.0]))[0].numpy(), [3.0, 6.0])


def test_interpreter_lists_its_ops():
    from keras_resnet.runtime import tflite_interpreter

    converter = tf.lite.TFLiteConverter.from_keras_model(_tiny())
    interpreter = tflite_interpreter(converter.convert())
    names = [op["op_name"] for op in _compat.interpreter_ops(interpreter)]
    assert "CONV_2D" in names and "FULLY_CONNECTED" in names, f"Interpreter._get_ops_details {MOVED}"


def test_torchvision_still_has_the_module_the_stub_replaces():
    spec = importlib.util.find_spec("torchvision")  # not imported: under a CPU-only torch that is what fails
    if spec is None:
        pytest.skip("torchvision is not installed")
    module = _compat.TORCHVISION_META_MODULE.rpartition(".")[2]
    assert (Path(spec.origin).parent / f"{module}.py").is_file(), (
        f"{_compat.TORCHVISION_META_MODULE} is gone in torchvision {importlib.metadata.version('torchvision')}: "
        "update keras_resnet/_compat.stub_torchvision_operators")


def test_the_digits_file_is_read_as_load_digits_reads_it_without_importing_scikit_learn(monkeypatch):
    from sklearn.datasets import load_digits

    sklearn = f"scikit-learn {importlib.metadata.version('scikit-learn')}"
    assert _compat.digits_file() is not None, f"digits.csv.gz moved in {sklearn}: update keras_resnet/_compat.py"
    expected = load_digits()
    images, labels = _compat.load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == expected.images.dtype, (images.shape, images.dtype)
    np.testing.assert_array_equal(images, expected.images, err_msg=sklearn)
    np.testing.assert_array_equal(labels, expected.target, err_msg=sklearn)
    assert labels.dtype == expected.target.dtype, labels.dtype
    assert list(expected.target_names) == list(range(10))  # data.py names the classes "0" to "9"
    monkeypatch.setattr(_compat, "digits_file", lambda: None)  # the file gone: scikit-learn's own reader
    fallback = _compat.load_digits()
    np.testing.assert_array_equal(fallback[0], images)
    np.testing.assert_array_equal(fallback[1], labels)
    code = "import sys; from keras_resnet import _compat; _compat.load_digits(); print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            timeout=120).stdout
    assert "'sklearn'" not in loaded and "'numpy'" in loaded, loaded[-500:]


def test_onednn_switch_is_readable():
    assert isinstance(_compat.tensorflow_onednn_enabled(), bool), f"_pywrap_util_port.IsMklEnabled {MOVED}"


def test_tfmot_wrappers_still_keep_their_weight_quantizers_where_they_are_swapped():
    import tensorflow_model_optimization as tfmot
    import tf_keras

    inputs = tf_keras.Input((4, 4, 3))
    x = tf_keras.layers.Conv2D(2, 3, name="conv")(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    model = tfmot.quantization.keras.quantize_model(tf_keras.Model(inputs, tf_keras.layers.Dense(2)(x)))
    seen = []
    swapped = _compat.replace_weight_quantizers(model, lambda quantizer: seen.append(quantizer) or "new")
    moved = f"QuantizeWrapper._weight_vars {MOVED} (tensorflow-model-optimization " \
            f"{importlib.metadata.version('tensorflow-model-optimization')})"
    assert swapped == len(seen) == 2, moved  # the convolution's kernel and the dense layer's
    assert [quantizer for _, quantizer, _ in model.get_layer("quant_conv")._weight_vars] == ["new"], moved


def test_the_converter_still_has_the_per_tensor_dense_switch():
    converter = tf.lite.TFLiteConverter.from_keras_model(_tiny())
    _compat.set_per_channel_dense(converter, False)
    assert converter._experimental_disable_per_channel_quantization_for_dense_layers is True, \
        f"TFLiteConverter._experimental_disable_per_channel_quantization_for_dense_layers {MOVED}"


def test_the_calibrated_model_quantizer_still_takes_the_io_type_and_dense_switch():
    import inspect

    from tensorflow.lite.python.convert import mlir_quantize

    wanted = {"input_data_type", "output_data_type", "disable_per_channel_for_dense_layers", "denylisted_nodes"}
    assert wanted <= set(inspect.signature(mlir_quantize).parameters), \
        f"tensorflow.lite.python.convert.mlir_quantize's parameters {MOVED}"


def _bn_net() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Activation("relu")(x))
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(x))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    return model


def _trained(fused: bool) -> keras.Model:
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (8, 6, 6, 3)).astype("float32")
    y = rng.integers(0, 3, 8)
    model = _bn_net()
    with _compat.fused_batch_norm() if fused else contextlib.nullcontext():
        for _ in range(3):
            model.train_on_batch(x, y)
    return model


def test_fused_batch_norm_trains_as_keras_does():
    original = keras.layers.BatchNormalization.call
    keras_model, fused_model = _trained(fused=False), _trained(fused=True)
    for ours, theirs in zip(fused_model.weights, keras_model.weights, strict=True):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-5, err_msg=ours.path)
    assert not np.allclose(fused_model.get_layer("bn").moving_variance.numpy(), 1.0), "the statistics moved"
    assert keras.layers.BatchNormalization.call is original, "the patch outlived its block"


def test_fused_batch_norm_uses_the_fused_kernel_and_the_biased_variance():
    layer = keras.layers.BatchNormalization(momentum=0.0, epsilon=1e-3)
    x = np.random.default_rng(1).normal(1.0, 2.0, (2, 3, 3, 4)).astype("float32")

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(images, training=True) ** 2)
        return tape.gradient(loss, layer.trainable_variables)

    with _compat.fused_batch_norm():
        step(x)
        graph = step.get_concrete_function(tf.TensorSpec(x.shape)).graph
    kernels = {op.type for op in graph.get_operations()}
    assert {"FusedBatchNormV3", "FusedBatchNormGradV3"} <= kernels, f"fused_batch_norm took no fused kernel: {MOVED}"
    np.testing.assert_allclose(layer.moving_mean.numpy(), x.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), x.var(axis=(0, 1, 2)), rtol=1e-4)  # n, not n - 1


def _ema_fit(keep: bool):
    """Two SGD steps of ``_tiny`` by ``fit`` with an EMA of momentum 0.5, and the same two steps without EMA by
    ``train_on_batch`` (which never finalizes): the EMA model, its optimizer, and the plain run's weights after
    each step."""
    x = np.linspace(-1, 1, 2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3)
    y = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    keras.utils.set_random_seed(0)
    plain = _tiny()
    plain.compile(keras.optimizers.SGD(0.5), "mse")
    keras.utils.set_random_seed(0)
    model = _tiny()
    optimizer = keras.optimizers.SGD(0.5, use_ema=True, ema_momentum=0.5)
    model.compile(optimizer, "mse")
    if keep:
        _compat.keep_weights_when_fit_ends(optimizer)
    steps = []
    for _ in range(2):
        plain.train_on_batch(x, y)
        steps.append(np.array(plain.get_layer("dense").kernel.numpy(), copy=True))  # .numpy() may alias
    model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0)
    return model, optimizer, steps


def test_ema_averages_are_readable_and_fit_keeps_the_weights():
    model, optimizer, (first, second) = _ema_fit(keep=True)
    pairs = _compat.ema_pairs(optimizer)
    assert [v.path for v, _ in pairs] == [v.path for v in model.trainable_variables], \
        f"Optimizer._trainable_variables {MOVED}"
    average = dict((v.path, a) for v, a in pairs)["dense/kernel"]
    # the first step's average is the weights themselves; then 0.5 * average + 0.5 * weights
    np.testing.assert_allclose(np.asarray(average), 0.5 * first + 0.5 * second, rtol=1e-6,
                               err_msg=f"Optimizer._model_variables_moving_average {MOVED}")
    np.testing.assert_allclose(model.get_layer("dense").kernel.numpy(), second, rtol=1e-6,
                               err_msg=f"fit's finalize_variable_values {MOVED}")
    assert _compat.ema_pairs(keras.optimizers.SGD(0.1)) == []


def test_fit_still_overwrites_the_weights_with_the_averages_unless_told_not_to():
    model, _, (first, second) = _ema_fit(keep=False)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(model.get_layer("dense").kernel.numpy(), 0.5 * first + 0.5 * second, rtol=1e-6,
                               err_msg="fit no longer finalizes EMA weights: keep_weights_when_fit_ends may go")


_IMPORT_KERAS = """
import sys
from keras_resnet import _compat
from kres.main import _import_backend_quietly
import gc
_import_backend_quietly()
print(sorted(name for name in _compat.KERAS_OPTIONAL_IMPORTS + _compat.TENSORFLOW_OPTIONAL_IMPORTS
             if name in sys.modules))
print("frozen:", gc.get_freeze_count() > 100_000)
import keras
print(tuple(keras.layers.Dense(2)(keras.ops.ones((1, 3))).shape))
from sklearn.datasets import load_digits
import matplotlib.pyplot
print(load_digits().images.shape, matplotlib.pyplot.__name__)
from keras.src.saving import saving_lib
print("skip lists cached:", hasattr(saving_lib.get_attr_skipset, "cache_info"))
import importlib.util
if importlib.util.find_spec("jax") is not None:  # the test extra installs it, as a user's JAX backend does
    import jax.numpy
    print(jax.numpy.ones(2).shape)
else:
    print("no JAX installed")
"""


def test_keras_is_imported_without_scikit_learn_pyplot_and_jax_which_import_as_usual_after():
    """How kres commands import Keras (in a process of its own: the suite imported them long ago), then move what
    the import made out of the garbage collector's way."""
    done = subprocess.run([sys.executable, "-c", _IMPORT_KERAS], env=kres_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    skipped, frozen, dense, after, cached, jax_after = done.stdout.splitlines()
    assert skipped == "[]", f"Keras or TensorFlow imports {skipped} whatever is skipped: {MOVED}"
    assert frozen == "frozen: True"
    assert dense == "(1, 2)" and after == "(1797, 8, 8) matplotlib.pyplot"
    assert jax_after in ("(2,)", "no JAX installed")
    assert cached == "skip lists cached: True"  # _compat.cache_saving_skipsets, as every kres command starts


def test_only_the_checked_keras_versions_are_imported_without_their_optional_imports():
    assert _compat.skips_keras_optional_imports("3.15.1")
    assert not _compat.skips_keras_optional_imports("3.16.0")
    assert not _compat.skips_keras_optional_imports("3.13.2")
    assert _compat.skips_keras_optional_imports(keras.__version__), (
        f"Keras {keras.__version__} is imported with its optional imports: check that it still guards them, and add "
        "it to _compat.KERAS_OPTIONAL_IMPORTS_CHECKED")


def test_only_the_checked_tensorflow_versions_are_imported_without_jax():
    """TensorFlow 2.21's tensorflow/lite/python/util.py imports ``jax.jit`` inside try/except ImportError."""
    import tensorflow as tf

    with pytest.MonkeyPatch.context() as patch:
        patch.delitem(sys.modules, "tensorflow")  # as before the import
        patch.setenv("KERAS_BACKEND", "tensorflow")
        assert _compat.skips_tensorflow_optional_imports("2.21.0")
        assert not _compat.skips_tensorflow_optional_imports("2.22.0")
        assert not _compat.skips_tensorflow_optional_imports(None)
        assert _compat.skips_tensorflow_optional_imports(tf.__version__), (
            f"TensorFlow {tf.__version__} is imported with jax: check that tensorflow/lite/python/util.py still "
            "guards it, and add the version to _compat.TENSORFLOW_OPTIONAL_IMPORTS_CHECKED")
        patch.setenv("KERAS_BACKEND", "jax")  # whose Keras imports JAX itself
        assert not _compat.skips_tensorflow_optional_imports("2.21.0")
    assert not _compat.skips_tensorflow_optional_imports("2.21.0")  # TensorFlow is imported already: nothing to skip


@pytest.mark.parametrize(("backend", "keras_json", "skipped"), [
    ("tensorflow", None, True), ("jax", None, True), ("torch", None, False),
    (None, '{"backend": "torch"}', False), (None, '{"backend": "jax"}', True), (None, None, True),
])
def test_keras_optional_imports_are_skipped_only_under_the_backends_checked(monkeypatch, tmp_path, backend,
                                                                            keras_json, skipped):
    """Under KERAS_BACKEND=torch the skip failed `import keras` itself ("No module named 'sklearn' (skipped while
    importing Keras)"): torch._dynamo looks scikit-learn up as it imports."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    if keras_json:
        (tmp_path / "keras.json").write_text(keras_json)
    if backend:
        monkeypatch.setenv("KERAS_BACKEND", backend)
    else:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert _compat.skips_keras_optional_imports("3.15.1") is skipped


def test_kres_info_under_the_torch_backend():
    pytest.importorskip("torch")
    kres = Path(sys.executable).parent / "kres"
    done = subprocess.run([kres, "info", "--depth", "18", "--image-size", "32", "--json"],
                          env=kres_env(KERAS_BACKEND="torch"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["total_params"] == 11_699_112


def test_keras_saving_rebuilds_its_skip_lists_every_time_and_kres_computes_them_once(tmp_path):
    """Keras 3.15.1 stores each skip list under "saving_attr_skipset_<type>" and looks it up under
    "saving_attr_skiplist_<type>": every save and load built a bare Layer per layer again. When the first assert
    fails, Keras caches them itself and ``_compat.cache_saving_skipsets`` can go."""
    import threading

    from keras.src.saving import saving_lib

    original = getattr(saving_lib, "get_attr_skipset", None)
    assert original is not None, f"keras.src.saving.saving_lib.get_attr_skipset {MOVED}"
    keras_own = getattr(original, "__wrapped__", original)
    lists = []
    reader = threading.Thread(target=lambda: lists.extend([keras_own("Layer"), keras_own("Layer")]))
    reader.start()  # Keras's cache is per thread: a fresh one starts empty
    reader.join()
    assert lists[0] is not lists[1], f"Keras now caches its saving skip lists ({_compat.versions()}): drop the fix"
    assert lists[0] == lists[1] and "trainable_weights" in lists[0]
    try:
        saving_lib.get_attr_skipset = keras_own
        _compat.cache_saving_skipsets()
        cached = saving_lib.get_attr_skipset
        assert cached is not keras_own, f"keras.src.saving.saving_lib.get_attr_skipset {MOVED}"
        assert cached("Layer") is cached("Layer") and cached("Layer") == lists[0]
        for kind in ("Functional", "Optimizer", "Metric", "Loss"):
            assert cached(kind) is cached(kind) and cached(kind) == keras_own(kind), kind
        _compat.cache_saving_skipsets()
        assert saving_lib.get_attr_skipset is cached  # wrapped once only
        model, other = _tiny(), _tiny()
        model.save_weights(tmp_path / "tiny.weights.h5")
        other.load_weights(tmp_path / "tiny.weights.h5")
        for a, b in zip(model.get_weights(), other.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    finally:
        saving_lib.get_attr_skipset = original
