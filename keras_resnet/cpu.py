"""The host CPU: its model and vector ISA, and TensorFlow's oneDNN kernels on x86.

TensorFlow's x86 wheels carry two sets of CPU kernels. It turns its oneDNN kernels on by itself only where the CPU
has AVX-512 VNNI, AVX-512 BF16, AVX-VNNI or AMX; everywhere else (AVX2-only CPUs: AMD before Zen 4, most laptops,
many cloud VMs) it runs its Eigen kernels, which train a ResNet about 6x slower on 2 cores. The switch,
``TF_ENABLE_ONEDNN_OPTS``, is read once, when TensorFlow is imported, so ``enable_onednn`` must run before that:
``import keras_resnet`` calls it, and every ``kres`` command imports keras_resnet before TensorFlow.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
# The CPU features with which TensorFlow turns oneDNN on by itself (its port::CPUFeature test, TF 2.9-2.21).
ONEDNN_DEFAULT_FEATURES = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
# /proc/cpuinfo flag -> the name users know, in the order they were added to x86.
_ISA_NAMES = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "VNNI", "avx_vnni": "AVX-VNNI",
              "avx512_bf16": "BF16", "amx_tile": "AMX"}


class OneDNNOffWarning(UserWarning):
    """TensorFlow was imported before keras_resnet, with its oneDNN kernels off."""


def is_x86(machine: str | None = None) -> bool:
    return (machine or platform.machine()).lower() in ("x86_64", "amd64", "i386", "i686", "x86")


@cache
def _cpuinfo() -> Mapping[str, str]:
    """The first processor's fields in /proc/cpuinfo (Linux; empty elsewhere), read-only: it is read once."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return MappingProxyType(fields)


def cpu_model() -> str:
    """The model name (elsewhere than Linux, platform's word only)."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_generation(fields: Mapping[str, str] | None = None) -> str | None:
    """``family 25 model 17`` of an x86 CPU, or None: where a VM names its CPU only "AMD EPYC", this is what tells
    a Zen 3 (family 25 model 1, AVX2 only) from a Zen 4 (model 17, AVX-512)."""
    fields = _cpuinfo() if fields is None else fields
    if "cpu family" in fields and "model" in fields:
        return f"family {fields['cpu family']} model {fields['model']}"
    return None


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo spells them (empty where there is no /proc/cpuinfo)."""
    return frozenset(_cpuinfo().get("flags", "").split())


def vector_isa(flags: frozenset[str] | None = None) -> list[str]:
    """``["AVX2", "FMA", "AVX-512", "VNNI", "BF16"]`` and so on: the vector extensions that decide kernel speed."""
    flags = cpu_flags() if flags is None else flags
    return [name for flag, name in _ISA_NAMES.items() if flag in flags]


def onednn_default_on(flags: frozenset[str] | None = None) -> bool:
    """Whether TensorFlow turns oneDNN on by itself on this CPU (when ``TF_ENABLE_ONEDNN_OPTS`` is unset)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in ONEDNN_DEFAULT_FEATURES)


def onednn_enabled(environ=os.environ, flags: frozenset[str] | None = None, machine: str | None = None) -> bool:
    """Whether TensorFlow runs (or, once imported, will run) its oneDNN kernels here."""
    if not is_x86(machine):
        return False
    value = environ.get(ONEDNN_ENV)
    if value is not None:
        return value.strip().lower() in ("1", "true", "yes", "on")
    return onednn_default_on(flags)


def enable_onednn(environ=os.environ, modules=sys.modules, machine: str | None = None) -> bool:
    """Turn TensorFlow's oneDNN kernels on for x86 unless the user chose (``TF_ENABLE_ONEDNN_OPTS`` set, ``0``
    included). Where TensorFlow is already imported with them off, warn once with the fix. Returns whether oneDNN
    is (or will be) on."""
    if not is_x86(machine) or ONEDNN_ENV in environ:
        return onednn_enabled(environ, machine=machine)
    if "tensorflow" not in modules:
        environ[ONEDNN_ENV] = "1"
        return True
    if onednn_default_on():
        return True
    warnings.warn(
        f"TensorFlow was imported before keras_resnet with its oneDNN CPU kernels off ({', '.join(vector_isa())}): "
        f"training runs several times slower. Set {ONEDNN_ENV}=1 before TensorFlow is imported (or import "
        "keras_resnet first), then restart the process.", OneDNNOffWarning, stacklevel=3)
    return False


# Caps that make kernels use less of the ISA than the CPU has (how an AVX2-only CPU is approximated on a newer one).
KERNEL_CAP_ENVS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def describe() -> dict:
    """CPU model, vector ISA, whether oneDNN is on, and any kernel ISA cap: what every CPU figure is quoted beside."""
    info = {"cpu": cpu_model(), "generation": cpu_generation(), "isa": vector_isa(), "onednn": onednn_enabled()}
    caps = {name: os.environ[name] for name in KERNEL_CAP_ENVS if os.environ.get(name)}
    if caps:
        info["kernel_isa_caps"] = caps
    return info
