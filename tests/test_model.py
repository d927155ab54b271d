"""The ResNet builder: exact sizes, shapes, names, variants, serialization and keras.applications parity."""

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import KresError, resnet
from keras_resnet.meta import ModelMeta, meta_beside
from keras_resnet.specs import DEPTHS, NORMALIZATIONS
from keras_resnet.summary import summarize

# torchvision's parameter counts (all trainable) and keras.applications' totals.
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
KERAS_APPLICATIONS_TOTAL = {50: 25_636_712, 101: 44_707_176, 152: 60_419_944}
# Multiply-adds at 224 px, as torchvision reports them (the paper's Table 1 rounds v1 to 1.8/3.6/3.8/7.6/11.3).
TORCHVISION_GMACS = {18: 1.81, 34: 3.66, 50: 4.09, 101: 7.80, 152: 11.51}
PAPER_GMACS_V1 = {50: 3.8, 101: 7.6, 152: 11.3}


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.config.set_dtype_policy("float32")


def _images(n=2, size=32, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, channels)).astype("float32")


@pytest.mark.parametrize("depth", list(DEPTHS))
def test_v15_counts_and_macs_match_torchvision(depth):
    summary = summarize(resnet(depth))
    assert summary.depth == depth  # ResNet-50 was read as 34 (the same repeats), in meta.json and kres info too
    assert summary.trainable_params == TORCHVISION_PARAMS[depth]
    assert summary.macs / 1e9 == pytest.approx(TORCHVISION_GMACS[depth], rel=0.03)
    assert summary.weight_layers == depth
    assert summary.stages == {
        "stem": [56, 56, 64],
        **{f"C{i + 2}": [56 >> i, 56 >> i, 64 * 2**i * DEPTHS[depth].expansion] for i in range(4)},
    }
    assert summary.output_shape == [1000]


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_v1_totals_match_keras_applications(depth):
    summary = summarize(resnet(depth, variant="v1"))
    assert summary.total_params == KERAS_APPLICATIONS_TOTAL[depth]
    assert summary.macs / 1e9 == pytest.approx(PAPER_GMACS_V1[depth], rel=0.03)


def test_depth_table_drives_block_counts():
    for depth, spec in DEPTHS.items():
        names = {layer.name for layer in resnet(depth, input_shape=(32, 32, 3)).layers}
        for stage, repeats in zip(("conv2", "conv3", "conv4", "conv5"), spec.repeats):
            assert f"{stage}_block{repeats}_out" in names
            assert f"{stage}_block{repeats + 1}_out" not in names
        last_conv = "3" if spec.block == "bottleneck" else "2"
        assert f"conv5_block1_{last_conv}_conv" in names


def test_stable_keras_applications_names():
    names = [layer.name for layer in resnet(50, input_shape=(64, 64, 3)).layers]
    for expected in ["conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pad", "pool1_pool",
                     "conv2_block1_0_conv", "conv2_block1_0_bn", "conv2_block1_1_conv", "conv2_block3_out",
                     "conv3_block1_2_pad", "conv5_block3_out", "avg_pool", "predictions"]:
        assert expected in names
    basic = {layer.name for layer in resnet(18, input_shape=(64, 64, 3)).layers}
    assert "conv2_block1_0_conv" not in basic  # 64 -> 64, stride 1: identity shortcut
    assert "conv3_block1_0_conv" in basic  # stride 2: projection
    assert "conv3_block2_0_conv" not in basic


def test_v15_strides_the_3x3_and_v1_the_1x1():
    v15 = resnet(50, input_shape=(64, 64, 3))
    v1 = resnet(50, input_shape=(64, 64, 3), variant="v1")
    assert v15.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert v15.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert v1.get_layer("conv3_block1_1_conv").strides == (2, 2)
    assert v1.get_layer("conv3_block1_2_conv").strides == (1, 1)
    assert not v15.get_layer("conv1_conv").use_bias and v1.get_layer("conv1_conv").use_bias
    assert v15.get_layer("conv1_bn").epsilon == 1e-5 and v1.get_layer("conv1_bn").epsilon == 1.001e-5


def _randomize(model, seed=0):
    """Random weights everywhere, BN moving statistics included (variance kept positive)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
        elif layer.weights:
            layer.set_weights([rng.normal(0, 0.05, w.shape) for w in layer.get_weights()])


def test_keras_applications_parity_v1():
    theirs = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classifier_activation=None)
    _randomize(theirs)
    ours = resnet(50, variant="v1", input_shape=(64, 64, 3), classifier_activation=None)
    for layer in theirs.layers:
        if layer.weights:
            ours.get_layer(layer.name).set_weights(layer.get_weights())
    pixels = _images(2, 64)
    expected = theirs.predict(keras.applications.resnet.preprocess_input(pixels.copy()), verbose=0)
    got = ours.predict(pixels, verbose=0)
    assert np.abs(expected).max() > 1.0  # a non-trivial comparison
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.argmax(got, -1).tolist() == np.argmax(expected, -1).tolist()


def test_preprocessing_inside_the_model_is_torchvision_normalization():
    model = resnet(18, input_shape=(32, 32, 3))
    pre = keras.Model(model.input, model.get_layer("preprocess").output)
    pixels = _images(1, 32)
    norm = NORMALIZATIONS["torch"]
    expected = (pixels - np.array(norm.mean)) / np.array(norm.std)
    np.testing.assert_allclose(pre.predict(pixels, verbose=0), expected, rtol=1e-5, atol=1e-5)
    meta = ModelMeta.from_model(model)
    assert meta.normalization == "torch" and meta.variant == "v1.5" and meta.stem == "imagenet"
    np.testing.assert_allclose(meta.mean, norm.mean)
    np.testing.assert_allclose(meta.std, norm.std)
    assert meta.labels == [f"class_{i}" for i in range(1000)] and meta.depth == 18
    v1_meta = ModelMeta.from_model(resnet(50, variant="v1", input_shape=(32, 32, 3), stem="cifar"))
    assert (v1_meta.normalization, v1_meta.variant, v1_meta.stem) == ("caffe", "v1", "cifar")


@pytest.mark.parametrize(("include_top", "pooling", "shape"), [
    (True, "avg", (2, 7)),
    (True, "max", (2, 7)),
    (False, "avg", (2, 2048)),
    (False, "max", (2, 2048)),
    (False, None, (2, 2, 2, 2048)),
])
def test_pooling_and_top(include_top, pooling, shape):
    model = resnet(50, num_classes=7, input_shape=(64, 64, 3), include_top=include_top, pooling=pooling)
    out = model.predict(_images(2, 64), verbose=0)
    assert out.shape == shape
    if include_top:
        np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    names = {layer.name for layer in model.layers}
    assert ("max_pool" in names) == (pooling == "max")
    assert ("predictions" in names) == include_top


def test_labels_that_miscount_the_classes_are_refused_and_a_mismatch_counts_in_words(tmp_path):
    """from_model(model, labels=["a"]) of a 3-class model was saved, and refused only at kres predict, which said
    "(1 classes)"."""
    model = resnet(18, num_classes=3, input_shape=(32, 32, 3))
    with pytest.raises(KresError) as err:
        ModelMeta.from_model(model, labels=["a"])
    assert str(err.value) == ("labels name 1 class for a model of 3 classes: pass one label for each of its outputs, "
                              "in order")
    ModelMeta(**{**ModelMeta.from_model(model).to_dict(), "labels": ["a"]}).save(tmp_path)  # written by hand
    with pytest.raises(KresError) as err:
        meta_beside(tmp_path / "ft.keras", model)
    assert str(err.value) == (f"{tmp_path / 'meta.json'} describes another model (1 class) than ft.keras (3 classes): "
                              "put ft.keras in a folder of its own, or with the meta.json of the run that made it")


def test_cifar_stem_and_gray_input():
    model = resnet(18, num_classes=10, input_shape=(32, 32, 1), stem="cifar")
    assert model.get_layer("conv1_conv").kernel_size == (3, 3)
    assert "pool1_pool" not in {layer.name for layer in model.layers}
    assert summarize(model).stages["C5"] == [4, 4, 512]
    assert model.predict(_images(2, 32, channels=1), verbose=0).shape == (2, 10)
    assert ModelMeta.from_model(model).input_shape == [32, 32, 1]


def test_non_square_and_odd_sizes():
    model = resnet(18, num_classes=3, input_shape=(33, 47, 3))
    assert model.predict(np.zeros((1, 33, 47, 3), "float32"), verbose=0).shape == (1, 3)


def test_zero_init_residual_switch():
    on = resnet(50, input_shape=(32, 32, 3))
    off = resnet(50, input_shape=(32, 32, 3), zero_init_residual=False)
    assert not np.any(on.get_layer("conv2_block1_3_bn").gamma.numpy())
    assert np.all(off.get_layer("conv2_block1_3_bn").gamma.numpy() == 1)
    assert np.all(on.get_layer("conv2_block1_0_bn").gamma.numpy() == 1)  # the projection is not zeroed
    basic = resnet(18, input_shape=(32, 32, 3))
    assert not np.any(basic.get_layer("conv4_block2_2_bn").gamma.numpy())


def test_backbone_stage_outputs():
    features = keras_resnet.backbone(50, input_shape=(64, 64, 3))
    out = features.predict(_images(2, 64), verbose=0)
    assert {k: v.shape for k, v in out.items()} == {
        "C2": (2, 16, 16, 256), "C3": (2, 8, 8, 512), "C4": (2, 4, 4, 1024), "C5": (2, 2, 2, 2048)}
    classifier = resnet(18, num_classes=4, input_shape=(64, 64, 3))
    shared = keras_resnet.feature_model(classifier)
    assert shared.get_layer("conv1_conv") is classifier.get_layer("conv1_conv")  # same weights
    assert keras_resnet.stage_output_names(152)["C4"] == "conv4_block36_out"


def test_mixed_precision_outputs_stay_float32():
    keras.config.set_dtype_policy("mixed_float16")
    model = resnet(18, num_classes=5, input_shape=(32, 32, 3))
    assert model.get_layer("conv1_conv").compute_dtype == "float16"
    assert keras.ops.convert_to_numpy(model(_images(1))).dtype == np.float32
    no_top = resnet(18, input_shape=(32, 32, 3), include_top=False, pooling=None)
    assert keras.ops.convert_to_numpy(no_top(_images(1))).dtype == np.float32
    keras.config.set_dtype_policy("mixed_bfloat16")
    assert keras.ops.convert_to_numpy(resnet(18, num_classes=5, input_shape=(32, 32, 3))(_images(1))).dtype \
        == np.float32


@pytest.mark.parametrize("depth", list(DEPTHS))
def test_one_train_step_every_depth(depth):
    """A compiled (graph) step at 18, 34 and 50, which have each kind of block and stage; at 101 and 152, which
    only repeat the same blocks more often, the step runs eagerly: tracing and optimizing their graphs took
    14-18 s of the suite for nothing those depths add."""
    model = resnet(depth, num_classes=3, input_shape=(32, 32, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy", run_eagerly=depth > 50)
    before = {name: model.get_layer(name).get_weights()[0].copy() for name in ("conv1_conv", "predictions")}
    labels = np.eye(3, dtype="float32")[[0, 2]]
    loss = model.train_on_batch(_images(2, 32), labels)
    assert np.isfinite(loss)
    for name, value in before.items():
        assert not np.allclose(model.get_layer(name).get_weights()[0], value), f"{name} did not train"


def test_config_round_trip():
    model = resnet(34, num_classes=4, input_shape=(32, 32, 3), variant="v1", stem="cifar", dropout=0.1)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(clone.predict(_images(2), verbose=0), model.predict(_images(2), verbose=0),
                               rtol=1e-6, atol=1e-6)


def _run_python(code, env=None, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def fresh_process_differences(tmp_path_factory):
    """Both variants saved here, loaded back in one fresh process (one TensorFlow start-up): the largest
    difference from this process's predictions, by variant."""
    folder = tmp_path_factory.mktemp("reload")
    np.save(folder / "x.npy", _images(2))
    for variant in ("v1.5", "v1"):
        model = resnet(18, num_classes=3, input_shape=(32, 32, 3), variant=variant)
        _randomize(model)
        model.save(folder / f"{variant}.keras")
        np.save(folder / f"{variant}.npy", model.predict(_images(2), verbose=0))
    out = _run_python(f"""
        import numpy as np, keras
        x = np.load({str(folder / 'x.npy')!r})
        for variant in ("v1.5", "v1"):
            m = keras.saving.load_model({str(folder)!r} + f"/{{variant}}.keras", safe_mode=True)
            d = np.abs(m.predict(x, verbose=0) - np.load({str(folder)!r} + f"/{{variant}}.npy"))
            print("MAXDIFF", variant, float(d.max()))
    """)
    return {line.split()[1]: float(line.split()[2]) for line in out.splitlines() if line.startswith("MAXDIFF")}


@pytest.mark.parametrize("variant", ["v1.5", "v1"])
def test_keras_file_reloads_in_a_fresh_process(fresh_process_differences, variant):
    assert fresh_process_differences[variant] < 1e-6


def test_jax_backend_builds_and_trains(tmp_path):
    out = _run_python("""
        import numpy as np, keras
        assert keras.backend.backend() == "jax"
        from keras_resnet import resnet
        m = resnet(18, num_classes=3, input_shape=(32, 32, 3))
        m.compile(optimizer="sgd", loss="categorical_crossentropy", jit_compile=True)
        x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
        y = np.eye(3, dtype="float32")[[0, 1]]
        before = m.get_layer("conv1_conv").get_weights()[0].copy()
        h = m.fit(x, y, epochs=1, batch_size=2, verbose=0)
        changed = not np.allclose(before, m.get_layer("conv1_conv").get_weights()[0])
        print("RESULT", m.predict(x, verbose=0).shape, np.isfinite(h.history["loss"][0]), changed)
    """, env={"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})
    assert "RESULT (2, 3) True True" in out


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"depth": 42}, "unsupported depth 42: choose one of 18, 34, 50, 101, 152"),
    ({"depth": 18, "input_shape": (16, 16, 3)}, "image size 16 is too small: use 32 px or more"),
    ({"depth": 18, "input_shape": (32, 32, 2)}, "input must have 1 or 3 channels"),
    ({"depth": 18, "pooling": "median"}, "unknown pooling 'median'"),
    ({"depth": 18, "include_top": True, "pooling": None}, "include_top needs pooling"),
    ({"depth": 18, "variant": "v2"}, "unknown variant 'v2': choose one of v1.5, v1"),
    ({"depth": 18, "stem": "deep"}, "unknown stem 'deep'"),
    ({"depth": 18, "num_classes": 0}, "num_classes must be a positive integer"),
    # each was built or a TypeError before
    ({"depth": 18.9}, "unsupported depth 18.9: choose one of 18, 34, 50, 101, 152"),  # built a ResNet-18
    ({"depth": 18, "num_classes": True}, "num_classes must be a positive integer, got True"),  # built 1 class
    ({"depth": 18, "input_shape": 224}, "input_shape must be (height, width, channels), got 224"),
    ({"depth": 18, "input_shape": (3, 224, 224)},
     "input_shape is (height, width, channels), channels last: got (3, 224, 224), use (224, 224, 3)"),
])
def test_clear_errors(kwargs, message):
    with pytest.raises(KresError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resnet(**kwargs)


def test_an_argument_error_is_a_value_error():
    """``except ValueError`` (as around Keras's and NumPy's argument errors) missed kres's; ``except KresError``
    still catches it, and keras_resnet exports it."""
    try:
        resnet(19)
    except ValueError as err:
        caught = err
    else:
        pytest.fail("resnet(19) raised nothing")
    assert type(caught) is KresError and keras_resnet.KresError is KresError
    assert str(caught) == "unsupported depth 19: choose one of 18, 34, 50, 101, 152"


_SHAPE_IN_NUMBERS = "input_shape must be (height, width, channels) in whole numbers (None for any size), got "
_NO_WEIGHTS = ("names no weights: pass the path of a .keras, .weights.h5, .h5 (keras.applications layout), .pth, "
               ".safetensors or .npz (ImageNet weights: torchvision's "
               "https://download.pytorch.org/models/resnet18-f37072fd.pth), or None to start from random weights")


@pytest.mark.parametrize(("kwargs", "message"), [
    # each was a TypeError or ValueError traceback from Python or Keras, or (the flags) taken as true
    ({"input_shape": ("a", 32, 3)}, _SHAPE_IN_NUMBERS + "('a', 32, 3)"),
    ({"input_shape": (32.5, 32, 3)}, _SHAPE_IN_NUMBERS + "(32.5, 32, 3)"),
    ({"input_shape": (32, 32, 3.0)}, _SHAPE_IN_NUMBERS + "(32, 32, 3.0)"),
    ({"input_shape": (True, 32, 3)}, _SHAPE_IN_NUMBERS + "(True, 32, 3)"),
    ({"input_shape": "abc"}, "input_shape must be (height, width, channels), got 'abc'"),  # "got c" channels
    ({"weights": True}, "weights=True " + _NO_WEIGHTS),
    ({"weights": 0}, "weights=0 " + _NO_WEIGHTS),
    ({"variant": ["v1"]}, "unknown variant ['v1']: choose one of v1.5, v1"),
    ({"dropout": "a"}, "dropout must be a rate from 0 up to (not including) 1, got 'a'"),
    ({"dropout": 1.5}, "dropout must be a rate from 0 up to (not including) 1, got 1.5"),
    ({"classifier_activation": 3}, "unknown classifier_activation 3: pass the name of a Keras activation "
                                   "('softmax', 'sigmoid') or None for logits"),
    ({"name": 3}, "name must be a string without '/', got 3"),
    ({"include_top": "no"}, "include_top must be True or False, got 'no'"),
    ({"zero_init_residual": "no"}, "zero_init_residual must be True or False, got 'no'"),
])
def test_arguments_of_the_wrong_type_are_one_line(kwargs, message):
    with pytest.raises(KresError) as err:
        resnet(18, input_shape=kwargs.pop("input_shape", (32, 32, 3)), **kwargs)
    assert str(err.value) == message


def test_builders_take_numpy_integers_and_show_their_options():
    """num_classes=np.int64(10) (from y.max() + 1) was refused; ResNet18's help showed (**kwargs)."""
    model = resnet(np.int64(18), num_classes=np.int64(10), input_shape=(32, 32, 3))
    assert model.output_shape == (None, 10) and model.name == "resnet18"
    parameters = inspect.signature(keras_resnet.ResNet18).parameters
    assert list(parameters)[:3] == ["num_classes", "input_shape", "include_top"] and "depth" not in parameters
    with pytest.raises(KresError, match=r"^backbone\(\) outputs C2\.\.C5, with no top or pooling: leave out "
                                        r"include_top and pooling, or build resnet\(depth, include_top=\.\.\., "):
        keras_resnet.backbone(18, include_top=True, pooling="avg")  # a TypeError: "got multiple values"


def test_summary_of_a_backbone_and_of_a_model_of_any_size():
    """A backbone's output_shape lost C2 and kept the batch of the others; a model of any size was a TypeError."""
    assert summarize(keras_resnet.backbone(18, input_shape=(64, 64, 3))).output_shape == [
        [16, 16, 64], [8, 8, 128], [4, 4, 256], [2, 2, 512]]
    with pytest.raises(KresError, match=re.escape("resnet18 takes any image size (input (None, None, None, 3)): "
                                                  "summarize a model built with a fixed input_shape")):
        summarize(resnet(18, input_shape=(None, None, 3)))


def test_summary_json_is_serializable():
    data = summarize(resnet(18, input_shape=(64, 64, 3))).to_dict()
    assert json.loads(json.dumps(data))["stages"]["C5"] == [2, 2, 512]
