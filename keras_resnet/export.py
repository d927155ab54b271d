"""``kres export``: a trained model -> SavedModel, ``.keras`` and TFLite (float32, float16, dynamic, int8, QAT),
with the Edge TPU check, the Android model card and an export report that proves the quantized model agrees.

The artifacts are written into a hidden folder inside the output folder and moved onto their names once all of
them are written (``fileio.staged_dir``): an export that fails or is interrupted leaves the output folder as it
was, never this export's files beside an earlier one's; only a failed conversion's converter.log is moved in, for
the error that names it. The report describes every model in the folder: the entries of the same model's earlier
export whose files this export leaves there are kept in it (:func:`_earlier_export`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from keras_resnet import fileio, quant_debug, runlock, runs
from keras_resnet.errors import KresError, first_five, split_fix
from keras_resnet.meta import (
    CARD_DIGEST,
    RESIZE_KEY,
    SCORES_KEY,
    WEIGHTS_DIGEST,
    ModelMeta,
    card_path,
    data_names_note,
    generic_labels,
    meta_beside,
    model_output_name,
    model_resize,
    numbered_names_note,
    numbers_are_names,
    outputs_of,
    require_outputs_for,
    weights_digest,
    with_scores,
)
from keras_resnet.quantize import (
    CONVERTER_LOG,
    QUANTIZE_MODES,
    batch1_shape,
    check_io_dtype,
    check_mode,
    convert,
    describe_tflite,
    weights_bytes,
)
from keras_resnet.rebuild import load_float32_model
from keras_resnet.runtime import compare

REPORT_NAME = "export_report"
REPORT_FILES = (f"{REPORT_NAME}.json", f"{REPORT_NAME}.txt")  # moved into the output folder last
EARLIER_KEY = "from_earlier_export"  # the report's entries (and "quant_debug") kept from an earlier export's
EARLIER_WARNINGS = "earlier_export_warnings"  # the warnings of an earlier export's int8 models kept
LOG_DIGEST = "converter_log_sha256"  # the first 16 hex digits of the converter.log the report's files include
SAVED_MODEL_DIR = "saved_model"
SERVING_UINT8 = "serving_default"
SERVING_FLOAT = "serving_float32"
QAT_NAME = "qat_int8"

Progress = Callable[[str], None]

HELDOUT_SKIPPED = ("no held-out figures are measured on it (the report and the cards have no accuracy); pass "
                   "--data-dir a folder of held-out images to measure them, or put the folder back as it was")
SYNTHETIC_CALIBRATION = ("no training data known (the model has no run's config.json beside it): the int8 model is "
                         "calibrated on synthetic images and may lose accuracy; pass --data-dir or --dataset with "
                         "images like its training images")


@dataclass
class ExportConfig:
    """Everything ``kres export`` takes."""

    source: str  # run directory or .keras file
    output: str
    saved_model: bool = False
    tflite: bool = False
    quantize: str = "float32"  # one of keras_resnet.quantize.QUANTIZE_MODES
    qat: bool = False
    qat_epochs: int = 2  # 1 lost 1.4 points of top-1 on the digits (two runs); 2 kept it within 1
    edgetpu: bool = False
    allow_cpu_ops: bool = False
    calibration_steps: int = 100
    io_dtype: str = "uint8"
    eval_images: int = 1000  # held-out images for the agreement and accuracy figures (0: skip)
    debug: bool = False  # quantization debugger report (quant_debug.csv/.png)
    float_layers: tuple[str, ...] = ()  # Keras layers kept in float in an extra mixed int8 model
    float_worst: int = 0  # or the K layers the debugger finds worst
    per_channel_dense: bool = False  # int8 dense weights per output unit: XNNPACK only (not NNAPI, Edge TPU)
    data_dir: str | None = None  # the run's data moved: image folders for calibration and held-out images
    dataset: str | None = None  # or a TFDS name (or "digits", "synthetic") instead of the run's data
    tfds_dir: str | None = None  # where the TFDS data lives now (the run's dataset, or --dataset's)


@dataclass
class Source:
    model_path: Path
    run_dir: Path | None
    data_config: dict | None  # config.json["data"] of the run, when there is one


@dataclass
class ExportResult:
    output_dir: Path
    files: list[Path] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    text: str = ""


# --- inputs --------------------------------------------------------------------------------------------------

def validate(cfg: ExportConfig) -> ExportConfig:
    """Every check that needs no model, so a typo fails before any long work."""
    check_mode(cfg.quantize)
    check_io_dtype(cfg.io_dtype)
    if cfg.calibration_steps < 1:
        raise KresError(f"--calibration-steps must be 1 or more, got {cfg.calibration_steps}")
    if (cfg.edgetpu or cfg.qat) and cfg.quantize not in ("int8", "float32"):
        flag = "--edgetpu" if cfg.edgetpu else "--qat"
        raise KresError(f"{flag} produces an int8 model: drop --quantize {cfg.quantize} or use --quantize int8")
    if cfg.tfds_dir is not None and cfg.data_dir is not None:
        raise KresError("--tfds-dir is where TFDS data lives and --data-dir names image folders: pass one of them")
    if cfg.per_channel_dense and cfg.edgetpu:
        raise KresError("--per-channel-dense files run on XNNPACK only: the Edge TPU needs per-tensor dense "
                        "weights, so drop --per-channel-dense or --edgetpu")
    if not cfg.saved_model and not cfg.tflite and not cfg.edgetpu and not cfg.qat:
        cfg = replace(cfg, saved_model=True, tflite=True)
    if cfg.edgetpu or cfg.qat or cfg.quantize != ExportConfig.quantize:  # --saved-model --quantize int8 made no int8
        cfg = replace(cfg, tflite=True)
    if cfg.edgetpu and not cfg.qat:
        cfg = replace(cfg, quantize="int8")
    _check_int8_options(cfg)
    quant_debug.check_options(cfg, tflite_names(cfg))
    return cfg


def _check_int8_options(cfg: ExportConfig) -> None:
    """Options that shape int8 models only are refused where none is made: they were ignored, silently."""
    int8 = {"int8", QAT_NAME} & set(tflite_names(cfg))
    if cfg.io_dtype != ExportConfig.io_dtype and not int8:
        raise KresError(f"--io-dtype {cfg.io_dtype} is the input and output type of int8 models, and none is made: "
                        "add --quantize int8 (or --qat), or drop --io-dtype")
    if cfg.per_channel_dense and not int8:
        raise KresError("--per-channel-dense lays out int8 weights, and no int8 model is made: add --quantize int8, "
                        "or drop --per-channel-dense")
    if cfg.calibration_steps != ExportConfig.calibration_steps and not int8:
        raise KresError("--calibration-steps is for int8 models, and none is made: add --quantize int8, or drop "
                        "--calibration-steps")
    if cfg.qat_epochs != ExportConfig.qat_epochs and not cfg.qat:
        raise KresError("--qat-epochs is the length of --qat's fine-tuning: add --qat, or drop --qat-epochs")
    if cfg.allow_cpu_ops and not cfg.edgetpu:
        raise KresError("--allow-cpu-ops relaxes the Edge TPU check, which runs with --edgetpu only: add --edgetpu, "
                        "or drop --allow-cpu-ops")


def tflite_names(cfg: ExportConfig) -> list[str]:
    """The TFLite models a validated config asks for, by name: post-training ``cfg.quantize``, then QAT's.

    ``--qat`` (with or without ``--edgetpu``) leaves out the post-training model unless ``--quantize`` asks for one.
    """
    names = [cfg.quantize] if cfg.tflite and not (cfg.qat and cfg.quantize == "float32") else []
    return [*names, QAT_NAME] if cfg.qat else names


def resolve_source(path: str | os.PathLike) -> Source:
    """A run directory (-> best.keras, else last.keras) or a ``.keras`` file; KresError for anything else."""
    path = Path(path)
    if not path.exists():
        raise KresError(f"{path} does not exist: pass a run directory or a .keras file")
    run_dir = None
    if path.is_dir():
        model_path = runs.folder_model(path)  # a run's best.keras or last.keras, or an export's model.keras
        if model_path is None and (path / "saved_model.pb").is_file():
            raise KresError(f"{path} is a SavedModel, which export does not read: export from the run directory, or "
                            f"the .keras file beside it ({path.parent / 'model.keras'})")
        if model_path is None:
            raise KresError(runs.no_model_yet(path) or f"{path} holds no model ({', '.join(runs.FOLDER_MODELS)}): "
                            "pass a run or export folder, or a .keras file")
        run_dir = path if runs.is_run_dir(path) else None
    else:
        model_path = path
        if runs.is_run_dir(path.parent):
            run_dir = path.parent
    if model_path.suffix != ".keras" or not zipfile.is_zipfile(model_path):
        raise KresError(runs.not_a_zip(model_path, "pass a run directory or the .keras file written by 'kres train'"))
    return Source(model_path, run_dir, runs.data_config(run_dir) if run_dir is not None else None)


def require_kres_resnet(model, path: str | os.PathLike) -> None:
    """Export reads the stem and the in-model normalisation by name; another model would fail with a KeyError."""
    names = {layer.name for layer in model.layers}
    missing = next((name for name in ("conv1_conv", "preprocess") if name not in names), None)
    if missing is not None:
        raise KresError(f"{path} is not a kres ResNet: no layer {missing}; export a model built by kres, or use "
                        "the TFLite converter directly")


def data_config_for(source: Source, meta: ModelMeta):
    """The run's DataConfig at the model's input size; None where the model came without a run."""
    if source.data_config is None:
        return None
    from keras_resnet.data import DataConfig

    known = {k: v for k, v in source.data_config.items() if k in DataConfig.__dataclass_fields__}
    return replace(DataConfig(**known), image_size=meta.image_size, randaugment=False, mixup_alpha=0.0,
                   cutmix_alpha=0.0)


def moved_data(data_config: dict | None, cfg: ExportConfig) -> dict | None:
    """The run's data config with ``--data-dir`` / ``--dataset`` in place of its data (which may have moved), and
    ``--tfds-dir`` where its TFDS data lives now (a run's moved TFDS folder could not be exported: "pass --tfds-dir",
    which export did not have)."""
    if cfg.data_dir is None and cfg.dataset is None and cfg.tfds_dir is None:
        return data_config
    from keras_resnet.data import DIGITS, is_builtin, recorded_tfds_dataset

    tfds_dir = {"tfds_dir": fileio.absolute(cfg.tfds_dir)} if cfg.tfds_dir is not None else {}
    if tfds_dir and is_builtin(cfg.dataset):
        raise KresError(f"--tfds-dir says where TFDS data lives, and --dataset {cfg.dataset} is built in: drop "
                        "--tfds-dir")
    if cfg.data_dir is None and cfg.dataset is None:  # --tfds-dir alone: the run's own TFDS dataset, read from there
        recorded_tfds_dataset(data_config)
        return {**data_config, **tfds_dir}
    builtin = cfg.dataset == DIGITS and cfg.data_dir is None
    # absolute, as train keeps it: the exported meta.json is read from other folders
    return {**(data_config or {}), "data_dir": fileio.absolute(cfg.data_dir),
            "dataset": None if builtin else cfg.dataset, **tfds_dir}


def exported_meta(meta: ModelMeta, data_config: dict | None) -> ModelMeta:
    """The meta.json for the export dir: the run's facts plus the data config it was exported with (the run's, or
    ``--data-dir`` / ``--dataset`` in its place), so that ``kres evaluate`` and ``kres predict`` on an exported file,
    far from its run, use the data and preprocessing that the card and the report describe."""
    if data_config is None:
        return meta
    return replace(meta, extra={**meta.extra, "data": data_config})


def calibration_data(data_cfg, meta: ModelMeta, steps: int) -> Callable[[], Iterator[np.ndarray]]:
    """Representative batches [1,H,W,3]: the run's training images through eval preprocessing, or
    synthetic images (:data:`SYNTHETIC_CALIBRATION` warns) where the model came without a run."""
    from keras_resnet.data import DataConfig, calibration_images

    cfg = data_cfg or DataConfig(dataset="synthetic", image_size=meta.image_size,
                                 synthetic_classes=max(meta.num_classes, 1))
    return lambda: calibration_images(cfg, steps)


def heldout_data(data_cfg, limit: int, meta: ModelMeta | None = None,
                 model_path: Path | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Up to ``limit`` validation images (raw pixels, spread over the split: :func:`keras_resnet.data.load_held_out`)
    and their labels as the model's outputs: by class name where ``meta`` names the classes (data moved with
    ``--data-dir`` may hold some of them, or more; a synthetic run's class_0, ... too: :func:`numbers_are_names`),
    else by position, as many classes as ``meta`` has (a KresError that names the model's file, as evaluate does: 3
    outputs scored on 4 classes' images without a word)."""
    if data_cfg is None or limit <= 0:
        return None
    from keras_resnet.data import load_held_out

    images, labels, count = [], [], 0
    # Batches of one: the run's batch size may be larger than the held-out images (export has no --batch-size).
    datasets = load_held_out(replace(data_cfg, batch_size=1), limit)
    outputs, name = None, model_path.name if model_path is not None else "the model"
    named = meta is not None and meta.labels and not generic_labels(meta.labels)
    if named or (meta is not None and model_path is not None and numbers_are_names(meta.labels, model_path, meta)):
        outputs = outputs_of(list(meta.labels), list(datasets.class_names), name,
                             "export with --data-dir or --dataset of its classes, or leave both out")
        outputs = None if outputs is None else np.array(outputs)
    elif meta is not None and meta.labels:  # numbered (class_0, ...): by position
        require_outputs_for(name, meta.num_classes, list(datasets.class_names),
                            "export with --data-dir or --dataset of the data it was trained on, or leave both out")
    for x, y in datasets.val:
        images.append(np.asarray(x))
        labels.append(np.argmax(np.asarray(y), axis=-1))
        count += len(images[-1])
        if count >= limit:
            break
    if not images:
        return None
    labels = np.concatenate(labels)[:limit]
    return np.concatenate(images)[:limit].astype(np.float32), labels if outputs is None else outputs[labels]



def heldout_agreement(source: Path, tflite: Path, content: bytes, data_cfg, meta: ModelMeta,
                      limit: int = ExportConfig.eval_images) -> dict | None:
    """The TFLite model ``content`` (at ``tflite``) beside the Keras model at ``source`` it was made from, on up
    to ``limit`` held-out images (:func:`keras_resnet.runtime.compare`, with top-1); None without held-out data."""
    heldout = heldout_data(data_cfg, limit, meta, source)
    if heldout is None:
        return None
    from keras_resnet.runtime import KerasPredictor, TFLitePredictor, tflite_interpreter

    images, labels = heldout
    reference = KerasPredictor(source, load_float32_model(source), meta).predict(images)
    return compare(reference, TFLitePredictor(tflite, tflite_interpreter(content), meta).predict(images), labels)

# --- writers -------------------------------------------------------------------------------------------------

def export_saved_model(model, directory: str | os.PathLike, output: str | None = None) -> Path:
    """SavedModel whose ``serving_default`` takes raw uint8 RGB [N,H,W,3] (cast inside the graph), with a
    ``serving_float32`` signature beside it for float pixels. Both return ``{output: [N,K]}``: by default
    "probabilities", or what :func:`keras_resnet.meta.output_name` calls the scores of a model without softmax
    (the name each .tflite's signature gives them too)."""
    import keras
    import tensorflow as tf

    output = output or model_output_name(model)

    shape = [None, *model.input_shape[1:]]
    archive = keras.export.ExportArchive()  # no track(model): the endpoints track the variables they use, once;
    # track() stored each a second time (keras #23553, Keras 3.15): a SavedModel twice the model's size

    def from_uint8(image):
        return {output: model(tf.cast(image, tf.float32), training=False)}

    def from_float(image):
        return {output: model(image, training=False)}

    archive.add_endpoint(SERVING_UINT8, from_uint8, input_signature=[tf.TensorSpec(shape, tf.uint8, name="image")])
    archive.add_endpoint(SERVING_FLOAT, from_float, input_signature=[tf.TensorSpec(shape, tf.float32, name="image")])
    # The loaded SavedModel's .variables (and trainable/non-trainable) for fine-tuning it, as track() gave them: the
    # backing tf.Variables (.value), which the endpoints captured, so each is stored once.
    for name, variables in (("variables", model.variables), ("trainable_variables", model.trainable_variables),
                            ("non_trainable_variables", model.non_trainable_variables)):
        archive.add_variable_collection(name, [variable.value for variable in variables])
    with fileio.atomic_dir(directory, need=fileio.with_headers(weights_bytes(model))) as tmp:
        _write_archive(archive, tmp)
    return Path(directory)


def _write_archive(archive, path: Path) -> None:
    archive.write_out(str(path), verbose=False)


def save_keras(model, final: Path) -> Path:
    with fileio.atomic_path(final, need=fileio.with_headers(weights_bytes(model))) as tmp:
        model.save(tmp)
    return final


def _qat_tflite(source: Source, data_cfg, cfg: ExportConfig, out_dir: Path, quiet: bool) -> bytes:
    """The QAT int8 model's bytes; its epoch lines go to stderr, or nowhere where ``quiet`` (no progress)."""
    from keras_resnet.qat import quantization_aware_finetune

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=fileio.QAT_TEMP_PREFIX) as tmp:
        path = quantization_aware_finetune(source.model_path, data_cfg, cfg.qat_epochs, tmp,
                                           io_dtype=cfg.io_dtype, calibration_steps=cfg.calibration_steps,
                                           edgetpu=cfg.edgetpu, stream=io.StringIO() if quiet else None)
        return Path(path).read_bytes()


# --- checks --------------------------------------------------------------------------------------------------

def _output_meaning(meta: ModelMeta) -> str:
    scores = meta.extra.get(SCORES_KEY)
    return f"class scores ({scores}), not probabilities" if scores else "class probabilities (softmax)"


def model_card(path: Path, meta: ModelMeta, tflite: dict, accuracy: dict | None, mode: str, data_cfg) -> dict:
    """What an Android (or Coral) app needs next to the .tflite: I/O, quantization, normalisation, labels;
    ``accuracy``, where there is one, the model's held-out agreement (:func:`keras_resnet.runtime.compare`)."""
    from keras_resnet.data import RESIZE_HOW, data_name

    inp, out = tflite["inputs"][0], tflite["outputs"][0]
    # the model's own resize, as its run was validated (a --data-dir given at export changes only what it is
    # measured on: a digits model's card said centre crop for a folder of digits)
    resize = model_resize(meta.extra, data_cfg)
    dataset = data_name(data_cfg) if data_cfg is not None else None
    return {
        "model": path.name,
        "quantization": mode,
        "architecture": f"ResNet-{meta.depth} {meta.variant} ({meta.stem} stem)",
        "input": {"shape": inp["shape"], "dtype": inp["dtype"], "scale": (inp["scale"] or [None])[0],
                  "zero_point": (inp["zero_point"] or [None])[0],
                  "format": input_format(inp),
                  "resize": resize, "resize_how": RESIZE_HOW[resize]},
        "output": {"shape": out["shape"], "dtype": out["dtype"], "scale": (out["scale"] or [None])[0],
                   "zero_point": (out["zero_point"] or [None])[0],
                   "meaning": _output_meaning(meta) + ("; dequantize as (q - zero_point) * scale"
                                                       if out["dtype"] in _INTEGER_RANGE else "")},
        "normalization": {"name": meta.normalization, "mean": meta.mean, "std": meta.std, "inside_model": True,
                          "channel_order": "RGB in; the model reverses to BGR itself" if meta.variant == "v1"
                          else "RGB"},
        "labels": list(meta.labels),
        "labels_file": "labels.txt",
        "accuracy": {"top1": accuracy["top1"], "images": accuracy["images"], "keras_top1": accuracy["reference_top1"],
                     "dataset": dataset, "measured": "on validation images of this dataset, against the Keras model"}
        if accuracy and "top1" in accuracy else None,  # compare() without labels: no top-1
        "gpu_delegate_compatible": tflite["gpu_delegate_compatible"],
    }


_INTEGER_RANGE = {"uint8": (0, 255), "int8": (-128, 127)}


def input_format(io: dict) -> str:
    """How an app feeds the model's input, from its dtype, scale and zero point (one of :func:`describe_tflite`'s
    ``inputs``). An int8 model's input range comes from its calibration images: (1, 0) for uint8 where they span
    0-255, but a set of dark images gives another scale, and --io-dtype int8 a zero point of -128."""
    after = "resized to the input size; no normalisation needed"
    if io["dtype"] not in _INTEGER_RANGE:
        return f"RGB pixels 0-255 as {io['dtype']}, {after}"
    scale, zero_point = _quantization(io)
    low, high = _INTEGER_RANGE[io["dtype"]]
    if abs(scale - 1.0) < 1e-6 and zero_point == low:
        shift = "as they are" if low == 0 else f"minus {-low} (q = pixel - {-low})"
        return f"RGB pixels 0-255 {shift}, {io['dtype']}, {after}"
    return (f"RGB pixels 0-255 quantized as q = round(pixel / scale) + zero_point, clipped to {low}..{high}: pixels "
            f"above {input_max_pixel(io):.0f} clip (the calibration images were no brighter); {after}")


def input_max_pixel(io: dict) -> float:
    """The brightest pixel an integer input tells apart (255 or more where its calibration images spanned 0-255)."""
    scale, zero_point = _quantization(io)
    return (_INTEGER_RANGE[io["dtype"]][1] - zero_point) * scale


def _quantization(io: dict) -> tuple[float, int]:
    """(scale, zero point) of a tensor :func:`describe_tflite` lists; (1, 0) where it has none."""
    return (io["scale"] or [1.0])[0], (io["zero_point"] or [0])[0]


def input_range_warning(name: str, io: dict, earlier: list[str]) -> str | None:
    """The warning for an integer input that does not take raw pixels 0-255, said once: not where a warning about
    the calibration images (its likely cause) came before it."""
    if io["dtype"] not in _INTEGER_RANGE or input_max_pixel(io) >= 254.5 or earlier:
        return None
    return (f"{name} takes pixels up to {input_max_pixel(io):.0f} only (its calibration images were no brighter): "
            "brighter pixels clip, and its input is not raw pixels (the card says how to feed it); calibrate on "
            "images that span 0-255")


def deployment_facts(content: bytes, entry: dict) -> dict:
    """The card's word on where the file runs: ops with versions, runtime version, weight quantization per
    weighted op kind, and each delegate's verdict from a check that ran."""
    from keras_resnet import delegates
    from keras_resnet.quantize import inspect_tflite

    info = inspect_tflite(content)
    gpu = (entry["gpu_delegate_compatible"], entry["gpu_analyzer"])
    return {"tflite": {"ops": info.op_versions, "min_runtime_version": info.min_runtime_version,
                       "weights": info.weight_quantization()},
            "delegates": delegates.support(content, info, gpu, entry.get("edgetpu"))}


# --- the command ---------------------------------------------------------------------------------------------

@dataclass
class _Earlier:
    """What an export keeps of the report of the same model's earlier export in its folder (:func:`_earlier_export`):
    the entries of the files it leaves there, unchanged, so the new report describes every model in the folder."""

    artifacts: dict = field(default_factory=dict)  # the entries of its models that stay, by name
    files: list[str] = field(default_factory=list)  # its files that stay with them: cards, compiled, debugger, log
    quant_debug: dict | None = None  # its debugger figures, where their files stay and this export writes none
    warnings: list[str] = field(default_factory=list)  # its warnings, which are about its int8 models, where one stays
    log_digest: str | None = None  # its converter.log's, where that stays: the conversion text of an int8 model kept
    note: str | None = None  # why its report is not kept, or the files it leaves that no model kept is made of


@dataclass
class _Job:
    """What every step of one export shares."""

    cfg: ExportConfig
    source: Source
    out_dir: Path
    model: object
    meta: ModelMeta
    data_cfg: object  # keras_resnet.data.DataConfig, or None for a model without a run
    say: Progress
    calibration: Callable[[], Iterator[np.ndarray]] | None = None
    shown_dir: Path | None = None  # where out_dir's files go, as paths written into them name it
    another: str | None = None  # how the model exported in out_dir before differs from this one (None: the same)
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    reference: np.ndarray | None = None  # the Keras model's outputs on ``images``
    quiet: bool = False  # export() was given no progress: nothing of its own on stderr
    earlier: _Earlier = field(default_factory=_Earlier)  # what it keeps of the earlier export in out_dir


@runlock.releasing
def export(cfg: ExportConfig, progress: Progress | None = None, *,
           calibration: Callable[[], Iterator[np.ndarray]] | None = None,
           heldout: tuple[np.ndarray, np.ndarray] | None = None) -> ExportResult:
    """Run ``kres export``. ``calibration`` and ``heldout`` override the data read from the run (tests)."""
    with split_fix("add images, or use train/ and val/ folders"):  # export has no --val-split
        return _export(cfg, progress, calibration, heldout)


def _export(cfg: ExportConfig, progress: Progress | None, calibration, heldout) -> ExportResult:
    """:func:`export`'s steps: refusals, then the models into a staging folder moved in whole."""
    job = _open(validate(cfg), progress or (lambda _msg: None), calibration)
    job.quiet = progress is None
    _refuse_leftovers(job, lambda name: may_write(job.cfg, name))  # before the conversions, which take minutes
    job.earlier = _earlier_export(job)
    # converter.log is this export's converter's text; where it said nothing (float16, dynamic and float32 say
    # nothing), the earlier export's stays while an int8 model it was the conversion text of stays beside
    with fileio.staged_dir(job.out_dir, last=REPORT_FILES, kept_on_error=(CONVERTER_LOG,),
                           own=() if job.earlier.log_digest else (CONVERTER_LOG,)) as staging:
        result = _export_into(replace(job, out_dir=staging, shown_dir=job.out_dir), heldout)
        _refuse_leftovers(job, {path.name for path in staging.iterdir()}.__contains__)  # what it did write
    return replace(result, output_dir=job.out_dir, files=[job.out_dir / p.relative_to(staging) for p in result.files])


def _export_into(job: _Job, heldout) -> ExportResult:
    """Every artifact into ``job.out_dir``, the report last."""
    report = {"source": os.path.abspath(job.source.model_path), "model": _model_name(job.meta),
              "input_shape": job.meta.input_shape, "classes": job.meta.num_classes, "artifacts": {}}
    _keras_reference(job, heldout, report)
    result = ExportResult(job.out_dir)
    result.files += _write_meta(job)
    if job.cfg.saved_model:
        result.files += _write_saved_model(job, report)
    names = tflite_names(job.cfg)
    if "int8" in names:  # checks before the long conversion
        _check_int8_inputs(job, report)
    for name in names:
        result.files += _write_tflite(job, name, report)
    heldout = (job.images, job.labels) if job.images is not None else None
    debugged = quant_debug.for_export(job.cfg, job.model, job.meta, _calibration(job), heldout, job.out_dir,
                                      report, job.say)
    result.files += debugged + _debugged_cards(job, debugged, report)
    return _write_report(result, report, job)


def _model_name(meta: ModelMeta) -> str:
    return f"ResNet-{meta.depth} {meta.variant}"


def _debugged_cards(job: _Job, files: list[Path], report: dict) -> list[Path]:
    """The model card of each .tflite the debugger wrote (the mixed model), as every exported .tflite has one."""
    return [write_card(path, path.read_bytes(), report["artifacts"][path.name], job.meta, job.data_cfg,
                       path.stem.removeprefix("model_"))
            for path in files if path.suffix == ".tflite"]


def _counted(calibration: Callable[[], Iterator[np.ndarray]], counts: list[int]):
    """``calibration``, appending to ``counts`` the images each pass over it gave (the converter makes one)."""
    def batches() -> Iterator[np.ndarray]:
        counts.append(0)
        for batch in calibration():
            counts[-1] += len(batch)
            yield batch
    return batches


def _calibration(job: _Job):
    return job.calibration or calibration_data(job.data_cfg, job.meta, job.cfg.calibration_steps)


def _check_int8_inputs(job: _Job, report: dict) -> None:
    """The --float-layers names exist, and the calibration images look like the training images."""
    quant_debug.check_float_layers(job.model, job.cfg.float_layers)
    calibration = _calibration(job) if job.calibration or job.data_cfg else None
    report["warnings"] = quant_debug.calibration_warnings(job.meta, job.data_cfg, calibration, job.say)
    if calibration is None:
        report["warnings"].append(SYNTHETIC_CALIBRATION)
        job.say(f"warning: {SYNTHETIC_CALIBRATION}")


def _open(cfg: ExportConfig, say: Progress, calibration) -> _Job:
    """Find and load the model, its meta.json and its run's data config; creates the output directory only
    after the cheap checks, so a rejected export creates nothing."""
    source = resolve_source(cfg.source)
    if cfg.qat and source.data_config is None:
        raise KresError("--qat fine-tunes on the training data: export from a run directory with config.json")
    if runs.is_run_dir(cfg.output) or runs.find_model(cfg.output):  # its meta.json and labels.txt would be lost
        raise KresError(f"{cfg.output} is a training run directory; export into another --output (e.g. "
                        f"{Path(cfg.output) / 'export'})")
    if Path(cfg.output).suffix in (".tflite", ".keras", ".pb"):
        raise KresError(f"--output is the folder for the artifacts, not a file name: try "
                        f"{Path(cfg.output).with_suffix('')}")
    runlock.acquire(cfg.output)  # after the cheap checks; a failed export leaves no empty folder behind
    out_dir = fileio.ensure_writable_dir(cfg.output)
    holder = runlock.holder(source.run_dir) if source.run_dir is not None else None
    if holder:
        say(f"note: {source.run_dir} is in use by {holder} (still training?): exporting its "
            f"{source.model_path.name} as it is now")
    say(f"loading {source.model_path}")
    model = load_float32_model(source.model_path)
    require_kres_resnet(model, source.model_path)
    batch1_shape(model)  # (a model of any size failed with a traceback when its images were read)
    found = meta_beside(source.model_path, model)
    meta = with_scores(found or ModelMeta.from_model(model), model)
    if scores := meta.extra.get(SCORES_KEY):
        say(f"note: {source.model_path.name} outputs {scores}, not class probabilities: so do its exported files, "
            "and their cards say so")
    meta = replace(meta, extra={**meta.extra, WEIGHTS_DIGEST: weights_digest(model)})
    if source.data_config is None and isinstance(meta.extra.get("data"), dict):  # an export's model.keras
        source = replace(source, data_config=dict(meta.extra["data"]))  # its meta.json has the data, as evaluate reads
    if source.data_config is not None:  # (an export's records it: kept)
        meta = replace(meta, extra={**meta.extra, RESIZE_KEY: model_resize(meta.extra, source.data_config)})
    source = replace(source, data_config=moved_data(source.data_config, cfg))  # meta.json records it too
    data_cfg = data_config_for(source, meta)
    meta = _labels_from_data(meta, data_cfg, source.model_path, say, has_meta=found is not None,
                             scored=cfg.eval_images > 0)
    another = _another_model(out_dir, source.model_path, meta)
    return _Job(cfg, source, out_dir, model, meta, data_cfg, say, calibration, another=another)


def _labels_from_data(meta: ModelMeta, data_cfg, model_path: Path, say: Progress, has_meta: bool,
                      scored: bool) -> ModelMeta:
    """A model without a meta.json (``meta`` made from the model) names its classes class_0, class_1, ...; exported
    with data (--dataset digits, --data-dir) of as many classes, it takes their names, which labels.txt, the cards
    and an app then show (they showed class_5 for a 5). One whose meta.json numbers them keeps those, and where
    its held-out images are ``scored`` a note says they were matched to the data's by position, unless they are the
    names of its synthetic data (:func:`numbers_are_names`: data of other classes is refused)."""
    if data_cfg is None or not generic_labels(meta.labels) or (has_meta and not scored) or \
            (has_meta and numbers_are_names(meta.labels, model_path, meta)):
        return meta
    from keras_resnet.data import load_held_out

    try:
        names = [str(name) for name in load_held_out(replace(data_cfg, batch_size=1), 1).class_names]
    except KresError:  # data that cannot be read here: the steps that need it say so, the rest need no names
        return meta
    if len(names) != len(meta.labels):
        return meta
    if has_meta:
        note = numbered_names_note(model_path.name, list(meta.labels), names)
        if note:
            say(f"note: {note}")
        return meta
    say(f"note: {data_names_note(model_path.name, names)}")
    return replace(meta, labels=names)


def _another_model(out_dir: Path, model_path: Path, meta: ModelMeta) -> str | None:
    """How the model exported in ``out_dir`` differs from this one ("classes: 3; best.keras's: 2"), or None: the
    same model, or no export there. Other weights are told by meta.json's weights digest where both have one
    (exports before 2026-12-05 have none); a copy of the run, or its export's model.keras, is the same model."""
    try:
        earlier = ModelMeta.load(out_dir / "meta.json") if (out_dir / "meta.json").is_file() else None
    except KresError:
        earlier = None  # not kres's, or damaged: replaced
    if earlier is None:
        return None
    facts = [("classes", len(earlier.labels), len(meta.labels)), ("class names", first_five(earlier.labels),
                                                                  first_five(meta.labels)),
             ("input", "x".join(map(str, earlier.input_shape)), "x".join(map(str, meta.input_shape))),
             ("model", f"ResNet-{earlier.depth} {earlier.variant} {earlier.stem} stem",
              f"ResNet-{meta.depth} {meta.variant} {meta.stem} stem")]
    if list(earlier.labels) != list(meta.labels) and first_five(earlier.labels) == first_five(meta.labels):
        facts[1] = ("class names", "other", "these")  # beyond the first five
    was, now = earlier.extra.get(WEIGHTS_DIGEST), meta.extra.get(WEIGHTS_DIGEST)
    if was and now:
        facts.append(("weights", f"digest {was}", f"digest {now}"))
    return next((f"{what}: {was}; {model_path.name}'s: {now}" for what, was, now in facts if was != now), None)


def _earlier_export(job: _Job) -> _Earlier:
    """What this export keeps of the report of the same model's earlier export in ``job.out_dir``: the entries of
    the models it leaves there (another format: float16 beside int8) and their files (:func:`_files_of`), the
    debugger figures and the warnings of an int8 model that stays, its converter.log where that is still the one
    it wrote. Nothing of another model's export, which :func:`_refuse_leftovers` refuses or this export replaces
    whole. A report that cannot be read is said, and nothing of it is kept; so are the files it lists that no model
    kept is made of (the Edge TPU compiler's of an int8 model replaced)."""
    path = job.out_dir / f"{REPORT_NAME}.json"
    if job.another is not None or not path.is_file() or not (job.out_dir / "meta.json").is_file():
        return _Earlier()
    earlier, problem = _read_report(path, job.meta)
    if problem is not None:
        return _Earlier(note=_said(job, f"the earlier {path.name} in {job.out_dir} is not kept ({problem}): the "
                                        "models it described are not in the new one; export them again, or remove "
                                        "them"))

    def stays(name: str) -> bool:
        return (job.out_dir / name).exists() and not may_write(job.cfg, name)

    artifacts = {name: entry for name, entry in earlier["artifacts"].items() if stays(name)}
    section = earlier.get("quant_debug") if "model_int8.tflite" in artifacts else None  # it measured that model
    figures = [name for name in (quant_debug.CSV_NAME, quant_debug.PNG_NAME, f"model_{quant_debug.MIXED_NAME}.tflite")
               if section and (job.out_dir / name).exists()]
    section = section if figures else None  # (and the report points at its files)
    int8 = any(entry.get("inputs", [{}])[0].get("dtype") in _INTEGER_RANGE for entry in artifacts.values())
    log = job.out_dir / CONVERTER_LOG
    digest = earlier.get(LOG_DIGEST) if int8 and log.is_file() and CONVERTER_LOG in earlier["files"] else None
    digest = digest if digest is not None and digest == _digest(log) else None
    # (converter.log is a name every export may write: it stays unless this export's converter says something)
    files = [name for name in earlier["files"] if stays(name) or (name == CONVERTER_LOG and log.is_file())]
    kept = [name for name in files if _files_of(name, artifacts, section is not None, digest is not None)]
    # (meta.json and labels.txt are written again; a converter.log not kept is replaced or removed)
    left = [name for name in files if name not in kept and name not in ("meta.json", "labels.txt", CONVERTER_LOG)]
    note = None
    if left:
        note = _said(job, f"{first_five(left)} in {job.out_dir} {'is' if len(left) == 1 else 'are'} left from the "
                          "earlier export, made from a model this export replaces, and not in the new report: "
                          "remove them, or export again with the options that write them")
    return _Earlier(artifacts, kept, section, [*earlier.get("warnings", []), *earlier.get(EARLIER_WARNINGS, [])]
                    if int8 else [], digest, note)


def _files_of(name: str, artifacts: dict, debugged: bool, log: bool) -> bool:
    """Whether the earlier export's file ``name`` is one of the models in ``artifacts`` (those kept) or made of
    one: its card, its Edge TPU compiler's files, the debugger's figures of the int8 model (``debugged``), the
    converter.log of its conversion (``log``); and model.keras, the Keras model of the weights this export has too."""
    stems = [model.removesuffix(".tflite") for model in artifacts if model.endswith(".tflite")]
    return (name in artifacts or name == "model.keras"  # this very model (the same weights), whatever else stays
            or any(name == card_path(f"{stem}.tflite").name or name.startswith(f"{stem}_edgetpu.") for stem in stems)
            or (debugged and name in (quant_debug.CSV_NAME, quant_debug.PNG_NAME))
            or (log and name == CONVERTER_LOG))


def _said(job: _Job, note: str) -> str:
    job.say(f"note: {note}")
    return note


def _digest(path: Path) -> str:
    return fileio.file_sha256(path)[:16]


def _read_report(path: Path, meta: ModelMeta) -> tuple[dict, str | None]:
    """The export report at ``path``, and why it cannot be kept (None: it can): not JSON, not an export report
    that :func:`report_text` shows, or one of another model."""
    try:
        earlier = json.loads(path.read_text())
    except OSError as err:
        return {}, f"cannot read it: {err.strerror or err}"
    except ValueError:  # not UTF-8, not JSON
        return {}, "it is not JSON"
    try:
        report_text(earlier)
        if not all(isinstance(names, list) and all(isinstance(name, str) for name in names)
                   for names in (earlier["files"], earlier.get("warnings", []), earlier.get(EARLIER_WARNINGS, []))):
            raise TypeError("files and warnings are lists of names and lines")
    except (KeyError, TypeError, AttributeError, IndexError, ValueError):
        return {}, "it is not an export report kres reads"
    was = (earlier["model"], earlier["input_shape"], earlier["classes"])
    if was != (_model_name(meta), list(meta.input_shape), meta.num_classes):
        return {}, f"it describes another model: {was[0]}, input {'x'.join(map(str, was[1]))}, {was[2]} classes"
    return earlier, None


def _refuse_leftovers(job: _Job, replaced: Callable[[str], bool]) -> None:
    """Where ``out_dir`` holds the export of another model, its models, cards and debugger files that this export
    does not replace would be left beside this model's meta.json and labels.txt (predict printed this model's class
    names for them). Checked twice: before any conversion, against the names this export may write
    (:func:`may_write`), and before the staged files move in, against the names it wrote (the Edge TPU compiler may
    be missing). Then nothing moves in; an export that replaces them all (the same options again, for a run trained
    further) goes on."""
    if job.another is None:
        return
    left = sorted(path.name for path in job.out_dir.iterdir() if not replaced(path.name) and _artifact(path.name))
    if left:
        # one export writes one --quantize mode: files of two or more cannot all be replaced by adding options
        modes = [mode for mode in QUANTIZE_MODES if any(name.startswith(f"model_{mode}.") or
                                                        name.startswith(f"model_{mode}_edgetpu.") for name in left)]
        fixes = ("another --output, or remove them first (one export writes one --quantize mode, and these are of "
                 f"{len(modes)}: {', '.join(modes)})" if len(modes) > 1 else
                 "another --output, add the options that write them, or remove them first")
        raise KresError(f"{job.out_dir} holds the export of another model ({job.another}) with files this export "
                        f"does not replace ({first_five(left)}): export into {fixes}")


def may_write(cfg: ExportConfig, name: str) -> bool:
    """Whether an export with the validated ``cfg`` may write ``name`` into its folder: a superset of what it writes
    (the Edge TPU compiler's files where --edgetpu asks for them, found or not), so that the check before the
    conversions refuses nothing that the check after them lets through."""
    models = [*tflite_names(cfg), *([quant_debug.MIXED_NAME] if cfg.float_layers or cfg.float_worst else [])]
    names = {"meta.json", "labels.txt", CONVERTER_LOG, *REPORT_FILES}
    names |= {f"model_{model}{ext}" for model in models for ext in (".tflite", ".card.json")}
    if cfg.saved_model:
        names |= {SAVED_MODEL_DIR, "model.keras"}
    if cfg.debug or cfg.float_worst:
        names |= {quant_debug.CSV_NAME, quant_debug.PNG_NAME}
    compiled = tuple(f"model_{model}_edgetpu." for model in models if _edgetpu_checked(cfg, model))
    return name in names or name.startswith(compiled)


def _edgetpu_checked(cfg: ExportConfig, model: str) -> bool:
    """Whether the TFLite model ``model`` (a :func:`tflite_names` name) is checked against the Edge TPU, and compiled
    where the compiler is installed: the int8 ones, under --edgetpu."""
    return cfg.edgetpu and model in ("int8", QAT_NAME)


def _artifact(name: str) -> bool:
    """A file or folder an export writes that belongs to its model (not meta.json, labels.txt or the report, which
    every export writes, nor converter.log, which the staging removes)."""
    return (name == SAVED_MODEL_DIR or name.endswith((".tflite", ".keras", ".card.json", "_edgetpu.log"))
            or name in (quant_debug.CSV_NAME, quant_debug.PNG_NAME))


def _keras_reference(job: _Job, heldout, report: dict) -> None:
    """The held-out images and the Keras model's outputs on them, which every TFLite model is checked against."""
    if heldout is None:
        if job.cfg.eval_images > 0 and (problem := _changed_split(job)):
            report["heldout_skipped"] = problem
            job.say(f"warning: {problem}: {HELDOUT_SKIPPED}")
            return
        if job.cfg.eval_images > 0:
            job.say("reading held-out (validation) data" if job.data_cfg else "no run config: skipping accuracy "
                    "figures")
        heldout = heldout_data(job.data_cfg, job.cfg.eval_images, job.meta, job.source.model_path)
    if heldout is None:
        return
    from keras_resnet.runtime import KerasPredictor

    job.images, job.labels = heldout
    job.reference = KerasPredictor(job.source.model_path, job.model, job.meta).predict(job.images)
    report["keras_top1"] = float(np.mean(np.argmax(job.reference, -1) == job.labels))
    report["heldout_images"] = len(job.images)


def _changed_split(job: _Job) -> str | None:
    """:func:`keras_resnet.runs.changed_split` of the folder the held-out images would be drawn from: the run's own
    folder, changed since it trained on it (export measured its "held-out" accuracy on training images, and wrote
    it into the cards, where evaluate refuses the folder). The int8 calibration reads training images: not this."""
    from keras_resnet.data import is_split, load_held_out

    folder = job.data_cfg.data_dir if job.data_cfg is not None else None
    if folder is None or not is_split(folder) or runs.training_counts(job.source.model_path) is None:
        return None
    datasets = load_held_out(replace(job.data_cfg, batch_size=1), sys.maxsize)  # every validation image, counted
    return runs.changed_split(job.source.model_path, folder, (datasets.num_train, datasets.num_val),
                              job.source.model_path.name)


def _write_meta(job: _Job) -> list[Path]:
    exported_meta(job.meta, job.source.data_config).save(job.out_dir)
    runs.write_labels(job.out_dir, job.meta.labels)
    return [job.out_dir / "meta.json", job.out_dir / "labels.txt"]


def _write_saved_model(job: _Job, report: dict) -> list[Path]:
    job.say("writing SavedModel and .keras")
    output = model_output_name(job.model)  # as convert names each .tflite's
    files = [export_saved_model(job.model, job.out_dir / SAVED_MODEL_DIR, output),
             save_keras(job.model, job.out_dir / "model.keras")]
    report["artifacts"][SAVED_MODEL_DIR] = {"signatures": {SERVING_UINT8: "uint8 [N,H,W,3]",
                                                           SERVING_FLOAT: "float32 [N,H,W,3]"},
                                            "output": output}
    return files


def _write_tflite(job: _Job, name: str, report: dict) -> list[Path]:
    """One TFLite model, its check against the Keras model, its card and (with --edgetpu) the Edge TPU check."""
    from keras_resnet.runtime import TFLitePredictor, tflite_interpreter

    cfg, out_dir = job.cfg, job.out_dir
    compiled: list[Path] = []
    counted: list[int] = []  # the calibration images of each pass over them
    if name == QAT_NAME:
        from keras_resnet.qat import finetune_line

        job.say(f"{finetune_line(cfg.qat_epochs)}, then converting to TFLite ({name})")
        content = _qat_tflite(job.source, job.data_cfg, cfg, out_dir, job.quiet)
    else:
        job.say(f"converting to TFLite ({name})")
        rep = _counted(_calibration(job), counted) if name == "int8" else None
        # An Edge TPU model keeps a plain 3-channel input op (no large reshapes): about 0.3 ms slower on a CPU.
        content = convert(job.model, name, rep, cfg.io_dtype, edgetpu=cfg.edgetpu and name == "int8",
                          per_channel_dense=cfg.per_channel_dense, log=out_dir / CONVERTER_LOG, work_dir=out_dir)
    path = fileio.write_bytes(out_dir / f"model_{name}.tflite", content)
    entry = describe_tflite(path, content)
    if counted:
        entry["calibration_images"] = counted[-1]
        if counted[-1] < cfg.calibration_steps:  # it was capped without a word
            job.say(f"calibrated on {counted[-1]} images, all that the calibration data holds "
                    f"(--calibration-steps {cfg.calibration_steps})")
    warning = input_range_warning(path.name, entry["inputs"][0], report.get("warnings", []))
    if warning:
        report.setdefault("warnings", []).append(warning)
        job.say(f"warning: {warning}")
    if job.images is not None:
        job.say(f"checking {path.name} against the Keras model on {len(job.images)} held-out images")
        predictor = TFLitePredictor(path, tflite_interpreter(content), job.meta)
        entry["agreement"] = compare(job.reference, predictor.predict(job.images), job.labels)
    if _edgetpu_checked(cfg, name):
        from keras_resnet import edgetpu

        job.say(f"checking {path.name} against the Edge TPU requirements")
        checked = edgetpu.check(path, out_dir, allow_cpu_ops=cfg.allow_cpu_ops,  # refused: nothing is moved in
                                shown_dir=job.shown_dir)
        entry["edgetpu"] = checked.to_dict()
        compiled = checked.files  # the compiler's <name>_edgetpu.tflite and its log, where it ran
    card_file = write_card(path, content, entry, job.meta, job.data_cfg, name)
    report["artifacts"][path.name] = entry
    return [path, card_file, *compiled]


def write_card(path: Path, content: bytes, entry: dict, meta: ModelMeta, data_cfg, name: str) -> Path:
    """``model_NAME.card.json`` beside the .tflite at ``path``; ``entry`` (its :func:`describe_tflite`, with the
    held-out agreement where there is one) gets the delegates that accept it."""
    card = {**model_card(path, meta, entry, entry.get("agreement"), name, data_cfg), **deployment_facts(content, entry),
            CARD_DIGEST: hashlib.sha256(content).hexdigest()}  # which file it is the card of (meta.deployed_facts)
    entry["delegates"] = {k: v["accepts"] for k, v in card["delegates"].items()}
    written = card_path(path)
    fileio.write_json(written, card)
    return written


def _write_report(result: ExportResult, report: dict, job: _Job) -> ExportResult:
    out_dir = result.output_dir
    log = out_dir / CONVERTER_LOG
    if log.is_file() and log.stat().st_size == 0:  # a converter that said nothing (float32)
        log.unlink()
    if log.is_file():
        result.files.append(log)
        report[LOG_DIGEST] = _digest(log)  # what tells a later export that the log is still this one's
    written = {str(p.relative_to(out_dir)) for p in result.files}
    _keep_earlier(report, job.earlier, job.shown_dir or out_dir, written)
    sizes = {n: e["size_bytes"] for n, e in report["artifacts"].items() if n.endswith(".tflite")}
    if "model_float32.tflite" in sizes:  # (an earlier export's entries are kept as they were)
        for n in set(sizes) - set(report.get(EARLIER_KEY, [])):
            report["artifacts"][n]["size_vs_float32"] = sizes[n] / sizes["model_float32.tflite"]
    result.report = report
    result.text = report_text(report)
    fileio.write_json(out_dir / f"{REPORT_NAME}.json", report)
    fileio.write_text(out_dir / f"{REPORT_NAME}.txt", result.text)
    return result


def _keep_earlier(report: dict, earlier: _Earlier, folder: Path, written: set[str]) -> None:
    """Into ``report``, what this export keeps of the earlier export in ``folder`` (:func:`_earlier_export`), and as
    its "files", those this export wrote and the earlier export's that stay with its models kept."""
    kept = [name for name in earlier.artifacts if name not in report["artifacts"]]
    report["artifacts"].update({name: earlier.artifacts[name] for name in kept})
    if earlier.quant_debug is not None and "quant_debug" not in report:
        report["quant_debug"] = earlier.quant_debug
        kept.append("quant_debug")
    if warnings := [w for w in dict.fromkeys(earlier.warnings) if w not in report.get("warnings", [])]:
        report[EARLIER_WARNINGS] = warnings
    if earlier.note:
        report["notes"] = [earlier.note]
    if kept:
        report[EARLIER_KEY] = kept
    stays = [name for name in earlier.files if name not in written and (folder / name).exists()]
    if CONVERTER_LOG in stays and earlier.log_digest:
        report[LOG_DIGEST] = earlier.log_digest
    report["files"] = sorted({*written, *stays})


def report_text(report: dict) -> str:
    lines = [f"{report['model']} from {report['source']}, input {'x'.join(map(str, report['input_shape']))}, "
             f"{report['classes']} classes"]
    if "heldout_skipped" in report:
        lines.append(f"  no held-out figures: {report['heldout_skipped']}")
    if "keras_top1" in report:
        lines.append(f"  keras float32 top-1 {report['keras_top1']:.4f} on {report['heldout_images']} held-out images")
    earlier = report.get(EARLIER_KEY, [])
    for name, entry in report["artifacts"].items():
        lines += _entry_lines(name, entry, " (earlier export)" if name in earlier else "")
    lines += [f"warning (earlier export): {w}" for w in report.get(EARLIER_WARNINGS, [])]
    lines += [f"note: {n}" for n in report.get("notes", [])]
    lines += quant_debug.report_lines(report, earlier="quant_debug" in earlier)
    return "\n".join(lines) + "\n"


def _entry_lines(name: str, entry: dict, mark: str) -> list[str]:
    """The report's lines on one artifact; ``mark`` after its name (an earlier export's, its figures that export's)."""
    if name == SAVED_MODEL_DIR:
        return [f"{name}/{mark}: signatures {', '.join(entry['signatures'])} -> {entry['output']}"]
    size = entry["size_bytes"] / 2**20
    ratio = f" ({entry['size_vs_float32']:.1%} of float32)" if "size_vs_float32" in entry else ""
    io = entry["inputs"][0]
    lines = [f"{name}{mark}: {size:.2f} MiB{ratio}, input {io['dtype']} {io['shape']}, "
             f"GPU delegate {'compatible' if entry['gpu_delegate_compatible'] else 'NOT compatible'}"]
    versions = entry.get("op_versions", {})
    lines.append("  ops: " + ", ".join(f"{op} v{versions.get(op, '?')} x{n}" for op, n in entry["ops"].items()))
    if entry.get("weight_quantization"):
        lines.append("  weights: " + ", ".join(f"{op} {how}" for op, how in entry["weight_quantization"].items()))
    if "calibration_images" in entry:
        lines.append(f"  calibrated on {entry['calibration_images']} images")
    if "delegates" in entry:
        verdicts = ", ".join(f"{k} {'yes' if ok else 'NO'}" for k, ok in entry["delegates"].items())
        lines.append(f"  delegates: {verdicts} (each check in the model card)")
    if "agreement" in entry:
        a = entry["agreement"]
        lines.append(f"  vs keras: top-1 agreement {a['top1_agreement']:.4f}, max |diff| {a['max_abs_diff']:.3g}, "
                     f"top-1 {a['top1']:.4f} (keras {a['reference_top1']:.4f}), {a['images']} images")
    if "edgetpu" in entry:
        e = entry["edgetpu"]
        verdict = "passes" if e["passed"] else "FAILS: " + "; ".join(e["problems"])
        lines.append(f"  Edge TPU check {verdict}")
        lines += [f"  note: {n}" for n in e["notes"]]
    return lines


__all__ = ["QUANTIZE_MODES", "ExportConfig", "ExportResult", "export", "export_saved_model", "resolve_source"]
