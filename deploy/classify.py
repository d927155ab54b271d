#!/usr/bin/env python3
"""Classify images with an exported keras-resnet TFLite model on a Coral device (or any computer).

Uses the Edge TPU (libedgetpu delegate) when one is attached and the model was compiled for it, and falls back
to the CPU LiteRT interpreter otherwise. Needs only numpy, Pillow and one of ai-edge-litert / tflite-runtime /
tensorflow; it does not import keras_resnet, so it runs on a Coral Dev Board as is.

    python3 classify.py model_int8_edgetpu.tflite image.jpg [more.jpg | photos/ ...] [--top-k 3]

A folder stands for its images: its JPEG, PNG, BMP, GIF, TIFF and WebP files, sorted by name (not its sub-folders).

labels.txt and the model card (<model>.card.json) are read from the model's folder.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import importlib
import json
import os
import platform
import re
import select
import sys
import tempfile
import time
import warnings
from pathlib import Path

try:
    import numpy as np
    from PIL import Image, ImageOps
except ImportError as missing:  # a fresh device: one line, not a traceback (exit status 2, as any other error)
    print(f"Error: classify.py needs numpy and Pillow, and {missing.name or missing} cannot be imported: "
          "pip install pillow numpy", file=sys.stderr)
    sys.exit(2)

EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
# The files of a folder given that are taken as its images, as kres predict takes them (keras_resnet.data's list)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".jpe", ".jif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IMAGE_FORMATS = "JPEG, PNG, BMP, GIF, TIFF or WebP"
CROP_FRACTION = 0.875  # the evaluation preprocessing of training: resize the shorter side, centre crop 0.875
# What the runtimes print on descriptor 2 whatever their log level: LiteRT's INFO lines, and TensorFlow's start-up
# notes, logged before absl's logging is set up (cuInit's error 303: no NVIDIA driver, i.e. a CPU machine)
RUNTIME_NOISE = re.compile(r"INFO: |WARNING: All log messages before absl::InitializeLog|I0000 .*\] "
                           r"|To enable the following instructions:|E0000 .*cuda_platform.cc.*failed call to cuInit: "
                           r".*\(303\)")


class MissingRuntime(Exception):
    """None of the runtimes classify.py runs with can be imported."""


def _interpreter_api():
    """(Interpreter class, load_delegate) from the first runtime that is installed; MissingRuntime, saying what to
    install, where there is none."""
    for package in ("ai_edge_litert", "tflite_runtime"):
        try:
            api = importlib.import_module(f"{package}.interpreter")
        except ImportError:
            continue
        return api.Interpreter, api.load_delegate
    try:
        return _tensorflow_api()
    except ImportError as err:
        detail = "" if err.name == "tensorflow" else f"; TensorFlow's import failed: {str(err).strip().splitlines()[0]}"
        raise MissingRuntime("no TFLite runtime is installed (classify.py runs with ai-edge-litert, tflite-runtime "
                             f"or tensorflow{detail}): pip install ai-edge-litert (or tflite-runtime where "
                             "ai-edge-litert has no wheel)") from None


def _tensorflow_api():
    """tf.lite's interpreter, where neither LiteRT package is installed, imported without TensorFlow's start-up
    lines: TF_CPP_MIN_LOG_LEVEL (read when TensorFlow loads; a value the user set is kept) quiets its INFO and
    WARNING logs, and :func:`_quiet_runtime` drops those it prints before its logging reads that variable."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _quiet_runtime():
        import tensorflow as tf
    return tf.lite.Interpreter, tf.lite.experimental.load_delegate


def make_interpreter(model_path: Path, use_edgetpu: bool | None = None):
    """An interpreter on the Edge TPU when possible, else on the CPU; returns (interpreter, device name, the model
    file it runs: the uncompiled one beside an ``_edgetpu`` model on the CPU, where there is one)."""
    Interpreter, load_delegate = _interpreter_api()
    want_tpu = use_edgetpu if use_edgetpu is not None else model_path.stem.endswith("_edgetpu")
    if want_tpu:
        with _delegate_failures_quiet():
            try:
                delegate = load_delegate(EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1"))
                with _quiet_runtime():
                    interpreter = Interpreter(model_path=str(model_path), experimental_delegates=[delegate])
                    interpreter.allocate_tensors()
                return interpreter, "edgetpu", model_path
            except (ValueError, OSError, RuntimeError) as err:
                print(f"note: no Edge TPU available ({err}); running on the CPU", file=sys.stderr)
    cpu_model = uncompiled(model_path)
    if cpu_model != model_path and cpu_model.exists():
        model_path = cpu_model  # the uncompiled model (with --cpu too): an _edgetpu model's custom op needs the TPU
    with _quiet_runtime():
        interpreter = Interpreter(model_path=str(model_path))
        interpreter.allocate_tensors()
    return interpreter, "cpu", model_path


def uncompiled(model_path: Path) -> Path:
    """``model_int8.tflite`` for ``model_int8_edgetpu.tflite`` (the name edgetpu_compiler gives); itself otherwise."""
    stem = model_path.stem
    return model_path.with_name(f"{stem.removesuffix('_edgetpu')}{model_path.suffix}")


@contextlib.contextmanager
def _delegate_failures_quiet():
    """A delegate that failed to load is half made, and its ``__del__`` raises (``'Delegate' object has no attribute
    '_library'``), which Python prints as a traceback: that one is dropped, here where it is collected."""
    previous = sys.unraisablehook

    def hook(info):
        if not (isinstance(info.exc_value, AttributeError) and "Delegate" in repr(info.object)):
            previous(info)

    sys.unraisablehook = hook
    try:
        yield
        gc.collect()
    finally:
        sys.unraisablehook = previous


@contextlib.contextmanager
def _quiet_runtime():
    """The runtime's own lines, printed by its C++ code on file descriptor 2 whatever the log level (LiteRT's
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", TensorFlow's start-up notes), are kept off the
    terminal, and so is tf.lite's warning that it is deprecated (it says to install ai-edge-litert, which
    deploy/README.md says too); any other line or warning is passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught, warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"\s*Warning: tf\.lite\.Interpreter is deprecated", UserWarning)
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                if not RUNTIME_NOISE.match(line):
                    print(line, file=sys.stderr)


def read_card(model_path: Path) -> dict:
    stem = uncompiled(model_path).stem
    card = model_path.with_name(f"{stem}.card.json")
    return json.loads(card.read_text()) if card.is_file() else {}


def card_problem(model_path: Path, card: dict) -> str | None:
    """Why ``card`` is not the card of ``model_path``: it records the SHA-256 of another file of that name (exported
    again since, or copied from another export), as kres predict refuses it; None where it is (or says nothing)."""
    digest = card.get("model_sha256")
    if not digest or card.get("model") != model_path.name:  # (the Edge TPU compiler's file shares its model's card)
        return None
    sha = hashlib.sha256()
    with open(model_path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            sha.update(block)
    if sha.hexdigest() == digest:
        return None
    return (f"{uncompiled(model_path).stem}.card.json is the card of another {model_path.name} (the file's SHA-256 is "
            "not the one it records: exported again since, or copied from another export): copy this model's card "
            "from its kres export folder, or remove it")


def read_labels(model_path: Path, card: dict) -> dict[str, list[str]]:
    """The class names beside the model, by where they are: ``labels.txt`` and ``the card`` (each where it has any)."""
    found = {}
    labels = model_path.with_name("labels.txt")
    if labels.is_file():
        found["labels.txt"] = [line.strip() for line in labels.read_text(encoding="utf-8-sig").splitlines()
                               if line.strip()]  # (utf-8-sig: a byte-order mark, as Notepad writes, is no name)
    found["the card"] = list(card.get("labels", []))
    return {source: names for source, names in found.items() if names}


def pick_labels(found: dict[str, list[str]], outputs: int) -> tuple[str, list[str]]:
    """(where they are, the labels) that name the model's outputs one for one, labels.txt's before the card's: a
    labels.txt of another model is passed over for the card's. Where neither matches, labels.txt's, else the
    card's, which a note says do not match; ("", []) where there are none."""
    matching = [source for source, names in found.items() if len(names) == outputs]
    source = next(iter(matching or found), "")
    return source, found.get(source, [])


def missing_notes(model_path: Path, card: dict, found: dict[str, list[str]], source: str, outputs: int) -> list[str]:
    """What the results lack where the files kres export writes beside the model were not copied with it, or
    which were not this model's."""
    notes = []
    if not card:
        notes.append(f"no {uncompiled(model_path).stem}.card.json beside {model_path.name}: images are resized as "
                     "photos are (centre crop), which may not be how the model was trained; copy the card from the "
                     "kres export folder")
    labels = found.get(source, [])
    if not labels:
        notes.append(f"no labels.txt beside {model_path.name}: classes are shown by number; copy it from the kres "
                     "export folder")
    elif len(labels) != outputs:
        notes.append(f"{source} holds {len(labels)} labels for the model's {outputs} classes: copy the labels.txt "
                     "from this model's kres export folder")
    elif source != "labels.txt" and "labels.txt" in found:
        notes.append(f"labels.txt holds {len(found['labels.txt'])} labels for the model's {outputs} classes: the "
                     f"card's {outputs} labels are shown; copy the labels.txt from this model's kres export folder")
    return notes


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more; got {text!r}")
    return int(text)


def load_image(path: Path, height: int, width: int, resize: str = "center_crop") -> np.ndarray:
    """RGB pixels 0-255 as the model's validation data was prepared (the card's ``input.resize``), with the same
    arithmetic and rounding as training's evaluation and ``kres predict``: the whole frame resized
    (``full_frame``, the built-in digits: see :func:`_full_frame`), or the shorter side resized to
    int(size / 0.875) with antialiased bilinear weights, then the centre crop."""
    with warnings.catch_warnings():  # above 89 megapixels PIL warns; its hard limit (twice that) still holds
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as stored:
            # A phone's portrait photo is stored sideways with an EXIF orientation tag, as training read it.
            image = to_rgb(ImageOps.exif_transpose(stored))
    pixels = np.asarray(image, dtype=np.float32)
    if resize == "full_frame":
        return np.round(np.clip(_full_frame(pixels, height, width), 0, 255))
    target = int(max(height, width) / CROP_FRACTION)
    scale = np.float32(target) / np.float32(min(pixels.shape[:2]))
    new_h, new_w = (max(int(np.round(np.float32(n) * scale)), target) for n in pixels.shape[:2])
    resized = _resize_axis(_resize_axis(pixels, new_h, axis=0), new_w, axis=1)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.round(np.clip(resized[top:top + height, left:left + width], 0, 255))


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB as ``kres predict`` and training read any image. 16-bit grey (a 16-bit PNG: PIL's ``I;16``), and
    32-bit grey ``I`` with a value above 255, are 0-65535: scaled by 255/65535 and the fraction dropped (PIL's own
    conversion clips them at 255, white); ``I`` within 0-255 is taken as it is. A palette with a transparent
    colour goes through RGBA, as PIL asks; alpha is dropped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(image, np.float64)
        full_scale = 65535.0 if image.mode != "I" or grey.max() > 255 else 255.0
        return Image.fromarray(np.clip(grey * (255.0 / full_scale), 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _full_frame(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """The whole frame resampled to [height, width] as ``keras_resnet.augment.digits_resize`` does it (TensorFlow's
    ImageProjectiveTransformV3, bilinear, constant fill): the output->input map puts pixel centres at integers and
    matches the two frames' centres; the four neighbours of each source point are weighted bilinearly, with 0 for
    a neighbour outside the image, and no antialiasing. PIL's resize differs: it antialiases when it shrinks and
    repeats the edge pixels instead of fading to 0."""
    rows, row_weights = _source_points(pixels.shape[0], height)
    cols, col_weights = _source_points(pixels.shape[1], width)
    padded = np.pad(pixels, ((1, 1), (1, 1), (0, 0)))  # index 0 and -1: the constant 0 outside the image

    def along_x(r: int) -> np.ndarray:  # the upper (r=0) or lower (r=1) neighbours, interpolated along x
        picked = padded[rows[:, r] + 1]
        return col_weights[:, 0, None] * picked[:, cols[:, 0] + 1] + col_weights[:, 1, None] * picked[:, cols[:, 1] + 1]

    return row_weights[:, 0, None, None] * along_x(0) + row_weights[:, 1, None, None] * along_x(1)


def _source_points(length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``size`` output positions: its two neighbouring source indices (floor and floor + 1; -1 or
    ``length`` are outside) and their bilinear weights, in float32 as TensorFlow computes them:
    ``x = a * i + b`` with ``a = length / size`` and ``b = (length - 1) / 2 - a * (size - 1) / 2``."""
    scale = np.float32(length / size)
    offset = np.float32((length - 1) / 2) - scale * np.float32((size - 1) / 2)
    x = scale * np.arange(size, dtype=np.float32) + offset
    low = np.floor(x)
    indices = np.clip(np.stack([low, low + 1], 1), -1, length).astype(np.int64)
    weights = np.stack([(low + 1) - x, x - low], 1).astype(np.float32)
    return indices, weights


def _resize_axis(pixels: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Antialiased bilinear (triangle kernel) resampling along one axis, in float32, as TensorFlow's
    ``tf.image.resize(..., antialias=True)`` computes it: a kernel widened by the downscale factor, centred on
    ``(i + 0.5) / scale``, weights normalised to sum to 1."""
    length = pixels.shape[axis]
    inverse = np.float32(1) / (np.float32(size) / np.float32(length))
    kernel_scale = max(inverse, np.float32(1))
    over_kernel_scale = np.float32(1) / kernel_scale
    moved = np.moveaxis(pixels, axis, 0)
    out = np.zeros((size, *moved.shape[1:]), np.float32)
    for i in range(size):
        centre = (np.float32(i) + np.float32(0.5)) * inverse
        start = max(int(np.ceil(centre - kernel_scale - np.float32(0.5))), 0)
        end = min(int(np.floor(centre + kernel_scale - np.float32(0.5))), length - 1) + 1
        sources = np.arange(start, end, dtype=np.float32)
        weights = np.maximum(np.float32(0), 1 - np.abs((sources + np.float32(0.5) - centre) * over_kernel_scale))
        weights = (weights * (np.float32(1) / weights.sum(dtype=np.float32))).astype(np.float32)
        for k, weight in enumerate(weights):
            out[i] += weight * moved[start + k]
    return np.moveaxis(out, 0, axis)


def warm_up(interpreter) -> None:
    """One invoke on a blank image before the first one, untimed: the first invoke sets the runtime up (on an Edge
    TPU it loads the model's weights onto the chip) and takes longer than every later one."""
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    interpreter.invoke()


def classify(interpreter, pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """Raw 0-255 RGB [H,W,3] -> (class probabilities, seconds the interpreter's invoke took: the model alone, not
    the quantizing or reading of its input and output); quantizes the input and dequantizes the output."""
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    x = pixels[None]
    scale, zero_point = inp["quantization"]
    if np.issubdtype(inp["dtype"], np.integer):
        if scale:
            x = x / scale + zero_point
        info = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x), info.min, info.max)
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    start = time.perf_counter()
    interpreter.invoke()
    seconds = time.perf_counter() - start
    y = interpreter.get_tensor(out["index"])[0]
    scale, zero_point = out["quantization"]
    if np.issubdtype(y.dtype, np.integer) and scale:
        return (y.astype(np.float32) - zero_point) * scale, seconds
    return y.astype(np.float32), seconds


def model_problem(model: Path) -> str | None:
    """Why ``model`` cannot be run, and what to pass instead; None where it is a .tflite file."""
    if model.is_dir() or model.suffix != ".tflite":
        return f"{model} is not a .tflite model: pass the model_*.tflite file that kres export wrote"
    if model.is_file():
        return None
    beside = uncompiled(model)
    if beside != model and beside.is_file():  # edgetpu_compiler was not run (deploy/README.md, step 2)
        return (f"{model} does not exist, but {beside.name} beside it does: the Edge TPU compiler makes the _edgetpu "
                f"file from it (edgetpu_compiler -s -o {model.parent} {beside}; deploy/README.md, step 2), or pass "
                f"{beside.name} to run on the CPU")
    return f"{model} does not exist"


def interpreter_problem(model: Path, err: Exception) -> str:
    """The error line for a model the interpreter refused."""
    if "edgetpu-custom-op" in str(err):
        return (f"{model} runs on an Edge TPU only, and none is available: put the {uncompiled(model).name} that "
                "kres export wrote beside it, to run that one on the CPU")
    return f"{model} is not a valid TFLite model ({str(err).strip().splitlines()[0]}): export it again"


def folder_images(paths: list[Path]) -> list[Path]:
    """The images to classify, a folder given standing for its image files as ``kres predict`` takes it: those
    directly inside it whose extension is an image format's (other files, hidden ones and sub-folders are passed
    over), sorted by name; a folder that holds none stays, to be skipped with why."""
    images = []
    for path in paths:
        inside = []
        if path.is_dir():
            inside = sorted(entry for entry in path.iterdir() if not entry.name.startswith(".")
                            and entry.name.lower().endswith(IMAGE_EXTENSIONS) and not entry.is_dir())
        images.extend(inside or [path])
    return images


def skip_reason(path: Path, err: Exception) -> str:
    """One line, worded as ``kres predict``'s: why an image cannot be read (missing, a folder without images, empty,
    not an image, truncated, too large)."""
    if path.is_dir():
        return f"holds no images ({IMAGE_FORMATS} files directly inside it): pass image files, or a folder of them"
    if isinstance(err, FileNotFoundError):
        return "does not exist"
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, Image.DecompressionBombError):  # a valid image: the advice to pass an image does not fit
        return f"is too large to read ({text}): scale it down"
    if path.is_file() and path.stat().st_size == 0:  # PIL says "cannot identify image file"
        return f"cannot be read (it is empty: 0 bytes): pass a {IMAGE_FORMATS} file"
    return f"cannot be read ({text}): pass a {IMAGE_FORMATS} file"


def ranked_classes(probs: np.ndarray) -> np.ndarray:
    """Class indices best first: the higher score first and, where scores tie (common in an int8 model's output),
    the lower class index first, the order ``kres predict`` gives."""
    return np.argsort(-probs, kind="stable")


def show(interpreter, path: Path, card: dict, labels: list[str], top_k: int) -> bool:
    """Print one image's top classes and its invoke time (or, on stderr, why it was skipped); whether it was read."""
    _, height, width, _ = interpreter.get_input_details()[0]["shape"]
    try:
        pixels = load_image(path, int(height), int(width), card.get("input", {}).get("resize", "center_crop"))
    except (OSError, ValueError, Image.DecompressionBombError) as err:  # missing, not an image, truncated
        print(f"skipped: {path}: {skip_reason(path, err)}", file=sys.stderr)
        return False
    probs, seconds = classify(interpreter, pixels)
    top = ranked_classes(probs)[:top_k]
    ranked = ", ".join(f"{labels[i] if i < len(labels) else i} {probs[i]:.3f}" for i in top)
    print(f"{path}: {ranked} (invoke {seconds * 1000:.2f} ms)")
    return True


def main(argv: list[str] | None = None) -> int:
    """Run classify.py; a reader of its output that has gone (``classify.py ... | head -2``) has what it wanted: the
    run ends there, quietly, with exit status 0, as ``kres predict``'s (it ended in a BrokenPipeError traceback)."""
    try:
        code = _classify(argv)
        sys.stdout.flush()  # here, not at exit, where Python says that the flush failed
    except BrokenPipeError:
        if not _stdout_gone():
            return 1  # stderr's reader gone: what went wrong cannot be said
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())  # so that Python's own flush at exit does not fail again
        os.close(null)
        return 0
    return code


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll reports an error on its write end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))  # Linux, BSD
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout is not a file
        return False


def _classify(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path, nargs="+",
                        help="Image files, or folders of them (their images, by name; not their sub-folders).")
    parser.add_argument("--top-k", type=_positive, default=3, help="How many classes to show per image.")
    parser.add_argument("--cpu", action="store_true", help="Do not try the Edge TPU.")
    args = parser.parse_args(argv)
    problem = model_problem(args.model)
    if problem:
        print(f"Error: {problem}", file=sys.stderr)
        return 2
    try:
        interpreter, device, model_path = make_interpreter(args.model, False if args.cpu else None)
    except (ValueError, RuntimeError) as err:
        print(f"Error: {interpreter_problem(args.model, err)}", file=sys.stderr)
        return 2
    except MissingRuntime as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2
    card = read_card(model_path)
    if problem := card_problem(model_path, card):
        print(f"Error: {problem}", file=sys.stderr)
        return 2
    found = read_labels(model_path, card)
    _, height, width, _ = interpreter.get_input_details()[0]["shape"]
    outputs = int(interpreter.get_output_details()[0]["shape"][-1])
    source, labels = pick_labels(found, outputs)
    named = f"{len(labels)} labels" if labels else "no labels (classes shown by number)"
    print(f"model {model_path.name} on {device}, input {height}x{width}, {named}")
    for note in missing_notes(model_path, card, found, source, outputs):
        print(f"note: {note}", file=sys.stderr)
    warm_up(interpreter)
    images = folder_images(args.images)
    read = sum(show(interpreter, path, card, labels, args.top_k) for path in images)
    if read == 0:  # as kres predict: exit status 2 where no image could be read, 1 where some could not
        print("Error: none of the images given could be read (each is named above, with why): pass image files "
              "(JPEG, PNG, BMP, GIF, TIFF, WebP)", file=sys.stderr)
        return 2
    return 1 if read < len(images) else 0


if __name__ == "__main__":
    sys.exit(main())
