"""Training throughput: images/s of ResNet training steps on synthetic batches already on the device.

Peers measured in the same command: keras.applications.ResNet50 on the same Keras backend (with the plain
``train_on_batch`` step) and, where PyTorch and torchvision import, torchvision's ResNet (channels_last,
bf16 autocast, optionally ``torch.compile``). Importing this module needs only Keras (and JAX or TensorFlow as
its backend): the GPU machines we measure on have no TensorFlow.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import keras
import numpy as np

from keras_resnet.bench.common import machine, markdown_table, write_results
from keras_resnet.model import resnet
from keras_resnet.specs import depth_spec


@dataclass
class Config:
    depth: int = 50
    batch_size: int = 32
    image_size: int = 224
    precision: str = "float32"  # a Keras dtype policy; torch uses bf16 autocast for mixed_bfloat16
    steps: int = 10  # timed steps per measurement
    warmup: int = 3  # untimed steps (compilation happens here)
    xla: bool = True  # jit_compile for the Keras train_on_batch step
    torch: bool = True  # measure torchvision too, where torch and torchvision import
    torch_compile: bool = True
    num_classes: int = 1000
    results_name: str | None = None  # file stem under benchmarks/results; None: "throughput-<backend>"


def _batch(cfg: Config):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (cfg.batch_size, cfg.image_size, cfg.image_size, 3)).astype("float32")
    y = np.eye(cfg.num_classes, dtype="float32")[rng.integers(0, cfg.num_classes, cfg.batch_size)]
    return x, y


def _timed(step, cfg: Config, sync) -> float:
    for _ in range(cfg.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(cfg.steps):
        step()
    sync()
    return cfg.batch_size * cfg.steps / (time.perf_counter() - start)


def keras_train_on_batch(model: keras.Model, cfg: Config) -> float:
    """The plain Keras step: ``compile(jit_compile=...)`` then ``train_on_batch`` on device arrays."""
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="categorical_crossentropy",
                  jit_compile=cfg.xla)
    x, y = (keras.ops.convert_to_tensor(a) for a in _batch(cfg))  # already on the device
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


def _torchvision():
    """torchvision where torch and torchvision import (CPU torch included), else None."""
    from keras_resnet.weights import import_torchvision

    try:
        return import_torchvision()
    except ImportError:
        return None


def torchvision_step(cfg: Config, compiled: bool) -> float:
    import torch

    torchvision = _torchvision()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = getattr(torchvision.models, f"resnet{cfg.depth}")(num_classes=cfg.num_classes)
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), device=device)
    autocast = cfg.precision == "mixed_bfloat16"

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    if compiled:
        step = torch.compile(step)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    return _timed(step, cfg, sync)


def run(cfg: Config) -> dict:
    """Measure ours and the peers; write JSON and markdown; return the payload."""
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
        measure(f"keras_resnet ResNet-{cfg.depth}", f"train_on_batch, jit_compile={cfg.xla}",
                lambda: keras_train_on_batch(resnet(cfg.depth, num_classes=cfg.num_classes, input_shape=shape), cfg))
        measure("keras.applications ResNet50", f"train_on_batch, jit_compile={cfg.xla}",
                lambda: keras_train_on_batch(
                    keras.applications.ResNet50(weights=None, input_shape=shape, classes=cfg.num_classes), cfg))
    finally:
        keras.config.set_dtype_policy("float32")
    if cfg.torch and _torchvision() is not None:
        measure(f"torchvision resnet{cfg.depth}", "eager, channels_last", lambda: torchvision_step(cfg, False))
        if cfg.torch_compile:
            measure(f"torchvision resnet{cfg.depth}", "torch.compile, channels_last",
                    lambda: torchvision_step(cfg, True))

    best = max((r["images_per_s"] for r in rows if r["model"].startswith("keras_resnet") and r["images_per_s"]),
               default=None)
    for row in rows:
        if row["images_per_s"] and best:
            row["ours_vs_this"] = best / row["images_per_s"]
    payload = {"benchmark": "throughput", "backend": backend, "config": asdict(cfg), "machine": machine(),
               "rows": rows}
    title = (f"Training throughput, ResNet-{cfg.depth}, {cfg.image_size} px, batch {cfg.batch_size}, "
             f"{cfg.precision}, Keras backend {backend}, on {payload['machine']['accelerator']} / "
             f"{payload['machine']['cpu']} ({payload['machine']['cores']} cores)\n\n")
    table = title + markdown_table(["model", "step", "images_per_s", "ours_vs_this", "error"], rows)
    payload["results_file"] = str(write_results(cfg.results_name or f"throughput-{backend}", payload, table))
    payload["table"] = table
    return payload
