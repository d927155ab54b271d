"""Image-folder pipelines on generated folders: every format and colour mode, bad files skipped and counted."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_resnet.data import DataConfig, calibration_images, load_datasets
from keras_resnet.errors import KresError

SIZE = 32


def _photo(seed, width=48, height=36):
    """A smooth colour pattern (lossy formats keep it close), different for each seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    freq, phase = rng.uniform(1, 4, (2, 3)), rng.uniform(0, 6.3, 3)
    rgb = [127.5 + 127.5 * np.sin(freq[0, c] * 6.3 * x + freq[1, c] * 6.3 * y + phase[c]) for c in range(3)]
    return Image.fromarray(np.stack(rgb, axis=-1).astype(np.uint8))


def _jpeg_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_class(folder, seed):
    """12 files: 9 good images (each format and mode), 3 bad ones, and a text file that is not an image."""
    folder.mkdir(parents=True)
    img = _photo(seed)
    img.save(folder / "rgb.jpg", "JPEG")
    img.convert("L").save(folder / "grey.jpeg", "JPEG")
    img.convert("CMYK").save(folder / "cmyk.jpg", "JPEG")
    img.save(folder / "rgb.png", "PNG")
    img.convert("RGBA").save(folder / "rgba.png", "PNG")
    img.convert("L").save(folder / "grey.png", "PNG")
    img.save(folder / "rgb.bmp", "BMP")
    img.convert("P").save(folder / "palette.BMP", "BMP")  # TensorFlow misreads these: PIL converts them
    img.save(folder / "anim.gif", "GIF", save_all=True, append_images=[_photo(seed + 100)])
    (folder / "zero.png").write_bytes(b"")
    (folder / "corrupt.jpg").write_bytes(np.random.default_rng(seed).bytes(3000))
    data = _jpeg_bytes(_photo(seed, 200, 150))
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("not an image")
    return 9, 3


@pytest.fixture(scope="module")
def split_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for split in ("train", "val"):
        for k, name in enumerate(("cat", "dog", "emu")):
            write_class(root / split / name, seed=k)
    return root


def test_train_val_folders_counts_classes_and_skips(split_folders):
    data = load_datasets(DataConfig(data_dir=str(split_folders), image_size=SIZE, batch_size=4))
    assert data.class_names == ["cat", "dog", "emu"]
    assert (data.num_train, data.num_val) == (27, 27)
    assert data.skipped_files == 18  # 3 bad files x 3 classes x 2 splits
    assert data.skipped == tuple(f"{split}/{name}/{bad}" for split in ("train", "val") for name in ("cat", "dog", "emu")
                                 for bad in ("corrupt.jpg", "truncated.jpg", "zero.png"))  # sorted, as read
    spec = data.train.element_spec
    assert spec[0].shape.as_list() == [4, SIZE, SIZE, 3] and spec[1].shape.as_list() == [4, 3]
    # A full epoch runs through every format: bad files never reach the decoder.
    batches = list(data.train)
    assert len(batches) == 27 // 4
    images = np.concatenate([x.numpy() for x, _ in batches])
    assert images.dtype == np.uint8 and images.max() > images.min()
    val = list(data.val)
    assert sum(int(x.shape[0]) for x, _ in val) == 27
    labels = np.concatenate([y.numpy() for _, y in val]).argmax(axis=1)
    assert np.bincount(labels).tolist() == [9, 9, 9]


def test_every_format_and_mode_decodes_to_the_same_pixels(split_folders):
    """Eval-preprocessed PNG, BMP (palette via PIL), GIF and RGBA images of one photo agree; grey ones are grey."""
    data = load_datasets(DataConfig(data_dir=str(split_folders), image_size=SIZE, batch_size=27, cache=False))
    images, labels = next(iter(data.val))
    cat = images.numpy().astype(np.float32)[labels.numpy().argmax(axis=1) == 0]
    assert cat.shape == (9, SIZE, SIZE, 3)
    # Files in sorted order: anim.gif cmyk.jpg grey.jpeg grey.png palette.BMP rgb.bmp rgb.jpg rgb.png rgba.png
    anim, cmyk, grey_jpeg, grey_png, palette, rgb_bmp, rgb_jpg, rgb_png, rgba = cat
    np.testing.assert_allclose(rgb_bmp, rgb_png, atol=1e-3)
    np.testing.assert_allclose(rgba, rgb_png, atol=1e-3)
    for lossy in (rgb_jpg, cmyk, palette, anim):  # JPEG, CMYK JPEG and 256-colour quantisation are approximate
        assert np.abs(lossy - rgb_png).mean() < 16  # measured 2-12
    for grey in (grey_jpeg, grey_png):
        np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-3)


def test_jfif_and_jpe_photos_are_read_and_a_macs_zip_folder_is_no_class(tmp_path):
    """A class of .jfif photos (what browsers on Windows save) was left out without a word: "images of one class
    only ('dog')"; and __MACOSX/, which unzipping a Mac's zip leaves, was a class "with no readable images"."""
    for k, (name, extensions) in enumerate((("cat", (".jfif", ".JPE", ".jif")), ("dog", (".jpg", ".jpeg", ".png")))):
        (tmp_path / name).mkdir()
        for i, extension in enumerate(extensions):
            _photo(k + i).save(tmp_path / name / f"{i}{extension}", "JPEG" if extension != ".png" else "PNG")
    (tmp_path / "__MACOSX" / "cat").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "cat" / "._0.jfif").write_bytes(b"\x00\x05\x16\x07")  # AppleDouble, not an image
    data = load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1, val_split=1 / 3,
                                    cache=False))
    assert (data.class_names, data.num_train, data.num_val, data.skipped_files) == (["cat", "dog"], 4, 2, 0)


def test_webp_and_tiff_are_trained_on_as_the_same_pixels(tmp_path):
    """WebP and TIFF files were left out of training without a word (not even counted as skipped), though predict
    reads them: a class of WebP photos alone was "one class only". A 16-bit TIFF is scaled to 8 bits, not clipped."""
    for k, name in enumerate(("cat", "dog")):
        folder = tmp_path / name
        folder.mkdir()
        img = _photo(k)
        img.save(folder / "a.png", "PNG")
        img.save(folder / "b.webp", "WEBP", lossless=True)
        img.save(folder / "c.TIF", "TIFF")
        grey = np.asarray(img.convert("L"), np.uint16) * 257  # 0-65535: the 8-bit grey, exactly, once scaled
        Image.fromarray(grey).save(folder / "d.tiff", "TIFF")
        img.convert("L").save(folder / "e.png", "PNG")
    data = load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1, val_split=0.5,
                                    cache=False))
    assert (data.num_train, data.num_val, data.skipped_files) == (5, 5, 0)
    from keras_resnet.data import _scan

    # the cache holds a PIL-read file as a PNG of its pixels: counted as such (a 40 KB WebP photo is 1.3 MB)
    sizes = {Path(f.path).name: f.size for f in _scan(tmp_path, ["cat"])[0]}
    assert sizes["a.png"] == (tmp_path / "cat" / "a.png").stat().st_size
    assert sizes["b.webp"] == 48 * 36 * 3 > (tmp_path / "cat" / "b.webp").stat().st_size
    assert sizes["c.TIF"] == (tmp_path / "cat" / "c.TIF").stat().st_size > 48 * 36 * 3  # the larger of the two
    from keras_resnet.data import load_every_image

    whole = load_every_image(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=10, cache=False))
    images, labels = next(iter(whole.val))
    cat = images.numpy().astype(np.float32)[labels.numpy().argmax(axis=1) == 0]
    png, webp, tif, grey16, grey8 = cat  # in file order
    np.testing.assert_array_equal(webp, png)
    np.testing.assert_array_equal(tif, png)
    np.testing.assert_array_equal(grey16, grey8)


def test_inside_scans_once_each_file_is_checked_once(split_folders, monkeypatch):
    from keras_resnet import data

    checked = []
    check = data._check_image
    monkeypatch.setattr(data, "_check_image", lambda path: checked.append(path) or check(path))
    cfg = DataConfig(data_dir=str(split_folders), image_size=SIZE, batch_size=2)
    with data.scans_once():
        first = load_datasets(cfg)
        list(calibration_images(cfg, 2))
        again = load_datasets(cfg)
    assert len(checked) == len(set(checked)) == 2 * 3 * 12  # 12 files a class, 3 classes, train and val
    assert (again.num_train, again.num_val, again.skipped_files) == (first.num_train, first.num_val, 18) == (27, 27, 18)
    load_datasets(cfg)  # outside: a new command, which sees files added since
    assert len(checked) == 2 * 2 * 3 * 12


def test_one_folder_split_by_val_split(tmp_path):
    for k, name in enumerate(("a", "b")):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(10):
            _photo(10 * k + i).save(folder / f"{i}.jpg", "JPEG")
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    data = load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=2, val_split=0.3))
    assert (data.num_train, data.num_val, data.skipped_files) == (14, 6, 1) and data.skipped == ("a/broken.png",)
    assert data.class_names == ["a", "b"] and data.val_note == ""  # 3 of each class
    first = next(iter(data.train))[0].numpy()
    assert sum(1 for _ in data.train) == 7  # the second epoch: 14 // 2 full batches
    again = next(iter(load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=2,
                                                val_split=0.3)).train))[0].numpy()
    np.testing.assert_array_equal(first, again)
    calib = list(calibration_images(DataConfig(data_dir=str(tmp_path), image_size=SIZE, val_split=0.3), 4))
    assert [c.shape for c in calib] == [(1, SIZE, SIZE, 3)] * 4


def test_checking_a_large_folder_says_so_and_how_far_it_is(tmp_path, monkeypatch):
    """Every file is decoded once before anything else is printed: 800 three-megapixel PNGs were 44 s of silence,
    ImageNet about 15 minutes on 2 cores (walk)."""
    from keras_resnet import data

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (9 * i, 0, 0)).save(tmp_path / name / f"{i}.png")
    said = []
    monkeypatch.setattr(data, "SCAN_NOTE_FILES", 6)
    monkeypatch.setattr(data, "SCAN_NOTE_EVERY_S", 0.0)
    with data.scan_progress(said.append):
        load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1, val_split=0.5))
    assert said == [f"checking that the 6 image files in {tmp_path} can be read",
                    *(f"checked {done} of 6" for done in range(1, 6))]
    said.clear()
    monkeypatch.setattr(data, "SCAN_NOTE_FILES", 7)  # a smaller folder says nothing
    with data.scan_progress(said.append):
        load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1, val_split=0.5))
    assert said == []


def test_the_json_files_list_the_first_thousand_skipped_files_and_count_them_all():
    from keras_resnet.data import Datasets

    data = Datasets(train=None, val=None, class_names=["a"], num_train=1, num_val=1,
                    skipped=tuple(f"a/{i}.jpg" for i in range(1500)))
    assert data.skipped_files == 1500 and data.skipped_listed() == [f"a/{i}.jpg" for i in range(1000)]


def test_held_out_images_are_spread_over_every_class(tmp_path):
    """export's (and train's QAT) held-out figures took the first N validation images, which in a folder are class
    by class: 1000 of 10 classes x 500 measured two of them (diff review)."""
    from keras_resnet.data import load_held_out
    from keras_resnet.export import heldout_data

    for k, name in enumerate(("a", "b", "c")):
        (tmp_path / name).mkdir()
        for i in range(20):
            Image.new("RGB", (8, 8), (80 * k, 3 * i, 0)).save(tmp_path / name / f"{i:02d}.png")
    cfg = DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1, val_split=0.5)
    every = load_datasets(cfg)
    every_labels = [int(np.argmax(y)) for _, y in every.val.unbatch()]
    assert every_labels == [0] * 10 + [1] * 10 + [2] * 10  # the order the first N were taken in
    held = load_held_out(cfg, 12)
    assert held.num_val == 12 and held.class_names == ["a", "b", "c"]
    assert [int(np.argmax(y)) for _, y in held.val.unbatch()] == [0] * 4 + [1] * 4 + [2] * 4
    images, labels = heldout_data(cfg, 12)
    assert images.shape == (12, SIZE, SIZE, 3) and labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # the 0th, 3rd, 5th, 8th, 11th ... 29th validation images: the same pixels as the whole split's
    whole = [np.asarray(x) for x, _ in every.val.unbatch()]
    for got, index in zip(images, (0, 3, 5, 8, 11, 13, 16, 18, 21, 24, 26, 29)):
        np.testing.assert_array_equal(got, whole[index])
    assert load_held_out(cfg, 100).num_val == 30  # all of them where there are fewer


def test_validation_images_that_leave_classes_out_are_noted_for_the_banner(tmp_path):
    """A 3+3-image folder split by --val-split 0.2 validated on one image of one class, without a word."""
    for k, name in enumerate(("ant", "bee")):
        (tmp_path / "flat" / name).mkdir(parents=True)
        for i in range(3):
            _photo(10 * k + i).save(tmp_path / "flat" / name / f"{i}.png")
    data = load_datasets(DataConfig(data_dir=str(tmp_path / "flat"), image_size=SIZE, batch_size=2))
    assert (data.num_train, data.num_val) == (5, 1)
    unvalidated = "bee" if np.argmax(next(iter(data.val))[1].numpy()) == 0 else "ant"
    assert data.val_note == (f"none of class {unvalidated}: 1 of the 2 classes is not validated; add images, or "
                             "raise --val-split 0.2")
    # train/ and val/: a class folder of val/ without images
    for split, count in (("train", 3), ("val", 2)):
        for name in ("ant", "bee", "cat"):
            (tmp_path / "both" / split / name).mkdir(parents=True)
            for i in range(count if name != "cat" or split == "train" else 0):
                _photo(i).save(tmp_path / "both" / split / name / f"{i}.png")
    data = load_datasets(DataConfig(data_dir=str(tmp_path / "both"), image_size=SIZE, batch_size=2))
    assert data.val_note == (f"none of class cat: 1 of the 3 classes is not validated; add images to "
                             f"{tmp_path / 'both' / 'val' / 'cat'}/")
    # a class of one image: raising --val-split would take it from training, so the note does not say so; and
    # where the split takes it, the note says the class is not trained on
    for name, count in (("ant", 10), ("bee", 1)):
        (tmp_path / "rare" / name).mkdir(parents=True)
        for i in range(count):
            _photo(i).save(tmp_path / "rare" / name / f"{i}.png")
    for val_split, note in ((0.2, "none of class bee: 1 of the 2 classes is not validated; add images"),
                            (0.5, "class bee has no training images, all in the validation split: add images")):
        data = load_datasets(DataConfig(data_dir=str(tmp_path / "rare"), image_size=SIZE, batch_size=1,
                                        val_split=val_split))
        assert data.val_note == note, val_split


@pytest.mark.parametrize(("val_split", "split", "change"), [(0.01, "4 train / 0 val", "raise"),
                                                           (0.99, "0 train / 4 val", "lower")])
def test_a_split_that_rounds_to_nothing_says_which_way_to_move_val_split(tmp_path, val_split, split, change):
    """It said "add images or use train/ and val/ folders", not the option that was the trouble (new-user walk)."""
    for name in ("ant", "bee"):
        (tmp_path / name).mkdir()
        for i in range(2):
            _photo(i).save(tmp_path / name / f"{i}.png")
    with pytest.raises(KresError) as err:
        load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1, val_split=val_split))
    assert str(err.value) == (f"{tmp_path} holds 4 images, too few for a validation split of {val_split} ({split}): "
                              f"add images, {change} --val-split, or use train/ and val/ folders")


def test_wrong_path(tmp_path):
    with pytest.raises(KresError, match="does not exist"):
        load_datasets(DataConfig(data_dir=str(tmp_path / "nope"), image_size=SIZE))


def test_empty_folder(tmp_path):
    with pytest.raises(KresError, match="no class folders"):
        load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE))


def test_an_unreadable_folder_is_one_line(tmp_path, monkeypatch):
    listing = Path.iterdir

    def denied(self):  # as for a folder without read permission (the tests may run as root, which has them all)
        if self == tmp_path:
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(KresError, match=f"^cannot read the image folder {tmp_path}: Permission denied; check its "
                                        "permissions$"):
        load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE))


def test_an_unreadable_class_folder_is_named(tmp_path, monkeypatch):
    """An unreadable cat/ beside dog/ was dropped without a word: "has images of one class only ('dog')"."""
    from keras_resnet import data

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (9 * i, 0, 0)).save(tmp_path / name / f"{i}.png")
    scandir = os.scandir

    def denied(folder):  # as for a folder without read permission (the tests may run as root)
        if Path(folder) == tmp_path / "cat":
            raise PermissionError(13, "Permission denied", str(folder))
        return scandir(folder)

    monkeypatch.setattr(data.os, "scandir", denied)
    with pytest.raises(KresError) as err:
        load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1))
    assert str(err.value) == (f"cannot read the class folder {tmp_path / 'cat'}: Permission denied; check its "
                              f"permissions, or move it out of {tmp_path}")


def test_an_unreadable_folder_inside_a_class_folder_is_named(tmp_path, monkeypatch):
    """cat/more/, which cannot be listed, was skipped without a word: its images were left out of the class."""
    from keras_resnet import data

    for folder in ("cat", "cat/more", "dog"):
        (tmp_path / folder).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8), (9 * i, 0, 0)).save(tmp_path / folder / f"{i}.png")
    scandir = os.scandir

    def denied(folder):  # as for a folder without read permission (the tests may run as root)
        if Path(folder) == tmp_path / "cat" / "more":
            raise PermissionError(13, "Permission denied", str(folder))
        return scandir(folder)

    monkeypatch.setattr(data.os, "scandir", denied)
    with pytest.raises(KresError) as err:
        load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1))
    assert str(err.value) == (f"cannot read the folder {tmp_path / 'cat' / 'more'}: Permission denied; check its "
                              f"permissions, or move it out of {tmp_path / 'cat'}")


def test_class_folders_without_images(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "zero.jpg").write_bytes(b"")
    with pytest.raises(KresError, match="no readable images"):
        load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE))


@pytest.mark.parametrize(("folders", "message"), [
    (("train", "validation"), "has train/ and validation/, a split that kres reads from train/ and val/: rename "
                              "validation/ to val/"),  # validation/ was ignored and train/ split
    (("Train", "Val"), "has Train/ and Val/, a split that kres reads from train/ and val/: rename Val/ to val/ and "
                       "Train/ to train/"),  # two classes, "Train" and "Val"
    (("training", "val"), "has training/ and val/, a split that kres reads from train/ and val/: rename training/ "
                          "to train/"),  # "has val/ but no train/"
])
def test_a_split_under_other_names_is_refused_for_a_new_run_with_the_renames(tmp_path, folders, message, capsys,
                                                                            monkeypatch):
    from keras_resnet.data import check_split_names, load_every_image
    from kres.main import main

    for split in folders:
        for k, name in enumerate(("cat", "dog")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(3):
                _photo(k * 10 + i).save(tmp_path / split / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)  # where runs/ would be made
    assert main(["train", "--depth", "18", "--data-dir", str(tmp_path)]) == 2  # a new run
    assert capsys.readouterr().err.splitlines() == [f"Error: {tmp_path} {message}"]
    assert not (tmp_path / "runs").exists()
    if "val" not in folders:  # evaluate's held-out folder: the same refusal
        with pytest.raises(KresError) as caught:
            load_every_image(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1))
        assert str(caught.value) == f"{tmp_path} {message}"
        # a run begun on it before the check reads it as it did, to resume, evaluate and export
        data = load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1))
        expected = {"train": (6, ["cat", "dog"]), "Train": (12, ["Train", "Val"])}[folders[0]]
        assert (data.num_train + data.num_val, data.class_names) == expected
    check_split_names(tmp_path / folders[0])  # class folders only: nothing to say


def test_a_validation_folder_alone_is_refused_as_held_out_images_with_the_rename(tmp_path):
    """It was read as one class, 'validation' ("one class only", or "3 outputs but the data has 1 classes")."""
    from keras_resnet.data import check_split_names, load_every_image

    (tmp_path / "validation" / "cat").mkdir(parents=True)
    _photo(0).save(tmp_path / "validation" / "cat" / "0.png")
    check_split_names(tmp_path)  # for a new run: a folder with one class folder, refused later as one class
    with pytest.raises(KresError, match=r"has validation/, held-out images that kres reads from val/: rename "
                                        r"validation/ to val/$"):
        load_every_image(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1))


def test_single_class(tmp_path):
    (tmp_path / "only").mkdir()
    for i in range(4):
        _photo(i).save(tmp_path / "only" / f"{i}.png")
    with pytest.raises(KresError, match="one class only"):
        load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE))


def test_one_class_folder_empty(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    _photo(0).save(tmp_path / "a" / "0.png")
    _photo(1).save(tmp_path / "a" / "1.png")
    (tmp_path / "b" / "x.txt").write_text("")
    with pytest.raises(KresError, match="one class only"):
        load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1))


def test_train_and_val_class_folders_differ(tmp_path, monkeypatch):
    from keras_resnet import data

    scanned = []  # the class lists are compared before any image is read (on ImageNet, minutes of decoding)
    monkeypatch.setattr(data, "_scan", lambda root, *args: scanned.append(root) or pytest.fail(f"scanned {root}"))
    for split, names in (("train", ("a", "b")), ("val", ("a", "c"))):
        for name in names:
            (tmp_path / split / name).mkdir(parents=True)
            _photo(0).save(tmp_path / split / name / "0.png")
    with pytest.raises(KresError) as err:
        load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1))
    # it said "not in both: b, c", which left the user to find out which side lacked which
    assert str(err.value) == (f"{tmp_path / 'train'} and {tmp_path / 'val'} must hold the same class folders: b only "
                              "in train/; c only in val/")
    assert scanned == []


GRUEN_NFC, GRUEN_NFD = "gr\u00fcn", "gru\u0308n"  # "grün": composed, and decomposed as macOS names folders


def test_class_folders_of_one_name_in_two_unicode_forms_are_refused(tmp_path, capsys, monkeypatch):
    """Linux keeps them apart: they trained as two classes named "grün" (labels.txt twice), and evaluate, comparing
    names in one form, scored both folders as one class."""
    from keras_resnet.data import load_every_image
    from kres.main import main

    for k, name in enumerate(("blue", GRUEN_NFC, GRUEN_NFD)):
        (tmp_path / "nf" / name).mkdir(parents=True)
        for i in range(3):
            _photo(10 * k + i).save(tmp_path / "nf" / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)  # where runs/ would be made
    message = (f"{tmp_path / 'nf'} has class folders 'gru\\u0308n' and 'gr\\xfcn': one name in two Unicode forms "
               "(macOS writes names decomposed), which kres reads as one class; merge them into one folder or rename "
               "one")
    assert main(["train", "--depth", "18", "--data-dir", str(tmp_path / "nf")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"Error: {message}"]
    assert not (tmp_path / "runs").exists()
    with pytest.raises(KresError) as caught:  # evaluate's held-out folder
        load_every_image(DataConfig(data_dir=str(tmp_path / "nf"), image_size=SIZE, batch_size=1))
    assert str(caught.value) == message


def test_a_val_class_folder_in_the_other_unicode_form_is_the_train_class_of_its_name(tmp_path):
    """It was refused as "grün only in train/; grün only in val/". "grv" sorts between the two forms: val/'s images
    are labelled by name, not by the place of their folder in val/'s sorted list."""
    for split, gruen, counts in (("train", GRUEN_NFC, (2, 2, 2)), ("val", GRUEN_NFD, (1, 2, 3))):
        for k, (name, count) in enumerate(zip(("blue", gruen, "grv"), counts)):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                _photo(10 * k + i).save(tmp_path / split / name / f"{i}.png")
    data = load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1))
    assert data.class_names == ["blue", "grv", GRUEN_NFC]
    per_class = sum(labels.numpy().sum(axis=0) for _, labels in data.val)
    assert per_class.tolist() == [1, 3, 2]


def test_train_folder_alone_is_split(tmp_path):
    for k, name in enumerate(("a", "b")):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(5):
            _photo(10 * k + i).save(tmp_path / "train" / name / f"{i}.png")
    data = load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=2))
    assert data.class_names == ["a", "b"] and (data.num_train, data.num_val) == (8, 2)


def test_a_file_only_tensorflow_rejects_does_not_stop_the_epoch(tmp_path, monkeypatch):
    """The scan is the real filter; if a file slips past it, the epoch goes on without that file."""
    from keras_resnet import data as data_module

    for k, name in enumerate(("a", "b")):
        (tmp_path / name).mkdir()
        for i in range(4):
            _photo(10 * k + i).save(tmp_path / name / f"{i}.png")
    (tmp_path / "a" / "bad.jpg").write_bytes(b"\xff\xd8\xff" + bytes(500))
    monkeypatch.setattr(data_module, "_check_image",
                        lambda path: data_module._ScannedFile(path, False, os.path.getsize(path)))
    data = load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1, val_split=0.5))
    assert data.num_train + data.num_val == 9
    seen = sum(1 for _ in data.train) + sum(1 for _ in data.val)
    assert seen == 8


def test_multi_picture_jpeg_from_a_phone_is_read_not_skipped(tmp_path):
    """PIL calls a JPEG with several frames (MPO) by another name; TensorFlow decodes its first frame."""
    for k, name in enumerate(("a", "b")):
        (tmp_path / name).mkdir()
        for i in range(2):
            _photo(10 * k + i).save(tmp_path / name / f"{i}.png")
    red, green = Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (40, 30), (10, 200, 10))
    red.save(tmp_path / "a" / "phone.jpg", "MPO", save_all=True, append_images=[green])
    assert Image.open(tmp_path / "a" / "phone.jpg").format == "MPO"
    data = load_datasets(DataConfig(data_dir=str(tmp_path), image_size=SIZE, batch_size=1, val_split=0.4))
    assert (data.num_train + data.num_val, data.skipped_files) == (5, 0)
    assert sum(1 for _ in data.train) + sum(1 for _ in data.val) == 5  # every file decodes in the pipeline too
