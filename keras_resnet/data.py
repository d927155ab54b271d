"""Input pipelines: built-in digits, synthetic data, image folders and TFDS, all as tf.data.

``load_datasets(cfg)`` validates everything a user can get wrong (paths, empty folders, one class, unprepared
TFDS data) and raises ``KresError`` before any training starts. It returns batched datasets of
``(images, labels)``: images uint8 raw 0-255 RGB [B,H,W,3] (the model's float32 input casts them and its first
layer normalises; float32 only after mixup/cutmix), labels float32 one-hot [B,K]. Training batches are
augmented here, in tf.data, never in the model.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_resnet import _compat, augment, imageio, terminal
from keras_resnet.errors import KresError, OneClassOnly, TooFewToSplit, counted, first_five, first_line
from keras_resnet.runs import class_key
from keras_resnet.specs import MIN_IMAGE_SIZE, MIX_ALPHA

AUTOTUNE = tf.data.AUTOTUNE
DIGITS = "digits"
SYNTHETIC = "synthetic"
# .jfif, .jpe and .jif are JPEGs too (the first is what some browsers on Windows save photos as)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".jpe", ".jif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_PIL_ONLY = ("WEBP", "TIFF")  # formats TensorFlow cannot decode: read through PIL
CACHE_LIMIT_BYTES = 4 << 30
"""Encoded data larger than this is not cached in memory even when ``cache`` is on (ImageNet would not fit)."""
UNCACHED_SHUFFLE_BUFFER = 10_000


@dataclass
class DataConfig:
    dataset: str | None = None  # None -> built-in sklearn digits; "synthetic"; else a TFDS name
    data_dir: str | None = None  # image folders: train/<class>/, val/<class>/  or one folder + val_split
    tfds_dir: str | None = None  # TFDS data_dir
    val_split: float = 0.2
    image_size: int = 224
    batch_size: int = 64  # GLOBAL batch
    seed: int = 0
    randaugment: bool = False
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    cache: bool = True
    synthetic_classes: int = 10
    synthetic_size: int = 256  # number of synthetic examples per split


@dataclass
class Datasets:
    train: tf.data.Dataset  # batched (drop_remainder), augmented: (uint8 [B,H,W,3] raw 0-255, float32 one-hot [B,K])
    val: tf.data.Dataset  # batched, eval preprocessing (resize shorter side, centre crop 0.875): uint8 like train
    class_names: list[str]
    num_train: int
    num_val: int
    skipped: tuple[str, ...] = ()  # the unreadable/zero-byte/truncated image files left out, as found
    val_note: str = ""  # what the banner says of the validation images: "cifar10's own test split, not --val-split"
    # (epoch, batch) -> the endless training stream from that batch on; epoch e's order and augmentation
    # depend only on the seed and e, so a resumed run sees the batches the uninterrupted run saw.
    train_from: Callable[[int, int], tf.data.Dataset] | None = None

    @property
    def skipped_files(self) -> int:
        return len(self.skipped)

    def skipped_listed(self, limit: int = 1000) -> list[str]:
        """The first ``limit`` skipped files, as config.json and evaluation.json list them beside their count."""
        return list(self.skipped[:limit])


@dataclass
class _Split:
    """One split before batching: ``keys`` yields (key, label int32); ``read`` turns a key into the stored form.
    Photos (folders, TFDS) are stored as (encoded bytes, EXIF orientation int32), which their maps take."""

    keys: tf.data.Dataset
    count: int
    read: Callable | None = None  # e.g. path -> file bytes; applied before the cache
    small_keys: bool = True  # paths or tiny arrays: a shuffle buffer may span the whole split


@dataclass
class _Source:
    class_names: list[str]
    train: _Split
    val: _Split
    train_map: Callable  # (stored, seed) -> [S,S,3] raw pixels, float32 or uint8
    eval_map: Callable  # stored -> float32 [S,S,3]
    cacheable: bool = True
    # Skip an image the decoder rejects (image folders: a file PIL reads but TensorFlow does not). Not TFDS records:
    # a shard deleted or cut short fails on every read, and ignore_errors retried it without end (kres evaluate
    # hung, deaf to Ctrl-C); unskipped, it is one line (errors.damaged_records).
    skip_unreadable: bool = True
    skipped: tuple[str, ...] = ()
    val_note: str = ""
    extra: dict = field(default_factory=dict)


# --- public API -----------------------------------------------------------------------------------------------

def load_datasets(cfg: DataConfig, *, recipe_batch: bool = False) -> Datasets:
    """Build the training and validation pipelines for ``cfg``; every bad input is a ``KresError`` here.
    ``recipe_batch``: the batch size is the recipe's default, not typed (an error says so)."""
    _validate(cfg)
    source = _source(cfg)
    if source.train.count < cfg.batch_size:
        raise KresError(batch_too_large(cfg.batch_size, source.train.count, recipe_batch))
    return Datasets(
        train=_train_pipeline(source, cfg),
        val=_eval_pipeline(source, cfg),
        class_names=source.class_names,
        num_train=source.train.count,
        num_val=source.val.count,
        skipped=source.skipped,
        val_note=source.val_note,
        train_from=functools.partial(_train_stream, source, cfg),
    )


def batch_too_large(batch_size: int, images: int, recipe_batch: bool) -> str:
    """The line for a batch larger than the ``images`` training images: whose batch size it is (the user never
    typed the recipe's) and one that fits, the largest power of two (which splits across 2, 4 or 8 replicas)."""
    whose = "the recipe's default batch size" if recipe_batch else "batch size"
    fits = 1 << (images.bit_length() - 1) if images else 1
    return (f"{whose} {batch_size} is larger than the {counted(images, 'training image')}: "
            f"pass --batch-size {fits} or less")


def load_every_image(cfg: DataConfig) -> Datasets:
    """Every image of an image folder as the validation pipeline, none held back for training: what evaluation
    reads from a held-out test folder (``DIR/<class>/``, or ``DIR/val/<class>/`` with or without ``train/``)."""
    _validate(cfg)
    source = _whole_folder_source(cfg)
    return Datasets(train=source.train.keys, val=_eval_pipeline(source, cfg), class_names=source.class_names,
                    num_train=0, num_val=source.val.count, skipped=source.skipped)


def load_held_out(cfg: DataConfig, limit: int) -> Datasets:
    """At most ``limit`` validation images, spread evenly over the whole split (an image folder's is class by class:
    the first ``limit`` covered the first classes only), as the validation pipeline; none of the training images are
    read. What export's and QAT's held-out figures are measured on."""
    _validate(cfg)
    source = _source(cfg)
    val = source.val
    if val.count > limit:
        picked = np.zeros(val.count, bool)
        picked[np.linspace(0, val.count - 1, limit).round().astype(int)] = True
        picked = tf.constant(picked)
        keys = val.keys.enumerate().filter(_as_written(lambda i, item: tf.gather(picked, i)))
        keys = keys.map(_as_written(lambda i, item: item))
        source.val = _Split(keys, limit, val.read, val.small_keys)
    return Datasets(train=source.train.keys, val=_eval_pipeline(source, cfg), class_names=source.class_names,
                    num_train=source.train.count, num_val=source.val.count, skipped=source.skipped)


def calibration_images(cfg: DataConfig, count: int) -> Iterator[np.ndarray]:
    """Yield ``count`` training images, eval-preprocessed (the uint8 pixels evaluation sees), as float32
    [1,H,W,3] raw pixels (e.g. for int8 calibration). The order is a fixed shuffle by ``cfg.seed``, so classes
    are mixed and runs repeat exactly."""
    _validate(cfg)
    source = _source(cfg)
    split = source.train
    ds = split.keys
    if split.small_keys:  # TFDS shuffled its records when it prepared them; folders are sorted by class
        ds = ds.shuffle(split.count, seed=cfg.seed, reshuffle_each_iteration=False)
    ds = ds.take(count)
    if split.read is not None:
        ds = ds.map(_as_written(lambda key, label: (split.read(key), label)), num_parallel_calls=AUTOTUNE)
    ds = ds.map(_as_written(lambda x, _: augment.to_pixels(source.eval_map(x))), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(1).prefetch(AUTOTUNE)
    for image in ds.as_numpy_iterator():
        yield image.astype(np.float32)


# --- pipelines ----------------------------------------------------------------------------------------------

def _as_written(fn: Callable) -> Callable:
    """``fn`` for a tf.data ``map``, ``filter`` or ``flat_map``, traced as written: without AutoGraph's rewrite of
    it and of every function it calls. Their branches on tensors are ``tf.cond`` and ``tf.switch_case`` already,
    so the pipelines and their batches are the same. The rewrite took 1.2-1.7 s of each pipeline's start (the
    digits pipelines, 2 cores) and left a generated source file in the temporary folder for each function."""
    return tf.autograph.experimental.do_not_convert(fn)


def _seeds(seed: int) -> tf.data.Dataset:
    """An endless stream of [2]-shaped seeds for stateless ops: fixed by ``seed``, new each epoch."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2, drop_remainder=True)


def _one_hot(num_classes: int):
    return _as_written(lambda images, labels: (images, tf.one_hot(labels, num_classes, dtype=tf.float32)))


def _train_pipeline(source: _Source, cfg: DataConfig) -> tf.data.Dataset:
    split = source.train
    cache = cfg.cache and source.cacheable
    ds = split.keys
    if split.read is not None and cache:
        ds = ds.map(_as_written(lambda key, label: (split.read(key), label)), num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache()
        buffer = split.count
    else:
        buffer = split.count if split.small_keys else min(split.count, UNCACHED_SHUFFLE_BUFFER)
    ds = ds.shuffle(buffer, seed=cfg.seed, reshuffle_each_iteration=True)
    if split.read is not None and not cache:
        ds = ds.map(_as_written(lambda key, label: (split.read(key), label)), num_parallel_calls=AUTOTUNE)

    def augment_one(example, seed):
        stored, label = example
        s_crop, s_rand = augment.split_seed(seed, 2)
        image = source.train_map(stored, s_crop)
        if cfg.randaugment:
            image = augment.randaugment(tf.cast(image, tf.float32), s_rand)
        return augment.to_pixels(image), label

    ds = tf.data.Dataset.zip((ds, _seeds(cfg.seed)))
    ds = ds.map(_as_written(augment_one), num_parallel_calls=AUTOTUNE)  # deterministic order: tf.data's default
    # Bad files were dropped (and counted) by the scan; this only guards against a file that PIL reads but
    # TensorFlow's decoder rejects, which would otherwise end the epoch.
    ds = _skipping_unreadable(ds, source)
    ds = ds.batch(cfg.batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE)
    ds = ds.map(_one_hot(len(source.class_names)), num_parallel_calls=AUTOTUNE)
    if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0:
        ds = tf.data.Dataset.zip((ds, _seeds(cfg.seed + 1)))
        ds = ds.map(_as_written(lambda batch, seed: augment.mix_batch(*batch, seed, cfg.mixup_alpha, cfg.cutmix_alpha)),
                    num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def _train_stream(source: _Source, cfg: DataConfig, first_epoch: int, skip_batches: int) -> tf.data.Dataset:
    """Every epoch from ``first_epoch`` on, the first ``skip_batches`` batches left out. Each epoch's order and
    augmentation come from stateless ops seeded by ``(cfg.seed, epoch, position)``, never from state that a new
    process would lose, so a resumed run sees exactly the batches an uninterrupted run sees.

    Paths and tiny arrays are shuffled over the whole split before they are read (so a folder's file bytes are
    not cached here); larger TFDS records are shuffled in blocks of ``UNCACHED_SHUFFLE_BUFFER``. The skipped
    images are dropped before they are read or augmented, so resuming costs no decoding.
    """
    split = source.train
    if split.small_keys:
        stored, read, block = split.keys, split.read, split.count
    else:
        stored = split.keys if split.read is None else split.keys.map(
            _as_written(lambda k, y: (split.read(k), y)), num_parallel_calls=AUTOTUNE)
        if cfg.cache and source.cacheable:
            stored = stored.cache()
        read, block = None, min(split.count, UNCACHED_SHUFFLE_BUFFER)
    skip_images = tf.constant(skip_batches * cfg.batch_size, tf.int64)
    seed = tf.constant(cfg.seed, tf.int64)

    def permuted(index, keys, labels, epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(labels)[0]), [seed, epoch * 65536 + index])
        return tf.nest.map_structure(lambda k: tf.gather(k, order), keys), tf.gather(labels, order)

    def augment_one(position, example, epoch):
        key, label = example
        image = read(key) if read is not None else key
        s_crop, s_rand = augment.split_seed(tf.stack([seed + 1_000_003 * (epoch + 1), position]), 2)
        image = source.train_map(image, s_crop)
        if cfg.randaugment:
            image = augment.randaugment(tf.cast(image, tf.float32), s_rand)
        return augment.to_pixels(image), label

    def epoch_batches(epoch):
        ds = stored.batch(block).enumerate().map(_as_written(lambda i, b: permuted(i, *b, epoch))).unbatch()
        ds = ds.enumerate().skip(tf.where(epoch == first_epoch, skip_images, tf.constant(0, tf.int64)))
        ds = ds.map(_as_written(lambda i, example: augment_one(i, example, epoch)), num_parallel_calls=AUTOTUNE)
        ds = _skipping_unreadable(ds, source)
        ds = ds.batch(cfg.batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE)
        ds = ds.map(_one_hot(len(source.class_names)), num_parallel_calls=AUTOTUNE)
        if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0:
            ds = ds.enumerate(tf.where(epoch == first_epoch, tf.constant(skip_batches, tf.int64), 0))
            ds = ds.map(_as_written(lambda i, batch: augment.mix_batch(
                *batch, tf.stack([seed - 1_000_003 * (epoch + 1), i]), cfg.mixup_alpha, cfg.cutmix_alpha)),
                num_parallel_calls=AUTOTUNE)
        return ds

    stream = tf.data.Dataset.range(first_epoch, tf.int64.max).flat_map(_as_written(epoch_batches)).prefetch(AUTOTUNE)
    return stream.with_options(without_autotune_thread())


def _skipping_unreadable(ds: tf.data.Dataset, source: _Source) -> tf.data.Dataset:
    return ds.ignore_errors(log_warning=True) if source.skip_unreadable else ds


def without_autotune_thread() -> tf.data.Options:
    """Options that keep tf.data from running its autotuning thread, for iterators that live as long as a ``fit``.

    That thread sleeps between optimizations for twice as long each time, up to a minute, and deleting the iterator
    sometimes waits for it to wake (TF 2.21): when a ``fit`` of ~50 s returned, its stream's deletion took 34-43 s
    in 3 of 21 runs of the digits demo on 2 cores, and in 2 of 6 plain 48 s streams; with autotuning off, in none of
    6. Without it every AUTOTUNE map and batch runs on as many threads as there are cores (what autotuning settled
    on with 2 cores)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def _eval_pipeline(source: _Source, cfg: DataConfig) -> tf.data.Dataset:
    split = source.val
    ds = split.keys
    if split.read is not None:
        ds = ds.map(_as_written(lambda key, label: (split.read(key), label)), num_parallel_calls=AUTOTUNE)
    if cfg.cache and source.cacheable:
        ds = ds.cache()
    ds = ds.map(_as_written(lambda stored, label: (augment.to_pixels(source.eval_map(stored)), label)),
                num_parallel_calls=AUTOTUNE)
    ds = _skipping_unreadable(ds, source)
    ds = ds.batch(cfg.batch_size, num_parallel_calls=AUTOTUNE)
    return ds.map(_one_hot(len(source.class_names)), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


# --- validation and dispatch ---------------------------------------------------------------------------------

def _validate(cfg: DataConfig) -> None:
    if cfg.image_size < MIN_IMAGE_SIZE:
        raise KresError(f"image size {cfg.image_size} is too small; use --image-size {MIN_IMAGE_SIZE} or more")
    if cfg.batch_size < 1:
        raise KresError(f"batch size {cfg.batch_size} must be at least 1")
    if not 0.0 < cfg.val_split < 1.0:
        raise KresError(f"validation split {cfg.val_split} must be between 0 and 1 (exclusive), e.g. 0.2")
    low, high = MIX_ALPHA
    if any(alpha and not low <= alpha <= high for alpha in (cfg.mixup_alpha, cfg.cutmix_alpha)):
        raise KresError(f"mixup and cutmix alphas must be 0 (off) or {low:g} to {high:,g}, e.g. 0.2 and 1.0, got "
                        f"{cfg.mixup_alpha:g} and {cfg.cutmix_alpha:g}")
    if cfg.dataset is not None and cfg.data_dir is not None:
        raise KresError("give either a dataset name (--dataset) or an image folder (--data-dir), not both")
    if cfg.dataset == SYNTHETIC and (cfg.synthetic_classes < 2 or cfg.synthetic_size < 1):
        raise KresError("synthetic data needs at least 2 classes and 1 example per split")


FULL_FRAME = "full_frame"  # evaluation resizes the whole image to the input size (the built-in digits)
CENTER_CROP = "center_crop"  # evaluation resizes the shorter side to size / 0.875, then cuts the centre
RESIZE_HOW = {  # for model cards: what an app must do to an image before feeding it, to the pixel (augment's resizes)
    FULL_FRAME: (
        "resample the whole image to the input size (size x size), bilinear without antialiasing: output pixel (row "
        "i, column j) is the image at y = (i + 0.5) * height / size - 0.5, x = (j + 0.5) * width / size - 0.5 (pixel "
        "centres at whole numbers), from the pixels (row, column) (Y, X), (Y, X + 1), (Y + 1, X) and (Y + 1, X + 1) "
        "weighted (1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx) and fy * fx, where Y = floor(y), X = floor(x), "
        "fy = y - Y and fx = x - X; a pixel outside the image counts as 0 (PIL's and tf.image's resize repeat the "
        "edge pixels instead, and PIL antialiases when it shrinks); then round half to even, as numpy.round"),
    CENTER_CROP: (
        "with size the input size, scale the image by s = int(size / 0.875) / its shorter side (the shorter side "
        "becomes int(size / 0.875), the longer round(longer * s)), bilinear with antialiasing, as PIL's "
        "Image.resize(..., Image.BILINEAR) computes it on float pixels (mode F, a channel at a time) and "
        "tf.image.resize(..., antialias=True); cut the central size x size square, its top-left corner at "
        "((new height - size) // 2, (new width - size) // 2); then round half to even, as numpy.round"),
}


def is_builtin_digits(data: DataConfig | Mapping) -> bool:
    """Whether a DataConfig (or its dict, as in config.json) names the built-in digits."""
    get = data.get if isinstance(data, Mapping) else lambda key: getattr(data, key)
    return get("data_dir") is None and get("dataset") in (None, DIGITS)


def data_name(data: DataConfig | Mapping) -> str:
    """A short name for the data: the folder's name, the TFDS name, "synthetic" or "digits"."""
    get = data.get if isinstance(data, Mapping) else lambda key: getattr(data, key)
    if get("data_dir"):
        return Path(get("data_dir")).resolve().name or "folder"
    return DIGITS if is_builtin_digits(data) else get("dataset")


def is_builtin(dataset: str | None) -> bool:
    """Whether a ``--dataset`` name is one kres makes itself (no TFDS folder to read it from)."""
    return dataset in (DIGITS, SYNTHETIC)


def recorded_tfds_dataset(recorded: Mapping | None) -> str:
    """The TFDS dataset a run read, from its recorded data config: what ``--tfds-dir`` given alone (where that
    dataset lives now) reads."""
    if not recorded or recorded.get("data_dir") or recorded.get("dataset") is None or is_builtin(
            recorded.get("dataset")):
        raise KresError("--tfds-dir says where TFDS data lives, and the model's run did not read a TFDS dataset "
                        "(or none is recorded): name one with --dataset")
    return recorded["dataset"]


def eval_resize(data: DataConfig | Mapping) -> str:
    """How evaluation (and so predict and an app) resizes an image for a model trained on ``data``."""
    return FULL_FRAME if is_builtin_digits(data) else CENTER_CROP


def _source(cfg: DataConfig) -> _Source:
    if cfg.data_dir is not None:
        return _folder_source(cfg)
    if is_builtin_digits(cfg):
        return _digits_source(cfg)
    if cfg.dataset == SYNTHETIC:
        return _synthetic_source(cfg)
    return _tfds_source(cfg)


def stratified_split(labels: np.ndarray, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, val) with ``round(n * val_split)`` in val, spread over the classes in
    proportion (largest remainder) and drawn at random by ``seed``. Both index arrays come back sorted."""
    labels = np.asarray(labels)
    n = len(labels)
    total_val = int(n * val_split + 0.5)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * total_val / n
    quota = np.floor(exact).astype(int)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: total_val - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)])
    is_val = np.zeros(n, bool)
    is_val[val] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# --- built-in digits and synthetic data --------------------------------------------------------------------

def _digits_source(cfg: DataConfig) -> _Source:
    glyphs, targets = _compat.load_digits()
    # 0-16 ink levels -> 0-255, grey replicated to RGB: the models take raw RGB pixels.
    images = np.repeat((glyphs * (255.0 / 16.0)).astype(np.float32)[..., None], 3, axis=-1)
    labels = targets.astype(np.int32)
    train_idx, val_idx = stratified_split(labels, cfg.val_split, cfg.seed)
    size = cfg.image_size

    def split(idx):
        keys = tf.data.Dataset.from_tensor_slices((images[idx], labels[idx]))
        return _Split(keys, len(idx))

    return _Source(
        class_names=[str(digit) for digit in range(10)],
        train=split(train_idx),
        val=split(val_idx),
        train_map=lambda image, seed: augment.digits_jitter(image, size, seed),
        # The 8x8 glyphs fill their frame edge to edge, so evaluation upscales the whole frame: the 0.875
        # centre crop of natural photos would cut strokes off.
        eval_map=lambda image: augment.digits_resize(image, size),
    )


def _synthetic_source(cfg: DataConfig) -> _Source:
    """Random images whose mean colour depends on the class: learnable, fixed by the seed, no decoding cost.

    No augmentation: this source exists to measure the model and the input pipeline's ceiling.
    """
    size, k, n = cfg.image_size, cfg.synthetic_classes, cfg.synthetic_size
    rng = np.random.default_rng(cfg.seed)
    palette = rng.uniform(32, 224, size=(k, 3)).astype(np.float32)

    def split(offset):
        labels = ((np.arange(n) + offset) % k).astype(np.int32)
        # One small noise tile per example, upscaled in the pipeline, keeps memory at n*8*8*3 bytes.
        noise = rng.normal(0, 24, size=(n, 8, 8, 3)).astype(np.float32)
        tiles = np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
        return _Split(tf.data.Dataset.from_tensor_slices((tiles, labels)), n)

    def upscale(tile):
        return tf.image.resize(tf.cast(tile, tf.float32), [size, size], method="bilinear")

    return _Source(
        class_names=[f"class_{i}" for i in range(k)],
        train=split(0),
        val=split(1),
        train_map=lambda tile, seed: upscale(tile),
        eval_map=upscale,
    )


# --- image folders ---------------------------------------------------------------------------------------------

@dataclass
class _ScannedFile:
    path: str
    needs_pil: bool  # PIL decodes it but TensorFlow cannot (CMYK JPEG, palette/1-bit BMP ...)
    size: int  # bytes as the pipeline stores it: the file's, or for a PIL one its pixels' (the PNG made of them)
    orientation: int = 1  # EXIF 1-8 (JPEG, PNG), read here once (not per epoch in tf.data); 1 when PIL makes a PNG


def is_split(folder: str | os.PathLike) -> bool:
    """Whether the validation images of an image folder are a split of its images (``--val-split``), not its own
    ``val/`` beside ``train/``."""
    root = Path(folder).expanduser()
    return not ((root / "train").is_dir() and (root / "val").is_dir())


def _folder_source(cfg: DataConfig) -> _Source:
    root = Path(cfg.data_dir).expanduser()
    if not root.is_dir():
        raise KresError(f"image folder {root} does not exist; pass --data-dir a folder of class sub-folders")
    train_dir, val_dir = root / "train", root / "val"
    own_val = not is_split(root)
    if own_val:
        class_names = _class_dirs(train_dir)
        val_folders = _val_class_folders(train_dir, val_dir, class_names)  # before a scan reads every image
        train_files, train_labels, skipped_train = _scan(train_dir, class_names)
        val_files, val_labels, skipped_val = _scan(val_dir, val_folders)
        train_files, train_labels = _drop_val_files(train_files, train_labels, val_files)
        skipped = skipped_train + skipped_val
        _require_images(train_dir, train_files, train_labels, class_names)
        if not val_files:
            raise KresError(f"{val_dir} holds no readable images; add images or drop it to split {train_dir}")
    else:
        if val_dir.is_dir() and not train_dir.is_dir():
            raise KresError(f"{root} has val/ but no train/; add {train_dir}/<class>/ or flatten to <class>/ folders")
        if train_dir.is_dir():  # train/ alone: split it
            root = train_dir
        class_names = _class_dirs(root)
        files, labels, skipped = _scan(root, class_names)
        _require_images(root, files, labels, class_names)
        train_idx, val_idx = stratified_split(np.array(labels), cfg.val_split, cfg.seed)
        if len(train_idx) == 0 or len(val_idx) == 0:  # the fraction rounds to none of them, or to all
            change = "raise" if len(val_idx) == 0 else "lower"
            raise TooFewToSplit(f"{root} holds {counted(len(files), 'image')}, too few for a validation split of "
                                f"{cfg.val_split} ({len(train_idx)} train / {len(val_idx)} val)",
                                f"add images, {change} --val-split, or use train/ and val/ folders")
        train_files, train_labels = [files[i] for i in train_idx], [labels[i] for i in train_idx]
        val_files, val_labels = [files[i] for i in val_idx], [labels[i] for i in val_idx]
    size = cfg.image_size
    encoded = sum(f.size for f in train_files) + sum(f.size for f in val_files)
    return _Source(
        class_names=class_names,
        train=_file_split(train_files, train_labels),
        val=_file_split(val_files, val_labels),
        train_map=_natural_train_map(size),
        eval_map=lambda stored: augment.decode_eval(stored[0], size, stored[1]),
        cacheable=encoded <= CACHE_LIMIT_BYTES,
        skipped=_relative(skipped, Path(cfg.data_dir).expanduser()),
        val_note=_classes_left_out(class_names, train_labels, val_labels, val_dir if own_val else cfg.val_split),
    )


def _val_class_folders(train_dir: Path, val_dir: Path, class_names: list[str]) -> list[str]:
    """val/'s folder of each of train/'s ``class_names``, in their order. Names are compared as classes are
    (:func:`class_key`): a val/ folder macOS wrote in NFD is the train/ class of its name (it was refused as a class
    only in val/, beside one only in train/ that looked the same)."""
    val_classes = _class_dirs(val_dir)
    folders = {class_key(name): name for name in val_classes}
    keys = {class_key(name) for name in class_names}
    if keys != set(folders):
        sides = [f"{first_five(only)} only in {where.name}/"
                 for where, only in ((train_dir, [name for name in class_names if class_key(name) not in folders]),
                                     (val_dir, [name for name in val_classes if class_key(name) not in keys])) if only]
        raise KresError(f"{train_dir} and {val_dir} must hold the same class folders: {'; '.join(sides)}")
    return [folders[class_key(name)] for name in class_names]


def _classes_left_out(class_names: list[str], train_labels: list[int], val_labels: list[int],
                      split_by: Path | float) -> str:
    """The banner's note where the validation images, or the training images, leave classes out (a small folder
    split by --val-split, or a val/ folder without some class's images): top-1 then says nothing of those classes,
    or the model never sees them. ``split_by``: the val/ folder, or the --val-split fraction."""
    counts = np.bincount(np.asarray([*train_labels, *val_labels], int), minlength=len(class_names))
    validated, trained = set(val_labels), set(train_labels)
    unvalidated = [index for index in range(len(class_names)) if index not in validated]
    untrained = [index for index in range(len(class_names)) if index not in trained]

    def named(indices: list[int]) -> str:
        return first_five(class_names[i] for i in indices)

    notes = []
    if unvalidated:
        if isinstance(split_by, Path):
            fix = f"add images to {split_by / class_names[unvalidated[0]]}" + ("/" if len(unvalidated) == 1
                                                                                else "/ and the others")
        elif all(counts[i] >= 2 for i in unvalidated):
            fix = f"add images, or raise --val-split {split_by}"
        else:  # a class of one image: a larger split would take it from training
            fix = "add images"
        notes.append(f"none of class {named(unvalidated)}: {len(unvalidated)} of the {len(class_names)} classes "
                     f"{'is' if len(unvalidated) == 1 else 'are'} not validated; {fix}")
    if untrained:
        notes.append(f"class {named(untrained)} {'has' if len(untrained) == 1 else 'have'} no training images, all "
                     "in the validation split: add images")
    return "; ".join(notes)


def held_out_folder(folder: str | os.PathLike) -> Path:
    """The folder of class folders whose every image is held out: ``DIR/val/`` where there is one, else ``DIR``;
    a ``train/`` without ``val/`` is refused (those images were trained on)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise KresError(f"image folder {root} does not exist; pass --data-dir a folder of class sub-folders")
    if (root / "val").is_dir():
        return root / "val"
    check_split_names(root, held_out_only=True)
    if (root / "train").is_dir():
        raise KresError(f"{root} has train/ but no val/: name the folder of held-out images (its <class>/ "
                        f"folders) with --data-dir")
    return root


def check_split_names(folder: str | os.PathLike, *, held_out_only: bool = False) -> None:
    """Refuse a split layout under other names than train/ and val/ (``training/``, ``validation/``, ``valid/``,
    ``Train/``, ``Val/``): read as it is, ``validation/`` beside ``train/`` was ignored without a word and train/
    split instead, and ``Train/`` with ``Val/`` became two classes of those names. ``held_out_only``: a
    ``validation/`` alone is refused too (the folder of held-out images evaluation reads). For a new run only: a
    run begun on such a folder keeps reading it as it did."""
    root = Path(folder).expanduser()
    try:
        names = {p.name.lower(): p.name for p in root.iterdir() if p.is_dir()}
    except OSError:
        return  # said by the class folder scan, with its fix
    held = next((names[n] for n in ("val", "valid", "validation") if n in names), None)
    trained = next((names[n] for n in ("train", "training") if n in names), None)
    if held is None or (trained is None and not held_out_only):
        return
    renames = [f"{name}/ to {want}/" for name, want in ((held, "val"), (trained, "train")) if name and name != want]
    if not renames:
        return
    layout = f"{trained}/ and {held}/, a split" if trained else f"{held}/, held-out images"
    raise KresError(f"{root} has {layout} that kres reads from {'train/ and ' if trained else ''}val/: rename "
                    f"{' and '.join(renames)}")


def check_class_names(folder: str | os.PathLike) -> None:
    """Refuse class folders of one name in two Unicode forms (:func:`_require_distinct_names`) before a run's folder
    is made; a folder that cannot be read is said by the class folder scan, with its fix."""
    root = Path(folder).expanduser()
    for where in (root / "train", root / "val") if (root / "train").is_dir() else (root,):
        with contextlib.suppress(OSError):
            _require_distinct_names(where, class_folder_names(where))


def _whole_folder_source(cfg: DataConfig) -> _Source:
    root = held_out_folder(cfg.data_dir)
    class_names = _class_dirs(root)
    files, labels, skipped = _scan(root, class_names)
    _require_some_images(root, files)  # any of the model's classes: evaluation maps them by name
    size = cfg.image_size
    return _Source(
        class_names=class_names,
        train=_file_split([], []),
        val=_file_split(files, labels),
        train_map=_natural_train_map(size),
        eval_map=lambda stored: augment.decode_eval(stored[0], size, stored[1]),
        skipped=_relative(skipped, Path(cfg.data_dir).expanduser()),
    )


def _relative(paths: list[str], folder: Path) -> tuple[str, ...]:
    return tuple(os.path.relpath(path, folder) for path in paths)


NOT_CLASS_FOLDERS = ("__MACOSX",)  # what unzipping a zip made on a Mac leaves beside the folders zipped


def class_folder_names(root: Path) -> list[str]:
    """The class folders of an image folder, sorted: its sub-folders but hidden ones (``.ipynb_checkpoints``,
    ``.git``) and ``__MACOSX``. OSError where ``root`` cannot be read."""
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_CLASS_FOLDERS)


def _class_dirs(root: Path) -> list[str]:
    try:
        names = class_folder_names(root)
    except OSError as err:
        raise KresError(f"cannot read the image folder {root}: {err.strerror or err}; check its permissions") from None
    if not names:
        raise KresError(f"{root} has no class folders; put images in {root}/<class name>/")
    _require_distinct_names(root, names)
    return names


def _require_distinct_names(root: Path, names: list[str]) -> None:
    """Refuse two class folders of one name in two Unicode forms (NFC, and NFD as macOS writes it): Linux keeps
    them apart, so they trained as two classes of one name, which evaluation (comparing by :func:`class_key`)
    then scored as one. Shown in ``ascii()`` form, the only one in which the two names differ to the eye."""
    seen: dict[str, str] = {}
    for name in names:
        first = seen.setdefault(class_key(name), name)
        if first != name:
            raise KresError(f"{root} has class folders {first!a} and {name!a}: one name in two Unicode forms "
                            "(macOS writes names decomposed), which kres reads as one class; merge them into one "
                            "folder or rename one")


def _require_some_images(root: Path, files: list) -> None:
    if not files:
        raise KresError(f"no readable images (JPEG, PNG, BMP, GIF, WebP, TIFF) in {root}/<class>/; add images to "
                        f"the class folders")


def _require_images(root: Path, files: list, labels: list[int], class_names: list[str]) -> None:
    _require_some_images(root, files)
    present = sorted(set(labels))
    if len(present) < 2:
        only = class_names[present[0]]
        raise OneClassOnly(f"{root} has images of one class only ({only!r})",
                           "a classifier needs at least 2 class folders with images", sep="; ")
    empty = [class_names[i] for i in range(len(class_names)) if i not in set(present)]
    if empty:
        raise KresError(f"class folders with no readable images in {root}: {', '.join(empty[:5])}; add images "
                        f"or remove the folders")


_scanned: dict | None = None  # inside scans_once(): (folder, class names) -> what _scan found there


_scan_say: Callable[[str], None] | None = None  # inside scan_progress(): where a long scan says how far it is
SCAN_NOTE_FILES = 1000  # a folder of this many files or more says it is being checked (0.7 ms a JPEG, 2 cores)
SCAN_NOTE_EVERY_S = 10.0


@contextlib.contextmanager
def scan_progress(say: Callable[[str], None]) -> Iterator[None]:
    """While it lasts, checking a folder of ``SCAN_NOTE_FILES`` images or more says so, and how far it is every
    ``SCAN_NOTE_EVERY_S`` seconds: every file is decoded once before anything else is printed, about 15 minutes
    of silence for ImageNet's 1.28 million on 2 cores."""
    global _scan_say
    outer, _scan_say = _scan_say, say
    try:
        yield
    finally:
        _scan_say = outer


def _said(results: Iterator, total: int, root: Path) -> list:
    """``results`` as a list, said as they come in where :func:`scan_progress` asks and the folder is large."""
    say = _scan_say if total >= SCAN_NOTE_FILES else None
    if say is None:
        return list(results)
    say(f"checking that the {total:,} image files in {root} can be read")
    out, last = [], time.monotonic()
    for result in results:
        out.append(result)
        if time.monotonic() - last >= SCAN_NOTE_EVERY_S and len(out) < total:
            last = time.monotonic()
            say(f"checked {len(out):,} of {total:,}")
    return out


@contextlib.contextmanager
def scans_once() -> Iterator[None]:
    """While it lasts, each image folder is listed and decode-checked once. One command reads a folder's images
    several times (train: the pipelines and the input statistics; export: held-out images and each calibration
    pass), and the check reads every file; files changed meanwhile are not seen. Each ``kres`` command runs in one."""
    global _scanned
    outer = _scanned
    _scanned = {} if outer is None else outer
    try:
        yield
    finally:
        _scanned = outer


def _scan(root: Path, class_names: list[str]) -> tuple[list[_ScannedFile], list[int], list[str]]:
    """List every image file under ``root/<class>/`` (recursively) and check each one decodes.

    Zero-byte, truncated or otherwise unreadable files are dropped here (and returned, third), so no bad file can
    stop an epoch later. JPEGs are decoded in PIL's draft mode (scaled DCT), which still reads the whole stream.
    """
    if _scanned is None:
        return _scan_files(root, class_names)
    key = (os.path.realpath(root), tuple(class_names))
    if key not in _scanned:
        _scanned[key] = _scan_files(root, class_names)
    files, labels, skipped = _scanned[key]
    return list(files), list(labels), list(skipped)  # copies: callers filter and split them


def _scan_files(root: Path, class_names: list[str]) -> tuple[list[_ScannedFile], list[int], list[str]]:
    candidates, seen = [], {}
    for label, name in enumerate(class_names):
        for path in _image_paths(root / name, root):
            identity = _file_identity(path)
            if identity not in seen:  # two links (or hard links) to one file: it is one image, counted once
                seen[identity] = (path, label)
                candidates.append((path, label))
            elif seen[identity][1] != label:  # it was kept under the first class without a word
                first, other = seen[identity]
                raise KresError(f"{path} and {first} are one file (a link) in two class folders, {name} and "
                                f"{class_names[other]}: an image has one class; remove the link from the wrong one")
    workers = min(32, (os.cpu_count() or 1) * 4)
    with ThreadPoolExecutor(workers) as pool:
        checked = _said(pool.map(lambda item: _check_image(item[0]), candidates), len(candidates), root)
    files, labels, skipped = [], [], []
    for (path, label), result in zip(candidates, checked):
        if result is None:
            skipped.append(path)
        else:
            files.append(result)
            labels.append(label)
    return files, labels, skipped


def _image_paths(folder: Path, root: Path, chain: tuple[str, ...] = ()) -> Iterator[str]:
    """Image files under ``folder``, following directory symlinks: the folder's own files (sorted), then each
    sub-folder's. A symlink that leads back to a folder on its own path would repeat the tree without end
    (and pull other classes' images into this one), so it is refused."""
    real = os.path.realpath(folder)
    if real in chain:
        raise KresError(f"symlink loop in {root}: {folder} leads back to {real}; remove the directory link "
                        f"and rerun")
    chain = (*chain, real)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as err:  # its images were dropped without a word (a class folder's: "one class only")
        what, out_of = "the class folder", root
        if chain[:-1]:  # a folder inside a class folder
            what, out_of = "the folder", root / Path(folder).relative_to(root).parts[0]
        raise KresError(f"cannot read {what} {folder}: {err.strerror or err}; check its permissions, or move it out "
                        f"of {out_of}") from None
    entries = [e for e in entries if not e.name.startswith(".")]
    yield from (e.path for e in entries if not _is_dir(e) and e.name.lower().endswith(IMAGE_EXTENSIONS))
    for entry in entries:
        if _is_dir(entry):
            yield from _image_paths(Path(entry.path), root, chain)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _file_identity(path: str) -> tuple[int, int] | str:
    try:
        stat = os.stat(path)
    except OSError:
        return path
    return stat.st_dev, stat.st_ino


def _drop_val_files(train: list[_ScannedFile], labels: list[int], val: list[_ScannedFile]):
    """Train files minus any file val/ also holds (through a link): no image may be both trained and scored on."""
    in_val = {_file_identity(f.path) for f in val}
    kept = [(f, label) for f, label in zip(train, labels) if _file_identity(f.path) not in in_val]
    return [f for f, _ in kept], [label for _, label in kept]


def _check_image(path: str) -> _ScannedFile | None:
    from PIL import Image

    try:
        size = os.path.getsize(path)
        if size == 0:
            return None
        with imageio.large_images_allowed(), Image.open(path) as image:
            # MPO (phone and stereo cameras: several JPEG frames in one .jpg) decodes as a JPEG, first frame.
            fmt, mode = ("JPEG" if image.format == "MPO" else image.format), image.mode
            if fmt not in ("JPEG", "PNG", "BMP", "GIF", *_PIL_ONLY):
                return None
            if fmt == "JPEG":
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
            pixels = image.width * image.height * 3  # what a PNG of it may take (a 40 KB WebP photo: 1.3 MB)
            # once here, not every epoch; WebP and TIFF go through PIL, which turns them (_pil_png)
            orientation = imageio.file_orientation(path) if fmt in ("JPEG", "PNG") else 1
    except Exception:  # PIL raises many types (OSError, SyntaxError, ValueError, DecompressionBombError...)
        return None
    # TensorFlow decodes RGB, grey and CMYK JPEGs, every PNG and GIF, and grey/24/32-bit BMPs; palette and
    # 1-bit BMPs (which it misreads or rejects), rarer JPEG modes, WebP and TIFF are converted through PIL when read.
    needs_pil = (fmt == "JPEG" and mode not in ("RGB", "L", "CMYK")) or (fmt == "BMP" and mode not in ("RGB", "L")) \
        or fmt in _PIL_ONLY
    if needs_pil:  # _pil_png turns its pixels upright, and the cache holds that PNG
        return _ScannedFile(path, True, max(size, pixels), 1)
    return _ScannedFile(path, False, size, orientation)


def _pil_png(path: bytes) -> bytes:
    import io

    image = imageio.open_upright(path.decode())  # the PNG carries no EXIF: turn the pixels now
    buffer = io.BytesIO()
    imageio.to_rgb(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _read_file(key: tf.Tensor) -> tf.Tensor:
    path, needs_pil = key[0], key[1]
    return tf.cond(tf.equal(needs_pil, "1"),
                   lambda: tf.numpy_function(_pil_png, [path], tf.string, stateful=False),
                   lambda: tf.io.read_file(path))


def _file_split(files: list[_ScannedFile], labels: list[int]) -> _Split:
    keys = np.array([[f.path, "1" if f.needs_pil else "0"] for f in files], dtype=object).reshape(-1, 2)
    orientations = tf.constant([f.orientation for f in files], tf.int32, shape=[len(files)])
    ds = tf.data.Dataset.from_tensor_slices(((tf.constant(keys, tf.string), orientations),
                                             tf.constant(labels, tf.int32)))
    return _Split(ds, len(files), read=lambda key: (tf.ensure_shape(_read_file(key[0]), []), key[1]))


# --- TFDS --------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _temporary_tempdir() -> Iterator[None]:
    """Run the body with Python's temporary folder a fresh one, removed afterwards with whatever is in it.

    A TFDS builder of a dataset that is not prepared copies its metadata from TFDS's bucket through a ``mkdtemp``
    folder that it never removes (tensorflow-datasets 4.9, ``DatasetInfo.initialize_from_bucket``): one empty
    ``/tmp/tmp*tfds`` per command, offline too. The builder is made on the main thread before any pipeline runs.
    """
    with tempfile.TemporaryDirectory(prefix="kres-tfds-") as own:
        before = tempfile.tempdir
        tempfile.tempdir = own
        try:
            yield
        finally:
            tempfile.tempdir = before


def _tfds_builder(cfg: DataConfig):
    """The TFDS builder of ``cfg.dataset``, prepared under ``cfg.tfds_dir``; a KresError where it is unknown or not
    prepared (nothing here downloads)."""
    import tensorflow_datasets as tfds

    name = cfg.dataset
    if cfg.tfds_dir is not None and "://" not in cfg.tfds_dir and not Path(os.path.expanduser(cfg.tfds_dir)).is_dir():
        raise KresError(f"--tfds-dir {cfg.tfds_dir} does not exist: pass the folder the dataset was prepared in "
                        "(tfds build --data_dir)")  # it said the dataset was "not prepared in" it
    try:
        # TFDS logs "Variant folder ... has no dataset_info.json" for a dataset it has not got; kres says it below.
        with terminal.logger_quiet("absl"), _temporary_tempdir():
            builder = tfds.builder(name, data_dir=cfg.tfds_dir)
            prepared = builder.is_prepared()
    except tfds.core.registered.DatasetNotFoundError:
        raise KresError(f"unknown dataset {name!r}{_did_you_mean(name)}: leave --dataset out for the built-in digits, "
                        f"use --dataset synthetic, or name a TFDS image-classification dataset (cifar10, tf_flowers, "
                        f"imagenette/320px-v2, imagenet2012, ...)") from None
    except Exception as err:  # malformed names, config errors
        raise KresError(f"cannot open TFDS dataset {name!r}: {first_line(err)}") from None
    if not prepared:
        root = cfg.tfds_dir or "~/tensorflow_datasets"
        how = f"`tfds build {name} --data_dir {root}`"
        if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
            how += f" --manual_dir DIR (DIR holding the files TFDS asks for; see `tfds build {name}` for which)"
        others = _prepared_variants(Path(os.path.expanduser(root)), name)
        held = f" (it holds {', '.join(others)}: pass --dataset {others[0]} for it)" if others else ""
        raise KresError(f"TFDS dataset {name!r} is not prepared in {root}{held} and kres never downloads; prepare it "
                        f"once on a machine with network access: {how}, then pass --tfds-dir {root}")
    return builder


def _tfds_base(name: str) -> str:
    """The dataset of a TFDS name, without its config and version: 'imagenette' of 'imagenette/160px-v2:1.0.0'."""
    return name.split("/")[0].split(":")[0]


def _did_you_mean(name: str) -> str:
    """" (did you mean 'tf_flowers'?)" for a TFDS name a letter or a case away ('tf_flower', 'TF_Flowers'), or a
    built-in one ('synthtic' -> 'synthetic', not TFDS's 'nsynth'), else "". Listing TFDS's datasets takes a few
    seconds: done on this error only."""
    import difflib

    import tensorflow_datasets as tfds

    base = _tfds_base(name)
    try:
        close = (difflib.get_close_matches(base.lower(), [DIGITS, SYNTHETIC], n=1)
                 or difflib.get_close_matches(base.lower(), tfds.list_builders(), n=1))
    except Exception:  # a broken registry must not hide the error being said
        return ""
    return f" (did you mean {close[0]!r}?)" if close and close[0] != base else ""


def _prepared_variants(root: Path, name: str) -> list[str]:
    """The configs of ``name``'s dataset that are prepared under ``root`` (``imagenette/160px-v2`` where
    ``imagenette``, whose default config is 320px-v2, was asked for): ROOT/NAME/CONFIG/VERSION/dataset_info.json."""
    base = _tfds_base(name)
    found = {f"{base}/{info.parent.parent.name}" for info in (root / base).glob("*/*/dataset_info.json")}
    return sorted(variant for variant in found if variant != name)


def tfds_held_out(cfg: DataConfig) -> str | None:
    """The TFDS dataset's own validation (or test) split that kres validates on, or None where it has none and
    ``--val-split`` splits its train split."""
    return _own_split(set(_tfds_builder(cfg).info.splits.keys()))


def _own_split(names: set[str]) -> str | None:
    return next((held_out for held_out in ("validation", "test") if held_out in names), None)


def _tfds_source(cfg: DataConfig) -> _Source:
    """A TFDS image-classification dataset that is already prepared under ``cfg.tfds_dir``.

    Nothing here downloads: an unprepared dataset is a ``KresError`` that says how to prepare it. Images are read
    still encoded (``SkipDecoding``) so JPEG datasets get the same fused decode-and-crop as image folders.
    """
    import tensorflow_datasets as tfds

    builder = _tfds_builder(cfg)
    name, info = cfg.dataset, builder.info
    image_key, label_key = _tfds_keys(name, info)
    class_names = list(info.features[label_key].names)
    if len(class_names) < 2:
        raise KresError(f"TFDS dataset {name!r} has {len(class_names)} class; a classifier needs at least 2")
    train_split, val_split = _tfds_splits(info, cfg.val_split)

    def split(split_name: str) -> _Split:
        ds = builder.as_dataset(split=split_name, shuffle_files=False,
                                decoders={image_key: tfds.decode.SkipDecoding()})
        ds = ds.map(_as_written(lambda ex: ((ex[image_key], imageio.exif_orientation(ex[image_key])),
                                            tf.cast(ex[label_key], tf.int32))), num_parallel_calls=AUTOTUNE)
        count = int(ds.cardinality())
        if count < 0:
            count = int(info.splits[split_name].num_examples)
        return _Split(ds, count, small_keys=False)

    size = cfg.image_size
    dataset_size = int(info.dataset_size or 0)
    return _Source(
        class_names=class_names,
        train=split(train_split),
        val=split(val_split),
        train_map=_natural_train_map(size),
        eval_map=lambda stored: augment.decode_eval(stored[0], size, stored[1]),
        cacheable=dataset_size <= CACHE_LIMIT_BYTES,
        skip_unreadable=False,
        val_note=f"{name}'s own {val_split} split" if val_split in set(info.splits.keys()) else "",
    )


def _tfds_keys(name: str, info) -> tuple[str, str]:
    """The (image, label) feature names: the supervised keys when TFDS declares them, else the first of each."""
    import tensorflow_datasets as tfds

    features = info.features
    keys = info.supervised_keys
    if keys and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        image_key, label_key = keys
    else:
        image_key = next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
        label_key = next((k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)), None)
    ok = (image_key in features and isinstance(features[image_key], tfds.features.Image)
          and label_key in features and isinstance(features[label_key], tfds.features.ClassLabel))
    if not ok:
        raise KresError(f"TFDS dataset {name!r} is not image classification (it needs an image and a class label "
                        f"feature); pick another dataset")
    return image_key, label_key


def _tfds_splits(info, val_split: float) -> tuple[str, str]:
    """TFDS's own validation split (or test split) when it has one, else the first ``val_split`` of train."""
    names = set(info.splits.keys())
    if "train" not in names:
        raise KresError(f"TFDS dataset {info.name!r} has no 'train' split (it has {', '.join(sorted(names))})")
    own = _own_split(names)
    if own:
        return "train", own
    num_val = int(info.splits["train"].num_examples * val_split + 0.5)
    return f"train[{num_val}:]", f"train[:{num_val}]"


def _natural_train_map(size: int):
    """Random-resized-crop (fused with the JPEG decode) then a horizontal flip, for photos."""
    def train_map(stored, seed):
        contents, orientation = stored
        s_crop, s_flip = augment.split_seed(seed, 2)
        return augment.random_flip(augment.random_resized_crop(contents, size, s_crop, orientation), s_flip)
    return train_map
