"""The optimizer's update: ``kres train``'s step with Keras's own update against the same step with the update
compiled as one XLA computation (``optim.compile_update``), in one process.

The two models alternate, a round of timed steps each, so a neighbour's load falls on both; the median of the
rounds is reported. Measured with the digits recipe's optimizer (its schedule, SGD with Nesterov momentum, weight
decay on the kernels, the weights' moving average) and with the plain momentum SGD that ``kres bench throughput``
gives every library. The step has kres train's loss and metrics and fused batch norm; the batch is synthetic and
already on the device, so the input pipeline is not in it.
TensorFlow backend only: JAX compiles the whole step anyway.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass

import keras

from keras_resnet import _compat, optim
from keras_resnet.bench.common import (
    images_per_second,
    machine,
    machine_line,
    markdown_table,
    rounds_phrase,
    synthetic_batch,
    take_turns,
    trust_warning,
    write_results,
)
from keras_resnet.errors import KresError, counted
from keras_resnet.model import resnet
from keras_resnet.recipes import RECIPES
from keras_resnet.specs import depth_spec

DIGITS = RECIPES["digits"]
DIGITS_TRAIN_IMAGES = 1438  # the built-in digits less their default 20% validation split
DIGITS_STEPS_PER_EPOCH = DIGITS_TRAIN_IMAGES // DIGITS.batch_size  # as kres train counts them: 22
STOCK, COMPILED = "Keras's own", "compiled (kres)"


@dataclass
class Config:
    depth: int = 18
    image_size: int = 32
    batch_size: int = 64
    num_classes: int = 10
    steps: int = 10  # timed steps per round
    warmup: int = 3  # untimed steps per model (the XLA compilation happens here)
    rounds: int = 6  # the two updates alternate this many times; the rounds' median is reported
    results_name: str = "update"


def _digits_optimizer(model: keras.Model, compiled: bool):
    schedule = optim.Schedule(optim.scaled_learning_rate(DIGITS.base_lr["sgd"], DIGITS.batch_size),
                              round(DIGITS.warmup_epochs * DIGITS_STEPS_PER_EPOCH),
                              DIGITS.epochs * DIGITS_STEPS_PER_EPOCH).build()  # the digits run's schedule
    return optim.make_optimizer("sgd", schedule, DIGITS.weight_decay["sgd"], model, ema=DIGITS.ema,
                                compiled_update=compiled)


def _plain_optimizer(model: keras.Model, compiled: bool):
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    if compiled:
        optim.compile_update(optimizer)
    return optimizer


OPTIMIZERS = {  # what the rows call each optimizer -> its factory
    f"digits recipe: SGD Nesterov, decay {DIGITS.weight_decay['sgd']:g}, average {DIGITS.ema:g}": _digits_optimizer,
    "plain: SGD momentum 0.9 (as in kres bench throughput)": _plain_optimizer,
}


def _step(cfg: Config, make_optimizer, compiled: bool):
    from keras_resnet.train import training_metrics  # imports TensorFlow; run() has checked the backend

    model = resnet(cfg.depth, num_classes=cfg.num_classes, input_shape=(cfg.image_size, cfg.image_size, 3))
    model.compile(optimizer=make_optimizer(model, compiled), loss="categorical_crossentropy",
                  metrics=training_metrics(cfg.num_classes), jit_compile=False)  # as kres train compiles it on a CPU
    x, y = (keras.ops.convert_to_tensor(a) for a in synthetic_batch(cfg.batch_size, cfg.image_size, cfg.num_classes))
    return lambda: model.train_on_batch(x, y)  # returns a host float: each step is synced


def _alternate(steps: dict, cfg: Config, on_round: Callable[[int], object] = lambda number: None) -> dict:
    """Images/s of each step in every round, timed in alternating rounds (the order flips every round);
    ``on_round(n)`` as round n begins."""
    for step in steps.values():
        images_per_second(step, cfg.batch_size, 1, cfg.warmup, sync=lambda: None)
    rates, errors = take_turns({name: (lambda step=step: images_per_second(step, cfg.batch_size, cfg.steps, 0,
                                                                          sync=lambda: None))
                                for name, step in steps.items()}, cfg.rounds, on_round)
    for err in errors.values():
        raise err
    return rates


def measure_rows(cfg: Config, say: Callable[[str], object] = lambda line: None) -> list[dict]:
    """Both updates with each optimizer; ``say`` gets a line as each optimizer's steps are built, as each round
    begins and with each optimizer's figures."""
    rows = []
    with _compat.fused_batch_norm():  # as kres train runs the step on the TensorFlow backend
        for name, make_optimizer in OPTIMIZERS.items():
            short = name.split(":")[0]
            say(f"{short}: building and warming up both updates ...")
            rounds = _alternate({STOCK: _step(cfg, make_optimizer, False),
                                 COMPILED: _step(cfg, make_optimizer, True)},
                                cfg, on_round=lambda number, short=short: say(
                                    f"{short}: round {number} of {cfg.rounds}, {counted(cfg.steps, 'step')} of each "
                                    "update"))
            rate = {update: statistics.median(rates) for update, rates in rounds.items()}
            say(f"{short}: {STOCK} {rate[STOCK]:,.1f} images/s, {COMPILED} {rate[COMPILED]:,.1f}")
            rows.append({"optimizer": name, "update": STOCK, "images_per_s": rate[STOCK], "rounds": rounds[STOCK]})
            rows.append({"optimizer": name, "update": COMPILED, "images_per_s": rate[COMPILED],
                         "rounds": rounds[COMPILED], "compiled_vs_keras": rate[COMPILED] / rate[STOCK]})
    return rows


def run(cfg: Config, say: Callable[[str], object] = lambda line: None) -> dict:
    """Measure both updates with each optimizer; write JSON and markdown; return the payload. ``say`` gets the
    progress lines of :func:`measure_rows`."""
    if keras.backend.backend() != "tensorflow":
        raise KresError("kres bench update measures the TensorFlow backend's update (JAX compiles the whole step "
                        "anyway); run it with KERAS_BACKEND=tensorflow")
    depth_spec(cfg.depth)
    host = machine()
    load_before = os.getloadavg()
    rows = measure_rows(cfg, say)
    payload = {"benchmark": "update", "backend": "tensorflow", "machine": host, "config": asdict(cfg), "rows": rows,
               "load_before": load_before, "load": os.getloadavg()}
    table = (f"Training step with Keras's own optimizer update and with kres's compiled one, ResNet-{cfg.depth}, "
             f"{cfg.image_size} px, batch {cfg.batch_size}, on {machine_line(host, payload['load'], load_before)}; "
             f"{rounds_phrase(cfg.rounds, cfg.steps, 'step')}\n\n"
             + markdown_table(["optimizer", "update", "images_per_s", "compiled_vs_keras"], rows))
    payload["warning"] = trust_warning([(f"{row['optimizer'].split(':')[0]}, {row['update']}", row["rounds"])
                                        for row in rows], load_before, payload["load"], host["cores"])
    if payload["warning"]:
        table += "\n" + payload["warning"] + "\n"
    payload["results_file"] = str(write_results(cfg.results_name, payload, table))
    payload["table"] = table
    return payload
