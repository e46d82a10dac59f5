"""Spatial transforms of PySlowFast's Kinetics pipeline, on uint8 frames.

Two implementations of the same operations:

* NumPy/OpenCV functions, used inside the PyAV reader (fast uint8 resizing);
* TensorFlow functions (suffix `_tf`), used by the TFRecord reader and to cut
  test crops, so that those graphs contain TensorFlow ops only.

Resizing is bilinear with half-pixel centres and no antialiasing
(`torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`),
with the long side `floor(long / short * size)` computed in float64.
Frames stay uint8 `(T, H, W, 3)`; the model normalises them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "normalize",
    "resize_short_side",
    "short_side_scale_size",
    "uniform_crop_offset",
]

# PySlowFast's Kinetics normalisation (DATA.MEAN / DATA.STD), in [0, 1] units.
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


def short_side_scale_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Frame size after scaling the short side to `size` (PySlowFast's rule).

    The long side becomes `floor(long / short * size)` with a float64 ratio.
    A frame whose short side already equals `size` keeps its size.

    Args:
        height: frame height.
        width: frame width.
        size: target length of the short side.

    Returns:
        `(new_height, new_width)`.

    Example:

    >>> short_side_scale_size(272, 640, 256)
    (256, 602)
    """
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(math.floor(float(height) / width * size)), size
    return size, int(math.floor(float(width) / height * size))


def resize_short_side(frames: np.ndarray, size: int, exact: bool = False) -> np.ndarray:
    """Resizes uint8 frames so that their short side is `size`.

    Args:
        frames: uint8 array `(T, H, W, C)` or `(H, W, C)`.
        size: target short side.
        exact: if True, interpolate in float32 and round to the nearest
            integer (within 0.5 of PySlowFast's float result); if False, use
            OpenCV's fixed-point uint8 path (within one level, faster).

    Returns:
        A uint8 array with the new spatial size (the input itself when no
        resize is needed).

    Example:

    >>> resize_short_side(np.zeros((2, 272, 640, 3), np.uint8), 256).shape
    (2, 256, 602, 3)
    """
    import cv2

    frames = np.asarray(frames)
    single = frames.ndim == 3
    height, width = frames.shape[-3], frames.shape[-2]
    new_height, new_width = short_side_scale_size(height, width, size)
    if (new_height, new_width) == (height, width):
        return frames
    batch = frames[None] if single else frames
    out = np.empty((batch.shape[0], new_height, new_width, batch.shape[-1]), np.uint8)
    for i, frame in enumerate(batch):
        if exact:
            resized = cv2.resize(
                frame.astype(np.float32), (new_width, new_height), interpolation=cv2.INTER_LINEAR
            )
            out[i] = np.clip(np.rint(resized), 0, 255).reshape(out[i].shape)
        else:
            out[i] = cv2.resize(
                frame, (new_width, new_height), interpolation=cv2.INTER_LINEAR
            ).reshape(out[i].shape)
    return out[0] if single else out


def uniform_crop_offset(height: int, width: int, size: int, spatial_index: int) -> tuple[int, int]:
    """Top-left corner of test crop `spatial_index` (0, 1 or 2).

    The crops run along the long side: offsets `0`, `ceil((L - size) / 2)`
    and `L - size`; the short side is centred with `ceil`.

    Example:

    >>> uniform_crop_offset(256, 340, 256, 1)
    (0, 42)
    """
    if spatial_index not in (0, 1, 2):
        raise ValueError(
            f"`spatial_index` must be 0, 1 or 2. Received: spatial_index={spatial_index!r}"
        )
    y = int(math.ceil((height - size) / 2))
    x = int(math.ceil((width - size) / 2))
    if height > width:
        if spatial_index == 0:
            y = 0
        elif spatial_index == 2:
            y = height - size
    else:
        if spatial_index == 0:
            x = 0
        elif spatial_index == 2:
            x = width - size
    return y, x


def random_crop_offset(height, width, size, rng):
    """Top-left corner of a random crop: `randint(0, L - size)`, high exclusive.

    As in PySlowFast, the last offset `L - size` is never drawn, and a side
    equal to `size` gives offset 0.

    Example:

    >>> y, x = random_crop_offset(256, 340, 224, np.random.default_rng(0))
    >>> 0 <= y < 32 and 0 <= x < 116
    True
    """
    y = int(rng.integers(0, height - size)) if height > size else 0
    x = int(rng.integers(0, width - size)) if width > size else 0
    return y, x


def random_scale_crop_flip(frames, min_scale, max_scale, crop_size, rng, flip=True):
    """Training augmentation: short-side jitter, random crop, horizontal flip.

    The short side goes to `round(uniform(min_scale, max_scale))`, a
    `crop_size` square is cut at a random offset, and the clip is mirrored
    with probability 0.5 (one decision for all frames).

    Args:
        frames: uint8 `(T, H, W, 3)`.
        min_scale: smallest short side.
        max_scale: largest short side.
        crop_size: side of the square crop.
        rng: a `numpy.random.Generator`.
        flip: whether to flip at random.

    Returns:
        uint8 `(T, crop_size, crop_size, 3)`.

    Example:

    >>> clip = np.zeros((8, 256, 340, 3), np.uint8)
    >>> random_scale_crop_flip(clip, 256, 320, 224, np.random.default_rng(0)).shape
    (8, 224, 224, 3)
    """
    size = int(round(rng.uniform(min_scale, max_scale)))
    frames = resize_short_side(frames, size)
    height, width = frames.shape[1], frames.shape[2]
    y, x = random_crop_offset(height, width, crop_size, rng)
    out = frames[:, y : y + crop_size, x : x + crop_size]
    if flip and rng.uniform() < 0.5:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


def normalize(
    frames: np.ndarray,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
) -> np.ndarray:
    """Float normalisation `(frames / 255 - mean) / std` (what the model does internally).

    Example:

    >>> round(float(normalize(np.full((1, 1, 1, 3), 255, np.uint8))[0, 0, 0, 0]), 4)
    2.4444
    """
    frames = np.asarray(frames, np.float32) / np.float32(255.0)
    return (frames - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


# TensorFlow versions -------------------------------------------------------


def short_side_scale_size_tf(height, width, size):
    """TensorFlow version of `short_side_scale_size` (int32 scalars in and out).

    Example:

    >>> [int(v) for v in short_side_scale_size_tf(272, 640, 256)]
    [256, 602]
    """
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    size = tf.cast(size, tf.int32)
    h64 = tf.cast(height, tf.float64)
    w64 = tf.cast(width, tf.float64)
    s64 = tf.cast(size, tf.float64)
    keep = tf.logical_or(
        tf.logical_and(width <= height, tf.equal(width, size)),
        tf.logical_and(height <= width, tf.equal(height, size)),
    )
    tall = width < height
    long_side = tf.cast(tf.floor(tf.where(tall, h64 / w64, w64 / h64) * s64), tf.int32)
    new_height = tf.where(keep, height, tf.where(tall, long_side, size))
    new_width = tf.where(keep, width, tf.where(tall, size, long_side))
    return new_height, new_width


def resize_short_side_tf(frames, size):
    """TensorFlow version of `resize_short_side(..., exact=True)` for uint8 `(T, H, W, C)`.

    Example:

    >>> resize_short_side_tf(tf.zeros((2, 272, 640, 3), tf.uint8), 256).shape
    TensorShape([2, 256, 602, 3])
    """
    shape = tf.shape(frames)
    new_height, new_width = short_side_scale_size_tf(shape[1], shape[2], size)

    def resize():
        resized = tf.image.resize(
            frames, tf.stack([new_height, new_width]), method="bilinear", antialias=False
        )
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    same = tf.logical_and(tf.equal(new_height, shape[1]), tf.equal(new_width, shape[2]))
    return tf.cond(same, lambda: tf.identity(frames), resize)


def uniform_crop_tf(frames, size, spatial_index):
    """TensorFlow version of a test crop (see `uniform_crop_offset`) of `(T, H, W, C)`."""
    shape = tf.shape(frames)
    height, width = shape[1], shape[2]
    spatial_index = tf.cast(spatial_index, tf.int32)
    centre_y = (height - size + 1) // 2
    centre_x = (width - size + 1) // 2
    long_offset_y = tf.gather(tf.stack([0, centre_y, height - size]), spatial_index)
    long_offset_x = tf.gather(tf.stack([0, centre_x, width - size]), spatial_index)
    tall = height > width
    y = tf.where(tall, long_offset_y, centre_y)
    x = tf.where(tall, centre_x, long_offset_x)
    out = frames[:, y : y + size, x : x + size]
    return tf.ensure_shape(out, [frames.shape[0], size, size, frames.shape[-1]])


def random_scale_crop_flip_tf(frames, min_scale, max_scale, crop_size, seed, flip=True):
    """TensorFlow version of `random_scale_crop_flip` with a stateless `seed` (shape `(2,)`)."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    scale = tf.random.stateless_uniform(
        [], seeds[0], minval=float(min_scale), maxval=float(max_scale), dtype=tf.float64
    )
    size = tf.cast(tf.round(scale), tf.int32)
    frames = resize_short_side_tf(frames, size)
    shape = tf.shape(frames)
    height, width = shape[1], shape[2]

    def offset(length, s):
        return tf.cond(
            length > crop_size,
            lambda: tf.random.stateless_uniform(
                [], s, minval=0, maxval=length - crop_size, dtype=tf.int32
            ),
            lambda: tf.constant(0, tf.int32),
        )

    y = offset(height, seeds[1])
    x = offset(width, seeds[2])
    out = frames[:, y : y + crop_size, x : x + crop_size]
    if flip:
        do_flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
        out = tf.cond(do_flip, lambda: tf.reverse(out, axis=[2]), lambda: out)
    return tf.ensure_shape(out, [frames.shape[0], crop_size, crop_size, frames.shape[-1]])
