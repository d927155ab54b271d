"""Where training runs: the tf.distribute strategy, the precision policy and who writes files.

One device by default; MirroredStrategy over several local GPUs (or several logical CPUs, which is how
the tests exercise it); MultiWorkerMirroredStrategy when ``TF_CONFIG`` names a cluster; TPUStrategy
when asked. Under a non-TensorFlow Keras backend there is no tf.distribute: one device, no strategy.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

import keras

from keras_resnet.errors import KresError
from keras_resnet.specs import PRECISIONS


@dataclass
class Placement:
    """The strategy chosen for a run and the facts the training loop needs about it."""

    strategy: object | None  # a tf.distribute.Strategy, or None off the TensorFlow backend
    kind: str  # "default", "mirrored", "multi_worker", "tpu", or "none" (non-TF backend)
    replicas: int
    accelerator: str  # "cpu", "gpu" or "tpu"
    gpu_compute_capability: tuple[int, int] | None = None
    is_chief: bool = True
    worker_index: int = 0

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def _tf_config() -> dict | None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise KresError(f"TF_CONFIG is not valid JSON ({err}); fix or unset it") from None
    if not config.get("cluster"):
        return None
    return config


def _chief(config: dict | None) -> tuple[bool, int]:
    if config is None:
        return True, 0
    task = config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = "chief" in config["cluster"]
    return (kind == "chief") or (kind == "worker" and index == 0 and not has_chief), index


def make_placement(tpu: bool = False) -> Placement:
    """Pick the strategy. Must run before any other TensorFlow work (MultiWorkerMirroredStrategy needs it)."""
    if keras.backend.backend() != "tensorflow":
        return _non_tensorflow_placement(keras.backend.backend())
    import tensorflow as tf

    if tpu:
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", "local"))
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError):
            # (TensorFlow's text is of its internals: "... No OpKernel was registered to support Op
            # 'ConfigureDistributedTPU' ... [embedding_config", cut at its first line)
            raise KresError("--tpu: no TPU found; run on a TPU VM or set TPU_NAME") from None
        strategy = tf.distribute.TPUStrategy(resolver)
        return Placement(strategy, "tpu", strategy.num_replicas_in_sync, "tpu")

    config = _tf_config()
    if config is not None:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        is_chief, index = _chief(config)
        gpus = tf.config.list_logical_devices("GPU")
        return Placement(strategy, "multi_worker", strategy.num_replicas_in_sync, "gpu" if gpus else "cpu",
                         _compute_capability(), is_chief, index)

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy([d.name for d in gpus])
        return Placement(strategy, "mirrored", len(gpus), "gpu", _compute_capability())
    cpus = tf.config.list_logical_devices("CPU")
    if not gpus and len(cpus) > 1:  # several logical CPUs exist only when someone configured them on purpose
        strategy = tf.distribute.MirroredStrategy([d.name for d in cpus])
        return Placement(strategy, "mirrored", len(cpus), "cpu")
    return Placement(tf.distribute.get_strategy(), "default", 1, "gpu" if gpus else "cpu", _compute_capability())


def _non_tensorflow_placement(backend: str) -> Placement:
    """No tf.distribute off TensorFlow: the backend's first device, for the precision choice only."""
    accelerator, capability = "cpu", None
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        accelerator = device.platform if device.platform in ("gpu", "tpu") else "cpu"
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            capability = tuple(int(part) for part in str(device.compute_capability).split(".")[:2])
    return Placement(None, "none", 1, accelerator, capability)


def _compute_capability() -> tuple[int, int] | None:
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability:
            return tuple(capability)
    return None


def resolve_precision(precision: str, placement: Placement) -> str:
    """``auto``: bfloat16 on TPUs and GPUs of compute capability 8+, float16 on older GPUs, float32 on CPU."""
    if precision not in PRECISIONS:
        raise KresError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if placement.accelerator == "tpu":
        return "mixed_bfloat16"
    if placement.accelerator == "gpu":
        capability = placement.gpu_compute_capability or (0, 0)
        return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16"
    return "float32"


# What a mixed policy does to TensorFlow's training step on a CPU (ResNet-18, 32 px, batch 64, `kres bench
# throughput --precision ...`, results/throughput-cpu-intel-precision-*.json, Intel Xeon 6/167 with AVX-512 FP16
# and AMX, oneDNN on, 2026-12-04; 30 steps, twice): float32 500 and 475 images/s, mixed_bfloat16 436 and 444
# (0.87-0.93x); mixed_float16 5.67 in 4 steps, 5.95 in another run (about 1/85: oneDNN has no float16
# weight-gradient convolution there and runs its reference code). TensorFlow runs bfloat16 in its Eigen kernels on
# CPUs without AVX-512, and float16 on CPUs without AVX-512 FP16 (its IsDataTypeSupportedByOneDNNOnThisCPU);
# Eigen's on the same Xeon (oneDNN off): bfloat16 35 images/s, float16 76 (float32 in oneDNN capped at AVX2: about
# 296). The JAX backend's CPU step was the same in all three (133-139 images/s).
_CPU_MIXED_COST = {
    "mixed_float16": ("far slower than float32 (about 1/85 of its speed on an Intel Xeon with AVX-512 FP16, "
                      "several times slower on CPUs without it)", "GPUs"),
    "mixed_bfloat16": ("no faster than float32 (0.9x its speed on an Intel Xeon with AMX, several times slower "
                       "without AVX-512)", "GPUs and TPUs"),
}


def cpu_precision_note(precision: str, placement: Placement, backend: str | None = None) -> str | None:
    """One line for a mixed policy chosen on a CPU under TensorFlow, where it costs time and gains none."""
    if placement.accelerator != "cpu" or precision not in _CPU_MIXED_COST:
        return None
    if (backend or keras.backend.backend()) != "tensorflow":
        return None
    cost, where = _CPU_MIXED_COST[precision]
    return (f"note: on a CPU, TensorFlow trains {precision} {cost}; it pays off on {where}: leave --precision out "
            "to train in float32 here")


def check_global_batch(batch_size: int, replicas: int, *, recipe_batch: bool = False) -> int:
    """The per-replica batch; a global batch that does not split evenly is a user error. ``recipe_batch``: the
    batch size is the recipe's default, not typed (the line says so)."""
    if batch_size < 1:
        raise KresError(f"--batch-size must be at least 1, got {batch_size}")
    if batch_size % replicas:
        lower = batch_size - batch_size % replicas
        suggestion = f"{lower} or {lower + replicas}" if lower else str(replicas)
        whose = f"the recipe's default batch size {batch_size}" if recipe_batch else f"--batch-size {batch_size}"
        raise KresError(f"{whose} does not divide across {replicas} replicas: pass --batch-size a multiple of "
                        f"{replicas} (e.g. {suggestion})")
    return batch_size // replicas
