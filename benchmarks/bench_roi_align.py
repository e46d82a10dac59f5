"""Speed of RoIAlign at the size of the SlowFast AVA head.

The AVA head pools 7x7 RoIs out of stride-16 features: for a 256x336 clip the map is 16x21,
with 2048 channels on the slow pathway and 256 on the fast one (SlowFast R50). This script
times `keras_slowfast.models.roi_align.roi_align` (separable interpolation matrices, two
matrix products) and, for comparison, a direct four-corner gather implementation of the same
rules (`gather`, defined here) and TensorFlow's native `tf.image.crop_and_resize` followed
by 2x2 average pooling (`crop_and_resize`, a speed yardstick only: its sampling rules differ
from detectron2's).

Run from the repository root:

    python benchmarks/bench_roi_align.py
    python benchmarks/bench_roi_align.py --batch 8 --impl matmul --boxes full

`time_roi_align(...)` is importable for other benchmarks.
"""

import argparse
import os
import sys
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keras_slowfast.models.roi_align import roi_align  # noqa: E402

IMPLS = ("matmul", "gather", "crop_and_resize")
BOX_KINDS = ("random", "full")


def _axis_samples(lo, hi, size, num_bins, spatial_scale, sampling_ratio, aligned):
    """Per-sample corner indices and weights along one axis: `S + (num_bins, max_grid)`."""
    dtype = lo.dtype
    offset = 0.5 if aligned else 0.0
    start = lo * spatial_scale - offset
    length = hi * spatial_scale - offset - start
    if not aligned:
        length = tf.maximum(length, 1.0)
    bin_size = length / num_bins
    if sampling_ratio > 0:
        grid = tf.fill(tf.shape(bin_size), sampling_ratio)
        max_grid = sampling_ratio
    else:
        grid = tf.cast(tf.maximum(tf.math.ceil(bin_size), 0.0), tf.int32)
        max_grid = tf.maximum(tf.reduce_max(tf.concat([tf.reshape(grid, [-1]), [1]], 0)), 1)
    grid = grid[..., None, None]
    grid_f = tf.cast(tf.maximum(grid, 1), dtype)
    idx = tf.range(max_grid)
    pos = (
        start[..., None, None]
        + tf.cast(tf.range(num_bins), dtype)[:, None] * bin_size[..., None, None]
    ) + (tf.cast(idx, dtype) + 0.5) * bin_size[..., None, None] / grid_f
    size_f = tf.cast(size, dtype)
    inside = (pos >= -1.0) & (pos <= size_f)
    used = tf.cast(inside & (idx < grid), dtype) / grid_f
    pos = tf.where(inside, tf.maximum(pos, 0.0), 0.0)
    low = tf.floor(pos)
    edge = low >= size_f - 1.0
    low = tf.where(edge, size_f - 1.0, low)
    frac = tf.where(edge, 0.0, pos - low)
    high = tf.where(edge, low, low + 1.0)
    return (
        tf.cast(low, tf.int32),
        tf.cast(high, tf.int32),
        (1.0 - frac) * used,
        frac * used,
    )


def roi_align_gather(
    features, boxes, output_size=7, spatial_scale=1 / 16, sampling_ratio=0, aligned=True
):
    """Same rules as `roi_align`, by gathering the four corners of every sample.

    Memory grows as `boxes * out_h * grid_h * out_w * grid_w * C * 4`.
    """
    shape = tf.shape(features)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    num = tf.shape(boxes)[1]
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    ylo, yhi, wylo, wyhi = _axis_samples(
        y1, y2, height, output_size, spatial_scale, sampling_ratio, aligned
    )
    xlo, xhi, wxlo, wxhi = _axis_samples(
        x1, x2, width, output_size, spatial_scale, sampling_ratio, aligned
    )
    flat = tf.reshape(features, tf.stack([-1, channels]))
    base = (tf.range(batch) * height * width)[:, None, None, None, None, None]

    def corner(yi, wy, xi, wx):
        # Index/weight grids (B, M, out_h, grid_h, out_w, grid_w).
        index = base + yi[:, :, :, :, None, None] * width + xi[:, :, None, None]
        weight = wy[:, :, :, :, None, None] * wx[:, :, None, None]
        return tf.gather(flat, index) * weight[..., None]

    total = (
        corner(ylo, wylo, xlo, wxlo)
        + corner(ylo, wylo, xhi, wxhi)
        + corner(yhi, wyhi, xlo, wxlo)
        + corner(yhi, wyhi, xhi, wxhi)
    )
    out = tf.reduce_sum(total, axis=[3, 5])
    return tf.reshape(out, tf.stack([batch, num, output_size, output_size, channels]))


def roi_align_crop_and_resize(features, boxes, output_size=7, spatial_scale=1 / 16, **_):
    """TensorFlow's native bilinear crop (2x2 samples per bin); not detectron2's rules."""
    shape = tf.shape(features)
    batch, height, width = shape[0], shape[1], shape[2]
    num = tf.shape(boxes)[1]
    x1, y1, x2, y2 = tf.unstack(tf.reshape(boxes, [-1, 4]) * spatial_scale, axis=-1)
    h = tf.cast(height - 1, boxes.dtype)
    w = tf.cast(width - 1, boxes.dtype)
    norm = tf.stack([y1 / h, x1 / w, y2 / h, x2 / w], axis=1)
    index = tf.repeat(tf.range(batch), num)
    crops = tf.image.crop_and_resize(features, norm, index, [2 * output_size, 2 * output_size])
    pooled = tf.nn.avg_pool2d(crops, 2, 2, "VALID")
    return tf.reshape(pooled, tf.concat([[batch, num], tf.shape(pooled)[1:]], 0))


def _impl_fn(impl):
    if impl == "matmul":
        return roi_align
    if impl == "gather":
        return roi_align_gather
    if impl == "crop_and_resize":
        return roi_align_crop_and_resize
    raise ValueError(f"`impl` must be one of {IMPLS}. Received: impl={impl!r}")


def make_boxes(batch, num_boxes, image_height, image_width, kind="random", seed=0):
    """`(batch, num_boxes, 4)` float32 boxes in input pixels.

    `random`: person-like boxes (10-60% of the width, 30-100% of the height) placed inside
    the image. `full`: every box is the whole image, the largest adaptive sampling grid.
    """
    if kind == "full":
        box = np.array([0, 0, image_width, image_height], np.float32)
        return np.tile(box, (batch, num_boxes, 1))
    if kind != "random":
        raise ValueError(f"`kind` must be one of {BOX_KINDS}. Received: kind={kind!r}")
    rng = np.random.default_rng(seed)
    bw = rng.uniform(0.1, 0.6, (batch, num_boxes)) * image_width
    bh = rng.uniform(0.3, 1.0, (batch, num_boxes)) * image_height
    x1 = rng.uniform(0, 1, (batch, num_boxes)) * (image_width - bw)
    y1 = rng.uniform(0, 1, (batch, num_boxes)) * (image_height - bh)
    return np.stack([x1, y1, x1 + bw, y1 + bh], -1).astype(np.float32)


def time_roi_align(
    batch=1,
    num_boxes=50,
    height=16,
    width=21,
    channels=2048,
    output_size=7,
    spatial_scale=1 / 16,
    sampling_ratio=0,
    aligned=True,
    impl="matmul",
    boxes="random",
    iters=20,
    warmup=5,
    seed=0,
):
    """Times one RoIAlign call inside `tf.function` on the current device.

    Args:
        batch, num_boxes, height, width, channels: problem size; boxes are per image.
        output_size, spatial_scale, sampling_ratio, aligned: RoIAlign settings.
        impl: one of `IMPLS`.
        boxes: one of `BOX_KINDS` (see `make_boxes`), or a `(batch, num_boxes, 4)` array.
        iters: timed calls; warmup: untimed calls first (tracing included).
        seed: for the features and the random boxes.

    Returns:
        A dict with `ms` (median milliseconds per call), `ms_min`, `boxes_per_s` (from the
        median) and the settings.
    """
    fn = _impl_fn(impl)
    rng = np.random.default_rng(seed)
    features = tf.constant(rng.normal(size=(batch, height, width, channels)).astype(np.float32))
    if isinstance(boxes, str):
        kind = boxes
        boxes = make_boxes(
            batch, num_boxes, height / spatial_scale, width / spatial_scale, boxes, seed
        )
    else:
        kind = "given"
    boxes = tf.constant(boxes, tf.float32)
    call = tf.function(
        lambda f, b: fn(
            f,
            b,
            output_size=output_size,
            spatial_scale=spatial_scale,
            sampling_ratio=sampling_ratio,
            aligned=aligned,
        )
    )
    for _ in range(warmup):
        call(features, boxes).numpy()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        call(features, boxes).numpy()
        times.append(time.perf_counter() - start)
    ms = 1e3 * float(np.median(times))
    return {
        "impl": impl,
        "boxes": kind,
        "batch": batch,
        "num_boxes": num_boxes,
        "feature_map": (height, width, channels),
        "ms": ms,
        "ms_min": 1e3 * float(np.min(times)),
        "boxes_per_s": batch * num_boxes / (ms / 1e3),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--channels", type=int, nargs="+", default=[2048, 256])
    parser.add_argument("--num-boxes", type=int, default=50)
    parser.add_argument("--height", type=int, default=16)
    parser.add_argument("--width", type=int, default=21)
    parser.add_argument("--impl", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--boxes", nargs="+", default=list(BOX_KINDS), choices=BOX_KINDS)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)

    print(
        f"TensorFlow {tf.__version__}, devices: "
        f"{[d.device_type for d in tf.config.list_logical_devices()]}, "
        f"intra-op threads: {tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}"
    )
    header = f"{'impl':<16}{'boxes':<8}{'batch':>6}{'C':>6}{'ms/call':>10}{'min':>9}{'boxes/s':>11}"
    print(header)
    # The first timings of a process are slower (thread pools, allocator): spend them here.
    time_roi_align(
        batch=max(args.batch),
        num_boxes=args.num_boxes,
        height=args.height,
        width=args.width,
        channels=max(args.channels),
        impl="matmul",
        iters=1,
        warmup=args.warmup,
    )
    for batch in args.batch:
        for channels in args.channels:
            for kind in args.boxes:
                for impl in args.impl:
                    r = time_roi_align(
                        batch=batch,
                        num_boxes=args.num_boxes,
                        height=args.height,
                        width=args.width,
                        channels=channels,
                        impl=impl,
                        boxes=kind,
                        iters=args.iters,
                        warmup=args.warmup,
                    )
                    print(
                        f"{impl:<16}{kind:<8}{batch:>6}{channels:>6}{r['ms']:>10.2f}"
                        f"{r['ms_min']:>9.2f}{r['boxes_per_s']:>11.0f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
