"""Top-k labels for image files with any model ``keras_resnet.runtime`` opens.

Images go through the same evaluation preprocessing as the validation data (``keras_resnet.augment``):
the shorter side resized to ``size / 0.875`` and the centre cropped, or, for a model trained on the
built-in digits, the whole frame resized, as its validation split was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from keras_resnet.errors import KresError, first_line
from keras_resnet.meta import RESIZE_KEY, SCORES_KEY, card_path, generic_labels, meta_path, passed_over_labels
from keras_resnet.runtime import Predictor, check_runnable, load_predictor


@dataclass
class PredictConfig:
    model: str
    images: list[str]
    top_k: int = 5
    image_size: int | None = None  # only for a model that takes any size and records none
    batch_size: int = 32
    num_threads: int | None = None


@dataclass
class Prediction:
    label: str
    index: int
    score: float


@dataclass
class ImagePredictions:
    image: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None  # why the image was skipped (it cannot be read); then no predictions

    def to_dict(self) -> dict:
        return asdict(self)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode any image PIL reads to uint8 [H,W,3] RGB (grey, palette, RGBA, CMYK, 16-bit are converted;
    alpha is dropped, an animation gives its first frame). An unreadable file is a KresError naming it."""
    from keras_resnet import imageio

    with _read_errors(path), imageio.open_upright(path) as image:
        return np.asarray(imageio.to_rgb(image), np.uint8)


def check_header(path: str | os.PathLike) -> None:
    """``read_rgb``'s KresError for a file that is missing, a folder, or not an image, from its header alone: a
    truncated image is found when it is decoded."""
    from PIL import Image

    from keras_resnet import imageio

    with _read_errors(path), imageio.large_images_allowed(), Image.open(path):
        pass


@contextlib.contextmanager
def _read_errors(path: str | os.PathLike) -> Iterator[None]:
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        yield
    except UnidentifiedImageError as err:
        if path.is_file() and path.stat().st_size == 0:  # PIL says "cannot identify image file"
            raise KresError(f"cannot read image {path} (it is empty: 0 bytes): pass a JPEG, PNG, BMP, GIF, TIFF or "
                            "WebP file") from None
        raise _unreadable_image(path, err) from None
    except FileNotFoundError:
        raise KresError(f"image {path} does not exist") from None
    except IsADirectoryError:
        raise KresError(f"{path} is a directory, not an image: pass image files") from None
    except Image.DecompressionBombError as err:  # a valid image: the advice to pass an image did not fit
        raise KresError(f"image {path} is too large to read ({first_line(err)}): scale it down") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise _unreadable_image(path, err) from None


def _unreadable_image(path: Path, err: BaseException) -> KresError:
    return KresError(f"cannot read image {path} ({first_line(err)}): pass a JPEG, PNG, BMP, GIF, TIFF or WebP file")


def preprocessor(predictor: Predictor, size: int) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 [H,W,3] -> uint8 [size,size,3] raw pixels, exactly as the model's validation data was prepared."""
    import tensorflow as tf

    from keras_resnet import augment

    if _trained_on_digits(predictor):
        return lambda rgb: augment.to_pixels(augment.digits_resize(tf.constant(rgb, tf.float32), size)).numpy()
    return lambda rgb: augment.to_pixels(augment.resize_shorter_center_crop(tf.constant(rgb, tf.float32), size)).numpy()


def _trained_on_digits(predictor: Predictor) -> bool:
    from keras_resnet.data import FULL_FRAME, eval_resize
    from keras_resnet.runs import training_data_config

    if predictor.meta is not None and predictor.meta.extra.get(RESIZE_KEY):  # an export's: its run's resize
        return predictor.meta.extra[RESIZE_KEY] == FULL_FRAME
    try:
        data = training_data_config(predictor.path, predictor.meta)
    except KresError:
        return False
    return eval_resize(data) == FULL_FRAME


def _no_facts_note(predictor: Predictor, labels: list[str]) -> str | None:
    """What predict says where no meta.json travels with the model, nor (a .tflite) the card kres export wrote beside
    it: that its classes are numbered (where no labels.txt names them either), and how images are resized; beside
    the card, a labels.txt passed over as it names another number of classes (classify.py said so; kres did not)."""
    if meta_path(predictor.path) is not None:
        return None
    if predictor.meta is not None and predictor.meta.extra.get(RESIZE_KEY):  # the card's facts
        return passed_over_labels(predictor.path, predictor.num_outputs)
    name = predictor.path.name
    if generic_labels(labels):
        return (f"no meta.json beside {name}: its classes are shown as class_0 ... class_{len(labels) - 1} and images "
                "are resized as for ImageNet (shorter side, centre crop) whatever it was trained with; copy its run's "
                "meta.json beside it for their names and its own resize")
    return (f"no meta.json or {card_path(predictor.path).name} beside {name}: images are resized as for ImageNet "
            "(shorter side, centre crop) whatever it was trained with; copy its card from its kres export folder "
            "beside it for its own resize")


def top_k(probs: np.ndarray, labels: list[str], k: int) -> list[list[Prediction]]:
    """The k best classes per row, best first: the higher score first and, where scores tie (common in an int8
    model's output), the lower class index first, the order ``deploy/classify.py`` gives."""
    probs = np.asarray(probs)
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[Prediction(label=labels[i] if i < len(labels) else f"class_{i}", index=int(i), score=float(row[i]))
             for i in idx] for row, idx in zip(probs, order)]


def _model_size(predictor: Predictor, explicit: int | None) -> int:
    side = predictor.input_shape[0]
    if side is not None:
        if explicit is not None and explicit != side:
            raise KresError(f"{predictor.path.name} takes {side}x{side} images, not --image-size {explicit}: "
                            "drop --image-size")
        return int(side)
    if explicit is not None:
        return explicit
    if predictor.meta is not None and predictor.meta.input_shape and predictor.meta.input_shape[0]:
        return int(predictor.meta.input_shape[0])
    raise KresError(f"{predictor.path.name} takes any image size and none is recorded: pass --image-size")


def predict(cfg: PredictConfig, say: Callable[[str], None] | None = None) -> list[ImagePredictions]:
    """Top-k predictions for each image in ``cfg.images``, in order (a folder: its images, see
    :func:`folder_images`). An image that cannot be read is skipped, its
    entry saying why; when none can be, that is the error. ``say`` gets a note where the model's classes have no
    names (no meta.json travels with it)."""
    if not cfg.images:
        raise KresError("no images given: pass one or more image files")
    if cfg.top_k < 1:
        raise KresError(f"--top-k must be 1 or more, got {cfg.top_k}")
    images, unreadable = folder_images(cfg.images)  # a folder: its images
    unreadable.update(_unreadable([path for path in images if path not in unreadable]))  # before the model loads
    readable = [path for path in dict.fromkeys(images) if path not in unreadable]  # a file named twice: once
    if not readable:  # (a file named twice is one entry of unreadable)
        raise _none_can_be_read(list(unreadable.values()))
    results = {path: ImagePredictions(str(path), error=error) for path, error in unreadable.items()}
    predictor = load_predictor(cfg.model, num_threads=cfg.num_threads)
    check_runnable(cfg.num_threads, [predictor])
    size = _model_size(predictor, cfg.image_size)
    prepare = preprocessor(predictor, size)
    labels = predictor.labels
    if len(labels) != predictor.num_outputs:  # (an export of another model into the same folder)
        raise KresError(f"{predictor.path.name} has {predictor.num_outputs} outputs for the {len(labels)} classes "
                        f"its meta.json names: the meta.json belongs to another model; export it again from its run")
    scores = predictor.meta.extra.get(SCORES_KEY) if predictor.meta is not None else None
    if say is not None and scores:
        say(f"{predictor.path.name} outputs {scores}, not class probabilities: the scores shown are {scores}")
    note = _no_facts_note(predictor, labels)
    if say is not None and note:
        say(note)
    for start in range(0, len(readable), cfg.batch_size):
        prepared = {}
        for path in readable[start:start + cfg.batch_size]:
            try:  # each image is decoded once, here (a truncated one fails only here)
                prepared[path] = prepare(read_rgb(path))
            except KresError as err:
                results[path] = ImagePredictions(str(path), error=str(err))
        if prepared:
            probs = predictor.predict(np.stack(list(prepared.values())), batch_size=cfg.batch_size)
            results.update((p, ImagePredictions(str(p), preds))
                           for p, preds in zip(prepared, top_k(probs, labels, cfg.top_k)))
    named = list(dict.fromkeys(images))  # (a file named twice is one image)
    if all(results[path].error for path in named):  # truncated, every one
        raise _none_can_be_read([results[path].error for path in named])
    return [results[path] for path in images]


def folder_images(paths: list[str]) -> tuple[list[str], dict[str, str]]:
    """The images to predict, a folder given standing for its image files as ``deploy/classify.py`` takes it: those
    directly inside it whose extension is an image format's (other files, hidden ones and sub-folders are passed
    over), sorted by name; and why each folder that holds none is skipped."""
    from keras_resnet.data import IMAGE_EXTENSIONS

    images, empty = [], {}
    for path in paths:
        if not os.path.isdir(path):
            images.append(path)
            continue
        inside = sorted(entry.name for entry in os.scandir(path) if not entry.name.startswith(".")
                        and entry.name.lower().endswith(IMAGE_EXTENSIONS) and not entry.is_dir())
        images.extend([os.path.join(path, name) for name in inside] or [path])
        if not inside:
            empty[path] = (f"{path} holds no images (JPEG, PNG, BMP, GIF, TIFF or WebP files directly inside it): "
                           "pass image files, or a folder of them")
    return images, empty


def _none_can_be_read(errors: list[str]) -> KresError:
    """The error where no image given can be read (one error per image): each one's, the first five of many."""
    if len(errors) == 1:
        return KresError(errors[0])
    more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
    return KresError(f"none of the {len(errors)} images can be read: {'; '.join(errors[:5])}{more}")


def _unreadable(paths: list[str]) -> dict[str, str]:
    """Each image that cannot be read, and why (one line), from its header: checked before the model loads."""
    found = {}
    for path in paths:
        try:
            check_header(path)
        except KresError as err:
            found[path] = str(err)
    return found
