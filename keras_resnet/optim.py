"""Optimizers and learning-rate schedules for training a ResNet.

Everything here is stock Keras 3 (``keras.optimizers.SGD``/``AdamW``, ``CosineDecay``), so a compiled
model serializes without custom objects and the same code runs under the TensorFlow and JAX backends. On the
TensorFlow backend ``kres train`` runs the optimizer's update as one XLA computation (``compile_update``) in runs of
``COMPILED_UPDATE_MIN_STEPS`` steps or more, without a tf.distribute strategy; JAX compiles the whole step anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from keras_resnet import _compat
from keras_resnet.errors import KresError
from keras_resnet.specs import OPTIMIZERS

REFERENCE_BATCH = 256  # base learning rates are quoted for this global batch and scaled linearly
# A run of fewer steps keeps Keras's own update (``compile_update``): compiling it took 0.6-0.7 s more of the first
# step of ResNet-18 (32 px, batch 64, two threads; 0.9 s at one), and the digits recipe's update saved about 15 ms a
# step compiled (1.06x, ``kres bench update``): it pays after about 45 steps (AMD EPYC Zen 3, AVX2, 2026-12-07).
COMPILED_UPDATE_MIN_STEPS = 64


def scaled_learning_rate(base_lr: float, global_batch: int) -> float:
    """The linear scaling rule: ``base_lr`` is the rate for a global batch of 256."""
    return base_lr * global_batch / REFERENCE_BATCH


@dataclass(frozen=True)
class Schedule:
    """Linear warmup from 0 to ``peak_lr`` over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""

    peak_lr: float
    warmup_steps: int
    total_steps: int

    @property
    def warmup(self) -> int:
        """The steps the rate rises for: at most all but the last (0: it starts at its peak)."""
        return max(min(self.warmup_steps, self.total_steps - 1), 0)

    def build(self) -> keras.optimizers.schedules.LearningRateSchedule:
        if self.total_steps < 1:
            raise KresError(f"training needs at least one step, got {self.total_steps}")
        warmup = self.warmup
        if warmup <= 0:
            return keras.optimizers.schedules.CosineDecay(self.peak_lr, decay_steps=self.total_steps)
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=self.total_steps - warmup, warmup_target=self.peak_lr, warmup_steps=warmup)


def warmup_cosine(peak_lr: float, warmup_steps: int, total_steps: int):
    """Shorthand for ``Schedule(peak_lr, warmup_steps, total_steps).build()``."""
    return Schedule(peak_lr, warmup_steps, total_steps).build()


def is_decayed(variable) -> bool:
    """Weight decay applies to conv and dense kernels only: never to BN gamma/beta, biases or BN statistics."""
    return variable.path.rsplit("/", 1)[-1] == "kernel"


def make_optimizer(name: str, learning_rate, weight_decay: float, model: keras.Model,
                   momentum: float = 0.9, ema: float = 0.0, *,
                   compiled_update: bool = True) -> keras.optimizers.Optimizer:
    """SGD with Nesterov momentum or AdamW; decay excluded from every variable that is not a kernel.

    The optimizer is built on all of ``model``'s trainable variables at once, so freezing and unfreezing
    layers later (``--freeze-backbone-epochs``) keeps one set of slots and one step counter. With ``ema``, it
    also keeps a moving average of those variables, updated inside every step (Keras's ``use_ema``); the
    averages are optimizer variables, so they are checkpointed and resumed with the rest. ``compiled_update``:
    see ``compile_update`` (off: Keras's own update, what ``kres bench update`` compares with, and what ``kres
    train`` keeps for a run of fewer than ``COMPILED_UPDATE_MIN_STEPS`` steps).
    """
    averaging = {"use_ema": True, "ema_momentum": ema} if ema else {}
    if name == "sgd":
        opt = keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=True,
                                   weight_decay=weight_decay or None, **averaging)
    elif name == "adamw":
        opt = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, **averaging)
    else:
        raise KresError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
    if ema:  # kres validates and saves the averages itself and trains in several fits: fit must not swap them in
        _compat.keep_weights_when_fit_ends(opt)
    if compiled_update:
        compile_update(opt)
    if weight_decay:
        opt.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if not is_decayed(v)])
    opt.build(model.trainable_variables)
    update_subsets_under_jax(opt, model)
    return opt


def update_subsets_under_jax(optimizer: keras.optimizers.Optimizer, model: keras.Model) -> None:
    """Let ``optimizer`` update fewer variables than it was built with under the JAX backend, as it does under
    TensorFlow: a frozen backbone (``--freeze-backbone-epochs``) or frozen BN layers train a part of the model.

    Keras's JAX trainer passes the values of ``model``'s trainable variables to ``stateless_apply``, which takes
    exactly the variables the optimizer was built with. Given fewer, this one runs ``apply(grads, variables)``, the
    call the TensorFlow trainer makes: only those variables, their slots and the step counter change. The weight
    average (``use_ema``) is kept for every variable, as Keras keeps it; a frozen variable's average is given as
    its value, so it stays as it was. The averages start as the variables' values here, which Keras's first step
    would write: so a variable frozen since the optimizer was built keeps an average equal to its value, as under
    TensorFlow. That assumes no frozen variable is assigned after this (loading a checkpoint, which brings the
    averages back with the weights, is fine); TensorFlow would then pull its average toward the new value.
    """
    if keras.backend.backend() != "jax":
        return
    for variable, average in _compat.ema_pairs(optimizer):
        average.assign(host_copy(variable))
    stock_apply = optimizer.stateless_apply

    def stateless_apply(optimizer_variables, grads, trainable_variables):
        built = _compat.built_variables(optimizer)
        if len(trainable_variables) == len(built):
            return stock_apply(optimizer_variables, grads, trainable_variables)
        training = model.trainable_variables  # read when the step is traced: this phase's variables
        values = dict(zip(map(id, training), trainable_variables, strict=True))
        slot_values = dict(zip(map(id, optimizer.variables), optimizer_variables, strict=True))
        values.update((id(v), slot_values[id(a)]) for v, a in _compat.ema_pairs(optimizer) if id(v) not in values)
        # A frozen variable without an average is never read: only the average reads every variable.
        mapping = [(v, values[id(v)] if id(v) in values else keras.ops.zeros(v.shape, v.dtype)) for v in built]
        with keras.StatelessScope(state_mapping=[*mapping, *zip(optimizer.variables, optimizer_variables)]) as scope:
            optimizer.apply(grads, training)
        return ([scope.get_current_value(v) for v in training],
                [scope.get_current_value(v) for v in optimizer.variables])

    optimizer.stateless_apply = stateless_apply


def host_copy(value) -> np.ndarray:
    """``value`` (a variable or tensor) copied into host memory. Assign a variable from this, not from another
    variable: under JAX the two would share one buffer, which the next jitted step donates (deletes) twice."""
    return np.array(keras.ops.convert_to_numpy(value))


def compile_update(optimizer: keras.optimizers.Optimizer) -> None:
    """Run ``optimizer``'s update (decay, momentum, the weight average, the step count) as one XLA computation on
    the TensorFlow backend, where the rest of the step stays uncompiled (XLA's convolutions are slower on CPU).

    Keras's TensorFlow optimizer issues several small ops per variable, each a pass over the weights: on 2 CPU
    cores the update of ResNet-18 took 21 ms of a 130 ms step at 32 px, batch 64, and 7 ms compiled (32 and 12 ms
    with the weight average). ``optimizer`` stays a stock Keras optimizer (its ``apply`` is wrapped on this
    instance only), so it serializes as before. Under a ``tf.distribute`` strategy the update keeps Keras's own
    path: its cross-replica merge cannot run inside a compiled function. What Keras reads in Python while tracing
    the update (the schedule object, decay, clipping, the excluded variables) is fixed at the first step with each
    list of variables: for other settings, make another optimizer.
    """
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    stock_apply = optimizer.apply
    compiled = {}  # one function per list of variables: the frozen-backbone phase updates fewer

    def apply(grads, trainable_variables=None):
        if tf.distribute.has_strategy() or trainable_variables is None:
            return stock_apply(grads, trainable_variables)
        variables = list(trainable_variables)
        key = tuple(id(v) for v in variables)
        if key not in compiled:
            compiled[key] = tf.function(lambda g: stock_apply(g, variables), jit_compile=True, autograph=False)
        return compiled[key](list(grads))

    optimizer.apply = apply


def decayed_variable_names(optimizer: keras.optimizers.Optimizer, model: keras.Model) -> set[str]:
    """Paths of the variables ``optimizer`` applies weight decay to (what the tests check)."""
    if not optimizer.weight_decay:
        return set()
    return {v.path for v in model.trainable_variables if _compat.uses_weight_decay(optimizer, v)}
