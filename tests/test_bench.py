"""Smoke runs of the benchmarks at a tiny size: they run their peers and write consistent results."""

import json
import os
import statistics

import pytest

from kres.main import main


def test_throughput_on_a_cpu_measures_each_cpu_size_against_torchvision(tmp_path, monkeypatch, capsys):
    from keras_resnet.bench import common, throughput

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(throughput, "CPU_SIZES", ((18, 32, 2), (18, 40, 1)))
    code = main(["bench", "throughput", "--steps", "1", "--warmup", "1", "--rounds", "2", "--name", "cpu"])
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
        assert len(ours["rounds"]) == len(peer["rounds"]) == 2 and min(ours["rounds"] + peer["rounds"]) > 0
        assert ours["images_per_s"] == statistics.median(ours["rounds"])
        assert peer["images_per_s"] == statistics.median(peer["rounds"])
        assert peer["ours_vs_this"] == ours["images_per_s"] / peer["images_per_s"]
        assert peer["ours_vs_this_by_round"] == [a / b for a, b in zip(ours["rounds"], peer["rounds"])]
        assert ours["ours_vs_this"] == 1.0 and ours["ours_vs_this_by_round"] == [1.0, 1.0]
    assert data["machine"]["cores"] >= 1
    assert data["machine"]["onednn"] is True and "AVX2" in data["machine"]["isa"]
    table = (tmp_path / "cpu.md").read_text()
    assert table.count("| torchvision resnet18 |") == 2 and "oneDNN on" in table
    assert table.count("; the median of 2 alternating rounds of 1 timed step\n") == 2
    assert "| model | step | images_per_s | rounds | ours_vs_this | by_round | error |" in table


def test_throughput_alternates_rounds_and_reports_a_model_that_fails(tmp_path, monkeypatch, capsys):
    """Each model is set up once, then the models take turns, the order flipping every round; a model that fails
    to set up, or in a later round, gets its error in its row and the others go on."""
    from keras_resnet.bench import common, throughput

    calls, rates = [], {"ours": iter([10.0, 30.0, 20.0]), "peer": iter([20.0, 20.0, 40.0]),
                         "flaky": iter([5.0])}

    def contender(name, fails_in_round=None):
        def setup():
            calls.append(f"set up {name}")
            if fails_in_round == 0:
                raise MemoryError(f"no room for {name}")

            def one_round():
                calls.append(name)
                if len([c for c in calls if c == name]) == fails_in_round:
                    raise RuntimeError(f"{name} ended")
                return next(rates[name])
            return one_round
        return (f"keras_resnet {name}" if name == "ours" else name, "step", setup)

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(throughput, "_contenders", lambda cfg, stack: [
        contender("ours"), contender("peer"), contender("too big", fails_in_round=0),
        contender("flaky", fails_in_round=2)])
    code = main(["bench", "throughput", "--depth", "18", "--image-size", "32", "--batch-size", "2",
                 "--rounds", "3", "--name", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert calls == ["set up ours", "set up peer", "set up too big", "set up flaky",
                     "ours", "peer", "flaky", "flaky", "peer", "ours", "ours", "peer"]
    ours, peer, too_big, flaky = json.loads((tmp_path / "cpu.json").read_text())["rows"]
    assert (ours["images_per_s"], ours["rounds"], ours["ours_vs_this"]) == (20.0, [10.0, 30.0, 20.0], 1.0)
    assert (peer["images_per_s"], peer["rounds"], peer["ours_vs_this"]) == (20.0, [20.0, 20.0, 40.0], 1.0)
    assert peer["ours_vs_this_by_round"] == [0.5, 1.5, 0.5]
    assert too_big == {"model": "too big", "step": "step", "images_per_s": None,
                       "error": "MemoryError: no room for too big"}
    assert flaky["images_per_s"] is None and flaky["error"] == "RuntimeError: flaky ended"
    assert flaky["rounds"] == [5.0]  # the round it ran is kept, but no median of one round against ours' three
    assert "ours_vs_this" not in flaky
    captured = capsys.readouterr()
    assert "| peer | step | 20.00 | 20.0, 20.0, 40.0 | 1.00 | 0.50-1.50 |  |" in captured.out
    assert "ResNet-18, 32 px, batch 2, float32; the median of 3 alternating rounds of 10 timed steps\n" in captured.out
    assert captured.err.splitlines() == [  # progress, off the table's stdout
        "ResNet-18, 32 px, batch 2: building and warming up keras_resnet ours (step)",
        "ResNet-18, 32 px, batch 2: building and warming up peer (step)",
        "ResNet-18, 32 px, batch 2: building and warming up too big (step)",
        "ResNet-18, 32 px, batch 2: building and warming up flaky (step)",
        *(f"ResNet-18, 32 px, batch 2: round {n} of 3, 10 timed steps of each model" for n in (1, 2, 3))]


def test_ours_is_traced_and_timed_with_fused_batch_norm_and_the_peers_processes_end(monkeypatch):
    """measure_rows with stand-ins for the steps: ours' warm-up and every round run inside the fused batch norm
    block (the row says "fused BN"), keras.applications' outside it; each peer process is closed at the end."""
    import contextlib

    import keras

    from keras_resnet.bench import throughput

    inside, seen, peers = [False], [], []

    @contextlib.contextmanager
    def fused():
        inside[0] = True
        try:
            yield
        finally:
            inside[0] = False

    class Trainee:  # a stand-in model: what train_on_batch saw
        def __init__(self, name):
            self.name = name

        def compile(self, **kwargs):
            pass

        def train_on_batch(self, x, y):
            seen.append((self.name, inside[0]))

    class StandInPeer:
        def __init__(self, cfg, compiled):
            peers.append(self)
            self.closed = False

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.closed = True

        def round(self):
            return 5.0

    monkeypatch.setattr(throughput._compat, "fused_batch_norm", fused)
    monkeypatch.setattr(throughput, "resnet", lambda *args, **kwargs: Trainee("ours"))
    monkeypatch.setattr(keras.applications, "ResNet50", lambda **kwargs: Trainee("keras.applications"))
    monkeypatch.setattr(throughput, "_torchvision", lambda: True)
    monkeypatch.setattr(throughput.torch_peer, "Peer", StandInPeer)
    cfg = throughput.Config(depth=50, image_size=32, batch_size=2, steps=2, warmup=1, rounds=2, xla=False,
                            torch_compile=False, num_classes=3)
    rows = throughput.measure_rows(cfg)
    assert [row["model"] for row in rows] == ["keras_resnet ResNet-50", "keras.applications ResNet50",
                                              "torchvision resnet50"]
    assert rows[0]["step"] == "train_on_batch, fused BN, XLA update, jit_compile=False"
    # warm-up 1, then each round 1 untimed + 2 timed steps
    assert [inside for name, inside in seen if name == "ours"] == [True] * 7
    assert [inside for name, inside in seen if name == "keras.applications"] == [False] * 7
    assert rows[2]["rounds"] == [5.0, 5.0] and len(peers) == 1 and peers[0].closed


def test_take_turns_needs_a_round():
    from keras_resnet.bench.common import take_turns
    from keras_resnet.errors import KresError

    with pytest.raises(KresError, match=r"^rounds must be 1 or more, not 0$"):
        take_turns({"ours": lambda: 1.0}, 0)


def test_the_torchvision_peer_runs_rounds_in_its_own_process_and_says_why_it_failed():
    from keras_resnet.bench import throughput, torch_peer

    if not throughput._torchvision():
        pytest.skip("torch and torchvision do not import here")

    cfg = {"depth": 18, "image_size": 32, "batch_size": 2, "num_classes": 10, "precision": "float32", "steps": 1,
           "warmup": 1}
    with torch_peer.Peer(cfg, compiled=False) as peer:
        assert peer.round() > 0 and peer.round() > 0
        process = peer._process
    assert process.returncode == 0  # it ended when its input closed
    with pytest.raises(RuntimeError) as failed:
        torch_peer.Peer({**cfg, "depth": 7}, compiled=False)
    assert str(failed.value).startswith("AttributeError: module 'torchvision.models' has no attribute 'resnet7'")
    assert str(failed.value).endswith(" (the peer's process ended with exit status 1)")
    with torch_peer.Peer(cfg, compiled=False) as peer:  # it dies between rounds: said as such, not a broken pipe
        peer._process.kill()
        peer._process.wait()
        with pytest.raises(RuntimeError, match=r"\(the peer's process ended with exit status -9\)$"):
            peer.round()


def test_a_throughput_run_that_measured_nothing_of_ours_leaves_the_earlier_results(tmp_path, monkeypatch, capsys):
    """It overwrote the results file with its error rows, and said "wrote" with exit status 0."""
    from keras_resnet.bench import common, throughput

    def out_of_memory(*args, **kwargs):
        raise MemoryError("no room for the batch")

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(throughput, "keras_train_on_batch", out_of_memory)
    (tmp_path / "cpu.json").write_text('{"earlier": true}')
    code = main(["bench", "throughput", "--depth", "18", "--image-size", "32", "--batch-size", "2", "--steps", "1",
                 "--warmup", "1", "--rounds", "1", "--no-torch", "--name", "cpu"])
    captured = capsys.readouterr()
    assert code == 2  # kres's exit status for an error
    assert "| keras_resnet ResNet-18 |" in captured.out and "MemoryError: no room for the batch" in captured.out
    assert f"no measurement of ours succeeded (the error column above says why); the rows are in " \
           f"{tmp_path / 'cpu-failed.json'}, and cpu.json is left as it was" in captured.err
    assert "wrote" not in captured.out
    assert "ResNet-18, 32 px, batch 2, float32; one round of 1 timed step\n" in captured.out
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
    assert "; the median of 2 alternating rounds of 1 step\n" in (tmp_path / "update.md").read_text()
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


def test_update_bench_says_each_optimizer_and_round_on_stderr(tmp_path, monkeypatch, capsys):
    """It printed nothing until the final table."""
    from keras_resnet.bench import common, update

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(update, "_step", lambda cfg, make_optimizer, compiled: lambda: 20.0 if compiled else 10.0)
    monkeypatch.setattr(update, "images_per_second", lambda step, batch_size, steps, warmup, sync: step())
    assert main(["bench", "update", "--rounds", "2", "--name", "update"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        line for optimizer in ("digits recipe", "plain") for line in (
            f"{optimizer}: building and warming up both updates ...",
            f"{optimizer}: round 1 of 2, 10 steps of each update",
            f"{optimizer}: round 2 of 2, 10 steps of each update",
            f"{optimizer}: Keras's own 10.0 images/s, compiled (kres) 20.0")]


def test_bench_prints_the_absolute_path_it_wrote(tmp_path, monkeypatch, capsys):
    """An installed kres writes to benchmarks/results under the working directory: "wrote benchmarks/results/..."
    left the reader to work out which."""
    from pathlib import Path

    from keras_resnet.bench import common, update

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(common, "RESULTS_DIR", Path("benchmarks") / "results")
    monkeypatch.setattr(update, "_step", lambda cfg, make_optimizer, compiled: lambda: 20.0 if compiled else 10.0)
    monkeypatch.setattr(update, "images_per_second", lambda step, batch_size, steps, warmup, sync: step())
    assert main(["bench", "update", "--rounds", "1", "--name", "mine"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {tmp_path / 'benchmarks' / 'results' / 'mine.json'}"


def _fake_contenders(rates):
    """_contenders' stand-in: each model's round returns its next rate."""
    def contender(name):
        rounds = iter(rates[name])
        return (name, "step", lambda: lambda: next(rounds))
    return lambda cfg, stack: [contender(name) for name in rates]


def _one_size(monkeypatch, tmp_path, rates, loads, cores=2):
    from keras_resnet.bench import common, throughput

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(throughput, "_contenders", _fake_contenders(rates))
    monkeypatch.setattr(throughput, "machine", lambda: {"cpu": "Test CPU", "cores": cores, "isa": ["AVX2"]})
    loads = iter(loads)
    monkeypatch.setattr(throughput.os, "getloadavg", lambda: next(loads))
    return main(["bench", "throughput", "--depth", "18", "--image-size", "32", "--batch-size", "2", "--rounds", "3",
                 "--name", "cpu"])


def test_throughput_records_the_load_average_and_stays_quiet_on_a_steady_idle_machine(tmp_path, monkeypatch,
                                                                                      capsys):
    code = _one_size(monkeypatch, tmp_path, {"keras_resnet ours": [10.0, 12.0, 11.0], "peer": [20.0, 22.0, 21.0]},
                     [(0.5, 0.4, 0.3), (1.75, 0.9, 0.5)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads((tmp_path / "cpu.json").read_text())
    assert (data["load_before"], data["load"], data["warning"]) == ([0.5, 0.4, 0.3], [1.75, 0.9, 0.5], None)
    assert captured.out.splitlines()[0] == ("Training throughput, Keras backend tensorflow, on Test CPU (AVX2; oneDNN "
                                            "off), 2 cores, no GPU (load average 0.5 at the start, 1.8 at the end)")
    assert "Warning" not in captured.out + captured.err


def test_throughput_warns_that_its_ratios_are_not_to_be_trusted_on_a_busy_machine(tmp_path, monkeypatch, capsys):
    """torchvision's two OpenMP threads collapsed on a contended machine ("ours_vs_this 25.42, by_round
    16.17-65.70") and nothing said so."""
    code = _one_size(monkeypatch, tmp_path, {"keras_resnet ours": [10.0, 12.0, 11.0],
                                             "torchvision resnet18": [2.0, 0.5, 0.4]},
                     [(1.0, 1.0, 1.0), (3.5, 2.0, 1.0)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warning = ("Warning: the rounds of torchvision resnet18 differ 5.0x and the load average 3.5 exceeded the 2 "
               "cores: the ratios are not to be trusted; rerun on an idle machine")
    assert captured.out.splitlines()[-3:] == [warning, "", f"wrote {tmp_path / 'cpu.json'}"]
    assert json.loads((tmp_path / "cpu.json").read_text())["warning"] == warning
    assert (tmp_path / "cpu.md").read_text().endswith(warning + "\n")


def test_the_benchmarks_own_load_at_the_end_is_no_warning_and_a_busy_start_is():
    """On the AVX2-only Zen 3 (2 cores) every steady run ended at a load average of 2.0-2.1, its own two threads,
    and was told its ratios were not to be trusted."""
    from keras_resnet.bench.common import trust_warning

    steady = [("ours", [10.0, 11.0]), ("peer", [9.0, 9.5])]
    untrusted = ": the ratios are not to be trusted; rerun on an idle machine"
    assert trust_warning(steady, (1.2, 1.9, 1.6), (2.1, 1.8, 1.6), 2) is None
    assert trust_warning(steady, (0.1,), (3.0,), 2) is None  # one other thread's worth: cores + 1
    assert trust_warning(steady, (0.1,), (3.1,), 2) == (
        f"Warning: the load average 3.1 exceeded the 2 cores{untrusted}")
    assert trust_warning(steady, (2.5,), (2.1,), 2) == (
        f"Warning: the load average 2.5 exceeded the 2 cores{untrusted}")


def test_throughput_warns_of_unsteady_rounds_alone_naming_a_twin_by_its_step(tmp_path, monkeypatch, capsys):
    from keras_resnet.bench.common import trust_warning

    assert trust_warning([("ours", [10.0, 20.0]), ("peer", [1.0])], (2.0,), (2.0,), 2) is None  # 2x: steady
    assert trust_warning([("ours", [10.0, 20.1])], (0.1,), (0.1,), 2) == (
        "Warning: the rounds of ours differ 2.0x: the ratios are not to be trusted; rerun on an idle machine")
    from keras_resnet.bench.throughput import _label

    rows = [{"model": "torchvision resnet50", "step": "eager"}, {"model": "torchvision resnet50", "step": "compiled"},
            {"model": "keras_resnet ResNet-50", "step": "train_on_batch"}]
    assert [_label(row, rows) for row in rows] == ["torchvision resnet50 (eager)", "torchvision resnet50 (compiled)",
                                                   "keras_resnet ResNet-50"]


def test_update_bench_records_the_load_average_and_warns_of_unsteady_rounds(tmp_path, monkeypatch, capsys):
    from keras_resnet.bench import common, update

    rates = {False: iter([10.0, 10.0, 11.0, 10.0]), True: iter([20.0, 50.0, 20.0, 21.0])}
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(update, "_step", lambda cfg, make_optimizer, compiled: lambda: next(rates[compiled]))
    monkeypatch.setattr(update, "images_per_second", lambda step, batch_size, steps, warmup, sync: (
        step() if steps == cfg_steps else 0.0))  # the warm-up (1 step) takes no rate
    cfg_steps = 10
    loads = iter([(0.25, 0.0, 0.0), (0.75, 0.0, 0.0)])
    monkeypatch.setattr(update.os, "getloadavg", lambda: next(loads))
    assert main(["bench", "update", "--rounds", "2", "--name", "update"]) == 0
    captured = capsys.readouterr()
    data = json.loads((tmp_path / "update.json").read_text())
    assert [row["rounds"] for row in data["rows"]] == [[10.0, 10.0], [20.0, 50.0], [11.0, 10.0], [20.0, 21.0]]
    assert (data["load_before"], data["load"]) == ([0.25, 0.0, 0.0], [0.75, 0.0, 0.0])
    assert "(load average 0.2 at the start, 0.8 at the end)" in captured.out.splitlines()[0]
    warning = ("Warning: the rounds of digits recipe, compiled (kres) differ 2.5x: the ratios are not to be trusted; "
               "rerun on an idle machine")
    assert data["warning"] == warning
    assert captured.out.splitlines()[-3:] == [warning, "", f"wrote {tmp_path / 'update.json'}"]


@pytest.mark.parametrize("command", ["throughput", "tflite", "pipeline", "time-to-accuracy", "update"])
@pytest.mark.parametrize("name", ["a/b", "", ".hidden", "..", "a\\b"])
def test_results_name_is_a_plain_file_name_checked_before_running(tmp_path, monkeypatch, capsys, command, name):
    """`--name a/b` ran the whole benchmark, then wrote benchmarks/results/a/b.json (and `--name ""` a hidden
    .json)."""
    from keras_resnet.bench import common
    from kres.bench import RESULTS
    from kres.main import main

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    assert main(["bench", command, "--name", name]) == 2
    assert capsys.readouterr().err == (
        f"Error: Invalid value for '--name': {name!r} is no plain file name: give one such as my-run (no folder, "
        f"not hidden); results go to {RESULTS} (see 'kres bench {command} --help')\n")
    assert list(tmp_path.iterdir()) == []


def test_bench_help_says_the_folder_results_go_to(capsys):
    """It said "benchmarks/results/", which a user looked for in the folder they ran kres in."""
    from kres.bench import RESULTS  # common.RESULTS_DIR, absolute (that one is the checkout: see above)
    from kres.main import main

    assert os.path.isabs(RESULTS)
    def unwrapped(text):  # click wraps a long path, at its hyphens too
        return "".join(text.split())

    assert main(["bench", "--help"]) == 0
    assert unwrapped(f"results go to {RESULTS}.") in unwrapped(capsys.readouterr().out)
    assert main(["bench", "update", "--help"]) == 0
    assert unwrapped(f"--name NAME Results file name: writes NAME.json and NAME.md to {RESULTS}. [default: update]"
                     ) in unwrapped(capsys.readouterr().out)
