"""PySlowFast's AVA clip transforms (OpenCV backend): frames and their boxes move together.

NumPy/OpenCV on uint8 RGB frames `(T, H, W, 3)` with boxes in pixels: OpenCV bilinear
resizing of the short side, crops and flips, with the boxes scaled, shifted, mirrored and
clipped to the frame as PySlowFast moves them, and PySlowFast's train colour augmentation
(colour jitter and AlexNet-style PCA lighting noise). The frame operations themselves
(`resize_short_side`, the crop offsets) are those of `keras_slowfast.data.transforms`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_slowfast.data._loading import check_mode
from keras_slowfast.data.transforms import (
    random_crop_offset,
    resize_short_side,
    short_side_scale_size,
    uniform_crop_offset,
)

__all__ = ["ava_transform"]

# PySlowFast's DATA.TRAIN_PCA_EIGVAL / TRAIN_PCA_EIGVEC (AlexNet-style lighting noise).
PCA_EIGVAL = (0.225, 0.224, 0.229)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# The centre crop among `uniform_crop_offset`'s three.
_CENTRE = 1


def _scale_boxes(boxes, height, width, size):
    # PySlowFast scales both box axes by the long side's ratio (`floor` of the new long side
    # over the old one); with an exact aspect ratio this equals the short side's ratio.
    new_h, new_w = short_side_scale_size(height, width, size)
    if (new_h, new_w) == (height, width):
        return boxes
    if width < height:
        return boxes * (float(new_h) / height)
    return boxes * (float(new_w) / width)


def _clip_boxes(boxes, height, width):
    out = boxes.copy()
    out[:, [0, 2]] = np.minimum(width - 1.0, np.maximum(0.0, boxes[:, [0, 2]]))
    out[:, [1, 3]] = np.minimum(height - 1.0, np.maximum(0.0, boxes[:, [1, 3]]))
    return out


def _crop(frames, boxes, y, x, size):
    """The `size` square at `(y, x)` of the frames, and the boxes shifted with it (in place)."""
    boxes[:, [0, 2]] -= x
    boxes[:, [1, 3]] -= y
    return frames[:, y : y + size, x : x + size], boxes


def _flip(frames, boxes):
    width = frames.shape[2]
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2] - 1
    flipped[:, 2] = width - boxes[:, 0] - 1
    return np.ascontiguousarray(frames[:, :, ::-1]), flipped


def _color_augment(frames, rng, pca_jitter_only, eigval=PCA_EIGVAL, eigvec=PCA_EIGVEC):
    """PySlowFast's AVA colour augmentation, on RGB frames in [0, 1] (float32)."""
    x = frames.astype(np.float32)

    def gray(img):
        return 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]

    if not pca_jitter_only:
        for op in rng.permutation(3):
            alpha = 1.0 + rng.uniform(-0.4, 0.4)
            if op == 0:  # brightness: blend with black
                x = x * alpha
            elif op == 1:  # contrast: blend with each frame's mean grey level
                mean = gray(x).reshape(len(x), -1).mean(axis=1)
                x = x * alpha + mean[:, None, None, None] * (1 - alpha)
            else:  # saturation: blend with the grey image
                x = x * alpha + gray(x)[..., None] * (1 - alpha)
    alpha = rng.normal(0, 0.1, size=(1, 3))
    vec = np.asarray(eigvec, np.float64)
    val = np.reshape(np.asarray(eigval, np.float64), (1, 3))
    rgb = np.sum(vec * np.repeat(alpha, 3, axis=0) * np.repeat(val, 3, axis=0), axis=1)
    return (x + rgb.astype(np.float32)).astype(np.float32)


def _train_geometry(frames, boxes, crop_size, jitter_scales, random_flip, rng):
    """Short-side jitter (uniform in 1 / size), a random crop, a random flip."""
    height, width = frames.shape[1:3]
    low, high = jitter_scales
    size = int(round(1.0 / rng.uniform(1.0 / high, 1.0 / low)))
    boxes = _scale_boxes(boxes, height, width, size)
    frames = resize_short_side(frames, size)
    y, x = random_crop_offset(frames.shape[1], frames.shape[2], crop_size, rng)
    frames, boxes = _crop(frames, boxes, y, x, crop_size)
    if random_flip and rng.uniform() < 0.5:
        frames, boxes = _flip(frames, boxes)
    return frames, boxes


def _eval_geometry(frames, boxes, mode, crop_size, force_flip):
    """Short side to `crop_size`; the centre square in `"val"`; a flip if `force_flip`."""
    height, width = frames.shape[1:3]
    boxes = _scale_boxes(boxes, height, width, crop_size)
    frames = resize_short_side(frames, crop_size)
    if mode == "val":
        y, x = uniform_crop_offset(frames.shape[1], frames.shape[2], crop_size, _CENTRE)
        frames, boxes = _crop(frames, boxes, y, x, crop_size)
    if force_flip:
        frames, boxes = _flip(frames, boxes)
    return frames, boxes


def ava_transform(
    frames: np.ndarray,
    boxes: np.ndarray | Sequence[Sequence[float]],
    mode: str,
    *,
    crop_size: int,
    jitter_scales: tuple[int, int] = (256, 320),
    random_flip: bool = True,
    force_flip: bool = False,
    color_augmentation: bool = False,
    pca_jitter_only: bool = True,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """PySlowFast's AVA clip transform (OpenCV backend) on uint8 RGB frames and boxes.

    * `"train"`: short side to `round(1 / uniform(1 / max, 1 / min))` of `jitter_scales`, a
      random `crop_size` square crop, a horizontal flip with probability 0.5;
    * `"val"`: short side to `crop_size`, then the centre `crop_size` square;
    * `"test"`: short side to `crop_size`, no crop.

    Boxes (normalised, as read) are scaled to pixels, clipped to the frame, transformed with
    the image and clipped again to `[0, W - 1] x [0, H - 1]` of the output, as PySlowFast
    does. `force_flip` flips val/test clips; `color_augmentation` (train) applies PySlowFast's
    colour jitter (unless `pca_jitter_only`) and PCA lighting noise, and then returns float32
    frames in [0, 255] instead of uint8.

    Args:
        frames: uint8 `(T, H, W, 3)`.
        boxes: `(n, 4)` normalised `[x1, y1, x2, y2]`.
        mode: `"train"`, `"val"` or `"test"`.
        crop_size: train crop, or the test short side and crop.
        jitter_scales: `(min, max)` short side for train.
        random_flip: flip train clips at random.
        force_flip: flip val/test clips.
        color_augmentation: colour augmentation for train.
        pca_jitter_only: with `color_augmentation`, only the PCA lighting noise.
        rng: a `numpy.random.Generator` (train randomness).

    Returns:
        `(clip, pixel_boxes)`: the clip and float32 `(n, 4)` boxes in its pixels.

    Example:
        >>> clip, b = ava_transform(np.zeros((2, 256, 340, 3), np.uint8),
        ...                         np.array([[0.1, 0.2, 0.5, 0.9]]), "test", crop_size=128)
        >>> clip.shape, [round(float(v), 2) for v in b[0]]
        ((2, 128, 170, 3), [17.0, 25.6, 85.0, 115.2])
    """
    check_mode(mode)
    rng = np.random.default_rng() if rng is None else rng
    frames = np.asarray(frames)
    height, width = frames.shape[1:3]
    b = np.array(boxes, np.float64).reshape(-1, 4).copy()
    b[:, [0, 2]] *= width
    b[:, [1, 3]] *= height
    b = _clip_boxes(b, height, width)
    if mode == "train":
        frames, b = _train_geometry(frames, b, crop_size, jitter_scales, random_flip, rng)
    else:
        frames, b = _eval_geometry(frames, b, mode, crop_size, force_flip)
    frames = np.ascontiguousarray(frames)
    if mode == "train" and color_augmentation:
        frames = _color_augment(frames / 255.0, rng, pca_jitter_only) * 255.0
    b = _clip_boxes(b, frames.shape[1], frames.shape[2])
    return frames, b.astype(np.float32)
