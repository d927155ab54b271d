"""``kres bench time-to-accuracy``: the real ``kres train`` in a subprocess, timed to a (tiny) target."""

import json

import pytest

from kres.main import main


@pytest.fixture
def results(tmp_path, monkeypatch):
    from keras_resnet.bench import common

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    return tmp_path / "results"


def test_time_to_accuracy_smoke(tmp_path, results, capsys):
    run_dir = tmp_path / "run"
    code = main(["bench", "time-to-accuracy", "--target", "0.0", "--output", str(run_dir), "--name", "smoke",
                 "--", "--epochs", "1", "--dataset", "synthetic", "--batch-size", "32"])  # 8 steps
    assert code == 0, capsys.readouterr().err
    data = json.loads((results / "smoke.json").read_text())
    assert data["command"] == (
        f"kres train --depth 18 --output {run_dir} --epochs 1 --dataset synthetic --batch-size 32")
    result = data["result"]
    assert result["reached"] is True and result["epoch"] == 1 and result["target"] == 0.0
    assert result["val_accuracy"] == data["history"][0]["val_accuracy"]
    assert result["train_s_to_target"] == data["history"][0]["epoch_time_s"]
    assert result["startup_and_overhead_s"] == result["wall_s_to_target"] - result["train_s_to_target"]
    assert 0 < result["train_s_to_target"] < result["wall_s_to_target"] <= data["process_s"]
    assert (run_dir / "history.csv").is_file() and (run_dir / "config.json").is_file()  # the run was kept
    assert "| keras_resnet ResNet-18 | 0.00 | True | 1 |" in (results / "smoke.md").read_text()


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
