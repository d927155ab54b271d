"""Per-model facts that export, evaluate and predict must agree on, kept in one ``meta.json``.

A run directory and every export directory hold a ``meta.json`` beside the model. Where a model
comes without one, the structural facts are read off the model itself and the labels are numbered.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import keras
import numpy as np

from keras_resnet import fileio
from keras_resnet.errors import KresError, counted, first_five, first_line
from keras_resnet.model import depth_of
from keras_resnet.runs import CONFIG_FILE, LABELS_FILE, class_key, training_data_config
from keras_resnet.specs import NORMALIZATIONS, STEMS, VARIANTS

META_FILENAME = "meta.json"
WEIGHTS_DIGEST = "weights_digest"  # the key in meta.json's extra
RESIZE_KEY = "resize"  # an export's meta.json extra: how its run's images were resized for validation
SCORES_KEY = "scores"  # extra: what the model outputs where it is not class probabilities ("logits")
OUTPUT_NAME = "probabilities"  # the exported models' output name (SavedModel and .tflite signatures) by default
CARD_SUFFIX = ".card.json"  # model_int8.card.json: the model card of model_int8.tflite
CARD_DIGEST = "model_sha256"  # a card's: the SHA-256 of the .tflite it was written for (its "model")


@dataclass
class ModelMeta:
    depth: int
    variant: str  # "v1.5" or "v1"
    stem: str  # "imagenet" or "cifar"
    input_shape: list[int]  # [height, width, channels] of the raw-pixel input
    normalization: str  # key of keras_resnet.specs.NORMALIZATIONS (applied inside the model)
    mean: list[float]  # per input channel, 0-255 units, RGB order
    std: list[float]
    labels: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # e.g. dataset name, accuracy measured at export

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return int(self.input_shape[0])

    @classmethod
    def from_model(cls, model: keras.Model, labels: list[str] | None = None) -> ModelMeta:
        """Read depth, variant, stem, input shape and normalisation off a model built by ``resnet``."""
        names = {layer.name for layer in model.layers}
        variant = "v1" if model.get_layer("conv1_conv").use_bias else "v1.5"
        pre = model.get_layer("preprocess").get_config()
        scale, offset = _as_list(pre["scale"]), _as_list(pre["offset"])
        std = [1.0 / s for s in scale]
        mean = [-o * s for o, s in zip(offset, std)]
        normalization = next(
            (n.name for n in NORMALIZATIONS.values()
             if len(mean) == 3 and all(abs(a - b) < 1e-3 for a, b in zip(mean, n.mean))),
            "torch" if variant == "v1.5" else "caffe",
        )
        if "predictions" in names:
            labels = _labels_of(model.get_layer("predictions").units, labels)
        return cls(
            depth=depth_of(model), variant=variant,
            stem="imagenet" if "pool1_pool" in names else "cifar",
            input_shape=[int(d) if d is not None else None for d in model.input_shape[1:]],
            normalization=normalization, mean=mean, std=std, labels=list(labels or []),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically; ``path`` is a file or a directory (then ``meta.json`` inside it)."""
        path = Path(path)
        if path.is_dir():
            path = path / META_FILENAME
        fileio.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelMeta:
        path = Path(path)
        if path.is_dir():
            path = path / META_FILENAME
        try:
            data = json.loads(path.read_text())
            problem = field_problem(data)
            if problem is None:
                return cls(**data)
        except FileNotFoundError:
            raise KresError(f"no {META_FILENAME} at {path}") from None
        except (ValueError, TypeError) as err:  # not JSON, not UTF-8, or not a meta.json's fields
            problem = str(err)
        except OSError as err:
            raise KresError(f"cannot read {path}: {err.strerror or err}") from None
        raise KresError(f"{path} is not a valid {META_FILENAME} ({problem}); {_meta_fix(path)}")


def model_resize(extra: dict, data) -> str:
    """How a model's images are resized: as its meta.json's ``extra`` records it (an export's, a conversion's: its
    run's), else as evaluation resizes for its training ``data`` (a DataConfig or config.json's dict), else centre
    crop (nothing known)."""
    from keras_resnet.data import CENTER_CROP, eval_resize

    return extra.get(RESIZE_KEY) or (eval_resize(data) if data is not None else CENTER_CROP)


def _labels_of(outputs: int, labels: list[str] | None) -> list[str]:
    """``labels``, one for each of the classifier's outputs (1 label for 3 outputs was saved, and refused only when
    kres predict read it), or numbered ones where there are none."""
    if labels is None:
        return [f"class_{i}" for i in range(outputs)]
    if len(labels) != outputs:
        raise KresError(f"labels name {counted(len(labels), 'class', 'classes')} for a model of "
                        f"{counted(outputs, 'class', 'classes')}: pass one label for each of its outputs, in order")
    return labels


OTHER_NORMALIZATION = "custom"  # mean and std that are none of NORMALIZATIONS' (meta.json's mean/std say them)


def _meta_fix(path: Path) -> str:
    """What to do about a meta.json that is not valid: a run's is written by ``kres train`` (re-exporting reads
    it, so that advice went round in a circle); an export's by ``kres export``."""
    if (path.parent / CONFIG_FILE).is_file():  # a run's folder
        return ("it is written by 'kres train': restore it from a copy of the run, or delete it to have the "
                "facts read off the model (its classes numbered)")
    return "re-export the model"


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _numbers(value, count) -> bool:
    return (isinstance(value, list) and (count is None or len(value) == count)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value))


def field_problem(data) -> str | None:
    """What is wrong with a meta.json's content, naming the field; None where each field has a value of its kind
    (a mean of "abc" was accepted and copied into the export's meta.json and model card)."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__.replace('dict', 'object')}, not an object of fields"
    missing = [name for name in ModelMeta.__dataclass_fields__ if name not in data and name not in ("labels", "extra")]
    unknown = [name for name in data if name not in ModelMeta.__dataclass_fields__]
    if missing or unknown:
        return "; ".join(filter(None, [missing and f"no {', '.join(missing)}", unknown and f"unknown {unknown[0]!r}"]))
    shape = data["input_shape"]
    channels = shape[-1] if isinstance(shape, list) and shape and isinstance(shape[-1], int) else None
    normalizations = [*NORMALIZATIONS, OTHER_NORMALIZATION]
    checks = {
        "depth": (isinstance(data["depth"], int) and data["depth"] > 0, "a positive whole number"),
        "variant": (data["variant"] in VARIANTS, f"one of {', '.join(VARIANTS)}"),
        "stem": (data["stem"] in STEMS, f"one of {', '.join(STEMS)}"),
        "input_shape": (isinstance(shape, list) and len(shape) == 3 and all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in shape),
            "[height, width, channels]"),
        "normalization": (data["normalization"] in normalizations, f"one of {', '.join(normalizations)}"),
        "mean": (_numbers(data["mean"], channels), f"a list of {channels or 'its channels'} numbers"),
        "std": (_numbers(data["std"], channels) and all(v > 0 for v in data["std"]),
                f"a list of {channels or 'its channels'} positive numbers"),
        "extra": (isinstance(data.get("extra", {}), dict), "an object"),
    }
    wrong = next((name for name, (ok, _) in checks.items() if not ok), None)
    if wrong is not None:
        return f"its {wrong} is {_shown(data[wrong])} where {checks[wrong][1]} is expected"
    return _labels_problem(data.get("labels", []))  # (their kind, then a name twice)


def _labels_problem(labels) -> str | None:
    """What is wrong with a list of class names (meta.json's, a card's, labels.txt's); None where nothing is."""
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        return f"its labels are {_shown(labels)} where a list of class names is expected"
    twice = next((label for i, label in enumerate(labels) if label in labels[:i]), None)
    return None if twice is None else f"its labels name {twice!r} twice: each class needs a name of its own"


def output_scores(model: keras.Model) -> str | None:
    """What the classifier outputs where it is not softmax probabilities: "logits" (``classifier_activation=None``)
    or its activation's name; None for probabilities, and for a model without kres's ``predictions`` layer."""
    try:
        activation = getattr(model.get_layer("predictions"), "activation", None)  # (a Softmax layer has none)
    except ValueError:
        return None
    if activation is None:
        return None
    name = getattr(activation, "__name__", str(activation))
    return None if name == "softmax" else ("logits" if name == "linear" else name)


def output_name(scores: str | None) -> str:
    """The exported models' output key (the SavedModel's and each .tflite's signature) for a model whose
    ``scores`` (meta.json's, :func:`output_scores`'s) are these: "probabilities", "logits" for a model without
    activation (its outputs were called probabilities), "scores" for another activation's."""
    return OUTPUT_NAME if scores is None else ("logits" if scores == "logits" else "scores")


def model_output_name(model: keras.Model) -> str:
    """:func:`output_name` of ``model``'s own outputs: what every file exported from it names them."""
    return output_name(output_scores(model))


def with_scores(meta: ModelMeta, model: keras.Model) -> ModelMeta:
    """``meta`` with :data:`SCORES_KEY` where ``model`` outputs other than probabilities (a logits model's export
    was carded "class probabilities (softmax)", and predict showed its logits as scores without a word), and
    without it where the model outputs probabilities: the model says what it outputs, whatever meta.json says (a
    meta.json saying logits beside a softmax model named the SavedModel's output "logits", its .tflite's
    "probabilities")."""
    scores = output_scores(model)
    extra = {key: value for key, value in meta.extra.items() if key != SCORES_KEY}
    return replace(meta, extra=extra if scores is None else {**extra, SCORES_KEY: scores})


def weights_digest(model: keras.Model) -> str:
    """A short SHA-256 of every weight (BN statistics too) with its shape and dtype, in the model's order: what
    tells two exports of one architecture, classes and input apart (meta.json's ``extra["weights_digest"]``)."""
    digest = hashlib.sha256()
    for variable in model.weights:
        array = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def generic_labels(labels: list[str]) -> bool:
    """Labels that name no class (``class_0``, ``class_1``, ...: a model whose classes were never named)."""
    return all(label == f"class_{i}" for i, label in enumerate(labels))


def numbers_are_names(labels: list[str], model_path: str | os.PathLike, meta: ModelMeta | None) -> bool:
    """Whether a model's numbered ``labels`` (class_0, class_1, ...) name its classes: its run trained on synthetic
    data, whose classes are so named (recorded beside the model, or in its ``meta``). Such a model scores only data
    of those classes (on the digits it took their names 0-9 and scored 10% without a word); other numbered labels
    take the data's classes by position."""
    from keras_resnet.data import SYNTHETIC

    if meta is None or not labels or not generic_labels(labels):
        return False
    try:
        return training_data_config(model_path, meta).get("dataset") == SYNTHETIC
    except KresError:  # no data recorded: its classes are not known to be synthetic data's
        return False


def data_names_note(model_name: str, names: list[str]) -> str:
    """What a command says of a model without a ``meta.json`` whose classes take the data's ``names``, in order
    (export writes them into its labels.txt; evaluate scores its classes under them)."""
    return (f"{model_name} has no meta.json: its {len(names)} classes take the data's names, in order "
            f"({first_five(names)}); copy its run's meta.json beside it where they differ")


def numbered_names_note(model_name: str, labels: list[str], names: list[str]) -> str | None:
    """What a command says of a model whose meta.json numbers its classes (class_0, class_1, ...: a library model
    saved without labels) scored on data whose classes have other ``names``: by position, the only way to score
    it (they were matched without a word). None where the data's names are those numbers."""
    if not labels or not generic_labels(labels) or len(names) != len(labels) or \
            [class_key(name) for name in names] == labels:
        return None
    pairs = [f"{label}={name}" for label, name in zip(labels, names)]
    return (f"{model_name}'s {META_FILENAME} names its classes by number: they are matched to the data's classes "
            f"by position, a folder's sorted by name ({first_five(pairs)}); save its {META_FILENAME} with "
            "ModelMeta.from_model(model, labels=[...]) to match them by name")


def outputs_of(labels: list[str], data_classes: list[str], model_name: str, fix: str) -> list[int] | None:
    """The model output of each of the data's classes, by name (None: the data's classes are the model's, in its
    order). Names are compared in one Unicode form (:func:`class_key`). A class the model was not trained on is a
    KresError that names it; ``fix`` says what to do instead."""
    keys = [class_key(label) for label in labels]
    unknown = [name for name in data_classes if class_key(name) not in keys]
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise KresError(f"the data has classes {model_name} was not trained on ({', '.join(unknown[:5])}{more}): {fix} "
                        f"({', '.join(labels[:10])}; image folders are named after them)")
    outputs = [keys.index(class_key(name)) for name in data_classes]
    return None if outputs == list(range(len(labels))) else outputs


def require_outputs_for(model_name: str, num_outputs: int, data_classes: list[str], fix: str) -> None:
    """A model whose classes have no names is matched to the data's classes by position: as many as it has outputs,
    or a KresError that names both numbers; ``fix`` says what to do instead (evaluate and export say it alike)."""
    if num_outputs != len(data_classes):
        raise KresError(f"{model_name} has {num_outputs} outputs but the data has {len(data_classes)} classes: {fix}")


def meta_path(model_path: str | os.PathLike) -> Path | None:
    """Where the ``meta.json`` that travels with a model file or directory is, or None."""
    path = Path(model_path)
    return next((candidate for candidate in (path / META_FILENAME, path.parent / META_FILENAME)
                 if candidate.is_file()), None)


def find_meta(model_path: str | os.PathLike) -> ModelMeta | None:
    """The ``meta.json`` that travels with a model file or directory, or None."""
    path = meta_path(model_path)
    return ModelMeta.load(path) if path is not None else None


def meta_beside(model_path: str | os.PathLike, model: keras.Model) -> ModelMeta | None:
    """:func:`find_meta` of a Keras model file, checked against the model: a fine-tuned ``.keras`` saved into its
    run's folder was exported as the run's model (its depth, input size and labels: 10 names for 5 outputs), and
    predicted without a word. None where there is none; a model kres did not build is not checked."""
    found = find_meta(model_path)
    if found is None:
        return None
    try:
        own = ModelMeta.from_model(model)
    except (ValueError, KeyError, AttributeError, KresError):  # not built by keras_resnet.resnet: no facts to check
        return found
    check_describes(found, own, model_path)
    return found


def check_describes(found: ModelMeta, own: ModelMeta, model_path: str | os.PathLike) -> None:
    """A KresError where ``found``, the meta.json beside the model file ``model_path``, describes another model than
    ``own`` (the facts read off the model): its depth, variant, stem, input shape or number of classes."""
    facts = {"depth": lambda m: f"ResNet-{m.depth}", "variant": lambda m: m.variant, "stem": lambda m: f"{m.stem} stem",
             "input_shape": lambda m: "x".join(map(str, m.input_shape)),
             "labels": lambda m: counted(len(m.labels), "class", "classes")}
    if None in own.input_shape:  # a model of any size: its run's size is the one it is run at
        del facts["input_shape"]
    differ = [name for name, text in facts.items() if text(found) != text(own)]
    if not differ:
        return
    path = Path(model_path)
    theirs = ", ".join(facts[name](found) for name in differ)
    mine = ", ".join(facts[name](own) for name in differ)
    raise KresError(f"{meta_path(path)} describes another model ({theirs}) than {path.name} ({mine}): put "
                    f"{path.name} in a folder of its own, or with the meta.json of the run that made it")


def card_path(model_path: str | os.PathLike) -> Path:
    """Where kres export writes the model card of a .tflite: ``model_int8.card.json`` beside ``model_int8.tflite``,
    the card of the ``model_int8_edgetpu.tflite`` the Edge TPU compiler makes of it too (as deploy/classify.py
    finds it)."""
    path = Path(model_path)
    return path.with_name(path.stem.removesuffix("_edgetpu") + CARD_SUFFIX)


def deployed_facts(model_path: str | os.PathLike,
                   tensors: dict) -> tuple[ModelMeta | None, list[str], Path | None]:
    """What kres export wrote beside a .tflite that was copied without its meta.json (deploy/README.md's folder for
    the device): the facts of its card as its meta.json gives them (labels, resize, normalisation, what it
    outputs), None where there is no card; its class names, those of labels.txt or the card that name the
    model's outputs one for one, labels.txt's first, as deploy/classify.py picks them ([] where neither does); and
    the file they were read from (None where neither names them).
    ``tensors``: the model's "input" and "output" tensors as a card gives them (shape, dtype, scale, zero_point);
    a card that gives others, or records the digest of another file, is another model's: a KresError."""
    path = Path(model_path)
    card = _read_card(card_path(path))
    outputs = tensors["output"]["shape"][-1]
    found = [(path.with_name(LABELS_FILE), _labels_file(path.with_name(LABELS_FILE))),
             (card_path(path), card.get("labels") if card is not None else None)]
    where, labels = next(((where, list(names)) for where, names in found
                          if isinstance(names, list) and len(names) == outputs), (None, []))
    if where is not None and (problem := _labels_problem(labels)):  # (evaluate matched two classes to one name)
        raise KresError(f"{where} does not name the classes of {path.name} ({problem}): copy it again from the kres "
                        "export folder, or remove it")
    if card is None:
        return None, labels, where
    meta = _card_meta(card_path(path), card, labels)
    _check_card(path, card, tensors)
    return meta, labels, where


def _read_card(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (ValueError, OSError) as err:  # not JSON, not UTF-8, unreadable
        raise KresError(f"cannot read the model card {path} ({first_line(err)}): copy it again from the kres export "
                        "folder, or remove it") from None
    if not isinstance(card, dict):
        raise KresError(f"{path} is not a model card kres export wrote: copy it again from the kres export folder, "
                        "or remove it")
    return card


def passed_over_labels(model_path: str | os.PathLike, outputs: int) -> str | None:
    """The note where the labels.txt beside a model names another number of classes than its ``outputs`` and is
    passed over (for its card's names), in classify.py's words; None where it names as many, or there is none."""
    path = Path(model_path)
    names = _labels_file(path.with_name(LABELS_FILE))
    if names is None or len(names) == outputs:
        return None
    return (f"{LABELS_FILE} beside {path.name} holds {len(names)} labels for the model's {outputs} classes: it is "
            "passed over; copy the labels.txt from this model's kres export folder")


def _labels_file(path: Path) -> list[str] | None:
    """labels.txt's names (its lines that are not blank), as deploy/classify.py reads them; None where there is none.
    A byte-order mark (Notepad's) is no part of the first name."""
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except (OSError, ValueError):  # none, or unreadable: the card's names are taken, or the classes numbered
        return None


_TENSOR_FACTS = ("shape", "dtype", "scale", "zero_point")


def _check_card(path: Path, card: dict, tensors: dict) -> None:
    """A card of another model (the file's digest not the one it records, or, on a card without one or of the Edge
    TPU compiler's file, its input or output tensor not this model's) is refused, as a meta.json of another model
    is, naming what differs."""
    digest = card.get(CARD_DIGEST)
    if digest and card.get("model") == path.name and fileio.file_sha256(path) != digest:
        raise KresError(f"{card_path(path)} is the card of another {path.name} (the file's SHA-256 is not the one it "
                        "records: exported again since, or copied from another export): copy this model's card from "
                        "its kres export folder, or remove it")
    differ = [(end, fact) for end in ("input", "output") for fact in _TENSOR_FACTS
              if card[end].get(fact) != tensors[end][fact]]
    if differ:
        theirs = ", ".join(f"{end} {fact} {_shown(card[end].get(fact))}" for end, fact in differ)
        mine = ", ".join(f"{end} {fact} {_shown(tensors[end][fact])}" for end, fact in differ)
        raise KresError(f"{card_path(path)} describes another model ({theirs}) than {path.name} ({mine}): copy this "
                        "model's card from its kres export folder, or remove it")


_ARCHITECTURE = re.compile(r"ResNet-(\d+) (\S+) \((\w+) stem\)")  # export.model_card's "architecture"
_SCORES = re.compile(r"class scores \((\w+)\)")  # its output "meaning" where not probabilities


def _card_meta(path: Path, card: dict, labels: list[str]) -> ModelMeta:
    """The facts of a card (export.model_card) as its meta.json gives them."""
    from keras_resnet.data import RESIZE_HOW

    try:
        depth, variant, stem = _ARCHITECTURE.fullmatch(card["architecture"]).groups()
        norm, resize = card["normalization"], card["input"]["resize"]
        data = {"depth": int(depth), "variant": variant, "stem": stem, "input_shape": card["input"]["shape"][1:],
                "normalization": norm["name"], "mean": norm["mean"], "std": norm["std"]}
        scores = _SCORES.match(card["output"]["meaning"])  # past here "input" and "output" are objects
        problem = field_problem(data) or (None if resize in RESIZE_HOW else f"its input resize is {_shown(resize)}")
    except (KeyError, TypeError, AttributeError) as err:  # a field missing, or not of its kind
        problem = f"no {err}" if isinstance(err, KeyError) else "a field of another kind"
    if problem is not None:
        raise KresError(f"{path} is not a model card kres export wrote ({problem}): copy it again from the kres "
                        "export folder, or remove it")
    extra = {RESIZE_KEY: resize, **({SCORES_KEY: scores[1]} if scores else {})}
    return ModelMeta(**data, labels=labels, extra=extra)


def _as_list(value) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)]
    return [float(v) for v in value]
