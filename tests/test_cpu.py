"""The CPU description and TensorFlow's oneDNN switch (keras_resnet.cpu)."""

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from keras_resnet import cpu

ZEN3 = frozenset(["sse4_2", "avx", "avx2", "fma", "f16c"])  # AMD EPYC 7xx3: AVX2 and FMA, no AVX-512
ICELAKE = frozenset(["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"])
SAPPHIRE_RAPIDS = ICELAKE | {"avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"}


def test_vector_isa_names_the_extensions_that_decide_kernel_speed():
    assert cpu.vector_isa(ZEN3) == ["AVX2", "FMA"]
    assert cpu.vector_isa(ICELAKE) == ["AVX2", "FMA", "AVX-512", "VNNI"]
    assert cpu.vector_isa(SAPPHIRE_RAPIDS) == ["AVX2", "FMA", "AVX-512", "VNNI", "BF16", "AMX"]


def test_a_kernel_isa_cap_is_named_beside_every_figure(monkeypatch):
    from keras_resnet.bench.common import machine_line

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    assert "kernel_isa_caps" not in cpu.describe()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert cpu.describe()["kernel_isa_caps"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    info = {"cpu": "AMD EPYC", "isa": ["AVX2", "FMA", "AVX-512"], "onednn": True, "cores": 2, "accelerator": "none",
            "kernel_isa_caps": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}
    assert machine_line(info) == ("AMD EPYC (AVX2, FMA, AVX-512; oneDNN on; kernels capped: ONEDNN_MAX_CPU_ISA=AVX2), "
                                  "2 cores, no GPU")
    assert machine_line(info, (1.04, 0.5, 0.2)).endswith("2 cores, no GPU (load average 1.0 at the end)")


def test_the_cpu_generation_tells_apart_what_a_vm_names_alike():
    """A VM's /proc/cpuinfo names a Zen 3 and a Zen 4 both "AMD EPYC"; their family and model differ."""
    from keras_resnet.bench.common import machine_line

    assert cpu.cpu_generation({"model name": "AMD EPYC", "cpu family": "25", "model": "1"}) == "family 25 model 1"
    assert cpu.cpu_generation({"model name": "Apple M2"}) is None  # no such fields: not said
    info = {"cpu": "AMD EPYC", "generation": "family 25 model 17", "isa": ["AVX2", "FMA", "AVX-512"], "onednn": True,
            "cores": 2, "accelerator": "none"}
    assert machine_line(info) == "AMD EPYC (family 25 model 17; AVX2, FMA, AVX-512; oneDNN on), 2 cores, no GPU"
    if cpu.is_x86() and Path("/proc/cpuinfo").is_file():  # this machine's, as every benchmark records it
        assert cpu.describe()["generation"].startswith("family ")


def test_tensorflow_leaves_onednn_off_only_on_cpus_without_vnni_bf16_or_amx():
    assert not cpu.onednn_default_on(ZEN3)
    assert cpu.onednn_default_on(ICELAKE)
    assert cpu.onednn_default_on(SAPPHIRE_RAPIDS)
    assert not cpu.onednn_enabled({}, flags=ZEN3, machine="x86_64")
    assert cpu.onednn_enabled({"TF_ENABLE_ONEDNN_OPTS": "1"}, flags=ZEN3, machine="x86_64")
    assert not cpu.onednn_enabled({"TF_ENABLE_ONEDNN_OPTS": "0"}, flags=ICELAKE, machine="x86_64")
    assert not cpu.onednn_enabled({"TF_ENABLE_ONEDNN_OPTS": "1"}, flags=ICELAKE, machine="aarch64")


def test_enable_onednn_sets_the_switch_before_tensorflow_and_keeps_an_explicit_choice():
    environ = {}
    assert cpu.enable_onednn(environ, modules={}, machine="x86_64")
    assert environ == {"TF_ENABLE_ONEDNN_OPTS": "1"}
    environ = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert not cpu.enable_onednn(environ, modules={}, machine="x86_64")
    assert environ == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    environ = {}
    assert not cpu.enable_onednn(environ, modules={}, machine="aarch64")
    assert environ == {}


def test_tensorflow_imported_first_with_onednn_off_is_said_once_with_the_fix(monkeypatch):
    monkeypatch.setattr(cpu, "onednn_default_on", lambda flags=None: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            assert not cpu.enable_onednn({}, modules={"tensorflow": object()}, machine="x86_64")
    assert len(caught) == 1
    assert caught[0].category is cpu.OneDNNOffWarning
    assert "TF_ENABLE_ONEDNN_OPTS=1" in str(caught[0].message)
    assert "\n" not in str(caught[0].message)


@pytest.mark.skipif(not cpu.is_x86(), reason="oneDNN is TensorFlow's x86 CPU path")
@pytest.mark.parametrize(("env", "expected"), [(None, True), ("0", False)])
def test_importing_keras_resnet_first_turns_tensorflows_onednn_on(env, expected):
    code = ("import keras_resnet, tensorflow;"
            "from keras_resnet import _compat;"
            "print(_compat.tensorflow_onednn_enabled())")
    environ = {k: v for k, v in __import__("os").environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env is not None:
        environ["TF_ENABLE_ONEDNN_OPTS"] = env
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, check=True)
    assert out.stdout.strip().splitlines()[-1] == str(expected)
