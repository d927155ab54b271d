from __future__ import annotations

import json

import pytest

from keras_resnet import runs
from keras_resnet.errors import KresError


def test_find_model_prefers_best_then_last(tmp_path):
    assert runs.find_model(tmp_path) is None
    (tmp_path / runs.LAST_MODEL).write_bytes(b"")
    assert runs.find_model(tmp_path) == tmp_path / "last.keras"
    (tmp_path / runs.BEST_MODEL).write_bytes(b"")
    assert runs.find_model(tmp_path) == tmp_path / "best.keras"


def test_config_reading(tmp_path):
    assert runs.read_config(tmp_path) is None and runs.data_config(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps({"data": {"dataset": "synthetic"}, "train": {}}))
    assert runs.data_config(tmp_path) == {"dataset": "synthetic"}
    assert runs.training_data_config(tmp_path / "export" / "model.tflite") == {"dataset": "synthetic"}
    for broken in (b"{", b"[1]", b"\xff\xfe{}"):  # the last is not UTF-8 (a traceback before)
        (tmp_path / "config.json").write_bytes(broken)
        with pytest.raises(KresError, match="is not a valid run config") as err:
            runs.read_config(tmp_path)
        assert "\n" not in str(err.value)


def test_checkpoint_state_and_weights(tmp_path):
    assert runs.checkpoint_weights(tmp_path) == (0, None)
    folder = tmp_path / runs.CHECKPOINT_DIR
    folder.mkdir()
    (folder / runs.STATE_FILE).write_text(json.dumps({"steps": 7, "weights": "ckpt-7.weights.h5"}))
    with pytest.raises(KresError, match=r"ckpt-7\.weights\.h5 is damaged \(the file is missing\): no good checkpoint"):
        runs.checkpoint_weights(tmp_path)  # named, but not there: refused, never a restart from step 0 (issue 14)
    (folder / "ckpt-7.weights.h5").write_bytes(b"")
    with pytest.raises(KresError, match=r"ckpt-7\.weights\.h5 is damaged \("):
        runs.checkpoint_weights(tmp_path)  # not an HDF5 file
    import h5py

    with h5py.File(folder / "ckpt-7.weights.h5", "w") as handle:
        handle["layers/dense/vars/0"] = [1.0, 2.0]
    assert runs.checkpoint_weights(tmp_path) == (7, folder / "ckpt-7.weights.h5")


def test_load_keras_wraps_what_is_not_a_model(tmp_path):
    text = tmp_path / "model.keras"
    text.write_text("not a zip")
    with pytest.raises(KresError, match=r"is not a \.keras model \(a \.keras file is a zip archive\)"):
        runs.load_keras(text)


def test_a_meta_json_that_is_not_json_or_not_utf8_is_one_line(tmp_path):
    from keras_resnet.meta import ModelMeta

    for broken in (b"{", b"\xff\xfe{}", b'{"depth": 18}'):
        (tmp_path / "meta.json").write_bytes(broken)
        with pytest.raises(KresError, match=r"meta\.json is not a valid meta\.json \(.*\); re-export the model$"):
            ModelMeta.load(tmp_path)


def test_a_truncated_keras_file_is_called_damaged_and_the_runs_other_model_is_offered(tmp_path):
    """A truncated best.keras was "not a .keras model: pass a run directory or the .keras file written by 'kres
    train'", to a user who had passed the run directory, with last.keras beside it."""
    import zipfile

    from keras_resnet.export import resolve_source

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    zipfile.ZipFile(run / "last.keras", "w").close()  # a zip archive, as a .keras file is
    (run / "best.keras").write_bytes(b"PK" * 500)
    damaged = (f"{run / 'best.keras'} is not a .keras model (a .keras file is a zip archive): it is damaged (1,000 "
               "bytes, truncated?); ")
    with pytest.raises(KresError) as caught:
        resolve_source(run)
    assert str(caught.value) == f"{damaged}pass {run / 'last.keras'} instead"
    with pytest.raises(KresError) as caught:  # evaluate, predict and rebuild load it here
        runs.load_keras(run / "best.keras")
    assert str(caught.value) == f"{damaged}pass {run / 'last.keras'} instead"
    (run / "last.keras").write_bytes(b"")
    with pytest.raises(KresError) as caught:
        resolve_source(run / "best.keras")
    assert str(caught.value) == (f"{damaged}copy it again, or pass a run directory or the .keras file "
                                 "written by 'kres train'")
    (tmp_path / "notes.txt").write_text("a model")
    with pytest.raises(KresError) as caught:
        runs.load_keras(tmp_path / "notes.txt")
    assert str(caught.value) == (f"{tmp_path / 'notes.txt'} is not a .keras model (a .keras file is a zip archive); "
                                 "pass the file written by 'kres train' or 'kres export'")


def test_an_unreadable_keras_file_is_not_called_damaged(tmp_path, monkeypatch):
    """A best.keras without read permission was "it is damaged (45,025,064 bytes, truncated?); pass last.keras"."""
    import builtins
    import zipfile

    run = tmp_path / "run"
    run.mkdir()
    zipfile.ZipFile(run / "best.keras", "w").close()
    zipfile.ZipFile(run / "last.keras", "w").close()
    real_open = builtins.open

    def no_permission(file, *args, **kwargs):
        if str(file) == str(run / "best.keras"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_permission)
    with pytest.raises(KresError) as caught:
        runs.load_keras(run / "best.keras")
    assert str(caught.value) == (f"cannot read {run / 'best.keras'}: permission denied; give your user read "
                                 "permission on it")


def test_a_tflite_file_named_keras_is_told_to_be_renamed(tmp_path):
    """A .tflite renamed to .keras was "it is damaged (44,726,232 bytes, truncated?); copy it again"."""
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 100)
    with pytest.raises(KresError) as caught:
        runs.load_keras(fake)
    assert str(caught.value) == (f"{fake} is a TFLite model named .keras, not a .keras model; rename it "
                                 "fake.tflite")


def test_a_meta_json_with_values_of_the_wrong_kind_is_refused_naming_the_field(tmp_path):
    """A mean of "abc", a normalization "foo" and ten labels "a" were accepted and copied into the export's
    meta.json and model card; a JSON list was "ModelMeta() argument after ** must be a mapping, not list"."""
    from keras_resnet.meta import ModelMeta

    good = ModelMeta(18, "v1.5", "imagenet", [32, 32, 3], "torch", [0.0] * 3, [1.0] * 3, ["a", "b"]).to_dict()
    cases = [({"mean": "abc"}, 'its mean is "abc" where a list of 3 numbers is expected'),
             ({"std": [1.0, 0.0, 1.0]}, "its std is [1.0, 0.0, 1.0] where a list of 3 positive numbers is expected"),
             ({"normalization": "foo"}, 'its normalization is "foo" where one of torch, caffe, custom is expected'),
             ({"input_shape": [32, 32]}, "its input_shape is [32, 32] where [height, width, channels] is expected"),
             ({"depth": "18"}, 'its depth is "18" where a positive whole number is expected'),
             ({"labels": ["a"] * 10}, "its labels name 'a' twice: each class needs a name of its own")]
    for change, problem in cases:
        (tmp_path / "meta.json").write_text(json.dumps({**good, **change}))
        with pytest.raises(KresError) as caught:
            ModelMeta.load(tmp_path)
        assert str(caught.value) == (f"{tmp_path / 'meta.json'} is not a valid meta.json ({problem}); re-export "
                                     "the model")
    (tmp_path / "meta.json").write_text("[1]")
    (tmp_path / "config.json").write_text("{}")  # a run's meta.json: written by kres train, not by export
    with pytest.raises(KresError) as caught:
        ModelMeta.load(tmp_path)
    assert str(caught.value) == (f"{tmp_path / 'meta.json'} is not a valid meta.json (a JSON list, not an object of "
                                 "fields); it is written by 'kres train': restore it from a copy of the run, or "
                                 "delete it to have the facts read off the model (its classes numbered)")
    (tmp_path / "meta.json").write_text(json.dumps(good))
    assert ModelMeta.load(tmp_path) == ModelMeta(**good)
