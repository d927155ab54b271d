"""Where int8 loses accuracy: TensorFlow's quantization debugger on a trained model, reported under Keras layer
names; chosen layers kept in float; and a check that calibration images look like the training data.

``tf.lite.experimental.QuantizationDebugger`` converts the model once more in debug mode, where every quantized op
is followed by a NumericVerify op that compares it with the same op in float *on the same (dequantized) input*, so
each row measures the error that one op adds, not the error it inherits. We turn those numbers into
``quant_debug.csv`` and ``quant_debug.png``, and use its denylist for mixed int8/float models.

Tested with TensorFlow 2.21 (the debugger is experimental; its CSV dump is the only public view of its numbers).
"""

from __future__ import annotations

import csv
import io
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from keras_resnet import _compat, fileio
from keras_resnet.errors import KresError, counted, first_five, first_line
from keras_resnet.quantize import CONVERTER_LOG, converter_chatter_to

CSV_NAME = "quant_debug.csv"
PNG_NAME = "quant_debug.png"
MIXED_NAME = "int8_mixed"
WORST_LISTED = 5
DEBUG_IMAGES = 100  # held-out images run through the debug model; enough for stable per-layer averages
LATENCY_RUNS = 20
CSV_FIELDS = ("depth", "layer", "op", "scale", "zero_point", "rmse_over_scale", "sqnr_db", "tensor_sqnr_db",
              "signal_over_scale", "tensor")
# A tensor whose float values (RMS) are under half an int8 step rounds to zero in int8: its SQNR is about 0 dB
# though its error is below rounding. A ResNet block's last conv does this when its BN gamma is still near zero
# (zero_init_residual, a short run) and its output takes the scale of the sum it joins; kept in float it changed
# nothing (top-1 the same, the file 10.8 -> 19.2 MiB). Not ranked among the worst layers.
NEAR_ZERO_STEPS = 0.5

STATS_KEY = "input_stats"  # meta.json extra: per-channel mean/std of the training images as the model sees them
STATS_IMAGES = 200
MEAN_MARGIN = 0.25  # calibration mean may differ from training by this many training stds, per channel
STD_MARGIN = 1.25  # calibration std may be this many times larger or smaller than training's
SAMPLE_IMAGES = 100  # the margins hold for this many calibration images (the default); fewer widen them

# Ops whose int8 output reuses the input's scale: a float reader behind one of them must read float too.
_SAME_SCALE_OPS = frozenset({"PAD", "PADV2", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "MAX_POOL_2D", "TRANSPOSE",
                             "STRIDED_SLICE", "SLICE"})
_WEIGHTED_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")


@dataclass
class LayerRow:
    """One quantized tensor of the debug model."""

    depth: int  # position in execution order
    layer: str  # the Keras layer it belongs to
    op: str  # TFLite op, e.g. CONV_2D
    scale: float
    zero_point: int
    rmse_over_scale: float  # about 0.29 for pure rounding noise; much more means clipping or a poor range
    sqnr_db: float  # median over channels of each channel's signal-to-quantization-noise ratio
    tensor_sqnr_db: float  # the same ratio over the whole tensor
    tensor: str  # TFLite tensor name (what the denylist takes)
    index: int = -1  # tensor index in the debug model
    signal_over_scale: float = math.nan  # RMS of the float output in int8 steps (under NEAR_ZERO_STEPS: ~zero)

    @property
    def near_zero(self) -> bool:
        return self.signal_over_scale < NEAR_ZERO_STEPS


@dataclass
class DebugRun:
    rows: list[LayerRow]
    debugger: object  # tf.lite.experimental.QuantizationDebugger, kept for mixed models
    images: int
    io_dtype: str = "uint8"  # the int8 model's input and output type, for the mixed model too
    per_channel_dense: bool = False
    reads: dict[str, list[str]] = field(default_factory=dict)  # layer -> the layers whose outputs it reads

    def worst(self, count: int = WORST_LISTED, skip_output: bool = True) -> list[LayerRow]:
        """The layers with the lowest SQNR, one row per layer, earliest first on ties (an error spreads forward).

        The model's output op is skipped: int8 softmax rounds tiny probabilities to zero by design (a low ratio
        that costs no top-1), and its effect shows in the accuracy figures anyway; so is a PAD, which copies its
        input (kept in float, it would change nothing), and a tensor whose float output is about zero
        (:meth:`near_zero`)."""
        best_per_layer: dict[str, LayerRow] = {}
        for row in self._ranked(skip_output):
            if row.near_zero:
                continue
            if row.layer not in best_per_layer or row.sqnr_db < best_per_layer[row.layer].sqnr_db:
                best_per_layer[row.layer] = row
        return sorted(best_per_layer.values(), key=lambda r: (r.sqnr_db, r.depth))[:count]

    def near_zero(self, skip_output: bool = True) -> list[str]:
        """The layers :meth:`worst` leaves out because their float output is under half an int8 step (RMS): their
        SQNR is about 0 dB however small the error (NEAR_ZERO_STEPS)."""
        return list(dict.fromkeys(row.layer for row in self._ranked(skip_output) if row.near_zero))

    def _ranked(self, skip_output: bool) -> Iterator[LayerRow]:
        last = self.rows[-1].layer if skip_output and self.rows else None
        # (a PAD adds no error)
        return (row for row in self.rows if row.layer != last and not math.isnan(row.sqnr_db) and row.op != "PAD")


# --- the debugger --------------------------------------------------------------------------------------------

def _channel_sqnr(float_values, quant_values, scale, zero_point) -> float:
    with np.errstate(all="ignore"):
        signal, noise = _powers(float_values, quant_values, scale, zero_point)
        keep = signal > 0
        if not keep.any():
            return math.nan
        return float(np.nanmedian(10 * np.log10(signal[keep] / np.maximum(noise[keep], 1e-30))))


def _powers(float_values, quant_values, scale, zero_point) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        f = np.asarray(float_values, np.float64)
        q = (np.asarray(quant_values, np.float64) - zero_point) * scale
    # The float PAD before a max pool pads with -FLT_MAX where int8 pads with its lowest value: no real signal.
    sentinel = ~np.isfinite(f) | (np.abs(f) > 1e30)
    f, q = np.where(sentinel, 0.0, f), np.where(sentinel, 0.0, q)
    axes = tuple(range(f.ndim - 1))  # every axis but channels
    return np.mean(f**2, axis=axes), np.mean((q - f) ** 2, axis=axes)


def _signal(f, q, s, z) -> float:
    return float(np.mean(_powers(f, q, s, z)[0]))


def _noise(f, q, s, z) -> float:
    return float(np.mean(_powers(f, q, s, z)[1]))


def int8_converter(model, representative_data: Callable[[], Iterable[np.ndarray]], saved_model_dir: str,
                   io_dtype: str = "uint8", per_channel_dense: bool = False):
    """A converter set up as :func:`keras_resnet.quantize.convert` sets up int8, for the debugger (which asks for
    a converter and does the calibration and quantization itself): from the same SavedModel, so the mixed model's
    ``serving_default`` signature names its output as the exported files do. ``model`` is what
    :func:`keras_resnet.quantize.fuse_input_ops` made of the trained model, as for the exported int8 file; the
    SavedModel is written to ``saved_model_dir``, which must outlive the debugger's conversions."""
    import tensorflow as tf

    from keras_resnet.quantize import batch1_saved_model, configure

    saved = batch1_saved_model(model, saved_model_dir)  # its output named as the model's own
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    configure(converter, "int8", representative_data, io_dtype, per_channel_dense)
    return converter


def run_debugger(model, representative_data: Callable[[], Iterable[np.ndarray]], images: np.ndarray, *,
                 io_dtype: str = "uint8", per_channel_dense: bool = False) -> DebugRun:
    """Calibrate ``model`` on ``representative_data`` ([1,H,W,3] raw-pixel batches) and measure every quantized
    tensor on ``images`` ([N,H,W,3] raw pixels). ``io_dtype`` and ``per_channel_dense`` are the int8 export's,
    for :func:`mixed_model`."""
    import tensorflow as tf

    from keras_resnet.quantize import fuse_input_ops

    model = fuse_input_ops(model)  # the exported graph, whose layer names the TFLite tensors carry
    options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={
        "channel_sqnr_db": _channel_sqnr, "signal_power": _signal, "noise_power": _noise})
    data = np.asarray(images, np.float32)

    def debug_data() -> Iterator[list[np.ndarray]]:
        return ([x[None]] for x in data)

    try:
        with tempfile.TemporaryDirectory(prefix=fileio.CONVERT_TEMP_PREFIX) as tmp:  # it converts on creation
            converter = int8_converter(model, representative_data, tmp, io_dtype, per_channel_dense)
            debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=debug_data,
                                                                 debug_options=options)
        debugger.run()
    except Exception as err:  # the converter and the debugger raise several types, with multi-line text
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise KresError(f"the quantization debugger failed: {first}") from err
    return DebugRun(_rows(debugger, model), debugger, len(data), io_dtype, per_channel_dense, _reads(model))


def _reads(model) -> dict[str, list[str]]:
    """Layer name -> the layers whose outputs it takes, from the Keras graph (the way back from a fused layer)."""
    made_by: dict[int, str] = {}
    reads: dict[str, list[str]] = {}
    for node in _compat.graph_nodes(model):  # inputs first
        name = node.operation.name
        reads.setdefault(name, []).extend(made_by[id(t)] for t in node.input_tensors if id(t) in made_by)
        made_by.update({id(t): name for t in node.output_tensors})
    return reads


def _rows(debugger, model) -> list[LayerRow]:
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    weighted = {layer.name for layer in model.layers if type(layer).__name__ in _WEIGHTED_LAYERS}
    rows: list[LayerRow] = []
    for depth, rec in enumerate(csv.DictReader(io.StringIO(dump.getvalue()))):
        scale = float(rec["scale"])
        signal, noise = float(rec["signal_power"]), float(rec["noise_power"])
        layer = keras_layer_of(rec["tensor_name"], order, weighted)
        # The converter renames a few tensors (the output becomes "StatefulPartitionedCall:0"): the op before owns them.
        layer = layer or (rows[-1].layer if rows else rec["tensor_name"])
        if rec["op_name"] == "PAD":  # an int8 PAD copies its input: its figures are its input's, the row above's
            noise = math.nan  # (the debugger's float reference of it holds a stray value at times: NaN, 1e3-5e27)
        rows.append(LayerRow(
            depth=depth, layer=layer, op=rec["op_name"], scale=scale, zero_point=int(rec["zero_point"]),
            rmse_over_scale=math.sqrt(noise) / scale if scale else math.nan,
            sqnr_db=float(rec["channel_sqnr_db"]),
            tensor_sqnr_db=10 * math.log10(signal / noise) if signal > 0 and noise > 0 else math.nan,
            tensor=rec["tensor_name"], index=int(rec["tensor_idx"]),
            signal_over_scale=math.sqrt(signal) / scale if scale and signal >= 0 else math.nan))
    return rows


def keras_layer_of(tensor_name: str, order: dict[str, int], weighted: set[str] | frozenset = frozenset()) -> str | None:
    """The Keras layer a TFLite tensor comes from. A fused op's name joins its parts with ';' (conv, batch norm,
    ReLU): the conv or dense layer among them wins, else the latest layer. Traced names may carry a ``_1``."""
    found = [name for name in _names_in(tensor_name) if name in order]
    if not found:
        return None
    return max([n for n in found if n in weighted] or found, key=order.__getitem__)


def _names_in(tensor_name: str) -> Iterator[str]:
    """Each part of a TFLite tensor name that may be a Keras layer name, as it is and without a traced ``_1``."""
    for piece in tensor_name.split(";"):
        for part in piece.split("/"):
            yield part
            yield re.sub(r"_\d+$", "", part)


# --- float layers --------------------------------------------------------------------------------------------

def float_tensors(run: DebugRun, layers: Sequence[str]) -> list[str]:
    """Tensor names to denylist so that ``layers`` compute in float.

    A layer's output is also read in float: requantizing it for an int8 reader would bring back the very range
    that hurt. So its readers run in float too, through same-scale ops (pad, reshape, max pool) to the next op
    that computes."""
    from tensorflow.lite.python import schema_py_generated as schema

    check_layers_have_tensors(run, layers)
    graph = schema.ModelT.InitFromPackedBuf(bytearray(run.debugger.quant_model), 0)
    main = graph.subgraphs[0]
    by_index = {row.index: row for row in run.rows}
    readers: dict[int, list[int]] = {}
    for op in main.operators or []:
        outputs = [int(t) for t in op.outputs]
        for t in op.inputs:
            readers.setdefault(int(t), []).extend(outputs)
    chosen = [row for row in run.rows if row.layer in set(layers)]
    names = {row.tensor: None for row in chosen}
    todo = [row.index for row in chosen]
    while todo:
        for out in readers.get(todo.pop(), []):
            row = by_index.get(out)  # DEQUANTIZE and NumericVerify outputs are not rows
            if row is None or row.tensor in names:
                continue
            names[row.tensor] = None
            if row.op in _SAME_SCALE_OPS:
                todo.append(row.index)
    return list(names)


def check_layers_have_tensors(run: DebugRun, layers: Sequence[str]) -> None:
    """Refuse a layer with no tensor of its own in TFLite: the converter fuses batch norms and ReLUs into the op
    before them, so keeping one in float would keep nothing in float."""
    has_rows = {row.layer for row in run.rows}
    _refuse_fused({name: _fused_into(run, name, has_rows) for name in layers if name not in has_rows})


def _refuse_fused(fused: dict[str, str | None]) -> None:
    """The one line for layers with no op of their own in TFLite (layer -> the layer whose op computes it)."""
    if not fused:
        return
    what = "; ".join(f"{name} is fused into {owner}" if owner else f"{name} has no op of its own"
                     for name, owner in fused.items())
    owners = list(dict.fromkeys(owner for owner in fused.values() if owner))
    fix = f"name {', '.join(owners)} instead" if owners else "name a conv or dense layer"
    raise KresError(f"--float-layers: {what} in TFLite: {fix} (the layer column of quant_debug.csv lists the "
                    "names that work)")


_FOLDED = ("BatchNormalization", "Dropout")  # never an op of their own in TFLite
_ACTIVATIONS = ("ReLU", "Activation")  # fused into a conv or dense op (or a batch norm's) before them
_WEIGHTED_OR_FOLDED = (*_WEIGHTED_LAYERS, *_FOLDED)


def _folded_in_keras(model, name: str, reads: dict[str, list[str]]) -> str | None:
    """The layer whose TFLite op computes ``name`` where the Keras graph alone tells (a batch norm, a dropout, an
    activation right after a conv or batch norm); None for a layer that may have an op of its own."""
    kind = lambda layer: type(model.get_layer(layer)).__name__  # noqa: E731
    before = reads.get(name, [])
    folded = kind(name) in _FOLDED or (kind(name) in _ACTIVATIONS and len(before) == 1
                                       and kind(before[0]) in _WEIGHTED_OR_FOLDED)
    if not folded:
        return None
    while len(reads.get(name, [])) == 1 and kind(name) in (*_FOLDED, *_ACTIVATIONS):
        name = reads[name][0]
    return name


def _fused_into(run: DebugRun, name: str, has_rows: set[str]) -> str | None:
    """The layer whose TFLite op computes ``name``: the owner of a fused tensor that names it, else the nearest
    layer with a tensor along its single inputs (a batch norm folded into the conv's weights leaves no name)."""
    owner = next((row.layer for row in run.rows if name in _names_in(row.tensor)), None)
    while owner is None and len(run.reads.get(name, [])) == 1:
        name = run.reads[name][0]
        owner = name if name in has_rows else None
    return owner


def mixed_model(run: DebugRun, layers: Sequence[str]) -> tuple[bytes, list[str]]:
    """The int8 model with ``layers`` (and their readers, see :func:`float_tensors`) in float, and those tensors.
    Its input and output type and its dense weights' quantization are those of the int8 export."""
    names = float_tensors(run, layers)
    return _quantize_calibrated(run, names), names


def _quantize_calibrated(run: DebugRun, denylisted_nodes: list[str]) -> bytes:
    """The debugger's calibrated model quantized with ``denylisted_nodes`` in float, with the int8 export's input
    and output type and dense weights (the debugger's own ``get_nondebug_quantized_model`` ignores both)."""
    try:
        return _compat.quantize_calibrated(run.debugger.calibrated_model, run.io_dtype, run.per_channel_dense,
                                           denylisted_nodes)
    except Exception as err:  # the converter raises ConverterError and friends, with multi-line text
        raise KresError(f"TFLite conversion ({MIXED_NAME}) failed: {first_line(err)}") from err


def check_float_layers(model, layers: Sequence[str]) -> None:
    if not layers:
        return
    known = {layer.name for layer in model.layers}
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise KresError(f"--float-layers: no layer named {', '.join(unknown)} in the model: use Keras layer names "
                        "such as conv4_block2_2_conv (quant_debug.csv lists them)")
    # Before any long work; the debugger's tensors show the rest (an add fused with the ReLU after it).
    reads = _reads(model)
    _refuse_fused({name: owner for name in layers if (owner := _folded_in_keras(model, name, reads)) is not None})


# --- files ---------------------------------------------------------------------------------------------------

def write_csv(rows: Sequence[LayerRow], path: Path) -> Path:
    with fileio.atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in asdict(row).items()})
    return path


def plot_sqnr(rows: Sequence[LayerRow], worst: Sequence[LayerRow], path: Path) -> Path:
    """SQNR along the network's depth, the worst layers labelled (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), dpi=100)
    axis = figure.add_subplot(1, 1, 1)
    # Pads, reshapes and max pools copy int8 values (no rounding): their huge ratios would only flatten the plot.
    rows = [r for r in rows if not r.rmse_over_scale < 1e-3]
    axis.plot([r.depth for r in rows], [r.sqnr_db for r in rows], marker=".", label="median channel SQNR")
    axis.plot([r.depth for r in rows], [r.tensor_sqnr_db for r in rows], alpha=0.4, label="whole-tensor SQNR")
    for i, row in enumerate(sorted(worst, key=lambda r: r.depth)):
        axis.annotate(row.layer, (row.depth, row.sqnr_db), textcoords="offset points", xytext=(4, -12 - 10 * (i % 2)),
                      fontsize=8, color="crimson")
        axis.plot([row.depth], [row.sqnr_db], "o", color="crimson")
    axis.set_xlabel("quantized tensor, in execution order (as in quant_debug.csv's depth)")
    axis.set_ylabel("SQNR (dB)")
    axis.set_title("int8 signal-to-quantization-noise ratio per layer (each op on the same input in float)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    with fileio.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


# --- calibration sanity --------------------------------------------------------------------------------------

def channel_stats(images: Iterable[np.ndarray]) -> dict:
    """Per-channel mean and std of a stream of [..., C] pixel arrays, in the model's input units (0-255)."""
    total = total_sq = None
    count = pictures = 0
    for batch in images:
        x = np.asarray(batch, np.float64).reshape(-1, np.shape(batch)[-1])
        total = x.sum(0) if total is None else total + x.sum(0)
        total_sq = (x**2).sum(0) if total_sq is None else total_sq + (x**2).sum(0)
        count += len(x)
        pictures += int(np.prod(np.shape(batch)[:-3])) if np.ndim(batch) >= 4 else 1
    if not count:
        raise KresError("no calibration images to check: the training data is empty")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return {"mean": [round(float(v), 3) for v in mean], "std": [round(float(v), 3) for v in std], "images": pictures}


def training_stats(data_cfg) -> dict:
    """:func:`channel_stats` of the run's training images through eval preprocessing (what calibration reads)."""
    from keras_resnet.data import calibration_images

    stats = channel_stats(calibration_images(data_cfg, STATS_IMAGES))
    return {"mean": stats["mean"], "std": stats["std"]}  # what meta.json records, as before the count


def record_input_stats(run_dir: Path, data_cfg) -> None:
    """Keep the training images' statistics in the run's meta.json, for the calibration check at export."""
    from keras_resnet.meta import ModelMeta

    meta = ModelMeta.load(run_dir)
    meta.extra[STATS_KEY] = training_stats(data_cfg)
    meta.save(run_dir)


def calibration_warning(observed: dict, recorded: dict) -> str | None:
    """One line naming the likely cause when calibration statistics differ from training's by more than the
    margins; None when they agree."""
    mean_r, std_r = np.asarray(recorded["mean"], float), np.maximum(np.asarray(recorded["std"], float), 1e-6)
    mean_c, std_c = np.asarray(observed["mean"], float), np.asarray(observed["std"], float)
    if mean_c.shape != mean_r.shape:
        return (f"calibration images have {mean_c.size} channels where training had {mean_r.size}: likely cause: "
                "grey or RGBA images where the model takes RGB")

    # A few images differ from the whole set by chance (a handful of them, all of two colour classes, was told it
    # looked like other images): the margins widen as 1/sqrt(images) below SAMPLE_IMAGES.
    widen = math.sqrt(SAMPLE_IMAGES / min(max(observed.get("images", SAMPLE_IMAGES), 1), SAMPLE_IMAGES))

    def close(mean, std) -> bool:
        return bool(np.all(np.abs(mean - mean_r) <= widen * MEAN_MARGIN * std_r)
                    and np.all(np.abs(np.log(np.maximum(std, 1e-6) / std_r)) <= widen * math.log(STD_MARGIN)))

    if close(mean_c, std_c):
        return None
    if close(mean_c * 255, std_c * 255):
        cause = "0-1 floats where the model takes 0-255 pixels (drop the /255)"
    elif close(mean_c / 255, std_c / 255):
        cause = "values 255 times too large (pixels multiplied by 255 twice)"
    elif close(mean_c[::-1], std_c[::-1]):
        cause = "BGR images where the model takes RGB (reverse the channels)"
    elif np.all(np.abs(mean_c - mean_r) <= widen * MEAN_MARGIN * std_r):
        cause = "a wrong resize or crop (stretched, padded or another interpolation than the run's eval resize)"
    else:
        cause = "other images, or a wrong resize, channel order or value range"
    fmt = lambda v: "/".join(f"{x:.3g}" for x in v)  # noqa: E731
    return (f"calibration images do not look like the training data (mean {fmt(mean_c)} vs {fmt(mean_r)}, std "
            f"{fmt(std_c)} vs {fmt(std_r)}): likely cause: {cause}")


def calibration_warnings(meta, data_cfg, calibration, say) -> list[str]:
    """``kres export``'s check before an int8 conversion: the warning (said, and returned for the report), if any.
    ``calibration`` is None where there are no real images to check."""
    if calibration is None:
        return []
    warning = calibration_check(meta, data_cfg, calibration)
    if warning:
        say(f"warning: {warning}")
    return [warning] if warning else []


def calibration_check(meta, data_cfg, calibration: Callable[[], Iterable[np.ndarray]]) -> str | None:
    """Compare ``calibration`` with the statistics recorded at train time (computed from the run's training data
    for a run trained before they were recorded). None without a run to compare with."""
    recorded = meta.extra.get(STATS_KEY)
    if recorded is None:
        if data_cfg is None:
            return None
        recorded = training_stats(data_cfg)
    return calibration_warning(channel_stats(calibration()), recorded)


# --- kres export ---------------------------------------------------------------------------------------------

def check_options(cfg, tflite_names: Sequence[str]) -> None:
    """Refuse what ``--debug`` / ``--float-layers`` / ``--float-worst`` cannot do, before any long work."""
    floats = bool(cfg.float_layers) or cfg.float_worst > 0
    if not (cfg.debug or floats):
        return
    if cfg.float_worst < 0:
        raise KresError(f"--float-worst must be 0 or more, got {cfg.float_worst}")
    if cfg.float_layers and cfg.float_worst:
        raise KresError("give --float-layers or --float-worst, not both")
    if floats and cfg.edgetpu:
        raise KresError("--float-layers/--float-worst cannot be used with --edgetpu: the Edge TPU needs every op "
                        "in int8, and a float layer splits the graph onto the CPU")
    if "int8" not in tflite_names:
        flag = "--debug" if cfg.debug else "--float-layers/--float-worst"
        raise KresError(f"{flag} works on the post-training int8 model: add --tflite --quantize int8")


def for_export(cfg, model, meta, calibration, heldout, out_dir: Path, report: dict, say) -> list[Path]:
    """``kres export --debug / --float-layers / --float-worst``: debug files, the mixed model and its figures in
    ``report``. Returns the files written."""
    if not (cfg.debug or cfg.float_layers or cfg.float_worst):
        return []
    check_float_layers(model, cfg.float_layers)
    if heldout is not None:
        images, source = heldout[0][:DEBUG_IMAGES], "held-out"
    else:
        images, source = np.concatenate(list(calibration()))[:DEBUG_IMAGES], "calibration"
    say(f"running the quantization debugger on {len(images)} {source} images")
    start = time.perf_counter()
    with converter_chatter_to(out_dir / CONVERTER_LOG):  # its conversions and interpreters: off the terminal
        run = run_debugger(model, calibration, images, io_dtype=cfg.io_dtype, per_channel_dense=cfg.per_channel_dense)
    layers = list(cfg.float_layers) or [r.layer for r in run.worst(cfg.float_worst)]
    check_layers_have_tensors(run, layers)  # before any file is written
    worst = run.worst()
    section: dict = {"images": len(images), "image_source": source, "seconds": None,
                     "worst": [{"layer": r.layer, "op": r.op, "sqnr_db": round(r.sqnr_db, 2),
                                "rmse_over_scale": round(r.rmse_over_scale, 3)} for r in worst],
                     "near_zero": run.near_zero()}
    files = []
    if cfg.debug or cfg.float_worst:
        files += [write_csv(run.rows, out_dir / CSV_NAME), plot_sqnr(run.rows, worst, out_dir / PNG_NAME)]
        section["csv"], section["png"] = CSV_NAME, PNG_NAME
    if layers:
        files += _write_mixed(run, layers, model, meta, heldout, out_dir, report, section, say)
    section["seconds"] = round(time.perf_counter() - start, 1)
    report["quant_debug"] = section
    return files


def _write_mixed(run, layers, model, meta, heldout, out_dir, report, section, say) -> list[Path]:
    say(f"converting to TFLite with {', '.join(layers)} in float")
    with converter_chatter_to(out_dir / CONVERTER_LOG):
        return _mixed_files(run, layers, model, meta, heldout, out_dir, report, section)


def _mixed_files(run, layers, model, meta, heldout, out_dir, report, section) -> list[Path]:
    from keras_resnet.quantize import convert, describe_tflite
    from keras_resnet.runtime import KerasPredictor, TFLitePredictor, compare, tflite_interpreter

    content, names = mixed_model(run, layers)
    path = fileio.write_bytes(out_dir / f"model_{MIXED_NAME}.tflite", content)
    entry = describe_tflite(path, content)
    section["float_layers"], section["float_tensors"] = layers, names
    int8_path = out_dir / "model_int8.tflite"
    candidates = {"float32": convert(model, "float32", work_dir=out_dir), "int8": int8_path.read_bytes(),
                  MIXED_NAME: content}
    comparison = {name: {"latency_ms": latency_ms(blob)} for name, blob in candidates.items()}
    if heldout is not None:
        images, labels = heldout
        reference = KerasPredictor(path, model, meta).predict(images)
        comparison["float32"]["top1"] = float(np.mean(np.argmax(reference, -1) == labels))
        for name in ("int8", MIXED_NAME):
            predictor = TFLitePredictor(path, tflite_interpreter(candidates[name]), meta)
            agreement = compare(reference, predictor.predict(images), labels)
            comparison[name]["top1"] = agreement["top1"]
            if name == MIXED_NAME:
                entry["agreement"] = agreement
    section["comparison"] = comparison
    report["artifacts"][path.name] = entry
    return [path]


def latency_ms(content: bytes, runs: int = LATENCY_RUNS) -> float:
    """Median milliseconds of one single-threaded invoke on a zero image."""
    from keras_resnet.runtime import tflite_interpreter

    interpreter = tflite_interpreter(content, num_threads=1)
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 3)


def report_lines(report: dict, earlier: bool = False) -> list[str]:
    """The export report's text on its warnings and debugger figures (``earlier``: an earlier export's, kept)."""
    lines = [f"warning: {w}" for w in report.get("warnings", [])]
    section = report.get("quant_debug")
    if not section:
        return lines
    lines.append(f"quantization debugger{' (earlier export)' if earlier else ''} on {section['images']} "
                 f"{section['image_source']} images "
                 f"({section['seconds']} s): worst layers by median channel SQNR")
    lines += [f"  {w['layer']} ({w['op']}): {w['sqnr_db']:.1f} dB, rmse/scale {w['rmse_over_scale']:.2f}"
              for w in section["worst"]]
    if section.get("near_zero"):
        near_zero = section["near_zero"]
        lines.append(f"  not ranked: {first_five(near_zero)} ({counted(len(near_zero), 'layer')} whose float output "
                     f"is under half an int8 step, e.g. a block's last conv with its BN gamma near zero: about 0 dB, "
                     "yet an error below rounding)")
    if "csv" in section:
        lines.append(f"  per-layer figures in {section['csv']} and {section['png']}")
    if "comparison" in section:
        lines.append(f"  float layers: {', '.join(section['float_layers'])} "
                     f"({len(section['float_tensors'])} tensors with their readers)")
        for name, figures in section["comparison"].items():
            top1 = f"top-1 {figures['top1']:.4f}, " if "top1" in figures else ""
            lines.append(f"  {name}: {top1}{figures['latency_ms']:.2f} ms/image (1 thread)")
    return lines
