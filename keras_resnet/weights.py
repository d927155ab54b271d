"""Pretrained weights: keras.applications' published files (v1) and torchvision checkpoints (v1.5).

Every source is first read into a :class:`Checkpoint`: arrays keyed by *our* layer names, in Keras
order per layer (conv: kernel[, bias]; BN: gamma, beta, moving_mean, moving_variance; dense: kernel,
bias). One function, :func:`assign`, then checks every layer of the model against it and copies the
arrays, so all formats share the same checks and the same error messages.

Sources:

* ``"imagenet"`` with variant ``"v1"`` and depth 50/101/152: keras.applications' ``.h5`` files, fetched
  with ``keras.utils.get_file`` (cached under the Keras home, md5 checked).
* a legacy ``.h5`` in the keras.applications layout (what ``tf_keras`` ``save_weights("x.h5")`` writes);
* a Keras 3 ``.keras`` file or ``.weights.h5`` saved from a keras_resnet model;
* a torchvision ResNet state dict: ``.pth`` (needs torch), ``.safetensors`` or ``.npz`` (no torch).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_resnet import _compat, runs
from keras_resnet.errors import KresError
from keras_resnet.specs import DEPTHS, depth_spec

HEAD = "predictions"

# keras.applications' published ResNet v1 files: base URL, and md5 of (with top, without top).
KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
KERAS_APPLICATIONS_HASHES: dict[int, tuple[str, str]] = {
    50: ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    101: ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    152: ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
}
DOWNLOAD_TIMEOUT_S = 20.0
"""Seconds without a byte before a weight download gives up (urllib has no timeout of its own)."""

# torchvision's IMAGENET1K_V1 checkpoints, named in errors so a user knows which file to fetch.
TORCHVISION_FILES: dict[int, str] = {
    18: "resnet18-f37072fd.pth",
    34: "resnet34-b627a593.pth",
    50: "resnet50-0676ba61.pth",
    101: "resnet101-63fe2227.pth",
    152: "resnet152-394f9c45.pth",
}
TORCHVISION_URL = "https://download.pytorch.org/models/"

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
_NEEDS_TORCH = ("reading {name} needs PyTorch (pip install torch); without it, save the state dict as .safetensors "
                "or .npz where torch is installed and pass that file")
SUPPORTED = ".keras, .weights.h5, .h5 (keras.applications layout), .pth, .safetensors or .npz"
Builder = Callable[..., object]
"""``keras_resnet.resnet``: builds the reference model whose layer names a ``.weights.h5`` file's layers take."""


@dataclass
class Checkpoint:
    """Weights keyed by keras_resnet layer name, each a list of arrays in the layer's own order."""

    layers: dict[str, list[np.ndarray]]
    source: str  # how errors name it, e.g. "torchvision checkpoint resnet18.pth"
    kind: str  # "torchvision", "keras.applications" or "keras"

    @property
    def variant(self) -> str:
        """v1 convs carry a bias; v1.5 convs do not."""
        return "v1" if len(self.layers.get("conv1_conv", ())) == 2 else "v1.5"


@dataclass
class LoadReport:
    source: str
    layers_loaded: int
    head_loaded: bool
    note: str = ""  # one line when the classifier was left as initialised


# ---------------------------------------------------------------------------------------------- entry point


def load_pretrained(model, weights: str | os.PathLike, *, depth: int, variant: str,
                    include_top: bool, builder: Builder | None = None,
                    say: Callable[[str], None] | None = None) -> LoadReport:
    """Load ``weights`` ("imagenet" or a path) into ``model`` built by :func:`keras_resnet.resnet`.

    The classifier is loaded only when the checkpoint has one of the same shape; otherwise the
    backbone is loaded and one line says so: ``say`` gets it (default: printed to stderr with "kres: " before it).
    ``builder`` (``keras_resnet.resnet``, passed by the caller so this module never imports the model) names the
    layers of a ``.weights.h5`` file.
    """
    check_weights(weights, depth=depth, variant=variant)
    if str(weights) == "imagenet":
        path = fetch_imagenet(depth, include_top=include_top and _num_classes(model) == 1000)
    else:
        path = Path(in_folder(os.fspath(weights)))  # a run or export folder, as --weights takes it
    return assign(model, read_checkpoint(path, builder=builder), depth=depth, variant=variant, say=say)


def check_weights(weights: str | os.PathLike | None, *, depth: int, variant: str) -> None:
    """The cheap checks, without reading anything: call it before long work (data loading)."""
    if weights is None:
        return
    depth = int(depth)
    depth_spec(depth)
    if not isinstance(weights, (str, os.PathLike)):  # weights=True was "expected str, bytes or os.PathLike object"
        raise KresError(f"weights={weights!r} names no weights: pass {_sources(depth, variant)}, or None to start "
                        "from random weights")
    if str(weights) == "imagenet":
        _check_imagenet(depth, variant)
        return
    path = checkpoint_path(weights)  # a folder said it held no best.keras to a Python caller
    if not path.exists():
        raise KresError(f"weights file {path} does not exist: pass {_sources(depth, variant)}")
    if _format(path) is None:
        raise KresError(f"cannot read weights from {path}: expected a {SUPPORTED} file")
    if _format(path) == "torch" and importlib.util.find_spec("torch") is None:
        raise KresError(_NEEDS_TORCH.format(name=path.name))


def _sources(depth: int, variant: str) -> str:
    """What ``weights`` may be for this depth and variant: 'imagenet' only where keras.applications publishes it
    (a missing file offered it for ResNet-18, which then refused it)."""
    if variant == "v1" and depth in KERAS_APPLICATIONS_HASHES:
        return f"weights='imagenet' or the path of a {SUPPORTED}"
    if variant == "v1.5":
        return (f"the path of a {SUPPORTED} (ImageNet weights: torchvision's "
                f"{TORCHVISION_URL}{TORCHVISION_FILES[depth]})")
    return f"the path of a {SUPPORTED}"


def _check_imagenet(depth: int, variant: str) -> None:
    tv_hint = (f"download torchvision's {TORCHVISION_FILES[depth]} ({TORCHVISION_URL}{TORCHVISION_FILES[depth]}) "
               f"and pass weights=PATH with variant='v1.5' (or convert it once: "
               f"kres convert-weights {TORCHVISION_FILES[depth]} --depth {depth} --output resnet{depth}.keras)")
    if variant == "v1.5":
        raise KresError(f"weights='imagenet' downloads keras.applications' v1 files only: for v1.5 {tv_hint}; "
                        f"or use variant='v1' (depth 50, 101, 152)")
    if depth not in KERAS_APPLICATIONS_HASHES:
        raise KresError(f"keras.applications publishes no ResNet-{depth} weights: {tv_hint}")


def _num_classes(model) -> int | None:
    names = {layer.name for layer in model.layers}
    return model.get_layer(HEAD).units if HEAD in names else None


# ---------------------------------------------------------------------------------------------- download


def imagenet_filename(depth: int, include_top: bool) -> str:
    suffix = "" if include_top else "_notop"
    return f"resnet{depth}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"


def keras_cache_dir() -> Path:
    """Where ``keras.utils.get_file`` keeps models: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def fetch_imagenet(depth: int, include_top: bool) -> Path:
    """The cached, md5-checked keras.applications file; downloaded on first use."""
    import keras

    fname = imagenet_filename(depth, include_top)
    file_hash = KERAS_APPLICATIONS_HASHES[depth][0 if include_top else 1]
    cache = keras_cache_dir()
    try:
        # Keras's "Downloading data from ..." and its progress bar are progress: stderr, not the result stream
        with _socket_timeout(DOWNLOAD_TIMEOUT_S), contextlib.redirect_stdout(sys.stderr):
            path = keras.utils.get_file(fname, KERAS_APPLICATIONS_URL + fname, cache_dir=str(cache.parent),
                                        cache_subdir=cache.name, file_hash=file_hash, hash_algorithm="md5")
    except Exception as err:  # urllib, socket and hash errors all mean: the file is not here
        reason = " ".join(str(err).split(" -- ")[-1].split())[:160]  # keras prefixes the URL: named below
        raise KresError(
            f"cannot download {fname} ({reason}): put the file at {cache / fname} (md5 {file_hash}, from "
            f"{KERAS_APPLICATIONS_URL}{fname}) or pass weights=PATH to a local weights file") from None
    return Path(path)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


# ---------------------------------------------------------------------------------------------- readers


def in_folder(weights: str) -> str:
    """``weights`` itself, or for a run or export folder the model it holds (best.keras, else last.keras, else
    model.keras), as the other commands take such folders."""
    folder = Path(weights)
    model = runs.folder_model(folder) if folder.is_dir() else None
    return weights if model is None else str(model)


def checkpoint_path(weights: str | os.PathLike) -> Path:
    """The weights file ``weights`` names: itself, or the model of a run or export folder (:func:`in_folder`), as
    ``kres train --weights`` and ``kres convert-weights`` take it; a folder that holds none is a KresError."""
    path = Path(in_folder(os.fspath(weights)))
    if path.is_dir():
        raise KresError(f"{path} is a folder with no {', '.join(runs.FOLDER_MODELS)}: pass the model file of a run "
                        f"or export, or a {SUPPORTED} file")
    return path


def _format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".keras"):
        return "keras"
    if name.endswith(".h5") or name.endswith(".hdf5"):
        return "h5"
    if name.endswith(TORCH_SUFFIXES):
        return "torch"
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".npz"):
        return "npz"
    return None


def read_checkpoint(path: str | os.PathLike, *, builder: Builder | None = None) -> Checkpoint:
    """Read any supported weights file into a :class:`Checkpoint`; a ``.weights.h5`` file needs ``builder``."""
    path = Path(path)
    fmt = _format(path)
    if not path.is_file() or fmt is None:
        raise KresError(f"cannot read weights from {path}: expected an existing {SUPPORTED} file")
    try:
        if fmt == "keras":
            return _read_keras_file(path)
        if fmt == "h5":
            return _read_h5(path, builder)
        return Checkpoint(torchvision_to_keras(_read_state_dict(path, fmt), str(path)),
                          f"torchvision checkpoint {path}", "torchvision")
    except KresError:  # (a ValueError) already the one line: "not a torchvision ResNet state dict", ...
        raise
    except (OSError, ValueError) as err:
        raise KresError(f"cannot read {path}: {err}; is it a complete {SUPPORTED} file?") from None


def _read_h5(path: Path, builder: Builder | None) -> Checkpoint:
    import h5py

    with h5py.File(path, "r") as f:
        root = f.get("model_weights", f)
        if "layer_names" in root.attrs:
            return Checkpoint(_legacy_h5_layers(root), f"keras.applications-layout file {path}",
                              "keras.applications")
        if "layers" in f:
            return Checkpoint(_keras3_h5_layers(f, path, builder=builder), f"Keras weights file {path}", "keras")
    raise KresError(f"{path} is neither a keras.applications-layout .h5 nor a Keras 3 .weights.h5 file")


def _legacy_h5_layers(root) -> dict[str, list[np.ndarray]]:
    """The layout of keras.applications' files: one group per layer, ``weight_names`` in order."""
    layers: dict[str, list[np.ndarray]] = {}
    for raw in root.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        group = root[name]
        weight_names = [w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs.get("weight_names", [])]
        if weight_names:
            # The published files name the classifier "probs" (keras_applications' resnet_common).
            layers[HEAD if name == "probs" else name] = [np.asarray(group[w]) for w in weight_names]
    return layers


_CLASS_KEYS = {"conv2d": "Conv2D", "batch_normalization": "BatchNormalization", "dense": "Dense"}


def _keras3_h5_layers(f, path: Path, layer_names: dict[str, list[str]] | None = None, *,
                      builder: Builder | None = None) -> dict[str, list[np.ndarray]]:
    """Keras 3 stores a functional model's layers as ``layers/<class>[_n]/vars/<i>``, numbered by class.

    ``layer_names`` maps each class to the layer names in model order (from a ``.keras`` config);
    without it the file must come from a keras_resnet model, whose layer order is fixed by depth and stem, and
    ``builder`` builds that model.
    """
    groups = f["layers"]
    by_class: dict[str, list[tuple[int, list[np.ndarray]]]] = {key: [] for key in _CLASS_KEYS}
    for key in groups:
        match = re.fullmatch(r"(conv2d|batch_normalization|dense)(?:_(\d+))?", key)
        if not match or "vars" not in groups[key]:
            continue
        var_group = groups[key]["vars"]
        arrays = [np.asarray(var_group[str(i)]) for i in range(len(var_group))]
        by_class[match[1]].append((int(match[2] or 0), arrays))
    if layer_names is None:
        layer_names = _reference_names(by_class, path, builder)
    layers: dict[str, list[np.ndarray]] = {}
    for key, entries in by_class.items():
        names = layer_names.get(_CLASS_KEYS[key], [])
        for (_, arrays), name in zip(sorted(entries, key=lambda e: e[0]), names):
            layers[name] = arrays
        if len(entries) > len(names):  # more layers than the reference: name the surplus ordinally
            for ordinal, arrays in sorted(entries, key=lambda e: e[0])[len(names):]:
                layers[f"{key}_{ordinal}"] = arrays
    return layers


def _reference_names(by_class, path: Path, builder: Builder | None) -> dict[str, list[str]]:
    """Layer names of the keras_resnet model whose conv count and stem match the file, built by ``builder``."""
    convs = by_class["conv2d"]
    if not convs:
        raise KresError(f"{path} holds no convolution weights: it is not a keras_resnet weights file")
    first = min(convs, key=lambda e: e[0])[1]
    depth = next((d for d in DEPTHS if _conv_count(d) == len(convs)), None)
    if depth is None:
        raise KresError(f"{path} has {len(convs)} convolutions, which matches no ResNet depth: "
                        f"it is not a keras_resnet .weights.h5 file")
    if builder is None:
        raise KresError(f"reading the Keras weights file {path} needs the model builder: "
                        f"pass builder=keras_resnet.resnet, or load it with keras_resnet.resnet(weights=PATH)")
    model = builder(depth, include_top=True, num_classes=1, input_shape=(None, None, 3),
                    variant="v1" if len(first) == 2 else "v1.5",
                    stem=_stem_of(first))
    names: dict[str, list[str]] = {}
    for layer in model.layers:
        if type(layer).__name__ in _CLASS_KEYS.values():
            names.setdefault(type(layer).__name__, []).append(layer.name)
    return names


def _conv_count(depth: int) -> int:
    """Stem conv, the convs of every block, and one projection per stage (none in stage 2 of basic blocks)."""
    spec = depth_spec(depth)
    per_block = 3 if spec.block == "bottleneck" else 2
    return 1 + per_block * sum(spec.repeats) + (4 if spec.block == "bottleneck" else 3)


def _read_keras_file(path: Path) -> Checkpoint:
    """A ``.keras`` zip: the config names the layers, ``model.weights.h5`` holds them by class ordinal."""
    import io
    import json
    import zipfile

    import h5py

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            data = io.BytesIO(archive.read("model.weights.h5"))
    except (zipfile.BadZipFile, KeyError) as err:
        raise KresError(f"{path} is not a valid .keras file ({err}); save it again with model.save()") from None
    names: dict[str, list[str]] = {}
    for layer in _config_layers(config):
        names.setdefault(layer["class_name"], []).append(layer["config"]["name"])
    with h5py.File(data, "r") as f:
        return Checkpoint(_keras3_h5_layers(f, path, names), f"Keras model {path}", "keras")


def _config_layers(config: dict) -> list[dict]:
    inner = config.get("config", {})
    if "layers" not in inner:
        raise KresError("the .keras file does not hold a functional model: save a model built by keras_resnet")
    return inner["layers"]


def _read_state_dict(path: Path, fmt: str) -> dict[str, np.ndarray]:
    if fmt == "torch":
        try:
            import torch
        except ImportError:
            raise KresError(_NEEDS_TORCH.format(name=path.name)) from None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError, RuntimeError (bad zip), EOFError ...: a damaged file
            raise _damaged(path, "PyTorch", err) from None
        for key in ("state_dict", "model"):  # training checkpoints wrap the state dict
            if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
                state = state[key]
        if not isinstance(state, Mapping):
            raise KresError(f"{path} holds a {type(state).__name__}, not a state dict: save model.state_dict()")
        return {k: v.detach().float().numpy() for k, v in state.items() if hasattr(v, "numpy")}
    if fmt == "safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise KresError(f"reading {path.name} needs the safetensors package: pip install safetensors") from None
        try:
            return dict(load_file(str(path)))
        except Exception as err:  # safetensors raises its own SafetensorError for a bad header or size
            raise _damaged(path, "safetensors", err) from None
    with open(path, "rb") as handle:  # np.load tries pickle on anything else, and its error offers allow_pickle=
        if handle.read(2) != b"PK":
            raise KresError(f"cannot read {path}: it is not a weights file (an .npz is a zip archive of arrays, as "
                            "numpy.savez writes)")
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except Exception as err:  # BadZipFile, EOFError, ValueError ...
        raise _damaged(path, "NumPy .npz", err) from None


def _damaged(path: Path, kind: str, err: Exception) -> KresError:
    detail = _shortened((str(err).strip().splitlines() or [""])[0])
    return KresError(f"cannot read {path}: not a complete {kind} weights file ({type(err).__name__}: {detail}); "
                     "download or convert it again")


def _shortened(text: str, limit: int = 160) -> str:
    """``text`` up to ``limit`` characters, cut after a sentence or between words (torch's weights_only message
    was cut at "Re-running `torch.")."""
    if len(text) <= limit:
        return text
    sentence, space = text.rfind(". ", 0, limit), text.rfind(" ", 0, limit)
    if sentence > 0:
        return text[:sentence + 1]
    return text[:space if space > 0 else limit] + " ..."


# ---------------------------------------------------------------------------------------------- torchvision

_TV_STEM = {"conv1": "conv1_conv", "bn1": "conv1_bn", "fc": HEAD}
_TV_BLOCK = re.compile(r"layer([1-4])\.(\d+)\.(?:(conv|bn)([1-3])|downsample\.([01]))$")
_TV_PARAMS = {
    "conv": ("weight",),
    "bn": ("weight", "bias", "running_mean", "running_var"),
    "dense": ("weight", "bias"),
}


def import_torchvision():
    """Import torchvision's model code, under a CPU-only torch too, or raise ImportError saying why.

    A CPU-only torch cannot load a CUDA build of torchvision's compiled operators; its model code is pure Python
    and imports once the module that registers those operators is replaced by an empty stub.
    """
    import torch  # noqa: F401  (ImportError: no torch)

    try:
        return importlib.import_module("torchvision")
    except Exception:  # a CUDA torchvision under CPU torch raises at operator registration
        _compat.stub_torchvision_operators()
        try:
            return importlib.import_module("torchvision")
        except Exception as err:
            raise ImportError(f"torchvision cannot be imported ({err}); "
                              "install it with pip install --no-deps torchvision") from err


def torchvision_layer_name(module: str) -> tuple[str, str] | None:
    """``"layer2.0.downsample.1"`` -> ``("conv3_block1_0_bn", "bn")``; None for a module we do not know."""
    if module in _TV_STEM:
        name = _TV_STEM[module]
        return name, "dense" if name == HEAD else name.rsplit("_", 1)[1]
    match = _TV_BLOCK.fullmatch(module)
    if not match:
        return None
    stage, index, kind, number, down = match.groups()
    prefix = f"conv{int(stage) + 1}_block{int(index) + 1}"
    if down is not None:
        return (f"{prefix}_0_conv", "conv") if down == "0" else (f"{prefix}_0_bn", "bn")
    return f"{prefix}_{number}_{kind}", kind


def torchvision_to_keras(state: Mapping[str, np.ndarray], source: str = "checkpoint") -> dict[str, list[np.ndarray]]:
    """Map a torchvision ResNet state dict onto keras_resnet (v1.5) layer names and layouts.

    Conv kernels OIHW -> HWIO; BN weight, bias, running_mean, running_var -> gamma, beta, moving_mean,
    moving_variance; fc (out, in) -> (in, out).
    """
    modules: dict[str, dict[str, np.ndarray]] = {}
    first_key: dict[str, str] = {}  # module -> one of its keys as the file spells it, for the error below
    for key, value in state.items():
        module, _, param = key.removeprefix("module.").rpartition(".")  # "module.": saved from DataParallel
        if param == "num_batches_tracked":
            continue
        modules.setdefault(module, {})[param] = np.asarray(value, dtype=np.float32)
        first_key.setdefault(module, key)
    layers: dict[str, list[np.ndarray]] = {}
    for module, params in modules.items():
        target = torchvision_layer_name(module)
        if target is None:
            raise KresError(f"{source} is not a torchvision ResNet state dict: unexpected key {first_key[module]!r}")
        name, kind = target
        missing = [p for p in _TV_PARAMS[kind] if p not in params]
        if missing:
            raise KresError(f"{source} is incomplete: {module}.{missing[0]} is missing")
        arrays = [params[p] for p in _TV_PARAMS[kind]]
        if kind == "conv":
            arrays = [arrays[0].transpose(2, 3, 1, 0)]
        elif kind == "dense":
            arrays = [arrays[0].T, arrays[1]]
        layers[name] = arrays
    if "conv1_conv" not in layers:
        raise KresError(f"{source} is not a torchvision ResNet state dict: conv1.weight is missing")
    return layers


# ---------------------------------------------------------------------------------------------- assignment


def assign(model, checkpoint: Checkpoint, *, depth: int, variant: str,
           say: Callable[[str], None] | None = None,
           shape_fix: str = "pass the depth (and stem) the checkpoint was made for") -> LoadReport:
    """Check every layer of ``model`` against ``checkpoint`` (in model order), then copy the arrays; a classifier
    left as initialised is one line to ``say`` (default: stderr). ``shape_fix`` ends a shape mismatch's message
    (convert-weights, which reads the stem off the checkpoint, has no stem to pass).

    Nothing is written unless the whole backbone fits, so a failed load leaves the model as it was.
    """
    if checkpoint.variant != variant:
        hint = ("torchvision weights are v1.5" if checkpoint.kind == "torchvision"
                else f"its convolutions {'have' if checkpoint.variant == 'v1' else 'lack'} biases")
        raise KresError(f"{checkpoint.source} holds {checkpoint.variant} weights ({hint}): "
                        f"build the model with variant='{checkpoint.variant}'")
    targets = [layer for layer in model.layers if layer.weights]
    names = {layer.name for layer in targets}
    misfit = f"{checkpoint.source} does not fit ResNet-{depth} ({variant}): first mismatching layer"
    for layer in targets:
        if layer.name == HEAD:
            continue
        expected = [tuple(w.shape) for w in layer.weights]
        arrays = checkpoint.layers.get(layer.name)
        if arrays is None:
            raise KresError(f"{misfit} {layer.name} is missing from it; "
                            f"{_depth_fix(checkpoint, depth, 'pass the depth the checkpoint was made for')}")
        found = [tuple(a.shape) for a in arrays]
        if found != expected:
            raise KresError(f"{misfit} {layer.name} expects shapes {_shapes(expected)}, the checkpoint has "
                            f"{_shapes(found)}; "
                            f"{_depth_fix(checkpoint, depth, shape_fix)}")
    extra = [name for name in checkpoint.layers if name not in names and name != HEAD]
    if extra:
        raise KresError(f"{misfit} {extra[0]} is in the checkpoint but not in the model; "
                        f"{_depth_fix(checkpoint, depth, 'pass the depth the checkpoint was made for')}")

    loaded = 0
    for layer in targets:
        if layer.name != HEAD:
            layer.set_weights(checkpoint.layers[layer.name])
            loaded += 1
    head_loaded, note = _assign_head(model, checkpoint, names)
    if note:
        (say or _to_stderr)(note)
    return LoadReport(checkpoint.source, loaded + head_loaded, head_loaded, note)


_FIRST_CONV = re.compile(r"conv([2-5])_block(\d+)_1_conv")


def checkpoint_depth(layers: Mapping[str, object]) -> int | None:
    """The depth whose blocks a checkpoint's layer names hold (each stage's last block, basic or bottleneck), or
    None where they match no depth."""
    repeats = [0, 0, 0, 0]
    for name in layers:
        if found := _FIRST_CONV.fullmatch(name):
            stage = int(found[1]) - 2
            repeats[stage] = max(repeats[stage], int(found[2]))
    block = "bottleneck" if "conv2_block1_3_conv" in layers else "basic"
    return next((d for d, spec in DEPTHS.items() if spec.block == block and spec.repeats == tuple(repeats)), None)


def checkpoint_stem(layers: Mapping[str, Sequence[np.ndarray]]) -> str:
    """The stem a checkpoint's first convolution was made for (:func:`_stem_of`)."""
    return _stem_of(layers.get("conv1_conv"))


def _stem_of(first_conv: Sequence[np.ndarray] | None) -> str:
    """The stem a first convolution's arrays (kernel first) were made for: "cifar" for a 3x3 kernel, else
    "imagenet" (7x7)."""
    return "cifar" if first_conv and first_conv[0].shape[0] == 3 else "imagenet"


def _depth_fix(checkpoint: Checkpoint, depth: int, unknown: str) -> str:
    """'it was made for ResNet-18: pass depth=18' where its layer names tell another depth; else ``unknown``."""
    made_for = checkpoint_depth(checkpoint.layers)
    if made_for is None or made_for == depth:
        return unknown
    return f"it was made for ResNet-{made_for}: pass depth={made_for}"


def _to_stderr(note: str) -> None:
    print(f"kres: {note}", file=sys.stderr)


def _assign_head(model, checkpoint: Checkpoint, names: set[str]) -> tuple[bool, str]:
    source_head = checkpoint.layers.get(HEAD)
    source_classes = source_head[0].shape[-1] if source_head else None
    if HEAD not in names:
        if source_head is None:
            return False, ""
        return False, (f"loaded the backbone from {checkpoint.source}; its {source_classes}-class classifier is "
                       f"not used (model built without a top)")
    layer = model.get_layer(HEAD)
    if source_head is not None and [tuple(a.shape) for a in source_head] == [tuple(w.shape) for w in layer.weights]:
        layer.set_weights(source_head)
        return True, ""
    what = "has no classifier" if source_head is None else f"has a {source_classes}-class classifier"
    return False, (f"loaded the backbone from {checkpoint.source}; it {what}, so the {layer.units}-class "
                   f"'{HEAD}' layer keeps its fresh initialisation")


def _shapes(shapes: list[tuple]) -> str:
    return ", ".join("x".join(map(str, s)) for s in shapes) or "none"
