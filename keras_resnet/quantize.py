"""Keras model -> TFLite flatbuffer (float32, float16, dynamic range, full-integer int8), and what is inside one.

Every model is converted with a static batch of 1: that is what phones and the Edge TPU run, and it keeps
every tensor shape static. Full-integer int8 uses per-channel convolution weights, per-tensor dense weights
(unless asked otherwise) and only ``TFLITE_BUILTINS_INT8``, so no Flex (Select-TF) op can slip in;
:func:`inspect_tflite` reads the flatbuffer to prove it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_resnet import _compat, fileio
from keras_resnet.errors import KresError, first_line

# TensorFlow is imported inside the functions, so the CLI can read these names without starting it.
QUANTIZE_MODES = ("float32", "float16", "dynamic", "int8")
IO_DTYPES = ("uint8", "int8")

RepresentativeData = Callable[[], Iterable[np.ndarray]]
"""Returns an iterable of float32 raw-pixel batches ``[1, H, W, 3]`` for int8 calibration."""


def check_mode(mode: str) -> str:
    if mode not in QUANTIZE_MODES:
        raise KresError(f"unknown quantize mode {mode!r}: choose one of {', '.join(QUANTIZE_MODES)}")
    return mode


def check_io_dtype(io_dtype: str) -> str:
    if io_dtype not in IO_DTYPES:
        raise KresError(f"unknown --io-dtype {io_dtype!r}: choose one of {', '.join(IO_DTYPES)}")
    return io_dtype


def batch1_shape(model) -> list[int]:
    """``[1, H, W, C]`` of a model with a fixed input size; a KresError for one that takes any size (TFLite
    needs one, and the calibration and accuracy images are resized to it)."""
    shape = [1, *model.input_shape[1:]]
    if any(d is None for d in shape):
        raise KresError(f"the model takes any image size (input {tuple(model.input_shape)}): export needs a fixed "
                        "one: build it again with input_shape=(224, 224, 3) (or the size it was trained at), load its "
                        "weights and save it")
    return shape


def fuse_input_ops(model, *, rows: bool = True):
    """The same function with a cheaper input end, for TFLite; ``model`` itself if it has no ``preprocess`` layer
    or has a graph this rewrite does not know.

    * The ``preprocess`` Rescaling (per-channel ``x * scale + offset``) becomes a 1x1 DepthwiseConv2D with those
      numbers as kernel and bias: one op instead of a broadcast MUL and ADD, which in int8 cost ResNet-50 about
      1.2 ms of 11.2 per image on one core. With ``rows`` the image is viewed as rows of W*3 channels around it
      (see :func:`_as_depthwise`), so the op costs about 0.06 ms. The arithmetic is the same, so float outputs
      are unchanged.
    * v1's RGB -> BGR slice is folded into conv1 by reversing its kernel's input channels (through the padding
      between them). XNNPACK does not take a reversing StridedSlice, so it split the graph in two.

    The trained model is left untouched: layers are shared with it, and conv1 gets a new layer only when the flip
    is folded. The rewrite is exact up to the order of conv1's sums over its three input channels.
    """
    import keras

    try:
        preprocess = model.get_layer("preprocess")
    except ValueError:
        return model
    if not isinstance(preprocess, keras.layers.Rescaling):
        return model
    from keras_resnet.model import is_channel_flip

    tensors: dict[int, object] = {}  # id of a tensor of ``model`` -> the new graph's tensor for it
    flipped: set[int] = set()  # ids of ``model``'s tensors whose new tensor has the channels in reverse order
    for node in _compat.graph_nodes(model):  # inputs first
        op = node.operation
        if len(node.output_tensors) != 1:
            return model
        old_out = node.output_tensors[0]
        if isinstance(op, keras.layers.InputLayer):
            tensors[id(old_out)] = keras.Input(batch_shape=old_out.shape, dtype=old_out.dtype, name=op.name)
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        from_flipped = any(id(t) in flipped for t in node.input_tensors)
        if op is preprocess and len(args) == 1 and not kwargs:
            out = _as_depthwise(preprocess, args[0], rows)
        elif is_channel_flip(node) and not from_flipped:
            out = args[0]  # the slice is dropped here and applied to the next conv's kernel
            flipped.add(id(old_out))
        elif from_flipped:
            out = _after_flip(op, node, args, kwargs, flipped)
            if out is None:
                return model
        else:
            out = op(*args, **kwargs)
        tensors[id(old_out)] = out
    if any(id(t) in flipped for t in model.outputs):
        return model
    new = keras.tree.map_structure(lambda t: tensors[id(t)], (model.input, model.output))
    return keras.Model(*new, name=model.name)


def _after_flip(op, node, args, kwargs, flipped: set[int]):
    """An op on channel-reversed input: padding passes the flip on, the first conv absorbs it; None for any
    other op (the rewrite then leaves the model as it was)."""
    import keras

    if len(node.input_tensors) != 1 or kwargs or getattr(op, "data_format", "channels_last") != "channels_last":
        return None
    if isinstance(op, keras.layers.ZeroPadding2D):
        flipped.add(id(node.output_tensors[0]))
        return op(args[0])
    if type(op) is keras.layers.Conv2D:
        return _conv_with_reversed_input(op, args[0])
    return None


def _as_depthwise(rescaling, x, rows: bool):
    """``rescaling(x)`` as a 1x1 DepthwiseConv2D. XNNPACK's depthwise kernels run along channels, so with ``rows``
    a 3-channel image is first viewed as rows of W*3 channels (two reshapes; the kernel repeats the 3 numbers W
    times): 0.3 ms less than the plain 3-channel op on int8 ResNet-50. Without ``rows`` (Edge TPU models: Coral
    warns that large reshapes may not map, and an unmapped first op would leave the whole model on the CPU) it
    is the plain 3-channel op."""
    import keras

    height, width, channels = x.shape[1:]
    repeat = width if rows and height is not None and width is not None else 1
    scale = np.broadcast_to(np.asarray(rescaling.scale, np.float32), (channels,))
    offset = np.broadcast_to(np.asarray(rescaling.offset, np.float32), (channels,))
    policy = rescaling.dtype_policy
    if repeat > 1:
        x = keras.layers.Reshape((height, 1, width * channels), name=f"{rescaling.name}_rows", dtype=policy)(x)
    depthwise = keras.layers.DepthwiseConv2D(1, use_bias=True, name=rescaling.name, dtype=policy,
                                             trainable=False)  # fixed input statistics, also under QAT
    out = depthwise(x)
    depthwise.set_weights([np.tile(scale, repeat).reshape(1, 1, channels * repeat, 1), np.tile(offset, repeat)])
    if repeat > 1:
        out = keras.layers.Reshape((height, width, channels), name=f"{rescaling.name}_pixels", dtype=policy)(out)
    return out


def _conv_with_reversed_input(conv, x):
    import keras

    twin = keras.layers.Conv2D.from_config(conv.get_config())
    out = twin(x)
    kernel, *rest = conv.get_weights()
    twin.set_weights([kernel[:, :, ::-1, :], *rest])
    return out


def convert(model, mode: str = "float32", representative_data: RepresentativeData | None = None,
            io_dtype: str = "uint8", *, edgetpu: bool = False, per_channel_dense: bool = False,
            log: str | os.PathLike | None = None, work_dir: str | os.PathLike | None = None,
            output: str | None = None) -> bytes:
    """Convert a float32 Keras model to a TFLite flatbuffer whose ``serving_default`` signature takes ``image``
    and returns ``{output: scores}``, named as the SavedModel export names them.

    Args:
        model: a float32-policy Keras model taking raw 0-255 pixels.
        mode: "float32", "float16" (float16 weights), "dynamic" (int8 weights, float activations) or
            "int8" (full integer: per-channel int8 weights, int8 activations, ``io_dtype`` input and output).
        representative_data: calibration batches; required for "int8".
        io_dtype: "uint8" (raw pixels go straight in) or "int8", for "int8" mode only.
        edgetpu: the model is for the Edge TPU: its input end avoids large reshapes (:func:`fuse_input_ops`),
            and its dense weights are per-tensor whatever ``per_channel_dense`` says.
        per_channel_dense: "int8" dense (FULLY_CONNECTED) weights with one scale per output unit. Only
            XNNPACK takes those: NNAPI, the Edge TPU compiler and TFLite Micro need one scale per tensor.
        log: file the converter's own output is appended to (None: discarded), see :func:`converter_chatter_to`.
        work_dir: folder for the converter's SavedModel (None: the system's temporary folder); an output folder,
            where the next kres command on it removes what a killed conversion left.
        output: the signature's output name (None: the model's own, :func:`batch1_saved_model`; QAT's wrapped
            model passes its float model's).
    """
    import tensorflow as tf

    check_mode(mode)
    check_io_dtype(io_dtype)
    if mode == "int8" and representative_data is None:
        raise KresError("int8 quantization needs calibration images: export from a run directory, or pass "
                        "representative data")
    # Beside the artifacts, where a killed export's SavedModel (as large as the weights) is cleaned up next time;
    # in the system's temporary folder where the artifacts' device has no room for it and the model besides.
    room = work_dir is not None and (fileio.free_bytes(work_dir) or 0) > 2 * weights_bytes(model)
    work = tempfile.TemporaryDirectory(dir=work_dir if room else None, prefix=fileio.CONVERT_TEMP_PREFIX)
    with work as tmp, converter_chatter_to(log):
        converter = tf.lite.TFLiteConverter.from_saved_model(batch1_saved_model(fuse_input_ops(model, rows=not edgetpu),
                                                                                tmp, output))
        configure(converter, mode, representative_data, io_dtype, per_channel_dense and not edgetpu)
        try:
            return converter.convert()
        except Exception as err:  # the converter raises ConverterError and friends, with multi-line text
            where = f" (the converter's log: {log})" if log is not None else ""
            raise KresError(f"TFLite conversion ({mode}) failed: {first_line(err)}{where}") from err


def configure(converter, mode: str, representative_data, io_dtype: str, per_channel_dense: bool) -> None:
    """Set ``converter`` up for ``mode``: the one place an exported model's (and the debugger's) settings live."""
    import tensorflow as tf

    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([np.asarray(x, np.float32)] for x in representative_data())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.as_dtype(io_dtype)
        converter.inference_output_type = tf.as_dtype(io_dtype)
        _compat.set_per_channel_dense(converter, per_channel_dense)
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]


def weights_bytes(model) -> int:
    """What a saved model needs at least: its weights (the graph and metadata add a little)."""
    # Keras 3 names a dtype ("float32"); tf_keras (QAT's models) gives a tf.DType, which numpy cannot read.
    return sum(int(np.prod(w.shape)) * (getattr(w.dtype, "size", None) or np.dtype(w.dtype).itemsize)
               for w in model.weights)


def batch1_saved_model(model, directory: str | os.PathLike, output: str | None = None) -> str:
    """``model``'s forward pass with a static ``[1, H, W, C]`` float32 input returning ``{output: scores}`` (None:
    the model's own name, :func:`keras_resnet.meta.model_output_name`), written as a SavedModel (a model of several
    outputs keeps its own names): the converter's supported route (from concrete functions without a trackable
    object is its deprecated path). A bare tensor would name the .tflite signature's output "output_0"."""
    import keras
    import tensorflow as tf

    from keras_resnet.meta import model_output_name  # not at the top: meta imports Keras (see QUANTIZE_MODES)

    output = output or model_output_name(model)

    shape = batch1_shape(model)
    archive = keras.export.ExportArchive()  # the endpoint tracks the variables it uses: track(model) stored each
    # weight a second time (keras #23553, Keras 3.15), for the converter to read
    archive.add_endpoint("serving_default", lambda image: _named(model(image, training=False), output),
                         input_signature=[tf.TensorSpec(shape, tf.float32, name="image")])
    archive.write_out(os.fspath(directory), verbose=False)
    return os.fspath(directory)


def _named(scores, output: str):
    """A classifier's one output as ``{output: scores}``; a model of several (``feature_model``'s C2-C5) keeps its
    own names, which the converter cannot nest under one."""
    return scores if isinstance(scores, (dict, list, tuple)) else {output: scores}


CONVERTER_LOG = "converter.log"  # an export's file for what the TFLite converter prints, kept off the terminal


@contextlib.contextmanager
def converter_chatter_to(log: str | os.PathLike | None) -> Iterator[None]:
    """Send what the converter prints (C++ logging on file descriptors 1 and 2, absl and Python warnings) to
    ``log`` (appended; discarded when None) rather than the user's terminal. Errors still raise."""
    import logging
    import warnings

    sink = open(log if log is not None else os.devnull, "a")  # noqa: SIM115 (closed below)
    saved = []
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    handler = logging.StreamHandler(sink)
    absl = logging.getLogger("absl")
    propagate = absl.propagate
    try:
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
            os.dup2(sink.fileno(), fd)
        absl.addHandler(handler)
        absl.propagate = False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for w in caught:
                    sink.write(f"{w.category.__name__}: {w.message}\n")
    finally:
        absl.propagate = propagate  # a failed conversion left absl's records going nowhere, for a library caller
        absl.removeHandler(handler)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sink.flush()
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        sink.close()


# --- what is inside a flatbuffer -----------------------------------------------------------------------------

_TYPE_NAMES: dict[int, str] = {}
_OP_NAMES: dict[int, str] = {}


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    if not _OP_NAMES:
        _OP_NAMES.update({v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")})
        _TYPE_NAMES.update({v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")})
    return schema


@dataclass
class TensorInfo:
    name: str
    dtype: str  # "uint8", "int8", "float32", ...
    shape: list[int]
    shape_signature: list[int]  # -1 marks a dynamic dimension
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    constant: bool = False  # weights, biases and shape operands: data stored in the flatbuffer

    @property
    def static(self) -> bool:
        return all(d >= 0 for d in self.shape_signature)

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


# Ops with a weight tensor, quantized per-tensor or per-channel.
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


@dataclass
class OpInfo:
    """One operator of the main subgraph: its builtin name, the opcode version and its tensors."""

    name: str
    version: int
    inputs: list[TensorInfo]  # optional inputs the op leaves out (index -1) are skipped
    outputs: list[TensorInfo]

    @property
    def weights(self) -> TensorInfo | None:
        # the second input for all four (TRANSPOSE_CONV's first is the output shape)
        return self.inputs[1] if self.name in WEIGHTED_OPS and len(self.inputs) > 1 else None


@dataclass
class TfliteInfo:
    size_bytes: int
    ops: dict[str, int]  # op name -> count, in first-use order
    op_sequence: list[str]  # one name per operator of the main subgraph, in execution order
    subgraphs: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    tensors: list[TensorInfo]  # every tensor of every subgraph
    custom_ops: list[str]  # custom codes, e.g. "FlexConv2D"
    operators: list[OpInfo] = field(default_factory=list)  # the main subgraph's, in execution order
    op_versions: dict[str, int] = field(default_factory=dict)  # op name -> highest opcode version used
    min_runtime_version: str | None = None  # the converter's "min_runtime_version" metadata

    def weight_quantization(self) -> dict[str, str]:
        """Weighted op kind -> "per-channel", "per-tensor" or "mixed", for ops whose weights are integers."""
        kinds: dict[str, set[bool]] = {}
        for op in self.operators:
            w = op.weights
            if w is not None and w.dtype in ("int8", "uint8", "int16", "int4") and w.scale:
                kinds.setdefault(op.name, set()).add(w.per_channel)
        return {name: "mixed" if len(v) > 1 else ("per-channel" if True in v else "per-tensor")
                for name, v in kinds.items()}

    @property
    def flex_ops(self) -> list[str]:
        return [op for op in self.custom_ops if op.startswith("Flex")]

    def summary(self) -> dict:
        io = [{"name": t.name, "dtype": t.dtype, "shape": t.shape, "scale": t.scale[:1], "zero_point": t.zero_point[:1]}
              for t in self.inputs + self.outputs]
        return {"size_bytes": self.size_bytes, "subgraphs": self.subgraphs, "ops": self.ops,
                "op_versions": self.op_versions, "min_runtime_version": self.min_runtime_version,
                "weight_quantization": self.weight_quantization(),
                "flex_ops": self.flex_ops, "inputs": io[: len(self.inputs)], "outputs": io[len(self.inputs):]}


def _tensor_info(t, buffers=None) -> TensorInfo:
    q = t.quantization
    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    sig = [int(d) for d in t.shapeSignature] if t.shapeSignature is not None and len(t.shapeSignature) else shape
    name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
    scale = [float(s) for s in q.scale] if q is not None and q.scale is not None else []
    zp = [int(z) for z in q.zeroPoint] if q is not None and q.zeroPoint is not None else []
    constant = bool(buffers and 0 < t.buffer < len(buffers) and buffers[t.buffer].data is not None
                    and len(buffers[t.buffer].data))
    return TensorInfo(name, _TYPE_NAMES.get(t.type, str(t.type)), shape, sig, scale, zp, constant)


def _min_runtime_version(model) -> str | None:
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name)
        if name == "min_runtime_version" and 0 <= entry.buffer < len(model.buffers or []):
            data = model.buffers[entry.buffer].data
            if data is not None:
                return bytes(bytearray(data)).split(b"\0")[0].decode(errors="replace") or None
    return None


def inspect_tflite(content: bytes) -> TfliteInfo:
    """Ops, tensor types and shapes, quantization parameters and subgraphs, read from the flatbuffer itself."""
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    except Exception as err:
        raise KresError(f"not a TFLite flatbuffer ({type(err).__name__}): re-export the model") from None
    names, custom, versions = [], [], []
    for code in model.operatorCodes or []:
        versions.append(int(code.version or 1))
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = _OP_NAMES.get(builtin, f"OP_{builtin}")
        if name == "CUSTOM":
            custom_code = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
            custom.append(custom_code)
            name = custom_code
        names.append(name)
    ops: Counter[str] = Counter()
    sequence: list[str] = []
    tensors: list[TensorInfo] = []
    for index, graph in enumerate(model.subgraphs or []):
        graph_tensors = [_tensor_info(t, model.buffers) for t in graph.tensors or []]
        tensors.extend(graph_tensors)
        for op in graph.operators or []:
            ops[names[op.opcodeIndex]] += 1
            if index == 0:
                sequence.append(names[op.opcodeIndex])
    op_versions: dict[str, int] = {}
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            name = names[op.opcodeIndex]
            op_versions[name] = max(op_versions.get(name, 0), versions[op.opcodeIndex])
    main = model.subgraphs[0]
    main_tensors = [_tensor_info(t, model.buffers) for t in main.tensors]
    operators = [OpInfo(names[op.opcodeIndex], versions[op.opcodeIndex],
                        [main_tensors[i] for i in (op.inputs if op.inputs is not None else []) if i >= 0],
                        [main_tensors[i] for i in (op.outputs if op.outputs is not None else []) if i >= 0])
                 for op in main.operators or []]
    return TfliteInfo(
        size_bytes=len(content), ops=dict(ops), op_sequence=sequence, subgraphs=len(model.subgraphs),
        inputs=[main_tensors[i] for i in main.inputs], outputs=[main_tensors[i] for i in main.outputs],
        tensors=tensors, custom_ops=custom, operators=operators, op_versions=op_versions,
        min_runtime_version=_min_runtime_version(model),
    )


def require_builtin_only(info: TfliteInfo) -> None:
    """Fail when the flatbuffer needs the Flex delegate (Select TF ops) or any other custom op."""
    if info.custom_ops:
        raise KresError(f"the TFLite model contains non-builtin ops {sorted(set(info.custom_ops))}: they need the "
                        "Flex delegate, which phones and the Edge TPU do not have")


def gpu_compatibility(content: bytes) -> tuple[bool, str]:
    """Run TFLite's model analyzer with ``gpu_compatibility=True``: (compatible, the analyzer's GPU remarks)."""
    import contextlib
    import io

    import tensorflow as tf

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    text = buffer.getvalue()
    remarks = [line.strip() for line in text.splitlines() if "GPU COMPATIBILITY WARNING" in line
               or "not supported by GPU" in line.lower() or "gpu delegate compatibility" in line.lower()]
    compatible = "GPU COMPATIBILITY WARNING" not in text
    return compatible, "\n".join(remarks) if remarks else "the model analyzer reports no GPU compatibility issue"


def describe_tflite(path: Path, content: bytes) -> dict:
    info = inspect_tflite(content)
    require_builtin_only(info)
    gpu_ok, gpu_text = gpu_compatibility(content)
    return {"file": path.name, **info.summary(), "gpu_delegate_compatible": gpu_ok, "gpu_analyzer": gpu_text}
