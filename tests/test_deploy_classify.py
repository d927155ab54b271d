"""deploy/classify.py's full-frame preprocessing (the card's ``input.resize`` for the built-in digits) gives the
pixels that training's evaluation and ``kres predict`` give: ``augment.digits_resize``, then ``to_pixels``; and
what it reads (16-bit images), prints (TensorFlow's start-up lines, the invoke's time, labels, errors) and
returns."""

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


@pytest.fixture(scope="module")
def classify():
    spec = importlib.util.spec_from_file_location("classify", REPO / "deploy" / "classify.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluated(pixels: np.ndarray, size: int = SIZE) -> np.ndarray:
    import tensorflow as tf

    from keras_resnet import augment

    return augment.to_pixels(augment.digits_resize(tf.constant(pixels, tf.float32), size)).numpy()


def _saved(tmp_path: Path, name: str, pixels: np.ndarray) -> Path:
    path = tmp_path / f"{name}.png"
    Image.fromarray(pixels).save(path)
    return path


def test_full_frame_upscales_real_digits_as_evaluation_does(classify, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits().images[:20]  # 0-16 ink, as data.py scales it to 0-255, grey as RGB
    glyphs = np.repeat(np.round(digits * (255.0 / 16.0)).astype(np.uint8)[..., None], 3, axis=-1)
    for index, glyph in enumerate(glyphs):
        got = classify.load_image(_saved(tmp_path, str(index), glyph), SIZE, SIZE, "full_frame")
        assert got.shape == (SIZE, SIZE, 3) and got.dtype == np.float32
        np.testing.assert_array_equal(got, _evaluated(glyph), err_msg=f"digit {index}")
    # the strokes fade to 0 beyond the glyph's edge, as training's constant fill does (PIL repeats the edge)
    edge = glyphs[0].copy()
    edge[:, 0] = 255
    got = classify.load_image(_saved(tmp_path, "edge", edge), SIZE, SIZE, "full_frame")
    assert got[SIZE // 2, 0, 0] == _evaluated(edge)[SIZE // 2, 0, 0] == 159  # 5/8 of 255, rounded


def test_full_frame_shrinks_without_antialiasing_as_evaluation_does(classify, tmp_path):
    import tensorflow as tf

    from keras_resnet import augment

    pixels = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    got = classify.load_image(_saved(tmp_path, "big", pixels), SIZE, SIZE, "full_frame")
    np.testing.assert_array_equal(got, _evaluated(pixels))
    # a non-square input size: the same map, per axis
    photo = pixels[:40]
    matrix = augment._centred_affine(photo.shape[:2], (24, SIZE), 1.0, 0.0)
    expected = augment.to_pixels(augment._affine(tf.constant(photo, tf.float32), matrix, (24, SIZE), 0.0)).numpy()
    np.testing.assert_array_equal(classify.load_image(_saved(tmp_path, "wide", photo), 24, SIZE, "full_frame"),
                                  expected)


@pytest.fixture(scope="module")
def small_int8(tmp_path_factory) -> Path:
    """A 3-class int8 model of 32 px (uint8 in and out), as kres export writes it, alone in its folder."""
    import keras

    from keras_resnet.quantize import convert

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    rng = np.random.default_rng(1)
    calibration = lambda: (rng.uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32) for _ in range(2))  # noqa: E731
    path = tmp_path_factory.mktemp("small") / "model_int8.tflite"
    path.write_bytes(convert(keras.Model(inputs, outputs), "int8", calibration))
    return path


@pytest.fixture
def model(small_int8, tmp_path) -> Path:
    """The small model copied into the test's own folder, with a card: the files beside it are the test's."""
    copied = tmp_path / "model_int8.tflite"
    copied.write_bytes(small_int8.read_bytes())
    (tmp_path / "model_int8.card.json").write_text('{"input": {"resize": "center_crop"}}')
    return copied


def test_16_bit_and_other_grey_modes_are_read_as_predict_reads_them(classify, tmp_path):
    """A 16-bit grey PNG (PIL's I;16) went through PIL's convert("RGB"), which clips at 255: a mid-grey digit
    became white. kres predict scales 0-65535 to 0-255 (and 32-bit grey above 255 too)."""
    from keras_resnet.predict import preprocessor, read_rgb

    glyph = np.zeros((40, 48), np.uint16)
    glyph[8:32, 20:28] = 32768  # a mid-grey stroke: 127 in 8 bits (32768 * 255 / 65535 = 127.5, truncated)
    glyph[8:12, 12:36] = 65535
    digit = tmp_path / "digit16.png"
    Image.fromarray(glyph).save(digit)
    with Image.open(digit) as stored:
        assert stored.mode == "I;16"
    got = classify.load_image(digit, SIZE, SIZE, "full_frame")
    assert got[SIZE // 2, SIZE // 2].tolist() == [127, 127, 127]  # convert("RGB") read 255
    assert got.max() == 255 and got.min() == 0
    wide = tmp_path / "wide32.tif"
    Image.fromarray(glyph.astype(np.int32) * 2 - 1000).save(wide)  # mode I, values -1000 to 130,070
    small = tmp_path / "small32.tif"
    Image.fromarray((glyph // 257).astype(np.int32)).save(small)  # mode I within 0-255: taken as it is
    palette = tmp_path / "palette.png"
    Image.fromarray(np.uint8(glyph // 257)).convert("P").save(palette, transparency=0)
    photo_model = SimpleNamespace(path=tmp_path / "model.tflite", meta=None)  # centre crop
    for path in (digit, wide, small, palette):
        with Image.open(path) as stored:
            np.testing.assert_array_equal(np.asarray(classify.to_rgb(stored)), read_rgb(path), err_msg=path.name)
        np.testing.assert_array_equal(classify.load_image(path, SIZE, SIZE),
                                      preprocessor(photo_model, SIZE)(read_rgb(path)), err_msg=path.name)
    with Image.open(small) as stored:
        assert stored.mode == "I" and np.asarray(classify.to_rgb(stored))[20, 24].tolist() == [127, 127, 127]


def _hidden_runtimes(tmp_path: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes both LiteRT packages fail to import: TensorFlow is what is left."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for name in ("ai_edge_litert", "tflite_runtime"):
        (hidden / f"{name}.py").write_text('raise ImportError("hidden by the test")\n')
    return hidden


def test_tensorflow_fallback_prints_none_of_its_start_up_lines(model, tmp_path):
    """With only TensorFlow installed, one run printed ~12 absl/TF lines and tf.lite's 6-line deprecation warning."""
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image)
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_CPP")}
    env["PYTHONPATH"] = str(_hidden_runtimes(tmp_path))
    result = subprocess.run([sys.executable, str(REPO / "deploy" / "classify.py"), str(model), str(image)], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "model model_int8.tflite on cpu, input 32x32, 3 labels" and len(lines) == 2
    # a broken model still gets its one line through the quieted TensorFlow
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a model")
    result = subprocess.run([sys.executable, str(REPO / "deploy" / "classify.py"), str(broken), str(image)], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and result.stderr.startswith(f"Error: {broken} is not a valid TFLite model (")
    assert result.stderr.endswith("): export it again\n") and result.stderr.count("\n") == 1, result.stderr


def _run_without(tmp_path: Path, missing: dict[str, str]) -> subprocess.CompletedProcess:
    """classify.py run on a .tflite file and an image where each module of ``missing`` fails to import with its
    error (modules first on PYTHONPATH that raise it): a fresh device, without importing TensorFlow."""
    hidden = tmp_path / "hidden"
    hidden.mkdir(exist_ok=True)
    for name, error in missing.items():
        (hidden / f"{name}.py").write_text(f"raise {error}\n")
    model = tmp_path / "model_int8.tflite"
    model.write_bytes(b"")  # never read: the runtime is looked for first
    env = {**os.environ, "PYTHONPATH": str(hidden)}
    return subprocess.run([sys.executable, str(REPO / "deploy" / "classify.py"), str(model), "img.png"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_missing_runtime_or_pillow_is_one_line_saying_what_to_install(tmp_path):
    """On a fresh device, with no runtime installed, classify.py printed three chained tracebacks ending in
    "No module named 'tensorflow'" (exit status 1); without Pillow, a traceback ending in "No module named 'PIL'"."""
    no_runtime = {"ai_edge_litert": 'ImportError("hidden by the test")',
                  "tflite_runtime": 'ImportError("hidden by the test")',
                  "tensorflow": "ModuleNotFoundError(\"No module named 'tensorflow'\", name='tensorflow')"}
    result = _run_without(tmp_path, no_runtime)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("Error: no TFLite runtime is installed (classify.py runs with ai-edge-litert, "
                             "tflite-runtime or tensorflow): pip install ai-edge-litert (or tflite-runtime where "
                             "ai-edge-litert has no wheel)\n")
    result = _run_without(tmp_path, {"PIL": "ModuleNotFoundError(\"No module named 'PIL'\", name='PIL')"})
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("Error: classify.py needs numpy and Pillow, and PIL cannot be imported: pip install "
                             "pillow numpy\n")


def test_the_quieted_runtime_passes_real_errors_and_warnings_on(classify, capfd):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with classify._quiet_runtime():
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                        b"I0000 00:00:1796554480.096503   23481 port.cc:153] oneDNN custom operations are on.\n"
                        b"E0000 00:00:1796554480.1   23481 op_kernel.cc:1] a real error\n"
                        b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
                        b"Segmentation fault in the delegate\n")
            warnings.warn("    Warning: tf.lite.Interpreter is deprecated and is scheduled for deletion", UserWarning,
                          stacklevel=1)
            warnings.warn("a real warning", UserWarning, stacklevel=1)
    assert [str(warning.message) for warning in seen] == ["a real warning"]
    assert capfd.readouterr().err == ("E0000 00:00:1796554480.1   23481 op_kernel.cc:1] a real error\n"
                                      "Segmentation fault in the delegate\n")


class _Clock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class _TimedInterpreter:
    """An interpreter whose first invoke takes 5 s (a warm-up) and each later one 2 ms, on a fake clock."""

    def __init__(self, clock: _Clock):
        self.clock, self.invokes = clock, 0

    def get_input_details(self):
        return [{"index": 0, "shape": np.array([1, 4, 4, 3]), "dtype": np.uint8, "quantization": (1.0, 0)}]

    def get_output_details(self):
        return [{"index": 1, "shape": np.array([1, 3]), "dtype": np.uint8, "quantization": (1 / 255, 0)}]

    def set_tensor(self, index, value):
        pass

    def invoke(self):
        self.clock.now += 5.0 if self.invokes == 0 else 0.002
        self.invokes += 1

    def get_tensor(self, index):
        return np.array([[10, 200, 45]], np.uint8)


def test_each_images_time_is_the_invoke_alone_after_a_warm_up(classify, model, monkeypatch, capsys):
    """The "(N ms)" figure held decoding and resizing, and for the first image the runtime's warm-up."""
    clock = _Clock()
    interpreter = _TimedInterpreter(clock)

    def slow_load(path, height, width, resize):
        clock.now += 1.0  # reading and resizing: a second each
        return np.zeros((height, width, 3), np.float32)

    monkeypatch.setattr(classify, "time", clock)
    monkeypatch.setattr(classify, "make_interpreter", lambda path, use_edgetpu: (interpreter, "cpu", path))
    monkeypatch.setattr(classify, "load_image", slow_load)
    (model.parent / "labels.txt").write_text("cat\ndog\nbird\n")
    assert classify.main([str(model), "a.png", "b.png"]) == 0
    assert capsys.readouterr().out.splitlines() == ["model model_int8.tflite on cpu, input 4x4, 3 labels",
                                                    "a.png: dog 0.784, bird 0.176, cat 0.039 (invoke 2.00 ms)",
                                                    "b.png: dog 0.784, bird 0.176, cat 0.039 (invoke 2.00 ms)"]
    assert interpreter.invokes == 3  # one warm-up, untimed, and one an image


class _TiedInterpreter(_TimedInterpreter):
    """An int8 model's output that scores the first and the last class the same, 99/256 = 0.38671875."""

    def get_output_details(self):
        return [{"index": 1, "shape": np.array([1, 3]), "dtype": np.uint8, "quantization": (1 / 256, 0)}]

    def get_tensor(self, index):
        return np.array([[99, 58, 99]], np.uint8)


def _fake_model(classify, folder, interpreter, monkeypatch, labels: str | None = None, *, pixels: bool = True):
    """A model_int8.tflite in ``folder`` that classify.py runs with ``interpreter`` (the file is never read), its
    card and ``labels``; ``pixels``: every image reads as zeros (its file need not be an image)."""
    clock = interpreter.clock
    monkeypatch.setattr(classify, "time", clock)
    monkeypatch.setattr(classify, "make_interpreter", lambda path, use_edgetpu: (interpreter, "cpu", path))
    if pixels:
        monkeypatch.setattr(classify, "load_image", lambda path, height, width, resize: np.zeros((4, 4, 3),
                                                                                                 np.float32))
    model = folder / "model_int8.tflite"
    model.write_bytes(b"")
    (folder / "model_int8.card.json").write_text('{"input": {"resize": "center_crop"}}')
    if labels is not None:
        (folder / "labels.txt").write_text(labels)
    return model


def test_tied_scores_rank_the_lower_class_index_first_as_kres_predict_does(classify, tmp_path, monkeypatch, capsys):
    """classify.py ranked trïangle before circle where kres predict ranked circle first: top-1 disagreed."""
    model = _fake_model(classify, tmp_path, _TiedInterpreter(_Clock()), monkeypatch, "circle\nsquare\ntrïangle\n")
    assert classify.main([str(model), "a.png"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == ("a.png: circle 0.387, trïangle 0.387, square 0.227 "
                                                       "(invoke 2.00 ms)")


def test_a_folder_without_images_says_how_to_pass_images(classify, model, tmp_path, capsys):
    """A folder gave "[Errno 21] Is a directory"; and where no image could be read the exit status was 1 (kres
    predict's is 2; 1 is for some images skipped). A folder stands for its images now: one without any is
    skipped."""
    photos = tmp_path / "photos"
    photos.mkdir()
    assert classify.main([str(model), str(photos), "--cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1:] == []
    assert captured.err.splitlines() == [
        "note: no labels.txt beside model_int8.tflite: classes are shown by number; copy it from the kres export "
        "folder",
        f"skipped: {photos}: holds no images (JPEG, PNG, BMP, GIF, TIFF or WebP files directly inside it): pass "
        "image files, or a folder of them",
        "Error: none of the images given could be read (each is named above, with why): pass image files (JPEG, "
        "PNG, BMP, GIF, TIFF, WebP)"]
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(image)
    assert classify.main([str(model), str(photos), str(image), "--cpu"]) == 1  # some read, some skipped
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1].startswith(f"skipped: {photos}: holds no images")
    assert captured.out.splitlines()[1].startswith(f"{image}: ")


def test_a_folder_stands_for_its_images_as_kres_predict_takes_it(classify, tmp_path, monkeypatch, capsys):
    """A folder was skipped ("pass its images with a shell glob"): kres predict and classify.py take a folder's
    image files, by name, passing over other files, hidden ones and sub-folders."""
    model = _fake_model(classify, tmp_path, _TimedInterpreter(_Clock()), monkeypatch, "cat\ndog\nbird\n")
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("b.PNG", "a.jpg", ".hidden.png", "notes.txt", "sub/c.png"):
        (photos / name).write_bytes(b"")
    assert classify.main([str(model), str(photos)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        f"{photos / name}: dog 0.784, bird 0.176, cat 0.039 (invoke 2.00 ms)" for name in ("a.jpg", "b.PNG")]


def test_skip_lines_and_the_header_without_labels_are_plain_as_kres_predicts(classify, tmp_path, monkeypatch, capsys):
    """A 0-byte file was skipped with "cannot identify image file", a missing one with "[Errno 2] No such file or
    directory: ..."; without labels.txt the header said "0 labels"."""
    model = _fake_model(classify, tmp_path, _TimedInterpreter(_Clock()), monkeypatch, pixels=False)
    empty, gone, text = tmp_path / "empty.jpg", tmp_path / "nothere.jpg", tmp_path / "notes.png"
    empty.write_bytes(b"")
    text.write_text("not an image")
    assert classify.main([str(model), str(empty), str(gone), str(text)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "model model_int8.tflite on cpu, input 4x4, no labels (classes shown by number)\n"
    assert captured.err.splitlines()[1:4] == [
        f"skipped: {empty}: cannot be read (it is empty: 0 bytes): pass a JPEG, PNG, BMP, GIF, TIFF or WebP file",
        f"skipped: {gone}: does not exist",
        f"skipped: {text}: cannot be read (cannot identify image file '{text}'): pass a JPEG, PNG, BMP, GIF, TIFF or "
        "WebP file"]


def test_the_labels_that_match_the_models_outputs_are_shown(classify, model, tmp_path, capsys):
    """A labels.txt of another model (2 names for 3 outputs) was preferred over the card's 3 matching labels."""
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(image)
    (tmp_path / "labels.txt").write_text("yes\nno\n")
    (tmp_path / "model_int8.card.json").write_text('{"input": {"resize": "center_crop"}, '
                                                   '"labels": ["cat", "dog", "bird"]}')
    assert classify.main([str(model), str(image), "--cpu", "--top-k", "3"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "model model_int8.tflite on cpu, input 32x32, 3 labels"
    assert sorted(name.split()[0] for name in lines[1].removeprefix(f"{image}: ").split(", ")) == ["bird", "cat",
                                                                                                    "dog"]
    assert captured.err == ("note: labels.txt holds 2 labels for the model's 3 classes: the card's 3 labels are "
                            "shown; copy the labels.txt from this model's kres export folder\n")
    (tmp_path / "labels.txt").write_text("ant\nbee\nfly\n")  # both match: labels.txt's, without a word
    assert classify.main([str(model), str(image), "--cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.splitlines()[1].split()[1] in ("ant", "bee", "fly")


def test_an_edgetpu_model_not_compiled_yet_names_the_file_beside_it(classify, model, capsys):
    """Only model_int8.tflite there (the compiler not run): the error said no more than "does not exist"."""
    compiled = model.with_name("model_int8_edgetpu.tflite")
    assert classify.main([str(compiled), "img.png"]) == 2
    assert capsys.readouterr().err == (
        f"Error: {compiled} does not exist, but model_int8.tflite beside it does: the Edge TPU compiler makes the "
        f"_edgetpu file from it (edgetpu_compiler -s -o {model.parent} {model}; deploy/README.md, step 2), or pass "
        "model_int8.tflite to run on the CPU\n")
    model.unlink()  # neither: as before
    assert classify.main([str(compiled), "img.png"]) == 2
    assert capsys.readouterr().err == f"Error: {compiled} does not exist\n"


def test_a_reader_that_has_gone_ends_it_quietly_as_kres_predict(model, tmp_path):
    """``classify.py model.tflite a b c | head -2`` ended in a BrokenPipeError traceback, exit status 1; kres predict
    ends quietly with 0. Here stdout's reader has gone before the first line."""
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(image)
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, str(REPO / "deploy" / "classify.py"), str(model), str(image),
                                 str(image), str(image)], stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
                                check=False)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (0, "")


def test_a_card_of_another_file_is_refused_and_a_labels_bom_is_no_name(classify, tmp_path, monkeypatch, capsys):
    """classify.py took the card of another model_int8.tflite (the same tensors, another export) that kres predict
    refuses by its SHA-256; and a labels.txt saved with a byte-order mark (Notepad) named the first class
    "\\ufeffcircle" (a review, 2026-12-06)."""
    import hashlib

    model = _fake_model(classify, tmp_path, _TiedInterpreter(_Clock()), monkeypatch, "\ufeffcircle\nsquare\ntrïangle\n")
    card = {"model": "model_int8.tflite", "input": {"resize": "center_crop"}, "model_sha256": "0" * 64}
    (tmp_path / "model_int8.card.json").write_text(json.dumps(card))
    assert classify.main([str(model), "a.png"]) == 2
    assert capsys.readouterr().err == (
        "Error: model_int8.card.json is the card of another model_int8.tflite (the file's SHA-256 is not the one it "
        "records: exported again since, or copied from another export): copy this model's card from its kres export "
        "folder, or remove it\n")
    card["model_sha256"] = hashlib.sha256(b"").hexdigest()  # the model's own (an empty file here)
    (tmp_path / "model_int8.card.json").write_text(json.dumps(card))
    assert classify.main([str(model), "a.png"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == ("a.png: circle 0.387, trïangle 0.387, square 0.227 "
                                                       "(invoke 2.00 ms)")
