"""Image augmentation and preprocessing as tf.data functions (never inside the model, so XLA sees a clean graph).

Every random op is *stateless* and takes an explicit ``seed`` tensor of shape [2]: the pipeline feeds one seed
per element from ``tf.data.Dataset.random(cfg.seed)``, so the same ``--seed`` gives the same batches even with
parallel maps. Images are float32 raw 0-255 RGB unless a function says otherwise; the training crop returns
uint8, which ``random_flip`` takes as well, and ``to_pixels`` rounds everything to uint8 at the end.
"""

from __future__ import annotations

import math

import tensorflow as tf

from keras_resnet import imageio

EVAL_CROP_FRACTION = 0.875
"""Evaluation resizes the shorter side to ``image_size / 0.875`` and centre-crops ``image_size``."""

CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
RANDAUGMENT_LAYERS = 2
RANDAUGMENT_MAGNITUDE = 9  # out of 10, the RandAugment paper's ImageNet setting
_FILL = 128.0  # grey fill for pixels that geometric ops move in from outside the image


def split_seed(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
    return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def _uniform(seed, low=0.0, high=1.0, shape=()):
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high)


# --- decoding -------------------------------------------------------------------------------------------

def is_jpeg(contents: tf.Tensor) -> tf.Tensor:
    return tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff")


def decode_rgb(contents: tf.Tensor, orientation: tf.Tensor | None = None) -> tf.Tensor:
    """Decode JPEG/PNG/BMP/GIF bytes to uint8 [H,W,3] upright (EXIF orientation applied); grey is replicated,
    alpha dropped, GIF takes frame one. ``orientation`` (int32, 1-8) as read at the folder scan; None parses
    it from ``contents`` (Python, per call)."""
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return imageio.orient(image, imageio.exif_orientation(contents) if orientation is None else orientation)


def image_shape(contents: tf.Tensor, orientation: tf.Tensor | None = None) -> tf.Tensor:
    """[H, W] of encoded bytes, upright; JPEG headers are read without decoding the pixels."""
    if orientation is None:
        orientation = imageio.exif_orientation(contents)
    return tf.cond(is_jpeg(contents),
                   lambda: imageio.oriented_shape(tf.io.extract_jpeg_shape(contents)[:2], orientation),
                   lambda: tf.shape(decode_rgb(contents, orientation))[:2])


def to_pixels(image: tf.Tensor) -> tf.Tensor:
    """float32 0-255 -> uint8, rounded (uint8 passes through): what every pipeline hands the model (it normalises
    inside). Batches of uint8 are a quarter of the bytes to copy, batch and send to the accelerator (the training
    pipeline went from 936 to 851 us of CPU per 224 px image, decode included), and Keras evaluation sees exactly
    the pixels a uint8 TFLite model gets."""
    if image.dtype == tf.uint8:
        return image
    return tf.saturate_cast(tf.round(image), tf.uint8)


# --- training ---------------------------------------------------------------------------------------------

def random_crop_window(shape_hw: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Random-resized-crop window [y, x, h, w]: area 8-100% of the image, aspect ratio 3/4-4/3."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([shape_hw, [3]], 0),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=CROP_RATIO,
        area_range=CROP_SCALE,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.stack([begin[0], begin[1], size[0], size[1]])


JPEG_SCALES = (1, 2, 4, 8)  # libjpeg's DCT scaling: decode at 1/1, 1/2, 1/4 or 1/8 of the size


def jpeg_scale_index(window: tf.Tensor, size: int) -> tf.Tensor:
    """Index into JPEG_SCALES of the largest reduction that keeps a ``window`` [y, x, h, w] at least ``size`` px
    on both sides. The DCT does that reduction nearly for free and anti-aliased (a large photo's crop decodes
    about 20% faster at 1/4, and its resize is closer to an anti-aliased one), and no crop is ever upscaled
    because of it: 500x375 photos cropped to 224 always decode at full scale."""
    shorter = tf.minimum(window[2], window[3])
    return tf.add_n([tf.cast(shorter // r >= size, tf.int32) for r in JPEG_SCALES[1:]])


def random_resized_crop(contents: tf.Tensor, size: int, seed: tf.Tensor,
                        orientation: tf.Tensor | None = None) -> tf.Tensor:
    """Decode-and-crop encoded bytes to uint8 [size, size, 3].

    JPEGs use the fused ``decode_and_crop_jpeg``: only the crop's pixels are decoded, which is most of the
    speed of an ImageNet-style pipeline, and at the smallest DCT scale that keeps the crop at least ``size`` on
    both sides (:func:`jpeg_scale_index`). Other formats are decoded whole, then the same window is cut.
    ``orientation`` as for :func:`decode_rgb`.
    """
    if orientation is None:
        orientation = imageio.exif_orientation(contents)
    window = random_crop_window(image_shape(contents, orientation), seed)

    def jpeg():
        # The window is drawn on the upright image; the stored pixels are cut where it lies, then turned.
        stored = imageio.stored_window(window, tf.io.extract_jpeg_shape(contents)[:2], orientation)

        def at(ratio):  # ratio is an attribute of the op, so each scale is its own branch
            return lambda: tf.io.decode_and_crop_jpeg(contents, stored // ratio, channels=3, ratio=ratio)

        return imageio.orient(tf.switch_case(jpeg_scale_index(stored, size), [at(r) for r in JPEG_SCALES]),
                              orientation)

    def other():
        return tf.slice(decode_rgb(contents, orientation), [window[0], window[1], 0], [window[2], window[3], 3])

    crop = tf.cond(is_jpeg(contents), jpeg, other)
    crop.set_shape([None, None, 3])
    # No anti-aliasing here: it triples the resize cost (measured: the training pipeline went from 0.63x to
    # 1.12x a naive one per CPU second), and a random crop is augmentation, not a measurement. Evaluation keeps it.
    resized = tf.image.resize(crop, [size, size], method="bilinear")
    # Bilinear weights are a convex combination of uint8 pixels, so the values stay in 0..255 and +0.5 then
    # truncation rounds them (half up; to_pixels rounds half to even) without to_pixels' clip: 50 us less per
    # image, and the flip after moves bytes.
    return tf.cast(resized + 0.5, tf.uint8)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return tf.image.stateless_random_flip_left_right(image, seed)


def _affine(image: tf.Tensor, matrix: tf.Tensor, out_size, fill: float) -> tf.Tensor:
    """Resample ``image`` [H,W,C] with an output->input affine map ``matrix`` [6] (bilinear, constant fill)."""
    transform = tf.concat([tf.cast(matrix, tf.float32), tf.zeros([2])], 0)[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None], transforms=transform, output_shape=tf.constant(out_size, tf.int32),
        fill_value=tf.constant(fill, tf.float32), interpolation="BILINEAR", fill_mode="CONSTANT")
    return out[0]


def _centred_affine(in_hw, out_hw, scale, angle, shear_x=0.0, shear_y=0.0, shift_y=0.0, shift_x=0.0):
    """Output->input map that resizes ``in_hw`` to ``out_hw`` about the centres, then zooms by ``scale``,
    rotates by ``angle`` (radians), shears, and shifts by (shift_y, shift_x) input pixels."""
    in_h, in_w = float(in_hw[0]), float(in_hw[1])
    out_h, out_w = float(out_hw[0]), float(out_hw[1])
    ry, rx = in_h / out_h, in_w / out_w
    cos, sin = tf.cos(angle), tf.sin(angle)
    # input = c_in + R(angle) @ Shear @ diag(r / scale) @ (output - c_out) + shift, pixel centres at integers.
    a0, a1 = cos - sin * shear_y, cos * shear_x - sin
    b0, b1 = sin + cos * shear_y, sin * shear_x + cos
    a0, a1, b0, b1 = a0 * rx / scale, a1 * ry / scale, b0 * rx / scale, b1 * ry / scale
    cx_out, cy_out = (out_w - 1) / 2, (out_h - 1) / 2
    cx_in, cy_in = (in_w - 1) / 2, (in_h - 1) / 2
    a2 = cx_in + shift_x - a0 * cx_out - a1 * cy_out
    b2 = cy_in + shift_y - b0 * cx_out - b1 * cy_out
    return tf.stack([a0, a1, a2, b0, b1, b2])


def digits_resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Upscale a small centred glyph (the 8x8 digits) to [size, size, 3] with no crop: the glyph fills the frame."""
    hw = tuple(int(d) for d in image.shape[:2])
    return _affine(image, _centred_affine(hw, (size, size), 1.0, 0.0), (size, size), 0.0)


DIGITS_SHIFT = 0.5
"""The digits' random shift, in source pixels each way. With oneDNN capped at AVX2 (10 epochs, 2026-12-05) the
best validation top-1 was 357-359 of 359 images over seeds 0-3, against 355-359 for +-1 pixel (an eighth of the
glyph), 356-358 for +-1 with label smoothing 0.1 and 355-357 for +-0.25 (seeds 0-2)."""


def digits_jitter(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """Mild augmentation for tiny glyphs: zoom 0.9-1.1, rotate +-10 degrees, shift +-half a source pixel.

    A random-resized-crop at 8% of an 8x8 digit keeps about 2x2 source pixels, which no longer shows
    which digit it was; and a horizontal flip turns a valid 2, 3 or 7 into a glyph of no class, so
    neither is used here.
    """
    hw = tuple(int(d) for d in image.shape[:2])
    s_zoom, s_angle, s_shift = split_seed(seed, 3)
    zoom = _uniform(s_zoom, 0.9, 1.1)
    angle = _uniform(s_angle, -math.radians(10), math.radians(10))
    shift = _uniform(s_shift, -DIGITS_SHIFT, DIGITS_SHIFT, shape=[2])
    matrix = _centred_affine(hw, (size, size), zoom, angle, shift_y=shift[0], shift_x=shift[1])
    return _affine(image, matrix, (size, size), 0.0)  # the digits' background is 0


# --- evaluation ---------------------------------------------------------------------------------------------

def eval_resize_size(image_size: int) -> int:
    return int(image_size / EVAL_CROP_FRACTION)


def resize_shorter_center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """Resize so the shorter side is ``int(size / 0.875)``, then cut the central ``size`` x ``size``."""
    target = eval_resize_size(size)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = target / tf.reduce_min(hw)
    new_hw = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), target)
    resized = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
    top = (new_hw[0] - size) // 2
    left = (new_hw[1] - size) // 2
    return tf.slice(resized, [top, left, 0], [size, size, 3])


def decode_eval(contents: tf.Tensor, size: int, orientation: tf.Tensor | None = None) -> tf.Tensor:
    return resize_shorter_center_crop(decode_rgb(contents, orientation), size)


# --- RandAugment ----------------------------------------------------------------------------------------------

def _blend(a, b, factor):
    """``b + factor * (a - b)``: factor 0 gives b, 1 gives a, above 1 extrapolates away from b."""
    return tf.clip_by_value(b + factor * (a - b), 0.0, 255.0)


def _grey(image):
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


def _autocontrast(image):
    lo = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    hi = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    scale = tf.where(hi > lo, 255.0 / tf.maximum(hi - lo, 1e-3), 1.0)
    return tf.where(hi > lo, (image - lo) * scale, image)


def _equalize(image):
    """Per-channel histogram equalisation, as PIL.ImageOps.equalize does it."""
    def channel(c):
        c = tf.cast(tf.clip_by_value(c, 0, 255), tf.int32)
        hist = tf.math.bincount(tf.reshape(c, [-1]), minlength=256, maxlength=256)
        nonzero = tf.boolean_mask(hist, hist > 0)
        step = (tf.reduce_sum(hist) - nonzero[-1]) // 255
        lut = (tf.cumsum(hist) - hist + step // 2) // tf.maximum(step, 1)
        lut = tf.clip_by_value(lut, 0, 255)
        return tf.where(step > 0, tf.cast(tf.gather(lut, c), tf.float32), tf.cast(c, tf.float32))
    return tf.stack([channel(image[..., i]) for i in range(3)], axis=-1)


def _sharpness(image, factor):
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "SAME")[0]
    return _blend(image, smooth, factor)


def _geometric(image, seed_sign, **kwargs):
    hw = tuple(int(d) for d in image.shape[:2])
    sign = tf.where(_uniform(seed_sign) < 0.5, -1.0, 1.0)
    kwargs = {k: sign * v for k, v in kwargs.items()}
    return _affine(image, _centred_affine(hw, hw, 1.0, kwargs.pop("angle", 0.0), **kwargs), hw, _FILL)


def _randaugment_layer(image: tf.Tensor, seed: tf.Tensor, m: float) -> tf.Tensor:
    """One RandAugment op drawn uniformly from 14, at strength ``m`` (0-1), with a random sign where it has one."""
    s_op, s_sign = split_seed(seed, 2)
    size = float(image.shape[0])
    signed = tf.where(_uniform(s_sign) < 0.5, -m, m)
    ops = [
        lambda: image,
        lambda: _autocontrast(image),
        lambda: _equalize(image),
        lambda: _geometric(image, s_sign, angle=m * math.radians(30)),
        lambda: tf.where(image >= 256.0 * (1 - m), 255.0 - image, image),  # solarize
        lambda: _blend(image, _grey(image), 1.0 + 0.9 * signed),  # colour
        lambda: tf.floor(image / 2.0 ** round(4 * m)) * 2.0 ** round(4 * m),  # posterize to 8-4m bits
        lambda: _blend(image, tf.reduce_mean(_grey(image)), 1.0 + 0.9 * signed),  # contrast
        lambda: _blend(image, tf.zeros_like(image), 1.0 + 0.9 * signed),  # brightness
        lambda: _sharpness(image, 1.0 + 0.9 * signed),
        lambda: _geometric(image, s_sign, shear_x=0.3 * m),
        lambda: _geometric(image, s_sign, shear_y=0.3 * m),
        lambda: _geometric(image, s_sign, shift_x=0.45 * m * size),
        lambda: _geometric(image, s_sign, shift_y=0.45 * m * size),
    ]
    index = tf.random.stateless_uniform([], s_op, 0, len(ops), dtype=tf.int32)
    out = tf.switch_case(index, ops)
    out.set_shape(image.shape)
    return out


def randaugment(image: tf.Tensor, seed: tf.Tensor, layers: int = RANDAUGMENT_LAYERS,
                magnitude: int = RANDAUGMENT_MAGNITUDE) -> tf.Tensor:
    """RandAugment-style: ``layers`` ops in a row, each drawn uniformly from 14, at a fixed ``magnitude`` (0-10)."""
    for layer_seed in split_seed(seed, layers):
        image = _randaugment_layer(image, layer_seed, magnitude / 10.0)
    return image


# --- mixup / cutmix (on whole batches) ----------------------------------------------------------------------

def _beta(seed, alpha):
    s1, s2 = split_seed(seed, 2)
    x = tf.random.stateless_gamma([], s1, alpha)
    y = tf.random.stateless_gamma([], s2, alpha)
    return x / (x + y)


def mixup(images, labels, seed, alpha: float):
    lam = _beta(seed, alpha)
    other_images, other_labels = tf.reverse(images, [0]), tf.reverse(labels, [0])
    return lam * images + (1 - lam) * other_images, lam * labels + (1 - lam) * other_labels


def cutmix(images, labels, seed, alpha: float):
    """Paste a box from the batch's reverse; labels are mixed by the box's true area after clipping."""
    s_lam, s_y, s_x = split_seed(seed, 3)
    lam = _beta(s_lam, alpha)
    height, width = images.shape[1], images.shape[2]
    cut = tf.sqrt(1.0 - lam)
    cut_h, cut_w = tf.cast(cut * height, tf.int32), tf.cast(cut * width, tf.int32)
    cy = tf.random.stateless_uniform([], s_y, 0, height, dtype=tf.int32)
    cx = tf.random.stateless_uniform([], s_x, 0, width, dtype=tf.int32)
    y0, y1 = tf.maximum(cy - cut_h // 2, 0), tf.minimum(cy + cut_h // 2, height)
    x0, x1 = tf.maximum(cx - cut_w // 2, 0), tf.minimum(cx + cut_w // 2, width)
    rows, cols = tf.range(height)[:, None], tf.range(width)[None, :]
    box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    mask = tf.cast(box, images.dtype)[None, :, :, None]
    lam = 1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / float(height * width)
    mixed = images * (1 - mask) + tf.reverse(images, [0]) * mask
    return mixed, lam * labels + (1 - lam) * tf.reverse(labels, [0])


def mix_batch(images, labels, seed, mixup_alpha: float, cutmix_alpha: float):
    """Mixup or cutmix on a batch; with both enabled, each batch uses one of them at random (50/50).
    Images come in as any dtype (the pipeline's uint8) and leave as float32: a blend is not a whole pixel."""
    images = tf.cast(images, tf.float32)
    s_pick, s_mix = split_seed(seed, 2)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        return tf.cond(_uniform(s_pick) < 0.5,
                       lambda: mixup(images, labels, s_mix, mixup_alpha),
                       lambda: cutmix(images, labels, s_mix, cutmix_alpha))
    if mixup_alpha > 0:
        return mixup(images, labels, s_mix, mixup_alpha)
    return cutmix(images, labels, s_mix, cutmix_alpha)
