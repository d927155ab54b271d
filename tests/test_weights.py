"""Pretrained weights without torch: keras.applications parity, the torchvision layout from .npz/.safetensors,
Keras 3 files, and the one-line errors (offline download, wrong depth, missing files)."""

import json
import os
import socket
import sys
import threading
import time

import h5py
import numpy as np
import pytest

import keras_resnet
from keras_resnet import weights as kw
from keras_resnet.errors import KresError
from keras_resnet.specs import DEPTHS, STAGE_WIDTHS
from kres.main import main

SIZE = 64


def _pixels(batch=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, SIZE, SIZE, 3)).astype("float32")


def torchvision_state(depth: int, num_classes: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """A random state dict with torchvision's ResNet keys and shapes, made from the depth table."""
    rng = np.random.default_rng(seed)
    spec = DEPTHS[depth]
    state: dict[str, np.ndarray] = {}

    def conv(key, out, inp, k):
        state[f"{key}.weight"] = rng.normal(0, (2 / (inp * k * k)) ** 0.5, (out, inp, k, k)).astype("float32")

    def bn(key, n):
        state[f"{key}.weight"] = rng.uniform(0.5, 1.0, n).astype("float32")
        state[f"{key}.bias"] = rng.uniform(-0.2, 0.2, n).astype("float32")
        state[f"{key}.running_mean"] = rng.uniform(-0.2, 0.2, n).astype("float32")
        state[f"{key}.running_var"] = rng.uniform(0.5, 1.5, n).astype("float32")
        state[f"{key}.num_batches_tracked"] = np.array(7, dtype="int64")

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    channels = 64
    for stage, (width, repeats) in enumerate(zip(STAGE_WIDTHS, spec.repeats)):
        out = width * spec.expansion
        for i in range(repeats):
            prefix = f"layer{stage + 1}.{i}"
            if spec.block == "bottleneck":
                shapes = [(width, channels, 1), (width, width, 3), (out, width, 1)]
            else:
                shapes = [(width, channels, 3), (width, width, 3)]
            for n, (o, c, k) in enumerate(shapes, start=1):
                conv(f"{prefix}.conv{n}", o, c, k)
                bn(f"{prefix}.bn{n}", o)
            if i == 0 and (stage > 0 or channels != out):
                conv(f"{prefix}.downsample.0", out, channels, 1)
                bn(f"{prefix}.downsample.1", out)
            channels = out
    state["fc.weight"] = rng.normal(0, 0.01, (num_classes, channels)).astype("float32")
    state["fc.bias"] = rng.normal(0, 0.01, num_classes).astype("float32")
    return state


# ------------------------------------------------------------------------------------------- torchvision layout


def test_npz_and_safetensors_map_every_tensor_onto_v15_layers(tmp_path):
    state = torchvision_state(18, num_classes=10)
    np.savez(tmp_path / "r18.npz", **state)
    model = keras_resnet.resnet(18, num_classes=10, input_shape=(SIZE, SIZE, 3), weights=tmp_path / "r18.npz")
    np.testing.assert_array_equal(model.get_layer("conv1_conv").get_weights()[0],
                                  state["conv1.weight"].transpose(2, 3, 1, 0))
    gamma, beta, mean, var = model.get_layer("conv3_block1_0_bn").get_weights()
    np.testing.assert_array_equal(gamma, state["layer2.0.downsample.1.weight"])
    np.testing.assert_array_equal(beta, state["layer2.0.downsample.1.bias"])
    np.testing.assert_array_equal(mean, state["layer2.0.downsample.1.running_mean"])
    np.testing.assert_array_equal(var, state["layer2.0.downsample.1.running_var"])
    np.testing.assert_array_equal(model.get_layer("conv5_block2_2_conv").get_weights()[0],
                                  state["layer4.1.conv2.weight"].transpose(2, 3, 1, 0))
    kernel, bias = model.get_layer("predictions").get_weights()
    np.testing.assert_array_equal(kernel, state["fc.weight"].T)
    np.testing.assert_array_equal(bias, state["fc.bias"])

    safetensors = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed")
    safetensors.save_file(state, str(tmp_path / "r18.safetensors"))
    again = keras_resnet.resnet(18, num_classes=10, input_shape=(SIZE, SIZE, 3),
                                weights=str(tmp_path / "r18.safetensors"))
    x = _pixels()
    np.testing.assert_array_equal(again(x, training=False).numpy(), model(x, training=False).numpy())


def test_layer_name_map_covers_stem_blocks_projections_and_head():
    assert kw.torchvision_layer_name("conv1") == ("conv1_conv", "conv")
    assert kw.torchvision_layer_name("bn1") == ("conv1_bn", "bn")
    assert kw.torchvision_layer_name("layer1.2.conv3") == ("conv2_block3_3_conv", "conv")
    assert kw.torchvision_layer_name("layer3.22.bn1") == ("conv4_block23_1_bn", "bn")
    assert kw.torchvision_layer_name("layer2.0.downsample.0") == ("conv3_block1_0_conv", "conv")
    assert kw.torchvision_layer_name("layer4.0.downsample.1") == ("conv5_block1_0_bn", "bn")
    assert kw.torchvision_layer_name("fc") == ("predictions", "dense")
    assert kw.torchvision_layer_name("layer5.0.conv1") is None


def test_other_class_count_loads_the_backbone_and_says_so(tmp_path, capsys):
    state = torchvision_state(18, num_classes=1000)
    np.savez(tmp_path / "r18.npz", **state)
    model = keras_resnet.resnet(18, num_classes=5, input_shape=(SIZE, SIZE, 3), weights=str(tmp_path / "r18.npz"))
    np.testing.assert_array_equal(model.get_layer("conv5_block2_2_bn").get_weights()[3],
                                  state["layer4.1.bn2.running_var"])
    assert model.get_layer("predictions").get_weights()[0].shape == (512, 5)
    err = capsys.readouterr().err
    assert "loaded the backbone" in err and "1000-class" in err and "5-class" in err

    headless = keras_resnet.resnet(18, include_top=False, input_shape=(SIZE, SIZE, 3),
                                   weights=str(tmp_path / "r18.npz"))
    np.testing.assert_array_equal(headless.get_layer("conv1_conv").get_weights()[0],
                                  state["conv1.weight"].transpose(2, 3, 1, 0))
    assert "without a top" in capsys.readouterr().err


@pytest.mark.parametrize(("checkpoint_depth", "model_depth", "layer"), [
    (18, 34, "conv2_block3_1_conv"),  # shallower checkpoint: the model's first extra block is missing
    (34, 18, "conv2_block3_1_conv"),  # deeper checkpoint: its first extra block has no place in the model
])
def test_wrong_depth_names_the_first_mismatching_layer(tmp_path, checkpoint_depth, model_depth, layer):
    np.savez(tmp_path / "ckpt.npz", **torchvision_state(checkpoint_depth))
    with pytest.raises(KresError, match=f"ResNet-{model_depth}.*first mismatching layer {layer}"):
        keras_resnet.resnet(model_depth, input_shape=(SIZE, SIZE, 3), weights=str(tmp_path / "ckpt.npz"))


@pytest.mark.parametrize(("checkpoint_depth", "model_depth", "fix"), [
    (18, 34, "conv2_block3_1_conv is missing from it; it was made for ResNet-18: pass depth=18"),
    (34, 18, "conv2_block3_1_conv is in the checkpoint but not in the model; it was made for ResNet-34: pass "
             "depth=34"),
    (50, 34, "conv2_block1_1_conv expects shapes 3x3x64x64, the checkpoint has 1x1x64x64; it was made for "
             "ResNet-50: pass depth=50"),
])
def test_wrong_depth_names_the_depth_the_checkpoint_was_made_for(tmp_path, checkpoint_depth, model_depth, fix):
    """"pass the depth the checkpoint was made for" left the reader to find which; its layer names tell it."""
    np.savez(tmp_path / "ckpt.npz", **torchvision_state(checkpoint_depth))
    with pytest.raises(KresError) as err:
        keras_resnet.resnet(model_depth, input_shape=(SIZE, SIZE, 3), weights=str(tmp_path / "ckpt.npz"))
    assert str(err.value) == (f"torchvision checkpoint {tmp_path / 'ckpt.npz'} does not fit ResNet-{model_depth} "
                              f"(v1.5): first mismatching layer {fix}")


def test_a_run_folder_of_another_depth_is_named_by_its_depth(tmp_path, capsys):
    """The issue's walk: resnet(34, weights="runs/t1") of a ResNet-18 run; at the command line, --depth 18."""
    run = tmp_path / "t1"
    run.mkdir()
    keras_resnet.resnet(18, num_classes=3, input_shape=(32, 32, 3)).save(run / "best.keras")
    misfit = f"Keras model {run / 'best.keras'} does not fit ResNet-34 (v1.5): first mismatching layer"
    with pytest.raises(KresError) as err:
        keras_resnet.resnet(34, num_classes=10, input_shape=(32, 32, 3), weights=str(run))
    assert str(err.value) == (f"{misfit} conv2_block3_1_conv is missing from it; it was made for ResNet-18: pass "
                              "depth=18")
    assert main(["convert-weights", str(run / "best.keras"), "--depth", "34", "--output",
                 str(tmp_path / "r34.keras")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"Error: {misfit} conv2_block3_1_conv is missing from it; it was made for ResNet-18: pass --depth 18")
    assert kw.checkpoint_depth({"conv1_conv": [], "conv2_block1_1_conv": []}) is None  # no depth: today's line


def test_shape_mismatch_names_the_layer_and_both_shapes(tmp_path):
    np.savez(tmp_path / "ckpt.npz", **torchvision_state(18))
    with pytest.raises(KresError, match=r"first mismatching layer conv1_conv expects shapes 3x3x3x64, "
                                        r"the checkpoint has 7x7x3x64"):
        keras_resnet.resnet(18, stem="cifar", input_shape=(SIZE, SIZE, 3), weights=str(tmp_path / "ckpt.npz"))


def test_torchvision_checkpoint_into_v1_asks_for_v15(tmp_path):
    np.savez(tmp_path / "ckpt.npz", **torchvision_state(18))
    with pytest.raises(KresError, match=r"torchvision weights are v1\.5.*variant='v1\.5'"):
        keras_resnet.resnet(18, variant="v1", input_shape=(SIZE, SIZE, 3), weights=str(tmp_path / "ckpt.npz"))


def test_not_a_resnet_state_dict(tmp_path):
    np.savez(tmp_path / "other.npz", **{"conv1.weight": np.zeros((64, 3, 7, 7), "float32"),
                                        "encoder.block.weight": np.zeros(3, "float32")})
    with pytest.raises(KresError, match=r"ResNet state dict: unexpected key 'encoder\.block\.weight'$"):
        keras_resnet.resnet(18, input_shape=(SIZE, SIZE, 3), weights=str(tmp_path / "other.npz"))
    np.savez(tmp_path / "bare.npz", a=np.zeros(3, "float32"))  # a key with no module: it said "unexpected key .*"
    with pytest.raises(KresError, match=r"not a torchvision ResNet state dict: unexpected key 'a'$"):
        keras_resnet.resnet(18, input_shape=(SIZE, SIZE, 3), weights=str(tmp_path / "bare.npz"))


def test_a_long_reason_is_cut_after_a_sentence_or_between_words():
    from keras_resnet.weights import _shortened

    torch_says = ("Weights only load failed. This file can still be loaded, to do so you have two options, do those "
                  "steps only if you trust the source of the checkpoint. (1) In PyTorch 2.6, we changed the default "
                  "value of the `weights_only` argument in `torch.load` from `False` to `True`. Re-running "
                  "`torch.load` with `weights_only` set to `False` will likely succeed")
    assert _shortened(torch_says) == ("Weights only load failed. This file can still be loaded, to do so you have two "
                                      "options, do those steps only if you trust the source of the checkpoint.")
    assert _shortened("word " * 40) == ("word " * 32).strip() + " ..."  # 159 characters, then the dots
    assert _shortened("short") == "short"
    assert _shortened("x" * 300) == "x" * 160 + " ..."  # no space: cut at the limit (it kept 299 characters)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(KresError, match="does not exist"):
        kw.check_weights(tmp_path / "nope.pth", depth=18, variant="v1.5")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(KresError, match=r"expected a \.keras, \.weights\.h5"):
        kw.check_weights(tmp_path / "w.txt", depth=18, variant="v1.5")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(KresError, match="cannot read"):
        kw.read_checkpoint(tmp_path / "broken.npz")


# ------------------------------------------------------------------------------------------- Keras 3 files


@pytest.mark.parametrize(("depth", "variant", "fix"), [
    (50, "v1", "weights='imagenet' or the path of a " + kw.SUPPORTED),
    # 'imagenet' was offered for these too, and then refused
    (18, "v1.5", f"the path of a {kw.SUPPORTED} (ImageNet weights: torchvision's "
                 "https://download.pytorch.org/models/resnet18-f37072fd.pth)"),
    (50, "v1.5", f"the path of a {kw.SUPPORTED} (ImageNet weights: torchvision's "
                 "https://download.pytorch.org/models/resnet50-0676ba61.pth)"),
    (34, "v1", "the path of a " + kw.SUPPORTED),
])
def test_a_missing_file_offers_imagenet_only_where_it_is_taken(tmp_path, depth, variant, fix):
    missing = tmp_path / "resnet18-f37072fd.pth"
    with pytest.raises(KresError) as err:
        kw.check_weights(missing, depth=depth, variant=variant)
    assert str(err.value) == f"weights file {missing} does not exist: pass {fix}"


def test_keras_and_weights_h5_files_round_trip_by_layer_name(tmp_path, capsys):
    source = keras_resnet.resnet(18, num_classes=10, input_shape=(SIZE, SIZE, 3), zero_init_residual=False)
    for layer in source.layers:  # non-trivial BN statistics, so a swapped array would show
        if layer.name.endswith("_bn"):
            gamma, beta, mean, var = layer.get_weights()
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([gamma * 0.8, beta + 0.1, rng.uniform(-0.1, 0.1, mean.shape),
                               rng.uniform(0.5, 1.5, var.shape)])
    source.save(tmp_path / "m.keras")
    source.save_weights(tmp_path / "m.weights.h5")
    x = _pixels()
    expected = source(x, training=False).numpy()
    for path in (tmp_path / "m.keras", tmp_path / "m.weights.h5"):
        loaded = keras_resnet.resnet(18, num_classes=10, input_shape=(SIZE, SIZE, 3), weights=str(path))
        np.testing.assert_array_equal(loaded(x, training=False).numpy(), expected)
    capsys.readouterr()
    other = keras_resnet.resnet(18, num_classes=3, input_shape=(SIZE, SIZE, 3), weights=str(tmp_path / "m.keras"))
    np.testing.assert_array_equal(other.get_layer("conv4_block2_1_bn").get_weights()[2],
                                  source.get_layer("conv4_block2_1_bn").get_weights()[2])
    assert "10-class classifier" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- keras.applications


@pytest.fixture(scope="module")
def keras_applications_resnet50(tmp_path_factory):
    """A randomly initialised tf_keras ResNet50 (BN statistics randomised), saved as a legacy .h5."""
    tf_keras = pytest.importorskip("tf_keras", reason="tf_keras is not installed")
    reference = tf_keras.applications.ResNet50(weights=None, input_shape=(SIZE, SIZE, 3),
                                                classifier_activation=None)
    rng = np.random.default_rng(1)
    for layer in reference.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            final = layer.name.endswith("_3_bn")  # keep the residual sum of 16 blocks in a sane range
            layer.set_weights([rng.uniform(0.1, 0.4, n) if final else rng.uniform(0.5, 1.0, n),
                               rng.uniform(-0.2, 0.2, n), rng.uniform(-0.2, 0.2, n), rng.uniform(0.5, 1.5, n)])
    path = tmp_path_factory.mktemp("kapp") / "resnet50_random.h5"
    reference.save_weights(str(path))
    x = _pixels()
    logits = reference.predict(tf_keras.applications.resnet.preprocess_input(x.copy()), verbose=0)
    return path, x, logits


def test_keras_applications_h5_gives_keras_applications_outputs(keras_applications_resnet50, monkeypatch):
    path, x, expected = keras_applications_resnet50
    with h5py.File(path, "r") as f:
        assert "layer_names" in f.attrs  # the legacy layout of the published files
    fetched = []

    def fake_fetch(depth, include_top):  # everything but the download itself
        fetched.append((depth, include_top))
        return path

    monkeypatch.setattr(kw, "fetch_imagenet", fake_fetch)
    model = keras_resnet.resnet(50, variant="v1", weights="imagenet", input_shape=(SIZE, SIZE, 3),
                                classifier_activation=None)
    assert fetched == [(50, True)]
    got = model(x, training=False).numpy()
    assert np.abs(expected).max() > 0.1  # the comparison is not between two near-zero outputs
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_published_probs_layer_name_is_the_classifier(keras_applications_resnet50, tmp_path):
    path = keras_applications_resnet50[0]
    renamed = tmp_path / "probs.h5"
    with h5py.File(path, "r") as src, h5py.File(renamed, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in src.attrs["layer_names"]]
        dst.attrs["layer_names"] = [("probs" if n == "predictions" else n).encode() for n in names]
        for name in src:
            src.copy(src[name], dst, name="probs" if name == "predictions" else name)
    checkpoint = kw.read_checkpoint(renamed)
    assert checkpoint.kind == "keras.applications" and checkpoint.variant == "v1"
    assert "probs" not in checkpoint.layers
    assert [a.shape for a in checkpoint.layers["predictions"]] == [(2048, 1000), (1000,)]


def test_keras_applications_weights_into_v15_ask_for_v1(keras_applications_resnet50):
    with pytest.raises(KresError, match=r"convolutions have biases.*variant='v1'"):
        keras_resnet.resnet(50, weights=str(keras_applications_resnet50[0]), input_shape=(SIZE, SIZE, 3))


# ------------------------------------------------------------------------------------------- imagenet errors


@pytest.mark.parametrize("depth", [18, 34])
def test_imagenet_v1_for_18_and_34_points_to_torchvision(depth):
    with pytest.raises(KresError, match=rf"no ResNet-{depth} weights.*{kw.TORCHVISION_FILES[depth]}.*convert-weights"):
        keras_resnet.resnet(depth, variant="v1", weights="imagenet", input_shape=(SIZE, SIZE, 3))


def test_imagenet_v15_explains_the_torchvision_route():
    with pytest.raises(KresError, match=r"v1 files only: for v1.5 download torchvision's resnet50-0676ba61.pth"):
        kw.check_weights("imagenet", depth=50, variant="v1.5")


def test_offline_imagenet_names_the_file_the_cache_and_weights_path(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(kw, "KERAS_APPLICATIONS_URL", "http://kres-offline.invalid/")  # never resolves
    start = time.monotonic()
    with pytest.raises(KresError) as info:
        keras_resnet.resnet(50, variant="v1", weights="imagenet", input_shape=(SIZE, SIZE, 3))
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert "cannot download resnet50_weights_tf_dim_ordering_tf_kernels.h5" in message
    assert f"put the file at {tmp_path / 'models' / 'resnet50_weights_tf_dim_ordering_tf_kernels.h5'}" in message
    assert "md5 2cb95161c43110f7111970584f804107" in message
    assert "weights=PATH" in message and "\n" not in message


def test_silent_server_times_out_instead_of_hanging(tmp_path, monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # the kernel accepts the connection; nobody ever answers
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(kw, "KERAS_APPLICATIONS_URL", f"http://127.0.0.1:{server.getsockname()[1]}/")
    monkeypatch.setattr(kw, "DOWNLOAD_TIMEOUT_S", 1.0)
    outcome = []

    def fetch():
        try:
            kw.fetch_imagenet(101, include_top=False)
        except KresError as err:
            outcome.append(err)

    worker = threading.Thread(target=fetch, daemon=True)  # a hang fails the test instead of blocking the suite
    try:
        worker.start()
        worker.join(timeout=20)
    finally:
        server.close()
    assert not worker.is_alive(), "the download hung past 20 s"
    assert len(outcome) == 1
    assert "cannot download resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5 (timed out)" in str(outcome[0])
    assert socket.getdefaulttimeout() is None  # the process-wide default is restored


def test_a_download_says_so_on_stderr_keeping_stdout_for_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(kw, "KERAS_APPLICATIONS_URL", "http://kres-offline.invalid/")
    with pytest.raises(KresError, match=r"^cannot download resnet50_weights_tf_dim_ordering_tf_kernels_notop\.h5 "):
        kw.fetch_imagenet(50, include_top=False)
    out, err = capsys.readouterr()
    assert out == "" and "Downloading data from http://kres-offline.invalid/resnet50_" in err


def test_cached_file_with_the_right_hash_is_used_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(kw, "KERAS_APPLICATIONS_URL", "http://kres-offline.invalid/")
    monkeypatch.setitem(kw.KERAS_APPLICATIONS_HASHES, 50, ("0" * 32, "5d41402abc4b2a76b9719d911017c592"))
    cached = tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    cached.parent.mkdir()
    cached.write_bytes(b"hello")  # md5 5d41402abc4b2a76b9719d911017c592
    assert kw.fetch_imagenet(50, include_top=False) == cached


# ------------------------------------------------------------------------------------------- kres convert-weights


def test_convert_weights_cli_writes_a_loadable_keras_file(tmp_path, capsys):
    state = torchvision_state(18, num_classes=7)
    np.savez(tmp_path / "r18.npz", **state)
    out = tmp_path / "out" / "r18.keras"
    assert main(["convert-weights", str(tmp_path / "r18.npz"), "--depth", "18", "--output", str(out),
                 "--image-size", str(SIZE)]) == 0
    out_text, err_text = capsys.readouterr()
    assert out_text == f"Wrote {out}: ResNet-18 v1.5, 7 classes, 11,189,703 parameters\n"  # the result only
    assert err_text == f"... reading {tmp_path / 'r18.npz'}\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["r18.keras"]  # no temporary file left behind
    model = keras_resnet.resnet(18, num_classes=7, input_shape=(SIZE, SIZE, 3), weights=str(out))
    np.testing.assert_array_equal(model.get_layer("predictions").get_weights()[0], state["fc.weight"].T)

    assert main(["convert-weights", str(tmp_path / "r18.npz"), "--depth", "34", "--output",
                 str(tmp_path / "r34.keras")]) == 2
    reading, err = capsys.readouterr().err.splitlines()
    assert reading.startswith("... reading ") and err.startswith("Error: ")
    assert "first mismatching layer conv2_block3_1_conv" in err
    assert not (tmp_path / "r34.keras").exists()
    assert main(["convert-weights", str(tmp_path / "r18.npz"), "--depth", "18", "--output",
                 str(tmp_path / "r18.h5")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (f"Error: --output must end in .keras, got "
                                                        f"{tmp_path / 'r18.h5'}: try {tmp_path / 'r18.keras'}")


def _small_keras(path, size=32, num_classes=10):
    keras_resnet.resnet(18, num_classes=num_classes, input_shape=(size, size, 3)).save(path)
    return path


def test_convert_weights_never_writes_over_a_file(tmp_path, capsys):
    """`-o run/best.keras` of that same file replaced the run's model (at 224 px) without a word, and `kres
    evaluate run` then failed: meta.json described a 32 px model."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    best = _small_keras(run / "best.keras")
    other = tmp_path / "other.keras"
    other.write_bytes(b"mine")
    before = best.read_bytes()
    for output, message in [
        (best, f"--output {best} is the checkpoint being converted: choose another --output"),
        (run / "last.keras", f"--output {run / 'last.keras'} is the model of the run {run}: choose another --output"),
        (other, f"--output {other} exists: choose another --output, or remove that file first"),
    ]:
        if output.name == "last.keras":
            output.write_bytes(before)
        assert main(["convert-weights", str(best), "--depth", "18", "-o", str(output)]) == 2
        assert capsys.readouterr().err == f"... reading {best}\nError: {message}\n"
    assert best.read_bytes() == before and other.read_bytes() == b"mine"


def test_convert_weights_keeps_a_keras_files_input_size(tmp_path, capsys):
    """A 32 px .keras converted to a 224 px one: --image-size's default was 224 for every checkpoint."""
    source = _small_keras(tmp_path / "c.keras")
    assert main(["convert-weights", str(source), "--depth", "18", "-o", str(tmp_path / "same.keras")]) == 0
    assert main(["convert-weights", str(source), "--depth", "18", "-o", str(tmp_path / "big.keras"),
                 "--image-size", "64"]) == 0
    capsys.readouterr()
    import keras

    for name, size in [("same.keras", 32), ("big.keras", 64)]:
        assert keras.models.load_model(tmp_path / name).input_shape == (None, size, size, 3)


def test_convert_weights_keeps_a_cifar_stem_and_names_no_stem_option(tmp_path, capsys):
    """A --stem cifar run was refused: "conv1_conv expects shapes 7x7x3x64, the checkpoint has 3x3x3x64; pass the
    depth (and stem) the checkpoint was made for", and convert-weights has no --stem. The stem is the checkpoint's.
    Its meta.json's 10 class names are not those of the 3 new classes: none is written beside it, and a note says
    why (following predict's "copy its run's meta.json beside it" was refused: 10 classes, not 3)."""
    import keras

    from keras_resnet.meta import ModelMeta

    run = tmp_path / "runc"
    run.mkdir()
    source = keras_resnet.resnet(18, num_classes=10, input_shape=(SIZE, SIZE, 3), stem="cifar")
    source.save(run / "best.keras")
    ModelMeta.from_model(source, [str(n) for n in range(10)]).save(run)  # 10 names: not those of a 3-class model
    out = tmp_path / "cc.keras"
    assert main(["convert-weights", str(run), "--depth", "18", "-o", str(out), "--num-classes", "3"]) == 0
    assert capsys.readouterr() == (f"Wrote {out}: ResNet-18 v1.5, 3 classes, 11,179,971 parameters\n", (
        f"... reading {run / 'best.keras'}\nkres: loaded the backbone from Keras model {run / 'best.keras'}; it has a "
        "10-class classifier, so the 3-class 'predictions' layer keeps its fresh initialisation\nnote: no meta.json "
        "is written beside cc.keras: its classifier is new (3 classes; best.keras's meta.json names 10), so its "
        f"classes have no names yet; fine-tune it on your data (kres train --weights {out}) to name them\n"))
    assert not (tmp_path / "meta.json").exists()
    model = keras.models.load_model(out)
    assert model.input_shape == (None, SIZE, SIZE, 3) and "pool1_pool" not in [layer.name for layer in model.layers]
    np.testing.assert_array_equal(model.get_layer("conv1_conv").get_weights()[0],
                                  source.get_layer("conv1_conv").get_weights()[0])
    state = torchvision_state(18)
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"][:, :, :1, :1]  # a 1x1 kernel
    np.savez(tmp_path / "odd.npz", **state)
    assert main(["convert-weights", str(tmp_path / "odd.npz"), "--depth", "18", "-o", str(tmp_path / "o.keras")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"Error: torchvision checkpoint {tmp_path / 'odd.npz'} does not fit ResNet-18 (v1.5): first mismatching "
        "layer conv2_block1_1_conv expects shapes 3x3x64x64, the checkpoint has 1x1x64x64; pass the depth the "
        "checkpoint was made for")


def test_convert_weights_takes_a_run_or_export_folder_as_train_weights_does(tmp_path, capsys):
    """`kres convert-weights runs/x` was click's "Invalid value for 'CHECKPOINT': File 'runs/x' is a directory."
    while `kres train --weights runs/x` took its best.keras (and convert-weights took runs/x/best.keras)."""
    run = tmp_path / "run"
    run.mkdir()
    best = _small_keras(run / "best.keras", num_classes=3)
    out = tmp_path / "c.keras"
    assert main(["convert-weights", str(run), "--depth", "18", "-o", str(out)]) == 0
    assert capsys.readouterr() == (f"Wrote {out}: ResNet-18 v1.5, 3 classes, 11,187,651 parameters\n",
                                   f"... reading {best}\n")
    (tmp_path / "empty").mkdir()
    assert main(["convert-weights", str(tmp_path / "empty"), "--depth", "18", "-o", str(tmp_path / "d.keras")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"Error: {tmp_path / 'empty'} is a folder with no best.keras, last.keras, model.keras: pass the model file of "
        f"a run or export, or a {kw.SUPPORTED} file")
    assert main(["convert-weights", str(run), "--depth", "18", "-o", str(best)]) == 2  # its own model: refused
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"Error: --output {best} is the checkpoint being converted: choose another --output")


def test_convert_weights_of_a_run_writes_its_meta_json_beside_the_model(tmp_path, capsys):
    """A run converted to 48 px came without a meta.json: predict showed class_1 for a "1" and resized a digits
    model's images by centre crop, and the run's meta.json copied beside it was refused (32x32x3, not 48x48x3)."""
    from keras_resnet.meta import ModelMeta

    run, out = tmp_path / "run", tmp_path / "cw" / "x48.keras"
    run.mkdir()
    data = {"dataset": None, "data_dir": None, "val_split": 0.2, "image_size": 32}  # the digits
    (run / "config.json").write_text(json.dumps({"data": data}))
    model = keras_resnet.resnet(18, num_classes=3, input_shape=(32, 32, 3))
    model.save(run / "best.keras")
    source = ModelMeta.from_model(model, ["a", "b", "c"])
    source.extra = {"dataset": "digits", "epochs": 1, "val_accuracy": 0.5, "best_val_accuracy": 0.5}
    source.save(run)
    assert main(["convert-weights", str(run), "--depth", "18", "-o", str(out), "--image-size", "48"]) == 0
    assert capsys.readouterr().out == (f"Wrote {out}: ResNet-18 v1.5, 3 classes, 11,187,651 parameters\n"
                                       "Wrote meta.json and labels.txt beside it: its source's classes and "
                                       "preprocessing\n")
    assert ModelMeta.load(out.parent) == ModelMeta(**{**source.to_dict(), "input_shape": [48, 48, 3], "extra": {
        "dataset": "digits", "epochs": 1, "data": data, "resize": "full_frame"}})
    assert (out.parent / "labels.txt").read_text() == "a\nb\nc\n"
    before = (out.parent / "meta.json").read_bytes()
    assert main(["convert-weights", str(run / "best.keras"), "--depth", "18", "-o", str(out.parent / "x64.keras"),
                 "--image-size", "64"]) == 2  # another size into that folder: its meta.json is not replaced
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"Error: {out.parent / 'meta.json'} beside --output {out.parent / 'x64.keras'} is another model's: choose an "
        "--output in a folder of its own, where x64.keras's meta.json is written beside it")
    assert sorted(p.name for p in out.parent.iterdir()) == ["labels.txt", "meta.json", "x48.keras"]
    assert (out.parent / "meta.json").read_bytes() == before
    # (the run's accuracy, measured at 32 px, is not carried to 48 px: above). Into the run's own folder at its
    # size: its meta.json and labels.txt say the same of the copy, and are kept as they are (it was refused)
    run_meta = (run / "meta.json").read_bytes()
    (run / "labels.txt").write_text("a\nb\nc\n")  # as kres train writes it
    assert main(["convert-weights", str(run), "--depth", "18", "-o", str(run / "copy.keras")]) == 0
    assert capsys.readouterr().out == f"Wrote {run / 'copy.keras'}: ResNet-18 v1.5, 3 classes, 11,187,651 parameters\n"
    assert (run / "meta.json").read_bytes() == run_meta
    # a damaged meta.json beside the source: the conversion, which needs none, goes on and writes none
    (run / "meta.json").write_text("{")
    assert main(["convert-weights", str(run), "--depth", "18", "-o", str(tmp_path / "d" / "x.keras")]) == 0
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"note: no meta.json is written beside x.keras: {run}")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["x.keras"]


def test_a_converted_model_that_cannot_be_written_takes_its_meta_json_and_labels_with_it(tmp_path):
    """They are written first (a run stopped after them keeps them, and the same command goes on); the model's
    failed write left them beside no model."""
    from keras_resnet.convert import _save_with

    class Unwritable:
        def save(self, path):
            raise RuntimeError("h5py: cannot write the weights")

    with pytest.raises(RuntimeError, match="cannot write the weights"):
        _save_with(Unwritable(), tmp_path / "m.keras", {tmp_path / "meta.json": "{}\n", tmp_path / "labels.txt": "a\n"})
    assert list(tmp_path.iterdir()) == []


def test_convert_weights_of_text_named_npz(tmp_path, capsys):
    """NumPy's own error offered to "load it unsafely using the allow_pickle= keyword"."""
    junk = tmp_path / "j.npz"
    junk.write_text("junk text\n")
    assert main(["convert-weights", str(junk), "--depth", "18", "-o", str(tmp_path / "j.keras")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"Error: cannot read {junk}: it is not a weights file (an .npz is a zip archive of arrays, as numpy.savez "
        "writes)")


def _h5_without_layers(path):
    with h5py.File(path, "w") as f:
        f.attrs["note"] = "no layers"


def _h5_without_convs(path):
    with h5py.File(path, "w") as f:
        f.create_group("layers/dense/vars").create_dataset("0", data=np.zeros((2, 2), "float32"))


def _keras_without_layers(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", '{"class_name": "Sequential", "config": {}}')
        archive.writestr("model.weights.h5", b"")


@pytest.mark.parametrize(("name", "write", "message"), [
    ("other.npz", lambda p: np.savez(p, **{"encoder.block.weight": np.zeros(3, "float32")}),
     "{path} is not a torchvision ResNet state dict: unexpected key 'encoder.block.weight'"),
    ("text.npz", lambda p: p.write_text("junk text\n"),
     "cannot read {path}: it is not a weights file (an .npz is a zip archive of arrays, as numpy.savez writes)"),
    ("empty.h5", _h5_without_layers,
     "{path} is neither a keras.applications-layout .h5 nor a Keras 3 .weights.h5 file"),
    ("dense.weights.h5", _h5_without_convs,
     "{path} holds no convolution weights: it is not a keras_resnet weights file"),
    ("sequential.keras", _keras_without_layers,
     "the .keras file does not hold a functional model: save a model built by keras_resnet"),
])
def test_read_checkpoint_passes_its_own_errors_through_unchanged(tmp_path, name, write, message):
    """KresError is a ValueError: read_checkpoint's ``except (OSError, ValueError)`` wrapped each in "cannot read
    PATH: ...; is it a complete ... file?", the path said twice and the advice of a damaged file."""
    path = tmp_path / name
    write(path)
    with pytest.raises(KresError) as err:
        kw.read_checkpoint(path)
    assert str(err.value) == message.format(path=path)


def test_pth_without_torch_says_how_to_get_by(tmp_path, monkeypatch):
    (tmp_path / "r18.pth").write_bytes(b"\0")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(KresError, match=r"r18\.pth needs PyTorch \(pip install torch\).*\.safetensors or \.npz"):
        kw.read_checkpoint(tmp_path / "r18.pth")


def test_the_builder_takes_a_run_folder_as_weights_as_train_does(tmp_path):
    """resnet(..., weights="run") said "run is a folder with no best.keras, ...: pass --weights ..." of a folder
    holding best.keras: only train's --weights looked inside folders."""
    from keras_resnet.model import resnet

    trained = resnet(18, num_classes=3, input_shape=(32, 32, 3))
    trained.get_layer("predictions").kernel.assign(np.full((512, 3), 0.25, "float32"))
    (tmp_path / "run").mkdir()
    trained.save(tmp_path / "run" / "best.keras")
    loaded = resnet(18, num_classes=3, input_shape=(32, 32, 3), weights=str(tmp_path / "run"))
    assert np.array_equal(np.array(loaded.get_layer("predictions").kernel), np.full((512, 3), 0.25, "float32"))


def test_a_run_or_export_folder_as_weights_is_its_model_and_an_empty_one_says_what_it_lacks(tmp_path):
    """``--weights RUN_DIR`` was "expected a .keras ... file", though evaluate, export and predict take run folders;
    the run's config records the file it stands for."""
    from keras_resnet.data import DataConfig
    from keras_resnet.train import TrainConfig, _identity, resolve

    run, export, empty = tmp_path / "run", tmp_path / "export", tmp_path / "empty"
    for folder, names in ((run, ("last.keras", "best.keras")), (export, ("model.keras",)), (empty, ())):
        folder.mkdir()
        for name in names:
            (folder / name).write_bytes(b"")
    for given, expected in ((run, run / "best.keras"), (export, export / "model.keras"), (empty, empty)):
        cfg, _, _ = resolve(TrainConfig(depth=18, weights=str(given)), DataConfig())
        assert cfg.weights == str(expected)
    # runs/latest, recorded as typed, named the new run itself once it became runs/latest: neither the same command
    # nor --resume could start it again ("runs/latest/best.keras does not exist")
    (tmp_path / "latest").symlink_to("run")
    cfg, _, _ = resolve(TrainConfig(depth=18, weights=str(tmp_path / "latest")), DataConfig())
    assert cfg.weights == os.path.realpath(run / "best.keras")
    cfg, _, _ = resolve(TrainConfig(depth=18, weights=str(tmp_path / "latest" / "best.keras")), DataConfig())
    assert cfg.weights == os.path.realpath(run / "best.keras")  # the file through the link, too
    (run / "best.keras").unlink()
    assert kw.in_folder(str(run)) == str(run / "last.keras")
    # Another file of the same folder typed is another start (a folder that is gone or moved is let go by
    # train._check_existing_run, tested in test_train)
    assert _identity({"weights": str(run / "last.keras")}, {}) != _identity({"weights": str(run / "best.keras")}, {})
    with pytest.raises(KresError) as err:
        kw.check_weights(str(empty), depth=18, variant="v1.5")
    assert str(err.value) == (f"{empty} is a folder with no best.keras, last.keras, model.keras: pass the model "
                              f"file of a run or export, or a {kw.SUPPORTED} file")  # (to Python callers too)

