"""``kres bench time-to-accuracy``: the real ``kres train`` in a subprocess, timed to a (tiny) target."""

import json
import re
import sys

import pytest

from kres.main import main


@pytest.fixture
def results(tmp_path, monkeypatch):
    from keras_resnet.bench import common

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    return tmp_path / "results"


def test_time_to_accuracy_smoke(tmp_path, results, capsys):
    run_dir = tmp_path / "run"
    code = main(["bench", "time-to-accuracy", "--target", "0.01", "--output", str(run_dir), "--name", "smoke",
                 "--", "--epochs", "1", "--dataset", "synthetic", "--batch-size", "32"])  # 8 steps
    assert code == 0, capsys.readouterr().err
    data = json.loads((results / "smoke.json").read_text())
    assert data["command"] == (
        f"kres train --depth 18 --output {run_dir} --epochs 1 --dataset synthetic --batch-size 32")
    result = data["result"]
    assert result["reached"] is True and result["epoch"] == 1 and result["target"] == 0.01
    assert result["val_accuracy"] == data["history"][0]["val_accuracy"]
    assert result["train_s_to_target"] == data["history"][0]["epoch_time_s"]
    assert result["startup_and_overhead_s"] == result["wall_s_to_target"] - result["train_s_to_target"]
    assert 0 < result["train_s_to_target"] < result["wall_s_to_target"] <= data["process_s"]
    assert (run_dir / "history.csv").is_file() and (run_dir / "config.json").is_file()  # the run was kept
    assert "| keras_resnet ResNet-18 | 1.00% | True | 1 |" in (results / "smoke.md").read_text()
    # the title says the command run (it said `kres train --depth 18` on the built-in digits whatever was passed)
    assert (results / "smoke.md").read_text().startswith(
        f"Time to 1% validation top-1, `kres train --depth 18 --output {run_dir} --epochs 1 --dataset synthetic "
        "--batch-size 32`, on ")
    assert "whole_run_s" not in result  # stopped at the target: the whole run was not timed
    # The recipe as the run filled it in, so a result still says what it trained with after the defaults move.
    settings = data["train_settings"]
    assert (settings["recipe"], settings["epochs"], settings["batch_size"], settings["seed"]) == ("synthetic", 1, 32, 0)
    assert (settings["lr"], settings["label_smoothing"], settings["ema"]) == (0.1, 0.0, 0.0)
    assert "output" not in settings  # the temporary run folder is no setting
    assert (settings["data"]["val_split"], settings["data"]["mixup_alpha"]) == (0.2, 0.0)
    assert (settings["resolved"]["steps_per_epoch"], settings["resolved"]["peak_lr"]) == (8, 0.1 * 32 / 256)
    assert ("Recipe synthetic: epochs 1, batch_size 32, image_size 32, optimizer sgd, lr 0.1, warmup_epochs 0, "
            "weight_decay 5e-05, label_smoothing 0, ema 0, seed 0.") in (results / "smoke.md").read_text()


def test_first_reaching():
    from keras_resnet.bench.time_to_accuracy import first_reaching

    rows = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2}, {"epoch": 3, "val_accuracy": 0.97},
            {"epoch": 4, "val_accuracy": 0.99}]
    assert first_reaching(rows, 0.97)["epoch"] == 3
    assert first_reaching(rows, 0.995) is None


def test_time_to_accuracy_refuses_a_used_run_dir(tmp_path, results, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "history.csv").write_text("epoch\n1\n")
    assert main(["bench", "time-to-accuracy", "--output", str(tmp_path / "used")]) == 2
    assert "would resume it" in capsys.readouterr().err
    assert main(["bench", "time-to-accuracy", "--target", "97"]) == 2
    assert not results.exists()


@pytest.mark.parametrize("target", ["0", "0.0", "-0.5", "97", "1.01"])
def test_time_to_accuracy_refuses_a_target_that_is_no_accuracy_to_reach(results, capsys, target):
    """--target 0 was accepted and wrote a "Time to 0% validation top-1" result."""
    assert main(["bench", "time-to-accuracy", "--target", target]) == 2
    assert capsys.readouterr().err == (f"Error: Invalid value for '--target': {target!r} is not in the range "
                                       "0.0<x<=1.0 (see 'kres bench time-to-accuracy --help')\n")
    assert not results.exists()


def test_time_to_accuracy_library_refuses_a_zero_target(results):
    from keras_resnet.bench import time_to_accuracy as tta
    from keras_resnet.errors import KresError

    with pytest.raises(KresError) as refused:
        tta.run(tta.Config(target=0.0))
    assert str(refused.value) == "--target 0 is no accuracy to reach: give a fraction above 0 and at most 1, e.g. 0.97"


def test_the_title_says_the_train_command_run(results, monkeypatch):
    from keras_resnet.bench import time_to_accuracy as tta

    rows = [{"epoch": 1, "val_accuracy": 0.98, "epoch_time_s": 2.0}]
    monkeypatch.setattr(tta, "time_training", lambda cfg, run_dir, log, say: {
        "reached_s": 3.0, "process_s": 4.0, "rows": rows, "command": ["train", "--depth", "34", "--output", "/tmp/x",
                                                                       "--epochs", "3"]})
    table = tta.run(tta.Config(depth=34, train_args=("--epochs", "3"), results_name="title"))["table"]
    assert table.startswith("Time to 97% validation top-1, `kres train --depth 34 --epochs 3` on the built-in "
                            "digits, on ")
    table = tta.run(tta.Config(train_args=("--dataset=synthetic",), results_name="title"))["table"]
    assert table.startswith("Time to 97% validation top-1, `kres train --depth 18 --dataset=synthetic`, on ")


def test_a_full_run_reports_the_whole_run_and_its_best_accuracy(results, monkeypatch):
    from keras_resnet.bench import time_to_accuracy as tta

    rows = [{"epoch": 1, "val_accuracy": 0.5, "epoch_time_s": 8.0}, {"epoch": 2, "val_accuracy": 0.975,
            "epoch_time_s": 4.0}, {"epoch": 3, "val_accuracy": 0.99, "epoch_time_s": 4.0},
            {"epoch": 4, "val_accuracy": 0.985, "epoch_time_s": 4.0}]
    monkeypatch.setattr(tta, "time_training", lambda cfg, run_dir, log, say: {
        "reached_s": 21.5, "process_s": 40.25, "rows": rows, "command": ["train", "--depth", "18"]})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    result = tta.run(tta.Config(stop_at_target=False, results_name="full"))["result"]
    assert (result["epoch"], result["train_s_to_target"], result["startup_and_overhead_s"]) == (2, 12.0, 9.5)
    assert (result["whole_run_s"], result["best_val_accuracy"]) == (40.25, 0.99)
    table = (results / "full.md").read_text()
    assert "Recipe" not in table  # no config.json (time_training was replaced): no line rather than a wrong one
    assert "kernels capped: ONEDNN_MAX_CPU_ISA=AVX2" in table.splitlines()[0]
    assert "| 2 | 97.50% | 21.50 | 12.00 | 9.50 | 40.25 | 99.00% |" in table


HISTORY_WRITER = """
import os, sys, time
from pathlib import Path

run_dir = Path(sys.argv[1])
run_dir.mkdir(parents=True)
for rows in (["1,0.5,1.0"], ["1,0.5,1.0", "2,0.98,1.0"]):
    (run_dir / "history.tmp").write_text("epoch,val_accuracy,epoch_time_s\\n" + "\\n".join(rows) + "\\n")
    os.replace(run_dir / "history.tmp", run_dir / "history.csv")
    time.sleep(0.5)
time.sleep(60)
"""


def test_time_to_accuracy_says_the_launch_and_each_epoch_on_stderr(tmp_path, results, monkeypatch, capsys):
    """A --full-run ran for minutes with nothing on screen until the table."""
    from keras_resnet.bench import time_to_accuracy as tta

    run_dir = tmp_path / "run"
    monkeypatch.setattr(tta, "train_command", lambda cfg, run_dir: [sys.executable, "-c", HISTORY_WRITER,
                                                                    str(run_dir)])
    code = main(["bench", "time-to-accuracy", "--output", str(run_dir), "--name", "fake"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    launch, *epochs, reached = captured.err.splitlines()
    assert re.fullmatch(rf"launching kres {re.escape(str(run_dir))} \(its output: .+/train\.log\)", launch)
    assert [re.sub(r"\(\d+ s since launch\)$", "(N s since launch)", line) for line in epochs] == [
        "epoch 1: validation top-1 50.00% (N s since launch)", "epoch 2: validation top-1 98.00% (N s since launch)"]
    assert reached == "reached 97.00%: ending the run"
    assert json.loads((results / "fake.json").read_text())["result"]["epoch"] == 2


@pytest.mark.parametrize(("args", "own"), [(["--depth", "50"], "--depth"), (["--depth=50"], "--depth"),
                                           (["--output", "r"], "--output"), (["-o", "r"], "--output"),
                                           (["-or"], "--output")])
def test_time_to_accuracy_refuses_its_own_options_after_the_dashes(results, capsys, args, own):
    """`-- --depth 50` ran `kres train --depth 18 ... --depth 50`: ResNet-50, in a table that said ResNet-18."""
    assert main(["bench", "time-to-accuracy", "--", "--epochs", "1", *args]) == 2
    assert capsys.readouterr().err == (f"Error: {args[0]} after `--` is set by the benchmark itself: give {own} "
                                       "before `--`, as kres bench time-to-accuracy's own option\n")
    assert not results.exists()
