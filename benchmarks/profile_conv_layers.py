"""Where the compiled forward's time goes: every convolution of a model timed on its own.

Builds a full-size model (random weights), counts each layer's multiply-accumulates with
`keras_slowfast.model_flops`, times every Conv3D alone (a `tf.function` over a random input
of the layer's real shape, median of a few calls) and prints, per group of layers (slow
pathway, fast pathway, lateral fusions; by kernel shape), the share of MACs, the share of
the summed convolution time and the GFLOP/s reached, next to a same-run float32 matmul peak.
The sum of the convolutions' times against the whole forward's time shows what the
non-convolution ops (BatchNorm, ReLU, padding, pooling, concatenation) add.

Run from the repository root:

    python benchmarks/profile_conv_layers.py [--model slowfast_8x8_r50] [--size 224]
"""

import argparse
import collections
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_slowfast import (
    hub,  # noqa: E402
    model_flops,  # noqa: E402
)


def _median(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _matmul_gflops(repeats):
    a = tf.random.normal((4096, 4096))
    f = tf.function(lambda: tf.matmul(a, a))
    return 2 * 4096**3 / _median(lambda: f().numpy(), repeats) / 1e9


def _group(layer):
    name = layer.name
    pathway = "fuse" if "fuse" in name else ("slow" if "pathway0" in name else "fast")
    kt, kh, kw = layer.kernel_size
    return f"{pathway:<4} {kt}x{kh}x{kw}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="slowfast_8x8_r50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    frames = hub.build(args.model, None).input.shape[1]
    shape = (frames, args.size, args.size, 3)
    # A static input shape gives every layer's input a static shape.
    model = hub.build(args.model, None, input_shape=shape)
    count = model_flops(model, shape)
    peak = _matmul_gflops(args.repeats)
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (1, *shape)), tf.uint8)
    forward = tf.function(lambda c: model(c, training=False), autograph=False)
    total = _median(lambda: forward(x).numpy(), args.repeats)

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv3D)]
    shapes = [(1, *layer.input.shape[1:]) for layer in convs]
    per_group = collections.defaultdict(lambda: [0.0, 0.0, 0])
    conv_time = 0.0
    for layer, in_shape in zip(convs, shapes):
        inputs = tf.random.normal(in_shape)
        f = tf.function(lambda t, layer=layer: layer(t), autograph=False)
        seconds = _median(lambda f=f, inputs=inputs: f(inputs).numpy(), args.repeats)
        g = per_group[_group(layer)]
        g[0] += count.per_layer.get(layer.name, 0)
        g[1] += seconds
        g[2] += 1
        conv_time += seconds
    macs = sum(g[0] for g in per_group.values())
    print(
        f"{args.model} at {shape}: forward {total:.3f} s for {count.gmacs:.2f} GMAC "
        f"({2 * count.macs / total / 1e9:.1f} GFLOP/s = {2 * count.macs / total / 1e9 / peak:.0%}"
        f" of the same-run fp32 matmul peak {peak:.0f} GFLOP/s); the {len(convs)} convolutions "
        f"alone sum to {conv_time:.3f} s"
    )
    print(f"{'group':<14} {'layers':>6} {'MAC share':>10} {'time share':>11} {'GFLOP/s':>8} "
          f"{'of peak':>8}")  # fmt: skip
    for name, (m, seconds, n) in sorted(per_group.items(), key=lambda kv: -kv[1][1]):
        gflops = 2 * m / seconds / 1e9 if seconds else 0.0
        print(
            f"{name:<14} {n:>6} {m / macs:>10.1%} {seconds / conv_time:>11.1%} {gflops:>8.1f} "
            f"{gflops / peak:>8.0%}"
        )


if __name__ == "__main__":
    main()
