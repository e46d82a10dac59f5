"""AVA throughput: the data pipeline (clips/s) and `evaluate-ava` with a full-size detector.

Measures, on an AVA-layout folder (by default the small reference dataset beside the
repository, `../shared/golden/ava_data/dataset`: JPEG frames of 340x256 and 640x272):

- `ava_dataset` clips/s in `train` mode (short side jitter 256-320, 224 crop, flip) and in
  `test` mode (short side 256, no crop), wall clock and per CPU-second of this process;
- keyframes/s of `evaluate_ava_detector` (PySlowFast's test loop + the frame-mAP evaluator)
  with the full-size SlowFast 32x2 R101_50_50 detector (random weights unless `--weights`)
  at the published test size 256, and the process's peak memory.

Run from the repository root:

    python benchmarks/bench_ava.py [--data-dir DIR] [--epochs 4] [--skip-model]
"""

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tensorflow as tf  # noqa: E402

from keras_slowfast.data import ava_dataset  # noqa: E402

_DEFAULT_DATA = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "golden", "ava_data",
    "dataset",
)  # fmt: skip


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pipeline(data_dir, mode, epochs, batch_size):
    kwargs = {"full_test_on_val": True} if mode == "test" else {"seed": 0}
    ds = ava_dataset(data_dir, mode, batch_size=batch_size, drop_remainder=False, **kwargs)
    for _ in ds.take(1):  # warm-up: tracing and the first decode
        pass
    clips = 0
    wall, cpu = time.perf_counter(), _cpu_seconds()
    for _ in range(epochs):
        for inputs, _, _ in ds:
            clips += int(inputs["clip"].shape[0])
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    shape = tuple(inputs["clip"].shape[1:])
    print(
        f"ava_dataset {mode:<5}: {clips} clips {shape} in {wall:6.2f} s -> "
        f"{clips / wall:7.2f} clips/s wall, {clips / cpu:7.2f} clips per CPU-second"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=_DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=4, help="passes over the dataset")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--weights", default=None, help="detector weights (default: random)")
    parser.add_argument("--skip-model", action="store_true", help="only the data pipeline")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.data_dir):
        parser.error(f"no AVA-layout folder at {args.data_dir!r}; pass --data-dir")

    print(f"TensorFlow {tf.__version__}, CPU cores: {os.cpu_count()}, data: {args.data_dir}")
    _pipeline(args.data_dir, "train", args.epochs, args.batch_size)
    _pipeline(args.data_dir, "test", args.epochs, args.batch_size)
    if args.skip_model:
        return

    import keras_slowfast
    from keras_slowfast.evaluation.ava_detector import evaluate_ava_detector

    model = keras_slowfast.SlowFastR101AVA(weights=args.weights)
    evaluate_ava_detector(  # warm-up: traces the model for both videos' frame sizes
        model, args.data_dir, full_test_on_val=True, progress=False, batch_size=1
    )
    start = time.perf_counter()
    result = evaluate_ava_detector(
        model, args.data_dir, full_test_on_val=True, progress=False, batch_size=1
    )
    elapsed = time.perf_counter() - start
    keyframes = len(set(zip(result.videos, result.seconds.tolist())))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"evaluate-ava, SlowFast 32x2 R101_50_50 full size, test size 256: {keyframes} "
        f"keyframes ({len(result.scores)} boxes) in {elapsed:.1f} s -> "
        f"{keyframes / elapsed:.3f} keyframes/s, {elapsed / keyframes:.2f} s per keyframe; "
        f"peak RSS {peak_gb:.2f} GB"
    )


if __name__ == "__main__":
    main()
