"""Nothing lost and nothing silent: run locks, full disks, damaged checkpoints, non-finite losses, exact resume."""

from __future__ import annotations

import errno
import gc
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from processes import KRES, kres_env

from keras_resnet import runlock, runs
from keras_resnet.errors import KresError

# Digits at 32 px, batch 64: 22 steps an epoch.
DIGITS = ["train", "--depth", "18", "--epochs", "2", "--batch-size", "64"]



def _wait_for(predicate, proc, seconds=240.0) -> None:
    deadline = time.time() + seconds
    while not predicate():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _collect_garbage_while_it_is_young():
    """Free each test's tf.data iterators as soon as it ends. Keras leaves them in reference cycles, and deleting
    one blocks until its autotuning thread wakes; the longer the iterator has lived, the longer that thread sleeps
    (up to a minute for one freed after the kill-chain fixture's ~80 s of subprocesses: one garbage collection in
    the next test took 41-54 s in six of nine two-worker runs on an AMD EPYC Zen 4). Collected at once: ~0.3 s."""
    yield
    gc.collect()


# --- one run per directory -----------------------------------------------------------------------------------

def test_second_train_on_one_output_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([*KRES, *DIGITS, "--output", str(run)], env=kres_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: (run / "config.json").is_file(), first)
        second = subprocess.run([*KRES, *DIGITS, "--lr", "0.05", "--output", str(run)], env=kres_env(),
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
    assert not (run / ".lock").exists()  # released cleanly: the next holder says nothing
    stream = io.StringIO()
    runlock.acquire(run, stream)
    runlock.release(run)
    assert stream.getvalue() == ""


def test_sigterm_ends_train_as_ctrl_c_does_with_the_resume_hint_and_nothing_left_behind(tmp_path):
    """A scheduler's (or docker stop's) SIGTERM: the run ended at once, silently, with RUN/.lock and a partial
    checkpoint temporary left; now it unwinds as Ctrl-C does and the hinted command finishes the run."""
    run = tmp_path / "run"
    args = ["train", "--depth", "18", "--dataset", "synthetic", "--batch-size", "32", "--epochs", "200",
            "--output", str(run)]
    proc = subprocess.Popen([*KRES, *args], env=kres_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: runs.read_checkpoint_state(run) is not None, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    steps = runs.read_checkpoint_state(run)["steps"]
    assert err.strip().splitlines()[-1] == (f"Terminated. To resume from step {steps} of 1600, run the same command "
                                            f"again, or: kres train --resume --output {run}")
    assert out == "" and not (run / ".lock").exists() and not [p for p in run.rglob("*kres-*")]
    assert steps % 8 == 0 and 8 <= steps < 200 * 8  # 256 images, batch 32: 8 steps an epoch


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


def test_a_lock_file_removed_by_its_releasing_holder_is_opened_again(tmp_path, monkeypatch):
    """The holder before this one unlinks RUN/.lock as it lets go: a flock won on the file opened before that is
    on a file nobody else sees, so acquire opens the path again and holds the file that is there."""
    run = tmp_path / "run"
    run.mkdir()
    flock, calls = runlock.fcntl.flock, []

    def released_meanwhile(fd, op):
        calls.append(fd)
        if len(calls) == 1:
            (run / ".lock").unlink()
        return flock(fd, op)

    monkeypatch.setattr(runlock.fcntl, "flock", released_meanwhile)
    runlock.acquire(run)
    try:
        assert len(calls) == 2
        assert (run / ".lock").read_text() == f"PID {os.getpid()} on {socket.gethostname()}"
    finally:
        runlock.release(run)
    assert run.is_dir() and not list(run.iterdir())  # the lock goes; a folder acquire did not create stays


def test_a_folder_removed_by_its_releasing_holder_is_made_again(tmp_path, monkeypatch):
    """The holder before this one created the folder and removes it as it lets go, between this one's mkdir and
    its open of RUN/.lock: acquire makes the folder again and holds it, and its own release removes it."""
    run = tmp_path / "run"
    open_file, calls = runlock.os.open, []

    def removed_meanwhile(path, *args):
        calls.append(path)
        if len(calls) == 1:
            run.rmdir()
        return open_file(path, *args)

    monkeypatch.setattr(runlock.os, "open", removed_meanwhile)
    runlock.acquire(run)
    try:
        assert len(calls) == 2 and (run / ".lock").is_file()
    finally:
        runlock.release(run)
    assert not run.exists()


def test_a_run_directory_that_cannot_be_made_is_one_line_naming_it(tmp_path):
    (tmp_path / "a file").write_text("")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    for name, why in (("a file", "a file or a broken link is in the way"),
                      ("broken", "a file or a broken link is in the way"), ("a file/run", "Not a directory")):
        with pytest.raises(KresError) as caught:
            runlock.acquire(tmp_path / name)
        assert str(caught.value) == f"cannot write to {tmp_path / name}: {why}; choose another output path"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a file", "broken"]


def test_release_leaves_a_lock_file_that_is_not_its_own(tmp_path):
    run = tmp_path / "run"
    runlock.acquire(run)
    (run / ".lock").unlink()  # removed by hand while the run holds it, and taken by another process
    (run / ".lock").write_text("PID 1 on elsewhere")
    runlock.release(run)
    assert (run / ".lock").read_text() == "PID 1 on elsewhere"


def test_holder_names_a_live_process_of_this_host_from_the_lock_file(tmp_path):
    """What export says of a run still training: the name in its lock file, where that process still runs."""
    run = tmp_path / "run"
    run.mkdir()
    assert runlock.holder(run) is None  # no lock file
    child = subprocess.Popen(["sleep", "60"])
    try:
        for name, held in ((f"PID {child.pid} on {socket.gethostname()}", True),
                           (f"PID {child.pid} on elsewhere", False),  # another host's: cannot tell
                           (f"PID {os.getpid()} on {socket.gethostname()}", False),  # this process's own
                           ("not a name", False)):
            (run / ".lock").write_text(name)
            assert runlock.holder(run) == (name if held else None), name
    finally:
        child.kill()
        child.wait()
    (run / ".lock").write_text(f"PID {child.pid} on {socket.gethostname()}")
    assert runlock.holder(run) is None  # a killed holder's name


# --- out of space --------------------------------------------------------------------------------------------

def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_every_fileio_writer_turns_enospc_into_one_line_naming_the_file_and_the_size(tmp_path, monkeypatch):
    from keras_resnet import fileio

    monkeypatch.setattr(Path, "write_bytes", _no_space)
    with pytest.raises(fileio.OutOfSpace) as err:
        fileio.write_bytes(tmp_path / "model_int8.tflite", b"x" * 3_000_000)
    message = str(err.value)
    assert message.startswith(f"no space left on the device of {tmp_path} writing model_int8.tflite: it needs "
                              "about 3.0 MB, ")
    assert "\n" not in message and message.endswith("free some space or choose another output path")
    monkeypatch.setattr(Path, "write_text", _no_space)
    with pytest.raises(fileio.OutOfSpace, match=r"writing report\.json: it needs about 0\.0 MB"):
        fileio.write_json(tmp_path / "report.json", {"a": 1})

    def half_a_saved_model(tmp):
        (tmp / "variables").mkdir()
        (tmp / "variables" / "data").write_bytes(b"x" * 1_500_000)
        raise RuntimeError("ResourceExhaustedError: SaveV2 failed; No space left on device")

    monkeypatch.undo()
    with (pytest.raises(fileio.OutOfSpace, match=r"writing saved_model: it needs about 2\.0 MB"),
          fileio.atomic_dir(tmp_path / "saved_model", need=2_000_000) as tmp):
        half_a_saved_model(tmp)
    with (pytest.raises(fileio.OutOfSpace, match=r"writing curves\.png: it needs more than the 1\.5 MB written"),
          fileio.atomic_path(tmp_path / "curves.png") as tmp):
        tmp.write_bytes(b"x" * 1_500_000)
        raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary file or folder is left behind


def _tiny(tmp_path, **changes):
    from keras_resnet.data import DataConfig
    from keras_resnet.train import TrainConfig

    cfg = TrainConfig(depth=18, epochs=2, batch_size=32, checkpoint_steps=1, output=str(tmp_path / "run"))
    return dataclass_replace(cfg, **changes), DataConfig(dataset="synthetic", synthetic_size=64)


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_full_disk_at_a_checkpoint_keeps_the_last_good_one_and_the_rerun_resumes_from_it(tmp_path, monkeypatch):
    import keras

    from keras_resnet import fileio
    from keras_resnet.train import train

    save_weights = keras.Model.save_weights

    def full_at_step_3(self, path, *args, **kwargs):
        if "ckpt-3" in str(path) or Path(path).name.startswith(".ckpt-3."):
            with open(path, "wb") as handle:
                handle.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return save_weights(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", full_at_step_3)
    cfg, data = _tiny(tmp_path)
    with pytest.raises(fileio.OutOfSpace) as err:
        train(cfg, data, stream=io.StringIO())
    # ResNet-18's weights and SGD's momentum, float32 (89.4 MB), and the file's headers
    assert "writing ckpt-3.weights.h5: it needs about 91.4 MB" in str(err.value)
    assert str(err.value).endswith(" MB is free; free some space, then rerun the same command to resume from the "
                                   "checkpoint of step 2")
    checkpoints = tmp_path / "run" / "checkpoint"
    assert json.loads((checkpoints / "state.json").read_text())["weights"] == "ckpt-2.weights.h5"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["ckpt-1.weights.h5", "ckpt-2.weights.h5", "state.json"]
    monkeypatch.undo()
    stream = io.StringIO()
    result = train(cfg, data, stream=stream)
    assert "resuming at step 2" in stream.getvalue() and (result.steps, result.iterations) == (4, 4)


def test_a_full_disk_or_an_unwritable_folder_mid_run_says_which_checkpoint_is_kept(tmp_path, monkeypatch):
    """Only the checkpoint's own write said "the checkpoint of step N is kept: rerun the same command"; best.keras
    or history.csv said "choose another output path", which starts the run over (walk)."""
    from keras_resnet import fileio
    from keras_resnet import train as train_module

    save = train_module._Float32Exporter.save
    full = "no space left on the device of RUN writing best.keras: it needs about 45 MB, 0.6 MB is free"
    refused = "cannot write to RUN: Operation not permitted"
    # their advice to choose another output path (which starts the run over) gives way to the resume
    for error, mend in ((fileio.OutOfSpace(f"{full}; free some space or choose another output path"),
                         "free some space"),
                        (fileio.CannotWrite(f"{refused}; choose another output path"), "make {run} writable")):
        saves = []

        def full_the_second_time(self, path, error=error, saves=saves):
            saves.append(path.name)
            if len(saves) == 2:  # epoch 2's best.keras: after epoch 1's checkpoint (step 2)
                raise error
            save(self, path)

        monkeypatch.setattr(train_module._Float32Exporter, "save", full_the_second_time)
        cfg, data = _tiny(tmp_path / type(error).__name__, checkpoint_steps=None, ema=0.0)
        with pytest.raises(type(error)) as err:
            train_module.train(cfg, data, stream=io.StringIO())
        problem = full if isinstance(error, fileio.OutOfSpace) else refused
        assert str(err.value) == (f"{problem}; {mend.format(run=cfg.output)}, then rerun the same command to resume "
                                  "from the checkpoint of step 2")


def test_validation_images_gone_while_training_are_one_line(tmp_path, monkeypatch):
    """Validation files removed during the first epoch (before the pass that caches them): tf.data's cardinality
    check failed inside fit, a 90-line TensorFlow traceback (walk). Here the count is one batch too many."""
    from keras_resnet import train as train_module

    counted = train_module._with_cardinality
    monkeypatch.setattr(train_module, "_with_cardinality",
                        lambda dataset, examples, batch_size: counted(dataset, examples + batch_size, batch_size))
    cfg, data = _tiny(tmp_path)
    with pytest.raises(KresError) as err:
        train_module.train(cfg, data, stream=io.StringIO())
    assert str(err.value) == ("validation images of run were removed or became unreadable while it trained (fewer "
                              "batches than were counted at the start); restore them, then rerun the same command "
                              "to resume from the checkpoint of step 2")


def test_a_run_folder_removed_while_training_ends_the_run_in_one_line(tmp_path, monkeypatch):
    """rm -rf of a run's folder mid-epoch: the epoch's saves made it again, half-full (no config.json, meta.json or
    lock), and the run ended on "no meta.json at RUN/meta.json"; the same command then said "exists and is not a
    kres run directory" (walk)."""
    import shutil

    from keras_resnet import callbacks as cb
    from keras_resnet.train import train

    on_batch = cb.ProgressBar.on_train_batch_end
    for steps in (None, 1):  # a checkpoint at each epoch's end, or also at each step (which made checkpoint/ again)
        cfg, data = _tiny(tmp_path / str(steps), checkpoint_steps=steps)
        run = Path(cfg.output)

        def removed(self, batch, logs=None, run=run):
            if run.exists():
                shutil.rmtree(run)
            on_batch(self, batch, logs)

        monkeypatch.setattr(cb.ProgressBar, "on_train_batch_end", removed)
        with pytest.raises(KresError) as err:
            train(cfg, data, stream=io.StringIO())
        assert str(err.value) == (f"{run} was removed while training (its config.json is gone, and its checkpoints "
                                  "with it): start the run again")
        assert not run.exists()  # not made again, half-full


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_train_and_export_on_a_20mb_tmpfs_are_one_line_with_no_traceback_and_no_segfault(tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        run = disk / "run"
        trained = subprocess.run([*KRES, "train", "--depth", "18", "--dataset", "synthetic", "--batch-size", "32",
                                  "--epochs", "1", "--checkpoint-steps", "1", "--output", str(run)],
                                 env=kres_env(), capture_output=True, text=True, timeout=300)
        assert trained.returncode == 2, trained.stderr[-3000:]
        last = trained.stderr.strip().splitlines()[-1]
        assert last.startswith(f"Error: no space left on the device of {run / 'checkpoint'} writing "
                               "ckpt-1.weights.h5: it needs about 91.4 MB"), trained.stderr[-3000:]
        assert "Traceback" not in trained.stderr and last.endswith("; no checkpoint was written yet")
        assert sorted(p.name for p in (run / "checkpoint").iterdir()) == []
        _export_to_a_full_disk(tmp_path, disk, capsys)
    finally:
        subprocess.run(["umount", str(disk)])


_H5_ON_A_FULL_DISK = """
import sys
import keras
from keras_resnet import fileio
inputs = keras.Input((1000,))
outputs = inputs
for index in range(8):
    outputs = keras.layers.Dense(1000)(outputs)
try:  # 32 MB of weights onto 20 MB, with no estimate to refuse it first: h5py fails mid-write
    with fileio.atomic_path(sys.argv[1]) as tmp:
        keras.Model(inputs, outputs).save_weights(tmp)
except fileio.OutOfSpace as err:
    print(err)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_h5py_failing_mid_write_for_want_of_space_ends_cleanly(tmp_path):
    """A checkpoint that filled the disk mid-write (its headers were not in the estimate) printed h5py's tracebacks
    and crashed the interpreter at exit: exit 139 (walk). The partial file is emptied while h5py still holds it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        result = subprocess.run([sys.executable, "-c", _H5_ON_A_FULL_DISK, str(disk / "w.weights.h5")], env=kres_env(),
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert result.stdout.startswith(f"no space left on the device of {disk} writing w.weights.h5: it needs more "
                                        "than the "), result.stdout
        assert ", 21.0 MB is free;" in result.stdout  # 20 MiB: once the partial file is gone (it said 0.0 MB)
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)])


def _export_to_a_full_disk(tmp_path: Path, disk: Path, capsys) -> None:
    from keras_resnet.meta import ModelMeta
    from keras_resnet.model import resnet
    from kres.main import main

    source = tmp_path / "source"
    source.mkdir()
    model = resnet(18, num_classes=2, input_shape=(32, 32, 3))
    model.save(source / "best.keras")
    ModelMeta.from_model(model, ["a", "b"]).save(source)
    # the .tflite's bytes, known before the write; the SavedModel's weights (44.7 MB) and its headers
    for flag, name, need in (("--tflite", "model_float32.tflite", "44."), ("--saved-model", "saved_model", "46.2")):
        out = disk / flag.strip("-")
        assert main(["export", str(source), "-o", str(out), flag]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith(f"Error: no space left on the device of {out} writing {name}: it needs about {need}"), \
            last
        assert not out.exists()  # nothing was moved in (it held meta.json and labels.txt), so the folder went too


# --- checkpoints you can trust -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A tiny run (2 epochs of 2 steps, a checkpoint every step) stopped just after its step-3 checkpoint."""
    import keras_resnet.callbacks as cb
    from keras_resnet.train import train

    tmp_path = tmp_path_factory.mktemp("interrupted")
    save = cb.Checkpointer.save

    def stop_after_step_3(self, complete=False):
        save(self, complete)
        if self.step == 3:
            raise KeyboardInterrupt

    cb.Checkpointer.save = stop_after_step_3
    try:
        with pytest.raises(KeyboardInterrupt):
            train(*_tiny(tmp_path), stream=io.StringIO())
    finally:
        cb.Checkpointer.save = save
    return tmp_path / "run"


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


@pytest.fixture
def ctrl_c_raises():
    """Python's own Ctrl-C handler (KeyboardInterrupt), whatever the suite was started with (a background job
    ignores Ctrl-C)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_signal_while_held_is_raised_once_the_body_ends_and_a_second_one_at_once(ctrl_c_raises):
    from keras_resnet import fileio

    done = []
    with pytest.raises(KeyboardInterrupt), fileio.interrupts_held():
        signal.raise_signal(signal.SIGINT)
        with fileio.interrupts_held():  # a hold inside a hold: the outer one raises it
            done.append("inner")
        done.append("outer")
    assert done == ["inner", "outer"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt), fileio.interrupts_held():  # a second Ctrl-C: at once
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        done.append("not reached")
    assert done == ["inner", "outer"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(OSError, match="disk"), fileio.interrupts_held():  # another error ends it: that one is raised
        signal.raise_signal(signal.SIGINT)
        raise OSError("disk")
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with fileio.interrupts_held():
            signal.raise_signal(signal.SIGTERM)
            assert seen == []
        assert seen == [signal.SIGTERM]  # kres's handler (SIGTERM as Ctrl-C) is called as it would have been
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with fileio.interrupts_held():  # ignored stays ignored (`kres train &`)
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_held_signal_says_what_it_waits_for_at_once(capfd, ctrl_c_raises):
    """A Ctrl-C that waited for an epoch's saves gave no sign for seconds; pressed again, it lost the epoch."""
    from keras_resnet import fileio

    with pytest.raises(KeyboardInterrupt), fileio.interrupts_held("saving epoch 3 before stopping"):
        signal.raise_signal(signal.SIGINT)
        assert capfd.readouterr().err == "kres: saving epoch 3 before stopping\n"  # while the saves go on
    with pytest.raises(KeyboardInterrupt), fileio.interrupts_held():  # no note: nothing said
        signal.raise_signal(signal.SIGINT)
    assert capfd.readouterr().err == ""


def test_a_staged_set_is_moved_in_whole_or_not_at_all(tmp_path, monkeypatch, ctrl_c_raises):
    from keras_resnet import fileio

    final = tmp_path / "out"
    final.mkdir()
    (final / "report.json").write_text("old")
    (final / "converter.log").write_text("an earlier set's")
    (final / "notes.txt").write_text("the user's")
    with pytest.raises(KeyboardInterrupt) as stop, fileio.staged_dir(final, last=("report.json",),
                                                                     own=("converter.log",)) as staging:
        for name in ("a.tflite", "b.tflite", "report.json"):
            (staging / name).write_text("new")
        real = fileio._swap_in

        def ctrl_c_at_the_first_move(new, to):  # a Ctrl-C as the moves begin: it waits for them
            signal.raise_signal(signal.SIGINT)
            monkeypatch.setattr(fileio, "_swap_in", real)
            real(new, to)

        monkeypatch.setattr(fileio, "_swap_in", ctrl_c_at_the_first_move)
    assert stop.value.moved_in == "all"  # so kres export says the export is whole, not "nothing was moved"
    assert {p.name: p.read_text() for p in final.iterdir()} == {
        "a.tflite": "new", "b.tflite": "new", "report.json": "new", "notes.txt": "the user's"}  # no earlier log
    # a second Ctrl-C stops at once: some files moved in, the report not (kres export says the folder is mixed)
    with pytest.raises(KeyboardInterrupt) as stop, fileio.staged_dir(final, last=("report.json",)) as staging:
        for name in ("a.tflite", "b.tflite", "report.json"):
            (staging / name).write_text("newer")
        calls = []

        def twice_at_the_second_move(new, to):
            calls.append(new.name)
            if len(calls) == 2:
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)
            real(new, to)

        monkeypatch.setattr(fileio, "_swap_in", twice_at_the_second_move)
    monkeypatch.setattr(fileio, "_swap_in", real)
    assert stop.value.moved_in == "some"
    assert {p.name: p.read_text() for p in final.iterdir()} == {
        "a.tflite": "newer", "b.tflite": "new", "report.json": "new", "notes.txt": "the user's"}
    # a KresError keeps the staged log only where its line names it, under the final name
    for named in (True, False):
        (final / "converter.log").write_text("an earlier set's")
        with pytest.raises(KresError) as err, fileio.staged_dir(final, kept_on_error=("converter.log",)) as staging:
            (staging / "converter.log").write_text("why it failed")
            raise KresError(f"conversion failed (the converter's log: {staging / 'converter.log'})" if named
                            else "the Edge TPU check failed")
        assert (final / "converter.log").read_text() == ("why it failed" if named else "an earlier set's")
        assert str(staging) not in str(err.value) and (str(final / "converter.log") in str(err.value)) == named
    assert not [p for p in final.iterdir() if p.name.startswith(".")]
    # a folder made read-only meanwhile: one line naming what is in (it was a PermissionError's traceback; walk)
    calls = []

    def refused_at_the_second_move(new, to):
        calls.append(new.name)
        if len(calls) == 2:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(new), None, str(to))
        real(new, to)

    monkeypatch.setattr(fileio, "_swap_in", refused_at_the_second_move)
    with pytest.raises(fileio.CannotWrite) as err, fileio.staged_dir(final, last=("report.json",)) as staging:
        for name in ("a.tflite", "b.tflite", "report.json"):
            (staging / name).write_text("newest")
    assert str(err.value) == (f"cannot move b.tflite into {final}: Operation not permitted; moved in before it, beside "
                              "the earlier files: a.tflite; make the folder writable and run the command again")
    assert (final / "a.tflite").read_text() == "newest" and (final / "b.tflite").read_text() == "new"
    assert not [p for p in final.iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(fileio, "_swap_in", real)
    # the folder removed meanwhile (rm -rf), and made again by the writes after it: export said "wrote" and listed
    # meta.json and labels.txt, gone with it (walk)
    import shutil

    with pytest.raises(KresError) as err, fileio.staged_dir(final) as staging:
        fileio.write_text(staging / "labels.txt", "a\n")
        shutil.rmtree(final)
        fileio.write_bytes(staging / "model.tflite", b"TFL3")  # atomic_path makes the folders again
    assert str(err.value) == (f"{final} was removed while the files were written into it, and the files written "
                              "before with it: run the command again")
    assert not final.exists()


def test_ctrl_c_during_an_epochs_saves_waits_for_them_and_the_rerun_goes_on_after_that_epoch(
        tmp_path, monkeypatch, ctrl_c_raises):
    """A Ctrl-C once an epoch is validated, while its history row, best model and checkpoint are written (a second
    or so an epoch), is raised when they are done: the epoch was lost, the rerun trained it again."""
    import keras_resnet.callbacks as cb
    from keras_resnet.train import train

    write_row = cb.HistoryWriter.on_epoch_end

    def ctrl_c_first(self, epoch, logs=None):
        if epoch == 0:
            signal.raise_signal(signal.SIGINT)
        write_row(self, epoch, logs)

    monkeypatch.setattr(cb.HistoryWriter, "on_epoch_end", ctrl_c_first)
    stream = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        train(*_tiny(tmp_path, checkpoint_steps=None), stream=stream)
    run = tmp_path / "run"
    assert (runs.read_checkpoint_state(run) or {}).get("steps") == 2  # epoch 1 (2 steps), whole
    assert [row["epoch"] for row in cb.read_history(run / "history.csv")] == [1]
    assert (run / "best.keras").is_file() and "Epoch 1/2 " in stream.getvalue()
    assert "Epoch 2/2" not in stream.getvalue()

    monkeypatch.setattr(cb.HistoryWriter, "on_epoch_end", write_row)
    stream = io.StringIO()
    result = train(*_tiny(tmp_path, checkpoint_steps=None), stream=stream)
    assert "(resuming at step 2, epoch 2)" in stream.getvalue(), stream.getvalue()
    assert [row["epoch"] for row in result.history] == [1, 2] and result.steps == 4


def test_checkpoint_state_keeps_the_one_before_and_only_it(interrupted_run):
    state = json.loads((interrupted_run / "checkpoint" / "state.json").read_text())
    assert (state["steps"], state["weights"], state["previous"]["steps"], state["previous"]["weights"]) == (
        3, "ckpt-3.weights.h5", 2, "ckpt-2.weights.h5")
    assert state["bytes"] == (interrupted_run / "checkpoint" / "ckpt-3.weights.h5").stat().st_size
    from keras_resnet.fileio import file_sha256

    assert (state["sha256"], state["previous"]["sha256"]) == (  # the digest resuming checks each file against
        file_sha256(interrupted_run / "checkpoint" / "ckpt-3.weights.h5"),
        file_sha256(interrupted_run / "checkpoint" / "ckpt-2.weights.h5"))
    assert sorted(p.name for p in (interrupted_run / "checkpoint").iterdir()) == [
        "ckpt-2.weights.h5", "ckpt-3.weights.h5", "state.json"]


def test_truncated_latest_checkpoint_falls_back_to_the_one_before_and_says_so(interrupted_run, tmp_path):
    from keras_resnet.train import train

    run = _copy(interrupted_run, tmp_path)
    latest = run / "checkpoint" / "ckpt-3.weights.h5"
    full = latest.stat().st_size
    latest.write_bytes(latest.read_bytes()[: full // 2])
    stream = io.StringIO()
    result = train(*_tiny(tmp_path), stream=stream)
    assert (f"checkpoint ckpt-3.weights.h5 is damaged ({full // 2} bytes where {full} were written); resuming "
            "from ckpt-2.weights.h5, the one before it\n") in stream.getvalue()
    assert "resuming at step 2" in stream.getvalue()
    assert (result.steps, result.iterations) == (4, 4)


def test_deleted_weights_fall_back_and_with_none_left_the_run_is_refused(interrupted_run, tmp_path):
    from keras_resnet.runs import checkpoint_weights

    run = _copy(interrupted_run, tmp_path)
    (run / "checkpoint" / "ckpt-3.weights.h5").unlink()
    stream = io.StringIO()
    assert checkpoint_weights(run, stream) == (2, run / "checkpoint" / "ckpt-2.weights.h5")
    assert stream.getvalue() == ("checkpoint ckpt-3.weights.h5 is damaged (the file is missing); resuming from "
                                 "ckpt-2.weights.h5, the one before it\n")
    (run / "checkpoint" / "ckpt-2.weights.h5").unlink()
    with pytest.raises(KresError) as err:
        checkpoint_weights(run, stream)
    assert str(err.value) == (
        "ckpt-3.weights.h5 is damaged (the file is missing) and ckpt-2.weights.h5 is damaged (the file is missing): "
        f"no good checkpoint left in {run}; start a new run with another --output (--weights {run / 'best.keras'} "
        "starts it from this one)")
    # the same refusal from kres train: its meta.json, rewritten before the checkpoint is read, keeps the training
    # images' statistics (measured again only after the banner; export's calibration check reads them)
    from keras_resnet.train import train

    stats = json.loads((run / "meta.json").read_text())["extra"]["input_stats"]
    with pytest.raises(KresError, match="no good checkpoint left"):
        train(*_tiny(tmp_path), stream=io.StringIO())
    assert json.loads((run / "meta.json").read_text())["extra"]["input_stats"] == stats


def _weights_file(path: Path, steps: int) -> dict:
    """A small ``.weights.h5`` written directly (one 64 KiB array: the middle of the file is its data) and its
    state.json entry, with the size and SHA-256 Checkpointer records."""
    import h5py

    from keras_resnet.fileio import file_sha256

    with h5py.File(path, "w") as handle:
        handle["layers/dense/vars/0"] = np.random.default_rng(steps).standard_normal(16384).astype("float32")
    return {"steps": steps, "iterations": steps, "weights": path.name, "bytes": path.stat().st_size,
            "sha256": file_sha256(path)}


def _checkpointed(tmp_path: Path, digests: bool = True) -> Path:
    """A run folder holding only a checkpoint of step 3 and the one before (step 2); without ``digests``, the
    state.json written before checkpoints recorded their SHA-256."""
    folder = tmp_path / "run" / runs.CHECKPOINT_DIR
    folder.mkdir(parents=True)
    previous, latest = (_weights_file(folder / f"ckpt-{steps}.weights.h5", steps) for steps in (2, 3))
    if not digests:
        del previous["sha256"], latest["sha256"]
    (folder / runs.STATE_FILE).write_text(json.dumps({**latest, "previous": previous, "complete": False}))
    return tmp_path / "run"


def _flip_middle(path: Path) -> str:
    """Eight bytes in the middle of ``path`` inverted in place (a disk error, a bad copy): its size unchanged, and
    h5py still reads it. Returns the file's SHA-256 now."""
    from keras_resnet.fileio import file_sha256

    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(byte ^ 0xFF for byte in data[middle:middle + 8])
    path.write_bytes(bytes(data))
    return file_sha256(path)


def test_a_checkpoint_whose_bytes_changed_in_place_falls_back_to_the_one_before_and_says_so(tmp_path):
    """Bytes flipped in a weights file at the same size, which h5py still reads, were resumed from without a word:
    the run went on from corrupted weights."""
    import h5py

    run = _checkpointed(tmp_path)
    latest, before = run / "checkpoint" / "ckpt-3.weights.h5", run / "checkpoint" / "ckpt-2.weights.h5"
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    now = _flip_middle(latest)
    assert latest.stat().st_size == state["bytes"] and runs.weights_problem(latest, state["bytes"]) is None
    with h5py.File(latest, "r") as handle:  # read as weights, different ones
        assert not np.array_equal(handle["layers/dense/vars/0"][()],
                                  np.random.default_rng(3).standard_normal(16384).astype("float32"))
    stream = io.StringIO()
    assert runs.checkpoint_weights(run, stream) == (2, before)
    assert stream.getvalue() == (
        f"checkpoint ckpt-3.weights.h5 is damaged (its bytes changed since it was written: SHA-256 {now[:16]}, not "
        f"{state['sha256'][:16]}); resuming from ckpt-2.weights.h5, the one before it\n")
    earlier = _flip_middle(before)
    with pytest.raises(KresError) as err:
        runs.checkpoint_weights(run, stream)
    assert str(err.value) == (
        f"ckpt-3.weights.h5 is damaged (its bytes changed since it was written: SHA-256 {now[:16]}, not "
        f"{state['sha256'][:16]}) and ckpt-2.weights.h5 is damaged (its bytes changed since it was written: SHA-256 "
        f"{earlier[:16]}, not {state['previous']['sha256'][:16]}): no good checkpoint left in {run}; start a new run "
        f"with another --output ({run} has no best.keras to start from: it stopped before its first epoch ended)")


def test_a_state_written_before_checkpoints_had_digests_resumes_as_it_did(tmp_path):
    run = _checkpointed(tmp_path, digests=False)
    stream = io.StringIO()
    assert runs.checkpoint_weights(run, stream) == (3, run / "checkpoint" / "ckpt-3.weights.h5")
    assert stream.getvalue() == ""
    # Its first checkpoint since: the latest has a digest, the one before (written by the older kres) none.
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    latest = _weights_file(run / "checkpoint" / "ckpt-4.weights.h5", 4)
    (run / "checkpoint" / "state.json").write_text(json.dumps({**latest, "previous": state, "complete": False}))
    now = _flip_middle(run / "checkpoint" / "ckpt-4.weights.h5")
    assert runs.checkpoint_weights(run, stream) == (3, run / "checkpoint" / "ckpt-3.weights.h5")
    assert stream.getvalue() == (
        f"checkpoint ckpt-4.weights.h5 is damaged (its bytes changed since it was written: SHA-256 {now[:16]}, not "
        f"{latest['sha256'][:16]}); resuming from ckpt-3.weights.h5, the one before it\n")


def test_a_checkpoint_records_its_files_digest_and_drops_a_latest_whose_bytes_changed(tmp_path, monkeypatch):
    """The checkpoint written after resuming from the one before a changed latest keeps no damaged ``previous``,
    as after a latest h5py cannot read."""
    import keras

    from keras_resnet.callbacks import Checkpointer
    from keras_resnet.fileio import file_sha256

    run = _checkpointed(tmp_path)
    _flip_middle(run / "checkpoint" / "ckpt-3.weights.h5")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    model.optimizer.build(model.trainable_variables)
    checkpointer = Checkpointer(run / "checkpoint", steps_per_epoch=2)
    checkpointer.set_model(model)
    checkpointer.start_fit(4)
    checkpointer.save()
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert (state["steps"], state["weights"], "previous" in state) == (4, "ckpt-4.weights.h5", False)
    assert state["sha256"] == file_sha256(run / "checkpoint" / "ckpt-4.weights.h5")
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == ["ckpt-4.weights.h5", "state.json"]
    from keras_resnet import fileio

    hashed = []
    monkeypatch.setattr(fileio, "file_sha256", lambda path: hashed.append(Path(path).name) or file_sha256(path))
    checkpointer.start_fit(6)
    checkpointer.save()  # the one before is its own: kept, and not hashed again
    assert len(hashed) == 1 and hashed[0].startswith(".ckpt-6.")  # once a checkpoint: its own file, written
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert (state["previous"]["weights"], state["previous"]["sha256"]) == (
        "ckpt-4.weights.h5", file_sha256(run / "checkpoint" / "ckpt-4.weights.h5"))
    assert state["sha256"] == file_sha256(run / "checkpoint" / "ckpt-6.weights.h5")


def test_a_refusal_names_a_best_keras_to_start_from_only_where_there_is_one(tmp_path):
    """A run stopped inside its first epoch has checkpoints but no best.keras: its refusals said "--weights
    RUN/best.keras starts it from this one", and following that was "weights file ... does not exist" (new-user
    walk); one stopped before its first checkpoint has nothing to lose."""
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "checkpoint" / "state.json").write_text("{")
    with pytest.raises(KresError) as err:
        runs.read_checkpoint_state(run)
    assert str(err.value).endswith(f"so {run} cannot be resumed: start a new run with another --output ({run} has "
                                   "no best.keras to start from: it stopped before its first epoch ended)")
    (run / "checkpoint" / "state.json").unlink()
    (run / "checkpoint").rmdir()
    assert runs.start_again_hint(run) == f" (it stopped before its first checkpoint: removing {run} loses nothing)"
    (run / "history.csv").write_text("epoch\n1\n")  # an epoch ended, and its best.keras was removed since
    assert runs.start_again_hint(run) == f" ({run} has no best.keras to start from)"
    (run / "last.keras").write_bytes(b"")
    assert runs.start_again_hint(run) == f" (--weights {run / 'last.keras'} starts it from this one)"
    (run / "best.keras").write_bytes(b"")
    assert runs.start_again_hint(run) == f" (--weights {run / 'best.keras'} starts it from this one)"


def test_unreadable_or_missing_state_is_refused_never_a_restart_from_step_0(interrupted_run, tmp_path):
    from keras_resnet.train import train

    run = _copy(interrupted_run, tmp_path)
    state = run / "checkpoint" / "state.json"
    state.write_text(state.read_text()[:40])
    with pytest.raises(KresError) as err:
        train(*_tiny(tmp_path), stream=io.StringIO())
    assert str(err.value).startswith(f"{state} cannot be read (")
    assert str(err.value).endswith(f"so {run} cannot be resumed: start a new run with another --output "
                                   f"(--weights {run / 'best.keras'} starts it from this one)")
    state.unlink()
    with pytest.raises(KresError, match=f"^{state} is missing, so {run} cannot be resumed"):
        train(*_tiny(tmp_path), stream=io.StringIO())
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == ["ckpt-2.weights.h5", "ckpt-3.weights.h5"]


# --- finite loss ---------------------------------------------------------------------------------------------

def test_a_run_diverging_before_its_first_checkpoint_says_none_was_written():
    """It said "the checkpoint of step 0 is kept" of a run folder holding no checkpoint at all."""
    from types import SimpleNamespace

    from keras_resnet.callbacks import FiniteLoss

    for saved, kept in ((0, "no checkpoint was written before it"), (8, "the checkpoint of step 8 is kept")):
        with pytest.raises(KresError) as caught:
            FiniteLoss(SimpleNamespace(last_saved=saved), lr=1000.0)._stop("loss became nan", 10)
        assert str(caught.value) == (f"training diverged: the loss became nan at step 10; {kept}; start again with "
                                     "a lower --lr than 1000 (and another --output)")


def test_tpu_not_found_is_one_line_without_tensorflows_internals(monkeypatch):
    """--tpu on a machine without one: "no TPU found (TPUs not found in the cluster. Failed in initialization: No
    OpKernel was registered to support Op 'ConfigureDistributedTPU' ... [embedding_config); ..."."""
    import tensorflow as tf

    from keras_resnet.distribute import make_placement

    def no_tpu(tpu):
        raise ValueError("TPUs not found in the cluster. Failed in initialization: No OpKernel was registered to "
                         "support Op 'ConfigureDistributedTPU' used by {{node ConfigureDistributedTPU}} with these "
                         "attrs: [embedding_config")

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", no_tpu)
    with pytest.raises(KresError) as caught:
        make_placement(tpu=True)
    assert str(caught.value) == "--tpu: no TPU found; run on a TPU VM or set TPU_NAME"


def test_diverging_run_stops_at_once_with_one_line_and_keeps_only_finite_models(tmp_path, capsys):
    from kres.main import main

    run = tmp_path / "run"
    code = main(["train", "--depth", "18", "--dataset", "synthetic", "--batch-size", "32", "--epochs", "2",
                 "--checkpoint-steps", "1", "--lr", "1e6", "--output", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("Error: training diverged: the "), err
    assert " at step " in err[-1] and "start again with a lower --lr than 1e+06" in err[-1]
    assert not (run / "last.keras").exists()
    state_path = run / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    if state is not None:  # every checkpoint kept holds finite weights
        import h5py

        with h5py.File(run / "checkpoint" / state["weights"]) as handle:
            arrays = []
            handle.visititems(lambda _, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
        assert all(np.all(np.isfinite(a)) for a in arrays if a.dtype.kind == "f")
    if (run / "best.keras").exists():
        import keras

        assert all(np.all(np.isfinite(w)) for w in keras.saving.load_model(run / "best.keras").get_weights())


# --- exact resume --------------------------------------------------------------------------------------------

# 256 synthetic images at batch 32: 8 steps an epoch, 2 epochs, a checkpoint every 2 steps. (Digits take 5x as
# long; their augmentation is covered by the stream test below.) With the digits recipe's weight average (--ema):
# the averages are optimizer state that must resume too, and a resumed half epoch is a fit of its own, at whose end
# Keras would swap them into the training weights. The kill chain's uninterrupted reference saves at the epochs'
# ends only (EVERY_EPOCH).
EVERY_EPOCH = ["train", "--depth", "18", "--dataset", "synthetic", "--epochs", "2", "--batch-size", "32",
               "--ema", "0.9"]
RESUME = [*EVERY_EPOCH, "--checkpoint-steps", "2"]


def _state_steps(run: Path) -> int:
    return (runs.read_checkpoint_state(run) or {}).get("steps", 0)  # state.json is written atomically


def _killed(cmd: list[str], run: Path, *, after_steps: int | None = None, in_checkpoint: int | None = None) -> str:
    """Run ``cmd`` and SIGKILL it once state.json passes ``after_steps`` (or inside the checkpoint write of step
    ``in_checkpoint``); returns what it printed."""
    env = kres_env(**({"KRES_TEST_KILL_IN_CHECKPOINT": str(in_checkpoint)} if in_checkpoint else {}))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if after_steps is not None:
        _wait_for(lambda: _state_steps(run) >= after_steps, proc)
        proc.send_signal(signal.SIGKILL)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == -signal.SIGKILL, output[-3000:]
    assert not (run / "last.keras").exists()
    return output


def _resumed_at(output: str) -> int:
    return int(output.split("resuming at step ")[1].split(",")[0])


def _val_history(run: Path) -> list[tuple]:
    from keras_resnet.callbacks import read_history

    rows = read_history(run / "history.csv")
    return [(r["epoch"], r["learning_rate"], r["val_loss"], r["val_accuracy"]) for r in rows]


def _train_history(run: Path) -> list[tuple]:
    from keras_resnet.callbacks import read_history

    return [(r["epoch"], r["loss"], r["accuracy"], r["top5"]) for r in read_history(run / "history.csv")]


@pytest.fixture(scope="module")
def killed_three_times(tmp_path_factory):
    """One run, killed three times and rerun after each: inside the checkpoint write of step 4, after step 6
    (epoch 1), after step 10 (epoch 2); then rerun to the end. Beside it, the same command uninterrupted and saving
    checkpoints at the epochs' ends only: how often a run saves changes none of its numbers. Shared by the two tests
    below (one set of `kres train` processes for both)."""
    base = tmp_path_factory.mktemp("resume")
    reference = base / "uninterrupted"
    done = subprocess.run([*KRES, *EVERY_EPOCH, "--output", str(reference)], env=kres_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = base / "killed"
    cmd = [*KRES, *RESUME, "--output", str(run)]
    _killed(cmd, run, in_checkpoint=4)
    kills = [("in checkpoint 4", None, runs.read_checkpoint_state(run))]  # (where, the step it resumed at, state)
    for name, after_steps in (("epoch 1", 6), ("epoch 2", 10)):
        output = _killed(cmd, run, after_steps=max(after_steps, kills[-1][2]["steps"] + 1))  # once it saved one
        kills.append((name, _resumed_at(output), runs.read_checkpoint_state(run)))
    final = subprocess.run(cmd, env=kres_env(), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    return SimpleNamespace(cmd=cmd, run=run, reference=reference, kills=kills, final=final.stderr)


def test_a_run_killed_at_three_points_resumes_each_time_to_the_uninterrupted_weights_and_history(killed_three_times):
    """Each rerun resumes at the last complete checkpoint, and the end equals an uninterrupted run. Without op
    determinism: on CPU, the same batches in the same order give the same weights."""
    import keras

    chain = killed_three_times
    for name, _, state in chain.kills:  # one optimizer update a step, across every resume
        assert state["iterations"] == state["steps"], (name, state)
    (_, _, first), *reruns = chain.kills
    saved = first["steps"]
    assert saved == 2  # the half-written step-4 checkpoint never counted
    for (name, resumed_at, state), after_steps in zip(reruns, (6, 10)):
        assert resumed_at == saved, (name, resumed_at, saved)
        assert after_steps <= state["steps"] < 16, (name, state)  # 8 steps an epoch, 16 in all
        saved = state["steps"]
    assert _resumed_at(chain.final) == saved
    run = chain.run
    assert not list(run.rglob(".*"))  # the killed write's temp file is gone, and the lock with the last run
    weights = keras.saving.load_model(run / "last.keras").get_weights()
    expected = keras.saving.load_model(chain.reference / "last.keras").get_weights()
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(weights, expected))
    assert worst <= 1e-4, worst
    print(f"resumed at steps 2, then {saved}; largest weight difference {worst:.3g}")
    np.testing.assert_allclose(_val_history(run), _val_history(chain.reference), rtol=0, atol=1e-6)
    # and the training means of the epochs resumed mid-way (both were): over all their steps, as uninterrupted
    # (they were over the steps after the resume only: epoch 2's accuracy 0.757 against 0.487, in a user's run)
    np.testing.assert_allclose(_train_history(run), _train_history(chain.reference), rtol=0, atol=1e-5)


def test_sigkill_mid_epoch_then_rerun_resumes_to_the_same_step_count(killed_three_times):
    """The killed run, rerun to the end, ends as an uninterrupted one does; the same command again trains nothing."""
    from keras_resnet.callbacks import read_history
    from keras_resnet.optim import warmup_cosine

    run = killed_three_times.run
    killed_at = killed_three_times.kills[-1][2]["steps"]
    assert killed_at % 8  # killed mid-epoch (8 steps an epoch): the rerun resumes inside an epoch
    assert f"resuming at step {killed_at}," in killed_three_times.final
    # What an uninterrupted run ends with: 2 epochs of 8 steps, and as many optimizer updates.
    assert runs.read_checkpoint_state(run) == {"steps": 16, "iterations": 16, "weights": None, "complete": True}
    assert list((run / "checkpoint").iterdir()) == [run / "checkpoint" / "state.json"]
    rows = read_history(run / "history.csv")
    assert [row["epoch"] for row in rows] == [1, 2]
    config = json.loads((run / "config.json").read_text())["resolved"]
    assert config["total_steps"] == 16
    # The resumed runs kept the first start's schedule: the last epoch ends on the rate of step 15 of 16.
    expected = float(warmup_cosine(config["peak_lr"], config["warmup_steps"], 16)(15))
    assert rows[-1]["learning_rate"] == pytest.approx(expected, rel=1e-6) and expected > 0
    for name in ("best.keras", "last.keras", "meta.json", "labels.txt", "curves.png", "history.csv"):
        assert (run / name).is_file(), name
    assert os.readlink(run.parent / "latest") == "killed"

    # The same command on a finished run trains nothing.
    done = subprocess.run(killed_three_times.cmd, env=kres_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "nothing to train" in done.stderr, done.stderr[-3000:]
    assert runs.read_checkpoint_state(run)["steps"] == 16


@pytest.mark.parametrize("mixup", [0.0, 0.2])
def test_a_resumed_stream_gives_the_batches_of_the_uninterrupted_one_with_augmentation(mixup):
    import keras

    from keras_resnet.data import DataConfig, load_datasets

    keras.utils.set_random_seed(0)
    datasets = load_datasets(DataConfig(image_size=32, batch_size=128, mixup_alpha=mixup))  # digits: 11 steps
    whole = [x.numpy() for x, _ in datasets.train_from(0, 0).take(22)]
    resumed = [x.numpy() for x, _ in datasets.train_from(1, 4).take(7)]
    assert all(np.array_equal(a, b) for a, b in zip(whole[11 + 4:], resumed))
    keras.utils.set_random_seed(1)  # whatever ran before in the process
    again = load_datasets(DataConfig(image_size=32, batch_size=128, mixup_alpha=mixup))
    assert np.array_equal(next(iter(again.train_from(0, 3)))[0].numpy(), whole[3])
    assert not np.array_equal(whole[0], whole[11])  # each epoch has its own order and augmentation


# --- export when the run's data has moved --------------------------------------------------------------------

def test_export_of_a_run_whose_data_moved_names_data_dir_and_the_hint_works(tmp_path, capsys):
    from PIL import Image

    from keras_resnet.meta import ModelMeta
    from keras_resnet.model import resnet
    from kres.main import main

    photos, rng = tmp_path / "photos", np.random.default_rng(0)
    for label in ("a", "b"):
        (photos / label).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(photos / label / f"{index}.png")
    run = tmp_path / "run"
    run.mkdir()
    model = resnet(18, num_classes=2, input_shape=(32, 32, 3))
    model.save(run / "best.keras")
    ModelMeta.from_model(model, ["a", "b"]).save(run)
    (run / "config.json").write_text(json.dumps({"train": {}, "data": {"data_dir": str(photos), "val_split": 0.5,
                                                                           "batch_size": 2}}))
    moved = photos.rename(tmp_path / "moved")
    out = tmp_path / "out"
    command = ["export", str(run), "-o", str(out), "--tflite", "--quantize", "int8", "--calibration-steps", "2",
               "--eval-images", "2"]

    assert main(command) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"Error: image folder {photos} does not exist; pass --data-dir a folder of class sub-folders"
    assert not out.exists()  # a failed export leaves no empty folder
    assert main(["export", "--help"]) == 0 and "--data-dir" in capsys.readouterr().out
    assert main([*command, "--data-dir", str(moved)]) == 0, capsys.readouterr().err  # the hint, followed
    report = json.loads((out / "export_report.json").read_text())
    assert report["artifacts"]["model_int8.tflite"]["agreement"]["images"] == 2
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_export_dataset_option_replaces_the_runs_data():
    from keras_resnet.export import ExportConfig, moved_data

    run_data = {"data_dir": "/gone", "dataset": None, "val_split": 0.3, "seed": 4}
    assert moved_data(run_data, ExportConfig("r", "o")) == run_data
    assert moved_data(run_data, ExportConfig("r", "o", dataset="cifar10")) == {
        "data_dir": None, "dataset": "cifar10", "val_split": 0.3, "seed": 4}
    assert moved_data(None, ExportConfig("r", "o", dataset="digits"))["dataset"] is None  # the built-in digits


def test_stale_temporaries_of_killed_writes_are_removed_when_a_directory_is_locked(tmp_path):
    """What writers killed mid-write leave is removed; a folder's own hidden files that look like temporaries
    are not (an export's -o may be any folder of the user's)."""
    import sys
    import tempfile

    from keras_resnet import fileio

    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    killed = ("import os, sys\nfrom keras_resnet import fileio\n"
              "with fileio.atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half')\n    os._exit(9)\n")
    subprocess.run([sys.executable, "-c", killed, run / "checkpoint" / "ckpt-6.weights.h5"], check=False)
    subprocess.run([sys.executable, "-c", killed.replace("atomic_path", "atomic_dir").replace(
        "tmp.write_text('half')", "(tmp / 'saved_model.pb').write_text('half')"), run / "saved_model"], check=False)
    stale = [p for p in run.rglob(".*") if p.parent.name != "saved_model"]
    assert len(stale) == 2  # one each
    (run / "export").mkdir()
    stale += [Path(tempfile.mkstemp(dir=run / "checkpoint", prefix=".ckpt-4.weights.", suffix=".tmp.weights.h5")[1]),
              Path(tempfile.mkdtemp(dir=run, prefix=".saved_model.", suffix=".tmp")),  # as kres named them before
              Path(tempfile.mkstemp(dir=run / "export", prefix=".model.", suffix=".tmp.keras")[1]),
              Path(tempfile.mkdtemp(dir=run, prefix=".qat-")), run / ".saved_model.old",
              Path(tempfile.mkstemp(dir=run, prefix=fileio.PROBE_PREFIX)[1]),
              Path(tempfile.mkdtemp(dir=run, prefix=fileio.QAT_TEMP_PREFIX)), run / f".saved_model{fileio.OLD_MARK}"]
    for old in stale[-4], stale[-1]:
        old.mkdir()
    stale.append(Path(tempfile.mkdtemp(dir=run / "export", prefix=fileio.CONVERT_TEMP_PREFIX)))  # a killed export's
    subprocess.run([sys.executable, "-c", killed.replace("atomic_path", "staged_dir").replace(  # its staging folder
        "tmp.write_text('half')", "(tmp / 'model_int8.tflite').write_text('whole')"), run / "export"], check=False)
    stale += [p for p in (run / "export").glob(".staged.*")]
    assert len(stale) == 12
    kept = [run / ".notes.tmp", run / "checkpoint" / "ckpt-4.weights.h5", run / ".config",
            run / ".report.draft001.tmp.txt", run / ".proj.old" / "notes.txt"]
    (run / "proj").mkdir()
    # An export killed between atomic_dir's two renames: only the old SavedModel is left, under its old name.
    (run / "export" / f".saved_model{fileio.OLD_MARK}").mkdir()
    (run / "export" / f".saved_model{fileio.OLD_MARK}" / "saved_model.pb").write_text("the old version")
    # A folder another process holds (an export into RUN/held while train resumes RUN) is left to it.
    kept += [run / "held" / ".lock", run / "held" / ".model.abcdefgh.kres-tmp.keras"]
    for path in kept:
        path.parent.mkdir(exist_ok=True)
        path.write_text("the user's")
    runlock.acquire(run)
    runlock.release(run)
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in kept)
    assert (run / "export" / "saved_model" / "saved_model.pb").read_text() == "the old version"  # back in place


def test_artifacts_get_the_umasks_mode_and_reading_it_leaves_the_umask_alone(tmp_path, monkeypatch):
    from keras_resnet import fileio

    before = os.umask(0o027)
    try:
        with fileio.atomic_path(tmp_path / "config.json") as tmp:
            tmp.write_text("{}")
        with fileio.atomic_dir(tmp_path / "saved_model") as tmp:
            (tmp / "saved_model.pb").write_text("")
        assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o640
        assert (tmp_path / "saved_model").stat().st_mode & 0o777 == 0o750

        def setting(mask):  # os.umask sets the mask, for every thread, to read it
            raise AssertionError(f"os.umask({mask:o}) called")

        monkeypatch.setattr(os, "umask", setting)
        assert fileio._umask() == 0o027  # Linux shows it in /proc/self/status
    finally:
        monkeypatch.undo()
        os.umask(before)


def test_tensorboard_logs_on_a_full_disk_are_one_line(tmp_path, monkeypatch):
    import tensorflow as tf

    from keras_resnet import fileio
    from keras_resnet.callbacks import TensorBoardScalars

    def no_space(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "logs/train/events.out; No space left on device")

    monkeypatch.setattr(tf.summary, "write", no_space)
    with pytest.raises(fileio.OutOfSpace, match=f"^no space left on the device of {tmp_path / 'logs'} writing "
                                                "events: it needs more than is free, "):
        TensorBoardScalars(tmp_path / "logs").on_epoch_end(0, {"loss": 1.0})


def test_a_folder_that_takes_no_new_files_is_not_called_missing(tmp_path, monkeypatch):
    """``-o /proc/c.keras`` was "cannot write to /proc: No such file or directory": /proc exists, but takes no new
    files (the OS says ENOENT); other reasons stay as the OS gives them."""
    import tempfile

    from keras_resnet import fileio

    def refused(code):
        def named_temporary_file(*args, **kwargs):
            raise OSError(code, os.strerror(code))
        return named_temporary_file

    for code, why in ((errno.ENOENT, "the folder takes no new files (a virtual file system, as /proc and /sys are)"),
                      (errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system")):
        monkeypatch.setattr(tempfile, "NamedTemporaryFile", refused(code))
        with pytest.raises(KresError) as caught:
            fileio.ensure_writable_dir(tmp_path)
        assert str(caught.value) == f"cannot write to {tmp_path}: {why}; choose another output path"
