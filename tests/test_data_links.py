"""Symlinked image folders: loops are refused, a file reached twice is one image, and never in train and val."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_resnet.data import DataConfig, load_datasets
from keras_resnet.errors import KresError

SIZE = 32


def _images(folder, count, seed):
    folder.mkdir(parents=True)
    for i in range(count):
        pixels = np.random.default_rng(seed * 100 + i).integers(0, 255, (36, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")


def _load(root, **kwargs):
    return load_datasets(DataConfig(data_dir=str(root), image_size=SIZE, batch_size=2, **kwargs))


def test_a_symlink_loop_is_refused_in_one_line(tmp_path):
    _images(tmp_path / "a", 5, 0)
    _images(tmp_path / "b", 5, 1)
    os.symlink("..", tmp_path / "a" / "up")  # a/up/a/up/... and a/up/b: class b's images under a
    with pytest.raises(KresError, match=r"symlink loop in .*: .*a/up/a leads back to .*a; remove the directory link"):
        _load(tmp_path)


def test_a_loop_through_two_links_is_refused(tmp_path):
    _images(tmp_path / "a", 5, 0)
    _images(tmp_path / "b", 5, 1)
    os.symlink("../b", tmp_path / "a" / "to_b")
    os.symlink("../a", tmp_path / "b" / "to_a")
    with pytest.raises(KresError, match="symlink loop"):
        _load(tmp_path)


def test_the_same_file_reached_twice_counts_once(tmp_path):
    _images(tmp_path / "a", 6, 0)
    _images(tmp_path / "b", 6, 1)
    os.symlink(tmp_path / "a" / "0.png", tmp_path / "a" / "again.png")
    os.link(tmp_path / "a" / "1.png", tmp_path / "a" / "hard.png")
    _images(tmp_path.parent / f"{tmp_path.name}-extra", 2, 2)  # outside the data folder, linked into a twice
    os.symlink(tmp_path.parent / f"{tmp_path.name}-extra", tmp_path / "a" / "more")
    os.symlink(tmp_path.parent / f"{tmp_path.name}-extra", tmp_path / "a" / "more_again")
    data = _load(tmp_path, val_split=0.5)
    assert (data.num_train, data.num_val, data.skipped_files) == (7, 7, 0)  # a: 6 + 2, b: 6


def test_one_file_in_two_class_folders_is_refused_naming_both(tmp_path):
    """It was kept under the first class in sorted order and dropped from the other without a word: evaluate
    scored the red images linked into green/ as green (new-user walk). Until 2026-12-05 the test above linked a/
    into b/ and expected that."""
    _images(tmp_path / "a", 6, 0)
    _images(tmp_path / "b", 6, 1)
    os.symlink(tmp_path / "a" / "2.png", tmp_path / "b" / "from_a.png")
    with pytest.raises(KresError) as err:
        _load(tmp_path)
    assert str(err.value) == (f"{tmp_path / 'b' / 'from_a.png'} and {tmp_path / 'a' / '2.png'} are one file (a link) "
                              "in two class folders, b and a: an image has one class; remove the link from the wrong "
                              "one")


def test_no_file_is_in_both_train_and_val(tmp_path):
    for split in ("train", "val"):
        _images(tmp_path / split / "a", 4, 0 if split == "train" else 2)
        _images(tmp_path / split / "b", 4, 1 if split == "train" else 3)
    os.symlink(tmp_path / "train" / "a" / "0.png", tmp_path / "val" / "a" / "from_train.png")
    (tmp_path / "val" / "b" / "some_of_train").mkdir()
    for i in (0, 1):
        os.link(tmp_path / "train" / "b" / f"{i}.png", tmp_path / "val" / "b" / "some_of_train" / f"{i}.png")
    data = _load(tmp_path)
    # val: 4 + 1 linked in a, 4 + 2 linked in b; train keeps only what val does not hold: 3 in a, 2 in b
    assert (data.num_val, data.num_train) == (11, 5)
