"""Training throughput: images/s of ResNet training steps on synthetic batches already on the device.

Ours runs batch norm as TensorFlow's fused kernel and the optimizer's update as one XLA computation on the
TensorFlow backend, as ``kres train`` does. Peers
measured in the same command: keras.applications.ResNet50 on the same Keras backend (with the plain
``train_on_batch`` step) and, where PyTorch and torchvision import, torchvision's ResNet (channels_last,
bf16 autocast, optionally ``torch.compile``), in a process of its own. Each model is built and warmed up once;
then they alternate, a round of timed steps each, and the median of the rounds is reported, so that a shared machine's
load falls on all of them rather than on whichever ran in a busy minute. Importing this module needs only Keras
(and JAX or TensorFlow as its backend): the GPU machines we measure on have no TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass

import keras

from keras_resnet import _compat
from keras_resnet.bench import torch_peer
from keras_resnet.bench.common import (
    machine,
    machine_line,
    markdown_table,
    rounds_phrase,
    synthetic_batch,
    take_turns,
    trust_warning,
    warmed_up,
    write_results,
)
from keras_resnet.errors import counted
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
    steps: int = 10  # timed steps per round
    warmup: int = 3  # untimed steps before the first round (compilation happens here)
    rounds: int = 3  # ours and the peers alternate, a round each, this many times; the rounds' median is reported
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


Round = Callable[[], float]  # times one round of a model's step; returns its images/s


def _rounds(step, cfg: Config, sync, context=contextlib.nullcontext) -> Round:
    return warmed_up(step, cfg.batch_size, cfg.steps, cfg.warmup, sync, context)


def keras_train_on_batch(model: keras.Model, cfg: Config, kres_step: bool = False) -> Round:
    """The Keras step: ``compile(jit_compile=...)`` then ``train_on_batch`` on device arrays; with ``kres_step``
    batch norm runs as TensorFlow's fused kernel and the optimizer's update as one XLA computation, as in
    ``kres train`` (TensorFlow backend only)."""
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    if kres_step:
        compile_update(optimizer)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", jit_compile=cfg.xla)
    x, y = (keras.ops.convert_to_tensor(a) for a in _batch(cfg))  # already on the device
    return _rounds(lambda: model.train_on_batch(x, y), cfg, sync=lambda: None,  # returns a host float: syncs
                   context=_compat.fused_batch_norm if kres_step else contextlib.nullcontext)


def jax_stateless_step(model: keras.Model, cfg: Config) -> Round:
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

    return _rounds(run, cfg, sync=lambda: holder["loss"] is not None and holder["loss"].block_until_ready())


def _torchvision() -> bool:
    """Whether torch and torchvision are installed here (CPU torch included). Found, not imported: torch is never
    loaded into the process that measures ours; its own process says why, if it cannot import them."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "torchvision"))


def _contenders(cfg: Config, stack: contextlib.ExitStack) -> list[tuple[str, str, Callable[[], Round]]]:
    """(model, step, setup) of ours and each peer at ``cfg``'s size; a setup builds and warms up, and returns the
    model's round. torchvision's process, once started, stays up until ``stack`` closes."""
    backend = keras.backend.backend()
    shape = (cfg.image_size, cfg.image_size, 3)

    def ours():
        return resnet(cfg.depth, num_classes=cfg.num_classes, input_shape=shape)

    contenders = []
    if backend == "jax":
        contenders.append((f"keras_resnet ResNet-{cfg.depth}", "jax.jit stateless, donated",
                           lambda: jax_stateless_step(ours(), cfg)))
    kres_step = backend == "tensorflow"
    contenders.append((f"keras_resnet ResNet-{cfg.depth}",
                       f"train_on_batch{', fused BN, XLA update' if kres_step else ''}, jit_compile={cfg.xla}",
                       lambda: keras_train_on_batch(ours(), cfg, kres_step=kres_step)))
    if cfg.depth == 50:  # keras.applications has no ResNet-18/34
        contenders.append(("keras.applications ResNet50", f"train_on_batch, jit_compile={cfg.xla}",
                           lambda: keras_train_on_batch(
                               keras.applications.ResNet50(weights=None, input_shape=shape,
                                                           classes=cfg.num_classes), cfg)))
    if cfg.torch and _torchvision():
        for compiled in (False, True) if cfg.torch_compile else (False,):
            contenders.append((f"torchvision resnet{cfg.depth}",
                               f"{'torch.compile' if compiled else 'eager'}, channels_last",
                               lambda compiled=compiled: stack.enter_context(
                                   torch_peer.Peer(asdict(cfg), compiled)).round))
    return contenders


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"


def measure_rows(cfg: Config, say: Callable[[str], object] = lambda line: None) -> list[dict]:
    """Ours and the peers at one size, in alternating rounds (``common.take_turns``). Each row has the median of
    its rounds' images/s, every round's, and, once ours is known, ``ours_vs_this`` (the medians' ratio) and
    ``ours_vs_this_by_round``. A model that cannot run here is reported in its row's ``error``, not fatal. ``say``
    gets a line as each model is set up and each round begins."""
    depth_spec(cfg.depth)
    rows, rounds = [], {}
    size = f"ResNet-{cfg.depth}, {cfg.image_size} px, batch {cfg.batch_size}"
    keras.config.set_dtype_policy(cfg.precision)
    try:
        with contextlib.ExitStack() as stack:
            for index, (model, step, setup) in enumerate(_contenders(cfg, stack)):
                say(f"{size}: building and warming up {model} ({step})")
                rows.append({"model": model, "step": step, "images_per_s": None})
                try:
                    rounds[index] = setup()
                except Exception as err:
                    rows[index]["error"] = _error(err)
            rates, errors = take_turns(rounds, cfg.rounds, on_round=lambda number: say(
                f"{size}: round {number} of {cfg.rounds}, {counted(cfg.steps, 'timed step')} of each model"))
    finally:
        keras.config.set_dtype_policy("float32")
    for index, rates_of_one in rates.items():
        rows[index]["rounds"] = rates_of_one
        if index in errors:
            rows[index]["error"] = _error(errors[index])
        else:
            rows[index]["images_per_s"] = statistics.median(rates_of_one)
    _compare(rows)
    return rows


def _compare(rows: list[dict]) -> None:
    """Ours (the fastest of our rows) against each row: the ratio of the medians, and round by round."""
    ours = max((r for r in rows if r["model"].startswith("keras_resnet") and r["images_per_s"]),
               key=lambda r: r["images_per_s"], default=None)
    if ours is None:
        return
    for row in rows:
        if row["images_per_s"]:
            row["ours_vs_this"] = ours["images_per_s"] / row["images_per_s"]
            row["ours_vs_this_by_round"] = [a / b for a, b in zip(ours["rounds"], row["rounds"])]


def _range(values: list[float] | None) -> str:
    if not values:
        return ""
    return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def _table_rows(rows: list[dict]) -> list[dict]:
    return [{**row, "rounds": ", ".join(f"{v:.1f}" for v in row.get("rounds", [])),
             "by_round": _range(row.get("ours_vs_this_by_round"))} for row in rows]


def _label(row: dict, rows: list[dict]) -> str:
    """A row's model, and its step where another row of its size has the same model (torchvision eager and
    compiled)."""
    twins = sum(other["model"] == row["model"] for other in rows)
    return row["model"] if twins == 1 else f"{row['model']} ({row['step']})"


def run(cfg: Config) -> dict:
    """Measure ours and the peers at one size; write JSON and markdown; return the payload."""
    return run_sizes([cfg], cfg.results_name)


def run_sizes(cfgs: list[Config], results_name: str | None = None,
              say: Callable[[str], object] = lambda line: None) -> dict:
    """Measure ours and the peers at each size, in this one process; write one JSON and one markdown table.
    ``say`` gets the progress lines of ``measure_rows``."""
    backend = keras.backend.backend()
    host = machine()
    load_before = os.getloadavg()
    runs = [{"config": asdict(cfg), "rows": measure_rows(cfg, say)} for cfg in cfgs]
    payload = {"benchmark": "throughput", "backend": backend, "machine": host, "runs": runs,
               "load_before": load_before, "load": os.getloadavg()}
    if len(runs) == 1:  # the single-size layout, as before
        payload.update(config=runs[0]["config"], rows=runs[0]["rows"])
    table = (f"Training throughput, Keras backend {backend}, on "
             f"{machine_line(host, payload['load'], load_before)}\n\n")
    for cfg, one in zip(cfgs, runs):
        table += (f"ResNet-{cfg.depth}, {cfg.image_size} px, batch {cfg.batch_size}, {cfg.precision}; "
                  f"{rounds_phrase(cfg.rounds, cfg.steps)}\n\n"
                  + markdown_table(["model", "step", "images_per_s", "rounds", "ours_vs_this", "by_round", "error"],
                                   _table_rows(one["rows"])) + "\n")
    payload["warning"] = trust_warning([(_label(row, one["rows"]), row.get("rounds", [])) for one in runs
                                        for row in one["rows"]], load_before, payload["load"], host["cores"])
    if payload["warning"]:
        table += payload["warning"] + "\n"
    payload["measured"] = any(row["images_per_s"] for one in runs for row in one["rows"]
                              if row["model"].startswith("keras_resnet"))
    payload["results_file"] = str(write_results(results_name or f"throughput-{backend}", payload, table,
                                                measured=payload["measured"]))
    payload["table"] = table
    return payload
