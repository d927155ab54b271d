"""TFDS datasets through TFDS's own mock data (no network), the offline not-prepared error and unknown names."""

import logging
import signal
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow_datasets as tfds  # a runtime dependency: a broken install must fail here, not skip

from keras_resnet.data import DataConfig, _temporary_tempdir, _tfds_splits, load_datasets
from keras_resnet.errors import KresError

SIZE = 32


@pytest.fixture
def deadline():
    """Fail, rather than hang, if a TFDS call reaches for the network."""
    def expire(signum, frame):
        raise TimeoutError("TFDS call did not return within 60 s: is it waiting on the network?")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def prepared_metadata(name, data_dir, splits):
    """Write the dataset_info.json a prepared dataset has, so ``is_prepared()`` is true; mock_data supplies rows."""
    with _temporary_tempdir():  # TFDS leaves an empty temporary folder otherwise
        builder = tfds.builder(name, data_dir=data_dir)
    infos = [
        tfds.core.SplitInfo(name=split, shard_lengths=[n], num_bytes=0, filename_template=tfds.core.ShardedFileTemplate(
            data_dir=builder.data_path, dataset_name=builder.name, split=split, filetype_suffix="tfrecord"))
        for split, n in splits.items()
    ]
    builder.info.set_splits(tfds.core.SplitDict(infos))
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)


def test_mnist_mock_end_to_end_grey_to_rgb(tmp_path, deadline):
    prepared_metadata("mnist", tmp_path, {"train": 60000, "test": 10000})
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
        data = load_datasets(DataConfig(dataset="mnist", tfds_dir=str(tmp_path), image_size=SIZE, batch_size=4))
        assert (data.num_train, data.num_val) == (12, 12)  # mock_data yields num_examples rows for every split
        assert len(data.class_names) == 10 and data.skipped_files == 0
        assert data.val_note == "mnist's own test split"  # in the banner
        batches = list(data.train)
        assert len(batches) == 3
        images, labels = batches[0]
        assert images.shape == (4, SIZE, SIZE, 3) and labels.shape == (4, 10)
        val_images, val_labels = next(iter(data.val))
        np.testing.assert_array_equal(val_images[..., 0], val_images[..., 1])  # 28x28x1 grey replicated to RGB
        np.testing.assert_array_equal(val_labels.numpy().sum(axis=1), np.ones(4))
        assert val_images.dtype == np.uint8


def test_a_dataset_without_a_held_out_split_is_split_by_val_split(tmp_path, deadline):
    prepared_metadata("mnist", tmp_path, {"train": 60000})
    with tfds.testing.mock_data(num_examples=20, data_dir=str(tmp_path)):
        data = load_datasets(DataConfig(dataset="mnist", tfds_dir=str(tmp_path), image_size=SIZE, batch_size=4,
                                        val_split=0.25))
    # train[15000:] and train[:15000] (test_split_choice); mock_data yields num_examples rows for any split
    assert (data.num_train, data.num_val, data.val_note) == (20, 20, "")


def _plan(steps_per_epoch: int, epochs: int) -> SimpleNamespace:
    """What the banner reads of train's plan: one warmup epoch of ``steps_per_epoch`` steps."""
    from keras_resnet.optim import Schedule

    return SimpleNamespace(xla=False, steps_per_epoch=steps_per_epoch, peak_lr=0.1,
                           schedule=Schedule(0.1, steps_per_epoch, epochs * steps_per_epoch))


def test_the_banner_says_where_the_validation_images_come_from():
    from keras_resnet.train import TrainConfig, _banner

    placement = SimpleNamespace(replicas=1, kind="default", accelerator="cpu")

    def first_line(val_note):
        datasets = SimpleNamespace(num_train=12, num_val=4, val_note=val_note, class_names=list("abc"), skipped=())
        cfg = TrainConfig(epochs=2, warmup_epochs=1, optimizer="sgd", weight_decay=5e-5, ema=0.0)
        return _banner(cfg, DataConfig(dataset="mnist"), datasets, placement, "float32", _plan(3, 2), "runs/r",
                       0).splitlines()[0]

    assert first_line("mnist's own test split").endswith(
        "on mnist: 12 train / 4 val images (mnist's own test split), 3 classes")
    assert first_line("").endswith("on mnist: 12 train / 4 val images, 3 classes")
    datasets = SimpleNamespace(num_train=2, num_val=2, val_note="", class_names=list("ab"), skipped=("a/x.png",),
                               skipped_files=1)
    one = TrainConfig(epochs=1, warmup_epochs=1, optimizer="sgd", weight_decay=5e-5, ema=0.0)
    lines = _banner(one, DataConfig(dataset="mnist"), datasets, placement, "float32", _plan(1, 1), "runs/r",
                    0).splitlines()
    assert lines[0].endswith(", 2 classes, 1 unreadable file skipped (a/x.png)") and "1 epoch x 1 step;" in lines[1]
    assert "sgd peak lr 0.1, warmup 1 epoch (0 steps: none), wd 5e-05" in lines[1]  # 1 of a 1-step run is none


def test_val_split_with_a_dataset_of_its_own_validation_split_is_refused(tmp_path, deadline, capsys):
    """It was ignored without a word (the run validated on mnist's test split), as with --dataset synthetic."""
    from kres.main import main

    prepared_metadata("mnist", tmp_path, {"train": 60000, "test": 10000})
    code = main(["train", "--depth", "18", "--dataset", "mnist", "--tfds-dir", str(tmp_path), "--val-split", "0.3",
                 "--output", str(tmp_path / "run")])
    assert code == 2 and capsys.readouterr().err.strip().splitlines()[-1] == (
        "Error: mnist has a test split of its own, which kres validates on: drop --val-split")
    assert not (tmp_path / "run").exists()


def test_not_prepared_offline_is_a_quick_clear_error(tmp_path, deadline, caplog):
    start = time.monotonic()
    with pytest.raises(KresError, match=r"not prepared.*tfds build cifar10 --data_dir"):
        load_datasets(DataConfig(dataset="cifar10", tfds_dir=str(tmp_path), image_size=SIZE))
    assert time.monotonic() - start < 30
    assert not any(tmp_path.iterdir())  # nothing was downloaded or half-written
    # kres's line only: TFDS 4.9 logged "Variant folder .../cifar10/3.0.2 has no dataset_info.json" before it
    assert [r.getMessage() for r in caplog.records if r.name == "absl" and r.levelno >= logging.WARNING] == []


def test_manual_download_dataset_says_manual_dir(tmp_path, deadline):
    with pytest.raises(KresError, match="--manual_dir"):
        load_datasets(DataConfig(dataset="imagenet2012", tfds_dir=str(tmp_path), image_size=SIZE))


def test_unknown_dataset_lists_the_choices(tmp_path, deadline):
    with pytest.raises(KresError, match=r"unknown dataset 'no_such_data'.*digits.*synthetic.*TFDS"):
        load_datasets(DataConfig(dataset="no_such_data", tfds_dir=str(tmp_path), image_size=SIZE))


def test_not_image_classification(tmp_path, deadline):
    prepared_metadata("imdb_reviews", tmp_path, {"train": 10, "test": 10})
    with pytest.raises(KresError, match="not image classification"):
        load_datasets(DataConfig(dataset="imdb_reviews", tfds_dir=str(tmp_path), image_size=SIZE))


def test_split_choice():
    def info(**counts):
        return SimpleNamespace(name="x", splits={k: SimpleNamespace(num_examples=n) for k, n in counts.items()})
    assert _tfds_splits(info(train=100, validation=10, test=5), 0.2) == ("train", "validation")
    assert _tfds_splits(info(train=100, test=5), 0.2) == ("train", "test")
    assert _tfds_splits(info(train=3670), 0.2) == ("train[734:]", "train[:734]")
    with pytest.raises(KresError, match="no 'train' split"):
        _tfds_splits(info(test=5), 0.2)


def test_a_builder_leaves_no_temporary_folder(tmp_path, monkeypatch, deadline):
    # TFDS 4.9 makes an empty mkdtemp("tfds") folder for every builder of a dataset it has not got
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    (tmp_path / "data").mkdir()  # (a folder that does not exist is refused before any builder is made)
    with pytest.raises(KresError, match="not prepared"):
        load_datasets(DataConfig(dataset="cifar10", tfds_dir=str(tmp_path / "data"), image_size=SIZE))
    assert list(scratch.iterdir()) == []
    assert tempfile.gettempdir() == str(scratch)


def test_a_damaged_tfds_record_file_is_one_line_not_skipped(tmp_path, deadline, capsys, monkeypatch):
    """A shard cut short or deleted: kres evaluate hung at full CPU, deaf to Ctrl-C (tf.data's ignore_errors
    retried it), and train ended in a 67-line traceback. TFDS records are read unskipped, and the error is one
    line; images of folders a decoder rejects are still skipped."""
    import tensorflow as tf

    import kres.main
    from keras_resnet import data as kd
    from kres.main import main

    prepared_metadata("mnist", tmp_path, {"train": 60000, "test": 10000})
    with tfds.testing.mock_data(num_examples=4, data_dir=str(tmp_path)):
        assert kd._tfds_source(DataConfig(dataset="mnist", tfds_dir=str(tmp_path), image_size=SIZE)).skip_unreadable \
            is False
    with tf.io.TFRecordWriter(str(tmp_path / "whole.tfrecord")) as writer:
        for _ in range(20):
            writer.write(b"x" * 1000)
    (tmp_path / "cut.tfrecord").write_bytes((tmp_path / "whole.tfrecord").read_bytes()[:5000])  # 4 whole records
    records = tf.data.TFRecordDataset(str(tmp_path / "cut.tfrecord"))
    assert len(list(kd._skipping_unreadable(records, SimpleNamespace(skip_unreadable=True)))) == 4
    with pytest.raises(tf.errors.DataLossError) as err:
        list(kd._skipping_unreadable(records, SimpleNamespace(skip_unreadable=False)))

    missing = tf.errors.NotFoundError(None, None, "{{function_node __wrapped__IteratorGetNext_output_types_2_device_/"
                                                  "job:localhost/replica:0/task:0/device:CPU:0}} d/tf_flowers/3.0.1/"
                                                  "tf_flowers-train.tfrecord-00000-of-00001; No such file or directory "
                                                  "[Op:IteratorGetNext] name: ")
    for raised, line in (
            (err.value, "a record file is cut short (truncated record at 4064' failed with Read less bytes than "
                        "requested)"),
            (missing, "a record file is missing (d/tf_flowers/3.0.1/tf_flowers-train.tfrecord-00000-of-00001; No such "
                      "file or directory)")):
        def reading(*_args, error=raised, **_kwargs):
            raise error

        monkeypatch.setattr(kres.main.cli, "main", reading)
        assert main(["evaluate", "run"]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"Error: the TFDS data is damaged: {line}: prepare the dataset again (tfds build) and pass its --tfds-dir"]


def test_a_misspelt_dataset_a_prepared_variant_and_a_missing_tfds_dir_say_the_fix(tmp_path, deadline,
                                                                                    monkeypatch):
    """'tf_flower' and 'TF_Flowers' were only "unknown dataset"; 'imagenette' beside a prepared
    imagenette/160px-v2 was "not prepared"; a --tfds-dir that does not exist was "not prepared in" it."""
    for typed, meant in (("tf_flower", "tf_flowers"), ("TF_Flowers", "tf_flowers"), ("synthtic", "synthetic"),
                         ("Digit", "digits")):  # the built-in names first: 'synthtic' was "did you mean 'nsynth'?"
        with pytest.raises(KresError, match=rf"^unknown dataset '{typed}' \(did you mean '{meant}'\?\): leave "):
            load_datasets(DataConfig(dataset=typed, tfds_dir=str(tmp_path), image_size=SIZE))
    (tmp_path / "imagenette" / "160px-v2" / "1.0.0").mkdir(parents=True)
    (tmp_path / "imagenette" / "160px-v2" / "1.0.0" / "dataset_info.json").write_text("{}")
    with pytest.raises(KresError, match=rf"^TFDS dataset 'imagenette' is not prepared in {tmp_path} \(it holds "
                                        r"imagenette/160px-v2: pass --dataset imagenette/160px-v2 for it\) and kres "):
        load_datasets(DataConfig(dataset="imagenette", tfds_dir=str(tmp_path), image_size=SIZE))
    with pytest.raises(KresError) as err:
        load_datasets(DataConfig(dataset="tf_flowers", tfds_dir=str(tmp_path / "nope"), image_size=SIZE))
    assert str(err.value) == (f"--tfds-dir {tmp_path / 'nope'} does not exist: pass the folder the dataset was "
                              "prepared in (tfds build --data_dir)")
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/ is the user's home: a folder there is found
    with pytest.raises(KresError, match=r"^TFDS dataset 'tf_flowers' is not prepared in ~/imagenette "):
        load_datasets(DataConfig(dataset="tf_flowers", tfds_dir="~/imagenette", image_size=SIZE))
