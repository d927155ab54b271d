"""Edge TPU: the static requirements check, the compiler-log parser and deploy/classify.py on the CPU."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_resnet import edgetpu
from keras_resnet.errors import KresError
from keras_resnet.quantize import convert

SIZE = 32
REPO = Path(__file__).resolve().parents[1]


def calibration(count=3):
    rng = np.random.default_rng(1)
    return lambda: (rng.uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32) for _ in range(count))


@pytest.fixture(scope="module")
def resnet18_int8(tmp_path_factory):
    from keras_resnet.model import resnet

    model = resnet(18, num_classes=3, input_shape=(SIZE, SIZE, 3), variant="v1", zero_init_residual=False)
    path = tmp_path_factory.mktemp("int8") / "model_int8.tflite"
    path.write_bytes(convert(model, "int8", calibration(), edgetpu=True))
    return path


def test_resnet18_int8_passes_the_static_check(resnet18_int8):
    report = edgetpu.check_requirements(resnet18_int8.read_bytes())
    assert report.passed, report.problems
    assert report.problems == [] and report.cpu_ops == {}
    assert set(report.ops) <= edgetpu.SUPPORTED_OPS
    assert "STRIDED_SLICE" not in report.ops and "MUL" not in report.ops  # flip in conv1, normalisation:
    assert report.ops["DEPTHWISE_CONV_2D"] == 1  # one depthwise op on the 3 channels, and no large reshape
    assert report.ops["RESHAPE"] == 2  # (for XNNPACK's sake, CPU models view the image as rows): only the head's
    # without the compiler, check() is the static check plus a note
    checked = edgetpu.check(resnet18_int8, resnet18_int8.parent, use_compiler=False)
    assert checked.passed and checked.notes == ["edgetpu_compiler not on PATH: static check only"]


def small_int8(activation: str) -> bytes:
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.Activation(activation, name="act")(x)
    x = keras.layers.Conv2D(8, 3, name="after")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    return convert(keras.Model(inputs, outputs), "int8", calibration(2))


def test_unsupported_op_is_named_and_fails_unless_allowed(tmp_path):
    path = tmp_path / "hard_swish.tflite"
    path.write_bytes(small_int8("hard_silu"))  # HARD_SWISH: an int8 TFLite kernel, but not on the Edge TPU

    report = edgetpu.check_requirements(path.read_bytes())
    assert not report.passed and not report.structural and report.cpu_ops == {"HARD_SWISH": 1}
    assert report.problems == ["ops the Edge TPU does not support (they run on the CPU): HARD_SWISH x1"]
    assert report.notes == ["the compiler maps ops only up to the first unsupported one (HARD_SWISH, op #2); "
                            "the 4 ops after it would run on the CPU too"]
    with pytest.raises(KresError, match=r"HARD_SWISH x1 \(pass --allow-cpu-ops"):
        edgetpu.check(path, tmp_path, use_compiler=False)
    assert not edgetpu.check(path, tmp_path, allow_cpu_ops=True, use_compiler=False).passed


def test_float_op_left_by_the_converter_is_caught():
    # The converter keeps ELU in float (DEQUANTIZE -> ELU -> QUANTIZE) even with TFLITE_BUILTINS_INT8 only
    report = edgetpu.check_requirements(small_int8("elu"))
    assert report.structural and "ELU" in report.cpu_ops and "DEQUANTIZE" in report.cpu_ops
    assert report.problems[0].startswith("2 non-8-bit activation tensors")


def test_float_model_fails_the_8bit_requirement(tmp_path):
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    report = edgetpu.check_requirements(convert(model, "float32"))
    assert not report.passed and report.structural
    assert report.problems[0].startswith("2 non-8-bit activation tensors")


UNMAPPED = "Operation is otherwise supported, but not mapped due to some unspecified limitation"
COMPILER_LOG = f"""\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 1571 ms.

Input model: out/model_int8.tflite
Input size: 11.19MiB
Output model: out/model_int8_edgetpu.tflite
Output size: 11.45MiB
On-chip memory used for caching model parameters: 6.98MiB
On-chip memory remaining for caching model parameters: 0.00B
Off-chip memory used for streaming uncached model parameters: 4.23MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 43
Operation log: out/model_int8_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will \
instead run on the CPU, which is slower. If possible, consider updating your model to use only operations \
supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 39
Number of operations that will run on CPU: 4

Operator                       Count      Status

QUANTIZE                       1          Mapped to Edge TPU
CONV_2D                        20         Mapped to Edge TPU
ADD                            9          Mapped to Edge TPU
PAD                            5          Mapped to Edge TPU
MAX_POOL_2D                    1          Mapped to Edge TPU
MEAN                           1          Mapped to Edge TPU
ELU                            1          Operation not supported
FULLY_CONNECTED                1          {UNMAPPED}
SOFTMAX                        1          {UNMAPPED}
QUANTIZE                       1          {UNMAPPED}
Compilation child process completed within timeout period.
Compilation succeeded!
"""


def test_compiler_log_parser():
    report = edgetpu.parse_compiler_log(COMPILER_LOG)
    assert (report.edgetpu_ops, report.cpu_ops_total, report.subgraphs) == (39, 4, 1)
    assert report.output_model == "out/model_int8_edgetpu.tflite"
    assert len(report.ops) == 10
    assert report.ops[1] == {"op": "CONV_2D", "count": 20, "status": "Mapped to Edge TPU"}
    assert report.cpu_ops == {"ELU": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1, "QUANTIZE": 1}
    assert not report.all_on_edgetpu


def test_compiler_log_parser_all_mapped():
    mapped = COMPILER_LOG.split("Model successfully compiled but")[0] + (
        "Number of operations that will run on Edge TPU: 43\nNumber of operations that will run on CPU: 0\n\n"
        "Operator                       Count      Status\n\n"
        "CONV_2D                        20         Mapped to Edge TPU\n"
        "ADD                            9          Mapped to Edge TPU\n")
    report = edgetpu.parse_compiler_log(mapped)
    assert report.all_on_edgetpu and report.cpu_ops == {} and report.cpu_ops_total == 0
    assert [row["count"] for row in report.ops] == [20, 9]


FAKE_COMPILER = """#!/bin/sh
# edgetpu_compiler -s -o DIR MODEL: writes half a model, then succeeds or fails as $FAKE_FAIL says
name=$(basename "$4" .tflite)
printf 'half' > "$3/${name}_edgetpu.tflite"
[ -n "$FAKE_FAIL" ] && { echo "Internal compiler error. Aborting!"; exit 1; }
printf ' and the rest' >> "$3/${name}_edgetpu.tflite"
echo "Output model: $3/${name}_edgetpu.tflite"
echo "Number of operations that will run on Edge TPU: 3"
echo "Number of operations that will run on CPU: 0"
"""


def test_compiler_output_appears_only_when_the_compile_succeeds(tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "edgetpu_compiler"
    exe.parent.mkdir()
    exe.write_text(FAKE_COMPILER)
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{exe.parent}:/usr/bin:/bin")
    model, out = tmp_path / "model_int8.tflite", tmp_path / "out"
    model.write_bytes(b"x")

    monkeypatch.setenv("FAKE_FAIL", "1")
    with pytest.raises(KresError, match=r"edgetpu_compiler failed \(exit 1\): Internal compiler error"):
        edgetpu.run_compiler(model, out)
    assert list(out.iterdir()) == []  # no half-written model under the final name, no temporary left

    monkeypatch.delenv("FAKE_FAIL")
    report = edgetpu.run_compiler(model, out)
    assert [p.name for p in out.iterdir()] == ["model_int8_edgetpu.tflite"]
    assert (out / "model_int8_edgetpu.tflite").read_text() == "half and the rest"
    assert report.output_model == str(out / "model_int8_edgetpu.tflite") and report.all_on_edgetpu


def _fake_compiler(tmp_path, monkeypatch, script: str | bytes) -> None:
    exe = tmp_path / "bin" / "edgetpu_compiler"
    exe.parent.mkdir()
    exe.write_bytes(script if isinstance(script, bytes) else script.encode())
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{exe.parent}:/usr/bin:/bin")


def test_compiler_outputs_are_returned_for_the_export_file_list(resnet18_int8, tmp_path, monkeypatch):
    import json

    log_too = FAKE_COMPILER.replace('echo "Output model:',
                                    'echo "compiled" > "$3/${name}_edgetpu.log"\necho "Output model:')
    _fake_compiler(tmp_path, monkeypatch, log_too)
    out = tmp_path / "out"
    report = edgetpu.check(resnet18_int8, out, use_compiler=True)
    assert report.passed and report.files == [out / "model_int8_edgetpu.log", out / "model_int8_edgetpu.tflite"]
    assert all(path.is_file() for path in report.files)
    assert sorted(out.iterdir()) == report.files  # nothing else written, no temporary folder left
    data = report.to_dict()
    assert data["compiler"]["files"] == ["model_int8_edgetpu.log", "model_int8_edgetpu.tflite"]
    json.dumps(data)  # goes into export_report.json as is
    assert edgetpu.check(resnet18_int8, out, use_compiler=False).files == []


def test_the_compilers_paths_name_the_folder_the_files_go_to(resnet18_int8, tmp_path, monkeypatch):
    """An export compiles in its staging folder: the report, the card and the moved-in log named that hidden folder
    ("Output model: out/.staged.6qx9bibp.kres-tmp/model_int8_edgetpu.tflite")."""
    log_too = FAKE_COMPILER.replace('echo "Output model:', 'echo "Input: $4" > "$3/${name}_edgetpu.log"\n'
                                    'echo "Output: $3/${name}_edgetpu.tflite" >> "$3/${name}_edgetpu.log"\n'
                                    'echo "Output model:')
    _fake_compiler(tmp_path, monkeypatch, log_too)
    out = tmp_path / "out"
    staging = out / ".staged.abcdefgh.kres-tmp"
    staging.mkdir(parents=True)
    model = staging / "model_int8.tflite"
    model.write_bytes(resnet18_int8.read_bytes())
    report = edgetpu.check(model, staging, use_compiler=True, shown_dir=out)
    assert (staging / "model_int8_edgetpu.log").read_text().splitlines() == [
        f"Input: {out / 'model_int8.tflite'}", f"Output: {out / 'model_int8_edgetpu.tflite'}"]
    assert ".staged." not in json.dumps(report.to_dict())
    assert report.to_dict()["compiler"]["output_model"] == str(out / "model_int8_edgetpu.tflite")


def test_compiler_timeout_is_one_line(tmp_path, monkeypatch):
    _fake_compiler(tmp_path, monkeypatch, "#!/bin/sh\nexec sleep 30\n")
    model, out = tmp_path / "model_int8.tflite", tmp_path / "out"
    model.write_bytes(b"x")
    with pytest.raises(KresError, match=r"^edgetpu_compiler did not finish within 1 s on model_int8.tflite: "
                                        r"check that `edgetpu_compiler --version` runs") as caught:
        edgetpu.run_compiler(model, out, timeout_s=1)
    assert "\n" not in str(caught.value)
    assert list(out.iterdir()) == []


def test_compiler_that_cannot_run_is_one_line(tmp_path, monkeypatch):
    _fake_compiler(tmp_path, monkeypatch, b"\x7fELF for another machine")  # no shebang: exec fails
    model = tmp_path / "model_int8.tflite"
    model.write_bytes(b"x")
    with pytest.raises(KresError, match=r"^edgetpu_compiler at .*/bin/edgetpu_compiler could not run \(Exec format "
                                        r"error\): reinstall it from Coral's apt repository on x86_64 Linux") as caught:
        edgetpu.run_compiler(model, tmp_path / "out")
    assert "\n" not in str(caught.value)


def test_classify_runs_on_cpu_against_an_int8_model(resnet18_int8, tmp_path):
    from PIL import Image

    (resnet18_int8.parent / "labels.txt").write_text("cat\ndog\nbird\n")
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image)
    # an "_edgetpu" name makes classify.py try the libedgetpu delegate; with no Edge TPU here it falls back
    tpu_name = resnet18_int8.with_name("model_int8_edgetpu.tflite")
    tpu_name.write_bytes(resnet18_int8.read_bytes())
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    result = subprocess.run([sys.executable, str(REPO / "deploy" / "classify.py"), str(tpu_name), str(image),
                             str(text), str(tmp_path / "gone.png"), "--top-k", "2"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 1, result.stderr  # the images that cannot be read: skipped, said, exit status 1
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "model model_int8.tflite on cpu, input 32x32, 3 labels"  # the file it runs (it named the other)
    assert lines[1].startswith(f"{image}: ") and len(lines[1].split(", ")) == 2 and len(lines) == 2
    assert any(label in lines[1] for label in ("cat", "dog", "bird"))
    # no traceback (the failed delegate's __del__, a missing or unreadable image) and no LiteRT INFO line
    err = result.stderr.splitlines()
    assert err[0].startswith("note: no Edge TPU available (") and err[0].endswith("); running on the CPU")
    gone = tmp_path / "gone.png"
    assert err[1:] == ["note: no model_int8.card.json beside model_int8.tflite: images are resized as photos are "
                       "(centre crop), which may not be how the model was trained; copy the card from the kres export "
                       "folder",
                       f"skipped: {text}: cannot be read (cannot identify image file '{text}'): pass a JPEG, PNG, "
                       "BMP, GIF, TIFF or WebP file",
                       f"skipped: {gone}: does not exist"]
    resnet18_int8.with_name("model_int8.card.json").write_text('{"input": {"resize": "center_crop"}}')
    result = subprocess.run([sys.executable, str(REPO / "deploy" / "classify.py"), str(tpu_name), str(image), "--cpu"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr  # --cpu runs the uncompiled one too
    assert result.stdout.splitlines()[0] == "model model_int8.tflite on cpu, input 32x32, 3 labels"
    for model, problem in ((tmp_path, "is not a .tflite model"), (text.with_suffix(".tflite"), "does not exist")):
        result = subprocess.run([sys.executable, str(REPO / "deploy" / "classify.py"), str(model), str(image)],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 2 and result.stderr == f"Error: {model} {problem}" + (
            ": pass the model_*.tflite file that kres export wrote\n" if model == tmp_path else "\n")


def test_classify_says_what_is_missing_beside_the_model(resnet18_int8, tmp_path):
    """A model copied to the device without labels.txt printed class numbers without a word, and without its card
    resized every image by centre crop (the built-in digits are trained full frame) without a word."""
    from PIL import Image

    model = tmp_path / "model_int8.tflite"
    model.write_bytes(resnet18_int8.read_bytes())
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image)

    def classify(*args):
        return subprocess.run([sys.executable, str(REPO / "deploy" / "classify.py"), str(model), str(image), "--cpu",
                               *args], capture_output=True, text=True, timeout=120, check=False)

    result = classify("--top-k", "3")
    assert result.returncode == 0 and result.stdout.splitlines()[0].endswith(
        ", input 32x32, no labels (classes shown by number)"), result.stderr
    ranked = result.stdout.splitlines()[1]  # each class by number
    shown = re.fullmatch(rf"{re.escape(str(image))}: (\d) \d\.\d{{3}}, (\d) \d\.\d{{3}}, (\d) \d\.\d{{3}} "
                         r"\(invoke \d+\.\d\d ms\)", ranked)
    assert shown and sorted(shown.groups()) == ["0", "1", "2"], ranked
    assert result.stderr.splitlines() == [
        "note: no model_int8.card.json beside model_int8.tflite: images are resized as photos are (centre crop), which "
        "may not be how the model was trained; copy the card from the kres export folder",
        "note: no labels.txt beside model_int8.tflite: classes are shown by number; copy it from the kres export "
        "folder"]
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    (tmp_path / "model_int8.card.json").write_text('{"input": {"resize": "center_crop"}}')
    assert classify().stderr == ("note: labels.txt holds 2 labels for the model's 3 classes: copy the labels.txt from "
                                 "this model's kres export folder\n")
    (tmp_path / "labels.txt").unlink()  # the card's labels, then
    (tmp_path / "model_int8.card.json").write_text('{"input": {"resize": "center_crop"}, "labels": ["cat"]}')
    assert classify().stderr == ("note: the card holds 1 labels for the model's 3 classes: copy the labels.txt from "
                                 "this model's kres export folder\n")
    for top_k in ("0", "-1", "two"):
        result = classify("--top-k", top_k)
        assert result.returncode == 2 and result.stdout == "", result.stdout
        assert result.stderr.splitlines()[-1].endswith(
            f"error: argument --top-k: must be a whole number, 1 or more; got '{top_k}'"), result.stderr


def test_classify_gives_the_pixels_of_predict_and_evaluation(tmp_path):
    import importlib.util
    from types import SimpleNamespace

    import tensorflow as tf
    from PIL import Image

    from keras_resnet import augment
    from keras_resnet.predict import preprocessor, read_rgb

    spec = importlib.util.spec_from_file_location("classify", REPO / "deploy" / "classify.py")
    classify = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(classify)
    photo = tmp_path / "photo.png"  # a non-square photo: 40x64, and the crop a shorter-side resize gives
    pixels = np.random.default_rng(3).integers(0, 255, (40, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    photo_model = SimpleNamespace(path=tmp_path / "model.tflite", meta=None)  # no digits recorded: centre crop
    for size in (32, 224):
        got = classify.load_image(photo, size, size, "center_crop")
        predicted = preprocessor(photo_model, size)(read_rgb(photo))
        evaluated = augment.to_pixels(augment.decode_eval(tf.constant(photo.read_bytes()), size)).numpy()
        assert got.shape == (size, size, 3) and got.dtype == np.float32
        np.testing.assert_array_equal(got, predicted)
        np.testing.assert_array_equal(got, evaluated)
    whole = classify.load_image(photo, 32, 32, "full_frame")  # the digits' evaluation resize: no crop, no antialias
    np.testing.assert_array_equal(whole, augment.to_pixels(augment.digits_resize(tf.constant(pixels, tf.float32),
                                                                                 32)).numpy())


def check_at_224(depth: int) -> None:
    from keras_resnet.model import resnet
    from keras_resnet.quantize import inspect_tflite

    model = resnet(depth, num_classes=1000, input_shape=(224, 224, 3), zero_init_residual=False)
    rng = np.random.default_rng(depth)
    content = convert(model, "int8", lambda: (rng.uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
                                             for _ in range(2)), edgetpu=True)
    report = edgetpu.check_requirements(content)
    assert report.passed, report.problems
    assert report.cpu_ops == {} and set(report.ops) <= edgetpu.SUPPORTED_OPS
    assert report.ops["DEPTHWISE_CONV_2D"] == 1 and "RESHAPE" not in report.ops  # no 224x1x672 view of the image
    assert inspect_tflite(content).weight_quantization()["FULLY_CONNECTED"] == "per-tensor"


def test_resnet18_at_224_with_1000_classes_passes_the_edge_tpu_check():
    check_at_224(18)


@pytest.mark.slow
@pytest.mark.parametrize("depth", [34, 50, 101, 152])
def test_every_depth_at_224_passes_the_edge_tpu_check(depth):
    check_at_224(depth)


# --- what the compiler rejects before mapping anything: each defect as a small flatbuffer -----------------------

def tiny_model(reshape_to=None):
    """conv -> pool -> dense, the weighted op kinds of a ResNet, at 8 px; with ``reshape_to`` the conv's output
    is also a second, reshaped output."""
    import keras

    inputs = keras.Input((8, 8, 3), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    outputs = keras.layers.Dense(6, name="dense")(keras.layers.GlobalAveragePooling2D()(x))
    if reshape_to is not None:
        outputs = [outputs, keras.layers.Reshape(reshape_to, name="reshaped")(x)]
    return keras.Model(inputs, outputs)


def tiny_calibration():
    rng = np.random.default_rng(4)
    return (rng.uniform(0, 255, (1, 8, 8, 3)).astype(np.float32) for _ in range(3))


def rewrite(content: bytes, edit) -> bytes:
    """The flatbuffer with ``edit(ModelT)`` applied, packed again as the converter would."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    edit(model)
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def only_problem(content: bytes) -> str:
    report = edgetpu.check_requirements(content)
    assert not report.passed and report.structural and len(report.problems) == 1, report.problems
    return report.problems[0]


@pytest.fixture(scope="module")
def tiny_int8():
    return convert(tiny_model(), "int8", tiny_calibration)


def test_tiny_int8_passes_with_per_tensor_dense_and_per_channel_conv(tiny_int8):
    from keras_resnet.quantize import inspect_tflite

    info = inspect_tflite(tiny_int8)
    assert info.weight_quantization() == {"CONV_2D": "per-channel", "FULLY_CONNECTED": "per-tensor"}
    assert all(v <= edgetpu.MAX_OP_VERSIONS[op] for op, v in info.op_versions.items())
    report = edgetpu.check_requirements(info)
    assert report.passed, report.problems


def test_per_channel_dense_weights_from_the_converter_are_rejected(tmp_path):
    from keras_resnet.quantize import inspect_tflite

    content = convert(tiny_model(), "int8", tiny_calibration, per_channel_dense=True)
    assert inspect_tflite(content).weight_quantization()["FULLY_CONNECTED"] == "per-channel"
    problem = only_problem(content)
    assert problem.startswith("FULLY_CONNECTED x1 with per-channel weights (6 scales in ")
    assert problem.endswith("export without --per-channel-dense")
    path = tmp_path / "model_int8.tflite"
    path.write_bytes(content)
    with pytest.raises(KresError, match="per-channel weights") as err:  # --allow-cpu-ops does not waive it
        edgetpu.check(path, tmp_path, allow_cpu_ops=True, use_compiler=False)
    assert "\n" not in str(err.value)
    # --edgetpu overrides the opt-in: the file is per-tensor whatever per_channel_dense says
    forced = convert(tiny_model(), "int8", tiny_calibration, edgetpu=True, per_channel_dense=True)
    assert inspect_tflite(forced).weight_quantization()["FULLY_CONNECTED"] == "per-tensor"


def test_op_version_above_the_table_is_rejected_by_name(tiny_int8):
    from tensorflow.lite.python import schema_py_generated as schema

    def conv_v6(model):
        for code in model.operatorCodes:
            if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.CONV_2D:
                code.version = 6  # what TF 2.9 wrote (google-coral/edgetpu#631)

    assert only_problem(rewrite(tiny_int8, conv_v6)).startswith(
        "CONV_2D version 6: edgetpu_compiler 16.0 parses CONV_2D only up to version 5 and rejects the whole file")
    assert edgetpu.check_requirements(rewrite(tiny_int8, lambda m: None)).passed  # the rewrite itself is harmless


def test_per_channel_quantize_is_rejected(tiny_int8):
    from tensorflow.lite.python import schema_py_generated as schema

    def per_channel_quantize(model):
        graph = model.subgraphs[0]
        quantize = next(i for i, c in enumerate(model.operatorCodes)
                        if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.QUANTIZE)
        op = next(op for op in graph.operators if op.opcodeIndex == quantize)
        q = graph.tensors[op.outputs[0]].quantization
        q.scale, q.zeroPoint, q.quantizedDimension = [q.scale[0]] * 3, [q.zeroPoint[0]] * 3, 3

    problem = only_problem(rewrite(tiny_int8, per_channel_quantize))
    assert problem.startswith("QUANTIZE x1 with a per-channel output (3 scales in ")


def test_16bit_activations_from_the_16x8_mode_are_rejected(tmp_path):
    import tensorflow as tf

    from keras_resnet.quantize import batch1_saved_model

    converter = tf.lite.TFLiteConverter.from_saved_model(batch1_saved_model(tiny_model(), tmp_path / "sm"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x] for x in tiny_calibration())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int16
    problems = edgetpu.check_requirements(converter.convert()).problems
    sixteen = [p for p in problems if "16-bit activation tensors" in p]
    assert len(sixteen) == 1 and sixteen[0].endswith("convert in int8 mode, not the 16x8 mode"), problems


def test_dynamic_batch_from_the_converter_is_rejected():
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    model = tiny_model()
    fn = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x] for x in tiny_calibration())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.uint8
    problems = edgetpu.check_requirements(converter.convert()).problems
    dynamic = [p for p in problems if "dynamic shape" in p]
    assert len(dynamic) == 1 and "[-1, 8, 8, 3]" in dynamic[0], problems


def test_tensor_with_four_dimensions_larger_than_one_is_rejected():
    content = convert(tiny_model(reshape_to=(2, 4, 2, 16)), "int8", tiny_calibration)
    problem = only_problem(content)
    assert problem.startswith("2 tensors have more than 3 dimensions larger than 1 (e.g. ")  # the int8 one, uint8 out
    assert "[1, 2, 4, 2, 16]" in problem


def test_nnapi_takes_per_channel_weights_only_in_convolutions():
    from keras_resnet import delegates
    from keras_resnet.quantize import inspect_tflite

    per_tensor = inspect_tflite(convert(tiny_model(), "int8", tiny_calibration))
    assert delegates.nnapi(per_tensor)["accepts"]
    per_channel = inspect_tflite(convert(tiny_model(), "int8", tiny_calibration, per_channel_dense=True))
    verdict = delegates.nnapi(per_channel)
    assert not verdict["accepts"] and verdict["problems"] == [
        "per-channel weights in FULLY_CONNECTED: NNAPI takes them only in convolutions; export without "
        "--per-channel-dense"]


def test_a_float_file_gets_the_one_fix_that_applies_on_the_edge_tpu_and_nnapi():
    """A float16 file's card told the user to "reshape so only the 3 innermost are larger than 1" its conv weights
    (dequantized at run time), and a dynamic-range file's to "export without --per-channel-dense", an option they
    never gave and that dynamic refuses."""
    from keras_resnet import delegates
    from keras_resnet.quantize import inspect_tflite

    model = tiny_model(reshape_to=(2, 4, 2, 16))
    assert "more than 3 dimensions" in only_problem(convert(model, "int8", tiny_calibration))  # int8: still said
    for mode in ("float32", "float16", "dynamic"):
        problems = edgetpu.check_requirements(convert(model, mode)).problems
        assert problems[0].endswith(": the Edge TPU runs full-integer models: --quantize int8"), (mode, problems)
        assert not [p for p in problems if "dimensions" in p or "version" in p or "per-channel" in p], (mode, problems)
    import keras

    inputs = keras.Input((8, 8, 3))  # a dense layer of 1,024 weights or more: dynamic range quantizes it per channel
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(32, 3)(inputs))
    verdict = delegates.nnapi(inspect_tflite(convert(keras.Model(inputs, keras.layers.Dense(64)(pooled)), "dynamic")))
    assert verdict["problems"] == ["per-channel weights in FULLY_CONNECTED: NNAPI takes them only in convolutions; a "
                                   "--quantize int8 or float16 file runs there"]
