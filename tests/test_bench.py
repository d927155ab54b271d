"""Smoke runs of the benchmarks at a tiny size: they run their peers and write consistent results."""

import json

from kres.main import main


def test_throughput_smoke(tmp_path, monkeypatch, capsys):
    from keras_resnet.bench import common

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    code = main(["bench", "throughput", "--depth", "18", "--batch-size", "2", "--image-size", "32", "--steps", "1",
                 "--warmup", "1", "--no-torch-compile", "--name", "smoke"])
    assert code == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "smoke.json").read_text())
    rows = {(r["model"], r["step"]): r for r in data["rows"]}
    ours = rows[("keras_resnet ResNet-18", "train_on_batch, jit_compile=True")]
    peer = rows[("keras.applications ResNet50", "train_on_batch, jit_compile=True")]
    assert ours["images_per_s"] > 0 and peer["images_per_s"] > 0
    assert peer["ours_vs_this"] == ours["images_per_s"] / peer["images_per_s"]
    assert ours["ours_vs_this"] == 1.0
    assert data["config"]["batch_size"] == 2 and data["machine"]["cores"] >= 1
    assert "| keras.applications ResNet50 |" in (tmp_path / "smoke.md").read_text()
