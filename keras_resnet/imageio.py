"""Photos read the same way everywhere: EXIF orientation in tf.data (training, evaluation, calibration) and in
PIL (predict), and large photos without PIL's raw warning.

A phone stores a portrait photo as landscape pixels plus an EXIF orientation tag. PIL applies it with
``ImageOps.exif_transpose``; TensorFlow's decoders ignore it, so the tf.data pipelines read the tag from the JPEG
bytes here (a few small reads, no Python per image) and rotate or flip the decoded pixels to match.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import tensorflow as tf

MAX_SEGMENTS = 4  # markers read before the Exif one: SOI is followed by APP0 (JFIF) and APP1 (Exif) in practice
MAX_ENTRIES = 32  # IFD0 entries searched; Orientation (0x0112) sorts among the first ten
_ORIENTATION_TAG = 0x0112
_EXIF_ID = (0x45, 0x78, 0x69, 0x66, 0, 0)  # b"Exif\0\0"


def exif_orientation(contents: tf.Tensor) -> tf.Tensor:
    """The EXIF orientation (1-8, int32) of encoded JPEG bytes; 1 for other formats or when there is none."""
    length = tf.strings.length(contents)

    def read(pos, count):  # ``count`` bytes at ``pos`` as int32, zeros past the end
        pos = tf.clip_by_value(pos, 0, length)
        raw = tf.io.decode_raw(tf.strings.substr(contents, pos, count), tf.uint8)
        return tf.pad(tf.cast(raw, tf.int32), [[0, count - tf.size(raw)]])

    tiff = tf.constant(-1)
    pos = tf.constant(2)
    for _ in range(MAX_SEGMENTS):
        head = read(pos, 10)
        is_exif = tf.logical_and(tf.reduce_all(tf.equal(head[:2], [0xFF, 0xE1])),
                                 tf.reduce_all(tf.equal(head[4:], _EXIF_ID)))
        tiff = tf.where(tf.logical_and(tiff < 0, is_exif), pos + 10, tiff)
        pos = pos + 2 + head[2] * 256 + head[3]

    header = read(tiff, 8)
    little = tf.equal(header[0], 0x49)  # "II": Intel byte order; "MM": Motorola

    def u16(lo_first, hi_first):
        return tf.where(little, lo_first + 256 * hi_first, 256 * lo_first + hi_first)

    ifd_offset = tf.where(little,
                          header[4] + 256 * (header[5] + 256 * (header[6] + 256 * header[7])),
                          header[7] + 256 * (header[6] + 256 * (header[5] + 256 * header[4])))
    ifd = tiff + ifd_offset
    count_bytes = read(ifd, 2)
    count = u16(count_bytes[0], count_bytes[1])
    entries = tf.reshape(read(ifd + 2, 12 * MAX_ENTRIES), [MAX_ENTRIES, 12])
    tags = u16(entries[:, 0], entries[:, 1])
    values = u16(entries[:, 8], entries[:, 9])  # a SHORT value sits in the first two bytes of the value field
    hit = tf.logical_and(tf.equal(tags, _ORIENTATION_TAG), tf.range(MAX_ENTRIES) < count)
    value = tf.reduce_max(tf.where(hit, values, 0))
    valid = tf.logical_and(tf.logical_and(tiff >= 0, tf.equal(header[0], header[1])),
                           tf.logical_and(value >= 1, value <= 8))
    is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff")
    return tf.where(tf.logical_and(is_jpeg, valid), value, 1)


def swaps_sides(orientation: tf.Tensor) -> tf.Tensor:
    """Orientations 5-8 turn the stored image a quarter: height and width trade places."""
    return orientation >= 5


def oriented_shape(stored_hw: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    return tf.where(swaps_sides(orientation), tf.reverse(stored_hw, [0]), stored_hw)


def orient(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Stored pixels [H,W,C] -> upright pixels, as ``PIL.ImageOps.exif_transpose``."""
    def transpose(x):
        return tf.transpose(x, [1, 0, 2])

    branches = [
        lambda: image,                                    # 1: upright
        lambda: tf.reverse(image, [1]),                   # 2: mirrored left-right
        lambda: tf.reverse(image, [0, 1]),                # 3: turned 180
        lambda: tf.reverse(image, [0]),                   # 4: mirrored top-bottom
        lambda: transpose(image),                         # 5: mirrored along the main diagonal
        lambda: transpose(tf.reverse(image, [0])),        # 6: needs a quarter turn clockwise
        lambda: transpose(tf.reverse(image, [0, 1])),     # 7: mirrored along the other diagonal
        lambda: transpose(tf.reverse(image, [1])),        # 8: needs a quarter turn counter-clockwise
    ]
    upright = tf.switch_case(tf.clip_by_value(orientation, 1, 8) - 1, branches)
    upright.set_shape([None, None, image.shape[-1]])
    return upright


def stored_window(window: tf.Tensor, stored_hw: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """A crop window [y, x, h, w] of the upright image -> the window of the stored pixels that ``orient`` turns
    into it, so JPEGs keep the fused decode-and-crop."""
    y, x, h, w = tf.unstack(window)
    height, width = tf.unstack(stored_hw)
    far_y, far_x = height - x - w, width - y - h  # for quarter turns the upright x runs along the stored y
    branches = [
        lambda: tf.stack([y, x, h, w]),
        lambda: tf.stack([y, width - x - w, h, w]),
        lambda: tf.stack([height - y - h, width - x - w, h, w]),
        lambda: tf.stack([height - y - h, x, h, w]),
        lambda: tf.stack([x, y, w, h]),
        lambda: tf.stack([far_y, y, w, h]),
        lambda: tf.stack([far_y, far_x, w, h]),
        lambda: tf.stack([x, far_x, w, h]),
    ]
    return tf.switch_case(tf.clip_by_value(orientation, 1, 8) - 1, branches)


# --- PIL --------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def large_images_allowed() -> Iterator[None]:
    """PIL warns (DecompressionBombWarning) above 89 megapixels, a size a panorama or a scan reaches; kres
    reads those quietly and still refuses PIL's hard limit (twice that) with its DecompressionBombError."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def open_upright(path: str | os.PathLike):
    """Open an image with PIL, loaded and turned upright by its EXIF orientation (as the tf.data pipelines do)."""
    from PIL import Image, ImageOps

    with large_images_allowed(), Image.open(path) as image:
        image.load()
        upright = ImageOps.exif_transpose(image)
        return upright if upright is not image else image.copy()
