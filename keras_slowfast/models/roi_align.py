"""RoIAlign in plain TensorFlow, with the semantics of detectron2 / torchvision `roi_align`.

The AVA detection head pools a fixed-size feature grid out of every person box. The reference
implementations use a compiled kernel; this module reproduces its arithmetic with ordinary
TensorFlow ops, so it runs in eager mode, inside `tf.function` and in Keras functional models,
with any number of boxes, and passes gradients to the features.

Semantics (per box, per axis; `y` shown, `x` is the same with widths):

- `start = y1 * spatial_scale - offset`, `end = y2 * spatial_scale - offset`, where
  `offset = 0.5` when `aligned=True` (pixel-centre model) and `0` otherwise.
- `roi_h = end - start`; with `aligned=False` it is raised to at least 1.
- `bin_h = roi_h / out_h`; the number of samples per bin along the axis is `sampling_ratio`
  when positive, else `ceil(roi_h / out_h)` for that box (zero or negative: no samples).
- Sample `iy` of bin `p` sits at `start + p * bin_h + (iy + 0.5) * bin_h / grid_h`.
- Bilinear interpolation: a sample outside `[-1, H]` (or `[-1, W]`) contributes zero; a
  coordinate at or below 0 is clamped to 0; a sample at or beyond the last row or column
  reads that row or column only.
- A bin is the sum of its samples divided by `max(grid_h * grid_w, 1)`.

Implementation: for one box, a bin's value is a weighted sum of feature pixels whose weight
factorises into a row weight times a column weight (the bilinear weights, the validity test
and the sample count are all separable). So each box gets a row-interpolation matrix
`(out_h, H)` and a column-interpolation matrix `(out_w, W)` that already sum over the
samples, and the output is two matrix products with the features. This is exact (the sample
positions are computed with the reference's operation order, so float32 results agree with
the float32 kernel to rounding), and the cost of the products does not depend on the number
of samples.

Memory: the intermediate product takes `boxes * out_h * W * C` values and the output
`boxes * out_h * out_w * C`; building the matrices takes
`boxes * (out_h * H + out_w * W) * window` values with no channel factor, where `window` is
the largest per-box sample grid, capped at `2 * size + 8` (with adaptive sampling, samples
beyond that many cannot land on the map, so huge boxes cost no more than the map allows).
Gathering the four corners of every sample instead would take
`4 * boxes * out_h * grid_h * out_w * grid_w * C`.

The batched layout also compiles with XLA (the sample window has a static bound); there,
XLA's reordering of float operations may flip a sample lying exactly on the -1 or `size`
boundary. The flat layouts group boxes per image into a data-dependent shape and do not
compile with XLA.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = ["RoIAlign"]

_PACKAGE = "keras_slowfast"


def _standardize_output_size(output_size):
    def _is_positive_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0

    if _is_positive_int(output_size):
        return (int(output_size), int(output_size))
    if (
        isinstance(output_size, (tuple, list))
        and len(output_size) == 2
        and all(_is_positive_int(v) for v in output_size)
    ):
        return (int(output_size[0]), int(output_size[1]))
    raise ValueError(
        "`output_size` must be a positive int or a pair of positive ints (height, width). "
        f"Received: output_size={output_size!r}"
    )


def _validate_spatial_scale(spatial_scale):
    if (
        not isinstance(spatial_scale, numbers.Real)
        or isinstance(spatial_scale, bool)
        or not math.isfinite(spatial_scale)
        or spatial_scale <= 0
    ):
        raise ValueError(
            "`spatial_scale` must be a positive finite number. "
            f"Received: spatial_scale={spatial_scale!r}"
        )
    return float(spatial_scale)


def _validate_sampling_ratio(sampling_ratio):
    if (
        not isinstance(sampling_ratio, numbers.Integral)
        or isinstance(sampling_ratio, bool)
        or sampling_ratio < 0
    ):
        raise ValueError(
            "`sampling_ratio` must be a non-negative int (0 means adaptive). "
            f"Received: sampling_ratio={sampling_ratio!r}"
        )
    return int(sampling_ratio)


def _validate_aligned(aligned):
    if not isinstance(aligned, (bool, np.bool_)):
        raise TypeError(f"`aligned` must be a bool. Received: aligned={aligned!r}")
    return bool(aligned)


def _axis_weights(lo, hi, size, num_bins, spatial_scale, sampling_ratio, aligned):
    """Interpolation matrix of one axis for every box.

    Args:
        lo: box start coordinates in input pixels, any shape `S`.
        hi: box end coordinates, shape `S`.
        size: feature-map size along this axis (scalar int32 tensor).
        num_bins: output size along this axis (python int).
        spatial_scale: python float.
        sampling_ratio: python int, 0 for adaptive.
        aligned: python bool.

    Returns:
        A tensor of shape `S + (num_bins, size)` in the dtype of `lo`. Row `p` holds the
        weight of every feature row (or column) in bin `p`, already divided by this axis'
        sample count.
    """
    dtype = lo.dtype
    # The same operation order as the reference kernel, so that float32 results agree.
    offset = tf.constant(0.5 if aligned else 0.0, dtype)
    scale = tf.constant(spatial_scale, dtype)
    start = lo * scale - offset
    end = hi * scale - offset
    length = end - start
    if not aligned:
        length = tf.maximum(length, tf.constant(1.0, dtype))
    bin_size = length / tf.constant(num_bins, dtype)

    bins = tf.cast(tf.range(num_bins), dtype)[:, None]  # (num_bins, 1)
    bin_start = start[..., None, None] + bins * bin_size[..., None, None]  # S + (bins, 1)
    bin_size = bin_size[..., None, None]
    if sampling_ratio > 0:
        grid = tf.fill(tf.shape(bin_size), sampling_ratio)
        first = tf.zeros_like(grid)
        window = sampling_ratio
    else:
        grid_f = tf.math.ceil(bin_size)
        # Non-finite boxes get no samples instead of an unbounded grid; a non-positive grid
        # means "no samples" in the reference too.
        grid_f = tf.where(tf.math.is_finite(grid_f), grid_f, tf.zeros_like(grid_f))
        grid_f = tf.clip_by_value(grid_f, 0.0, 2.0**30)
        grid = tf.cast(grid_f, tf.int32)
        # With two or more samples per bin they are more than half a feature pixel apart, so
        # at most 2 * size + 3 of them can fall inside [-1, size]. Enumerate only a window of
        # 2 * size + 8 samples from an estimate of the first one at or after -1 (moved back
        # by 2 to absorb rounding); this bounds memory for arbitrarily large boxes.
        step = bin_size / tf.maximum(grid_f, 1.0)
        first_f = tf.math.ceil((-1.0 - bin_start) / step - 0.5) - 2.0
        first_f = tf.where(tf.math.is_finite(first_f), first_f, tf.zeros_like(first_f))
        first = tf.cast(tf.clip_by_value(first_f, 0.0, grid_f), tf.int32)
        max_grid = tf.reduce_max(tf.concat([tf.reshape(grid, [-1]), [1]], 0))
        window = tf.minimum(max_grid, 2 * size + 8)

    grid_safe = tf.cast(tf.maximum(grid, 1), dtype)
    sample_idx = first + tf.range(window)  # S + (bins, window)
    sample_off = tf.cast(sample_idx, dtype) + tf.constant(0.5, dtype)
    pos = bin_start + sample_off * bin_size / grid_safe
    grid = grid + tf.zeros_like(sample_idx[..., :1])  # S + (bins, 1) for both branches

    size_f = tf.cast(size, dtype)
    # Written as "inside" so that NaN coordinates count as outside.
    inside = (pos >= tf.constant(-1.0, dtype)) & (pos <= size_f)
    used = inside & (sample_idx < grid)
    pos = tf.where(inside, tf.maximum(pos, tf.zeros_like(pos)), tf.zeros_like(pos))
    low = tf.math.floor(pos)
    at_edge = low >= size_f - 1.0
    last = tf.fill(tf.shape(low), size_f - 1.0)
    low = tf.where(at_edge, last, low)
    frac = tf.where(at_edge, tf.zeros_like(pos), pos - low)
    high = tf.where(at_edge, last, low + 1.0)

    weight = tf.cast(used, dtype) / grid_safe
    w_low = (1.0 - frac) * weight
    w_high = frac * weight
    low_i = tf.cast(low, tf.int32)
    high_i = tf.cast(high, tf.int32)
    mat = (
        tf.one_hot(low_i, size, dtype=dtype) * w_low[..., None]
        + tf.one_hot(high_i, size, dtype=dtype) * w_high[..., None]
    )
    return tf.reduce_sum(mat, axis=-2)  # S + (bins, size)


def _roi_align_padded(features, boxes, output_size, spatial_scale, sampling_ratio, aligned):
    """RoIAlign of `(B, M, 4)` boxes on `(B, H, W, C)` features, same float dtype."""
    out_h, out_w = output_size
    shape = tf.shape(features)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    num_boxes = tf.shape(boxes)[1]
    # Like the reference, the boxes are constants for differentiation.
    boxes = tf.stop_gradient(boxes)
    x1, y1, x2, y2 = tf.unstack(boxes, num=4, axis=-1)
    rows = _axis_weights(y1, y2, height, out_h, spatial_scale, sampling_ratio, aligned)
    cols = _axis_weights(x1, x2, width, out_w, spatial_scale, sampling_ratio, aligned)
    # rows: (B, M, out_h, H); cols: (B, M, out_w, W).
    flat = tf.reshape(features, tf.stack([batch, height, width * channels]))
    tmp = tf.linalg.matmul(tf.reshape(rows, tf.stack([batch, num_boxes * out_h, height])), flat)
    tmp = tf.reshape(tmp, tf.stack([batch, num_boxes, out_h, width, channels]))
    # The column matrix is shared by the out_h rows of a box: broadcast, not tiled.
    return tf.linalg.matmul(cols[:, :, None], tmp)  # (B, M, out_h, out_w, C)


def _roi_align_indexed(
    features, boxes, box_indices, output_size, spatial_scale, sampling_ratio, aligned
):
    """RoIAlign of `(K, 4)` boxes, box `k` read from image `box_indices[k]`.

    The boxes are grouped per image into a zero-padded `(B, max_per_image, 4)` tensor, pooled
    with the batched path, and the real rows picked back out in the original order.
    """
    batch = tf.shape(features)[0]
    num = tf.shape(boxes)[0]
    box_indices = tf.cast(box_indices, tf.int32)
    checks = [
        tf.debugging.assert_non_negative(box_indices, message="`box_indices` must be non-negative"),
        tf.debugging.assert_less(
            box_indices, batch, message="`box_indices` must be smaller than the batch size"
        ),
    ]
    with tf.control_dependencies(checks):
        box_indices = tf.identity(box_indices)
    counts = tf.math.bincount(box_indices, minlength=batch, maxlength=batch, dtype=tf.int32)
    order = tf.argsort(box_indices, stable=True)
    sorted_ids = tf.gather(box_indices, order)
    first = tf.math.cumsum(counts, exclusive=True)
    slot_sorted = tf.range(num) - tf.gather(first, sorted_ids)
    slot = tf.scatter_nd(order[:, None], slot_sorted, tf.reshape(num, [1]))
    per_image = tf.reduce_max(tf.concat([counts, [0]], 0))
    where = tf.stack([box_indices, slot], axis=1)
    padded = tf.scatter_nd(where, boxes, tf.stack([batch, per_image, 4]))
    out = _roi_align_padded(features, padded, output_size, spatial_scale, sampling_ratio, aligned)
    return tf.gather_nd(out, where)


def _work_dtype(dtype):
    # Box coordinates need more precision than 16-bit floats give (0.25 px at 300 px).
    return tf.float64 if dtype == tf.float64 else tf.float32


def roi_align(
    features,
    boxes,
    box_indices=None,
    output_size=7,
    spatial_scale=1.0 / 16.0,
    sampling_ratio=0,
    aligned=True,
):
    """Pools a fixed-size feature grid from every box, as detectron2's `ROIAlign`.

    Three box layouts are accepted:

    - `boxes` of shape `(batch, max_boxes, 4)`, rows `[x1, y1, x2, y2]`; box `(b, m)` is read
      from image `b`. Returns `(batch, max_boxes, out_h, out_w, C)`.
    - `boxes` of shape `(num_boxes, 5)`, rows `[batch_index, x1, y1, x2, y2]` (the
      detectron2 / torchvision layout; the index is truncated to an int). Returns
      `(num_boxes, out_h, out_w, C)`.
    - `boxes` of shape `(num_boxes, 4)` with integer `box_indices` of shape `(num_boxes,)`.
      Returns `(num_boxes, out_h, out_w, C)`.

    Coordinates are in input-image pixels; they are multiplied by `spatial_scale` to reach
    feature-map coordinates. Every box is pooled, including all-zero padding rows. Flat boxes
    are grouped per image and padded to the largest per-image count, so their cost follows
    `batch * max_boxes_per_image`. The boxes receive no gradient (as in the reference); the
    features do. Arithmetic runs in float64 for float64 features and in float32 otherwise;
    the result has the features' dtype. See the module docstring for the exact sampling
    rules and the memory bound.

    Args:
        features: `(batch, H, W, C)` channels-last float tensor.
        boxes: box tensor in one of the layouts above.
        box_indices: optional `(num_boxes,)` int tensor, only with `(num_boxes, 4)` boxes.
        output_size: int or `(out_h, out_w)`.
        spatial_scale: feature-map size over input size, e.g. `1/16` for stride 16.
        sampling_ratio: samples per bin along each axis; 0 means `ceil(roi_size / out_size)`
            per box.
        aligned: if True, shift the box by -0.5 feature pixel (pixel-centre model); if False
            (legacy), force the box to be at least 1x1 feature pixel.

    Returns:
        The pooled features, as described above.

    Example:
        >>> features = tf.reshape(tf.range(16.0), (1, 4, 4, 1))
        >>> out = roi_align(features, tf.constant([[[0.0, 0.0, 4.0, 4.0]]]), output_size=2,
        ...                 spatial_scale=1.0, sampling_ratio=1)
        >>> out.numpy().reshape(2, 2).tolist()
        [[2.5, 4.5], [10.5, 12.5]]
    """
    output_size = _standardize_output_size(output_size)
    spatial_scale = _validate_spatial_scale(spatial_scale)
    sampling_ratio = _validate_sampling_ratio(sampling_ratio)
    aligned = _validate_aligned(aligned)

    features = tf.convert_to_tensor(features)
    if not features.dtype.is_floating:
        raise TypeError(
            f"`features` must be a float tensor. Received: features.dtype={features.dtype.name}"
        )
    if features.shape.rank != 4:
        raise ValueError(
            "`features` must have shape (batch, height, width, channels). "
            f"Received: features.shape={features.shape}"
        )
    out_dtype = features.dtype
    work = _work_dtype(out_dtype)
    features = tf.cast(features, work)
    boxes = tf.convert_to_tensor(boxes)
    rank = boxes.shape.rank
    last = boxes.shape[-1] if rank is not None else None

    if rank == 3:
        if box_indices is not None:
            raise ValueError(
                "`box_indices` is only used with boxes of shape (num_boxes, 4); boxes of shape "
                "(batch, max_boxes, 4) are read from their own image. "
                f"Received: box_indices={box_indices!r}"
            )
        if last not in (None, 4):
            raise ValueError(
                "`boxes` of rank 3 must have shape (batch, max_boxes, 4). "
                f"Received: boxes.shape={boxes.shape}"
            )
        if None not in (features.shape[0], boxes.shape[0]) and (
            features.shape[0] != boxes.shape[0]
        ):
            raise ValueError(
                "`boxes` of shape (batch, max_boxes, 4) must have the batch size of "
                f"`features` ({features.shape[0]}). Received: boxes.shape={boxes.shape}"
            )
        out = _roi_align_padded(
            features, tf.cast(boxes, work), output_size, spatial_scale, sampling_ratio, aligned
        )
    elif rank == 2:
        if box_indices is None:
            if last not in (None, 5):
                raise ValueError(
                    "`boxes` of rank 2 without `box_indices` must have shape (num_boxes, 5), "
                    "rows [batch_index, x1, y1, x2, y2]. "
                    f"Received: boxes.shape={boxes.shape}"
                )
            box_indices = tf.cast(boxes[:, 0], tf.int32)
            coords = boxes[:, 1:5]
        else:
            if last not in (None, 4):
                raise ValueError(
                    "`boxes` used with `box_indices` must have shape (num_boxes, 4). "
                    f"Received: boxes.shape={boxes.shape}"
                )
            box_indices = tf.convert_to_tensor(box_indices)
            if not box_indices.dtype.is_integer:
                raise TypeError(
                    "`box_indices` must be an integer tensor. "
                    f"Received: box_indices.dtype={box_indices.dtype.name}"
                )
            if box_indices.shape.rank not in (None, 1):
                raise ValueError(
                    "`box_indices` must have shape (num_boxes,). "
                    f"Received: box_indices.shape={box_indices.shape}"
                )
            coords = boxes
        out = _roi_align_indexed(
            features,
            tf.cast(coords, work),
            box_indices,
            output_size,
            spatial_scale,
            sampling_ratio,
            aligned,
        )
    else:
        raise ValueError(
            "`boxes` must have shape (batch, max_boxes, 4), (num_boxes, 5) or (num_boxes, 4) "
            f"with `box_indices`. Received: boxes.shape={boxes.shape}"
        )
    return tf.cast(out, out_dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RoIAlign(keras.layers.Layer):
    """RoIAlign layer with detectron2 / torchvision semantics, in plain TensorFlow.

    Called as `layer(features, boxes)` with `features` of shape `(batch, H, W, C)` and
    `boxes` of shape `(batch, max_boxes, 4)` as `[x1, y1, x2, y2]` in input-image pixels;
    returns `(batch, max_boxes, out_h, out_w, C)`. Flat boxes are accepted too:
    `(num_boxes, 5)` rows `[batch_index, x1, y1, x2, y2]`, or `(num_boxes, 4)` with a
    `box_indices` argument; both return `(num_boxes, out_h, out_w, C)`. Batch size, number
    of boxes and feature-map size may all be dynamic. See :func:`roi_align` for the rules.

    Under a mixed-precision policy the sampling is computed in float32 (box coordinates in
    float16 would be off by up to a quarter pixel at 300 px) and the output is cast to the
    compute dtype.

    Args:
        output_size: int or `(out_h, out_w)`; 7 for the SlowFast AVA head.
        spatial_scale: feature-map size over input size; 1/16 for the AVA head.
        sampling_ratio: samples per bin along each axis; 0 (default) means adaptive,
            `ceil(roi_size / output_size)` per box.
        aligned: True for the pixel-centre model (-0.5 shift); False for the legacy
            behaviour of the released Caffe2 AVA model (box at least 1x1).
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Example:
        >>> layer = RoIAlign(output_size=7, spatial_scale=1 / 16)
        >>> features = tf.zeros((2, 16, 21, 8))
        >>> boxes = tf.constant([[[10.0, 20.0, 120.0, 250.0]]] * 2)
        >>> layer(features, boxes).shape
        TensorShape([2, 1, 7, 7, 8])
    """

    def __init__(
        self,
        output_size: int | Sequence[int] = 7,
        spatial_scale: float = 1.0 / 16.0,
        sampling_ratio: int = 0,
        aligned: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.output_size = _standardize_output_size(output_size)
        self.spatial_scale = _validate_spatial_scale(spatial_scale)
        self.sampling_ratio = _validate_sampling_ratio(sampling_ratio)
        self.aligned = _validate_aligned(aligned)

    def build(
        self,
        features_shape: tuple[int | None, ...],
        boxes_shape: tuple[int | None, ...],
        box_indices_shape: tuple[int | None, ...] | None = None,
    ) -> None:
        # The batched layout compiles with XLA (its sample window has a static bound); the
        # flat layouts group boxes per image into a data-dependent shape and do not, so keep
        # Keras' `jit_compile="auto"` from trying.
        self.supports_jit = len(boxes_shape) == 3
        self.built = True

    @property
    def input_dtype(self) -> str:
        # Float inputs (features and boxes) are converted to this dtype by Keras; keep the
        # boxes at least float32 under mixed precision.
        dtype = self.compute_dtype
        return "float32" if dtype in ("float16", "bfloat16") else dtype

    def call(
        self, features: tf.Tensor, boxes: tf.Tensor, box_indices: tf.Tensor | None = None
    ) -> tf.Tensor:
        out = roi_align(
            features,
            boxes,
            box_indices=box_indices,
            output_size=self.output_size,
            spatial_scale=self.spatial_scale,
            sampling_ratio=self.sampling_ratio,
            aligned=self.aligned,
        )
        return tf.cast(out, self.compute_dtype)

    def compute_output_shape(
        self,
        features_shape: tuple[int | None, ...],
        boxes_shape: tuple[int | None, ...],
        box_indices_shape: tuple[int | None, ...] | None = None,
    ) -> tuple[int | None, ...]:
        out_h, out_w = self.output_size
        channels = features_shape[-1]
        if len(boxes_shape) == 3:
            return (boxes_shape[0], boxes_shape[1], out_h, out_w, channels)
        return (boxes_shape[0], out_h, out_w, channels)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "output_size": list(self.output_size),
                "spatial_scale": self.spatial_scale,
                "sampling_ratio": self.sampling_ratio,
                "aligned": self.aligned,
            }
        )
        return config
