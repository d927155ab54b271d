"""Nothing lost and nothing silent: run locks, full disks, damaged checkpoints, non-finite losses, exact resume."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from keras_resnet import runlock
from keras_resnet.errors import KresError

KRES = [sys.executable, "-c", "from kres.main import entry_point; entry_point()"]
# Digits at 32 px, batch 64: 22 steps an epoch.
DIGITS = ["train", "--depth", "18", "--epochs", "2", "--batch-size", "64"]


def _env(**extra) -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _wait_for(predicate, proc, seconds=240.0) -> None:
    deadline = time.time() + seconds
    while not predicate():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


# --- one run per directory -----------------------------------------------------------------------------------

def test_second_train_on_one_output_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([*KRES, *DIGITS, "--output", str(run)], env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: (run / "config.json").is_file(), first)
        second = subprocess.run([*KRES, *DIGITS, "--lr", "0.05", "--output", str(run)], env=_env(),
                                capture_output=True, text=True, timeout=300)
        holder = f"PID {first.pid} on {socket.gethostname()}"
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"Error: {run} is in use by {holder}: wait for it to finish, or choose another output directory"]
        assert json.loads((run / "config.json").read_text())["train"]["lr"] != 0.05  # the second run wrote nothing
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    stream = io.StringIO()
    runlock.acquire(run, stream)
    try:
        assert stream.getvalue() == f"{run} was locked by {holder}, which is no longer running: taking it over\n"
        assert (run / ".lock").read_text() == f"PID {os.getpid()} on {socket.gethostname()}"
    finally:
        runlock.release(run)
    assert (run / ".lock").read_text() == ""  # released cleanly: the next holder says nothing


def test_lock_is_reentrant_and_a_failed_start_leaves_no_directory(tmp_path):
    from keras_resnet.data import DataConfig
    from keras_resnet.train import TrainConfig, train

    with pytest.raises(KresError, match="holds no run"):
        train(TrainConfig(output=str(tmp_path / "new"), resume=True), DataConfig())
    assert not (tmp_path / "new").exists()

    @runlock.releasing
    def twice():
        runlock.acquire(tmp_path / "a")
        runlock.acquire(tmp_path / "a")
        return (tmp_path / "a" / ".lock").read_text()

    assert twice() == f"PID {os.getpid()} on {socket.gethostname()}"
    assert not (tmp_path / "a").exists()
