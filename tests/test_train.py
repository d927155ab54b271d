"""Training pieces in-process: schedule values, weight-decay exclusion, precision, recipes, error cases."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import keras
import numpy as np
import pytest
from processes import kres_env

from keras_resnet import _compat, callbacks, optim, qat
from keras_resnet.data import DataConfig
from keras_resnet.distribute import Placement, check_global_batch, cpu_precision_note, resolve_precision
from keras_resnet.errors import KresError
from keras_resnet.model import resnet
from keras_resnet.train import TrainConfig, resolve, train
from kres.main import main


def test_schedule_warmup_then_cosine_exact_values():
    schedule = optim.warmup_cosine(0.4, warmup_steps=10, total_steps=110)
    values = {step: float(schedule(step)) for step in (0, 1, 5, 10, 60, 85, 110, 500)}
    assert values[0] == 0.0
    assert values[1] == pytest.approx(0.04, abs=1e-7)
    assert values[5] == pytest.approx(0.2, abs=1e-7)
    assert values[10] == pytest.approx(0.4, abs=1e-7)
    assert values[60] == pytest.approx(0.2, abs=1e-7)  # half-way through the 100 decay steps: cos(pi/2)
    assert values[85] == pytest.approx(0.2 * (1 + math.cos(math.pi * 0.75)), abs=1e-7)
    assert values[110] == pytest.approx(0.0, abs=1e-7)
    assert values[500] == pytest.approx(0.0, abs=1e-7)
    no_warmup = optim.warmup_cosine(0.1, warmup_steps=0, total_steps=4)
    assert [round(float(no_warmup(s)), 6) for s in range(5)] == [0.1, 0.085355, 0.05, 0.014645, 0.0]


def test_learning_rate_scales_with_global_batch():
    assert optim.scaled_learning_rate(0.1, 256) == pytest.approx(0.1)
    assert optim.scaled_learning_rate(0.1, 1024) == pytest.approx(0.4)
    assert optim.scaled_learning_rate(0.8, 64) == pytest.approx(0.2)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_weight_decay_only_on_conv_and_dense_kernels(name):
    # v1 has conv biases too, so the exclusion of biases is exercised beside BN gamma/beta.
    model = resnet(18, num_classes=10, input_shape=(32, 32, 3), variant="v1")
    opt = optim.make_optimizer(name, 0.1, 0.01, model)
    kernels = {v.path for v in model.trainable_variables if v.path.endswith("/kernel")}
    assert len(kernels) == 21  # 17 convs on the main path + 3 projection shortcuts + the classifier
    assert optim.decayed_variable_names(opt, model) == kernels
    # And in effect: a step with zero gradients moves exactly the decayed variables.
    before = {v.path: np.array(v) for v in model.trainable_variables}
    opt.apply([keras.ops.zeros_like(v) for v in model.trainable_variables], model.trainable_variables)
    moved = {v.path for v in model.trainable_variables if not np.array_equal(before[v.path], np.array(v))}
    assert moved == kernels
    kernel = model.get_layer("conv1_conv").kernel
    np.testing.assert_allclose(np.array(kernel), before[kernel.path] * (1 - 0.1 * 0.01), rtol=1e-6)


def _small_model() -> keras.Model:
    """Conv kernels (decayed), BN gamma/beta and a bias (not decayed), as in a ResNet; the same weights each call."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, use_bias=False)(inputs))
    return keras.Model(inputs, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x)))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="JAX compiles the whole step")
@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_update_is_one_xla_computation_landing_where_stock_keras_lands(name):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shapes = [tuple(v.shape) for v in _small_model().trainable_variables]
    steps = [[tf.constant(rng.normal(size=s).astype("float32")) for s in shapes] for _ in range(3)]
    states, marked = [], []
    for compiled in (True, False):
        model = _small_model()
        opt = optim.make_optimizer(name, optim.warmup_cosine(0.2, 1, 10), 5e-4, model, ema=0.9,
                                   compiled_update=compiled)
        step = tf.function(lambda grads: opt.apply(grads, model.trainable_variables))  # noqa: B023 (used in this loop)
        for grads in steps:
            step(grads)
        graph = step.get_concrete_function(steps[0]).graph.as_graph_def()
        marked.append(any(node.attr["_XlaMustCompile"].b for node in graph.node))
        states.append([np.array(v) for v in model.trainable_variables] + [np.array(v) for v in opt.variables])
        assert int(opt.iterations) == 3
    assert marked == [True, False]  # the update is a call to a function XLA must compile; stock Keras has none
    assert len(states[0]) == len(states[1])
    for ours, stock in zip(*states):  # decay, momentum (or Adam's moments) and the average, within f32 rounding
        np.testing.assert_allclose(ours, stock, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="JAX compiles the whole step")
def test_compiled_update_inside_float16_loss_scaling_applies_the_step_stock_keras_applies():
    # Loss scaling calls the inner optimizer's apply inside a cond; a scale of 1 keeps float16 gradients finite,
    # so the compiled branch really runs.
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    labels = np.eye(4, dtype="float32")[[0, 3]]
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_float16")
    states = []
    try:
        for compiled in (True, False):
            model = _small_model()
            opt = optim.make_optimizer("sgd", 0.1, 5e-4, model, ema=0.9, compiled_update=compiled)
            model.compile(optimizer=keras.optimizers.LossScaleOptimizer(opt, initial_scale=1.0),
                          loss="categorical_crossentropy")
            before = [np.array(v) for v in model.trainable_variables]
            model.train_on_batch(images, labels)
            assert int(opt.iterations) == 1
            assert all(not np.array_equal(b, np.array(v)) for b, v in zip(before, model.trainable_variables))
            states.append([np.array(v) for v in model.trainable_variables] + [np.array(v) for v in opt.variables])
    finally:
        keras.config.set_dtype_policy(previous)
    for ours, stock in zip(*states):
        np.testing.assert_allclose(ours, stock, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="JAX compiles the whole step")
def test_a_run_compiles_the_update_from_64_steps_and_says_so_in_its_config(tmp_path, monkeypatch):
    """Compiling the update costs its first step 0.6-0.9 s, which a run of fewer steps does not win back."""
    from keras_resnet import train as train_module

    cfg, data, _ = resolve(TrainConfig(depth=18, epochs=1, batch_size=2, output=str(tmp_path / "run")),
                           DataConfig(dataset="synthetic", synthetic_size=128))

    def compiles(images: int, placement: Placement) -> bool:
        datasets = types.SimpleNamespace(num_train=images, class_names=["a", "b"])
        return train_module._plan(cfg, placement, datasets, "float32", False).compiled_update

    assert optim.COMPILED_UPDATE_MIN_STEPS == 64
    assert [compiles(126, _placement("cpu")), compiles(128, _placement("cpu"))] == [False, True]  # 63, 64 steps
    assert not compiles(256, Placement(None, "mirrored", 2, "cpu", None))  # a strategy keeps Keras's update
    compiled = []
    compile_update = optim.compile_update
    monkeypatch.setattr(optim, "compile_update", lambda opt: (compiled.append(opt), compile_update(opt)))
    result = train(cfg, data, stream=io.StringIO())
    resolved = json.loads((result.run_dir / "config.json").read_text())["resolved"]
    assert (result.steps, resolved["total_steps"], resolved["compiled_update"], len(compiled)) == (64, 64, True, 1)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_a_step_with_float32_outputs(policy):
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy)
    try:
        model = resnet(18, num_classes=4, input_shape=(32, 32, 3))
        opt = optim.make_optimizer("sgd", 0.01, 1e-4, model, ema=0.5)
        model.compile(optimizer=opt, loss=keras.losses.CategoricalCrossentropy())
        assert model.get_layer("conv1_conv").compute_dtype == policy.split("_")[1]
        images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
        labels = np.eye(4, dtype="float32")[[0, 3]]
        loss = model.train_on_batch(images, labels)
        assert math.isfinite(float(loss))
        if policy == "mixed_float16":  # loss scaling: the step is applied, or skipped with a smaller scale
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
            scale = float(model.optimizer.dynamic_scale)
            assert (int(model.optimizer.iterations), scale < 2.0**15) in ((1, False), (0, True))
        else:
            assert int(model.optimizer.iterations) == 1
        assert keras.backend.standardize_dtype(model(images).dtype) == "float32"
        # the weight average is found through float16's loss-scale wrapper too, and kept in float32
        assert [v.path for v, _ in _compat.ema_pairs(model.optimizer)] == [v.path for v in model.trainable_variables]
        assert {w.dtype for w in callbacks.saved_weights(model)} == {np.dtype("float32")}
    finally:
        keras.config.set_dtype_policy(previous)


def _placement(accelerator, capability=None):
    return Placement(None, "default", 1, accelerator, capability)


def test_a_mixed_policy_on_a_cpu_under_tensorflow_is_one_line_that_names_float32():
    cpu = _placement("cpu")
    costs = {"mixed_float16": ("far slower than float32 (about 1/85", "GPUs"),
             "mixed_bfloat16": ("no faster than float32 (0.9x", "GPUs and TPUs")}
    for policy, (cost, where) in costs.items():
        note = cpu_precision_note(policy, cpu, "tensorflow")
        assert note.startswith(f"note: on a CPU, TensorFlow trains {policy} {cost}") and "\n" not in note
        assert note.endswith(f"; it pays off on {where}: leave --precision out to train in float32 here")
    assert cpu_precision_note("float32", cpu, "tensorflow") is None
    assert cpu_precision_note("mixed_float16", _placement("gpu", (7, 0)), "tensorflow") is None
    assert cpu_precision_note("mixed_bfloat16", _placement("tpu"), "tensorflow") is None
    assert cpu_precision_note("mixed_float16", cpu, "jax") is None  # XLA's CPU step: the same speed in all three


def test_auto_precision_per_device():
    assert resolve_precision("auto", _placement("cpu")) == "float32"
    assert resolve_precision("auto", _placement("gpu", (7, 0))) == "mixed_float16"
    assert resolve_precision("auto", _placement("gpu", (8, 0))) == "mixed_bfloat16"
    assert resolve_precision("auto", _placement("gpu", (9, 0))) == "mixed_bfloat16"
    assert resolve_precision("auto", _placement("tpu")) == "mixed_bfloat16"
    assert resolve_precision("mixed_float16", _placement("cpu")) == "mixed_float16"


def test_global_batch_must_divide_across_replicas():
    assert check_global_batch(64, 8) == 8
    with pytest.raises(KresError) as caught:
        check_global_batch(10, 4)
    assert str(caught.value) == ("--batch-size 10 does not divide across 4 replicas: pass --batch-size a multiple "
                                 "of 4 (e.g. 8 or 12)")


def test_the_recipes_batch_that_does_not_divide_across_the_replicas_says_it_is_the_recipes(monkeypatch):
    """On 6 replicas the image-folder recipe's 256 was "--batch-size 256 does not divide ...", never typed."""
    import keras_resnet.train as train_module

    monkeypatch.setattr(train_module, "make_placement", lambda tpu: Placement(None, "mirrored", 6, "gpu", None))
    with pytest.raises(KresError) as caught:
        train_module.train(TrainConfig(depth=18), DataConfig(data_dir="/nowhere/photos"))
    assert str(caught.value) == ("the recipe's default batch size 256 does not divide across 6 replicas: pass "
                                 "--batch-size a multiple of 6 (e.g. 252 or 258)")


def test_digits_recipe_and_explicit_options_override_it():
    cfg, data, recipe = resolve(TrainConfig(depth=18), DataConfig())
    assert recipe.name == "digits"
    assert (cfg.image_size, cfg.stem, cfg.epochs, cfg.batch_size, cfg.optimizer) == (32, "imagenet", 10, 64, "sgd")
    assert (data.image_size, data.batch_size) == (32, 64)
    assert cfg.ema == 0.9 and resolve(TrainConfig(ema=0.0), DataConfig())[0].ema == 0.0
    assert resolve(TrainConfig(), DataConfig(dataset="cifar10"))[0].ema == 0.0  # measured on the digits only
    cfg, data, _ = resolve(TrainConfig(depth=18, epochs=3, stem="cifar", batch_size=16, image_size=48,
                                       optimizer="adamw"), DataConfig())
    assert (cfg.epochs, cfg.stem, cfg.batch_size, cfg.image_size, cfg.lr) == (3, "cifar", 16, 48, 0.004)
    assert (data.image_size, data.batch_size) == (48, 16)
    assert resolve(TrainConfig(), DataConfig(dataset="digits"))[2].name == "digits"  # the data module's name for it
    assert resolve(TrainConfig(), DataConfig(dataset="cifar10"))[2].name == "cifar"
    assert resolve(TrainConfig(), DataConfig(dataset="imagenette/320px-v2"))[2].image_size == 224
    # The recipe's warmup takes at most a tenth of the run (5 epochs in a run of 2 ended it at the peak rate);
    # a typed --warmup-epochs stays as typed.
    imagenet = DataConfig(dataset="imagenette/320px-v2")
    warmups = [resolve(TrainConfig(epochs=epochs), imagenet)[0].warmup_epochs for epochs in (2, 3, 50, 90)]
    assert warmups == [0.2, 0.3, 5, 5]  # 0.3, not 0.30000000000000004 (printed, and in config.json)
    assert resolve(TrainConfig(epochs=6, warmup_epochs=5), imagenet)[0].warmup_epochs == 5  # above the tenth
    # ... unless it is the whole run: the rate rose to its peak at the last step and never decayed
    with pytest.raises(KresError, match=r"^--warmup-epochs 5 is the whole run of --epochs 2: use a warmup shorter "
                                        r"than the run \(e\.g\. 0\.2\)$"):
        resolve(TrainConfig(epochs=2, warmup_epochs=5), imagenet)
    with pytest.raises(KresError, match=r"^--warmup-epochs 1 is the whole run of --epochs 1: "):
        resolve(TrainConfig(epochs=1, warmup_epochs=1), imagenet)
    assert [resolve(TrainConfig(epochs=epochs), DataConfig())[0].warmup_epochs for epochs in (5, 10)] == [0.5, 1]


# A small ResNet-shaped model (conv, BN, a head named as kres's) through the frozen phase's two steps, from the
# weights in argv[1] (written there first if missing); every model and optimizer variable saved to argv[2].
FROZEN_STEPS = """
import os, sys
import keras
import numpy as np
from keras_resnet import optim
from keras_resnet.train import _set_backbone_trainable

keras.utils.set_random_seed(0)
inputs = keras.Input((16, 16, 3))
x = keras.layers.Conv2D(8, 3, name="conv1_conv")(inputs)
x = keras.layers.BatchNormalization(name="conv1_bn")(x)
x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2_conv")(x)
x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="predictions")(x))
if os.path.exists(sys.argv[1]):
    model.load_weights(sys.argv[1])
else:
    model.save_weights(sys.argv[1])
start = {"start:" + v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
opt = optim.make_optimizer("sgd", 0.05, 5e-4, model, ema=0.5)
_set_backbone_trainable(model, False)
model.compile(optimizer=opt, loss=keras.losses.CategoricalCrossentropy())
rng = np.random.default_rng(0)
images = rng.uniform(0, 1, (8, 16, 16, 3)).astype("float32")
labels = np.eye(4, dtype="float32")[[0, 3, 1, 2, 0, 1, 2, 3]]
for _ in range(2):
    model.train_on_batch(images, labels)
np.savez(sys.argv[2], **start, **{v.path: keras.ops.convert_to_numpy(v) for v in [*model.weights, *opt.variables]})
"""


def test_a_frozen_phase_under_jax_gives_tensorflows_weights_and_optimizer_state(tmp_path):
    """Keras's JAX optimizer updates exactly the variables it was built with; kres's takes the frozen phase's
    fewer (optim.update_subsets_under_jax). Two steps from the same weights under each backend: the backbone and
    its averages stay as they were, the head, its slots, its average and the step counter move alike."""
    results = {}
    for backend in ("tensorflow", "jax"):  # TensorFlow first: it writes the starting weights
        proc = subprocess.run([sys.executable, "-c", FROZEN_STEPS, str(tmp_path / "start.weights.h5"),
                               str(tmp_path / f"{backend}.npz")], capture_output=True, text=True, timeout=300,
                              env=kres_env(KERAS_BACKEND=backend))
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[backend] = dict(np.load(tmp_path / f"{backend}.npz"))
    tf_state, jax_state = results["tensorflow"], results["jax"]
    assert sorted(jax_state) == sorted(tf_state)
    start = {key.removeprefix("start:"): value for key, value in tf_state.items() if key.startswith("start:")}
    for path, value in start.items():
        np.testing.assert_array_equal(jax_state[f"start:{path}"], value, err_msg=path)
    moved = {path for path, value in start.items() if not np.array_equal(tf_state[path], value)}
    assert moved == {"predictions/kernel", "predictions/bias"}
    averages = 0
    for path in start.keys() - moved:
        np.testing.assert_array_equal(jax_state[path], start[path], err_msg=path)
        average = f"sgd/{path.replace('/', '_')}_average"  # the trainable variables have one
        if average in jax_state:
            np.testing.assert_array_equal(jax_state[average], start[path], err_msg=average)
            averages += 1
    assert averages == 6  # two conv kernels and biases, BN's gamma and beta
    assert int(tf_state["sgd/iteration"]) == int(jax_state["sgd/iteration"]) == 2
    for path, value in tf_state.items():
        assert np.abs(jax_state[path] - value).max() <= 1e-4 * np.abs(value).max() + 1e-7, path
    assert np.abs(tf_state["sgd/predictions_kernel_momentum"]).max() > 1e-4  # 1e-7 is no bound on it


@pytest.mark.parametrize(("changes", "message"), [
    ({"epochs": 0}, "--epochs must be 1 to 100,000, got 0"),
    ({"epochs": 10**20}, f"--epochs must be 1 to 100,000, got {10**20}"),  # a traceback from the step counter
    ({"seed": -1}, "--seed must be 0 to 4,294,967,295, got -1"),  # a traceback from NumPy
    ({"image_size": 16}, "--image-size 16 is too small: use 32 px or more"),
    ({"depth": 20}, "unsupported depth 20: choose one of 18, 34, 50, 101, 152"),
    ({"freeze_backbone_epochs": 3, "epochs": 3}, "--freeze-backbone-epochs 3 must be less than --epochs 3"),
    ({"ema": 1.0}, "--ema is a momentum of 0 to 0.999999 (0 turns the average off), got 1.0"),
    # the bounds kres train checks while parsing hold for the library too (it took --ema 0.99999999999, 1.0 in
    # float32, weight decay 4, which learns nothing, and a mixup alpha of 1e-6, which blends every batch 50/50)
    ({"ema": 0.99999999999}, "--ema is a momentum of 0 to 0.999999 (0 turns the average off), got 0.99999999999"),
    ({"label_smoothing": 0.99999999999}, "--label-smoothing must be 0 to 0.999999, got 0.99999999999"),
    ({"weight_decay": 4.0}, "--weight-decay must be 0 to 1, got 4.0"),
    ({"lr": 1e10}, "--lr must be above 0 and at most 1,000,000,000, got 10000000000.0"),
    ({"warmup_epochs": -1.0}, "--warmup-epochs must not be negative, got -1.0"),
])
def test_library_rejects_bad_options(changes, message):
    with pytest.raises(KresError, match=re.escape(message)):
        train(TrainConfig(**changes), DataConfig(dataset="synthetic"))


def test_an_ema_longer_than_the_run_is_said():
    """--ema 0.9999 on 22 steps saved nearly the first step's weights without a word (Keras's average has no
    warm-up: test_compat's test_ema_averages_are_readable_and_fit_keeps_the_weights)."""
    from keras_resnet.train import _ema_note

    assert _ema_note(0.9999, 22) == (
        "note: --ema 0.9999 averages over about 10,000 steps and this run has 22: the weights it validates and saves "
        "are still 99.8% those of its first step; use --ema 0.9 or below for a run this short")
    assert _ema_note(0.999, 999) == (
        "note: --ema 0.999 averages over about 1,000 steps and this run has 999: the weights it validates and saves "
        "are still 36.8% those of its first step; use --ema 0.99 or below for a run this short")
    assert _ema_note(0.9, 9) == (
        "note: --ema 0.9 averages over about 10 steps and this run has 9: the weights it validates and saves "
        "are still 43.0% those of its first step; turn it off with --ema 0 for a run this short")
    assert _ema_note(0.999999, 22).endswith(" are still 99.9% those of its first step; use --ema 0.9 or below for a "
                                            "run this short")  # 99.998%, not "100.0%"
    # as long as the run or longer, off, or one step (its average is its weights): nothing to say; 0.93's "about
    # 14 steps" on a run of 14 read as a contradiction
    assert [_ema_note(0.9, 10), _ema_note(0.999, 1000), _ema_note(0.0, 5), _ema_note(0.9, 1),
            _ema_note(0.93, 14)] == [None] * 5
    assert _ema_note(0.93, 13).startswith("note: --ema 0.93 averages over about 14 steps and this run has 13: ")
    # A backbone frozen for the first steps stays at its starting weights in the average until it trains: 5 steps
    # of 20 left 0.9 ** 5 of them, where the run's 20 steps said nothing
    assert _ema_note(0.9, 20, frozen_steps=15) == (
        "note: --ema 0.9 averages over about 10 steps and this run trains its backbone for 5 (after 15 frozen): the "
        "backbone weights it validates and saves are still 59.0% those it started from; turn it off with --ema 0 for "
        "a run this short")
    assert _ema_note(0.9, 12, frozen_steps=1) is None


def test_library_rejects_mix_alphas_kres_train_refuses():
    for alphas in ({"mixup_alpha": 1e-6}, {"cutmix_alpha": 2000.0}):
        with pytest.raises(KresError, match=re.escape("mixup and cutmix alphas must be 0 (off) or 0.05 to 1,000, "
                                                      "e.g. 0.2 and 1.0, got ")):
            train(TrainConfig(), DataConfig(dataset="synthetic", **alphas))


def _kres(capsys, *args):
    code = main(["train", *map(str, args)])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_cli_errors_are_one_line_before_training(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "one" / "cat").mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (40, 40), (i * 50, 0, 0)).save(tmp_path / "one" / "cat" / f"{i}.png")
    out = tmp_path / "runs" / "x"
    cases = [
        (["--depth", "18", "--data-dir", tmp_path / "missing", "--output", out], "missing"),
        (["--depth", "18", "--data-dir", tmp_path / "empty", "--output", out], "empty"),
        (["--depth", "18", "--data-dir", tmp_path / "one", "--output", out], "class"),
        (["--depth", "18", "--dataset", "digits", "--data-dir", tmp_path / "one", "--output", out], "not both"),
        (["--depth", "18", "--image-size", "16", "--output", out], "16 is not in the range 32<=x<=4096"),
        (["--depth", "20", "--output", out], "unsupported depth '20': choose one of 18, 34, 50, 101, 152"),
        (["--depth", "18", "--epochs", "0", "--output", out], "0 is not in the range 1<=x<=100000"),
        (["--depth", "18", "--dataset", "synthetic", "--batch-size", "1000", "--output", out], "batch size 1000"),
        (["--depth", "18", "--weights", tmp_path / "nope.keras", "--output", out], "nope.keras does not exist"),
        (["--depth", "18", "--resume", "--output", out], "holds no run (no config.json)"),
        # freezing without --weights froze a random network without a word
        (["--depth", "18", "--dataset", "synthetic", "--epochs", "2", "--freeze-backbone-epochs", "1", "--output",
          out], "--freeze-backbone-epochs 1 trains only the classifier on the backbone --weights give, and none are "
         "given (it would stay random): add --weights (imagenet, a run folder or a model file), or leave it out"),
        (["--depth", "18", "--dataset", "synthetic", "--freeze-bn", "--output", out],
         "--freeze-bn keeps the BN statistics --weights give, and none are given (from random weights BN would "
         "normalize nothing): add --weights, or leave --freeze-bn out"),
    ]
    for args, expected in cases:
        code, err = _kres(capsys, *args)
        assert code == 2, (args, err)
        assert len(err) == 1 and err[0].startswith("Error: ") and expected in err[0], (args, err)
    assert not out.exists()  # nothing was created for a rejected run


def test_a_batch_larger_than_the_folder_says_whose_it_is_and_one_that_fits(tmp_path, capsys):
    """The README's own-folder command on a small folder was refused with "batch size 256 ... lower --batch-size":
    the user never typed 256 (the recipe's default) and was not told what would do."""
    from PIL import Image

    for name, colour in (("a", (200, 0, 0)), ("b", (0, 200, 0)), ("c", (0, 0, 200))):
        (tmp_path / "small" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (40, 40), colour).save(tmp_path / "small" / name / f"{i}.png")
    out = tmp_path / "runs" / "x"
    assert _kres(capsys, "--depth", "18", "--data-dir", tmp_path / "small", "--output", out) == (2, [
        "Error: the recipe's default batch size 256 is larger than the 10 training images: "
        "pass --batch-size 8 or less"])
    assert _kres(capsys, "--depth", "18", "--data-dir", tmp_path / "small", "--batch-size", "12", "--output",
                 out) == (2, ["Error: batch size 12 is larger than the 10 training images: "
                              "pass --batch-size 8 or less"])
    assert not out.exists()


def _interrupted_after_the_first_checkpoint(capsys, monkeypatch, *args):
    """``kres train ARGS`` with Ctrl-C pressed once the first epoch's checkpoint is written."""
    checkpoint_end = callbacks.Checkpointer.on_epoch_end

    def pressed_after_the_first_checkpoint(self, epoch, logs=None):
        checkpoint_end(self, epoch, logs)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(callbacks.Checkpointer, "on_epoch_end", pressed_after_the_first_checkpoint)
        return _kres(capsys, *args)


def test_ctrl_c_then_the_hinted_resume_command_finishes_the_run_with_its_own_settings(tmp_path, capsys, monkeypatch):
    """The hint after Ctrl-C is ``kres train --resume --output RUN``: with no other option it takes the run's
    settings from its config.json (here none of them defaults) and trains the epochs that are left."""
    out = tmp_path / "run"
    first = ["--depth", "18", "--dataset", "synthetic", "--batch-size", "32", "--epochs", "2", "--lr", "0.05",
             "--ema", "0", "--seed", "3", "--output", out]
    code, err = _interrupted_after_the_first_checkpoint(capsys, monkeypatch, *first)
    assert code == 130
    assert err[-1] == (f"Aborted. To resume from step 8 of 16, run the same command again, or: kres train --resume "
                       f"--output {out}")
    code, err = _kres(capsys, "--resume", "--output", out, "--lr", "0.1")  # a typed option must match the run
    assert code == 2 and err == [f"Error: {out} holds a run with other settings (train.lr: 0.05 -> 0.1): repeat "
                                 f"its options (--lr 0.05) to resume it, or choose another --output"]
    code, err = _kres(capsys, "--resume", "--output", out)
    assert code == 0, err
    assert [line.split()[1] for line in err if line.startswith("Epoch ")] == ["2/2"]  # epoch 1 is not run again
    assert [row["epoch"] for row in callbacks.read_history(out / "history.csv")] == [1, 2]
    assert json.loads((out / "checkpoint" / "state.json").read_text())["steps"] == 2 * 256 // 32
    code, err = _kres(capsys, "--resume", "--output", out, "--lr", "0.1")
    # finished: it said "repeat its options (--lr 0.05) to resume it", which trains nothing more
    assert code == 2 and err == [f"Error: {out} holds a finished run with other settings (train.lr: 0.05 -> 0.1): "
                                 f"choose another --output (--weights {out} starts the new run from this one)"]
    code, err = _kres(capsys, "--resume", "--output", out, "--mixup", "0.3")  # --mixup is data.mixup_alpha
    assert code == 2 and "(data.mixup_alpha: 0.0 -> 0.3)" in err[0]


def test_a_run_stopped_before_its_first_checkpoint_says_its_folder_may_go(tmp_path, capsys, monkeypatch):
    """Stopped in its first epoch, a run has nothing to lose; with other settings it said only "repeat its options
    to resume it, or choose another --output" (new-user walk). Once checkpointed, the line is as above."""
    out = tmp_path / "run"

    def pressed(self, batch, logs=None):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(callbacks.ProgressBar, "on_train_batch_end", pressed)
        code, err = _kres(capsys, "--depth", "18", "--dataset", "synthetic", "--batch-size", "32", "--epochs", "2",
                          "--output", out)
    assert code == 130 and (out / "config.json").is_file(), err
    code, err = _kres(capsys, "--depth", "18", "--dataset", "synthetic", "--batch-size", "32", "--epochs", "3",
                      "--output", out)
    assert code == 2 and err == [f"Error: {out} holds a run with other settings (train.epochs: 2 -> 3): repeat its "
                                 "options (--epochs 2) to resume it, or choose another --output (it stopped before "
                                 f"its first checkpoint: removing {out} loses nothing)"]


def test_a_run_on_a_folder_typed_relative_resumes_from_another_folder(tmp_path, capsys, monkeypatch):
    """config.json keeps the data folder absolute, so the hinted ``kres train --resume --output RUN`` (or export's
    calibration, or evaluate) finds the images from any working directory."""
    from PIL import Image

    for cls, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
        (tmp_path / "work" / "photos" / cls).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (40, 40), colour).save(tmp_path / "work" / "photos" / cls / f"{i}.png")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    code, err = _interrupted_after_the_first_checkpoint(capsys, monkeypatch, "--depth", "18", "--data-dir", "photos",
                                                        "--image-size", "32", "--epochs", "2", "--batch-size", "4",
                                                        "--output", "runs/colours")
    run = tmp_path / "work" / "runs" / "colours"
    assert code == 130 and err[-1].endswith(f"kres train --resume --output {run}")
    assert json.loads((run / "config.json").read_text())["data"]["data_dir"] == str(tmp_path / "work" / "photos")
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, err = _kres(capsys, "--resume", "--output", run)
    assert code == 0, err
    assert [line.split()[1] for line in err if line.startswith("Epoch ")] == ["2/2"]


def test_a_checkpointed_run_resumes_without_the_weights_file_it_started_from(tmp_path, capsys, monkeypatch):
    """The checkpoint holds every weight: the --weights file may have moved, or gone, once there is one."""
    start = tmp_path / "start.keras"
    resnet(18, num_classes=10, input_shape=(32, 32, 3)).save(start)
    out = tmp_path / "run"
    first = ["--depth", "18", "--dataset", "synthetic", "--batch-size", "32", "--epochs", "2", "--weights", start,
             "--output", out]
    code, err = _interrupted_after_the_first_checkpoint(capsys, monkeypatch, *first)
    assert code == 130, err
    assert f"starting from the weights of {start}" in err  # the banner said nothing of them
    start.unlink()
    # moved (or left out): "other settings (train.weights: start.keras -> moved.keras)", though not read again
    from keras_resnet.train import _check_existing_run

    for weights in (str(tmp_path / "moved.keras"), None):
        cfg, data, _ = resolve(TrainConfig(depth=18, batch_size=32, epochs=2, weights=weights, output=str(out)),
                               DataConfig(dataset="synthetic"))
        assert _check_existing_run(out, cfg, data)["steps"] == 8
    code, err = _kres(capsys, *first[:-4], "--output", out)  # the same command, --weights left out
    assert code == 0, err
    assert not [line for line in err if "starting from the weights" in line]  # from the checkpoint
    assert [line.split()[1] for line in err if line.startswith("Epoch ")] == ["2/2"]
    # the run keeps the start it had: its config (and the BN default the weights set, with small batches)
    assert json.loads((out / "config.json").read_text())["train"]["weights"] == str(start)
    code, err = _kres(capsys, *first)  # finished: found so, whatever became of the file
    assert code == 0 and f"{out} already finished 2 epochs" in err[0], err
    code, err = _kres(capsys, *first[:-1], tmp_path / "new")  # a new run still needs it
    assert code == 2 and err[0].startswith(f"Error: weights file {start} does not exist"), err


def test_a_run_saved_with_a_relative_folder_resumes_from_the_folder_it_started_in(tmp_path, monkeypatch):
    from keras_resnet.train import _check_existing_run

    (tmp_path / "photos").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg, data, _ = resolve(TrainConfig(depth=18, output=str(tmp_path / "run")), DataConfig(data_dir="photos"))
    assert data.data_dir == str(tmp_path / "photos")
    saved = {"train": dataclasses.asdict(cfg), "data": {**dataclasses.asdict(data), "data_dir": "photos"}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))  # as kres wrote it before paths were absolute
    assert _check_existing_run(tmp_path / "run", cfg, data) == {"steps": 0}
    (tmp_path / "other" / "photos").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "other")  # "photos" there is another folder: another run
    with pytest.raises(KresError, match="holds a run with other settings"):
        _check_existing_run(tmp_path / "run", cfg, data)


def test_a_run_whose_data_folder_moved_resumes_from_where_it_is_now(tmp_path):
    """The recorded folder was gone ("pass --data-dir") and the folder given was "other settings": no way to resume
    but to move the data back. A folder given elsewhere while the recorded one is still there is another run."""
    from keras_resnet.train import _check_existing_run, _say_moved_data

    before, now = tmp_path / "data" / "D", tmp_path / "data" / "D2"
    before.mkdir(parents=True)
    cfg, data, _ = resolve(TrainConfig(depth=18, output=str(tmp_path / "run")), DataConfig(data_dir=str(before)))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"train": dataclasses.asdict(cfg),
                                                              "data": dataclasses.asdict(data)}))
    moved = dataclasses.replace(data, data_dir=str(now))
    now.mkdir()
    with pytest.raises(KresError, match=r"holds a run with other settings \(data\.data_dir: "):
        _check_existing_run(tmp_path / "run", cfg, moved)  # both folders there: another run's data
    before.rmdir()
    assert _check_existing_run(tmp_path / "run", cfg, moved) == {"steps": 0}
    stream = io.StringIO()
    _say_moved_data(stream, tmp_path / "run", moved)
    assert stream.getvalue() == (f"the run's --data-dir {before} is gone: reading {now} (checked: the same classes "
                                 "and image counts)\n")
    with pytest.raises(KresError, match=r"other settings \(data\.val_split: 0\.2 -> 0\.5\)"):
        _check_existing_run(tmp_path / "run", cfg, dataclasses.replace(moved, val_split=0.5))  # only the place


def test_resume_restores_every_saved_setting_but_the_typed_ones(tmp_path, monkeypatch):
    from keras_resnet.train import resumed

    run = tmp_path / "runs" / "r1"
    saved_cfg = TrainConfig(depth=34, epochs=7, lr=0.05, qat_epochs=2, checkpoint_steps=3, output="elsewhere")
    saved_data = DataConfig(data_dir="photos", val_split=0.3, mixup_alpha=0.2)
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train": dataclasses.asdict(saved_cfg),
                                                 "data": dataclasses.asdict(saved_data)}))
    (tmp_path / "runs" / "latest").symlink_to("r1")
    monkeypatch.chdir(tmp_path)
    cfg, data = resumed(TrainConfig(resume=True), DataConfig(), set())  # kres train --resume
    assert cfg == dataclasses.replace(saved_cfg, resume=True, output=str(run))  # qat and checkpoint steps too
    assert data == saved_data
    cfg, data = resumed(TrainConfig(output=str(run), resume=True, lr=0.1), DataConfig(mixup_alpha=0.5),
                        {"output", "resume", "lr", "mixup_alpha"})
    assert (cfg.lr, cfg.depth, data.mixup_alpha, data.val_split) == (0.1, 34, 0.5, 0.3)
    _, data = resumed(TrainConfig(output=str(run)), DataConfig(dataset=None), {"output", "dataset"})
    assert data.data_dir is None  # typed --dataset digits names other data than the run's folder: refused later


def test_other_settings_name_the_options_that_give_the_runs_own_back():
    """Only numbers were named: `--precision float32` or `--no-xla` against a run that left them to kres said
    "repeat its options", and named none."""
    from keras_resnet.train import _options_back

    run = {"epochs": 3, "lr": 0.05, "precision": "auto", "xla": None, "weights": None, "freeze_bn": None,
           "output": "my runs/a"}
    assert _options_back(run, {**run, "precision": "float32"}) == ["--precision auto"]
    assert _options_back(run, {**run, "epochs": 5, "lr": 0.1, "weights": "w.h5"}) == ["--epochs 3 --lr 0.05",
                                                                                     "leave out --weights"]
    # flags are not named: their options are not their fields' names (--no-xla, --train-bn)
    assert _options_back(run, {**run, "xla": False, "freeze_bn": False}) == []
    assert _options_back(run, {**run, "output": "b"}) == ["--output 'my runs/a'"]  # as the shell takes it
    assert _options_back(run, dict(run)) == []


def test_other_settings_name_every_option_the_run_needs_back_data_options_too(tmp_path):
    """A run of --dataset synthetic rerun without it: five differences, four shown, and the hint left --dataset
    out; typed as hinted, it was "other settings (data.dataset: 'synthetic' -> None): repeat its options", none
    named."""
    from keras_resnet.train import _check_existing_run

    run = tmp_path / "run"
    run.mkdir()
    cfg, data, _ = resolve(TrainConfig(depth=18, epochs=3, batch_size=32, ema=0.0, lr=0.1, output=str(run)),
                           DataConfig(dataset="synthetic"))
    (run / "config.json").write_text(json.dumps({"train": dataclasses.asdict(cfg), "data": dataclasses.asdict(data)}))
    again, digits, _ = resolve(TrainConfig(depth=18, output=str(run)), DataConfig())
    with pytest.raises(KresError) as err:
        _check_existing_run(run, again, digits)
    assert "; and 3 more): repeat its options (--ema 0.0 --epochs 3 --batch-size 32 --lr 0.1 --warmup-epochs 0 " \
           "--dataset synthetic) to resume it" in str(err.value), str(err.value)
    hinted, data, _ = resolve(TrainConfig(depth=18, ema=0.0, epochs=3, batch_size=32, lr=0.1, warmup_epochs=0,
                                          output=str(run)), DataConfig(dataset="synthetic"))
    assert _check_existing_run(run, hinted, data) == {"steps": 0}  # as hinted, it is the run


def test_run_dir_with_other_settings_is_an_error(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"train": {"depth": 34}, "data": {}}')
    code, err = _kres(capsys, "--depth", "18", "--dataset", "synthetic", "--output", out)
    assert code == 2
    assert len(err) == 1 and "holds a run with other settings (train." in err[0] and "choose another --output" in err[0]


def test_restating_what_kres_chose_for_a_run_is_that_run(tmp_path):
    """`--precision float32` or `--no-xla` typed for a run that left them to kres, which chose float32 and no XLA,
    was refused as "other settings (train.precision: 'auto' -> 'float32')"; the run's own words are kept."""
    from keras_resnet.train import _as_resolved_before, _check_existing_run

    cfg, data, _ = resolve(TrainConfig(depth=18, output=str(tmp_path)), DataConfig(dataset="synthetic"))
    saved = {"train": dataclasses.asdict(cfg), "data": dataclasses.asdict(data),
             "resolved": {"precision": "float32", "xla": False}}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    typed = _as_resolved_before(tmp_path, dataclasses.replace(cfg, precision="float32", xla=False), "float32", False)
    assert (typed.precision, typed.xla) == ("auto", None)
    assert _check_existing_run(tmp_path, typed, data) == {"steps": 0}
    other = _as_resolved_before(tmp_path, dataclasses.replace(cfg, precision="mixed_bfloat16", xla=True),
                                "mixed_bfloat16", True)  # not what the run trained with: another run
    assert (other.precision, other.xla) == ("mixed_bfloat16", True)
    with pytest.raises(KresError, match=r"\(train\.precision: 'auto' -> 'mixed_bfloat16'; train\.xla: None -> True\)"):
        _check_existing_run(tmp_path, other, data)
    saved["train"].update(precision="float32", xla=False)  # typed at the start, left to kres now: the same here
    (tmp_path / "config.json").write_text(json.dumps(saved))
    left = _as_resolved_before(tmp_path, cfg, "float32", False)
    assert (left.precision, left.xla) == ("float32", False)
    assert _check_existing_run(tmp_path, left, data) == {"steps": 0}


def test_the_same_command_with_weights_runs_latest_reruns_once_the_run_is_runs_latest(tmp_path, capsys, monkeypatch):
    """`kres train --weights runs/latest --output runs/B`, stopped and run again: runs/latest was B by then, and the
    rerun was "other settings (train.weights: '.../A/best.keras' -> '.../B/best.keras')"; --resume could not start
    it either (the link was recorded: "runs/latest/best.keras does not exist" once B had none)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "A").mkdir(parents=True)
    resnet(18, num_classes=10, input_shape=(32, 32, 3)).save(tmp_path / "runs" / "A" / "best.keras")
    (tmp_path / "runs" / "latest").symlink_to("A")
    args = ["--depth", "18", "--dataset", "synthetic", "--batch-size", "32", "--epochs", "2", "--weights",
            "runs/latest", "--output", "runs/B"]
    code, err = _interrupted_after_the_first_checkpoint(capsys, monkeypatch, *args)
    assert code == 130 and os.readlink(tmp_path / "runs" / "latest") == "B", err
    started = json.loads((tmp_path / "runs" / "B" / "config.json").read_text())["train"]["weights"]
    assert started == os.path.realpath(tmp_path / "runs" / "A" / "best.keras")  # the run linked, not the link
    assert (tmp_path / "runs" / "B" / "best.keras").is_file()  # so runs/latest names B's own model now
    code, err = _kres(capsys, *args)
    assert code == 0, err
    assert [line.split()[1] for line in err if line.startswith("Epoch ")] == ["2/2"]  # resumed, not refused
    assert json.loads((tmp_path / "runs" / "B" / "config.json").read_text())["train"]["weights"] == started


def test_a_default_run_folder_taken_in_the_same_second_gets_a_number(tmp_path, monkeypatch):
    """Two trainings started in the same second took the same folder, and the second was refused."""
    from keras_resnet import train as train_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_module, "_now", lambda: "20261206-101500")
    first = train_module._run_dir(TrainConfig(depth=18), DataConfig())
    assert first == Path("runs/resnet18-digits-20261206-101500")
    first.mkdir(parents=True)
    assert train_module._run_dir(TrainConfig(depth=18), DataConfig()) == Path("runs/resnet18-digits-20261206-101500-2")
    Path("runs/resnet18-digits-20261206-101500-2").mkdir()
    assert train_module._run_dir(TrainConfig(depth=18), DataConfig()) == Path("runs/resnet18-digits-20261206-101500-3")


def test_the_banner_names_augmentations_and_a_frozen_first_phase():
    """config.json had them; the banner named none."""
    from keras_resnet.train import _beyond_the_step

    plain = TrainConfig(depth=18, epochs=5)
    assert _beyond_the_step(plain, DataConfig()) == []
    assert _beyond_the_step(dataclasses.replace(plain, freeze_backbone_epochs=2),
                            DataConfig(randaugment=True, mixup_alpha=0.2, cutmix_alpha=1.0)) == [
        "RandAugment; mixup alpha 0.2; CutMix alpha 1; only the classifier trains in epochs 1-2 (backbone frozen)"]
    assert _beyond_the_step(dataclasses.replace(plain, freeze_backbone_epochs=1), DataConfig()) == [
        "only the classifier trains in epoch 1 (backbone frozen)"]


def test_the_banner_says_the_warmup_in_steps_where_its_epochs_are_not_whole():
    """A folder of 29 images at batch 8 (3 steps an epoch): the banner said "warmup 0.1 epochs" where config.json
    had 0 warmup steps (new-user walk)."""
    from keras_resnet.train import _warmup_text

    assert _warmup_text(0.1, optim.Schedule(0.1, 0, 3)) == "0.1 epochs (0 steps: none)"
    assert _warmup_text(0.3, optim.Schedule(0.1, 13, 440)) == "0.3 epochs (13 steps)"
    assert _warmup_text(0.5, optim.Schedule(0.1, 1, 4)) == "0.5 epochs (1 step)"
    assert (_warmup_text(1.0, optim.Schedule(0.1, 11, 110)), _warmup_text(0, optim.Schedule(0.1, 0, 9))) == (
        "1 epoch", "0 epochs")
    # the warmup ends a step before the run: 0.9 of a 1-step run is none, 1.5 epochs of 2 (one step each) is 1 step
    assert _warmup_text(0.9, optim.Schedule(0.1, 1, 1)) == "0.9 epochs (0 steps: none)"
    assert _warmup_text(1.5, optim.Schedule(0.1, 2, 2)) == "1.5 epochs (1 step)"
    assert _warmup_text(1, optim.Schedule(0.1, 2, 2)) == "1 epoch (1 step)"


def test_a_run_started_before_ema_existed_resumes_as_a_run_without_it(tmp_path):
    from keras_resnet.train import _check_existing_run

    cfg, data, _ = resolve(TrainConfig(depth=18, output=str(tmp_path)), DataConfig(dataset="synthetic"))
    saved = {"train": dataclasses.asdict(cfg), "data": dataclasses.asdict(data)}
    del saved["train"]["ema"]  # config.json as kres wrote it before --ema
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert _check_existing_run(tmp_path, dataclasses.replace(cfg, ema=0.0), data) == {"steps": 0}
    with pytest.raises(KresError, match=r"train\.ema: 0\.0 -> 0\.9\): repeat its options \(--ema 0\.0\) to resume"):
        _check_existing_run(tmp_path, dataclasses.replace(cfg, ema=0.9), data)


def test_a_run_begun_before_the_warmup_cap_resumes_with_its_own_warmup(tmp_path):
    from keras_resnet.train import _check_existing_run, _warmup_begun_with

    cfg, data, _ = resolve(TrainConfig(depth=18, epochs=5, output=str(tmp_path)), DataConfig())
    assert cfg.warmup_epochs == 0.5  # capped at a tenth of 5 epochs; the previous kres saved the recipe's 1
    (tmp_path / "config.json").write_text(json.dumps({"train": {**dataclasses.asdict(cfg), "warmup_epochs": 1},
                                                      "data": dataclasses.asdict(data)}))
    assert _check_existing_run(tmp_path, _warmup_begun_with(tmp_path, cfg), data) == {"steps": 0}
    with pytest.raises(KresError, match=r"train\.warmup_epochs: 1 -> 0\.5"):  # what the same command met
        _check_existing_run(tmp_path, cfg, data)


def test_remote_paths_stay_as_typed():
    _, data, _ = resolve(TrainConfig(depth=18), DataConfig(dataset="cifar10", tfds_dir="gs://bucket/tfds"))
    assert data.tfds_dir == "gs://bucket/tfds"  # os.path.abspath made it <cwd>/gs:/bucket/tfds


def test_frozen_backbone_keeps_bn_statistics_and_trains_only_the_head():
    from keras_resnet.train import _set_backbone_trainable

    model = resnet(18, num_classes=3, input_shape=(32, 32, 3))
    opt = optim.make_optimizer("sgd", 0.1, 1e-4, model)
    _set_backbone_trainable(model, False)
    model.compile(optimizer=opt, loss="categorical_crossentropy")
    assert [v.path for v in model.trainable_variables] == ["predictions/kernel", "predictions/bias"]
    before = {v.path: np.array(v) for v in model.weights}
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model.train_on_batch(images, np.eye(3, dtype="float32")[[0, 2]])
    changed = {v.path for v in model.weights if not np.array_equal(before[v.path], np.array(v))}
    assert changed == {"predictions/kernel", "predictions/bias"}  # BN moving mean/variance untouched too
    _set_backbone_trainable(model, True)
    assert len(model.trainable_variables) == 62  # 20 convs + 20 BN (gamma, beta) + dense kernel and bias


def test_small_batch_fine_tuning_keeps_bn_statistics_frozen():
    from keras_resnet.train import _set_backbone_trainable, frozen_bn

    decide = {(weights, batch, replicas, flag): frozen_bn(TrainConfig(weights=weights, batch_size=batch,
                                                                       freeze_bn=flag), replicas)
              for weights in (None, "w.keras") for batch in (8, 16, 64) for replicas in (1, 4)
              for flag in (None, True, False)}
    assert {k for k, v in decide.items() if v and k[3] is None} == {
        ("w.keras", 8, 1, None), ("w.keras", 8, 4, None), ("w.keras", 16, 4, None)}  # batch / replicas < 16
    assert all(v == k[3] for k, v in decide.items() if k[3] is not None)  # the flag always wins

    model = resnet(18, num_classes=3, input_shape=(32, 32, 3))
    _set_backbone_trainable(model, True, freeze_bn=True)
    model.compile(optimizer=optim.make_optimizer("sgd", 0.1, 0.0, model), loss="categorical_crossentropy")
    assert len(model.trainable_variables) == 22  # 20 conv kernels + dense kernel and bias; no BN gamma/beta
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    before = [np.array(layer.moving_mean) for layer in bn]
    conv1 = np.array(model.get_layer("conv1_conv").kernel)
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model.train_on_batch(images, np.eye(3, dtype="float32")[[0, 2]])
    assert all(np.array_equal(b, np.array(layer.moving_mean)) for b, layer in zip(before, bn))
    assert not np.array_equal(conv1, np.array(model.get_layer("conv1_conv").kernel))  # the convs still train


def test_train_bfloat16_with_frozen_first_epoch_saves_float32_models(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_qat(model_path, data_cfg, epochs, output_dir, stream):  # QAT is tested in test_qat; here the call,
        calls.append((Path(model_path).name, data_cfg.image_size, epochs, Path(output_dir).name, stream))
        return qat._write(b"TFL3", model_path, output_dir, epochs, "0123456789abcdef")  # and what it writes

    monkeypatch.setitem(sys.modules, "keras_resnet.qat", types.SimpleNamespace(
        quantization_aware_finetune=fake_qat, finetune_line=qat.finetune_line, made_before=qat.made_before))
    from keras_resnet import train as train_module

    carded = []

    def card(model, source, data, again):  # tested in test_qat
        carded.append((model.name, source.name, again))
        path = model.with_name("card.json")
        path.write_text(json.dumps({"accuracy": {"top1": 0.875, "images": 8, "keras_top1": 1.0}}))
        return path

    monkeypatch.setattr(train_module, "qat_card", card)
    start = tmp_path / "start.weights.h5"  # a frozen backbone needs weights to start from
    resnet(18, num_classes=10, input_shape=(32, 32, 3)).save_weights(start)
    monkeypatch.setattr(train_module, "COMPILED_UPDATE_MIN_STEPS", 1)  # the compiled update's two variable lists
    cfg = TrainConfig(depth=18, epochs=2, batch_size=64, freeze_backbone_epochs=1, qat_epochs=3,
                      precision="mixed_bfloat16", ema=0.9, weights=str(start), output=str(tmp_path / "run"))
    data = DataConfig(dataset="synthetic", synthetic_size=128)
    result = train(cfg, data)
    assert json.loads((result.run_dir / "config.json").read_text())["resolved"]["compiled_update"] is True
    assert calls == [("best.keras", 32, 3, "qat", sys.stderr)]
    assert carded == [("model_qat_int8.tflite", "best.keras", True)]
    err = capsys.readouterr().err
    assert "\nquantization-aware fine-tuning, 3 epochs from best.keras\n" in err
    assert err.endswith("\nint8 top-1 0.8750 on 8 held-out images (best.keras 1.0000)\n")  # from its card
    assert "; ema 0.9: the weights' moving average is validated and saved\n" in err
    assert ("\nnote: --ema 0.9 averages over about 10 steps and this run trains its backbone for 2 (after 2 frozen): "
            "the backbone weights it validates and saves are still 81.0% those it started from; turn it off with "
            "--ema 0 for a run this short\n") in err
    assert f"\n{cpu_precision_note('mixed_bfloat16', _placement('cpu'), 'tensorflow')}\n" in err
    assert result.qat_model == tmp_path / "run" / "qat" / "model_qat_int8.tflite"
    assert (result.epochs, result.steps, result.iterations) == (2, 4, 4)
    assert [row["epoch"] for row in result.history] == [1, 2]
    for path in (result.best_model, result.last_model):
        model = keras.saving.load_model(path)
        assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    meta = json.loads((result.run_dir / "meta.json").read_text())
    assert meta["labels"] == [f"class_{i}" for i in range(10)] and meta["stem"] == "imagenet"
    stats = meta["extra"]["input_stats"]  # for the calibration check at export
    assert len(stats["mean"]) == len(stats["std"]) == 3 and all(32 < m < 224 and s > 0 for m, s in zip(*stats.values()))
    assert (result.run_dir / "labels.txt").read_text().splitlines() == meta["labels"]
    assert os.readlink(tmp_path / "latest") == "run"
    assert train(cfg, data).qat_model == result.qat_model and len(calls) == 1  # finished: QAT is not done again
    assert capsys.readouterr().err.endswith(f"quantization-aware model: {result.qat_model} (made before, from this "
                                            "best.keras)\nint8 top-1 0.8750 on 8 held-out images (best.keras 1.0000)\n")
    train(dataclasses.replace(cfg, qat_epochs=1), data)  # other QAT epochs: done again
    assert calls[1:] == [("best.keras", 32, 1, "qat", sys.stderr)]
    assert [again for *_, again in carded] == [True, False, True]  # a new QAT model gets a new card


def test_progress_bar_shows_images_per_second_and_metrics():
    from keras_resnet.callbacks import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream in (Terminal(), io.StringIO()):
        bar = ProgressBar(epochs=3, global_batch=64, stream=stream, min_interval=0.0)
        bar.set_params({"steps": 4})
        bar.on_epoch_begin(1)
        for batch in range(4):
            bar.on_train_batch_end(batch, {"loss": 0.5, "accuracy": 0.75})
        logs = {"loss": 0.5, "accuracy": 0.75, "val_accuracy": 0.875}
        bar.on_epoch_end(1, logs)
        last = stream.getvalue().split("\r")[-1]
        assert last.startswith("Epoch 2/3 ") and "img/s loss 0.5000 accuracy 0.7500 val_accuracy 0.8750" in last
        assert logs["images_per_s"] > 0  # recorded in history.csv too
        assert ("[" + "=" * 24 + "] 4/4" in stream.getvalue()) == stream.isatty()  # live bar on terminals only


def test_a_live_bar_fits_one_row_of_the_terminal_and_a_dumb_terminal_gets_lines(monkeypatch):
    """At 80 columns each redraw of the 93-character bar wrapped and left its first row behind (8 stale rows an
    epoch); TERM=dumb (an editor's shell) got the \\r and ESC[K redraws printed as they are."""
    from keras_resnet.callbacks import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("TERM", "xterm")
    stream = Terminal()
    bar = ProgressBar(epochs=3, global_batch=64, stream=stream, min_interval=0.0)
    bar.set_params({"steps": 4})
    bar.on_epoch_begin(0)
    logs = {"loss": 0.5, "accuracy": 0.75, "top5": 1.0}
    for batch in range(4):
        bar.on_train_batch_end(batch, logs)
    bar.on_epoch_end(0, {**logs, "val_loss": 0.25, "val_accuracy": 0.875})
    *draws, last = stream.getvalue().split("\r")[1:]
    assert [len(d) for d in draws] == [59 + len("\x1b[K")] * 4 and draws[-1].startswith("Epoch 1/3 [====")
    assert last.endswith("val_loss 0.2500 val_accuracy 0.8750\x1b[K\n")  # the epoch's line stays whole
    monkeypatch.setenv("TERM", "dumb")
    assert not ProgressBar(epochs=3, global_batch=64, stream=Terminal()).live


def test_progress_goes_on_in_a_log_file_every_log_interval():
    """Without a terminal (a log file, CI, nohup) an hour-long epoch printed nothing until its end."""
    from keras_resnet import callbacks

    clock = iter(range(0, 1000, 25))  # each call 25 s on: epoch start, then one per step
    stream = io.StringIO()
    bar = callbacks.ProgressBar(epochs=3, global_batch=6400, stream=stream, log_interval=60.0,
                                clock=lambda: next(clock))
    bar.set_params({"steps": 7})
    bar.on_epoch_begin(0)
    for batch in range(7):  # at 25, 50, ... 175 s
        bar.on_train_batch_end(batch, {"loss": 0.5})
    bar.on_epoch_end(0, {"loss": 0.5})  # at 200 s
    assert stream.getvalue().splitlines() == [
        "Epoch 1/3 step 3/7 256 img/s loss 0.5000",  # 75 s: 60 s or more since the start
        "Epoch 1/3 step 6/7 256 img/s loss 0.5000",  # 150 s: 60 s or more since the line before; 7/7 is the epoch's
        "Epoch 1/3 200.0s 256 img/s loss 0.5000"]
    bar.set_params({})  # steps unknown: no "/0"
    bar.on_epoch_begin(1)
    for batch in range(3):
        bar.on_train_batch_end(batch, {"loss": 0.5})
    assert stream.getvalue().splitlines()[3:] == ["Epoch 2/3 step 3 256 img/s loss 0.5000"]


def test_rerun_after_images_were_added_is_an_error_and_the_hint_works(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from keras_resnet import data

    checked = []
    check = data._check_image
    monkeypatch.setattr(data, "_check_image", lambda path: checked.append(path) or check(path))
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "photos" / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(tmp_path / "photos" / cls / f"{i}.png")
    out = tmp_path / "runs" / "pets"
    args = ["--depth", "18", "--data-dir", tmp_path / "photos", "--image-size", "32", "--epochs", "1",
            "--batch-size", "4", "--val-split", "0.2", "--output", out]
    code, err = _kres(capsys, *args)
    assert code == 0, err
    # the folders' recipe smooths the labels, which val_loss shows and evaluate's loss does not: said (it was not)
    assert "wd 0.0001, label smoothing 0.1 (in loss and val_loss, not in kres evaluate's loss)" in err[1], err[1]
    assert len(checked) == 10  # each image decode-checked once, for the pipelines and the input statistics
    config = (out / "config.json").read_text()
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(tmp_path / "photos" / "cat" / "new.png")
    code, err = _kres(capsys, *args)
    assert len(checked) == 10 + 11  # a new command reads the folder anew
    assert code == 2 and len(err) == 1, err
    assert f"{out} was started on 8 training and 2 validation images, the data now gives 9 and 2:" in err[0]
    assert (out / "config.json").read_text() == config  # the finished run is left as it was
    code, err = _kres(capsys, *args[:-1], tmp_path / "runs" / "more", "--weights", out / "best.keras")
    assert code == 0, err


def test_an_epochs_line_is_printed_once_its_checkpoint_and_models_are_saved(tmp_path, monkeypatch):
    """The line came first, then 1-2 s of saves: a Ctrl-C right after "Epoch 1/2 ..." lost that epoch, and the
    resume started again at step 0. (And the banner comes before the training images' statistics are measured:
    at 1024 px they took 7.5 s of silence before it, minutes at 4096 px.)"""
    from keras_resnet import train as train_module

    run = tmp_path / "run"
    seen, measured = [], []
    record = train_module.record_input_stats
    monkeypatch.setattr(train_module, "record_input_stats",
                        lambda *args: (measured.append(terminal.getvalue()), record(*args)))

    class Terminal(io.StringIO):
        def write(self, text):
            if text.startswith("Epoch ") or "\nEpoch " in text:
                state = json.loads((run / "checkpoint" / "state.json").read_text())
                rows = (run / "history.csv").read_text().splitlines()
                seen.append((state["steps"], len(rows) - 1, (run / "best.keras").is_file()))
            return super().write(text)

    cfg = TrainConfig(depth=18, epochs=2, batch_size=32, output=str(run))
    terminal = Terminal()
    train(cfg, DataConfig(dataset="synthetic", synthetic_size=64), stream=terminal)
    assert seen == [(2, 1, True), (4, 2, True)]  # 2 steps an epoch: each epoch's line after its checkpoint and row
    assert len(measured) == 1 and measured[0].startswith("ResNet-18 ") and f"run dir {run}" in measured[0]
    assert set(json.loads((run / "meta.json").read_text())["extra"]["input_stats"]) == {"mean", "std"}
    # the bar still puts each epoch's speed and time into the logs that history.csv (and TensorBoard) write
    # (they were lost when the whole bar moved to the end of the list)
    rows = callbacks.read_history(run / "history.csv")
    assert all(row["images_per_s"] > 0 and row["epoch_time_s"] > 0 for row in rows) and len(rows) == 2


def test_kill_after_the_last_checkpoint_before_last_keras_finishes_on_rerun(tmp_path, monkeypatch):
    """The window between the final epoch's checkpoint and the run's completion: the rerun restores the
    checkpoint (not a freshly initialised model) into last.keras and marks the run complete."""
    from keras_resnet import train as train_module

    save = train_module._Float32Exporter.save

    def killed_at_last_keras(self, path):
        if Path(path).name == "last.keras":
            raise KeyboardInterrupt
        save(self, path)

    # with --ema, last.keras is written from the weight averages the checkpoint restores; the compiled update
    # (a 2-step run keeps Keras's own) resumed
    monkeypatch.setattr(train_module, "COMPILED_UPDATE_MIN_STEPS", 1)
    cfg = TrainConfig(depth=18, epochs=1, batch_size=32, ema=0.9, output=str(tmp_path / "run"))
    data = DataConfig(dataset="synthetic", synthetic_size=64)
    monkeypatch.setattr(train_module._Float32Exporter, "save", killed_at_last_keras)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data)
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert (state["steps"], state["complete"], (tmp_path / "run" / "last.keras").exists()) == (2, False, False)
    monkeypatch.setattr(train_module._Float32Exporter, "save", save)
    stream = io.StringIO()
    result = train(cfg, data, stream=stream)
    # it said "resuming at step 2, epoch 2" of a 1-epoch run
    assert f"run dir {tmp_path / 'run'} (all 1 epoch trained: writing the last files)" in stream.getvalue()
    assert (result.epochs, result.steps, result.iterations) == (1, 2, 2)
    assert json.loads((result.run_dir / "config.json").read_text())["resolved"]["compiled_update"] is True
    assert json.loads((result.run_dir / "checkpoint" / "state.json").read_text()) == {
        "steps": 2, "iterations": 2, "weights": None, "complete": True}
    best, last = keras.saving.load_model(result.best_model), keras.saving.load_model(result.last_model)
    for b, a in zip(best.get_weights(), last.get_weights()):  # best.keras was saved from the same trained weights
        np.testing.assert_array_equal(a, b)


def test_a_last_epoch_that_was_the_best_is_saved_once_and_the_curves_are_drawn_once(tmp_path, monkeypatch):
    """last.keras after a last epoch that was the best is a copy of best.keras (the same weights: a second save took
    0.4 s); the curves drawn at the fit's end are not drawn again at the run's end, nor by a rerun that trains
    nothing, unless history.csv was written after them."""
    saves, drawn = [], []
    save, plot = keras.Model.save, callbacks.plot_curves
    monkeypatch.setattr(keras.Model, "save", lambda self, path, *args, **kwargs: (saves.append(path),
                                                                                   save(self, path, *args, **kwargs)))
    monkeypatch.setattr(callbacks, "plot_curves", lambda rows, path: (drawn.append(len(rows)), plot(rows, path)))
    cfg = TrainConfig(depth=18, epochs=1, batch_size=32, output=str(tmp_path / "run"))
    data = DataConfig(dataset="synthetic", synthetic_size=64)
    result = train(cfg, data, stream=io.StringIO())
    assert len(saves) == 1 and drawn == [1]
    assert result.last_model.read_bytes() == result.best_model.read_bytes()
    keras.saving.load_model(result.last_model)
    stream = io.StringIO()
    train(cfg, data, stream=stream)  # finished: nothing to train, and the curves are those of its history
    assert "nothing to train" in stream.getvalue() and drawn == [1]
    history = result.run_dir / "history.csv"
    later = (result.run_dir / "curves.png").stat().st_mtime_ns + 1_000_000_000
    os.utime(history, ns=(later, later))  # written after the curves, as by a run killed before it drew them
    train(cfg, data, stream=io.StringIO())
    assert drawn == [1, 1] and len(saves) == 1


def test_saved_models_hold_the_weight_averages_under_ema(tmp_path):
    from keras_resnet.train import _Float32Exporter

    keras.utils.set_random_seed(0)
    model = resnet(18, num_classes=2, input_shape=(32, 32, 3))
    model.compile(optim.make_optimizer("sgd", 0.1, 0.0, model, ema=0.5), keras.losses.CategoricalCrossentropy())
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    model.fit(images, np.eye(2, dtype="float32")[[0, 1, 1, 0]], batch_size=2, epochs=1, verbose=0)
    _Float32Exporter(model, steps=lambda: 2).save(tmp_path / "best.keras")
    saved = keras.saving.load_model(tmp_path / "best.keras").get_weights()
    for ours, expected in zip(saved, callbacks.saved_weights(model), strict=True):
        np.testing.assert_array_equal(ours, expected)
    kernel = [v.path for v in model.weights].index("conv1_conv/kernel")
    assert not np.array_equal(saved[kernel], model.get_weights()[kernel])  # the averages, not the weights


def test_a_float32_model_is_saved_through_its_own_layers_as_its_rebuild_would_be(tmp_path, monkeypatch):
    """No rebuild for a float32 model with every layer trainable and no weight average: the same file but for Keras's
    marks of the dtype policy its layers share, the same weights, no optimizer. A frozen layer is rebuilt trainable."""
    import zipfile

    from keras_resnet import rebuild
    from keras_resnet import train as train_module

    def config(path):
        def unmarked(value):
            if isinstance(value, dict):
                return {k: unmarked(v) for k, v in value.items() if k != "shared_object_id"}
            return [unmarked(v) for v in value] if isinstance(value, list) else value
        return unmarked(json.loads(zipfile.ZipFile(path).read("config.json")))

    model = resnet(18, num_classes=2, input_shape=(32, 32, 3))
    model.compile(optim.make_optimizer("sgd", 0.1, 5e-5, model), keras.losses.CategoricalCrossentropy())
    model.train_on_batch(np.full((2, 32, 32, 3), 128.0, "float32"), np.eye(2, dtype="float32"))
    rebuilt = []
    monkeypatch.setattr(train_module, "float32_clone",
                        lambda *args, **kwargs: rebuilt.append(1) or rebuild.float32_clone(*args, **kwargs))
    step = [1]
    exporter = train_module._Float32Exporter(model, steps=lambda: step[0])
    exporter.save(tmp_path / "own.keras")
    reference = rebuild.float32_clone(model, trainable=True)
    reference.set_weights(model.get_weights())
    reference.save(tmp_path / "rebuilt.keras")
    assert rebuilt == [] and config(tmp_path / "own.keras") == config(tmp_path / "rebuilt.keras")
    assert sorted(zipfile.ZipFile(tmp_path / "own.keras").namelist()) == [
        "config.json", "metadata.json", "model.weights.h5"]
    for ours, expected in zip(keras.saving.load_model(tmp_path / "own.keras").get_weights(), model.get_weights(),
                              strict=True):
        np.testing.assert_array_equal(ours, expected)
    model.get_layer("conv1_conv").trainable = False
    step[0] = 2  # not a copy of the file before
    exporter.save(tmp_path / "frozen.keras")
    assert rebuilt == [1] and config(tmp_path / "frozen.keras") == config(tmp_path / "rebuilt.keras")
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = resnet(18, num_classes=2, input_shape=(32, 32, 3))
    finally:
        keras.config.set_dtype_policy(previous)
    mixed.compile(optim.make_optimizer("sgd", 0.1, 0.0, mixed), keras.losses.CategoricalCrossentropy())  # no average
    train_module._Float32Exporter(mixed, steps=lambda: 0).save(tmp_path / "mixed.keras")
    assert rebuilt == [1, 1]
    assert {layer.compute_dtype for layer in keras.saving.load_model(tmp_path / "mixed.keras").layers} == {"float32"}


def test_a_save_after_a_step_that_left_the_optimizers_count_is_not_a_copy_of_the_one_before(tmp_path):
    """A float16 step skipped for overflow leaves the optimizer's step count, not the BN statistics, as they were:
    last.keras is copied from best.keras only after as many training steps, counted by the exporter's ``steps``."""
    from keras_resnet.train import _Float32Exporter

    model = resnet(18, num_classes=2, input_shape=(32, 32, 3))
    model.compile(optim.make_optimizer("sgd", 0.1, 0.0, model), keras.losses.CategoricalCrossentropy())
    step = [0]
    exporter = _Float32Exporter(model, steps=lambda: step[0])
    exporter.save(tmp_path / "best.keras")
    exporter.save(tmp_path / "same.keras")  # no step since: the same file
    assert (tmp_path / "same.keras").read_bytes() == (tmp_path / "best.keras").read_bytes()
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    model(images, training=True)  # the BN statistics move; the optimizer's count does not
    step[0] += 1
    exporter.save(tmp_path / "last.keras")
    mean = [v.path for v in model.weights].index("conv1_bn/moving_mean")
    saved = keras.saving.load_model(tmp_path / "last.keras").get_weights()
    np.testing.assert_array_equal(saved[mean], model.get_weights()[mean])
    assert not np.array_equal(saved[mean], keras.saving.load_model(tmp_path / "best.keras").get_weights()[mean])


def test_latest_link_replaces_only_a_link(tmp_path):
    from keras_resnet.train import _point_latest

    _point_latest(tmp_path / "a")
    _point_latest(tmp_path / "b")
    assert os.readlink(tmp_path / "latest") == "b"
    other = tmp_path / "other"
    other.mkdir()
    (other / "latest").write_text("the user's notes")
    _point_latest(other / "run")
    assert (other / "latest").read_text() == "the user's notes"


def test_same_seed_same_batches_whatever_ran_before_in_the_process(tmp_path, monkeypatch):
    import tensorflow as tf

    from keras_resnet import train as train_module

    class Loaded(Exception):
        pass

    batches, load = [], train_module.load_datasets

    def first_batch_then_stop(data, **options):
        batches.append(next(iter(load(data, **options).train))[1].numpy().argmax(axis=1))
        raise Loaded

    monkeypatch.setattr(train_module, "load_datasets", first_batch_then_stop)
    for global_seed in (1, 2):  # e.g. an earlier run in this process with another --seed
        tf.random.set_seed(global_seed)
        with pytest.raises(Loaded):
            train(TrainConfig(depth=18, batch_size=16, output=str(tmp_path / "run")), DataConfig())
    np.testing.assert_array_equal(batches[0], batches[1])


@pytest.mark.parametrize(("folder", "name"), [
    ("/data/my photos é/", "my-photos-é"),  # printed as "runs/resnet18-my photos é-2026...", which a shell splits
    ("/data/cats & dogs (v2)", "cats-dogs-v2"),
    ("/data/pets", "pets"),
])
def test_a_default_run_folder_is_named_so_a_shell_takes_it_whole(folder, name):
    import re

    from keras_resnet.data import DataConfig
    from keras_resnet.train import TrainConfig, _run_dir

    run = _run_dir(TrainConfig(depth=18), DataConfig(data_dir=folder))
    assert re.fullmatch(rf"runs/resnet18-{re.escape(name)}-\d{{8}}-\d{{6}}", str(run)), run


def test_starting_from_a_model_of_other_class_names_says_its_classifier_is_kept(tmp_path):
    """--weights of a circle/square/triangle run on an apple/banana/cherry folder kept its classifier without a
    word (a note came only where the class counts differ)."""
    from keras_resnet.meta import ModelMeta
    from keras_resnet.train import _starting_from

    (tmp_path / "run").mkdir()
    best = str(tmp_path / "run" / "best.keras")
    ModelMeta(18, "v1.5", "imagenet", [32, 32, 3], "torch", [0.0] * 3, [1.0] * 3,
              ["circle", "square", "triangle", "star"]).save(tmp_path / "run")
    fruit = ["apple", "banana", "cherry", "date"]
    assert _starting_from(best, fruit) == (
        f"starting from the weights of {best} (its classifier is kept, its classes taken as this data's by position, "
        "not name: circle -> apple, square -> banana, triangle -> cherry, and 1 more)")
    plain = f"starting from the weights of {best}"
    assert _starting_from(best, ["circle", "square", "triangle", "star"]) == plain  # the same classes
    assert _starting_from(best, fruit[:3]) == plain  # other counts: weights.py says the classifier is fresh
    assert _starting_from("imagenet", fruit) == "starting from the weights of imagenet"
    ModelMeta(18, "v1.5", "imagenet", [32, 32, 3], "torch", [0.0] * 3, [1.0] * 3,
              [f"class_{i}" for i in range(4)]).save(tmp_path / "run")
    assert _starting_from(best, fruit) == plain  # a model whose classes were never named


def test_a_classifier_left_as_initialised_by_weights_is_said_after_the_banner(tmp_path, capsys, monkeypatch):
    """`kres train --weights` of a model of other classes printed "kres: loaded the backbone ..." above the banner,
    before the line that says where the weights come from."""
    import keras_resnet.train as train_module

    start = tmp_path / "five.keras"
    resnet(18, num_classes=5, input_shape=(32, 32, 3)).save(start)

    def stop(*_args, **_kwargs):
        raise KresError("stopped before the first step")

    monkeypatch.setattr(train_module, "_fit_phases", stop)
    code, err = _kres(capsys, "--depth", "18", "--dataset", "synthetic", "--batch-size", "32", "--epochs", "1",
                      "--weights", start, "--output", tmp_path / "run")
    assert code == 2
    at = err.index(f"starting from the weights of {start}")
    assert err[at + 1] == (f"loaded the backbone from Keras model {start}; it has a 5-class classifier, so the "
                           "10-class 'predictions' layer keeps its fresh initialisation")
    assert not [line for line in err if line.startswith("kres: ")], err
    assert err[-1] == "Error: stopped before the first step"
