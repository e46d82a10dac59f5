"""Training-step throughput (clips/s) of the PySlowFast recipe on the current device.

One training step is forward + backward + `TorchSGD` update (momentum, Nesterov, L2 weight
decay without BatchNorm, the warm-up + cosine schedule), compiled as `model.fit` compiles
it (`tf.function`, no XLA). The first step (tracing) is timed separately; the rate is the
median over the timed steps. Inputs are random uint8 clips already in memory, so the data
pipeline is not measured (see `bench_data_pipeline.py`).

Models:

* `narrow`: SlowFast 8x8 R50 layout with `width_per_group=8`, 32 frames at 64x64 (the
  shape of the tests, a little larger);
* `r50`: the full SlowFast 8x8 R50 (32 frames, 224x224, 34.6M parameters with 400 classes).

Run from the repository root:

    python benchmarks/bench_training.py
    python benchmarks/bench_training.py --models r50 --batch 2 --steps 3
    python benchmarks/bench_training.py --mixed_precision mixed_bfloat16
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_slowfast  # noqa: E402
from keras_slowfast import training  # noqa: E402

MODELS = {
    "narrow": dict(width_per_group=8, crop=64),
    "r50": dict(width_per_group=64, crop=224),
}


def time_training(name, batch, steps, classes=400):
    """Returns `(first_step_seconds, clips_per_second, parameters)` for one model."""
    spec = MODELS[name]
    crop = spec["crop"]
    model = keras_slowfast.SlowFastR50(
        width_per_group=spec["width_per_group"],
        classes=classes,
        input_shape=(32, crop, crop, 3),
        train_crop_size=crop,
    )
    optimizer = training.create_optimizer(
        model, epochs=10, steps_per_epoch=100, global_batch_size=batch, warmup_epochs=1
    )
    # No XLA: Keras would otherwise turn it on by itself on a GPU ("auto").
    model.compile(optimizer, "sparse_categorical_crossentropy", jit_compile=False)
    rng = np.random.default_rng(0)
    clips = tf.constant(rng.integers(0, 256, (batch, 32, crop, crop, 3), dtype=np.uint8))
    labels = tf.constant(rng.integers(0, classes, batch), tf.int32)
    start = time.perf_counter()
    model.train_on_batch(clips, labels)
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(clips, labels)  # returns NumPy values: the step has finished
        times.append(time.perf_counter() - start)
    return first, batch / statistics.median(times), model.count_params()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=2, help="clips per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after the first")
    parser.add_argument(
        "--mixed_precision",
        default="float32",
        choices=["float32", "mixed_float16", "mixed_bfloat16"],
    )
    args = parser.parse_args()
    training.set_mixed_precision(args.mixed_precision)
    devices = [d.name for d in tf.config.list_logical_devices()]
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, devices {devices}")
    print(f"policy {args.mixed_precision}, batch {args.batch}, {args.steps} timed steps")
    for name in args.models:
        first, rate, params = time_training(name, args.batch, args.steps)
        print(
            f"{name:>6}: {params / 1e6:6.2f}M parameters, first step {first:6.1f}s, "
            f"{rate:7.2f} clips/s ({args.batch / rate:6.2f} s/step)",
            flush=True,
        )


if __name__ == "__main__":
    main()
