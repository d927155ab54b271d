"""Smoke runs of the benchmarks at a tiny size: they run their peers and write consistent results."""

import json

from kres.main import main


def test_throughput_on_a_cpu_measures_each_cpu_size_against_torchvision(tmp_path, monkeypatch, capsys):
    from keras_resnet.bench import common, throughput

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(throughput, "CPU_SIZES", ((18, 32, 2), (18, 40, 1)))
    code = main(["bench", "throughput", "--steps", "1", "--warmup", "1", "--name", "cpu"])
    assert code == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "cpu.json").read_text())
    sizes = [(r["config"]["depth"], r["config"]["image_size"], r["config"]["batch_size"]) for r in data["runs"]]
    assert sizes == [(18, 32, 2), (18, 40, 1)]
    for one in data["runs"]:
        assert not one["config"]["xla"] and not one["config"]["torch_compile"]  # both slower on a CPU
        ours, peer = one["rows"]
        assert ours["model"] == "keras_resnet ResNet-18"
        assert ours["step"] == "train_on_batch, fused BN, XLA update, jit_compile=False"
        assert (peer["model"], peer["step"]) == ("torchvision resnet18", "eager, channels_last")
        assert ours["images_per_s"] > 0 and peer["images_per_s"] > 0
        assert peer["ours_vs_this"] == ours["images_per_s"] / peer["images_per_s"]
        assert ours["ours_vs_this"] == 1.0
    assert data["machine"]["cores"] >= 1
    assert data["machine"]["onednn"] is True and "AVX2" in data["machine"]["isa"]
    table = (tmp_path / "cpu.md").read_text()
    assert table.count("| torchvision resnet18 |") == 2 and "oneDNN on" in table


def test_a_throughput_run_that_measured_nothing_of_ours_leaves_the_earlier_results(tmp_path, monkeypatch, capsys):
    """It overwrote the results file with its error rows, and said "wrote" with exit status 0."""
    from keras_resnet.bench import common, throughput

    def out_of_memory(*args, **kwargs):
        raise MemoryError("no room for the batch")

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(throughput, "keras_train_on_batch", out_of_memory)
    (tmp_path / "cpu.json").write_text('{"earlier": true}')
    code = main(["bench", "throughput", "--depth", "18", "--image-size", "32", "--batch-size", "2", "--steps", "1",
                 "--warmup", "1", "--no-torch", "--name", "cpu"])
    captured = capsys.readouterr()
    assert code == 2  # kres's exit status for an error
    assert "| keras_resnet ResNet-18 |" in captured.out and "MemoryError: no room for the batch" in captured.out
    assert f"no measurement of ours succeeded (the error column above says why); the rows are in " \
           f"{tmp_path / 'cpu-failed.json'}, and cpu.json is left as it was" in captured.err
    assert "wrote" not in captured.out
    assert json.loads((tmp_path / "cpu.json").read_text()) == {"earlier": True}
    failed = json.loads((tmp_path / "cpu-failed.json").read_text())
    assert failed["measured"] is False and failed["rows"][0]["error"] == "MemoryError: no room for the batch"


def test_update_bench_times_keras_and_the_compiled_update_with_each_optimizer(tmp_path, monkeypatch, capsys):
    import keras

    from keras_resnet.bench import common, update

    def tiny_resnet(depth, num_classes, input_shape):  # the benchmark's mechanics, not ResNet-18's four traces
        inputs = keras.Input(input_shape)
        x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, strides=4, use_bias=False)(inputs))
        return keras.Model(inputs, keras.layers.Dense(num_classes)(keras.layers.GlobalAveragePooling2D()(x)))

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(update, "resnet", tiny_resnet)
    code = main(["bench", "update", "--batch-size", "2", "--steps", "1", "--warmup", "1", "--rounds", "2",
                 "--name", "update"])
    assert code == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "update.json").read_text())
    assert [(r["optimizer"].split(":")[0], r["update"]) for r in data["rows"]] == [
        ("digits recipe", "Keras's own"), ("digits recipe", "compiled (kres)"),
        ("plain", "Keras's own"), ("plain", "compiled (kres)")]
    assert data["rows"][0]["optimizer"] == "digits recipe: SGD Nesterov, decay 5e-05, average 0.9"
    for stock, compiled in (data["rows"][0:2], data["rows"][2:4]):
        assert stock["images_per_s"] > 0 and compiled["images_per_s"] > 0
        assert compiled["compiled_vs_keras"] == compiled["images_per_s"] / stock["images_per_s"]
    assert data["config"]["rounds"] == 2 and data["machine"]["onednn"] is True
    assert "median of 2 alternating rounds of 1 steps" in (tmp_path / "update.md").read_text()
    # The digits schedule's step count: the training split kres train gets, at the recipe's batch.
    from sklearn.datasets import load_digits

    from keras_resnet.data import DataConfig, stratified_split

    train_idx, _ = stratified_split(load_digits().target, DataConfig().val_split, seed=0)
    assert update.DIGITS_TRAIN_IMAGES == len(train_idx) == 1438 and update.DIGITS_STEPS_PER_EPOCH == 22


def test_results_go_to_the_checkout_or_the_working_directory_never_into_site_packages(tmp_path):
    from pathlib import Path

    from keras_resnet.bench import common

    repo = Path(__file__).resolve().parents[1]
    assert repo / "benchmarks" / "results" == common.RESULTS_DIR  # these tests run from a source checkout
    (tmp_path / "checkout" / "benchmarks").mkdir(parents=True)
    (tmp_path / "checkout" / "pyproject.toml").write_text("")
    assert common.results_home(tmp_path / "checkout") == tmp_path / "checkout" / "benchmarks" / "results"
    (tmp_path / "site-packages").mkdir()
    assert common.results_home(tmp_path / "site-packages") == Path("benchmarks") / "results"  # relative: the cwd
