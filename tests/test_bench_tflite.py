"""``kres bench tflite`` at a tiny size: ours and the peer convert, run, and the ratios are the quotients."""

import json

import pytest

from kres.main import main


@pytest.fixture
def results(tmp_path, monkeypatch):
    from keras_resnet.bench import common

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    return tmp_path


def _run_tiny(results, capsys, *extra):
    code = main(["bench", "tflite", "--depths", "18", "--image-size", "32", "--threads", "1", "--invokes", "3",
                 "--warmup", "1", "--calibration-images", "2", "--num-classes", "10", "--name", "smoke", *extra])
    assert code == 0, capsys.readouterr().err
    data = json.loads((results / "smoke.json").read_text())
    return data, {(r["model"], r["mode"], r["threads"]): r for r in data["rows"]}


def test_tflite_smoke(results, capsys):
    # The peer's conversions are slow (from_keras_model exports a SavedModel first): int8 only, in the next test.
    data, rows = _run_tiny(results, capsys, "--modes", "float32,int8", "--no-peer")
    assert set(rows) == {("keras_resnet ResNet-18", "float32", 1), ("keras_resnet ResNet-18", "int8", 1)}
    for row in rows.values():
        assert 0 < row["min_ms"] <= row["ms"], row
        assert row["xnnpack_partitions"] == 1, row  # the whole graph runs in XNNPACK: no op falls back
    ours_f32, ours_int8 = rows[("keras_resnet ResNet-18", "float32", 1)], rows[("keras_resnet ResNet-18", "int8", 1)]
    assert ours_int8["size_mb"] < ours_f32["size_mb"] / 3  # int8 weights: a quarter of float32, plus the graph
    (ratio,) = data["ratios"]
    assert ratio["ratio"] == "ResNet-18 ours int8 vs ours float32 (x faster)" and ratio["target"] == 3.5
    assert ratio["value"] == ours_f32["ms"] / ours_int8["ms"]
    assert ratio["met"] == (ratio["value"] >= 3.5)
    assert ratio["value_of_mins"] == ours_f32["min_ms"] / ours_int8["min_ms"]
    # the op list of every converted model is recorded; full-integer int8 quantizes its uint8 input
    assert data["ops"]["keras_resnet ResNet-18 int8"]["CONV_2D"] == 20
    assert "QUANTIZE" in data["ops"]["keras_resnet ResNet-18 int8"]
    assert "QUANTIZE" not in data["ops"]["keras_resnet ResNet-18 float32"]
    assert data["config"]["depths"] == [18] and data["machine"]["cores"] >= 1
    assert "| keras_resnet ResNet-18 | int8 | 1 |" in (results / "smoke.md").read_text()


def test_tflite_peer_converts_and_runs(results, capsys):
    data, rows = _run_tiny(results, capsys, "--modes", "int8", "--no-peer-in-graph")
    assert ("keras.applications ResNet50 + preprocess_input in graph", "int8", 1) not in rows
    peer = rows[("keras.applications ResNet50", "int8", 1)]
    assert peer["ms"] > 0 and data["ops"]["keras.applications ResNet50 int8"]["CONV_2D"] == 53
    assert "QUANTIZE" in data["ops"]["keras.applications ResNet50 int8"]


def test_tflite_peer_ratios_are_quotients(results, monkeypatch):
    """The ResNet-50 ratios against the peer, with conversion and timing replaced by fixed figures."""
    from keras_resnet.bench import tflite_latency as bench

    ms = {("ours", "float32"): 80.0, ("ours", "int8"): 16.0, ("peer", "float32"): 100.0, ("peer", "int8"): 20.0,
          ("peer+pre", "int8"): 24.0, ("ours-v1", "int8"): 25.0}
    monkeypatch.setattr(bench, "convert_ours",
                        lambda depth, mode, cfg, variant="v1.5": ("ours-v1" if variant == "v1" else "ours", mode))
    monkeypatch.setattr(bench, "convert_peer",
                        lambda mode, cfg, preprocess_in_graph=False: ("peer+pre" if preprocess_in_graph else "peer",
                                                                      mode))
    monkeypatch.setattr(bench, "invoke_ms", lambda contents, threads, cfg: {
        (key, t): (ms[content] * t, ms[content], 1) for key, content in contents.items() for t in threads})
    monkeypatch.setattr("keras_resnet.quantize.inspect_tflite", lambda content: type("I", (), {"ops": {}})())
    data = bench.run(bench.Config(depths=(50,), modes=("float32", "int8"), threads=(1, 2), results_name="fake"))
    got = {(r["ratio"], r["threads"]): (r["value"], r["met"]) for r in data["ratios"]}
    assert got == {
        ("ResNet-50 ours int8 vs ours float32 (x faster)", 1): (5.0, True),
        ("ResNet-50 ours int8 vs ours float32 (x faster)", 2): (5.0, True),
        ("ResNet-50 ours int8 vs peer int8 (x faster)", 1): (1.25, True),
        ("ResNet-50 ours int8 vs peer int8 (x faster)", 2): (1.25, True),
        ("ResNet-50 v1 ours int8 vs peer int8, the same architecture (x faster)", 1): (0.8, False),
        ("ResNet-50 v1 ours int8 vs peer int8, the same architecture (x faster)", 2): (0.8, False),
        ("ResNet-50 ours int8 vs peer int8 with preprocess_input in graph (x faster)", 1): (1.5, None),
        ("ResNet-50 ours int8 vs peer int8 with preprocess_input in graph (x faster)", 2): (1.5, None),
        ("ResNet-50 ours float32 vs peer float32 (x faster)", 1): (1.25, None),
        ("ResNet-50 ours float32 vs peer float32 (x faster)", 2): (1.25, None),
    }


@pytest.mark.parametrize(("args", "message"), [
    (["--depths", "19"], "19"),
    (["--depths", "x"], "comma-separated list of integers"),
    (["--modes", "int4"], "unknown quantize mode 'int4'"),
])
def test_tflite_bad_options(results, capsys, args, message):
    code = main(["bench", "tflite", *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not list(results.iterdir())


@pytest.mark.parametrize(("args", "message"), [
    # accepted: it ran, printed empty tables and wrote tflite-failed.json
    (["--modes", ""], "Error: Invalid value for '--modes': give at least one mode, e.g. float32,int8"),
    (["--modes", " , "], "Error: Invalid value for '--modes': give at least one mode, e.g. float32,int8"),
    # it named --invokes, --warmup and thread counts together
    (["--threads", "-1"], "Error: Invalid value for '--threads': -1 is not a thread count: give 1 or more, e.g. 1,2"),
    (["--threads", "1,0"], "Error: Invalid value for '--threads': 0 is not a thread count: give 1 or more, e.g. 1,2"),
    # its example was a list of depths, 18,50
    (["--threads", "1,x"], "Error: Invalid value for '--threads': '1,x' is not a comma-separated list of integers, "
                           "e.g. 1,2"),
    (["--depths", ""], "Error: Invalid value for '--depths': give at least one depth, e.g. 18,50"),
])
def test_tflite_refuses_an_empty_or_wrong_list_naming_the_option_and_value(results, capsys, args, message):
    assert main(["bench", "tflite", *args]) == 2
    assert capsys.readouterr().err == f"{message} (see 'kres bench tflite --help')\n"
    assert not list(results.iterdir())


def test_tflite_library_names_the_option_and_value_it_refuses(results):
    from keras_resnet.bench import tflite_latency as bench
    from keras_resnet.errors import KresError

    for cfg, message in ((bench.Config(threads=(1, -1)), "--threads -1 is too few: give 1 or more"),
                         (bench.Config(invokes=0), "--invokes 0 is too few: give 1 or more"),
                         (bench.Config(warmup=-2), "--warmup -2 is too few: give 0 or more"),
                         (bench.Config(modes=()), "the tflite benchmark needs at least one of each of --depths, "
                                                  "--modes and --threads")):
        with pytest.raises(KresError) as refused:
            bench.run(cfg)
        assert str(refused.value) == message
    assert not list(results.iterdir())


def test_a_tflite_run_whose_models_all_fail_leaves_the_earlier_results(results, monkeypatch, capsys):
    from keras_resnet.bench import tflite_latency as bench

    def broken(*args, **kwargs):
        raise RuntimeError("converter crashed\nwith more lines")

    monkeypatch.setattr(bench, "convert_ours", broken)
    (results / "smoke.json").write_text('{"earlier": true}')
    code = main(["bench", "tflite", "--depths", "18", "--modes", "int8", "--image-size", "32", "--threads", "1",
                 "--no-peer", "--name", "smoke"])
    captured = capsys.readouterr()
    assert code == 2 and "RuntimeError: converter crashed" in captured.out
    assert captured.err.endswith(f"the rows are in {results / 'smoke-failed.json'}, and smoke.json is left as it "
                                 "was\n")
    assert json.loads((results / "smoke.json").read_text()) == {"earlier": True}
    assert json.loads((results / "smoke-failed.json").read_text())["rows"][0]["error"] == (
        "RuntimeError: converter crashed")


def test_the_peers_conversion_keeps_the_converters_chatter_off_the_terminal(monkeypatch, capfd):
    """The peer's int8 conversions printed TensorFlow's "Statistics for quantized inputs were expected" warning,
    its `warnings.warn(` source line and the C++ "fully_quantize: 0, ..." line on the terminal, twice a run."""
    import os
    import warnings

    import keras
    import tensorflow as tf

    from keras_resnet.bench import tflite_latency as bench

    class Chatty:  # the converter's three kinds of output: a Python warning, print(), and C++ on descriptor 2
        def __init__(self):
            self.target_spec = type("Spec", (), {})()

        def convert(self):
            warnings.warn("Statistics for quantized inputs were expected, but not specified; continuing anyway.",
                          UserWarning, stacklevel=1)
            print("captured variable")
            os.write(2, b"fully_quantize: 0, inference_type: 6, input_inference_type: UINT8\n")
            return b"flatbuffer"

    monkeypatch.setattr(keras.applications, "ResNet50", lambda **kwargs: keras.Sequential([keras.Input((32, 32, 3))]))
    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_keras_model", staticmethod(lambda model: Chatty()))
    cfg = bench.Config(image_size=32, calibration_images=1)
    capfd.readouterr()  # TensorFlow's own import lines
    assert bench.convert_peer("int8", cfg) == b"flatbuffer"
    assert bench.convert_peer("int8", cfg, preprocess_in_graph=True) == b"flatbuffer"
    assert capfd.readouterr() == ("", "")


def test_tflite_says_each_conversion_and_each_figure_on_stderr(results, monkeypatch, capsys):
    """ResNet-50 int8 at 1 thread ran ~10 minutes with nothing on screen until the table."""
    from keras_resnet.bench import tflite_latency as bench

    ms = {("ours", "float32"): 80.0, ("ours", "int8"): 16.25, ("peer", "float32"): 100.0, ("peer", "int8"): 20.0,
          ("peer+pre", "int8"): 24.0}

    def ours(depth, mode, cfg, variant="v1.5"):
        if variant == "v1":
            raise RuntimeError("no v1 here\nmore")
        return ("ours", mode)

    monkeypatch.setattr(bench, "convert_ours", ours)
    monkeypatch.setattr(bench, "convert_peer",
                        lambda mode, cfg, preprocess_in_graph=False: ("peer+pre" if preprocess_in_graph else "peer",
                                                                      mode))
    monkeypatch.setattr(bench, "invoke_ms", lambda contents, threads, cfg: {
        (key, t): (ms[content] / t, ms[content], 1) for key, content in contents.items() for t in threads})
    monkeypatch.setattr("keras_resnet.quantize.inspect_tflite", lambda content: type("I", (), {"ops": {}})())
    code = main(["bench", "tflite", "--modes", "float32,int8", "--threads", "1,2", "--name", "fake"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err.splitlines() == [
        "converting keras_resnet ResNet-50 float32 ...",
        "converting keras_resnet ResNet-50 int8 ...",
        "converting keras.applications ResNet50 float32 ...",
        "converting keras.applications ResNet50 int8 ...",
        "converting keras.applications ResNet50 + preprocess_input in graph int8 ...",
        "converting keras_resnet ResNet-50 v1 (the peer's architecture) int8 ...",
        "keras_resnet ResNet-50 v1 (the peer's architecture) int8: conversion failed (RuntimeError: no v1 here)",
        "timing 5 models at 1 and 2 threads, 30 invokes each, in turns ...",
        "keras_resnet ResNet-50 float32, 1 thread: 80.0 ms",
        "keras_resnet ResNet-50 float32, 2 threads: 40.0 ms",
        "keras_resnet ResNet-50 int8, 1 thread: 16.2 ms",
        "keras_resnet ResNet-50 int8, 2 threads: 8.1 ms",
        "keras.applications ResNet50 float32, 1 thread: 100.0 ms",
        "keras.applications ResNet50 float32, 2 threads: 50.0 ms",
        "keras.applications ResNet50 int8, 1 thread: 20.0 ms",
        "keras.applications ResNet50 int8, 2 threads: 10.0 ms",
        "keras.applications ResNet50 + preprocess_input in graph int8, 1 thread: 24.0 ms",
        "keras.applications ResNet50 + preprocess_input in graph int8, 2 threads: 12.0 ms",
    ]
    assert "| keras_resnet ResNet-50 | int8 | 1 | 16.25 |" in captured.out  # the table stays on stdout
