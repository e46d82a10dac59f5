"""RoIAlign cost against the backbone forward pass of the full-size AVA detector.

Builds the full-size SlowFast R50 AVA detector (random weights), runs one 32-frame clip of
256x336 (res5 map 16x21 at stride 16) with 50 boxes, and prints:

- the backbone forward time (clip -> res5 features of both pathways),
- the whole detector forward time,
- RoIAlign time for 50 boxes on each pathway's 16x21 map (2048 and 256 channels),
- RoIAlign's share of the detector forward.

Run from the repository root:

    python benchmarks/bench_ava_head.py [--batch 1] [--iters 3]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_slowfast  # noqa: E402
from benchmarks.bench_roi_align import make_boxes, time_roi_align  # noqa: E402


def _median_seconds(fn, iters, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--num-boxes", type=int, default=50)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args(argv)

    height, width, frames = 256, 336, 32
    model = keras_slowfast.SlowFastR50AVA(input_shape=(frames, height, width, 3))
    backbone = keras.Model(
        model.input["clip"],
        [
            model.get_layer("head_pathway0_tpool").input,
            model.get_layer("head_pathway1_tpool").input,
        ],
    )
    rng = np.random.default_rng(0)
    clip = tf.constant(rng.integers(0, 256, (args.batch, frames, height, width, 3)), tf.uint8)
    boxes_px = make_boxes(args.batch, args.num_boxes, height, width, "random", 0)
    boxes = tf.constant(boxes_px / np.array([width, height, width, height], np.float32))

    backbone_fn = tf.function(lambda x: backbone(x, training=False))
    detector_fn = tf.function(lambda x, b: model({"clip": x, "boxes": b}, training=False))
    t_backbone = _median_seconds(lambda: [t.numpy() for t in backbone_fn(clip)], args.iters)
    t_detector = _median_seconds(lambda: detector_fn(clip, boxes).numpy(), args.iters)
    slow, fast = (t.shape for t in backbone_fn(clip))
    roi_ms = 0.0
    print(
        f"TensorFlow {tf.__version__}, CPU threads: {os.cpu_count()}, batch {args.batch}, "
        f"clip {frames}x{height}x{width}, {args.num_boxes} boxes per clip"
    )
    for name, shape in (("slow", slow), ("fast", fast)):
        r = time_roi_align(
            batch=args.batch,
            num_boxes=args.num_boxes,
            height=shape[2],
            width=shape[3],
            channels=shape[4],
            aligned=True,
            iters=20,
            warmup=5,
        )
        roi_ms += r["ms"]
        print(
            f"RoIAlign {name:<5} map {shape[2]}x{shape[3]}x{shape[4]}: {r['ms']:8.2f} ms "
            f"({r['boxes_per_s']:.0f} boxes/s)"
        )
    print(f"backbone forward : {1e3 * t_backbone:10.1f} ms")
    print(f"detector forward : {1e3 * t_detector:10.1f} ms")
    print(
        f"RoIAlign (both pathways): {roi_ms:.2f} ms = {roi_ms / (1e3 * t_backbone):.2%} of the "
        f"backbone forward"
    )


if __name__ == "__main__":
    main()
