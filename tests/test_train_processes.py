"""`kres train` in real processes: MirroredStrategy, MultiWorkerMirroredStrategy, JAX (kill and resume: in
test_runs_safety).

Each run is ResNet-18 at 32 px on 256 synthetic images (batch 32: 8 steps an epoch).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from processes import KRES, kres_env

from keras_resnet import cpu, runs
from keras_resnet.callbacks import read_history

TINY = ["train", "--depth", "18", "--dataset", "synthetic", "--batch-size", "32", "--image-size", "32"]
STEPS_PER_EPOCH = 256 // 32



def _history_epochs(run: Path) -> list[int]:
    return [row["epoch"] for row in read_history(run / "history.csv")]


# Each JSON argument is one `kres` command line, run in turn in the same process (one TensorFlow start-up for
# both); each prints its exit code as a line of its own. TensorFlow is imported as `kres` imports it, with oneDNN
# on (imported first, it trained with oneDNN off, as no `kres` command does, and warned so: 35.7 s of CPU against
# 22.3 s, AMD EPYC Zen 3).
MIRRORED = textwrap.dedent("""
    import json
    import sys
    from kres.main import _import_backend_quietly, main
    _import_backend_quietly()
    import tensorflow as tf
    from keras_resnet import _compat
    print("onednn", _compat.tensorflow_onednn_enabled())
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    for argv in sys.argv[1:]:
        print(f"exit {main(json.loads(argv))}", file=sys.stderr, flush=True)
""")


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    run = tmp_path / "run"
    odd = [*TINY, "--batch-size", "33", "--output", str(tmp_path / "odd")]
    ok = [*TINY, "--epochs", "1", "--ema", "0.5", "--output", str(run)]  # the averages copied across replicas
    result = subprocess.run([sys.executable, "-c", MIRRORED, json.dumps(odd), json.dumps(ok)],
                            env=kres_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0] == f"onednn {cpu.is_x86()}"  # on x86, as in every kres command
    first, second, rest = result.stderr.split("\nexit ")  # stderr of the odd run, "2" + the ok run's, "0\n"
    assert first.strip().splitlines()[-1] == (
        "Error: --batch-size 33 does not divide across 2 replicas: pass --batch-size a multiple of 2 (e.g. 32 or 34)")
    assert second.startswith("2\n") and rest == "0\n", result.stderr[-3000:]
    assert not (tmp_path / "odd").exists()
    assert "2 replica(s) (mirrored, cpu)" in second
    config = json.loads((run / "config.json").read_text())["resolved"]
    assert (config["strategy"], config["replicas"], config["steps_per_epoch"]) == ("mirrored", 2, STEPS_PER_EPOCH)
    assert runs.read_checkpoint_state(run)["iterations"] == STEPS_PER_EPOCH


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_mirrored_with_two_local_workers(tmp_path):
    run = tmp_path / "run"
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen([*KRES, *TINY, "--epochs", "1", "--output", str(run)],
                                      env=kres_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert "2 replica(s) (multi_worker, cpu)" in outputs[0]
    config = json.loads((run / "config.json").read_text())["resolved"]
    assert (config["strategy"], config["replicas"]) == ("multi_worker", 2)
    assert runs.read_checkpoint_state(run)["iterations"] == STEPS_PER_EPOCH
    assert _history_epochs(run) == [1]
    assert (run / "last.keras").is_file()


@pytest.mark.parametrize("backend", ["jax"])
def test_same_training_code_under_another_keras_backend(tmp_path, backend):
    run = tmp_path / "run"
    # --ema: assigning the averages must not leave two variables on one buffer, which JAX's jitted steps donate.
    # A frozen first epoch (Keras's JAX optimizer updates only the variables it was built with, kres's fewer too),
    # then the whole network (Keras's own update).
    from keras_resnet.model import resnet

    start = tmp_path / "start.weights.h5"  # a frozen backbone needs weights to start from
    resnet(18, num_classes=10, input_shape=(32, 32, 3)).save_weights(start)
    result = subprocess.run([*KRES, *TINY, "--epochs", "2", "--freeze-backbone-epochs", "1", "--ema", "0.5",
                             "--weights", str(start), "--output", str(run)], env=kres_env(KERAS_BACKEND=backend),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "\nonly the classifier trains in epoch 1 (backbone frozen)\n" in result.stderr  # the banner says so
    config = json.loads((run / "config.json").read_text())["resolved"]
    assert (config["keras_backend"], config["strategy"], config["xla"]) == (backend, "none", True)
    assert runs.read_checkpoint_state(run)["iterations"] == 2 * STEPS_PER_EPOCH
    assert _history_epochs(run) == [1, 2]
