"""Any trained or exported model behind one interface: raw 0-255 RGB pixels in, class probabilities out.

``load_predictor`` opens a ``.keras`` file, a SavedModel directory, a ``.tflite`` file (float or
quantized) or a run directory, so evaluate, predict and export's accuracy checks never branch on the
file format themselves.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from keras_resnet import runs
from keras_resnet.errors import KresError, first_line
from keras_resnet.meta import ModelMeta, deployed_facts, find_meta, meta_beside, meta_path, with_scores
from keras_resnet.terminal import stderr_without

_QUANTIZED = (np.uint8, np.int8, np.int16)
EDGETPU_OP = "edgetpu-custom-op"  # the one op of a model the Edge TPU compiler wrote, which only its delegate runs


class Predictor:
    """A loaded model. ``predict`` takes raw 0-255 RGB images [N,H,W,3] and returns float32 [N,K]."""

    kind: str = ""

    def __init__(self, path: Path, input_shape: tuple, meta: ModelMeta | None, names: list[str] | None = None,
                 names_file: Path | None = None):
        require_image_input(path, input_shape)
        self.path = path
        self.input_shape = input_shape  # (H, W, C); a side is None where the model takes any size
        self.meta = meta
        self.names = list(names or [])  # class names where no meta names them (a .tflite's labels.txt)
        self.names_file = names_file  # where a .tflite without meta.json took its names: labels.txt or its card

    def predict(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        images = self._check_images(images)
        if len(images) == 0:
            return np.zeros((0, self.num_outputs), np.float32)
        batch_size = max(1, int(batch_size))
        parts = [self._predict_batch(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    @property
    def num_outputs(self) -> int:
        return self.meta.num_classes if self.meta else 0

    @property
    def labels(self) -> list[str]:
        """Class names from the model's meta.json (or a .tflite's card), else its labels.txt, else ``class_0``,
        ``class_1``, ..."""
        if self.meta and self.meta.labels:
            return list(self.meta.labels)
        return self.names or [f"class_{i}" for i in range(self.num_outputs)]

    @property
    def labels_from(self) -> Path | None:
        """The file :attr:`labels` were read from: the model's meta.json, or beside a .tflite copied without it, its
        labels.txt or card; None where no file names them."""
        if self.names_file is not None:
            return self.names_file
        return meta_path(self.path) if self.meta is not None and self.meta.labels else None

    def describe(self) -> str:
        shape = "x".join("?" if s is None else str(s) for s in self.input_shape)
        return f"{self.path} ({self.kind}, input {shape})"

    def _check_images(self, images) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4:
            raise KresError(f"images must be [N,H,W,C], got shape {images.shape}")
        want = tuple(self.input_shape)
        got = tuple(images.shape[1:])
        if any(w is not None and w != g for w, g in zip(want, got)):
            raise KresError(
                f"{self.path.name} takes {_shape_text(want)} images but got {_shape_text(got)}: "
                f"use data at {want[0]}x{want[1]} px (e.g. --image-size {want[0]}) or the matching model")
        return images

    def _predict_batch(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class KerasPredictor(Predictor):
    kind = "keras"

    def __init__(self, path: Path, model, meta: ModelMeta | None):
        super().__init__(path, tuple(model.input_shape[1:]), meta)
        if len(model.output_shape) != 2:
            raise KresError(f"{path} outputs {_shape_text(model.output_shape[1:])} per image, not one score per "
                            "class: predict and evaluate run image classifiers, such as the models kres trains")
        self.model = model

    @property
    def num_outputs(self) -> int:
        return int(self.model.output_shape[-1])

    def _predict_batch(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(images.astype(np.float32)))


class SavedModelPredictor(Predictor):
    kind = "savedmodel"

    def __init__(self, path: Path, fn, input_name: str, input_spec, output_name: str, meta: ModelMeta | None):
        shape = tuple(input_spec.shape.as_list()[1:])
        super().__init__(path, shape, meta)
        self.fn = fn
        self.input_name = input_name
        self.input_dtype = input_spec.dtype.as_numpy_dtype
        self.output_name = output_name
        self._outputs = int(fn.structured_outputs[output_name].shape[-1])

    @property
    def num_outputs(self) -> int:
        return self._outputs

    def _predict_batch(self, images: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        x = _to_dtype(images, self.input_dtype)
        out = self.fn(**{self.input_name: tf.constant(x)})[self.output_name]
        return out.numpy().astype(np.float32)


class TFLitePredictor(Predictor):
    kind = "tflite"

    def __init__(self, path: Path, interpreter, meta: ModelMeta | None, *, beside: bool = False):
        """``beside``: where ``meta`` is None, take the facts of the card and labels.txt that kres export wrote
        beside the file (:func:`keras_resnet.meta.deployed_facts`)."""
        self.interpreter = interpreter
        inp = interpreter.get_input_details()
        out = interpreter.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise KresError(f"{path} has {len(inp)} inputs and {len(out)} outputs; expected one image input and "
                            "one probability output")
        self.input_detail, self.output_detail = inp[0], out[0]
        signature = self.input_detail.get("shape_signature", self.input_detail["shape"])
        if len(signature) != 4:
            raise KresError(f"{path} takes a {len(signature)}-D input; expected images [N,H,W,C]")
        shape = tuple(None if int(d) < 0 else int(d) for d in signature[1:])
        names = names_file = None
        if meta is None and beside:
            meta, names, names_file = deployed_facts(path, {"input": _card_tensor(self.input_detail),
                                                            "output": _card_tensor(self.output_detail)})
        super().__init__(path, shape, meta, names, names_file)
        self.static_batch = int(signature[0]) if int(signature[0]) > 0 else None
        self.input_dtype = np.dtype(self.input_detail["dtype"])
        self.input_scale, self.input_zero_point = self.input_detail["quantization"]
        self.output_scale, self.output_zero_point = self.output_detail["quantization"]

    @property
    def num_outputs(self) -> int:
        return int(self.output_detail["shape"][-1])

    @property
    def quantized_input(self) -> bool:
        return self.input_dtype.type in _QUANTIZED

    def quantize(self, images: np.ndarray) -> np.ndarray:
        """Raw pixels -> the input tensor's dtype. Integer inputs use its scale and zero point;
        an integer input without quantization parameters takes the raw (rounded) pixels."""
        if not self.quantized_input:
            return images.astype(self.input_dtype)
        x = images.astype(np.float32)
        if self.input_scale:
            x = x / self.input_scale + self.input_zero_point
        info = np.iinfo(self.input_dtype)
        return np.clip(np.round(x), info.min, info.max).astype(self.input_dtype)

    def dequantize(self, outputs: np.ndarray) -> np.ndarray:
        if np.dtype(outputs.dtype).type in _QUANTIZED and self.output_scale:
            return (outputs.astype(np.float32) - self.output_zero_point) * self.output_scale
        return outputs.astype(np.float32)

    def _predict_batch(self, images: np.ndarray) -> np.ndarray:
        x = self.quantize(images)
        if self.static_batch is None:
            return self._invoke(x)
        step = self.static_batch
        parts = []
        for i in range(0, len(x), step):
            chunk = x[i:i + step]
            pad = step - len(chunk)
            if pad:  # a static batch larger than what is left: pad, then drop the padded rows
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            parts.append(self._invoke(chunk)[:step - pad])
        return np.concatenate(parts)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        index = self.input_detail["index"]
        if self.static_batch is None or any(d is None for d in self.input_shape):
            current = tuple(self.interpreter.get_input_details()[0]["shape"])
            if current != x.shape:
                self.interpreter.resize_tensor_input(index, list(x.shape), strict=False)
                self.interpreter.allocate_tensors()
        self.interpreter.set_tensor(index, x)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output_detail["index"])
        return self.dequantize(out.reshape(len(x), -1))


def _card_tensor(detail: dict) -> dict:
    """An interpreter's tensor as a model card gives it (export.model_card): no scale or zero point in float."""
    scale, zero_point = detail["quantization"]
    return {"shape": [int(d) for d in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name,
            "scale": float(scale) if scale else None, "zero_point": int(zero_point) if scale else None}


# What LiteRT's C++ runtime prints on stderr, once a process, when it makes an interpreter (whatever the log level).
_INTERPRETER_NOISE = re.compile(r"^INFO: (Created TensorFlow Lite XNNPACK delegate for CPU|Initialized TensorFlow "
                                r"Lite runtime)\.$")


def tflite_interpreter(path_or_bytes, num_threads: int | None = None):
    """A LiteRT interpreter (``ai_edge_litert``), or ``tf.lite.Interpreter`` where that package is missing."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    if isinstance(path_or_bytes, (bytes, bytearray)):
        kwargs = {"model_content": bytes(path_or_bytes)}
        name = "the TFLite model"
    else:
        kwargs = {"model_path": os.fspath(path_or_bytes)}
        name = os.fspath(path_or_bytes)
    try:
        with stderr_without(_INTERPRETER_NOISE):
            interpreter = Interpreter(num_threads=num_threads, **kwargs)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        if EDGETPU_OP in str(err):  # the Edge TPU compiler's file: "not a valid TFLite model ... re-export it"
            plain = Path(name).with_name(Path(name).name.replace("_edgetpu", ""))
            raise KresError(f"{name} runs on an Edge TPU only (its {EDGETPU_OP}), which kres does not drive: pass "
                            f"{plain.name}, the model it was compiled from, to run it on the CPU, or run this one "
                            "on the device with deploy/classify.py") from None
        raise KresError(f"{name} is not a valid TFLite model ({first_line(err)}); re-export it with "
                        "'kres export --tflite'") from None
    return interpreter


def check_runnable(num_threads: int | None, predictors: list[Predictor]) -> None:
    """What predict and evaluate check of the models loaded: ``--threads`` (LiteRT's interpreter threads) is refused
    where no model is a .tflite (it was ignored); a model that is not square is refused, as they resize images to
    a square (a 48x64 model "takes 48x64x3 images but got 48x48x3: use --image-size 48", then "takes 48x48")."""
    if num_threads is not None and not any(p.kind == TFLitePredictor.kind for p in predictors):
        raise KresError(f"--threads sets the TFLite interpreter's threads, and {predictors[0].path.name} is not a "
                        ".tflite model: drop --threads")
    for predictor in predictors:
        height, width = predictor.input_shape[:2]
        if height is not None and width is not None and height != width:
            raise KresError(f"{predictor.path.name} takes {height}x{width} images, and kres predict and evaluate take "
                            f"square models only: run it in your own code on images resized to {height}x{width} "
                            "(raw 0-255 RGB pixels)")


def load_predictor(path: str | os.PathLike, num_threads: int | None = None) -> Predictor:
    """Open a ``.keras`` file, SavedModel directory, ``.tflite`` file or run directory (best.keras, else
    last.keras). Anything else, or a file that is not really a model, raises ``KresError``."""
    path = Path(path)
    if not path.exists():
        raise KresError(f"{path} does not exist: pass a .keras, .tflite, SavedModel directory or run directory")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return _load_savedmodel(path)
        model_path = runs.folder_model(path)  # a run's best.keras or last.keras, or an export's model.keras
        if model_path is not None:
            return _load_keras(model_path)
        raise KresError(runs.no_model_yet(path) or _only_tflite(path) or f"{path} holds no model "
                        f"({', '.join(runs.FOLDER_MODELS)} or saved_model.pb): pass a run or export folder, or a "
                        "model file")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return _load_keras(path)
    if suffix == ".tflite":
        threads = num_threads or os.cpu_count()  # LiteRT's own default is one thread
        return TFLitePredictor(path, tflite_interpreter(path, threads), find_meta(path), beside=True)
    if path.name == "saved_model.pb":
        return _load_savedmodel(path.parent)
    raise KresError(f"{path} is not a model kres can run: pass a .keras, .tflite, SavedModel directory or run "
                    "directory")


def _only_tflite(folder: Path) -> str | None:
    """Where ``folder`` (an export folder of --tflite models alone) holds .tflite files and no Keras model or
    SavedModel: which to pass instead, one that runs on the CPU (not an ``_edgetpu`` one) where there is one."""
    models = sorted(path.name for path in folder.glob("*.tflite") if path.is_file())
    if not models:
        return None
    example = next((name for name in models if not name.endswith("_edgetpu.tflite")), models[0])
    if len(models) == 1:
        return (f"{folder} holds no Keras model or SavedModel, only the TFLite model {example}: pass that file, "
                f"{folder / example}")
    return (f"{folder} holds no Keras model or SavedModel, only TFLite models ({', '.join(models)}): pass one of "
            f"them, e.g. {folder / example}")


def _load_keras(path: Path) -> KerasPredictor:
    model = runs.load_keras(path)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise KresError(f"{path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; expected an "
                        "image classifier")
    meta = meta_beside(path, model)
    if meta is None:
        try:
            meta = ModelMeta.from_model(model)
        except (ValueError, KeyError, KresError):  # not built by keras_resnet.resnet: no structural facts
            meta = None
    return KerasPredictor(path, model, with_scores(meta, model) if meta is not None else None)


def _load_savedmodel(path: Path) -> SavedModelPredictor:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(os.fspath(path))
    except Exception as err:  # protobuf DecodeError, OSError, ... for a directory that is not a SavedModel
        raise KresError(f"{path} is not a loadable SavedModel ({first_line(err)}); re-export it with "
                        "'kres export --saved-model'") from None
    choice = _pick_signature(loaded.signatures)
    if choice is None:
        raise KresError(f"{path} has no signature taking one image batch [N,H,W,3] and returning one output; "
                        "re-export it with 'kres export --saved-model'")
    fn, input_name, spec, output_name = choice
    predictor = SavedModelPredictor(path, fn, input_name, spec, output_name, find_meta(path))
    predictor.loaded = loaded  # keep the trackable object alive: the signature functions need its variables
    return predictor


def _pick_signature(signatures):
    """Among the signatures that take one [N,H,W,3] tensor and return one tensor, prefer a float input
    (lossless for non-integer pixels, e.g. after mixup; the pipelines themselves give whole pixels), then
    ``serving_default``. The uint8 one rounds pixels."""
    candidates = []
    for name, fn in signatures.items():
        _, kwargs = fn.structured_input_signature
        outputs = fn.structured_outputs
        if len(kwargs) != 1 or not isinstance(outputs, dict) or len(outputs) != 1:
            continue
        (input_name, spec), = kwargs.items()
        if spec.shape.rank != 4 or spec.shape[-1] not in (1, 3):
            continue
        rank = (0 if spec.dtype.is_floating else 1, 0 if name == "serving_default" else 1)
        candidates.append((rank, name, fn, input_name, spec, next(iter(outputs))))
    if not candidates:
        return None
    _, _, fn, input_name, spec, output_name = min(candidates, key=lambda c: (c[0], c[1]))
    return fn, input_name, spec, output_name


def _to_dtype(images: np.ndarray, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(images.astype(np.float32)), info.min, info.max).astype(dtype)
    return images.astype(dtype)


def require_image_input(path: Path, input_shape: tuple) -> None:
    """A model that does not take RGB images [H,W,3] would fail deep in resizing or batching."""
    if len(input_shape) != 3 or input_shape[-1] not in (None, 3):
        raise KresError(f"{path} takes inputs of shape {_shape_text(input_shape)}, not RGB images HxWx3: predict "
                        "and evaluate run image classifiers, such as the models kres trains")


def _shape_text(shape) -> str:
    return "x".join("?" if s is None else str(s) for s in shape)


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Top-1 agreement and largest absolute output difference of two [N,K] probability arrays."""
    agree = float(np.mean(np.argmax(reference, -1) == np.argmax(candidate, -1)))
    out = {"images": len(reference), "top1_agreement": agree,
           "max_abs_diff": float(np.max(np.abs(reference - candidate))) if len(reference) else 0.0}
    if labels is not None:
        out["reference_top1"] = float(np.mean(np.argmax(reference, -1) == labels))
        out["top1"] = float(np.mean(np.argmax(candidate, -1) == labels))
    return out
