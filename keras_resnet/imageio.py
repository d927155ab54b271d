"""Photos read the same way everywhere: EXIF orientation in tf.data (training, evaluation, calibration) and in
PIL (predict), and large photos without PIL's raw warning.

A phone stores a portrait photo as landscape pixels plus an EXIF orientation tag. PIL applies it with
``ImageOps.exif_transpose``; TensorFlow's decoders ignore it, so the tf.data pipelines read the tag from the JPEG
or PNG bytes here (a JPEG's Exif segment, a PNG's eXIf chunk) and rotate or flip the decoded pixels to match.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

HEAD_BYTES = 1 << 14  # the Exif segment must follow SOI (or JFIF's APP0), and IFD0 opens it: 16 KiB is ample
MAX_ENTRIES = 64  # IFD0 entries searched; Orientation (0x0112) sorts among the first ten
_ORIENTATION_TAG = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def file_orientation(path: str | os.PathLike) -> int:
    """The EXIF orientation (1-8) of an image file, read once when a folder is scanned; 1 if it has none."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        if head.startswith(_PNG_SIGNATURE):  # PIL honours an eXIf chunk after the pixels too: walk the whole file
            f.seek(0)
            return int(_tiff_orientation(_png_exif(f)))
        return int(_orientation_of(head))


def exif_orientation(contents: tf.Tensor) -> tf.Tensor:
    """The EXIF orientation (1-8, int32) of encoded JPEG or PNG bytes; 1 for other formats or when there is none.

    Parsed in Python (``tf.numpy_function``, under the GIL) on the first 16 KiB, for bytes whose orientation was
    not read beforehand (TFDS records, direct callers). Image folders read it once per file at the scan
    (:func:`file_orientation`) and pass it along: their training pipeline went from 1720-1880 to 1460-1480 us
    of CPU per 500x375 JPEG (one tf.data thread, loaded Zen 4), about what it cost before EXIF support.
    """
    orientation = tf.numpy_function(_orientation_of, [tf.strings.substr(contents, 0, HEAD_BYTES)], tf.int32,
                                    stateful=False)
    orientation.set_shape([])
    return orientation


def _orientation_of(head) -> np.int32:
    head = head if isinstance(head, bytes) else np.asarray(head).item()  # a scalar string arrives as bytes
    if head.startswith(_PNG_SIGNATURE):
        return _tiff_orientation(_png_exif(io.BytesIO(head)))
    if head[:3] != b"\xff\xd8\xff":
        return np.int32(1)
    exif = head.find(b"Exif\0\0")
    return _tiff_orientation(head[exif + 6:] if exif >= 0 else b"")


def _png_exif(f) -> bytes:
    """The TIFF data of a PNG's eXIf chunk (PIL writes it before the pixels, and reads it anywhere), b"" if none."""
    f.seek(len(_PNG_SIGNATURE))
    while len(header := f.read(8)) == 8:
        length, kind = struct.unpack(">I4s", header)
        if kind == b"eXIf":
            data = f.read(length)
            return data[6:] if data.startswith(b"Exif\0\0") else data
        if kind == b"IEND":
            break
        f.seek(length + 4, io.SEEK_CUR)  # the data and its CRC
    return b""


def _tiff_orientation(tiff: bytes) -> np.int32:
    """The Orientation tag in IFD0 of EXIF's TIFF data (a JPEG's Exif segment, a PNG's eXIf chunk); 1 if none."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return np.int32(1)
    try:
        ifd = struct.unpack_from(order + "I", tiff, 4)[0]
        for k in range(min(struct.unpack_from(order + "H", tiff, ifd)[0], MAX_ENTRIES)):
            tag, _, _, value = struct.unpack_from(order + "HHIH", tiff, ifd + 2 + 12 * k)
            if tag == _ORIENTATION_TAG:
                return np.int32(value if 1 <= value <= 8 else 1)
    except struct.error:  # a directory cut short: no usable tag
        pass
    return np.int32(1)


def swaps_sides(orientation: tf.Tensor) -> tf.Tensor:
    """Orientations 5-8 turn the stored image a quarter: height and width trade places."""
    return orientation >= 5


def oriented_shape(stored_hw: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    return tf.where(swaps_sides(orientation), tf.reverse(stored_hw, [0]), stored_hw)


def _flips(orientation: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Orientation 1-8 as (reverse the rows, reverse the columns, then transpose) of the stored pixels."""
    rows = tf.reduce_any(tf.equal(orientation, [3, 4, 6, 7]))
    cols = tf.reduce_any(tf.equal(orientation, [2, 3, 7, 8]))
    return rows, cols, swaps_sides(orientation)


def orient(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Stored pixels [H,W,C] -> upright pixels, as ``PIL.ImageOps.exif_transpose``. Upright photos (orientation
    1, most of them) pass through one cheap branch."""
    def turn():
        rows, cols, transpose = _flips(orientation)
        shape = tf.shape(image)
        x = tf.gather(image, _indices(shape[0], rows), axis=0)
        x = tf.gather(x, _indices(shape[1], cols), axis=1)
        return tf.cond(transpose, lambda: _transposed(x), lambda: x)

    upright = tf.cond(tf.equal(orientation, 1), lambda: image, turn)
    upright.set_shape([None, None, image.shape[-1]])
    return upright


def _transposed(image: tf.Tensor) -> tf.Tensor:
    """[H,W,C] -> [W,H,C] by gathering the pixels in column order. Not ``tf.transpose``: TensorFlow's oneDNN
    rewrite of a transpose of integer pixels (or of float pixels cast from them) prints "oneDNN supports DT_UINT8
    only on platforms with AVX-512" on the terminal, on AVX-512 CPUs too."""
    shape = tf.shape(image)
    rows, cols = shape[0], shape[1]
    order = tf.range(rows)[tf.newaxis, :] * cols + tf.range(cols)[:, tf.newaxis]  # [W, H]: output (w, h) <- (h, w)
    pixels = tf.gather(tf.reshape(image, [rows * cols, shape[2]]), tf.reshape(order, [-1]))
    return tf.reshape(pixels, [cols, rows, shape[2]])


def _indices(size: tf.Tensor, reverse: tf.Tensor) -> tf.Tensor:
    forward = tf.range(size)
    return tf.where(reverse, size - 1 - forward, forward)


def stored_window(window: tf.Tensor, stored_hw: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """A crop window [y, x, h, w] of the upright image -> the window of the stored pixels that ``orient`` turns
    into it, so JPEGs keep the fused decode-and-crop."""
    def turn():
        rows, cols, transpose = _flips(orientation)
        y, x, h, w = tf.unstack(tf.where(transpose, tf.gather(window, [1, 0, 3, 2]), window))
        return tf.stack([tf.where(rows, stored_hw[0] - y - h, y), tf.where(cols, stored_hw[1] - x - w, x), h, w])

    return tf.cond(tf.equal(orientation, 1), lambda: window, turn)


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


def to_rgb(image):
    """8-bit RGB of any PIL image: 16/32-bit grey scaled to 8 bits (not clipped), a palette's transparency through
    RGBA, alpha dropped. What predict feeds the model and what the pipelines decode through PIL."""
    import numpy as np
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")
