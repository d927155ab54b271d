"""TFLite latency: ms per image of float32, float16, dynamic-range and int8 TFLite ResNets, batch 1, on the CPU.

Ours are converted by :func:`keras_resnet.quantize.convert` (what ``kres export`` ships): ResNet-``depth`` as
built by default (v1.5), and for ResNet-50 int8 also as v1, the peer's own architecture. The peer is
keras.applications.ResNet50 converted with the plain converter calls (``TFLiteConverter.from_keras_model``;
int8 with random calibration images, ``Optimize.DEFAULT``, ``TFLITE_BUILTINS_INT8`` and uint8 input/output), in
the same command, so the ratios hold on a noisy machine. Every model runs in the interpreter
:func:`keras_resnet.runtime.tflite_interpreter` returns (LiteRT, with its default XNNPACK delegate).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from keras_resnet import _compat
from keras_resnet.bench.common import machine, machine_line, markdown_table, write_results
from keras_resnet.errors import KresError, counted, first_line
from keras_resnet.quantize import QUANTIZE_MODES as MODES
from keras_resnet.quantize import check_mode, converter_chatter_to
from keras_resnet.specs import depth_spec

PEER_MODES = ("float32", "int8")
PEER = "keras.applications ResNet50"
# The same peer with its own preprocess_input inside the graph, as ours has: an app feeding the plain peer must
# do that normalization itself, outside the timed invoke. Reported for information (int8 only), no target.
PEER_IN_GRAPH = "keras.applications ResNet50 + preprocess_input in graph"
# Ours built as variant v1, the peer's own architecture (stride on the first 1x1, "caffe" input): the like-for-like
# comparison of what the export adds. The default v1.5 does 6% more multiply-adds (4.09 G against 3.86 G).
OURS_V1 = "keras_resnet ResNet-50 v1 (the peer's architecture)"
INT8_SPEEDUP_TARGET = 3.5  # ours int8 vs ours float32, ResNet-50
PEER_INT8_TARGET = 1.0  # ours int8 vs the peer's int8: no slower
INVOKE_ROUNDS = 5  # the models take turns this many times


@dataclass
class Config:
    depths: tuple[int, ...] = (50,)
    modes: tuple[str, ...] = MODES  # the peer is converted in the modes of PEER_MODES that are listed here
    image_size: int = 224
    threads: tuple[int, ...] = (1, 2)
    invokes: int = 30  # timed invokes per model and thread count, in turns with the others; the median is reported
    warmup: int = 3  # untimed invokes first (XNNPACK packs weights on the first)
    calibration_images: int = 8  # random images for int8 calibration, ours and the peer's alike
    peer: bool = True
    peer_in_graph: bool = True  # also the peer with its preprocess_input in the graph (int8), for information
    peer_architecture: bool = True  # also ours as variant v1 (int8, ResNet-50), the peer's architecture
    num_classes: int = 1000
    results_name: str = "tflite"


def _calibration(cfg: Config):
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 255, (1, cfg.image_size, cfg.image_size, 3)).astype(np.float32)
              for _ in range(cfg.calibration_images)]
    return lambda: iter(images)


def convert_ours(depth: int, mode: str, cfg: Config, variant: str = "v1.5") -> bytes:
    from keras_resnet.model import resnet
    from keras_resnet.quantize import convert

    # Not zero_init_residual (the training default): with every block's last BN gamma at 0 the branch output is
    # exactly 0, int8 calibration gives it a ~1e-8 scale, and XNNPACK refuses the projection blocks' ADDs
    # (input/output scale ratio below 2^-10), splitting the graph into 5 partitions: 15.2 ms instead of ~10.
    # A trained model never has all-zero branches; random gammas (as in the peer) behave like one.
    model = resnet(depth, num_classes=cfg.num_classes, input_shape=(cfg.image_size, cfg.image_size, 3),
                   zero_init_residual=False, variant=variant)
    return convert(model, mode, _calibration(cfg) if mode == "int8" else None)


def convert_peer(mode: str, cfg: Config, preprocess_in_graph: bool = False) -> bytes:
    """keras.applications.ResNet50 through the plain converter, as its documentation shows."""
    import keras
    import tensorflow as tf

    shape = (cfg.image_size, cfg.image_size, 3)
    model = keras.applications.ResNet50(weights=None, input_shape=shape, classes=cfg.num_classes)
    if preprocess_in_graph:  # "caffe" preprocess_input: RGB -> BGR, minus the ImageNet mean
        pixels = keras.Input(shape)
        bgr = keras.layers.Rescaling(1.0, offset=[-103.939, -116.779, -123.68])(pixels[..., ::-1])
        model = keras.Model(pixels, model(bgr))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        images = _calibration(cfg)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x] for x in images())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    # from_keras_model prints every captured variable, and the converter its warnings and C++ log lines, as it
    # does for ours: kept off the terminal the same way (kres export's conversions too)
    with converter_chatter_to(None), contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def counted_threads(threads: tuple[int, ...]) -> str:
    """``1 thread``, ``1 and 2 threads``, ``1, 2 and 4 threads``."""
    if len(threads) == 1:
        return counted(threads[0], "thread")
    return ", ".join(map(str, threads[:-1])) + f" and {threads[-1]} threads"


def _interpreter(content: bytes, threads: int):
    from keras_resnet.runtime import tflite_interpreter

    interpreter = tflite_interpreter(content, num_threads=threads)
    detail = interpreter.get_input_details()[0]
    image = np.random.default_rng(1).uniform(0, 255, detail["shape"])
    interpreter.set_tensor(detail["index"], image.astype(detail["dtype"]))
    return interpreter


def invoke_ms(models: dict, threads: tuple[int, ...], cfg: Config) -> dict:
    """Per (model key, threads): (median ms, min ms, XNNPACK partitions) of one batch-1 ``invoke()``.

    Every interpreter is warmed up ``cfg.warmup`` times, then the models take turns, a few invokes each, until
    each has ``cfg.invokes``: a burst of someone else's load on a shared machine then hits every model alike
    instead of one of them. The median is the figure; the min shows what an idle machine would give. More than
    one partition means some op fell back to the reference kernels between XNNPACK subgraphs.
    """
    interpreters = {(key, t): _interpreter(content, t) for key, content in models.items() for t in threads}
    for interpreter in interpreters.values():
        for _ in range(cfg.warmup):
            interpreter.invoke()
    times: dict = {key: [] for key in interpreters}
    chunk = max(1, cfg.invokes // INVOKE_ROUNDS)
    while any(len(v) < cfg.invokes for v in times.values()):
        for key, interpreter in interpreters.items():
            for _ in range(min(chunk, cfg.invokes - len(times[key]))):
                start = time.perf_counter()
                interpreter.invoke()
                times[key].append(time.perf_counter() - start)
    return {key: (float(np.median(times[key])) * 1000.0, float(np.min(times[key])) * 1000.0,
                  sum(op["op_name"] == "DELEGATE" for op in _compat.interpreter_ops(interpreters[key])))
            for key in interpreters}


def _ratio(name: str, numerator: dict | None, denominator: dict | None, target: float | None) -> dict | None:
    """``numerator / denominator`` of two rows' ms: how many times faster the denominator's model is."""
    if not numerator or not denominator or not numerator.get("ms") or not denominator.get("ms"):
        return None
    value = numerator["ms"] / denominator["ms"]
    return {"ratio": name, "threads": denominator["threads"], "slower_ms": numerator["ms"],
            "faster_ms": denominator["ms"], "value": value, "target": target,
            "met": None if target is None else value >= target,
            "value_of_mins": numerator["min_ms"] / denominator["min_ms"]}  # the same ratio, idle-machine figures


def run(cfg: Config, say: Callable[[str], object] = lambda line: None) -> dict:
    """Convert, time, write JSON and markdown; return the payload. ``say`` gets a line as each model is converted
    and as each figure is known."""
    for option, value, least in (("--invokes", cfg.invokes, 1), ("--warmup", cfg.warmup, 0),
                                 *(("--threads", t, 1) for t in cfg.threads)):
        if value < least:
            raise KresError(f"{option} {value} is too few: give {least} or more")
    if not cfg.threads or not cfg.modes or not cfg.depths:
        raise KresError("the tflite benchmark needs at least one of each of --depths, --modes and --threads")
    for depth in cfg.depths:
        depth_spec(depth)
    for mode in cfg.modes:
        check_mode(mode)
    rows, op_counts, contents = _convert_all(_models(cfg), cfg, say)
    if contents:
        say(f"timing {counted(len(contents), 'model')} at {counted_threads(cfg.threads)}, "
            f"{counted(cfg.invokes, 'invoke')} each, in turns ...")
    timings = invoke_ms(contents, cfg.threads, cfg)
    for (name, depth, mode), content in contents.items():
        for threads in cfg.threads:
            median_ms, min_ms, partitions = timings[((name, depth, mode), threads)]
            say(f"{name} {mode}, {counted(threads, 'thread')}: {median_ms:.1f} ms")
            rows.append({"model": name, "depth": depth, "mode": mode, "threads": threads, "ms": median_ms,
                         "min_ms": min_ms, "size_mb": len(content) / 1e6, "xnnpack_partitions": partitions})
    ratios = _ratios(rows, cfg)
    payload = {"benchmark": "tflite", "config": asdict(cfg), "machine": machine(), "rows": rows, "ratios": ratios,
               "ops": op_counts, "load": os.getloadavg()}
    m = payload["machine"]
    title = (f"TFLite latency, batch 1, {cfg.image_size} px, median of {cfg.invokes} invokes, LiteRT interpreter "
             f"on {machine_line(m, payload['load'])}\n\n")
    table = (title + markdown_table(["model", "mode", "threads", "ms", "min_ms", "size_mb", "xnnpack_partitions",
                                   "error"], rows) + "\n"
             + markdown_table(["ratio", "threads", "value", "target", "met", "value_of_mins"], ratios))
    payload["measured"] = any(row.get("ms") is not None for row in rows if row["model"].startswith("keras_resnet"))
    payload["results_file"] = str(write_results(cfg.results_name, payload, table, measured=payload["measured"]))
    payload["table"] = table
    return payload


def _models(cfg: Config) -> list[tuple[str, int, str, callable]]:
    """(name, depth, mode, convert) of every model the run times: ours, then the peer's where asked."""
    models: list[tuple[str, int, str, callable]] = [
        (f"keras_resnet ResNet-{d}", d, mode, lambda d=d, mode=mode: convert_ours(d, mode, cfg))
        for d in cfg.depths for mode in cfg.modes]
    if cfg.peer:
        models += [(PEER, 50, mode, lambda mode=mode: convert_peer(mode, cfg))
                   for mode in PEER_MODES if mode in cfg.modes]
        if cfg.peer_in_graph and "int8" in cfg.modes:
            models.append((PEER_IN_GRAPH, 50, "int8", lambda: convert_peer("int8", cfg, preprocess_in_graph=True)))
        if cfg.peer_architecture and "int8" in cfg.modes and 50 in cfg.depths:
            models.append((OURS_V1, 50, "int8", lambda: convert_ours(50, "int8", cfg, variant="v1")))
    return models


def _convert_all(models, cfg: Config, say: Callable[[str], object] = lambda line: None):
    """The flatbuffers by (name, depth, mode), their op counts, and an error row for each that fails."""
    from keras_resnet.quantize import inspect_tflite

    rows, op_counts, contents = [], {}, {}
    for name, depth, mode, make in models:
        say(f"converting {name} {mode} ...")
        try:
            contents[(name, depth, mode)] = make()
        except Exception as err:  # a model that does not convert here is reported, not fatal
            rows.append({"model": name, "depth": depth, "mode": mode, "threads": None, "ms": None,
                         "error": f"{type(err).__name__}: {first_line(err)}"})
            say(f"{name} {mode}: conversion failed ({rows[-1]['error']})")
            continue
        op_counts[f"{name} {mode}"] = inspect_tflite(contents[(name, depth, mode)]).ops
    return rows, op_counts, contents


def _ratios(rows: list[dict], cfg: Config) -> list[dict]:
    def row(name, mode, threads):
        return next((r for r in rows if r["model"] == name and r["mode"] == mode and r["threads"] == threads), None)

    ratios = []
    for depth in cfg.depths:
        ours = f"keras_resnet ResNet-{depth}"
        for threads in cfg.threads:
            ratios.append(_ratio(f"ResNet-{depth} ours int8 vs ours float32 (x faster)", row(ours, "float32", threads),
                                 row(ours, "int8", threads), INT8_SPEEDUP_TARGET))
            if cfg.peer and depth == 50:
                ratios.append(_ratio("ResNet-50 ours int8 vs peer int8 (x faster)", row(PEER, "int8", threads),
                                     row(ours, "int8", threads), PEER_INT8_TARGET))
                ratios.append(_ratio("ResNet-50 v1 ours int8 vs peer int8, the same architecture (x faster)",
                                     row(PEER, "int8", threads), row(OURS_V1, "int8", threads), PEER_INT8_TARGET))
                ratios.append(_ratio("ResNet-50 ours int8 vs peer int8 with preprocess_input in graph (x faster)",
                                     row(PEER_IN_GRAPH, "int8", threads), row(ours, "int8", threads), None))
                ratios.append(_ratio("ResNet-50 ours float32 vs peer float32 (x faster)",
                                     row(PEER, "float32", threads), row(ours, "float32", threads), None))
    return [r for r in ratios if r is not None]
