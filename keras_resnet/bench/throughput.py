"""Training throughput: images/s of ResNet training steps on synthetic batches already on the device.

Ours runs batch norm as TensorFlow's fused kernel and the optimizer's update as one XLA computation on the
TensorFlow backend, as ``kres train`` does. Peers
measured in the same command: keras.applications.ResNet50 on the same Keras backend (with the plain
``train_on_batch`` step) and, where PyTorch and torchvision import, torchvision's ResNet (channels_last,
bf16 autocast, optionally ``torch.compile``). Importing this module needs only Keras (and JAX or TensorFlow as
its backend): the GPU machines we measure on have no TensorFlow.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import keras

from keras_resnet import _compat
from keras_resnet.bench import torch_peer
from keras_resnet.bench.common import (
    images_per_second,
    machine,
    machine_line,
    markdown_table,
    synthetic_batch,
    write_results,
)
from keras_resnet.model import resnet
from keras_resnet.optim import compile_update
from keras_resnet.specs import depth_spec

# (depth, image size, batch) measured on a CPU when no size is given: the digits demo's training step, and a
# ResNet-50 step small enough for 2 cores.
CPU_SIZES = ((18, 32, 64), (50, 64, 16))


@dataclass
class Config:
    depth: int = 50
    batch_size: int = 32
    image_size: int = 224
    precision: str = "float32"  # a Keras dtype policy; torch uses bf16 autocast for mixed_bfloat16
    steps: int = 10  # timed steps per measurement
    warmup: int = 3  # untimed steps (compilation happens here)
    xla: bool = True  # jit_compile for the Keras train_on_batch step (off for TensorFlow on CPU: slower there)
    torch: bool = True  # measure torchvision too, where torch and torchvision import
    torch_compile: bool = True  # off on CPU by default: compiling takes minutes there
    num_classes: int = 1000
    results_name: str | None = None  # file stem under benchmarks/results; None: "throughput-<backend>"


def keras_backend() -> str:
    return keras.backend.backend()


def has_accelerator() -> bool:
    """Whether the Keras backend sees a GPU or TPU (the CPU defaults differ: no XLA, no torch.compile)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"))
    return False


def _batch(cfg: Config):
    return synthetic_batch(cfg.batch_size, cfg.image_size, cfg.num_classes)


def _timed(step, cfg: Config, sync) -> float:
    return images_per_second(step, cfg.batch_size, cfg.steps, cfg.warmup, sync)


def keras_train_on_batch(model: keras.Model, cfg: Config, kres_step: bool = False) -> float:
    """The Keras step: ``compile(jit_compile=...)`` then ``train_on_batch`` on device arrays; with ``kres_step``
    batch norm runs as TensorFlow's fused kernel and the optimizer's update as one XLA computation, as in
    ``kres train`` (TensorFlow backend only)."""
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    if kres_step:
        compile_update(optimizer)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", jit_compile=cfg.xla)
    x, y = (keras.ops.convert_to_tensor(a) for a in _batch(cfg))  # already on the device
    with _compat.fused_batch_norm() if kres_step else contextlib.nullcontext():
        return _timed(lambda: model.train_on_batch(x, y), cfg, sync=lambda: None)  # returns a host float: syncs


def jax_stateless_step(model: keras.Model, cfg: Config) -> float:
    """A ``jax.jit`` step over ``model.stateless_call`` with donated state: no host sync, no Python state
    updates between steps. JAX backend only."""
    import jax

    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.CategoricalCrossentropy()

    def loss_and_state(trainable, non_trainable, x, y):
        y_pred, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, y_pred), non_trainable

    grad_fn = jax.value_and_grad(loss_and_state, has_aux=True)

    def step(state, x, y):
        trainable, non_trainable, opt_vars = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return (trainable, non_trainable, opt_vars), loss

    jitted = jax.jit(step, donate_argnums=(0,))
    x, y = (jax.device_put(a) for a in _batch(cfg))
    if model.compute_dtype == "bfloat16":
        x = x.astype("bfloat16")  # halve the input's bytes; the model casts anyway
    holder = {"state": ([v.value for v in model.trainable_variables],
                        [v.value for v in model.non_trainable_variables],
                        [v.value for v in optimizer.variables]),
              "loss": None}

    def run():
        holder["state"], holder["loss"] = jitted(holder["state"], x, y)

    return _timed(run, cfg, sync=lambda: holder["loss"] is not None and holder["loss"].block_until_ready())


def _torchvision() -> bool:
    """Whether torch and torchvision import here (CPU torch included)."""
    from keras_resnet.weights import import_torchvision

    try:
        import_torchvision()
    except ImportError:
        return False
    return True


def torchvision_step(cfg: Config, compiled: bool) -> float:
    """torchvision's images/s, measured in a fresh process: in this one, TensorFlow's thread pools, idle but
    alive, slowed torch's OpenMP threads up to 10x on 2 cores (ResNet-50: 4 against 37 images/s)."""
    return torch_peer.run_isolated(asdict(cfg), compiled)


def measure_rows(cfg: Config) -> list[dict]:
    """Ours and the peers at one size; each row has images/s and, once ours is known, ``ours_vs_this``."""
    depth_spec(cfg.depth)
    backend = keras.backend.backend()
    rows = []

    def measure(name: str, step: str, fn):
        try:
            rate = fn()
        except Exception as err:  # a peer that cannot run here is reported, not fatal
            rows.append({"model": name, "step": step, "images_per_s": None, "error": f"{type(err).__name__}: {err}"})
            return
        rows.append({"model": name, "step": step, "images_per_s": rate})

    shape = (cfg.image_size, cfg.image_size, 3)
    keras.config.set_dtype_policy(cfg.precision)
    try:
        if backend == "jax":
            measure(f"keras_resnet ResNet-{cfg.depth}", "jax.jit stateless, donated",
                    lambda: jax_stateless_step(resnet(cfg.depth, num_classes=cfg.num_classes, input_shape=shape),
                                               cfg))
        kres_step = backend == "tensorflow"
        step = f"train_on_batch{', fused BN, XLA update' if kres_step else ''}, jit_compile={cfg.xla}"
        measure(f"keras_resnet ResNet-{cfg.depth}", step,
                lambda: keras_train_on_batch(resnet(cfg.depth, num_classes=cfg.num_classes, input_shape=shape), cfg,
                                             kres_step=kres_step))
        if cfg.depth == 50:  # keras.applications has no ResNet-18/34
            measure("keras.applications ResNet50", f"train_on_batch, jit_compile={cfg.xla}",
                    lambda: keras_train_on_batch(
                        keras.applications.ResNet50(weights=None, input_shape=shape, classes=cfg.num_classes), cfg))
    finally:
        keras.config.set_dtype_policy("float32")
    if cfg.torch and _torchvision():
        measure(f"torchvision resnet{cfg.depth}", "eager, channels_last", lambda: torchvision_step(cfg, False))
        if cfg.torch_compile:
            measure(f"torchvision resnet{cfg.depth}", "torch.compile, channels_last",
                    lambda: torchvision_step(cfg, True))

    best = max((r["images_per_s"] for r in rows if r["model"].startswith("keras_resnet") and r["images_per_s"]),
               default=None)
    for row in rows:
        if row["images_per_s"] and best:
            row["ours_vs_this"] = best / row["images_per_s"]
    return rows


def run(cfg: Config) -> dict:
    """Measure ours and the peers at one size; write JSON and markdown; return the payload."""
    return run_sizes([cfg], cfg.results_name)


def run_sizes(cfgs: list[Config], results_name: str | None = None) -> dict:
    """Measure ours and the peers at each size, in this one process; write one JSON and one markdown table."""
    backend = keras.backend.backend()
    host = machine()
    runs = [{"config": asdict(cfg), "rows": measure_rows(cfg)} for cfg in cfgs]
    payload = {"benchmark": "throughput", "backend": backend, "machine": host, "runs": runs}
    if len(runs) == 1:  # the single-size layout, as before
        payload.update(config=runs[0]["config"], rows=runs[0]["rows"])
    table = f"Training throughput, Keras backend {backend}, on {machine_line(host)}\n\n"
    for cfg, one in zip(cfgs, runs):
        table += (f"ResNet-{cfg.depth}, {cfg.image_size} px, batch {cfg.batch_size}, {cfg.precision}\n\n"
                  + markdown_table(["model", "step", "images_per_s", "ours_vs_this", "error"], one["rows"]) + "\n")
    payload["measured"] = any(row["images_per_s"] for one in runs for row in one["rows"]
                              if row["model"].startswith("keras_resnet"))
    payload["results_file"] = str(write_results(results_name or f"throughput-{backend}", payload, table,
                                                measured=payload["measured"]))
    payload["table"] = table
    return payload
