"""Inference speed and peak memory of a full-size SlowFast model, per way of calling it.

For each clip configuration (`BATCHxCROP`, e.g. `1x224`) and each path, a fresh process
builds the model (random weights: the speed does not depend on them), calls it once (the
first call, timed on its own: tracing and oneDNN set-up), then `--repeats` more times, and
reports the median seconds per call, clips/s, GFLOP/s, the ratio of that rate to a float32
`tf.matmul` peak measured in the same process (in bfloat16 for `--dtype mixed_bfloat16`),
and the process's peak resident memory.

Paths:

* `eager`: `model(x)` on a NumPy uint8 clip, what a notebook types first;
* `predict_on_batch`: `model.predict_on_batch(x)`;
* `tf_function`: `tf.function(lambda x: model(x, training=False))` (no XLA);
* `keras_functional_eager` (opt-in): `model(x)` on a plain `keras.Model` over the same
  layers, i.e. Keras' own functional run, which holds every activation until the call
  returns. It is the behaviour before :class:`keras_slowfast.models.LeanFunctional`; a
  worker whose memory passes `--max-rss-gib` is stopped and reported as such.

`--dtype` builds the model with that dtype policy (`mixed_bfloat16`: the backbone computes in
bfloat16, the head in float32).

Multiply-adds are counted from the built model: convolutions, dense layers and the
non-local matmuls: 65.71 GMAC for SlowFast 8x8 R50 at 256x256, the published figure, and
50.31 at 224x224, where 50.58 is published. One multiply-add is two FLOPs.

Run from the repository root:

    python benchmarks/bench_inference.py
    python benchmarks/bench_inference.py --model slowfast_nln_16x8_r101 --configs 2x256
    python benchmarks/bench_inference.py --paths eager keras_functional_eager --configs 2x256
    python benchmarks/bench_inference.py --dtype mixed_bfloat16 --paths tf_function
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

MODELS = {
    "slowfast_8x8_r50": dict(builder="SlowFastR50", kwargs=dict(variant="8x8"), frames=32),
    "slowfast_nln_16x8_r101": dict(
        builder="SlowFastR101", kwargs=dict(variant="16x8", nonlocal_blocks=True), frames=64
    ),
}

PATHS = {
    "eager": "Keras eager model(x)",
    "predict_on_batch": "model.predict_on_batch(x)",
    "tf_function": "compiled tf.function forward",
    "keras_functional_eager": "eager on Keras' own Functional (unfixed)",
}

DEFAULT_PATHS = ["eager", "predict_on_batch", "tf_function"]

# Backbone dtype policy -> the dtype its convolutions compute in (and the matmul peak's).
COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "bfloat16": "bfloat16"}

# Exit status of a worker stopped by its memory watchdog.
OVER_MEMORY = 3


def count_macs(model):
    """Multiply-adds of one clip: Conv3D, Dense and non-local attention matmuls."""
    import keras
    import numpy as np

    from keras_slowfast.models.layers import NonLocalAttention

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv3D):
            kernel = layer.kernel.shape
            total += int(np.prod(layer.output.shape[1:])) * int(np.prod(kernel[:-1]))
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.input.shape[1:])) * layer.units
        elif isinstance(layer, NonLocalAttention):
            theta, phi, _ = layer.input
            positions = int(np.prod(theta.shape[1:4]))
            pooled = int(np.prod(phi.shape[1:4]))
            total += 2 * positions * pooled * theta.shape[-1]
    return total


def matmul_gflops(n=4096, repeats=5, dtype="float32"):
    """GFLOP/s of an `n x n` matmul in `dtype`, median of `repeats` after one warm-up."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def _peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _watch_memory(limit_gib):
    """Stops this process when its resident memory passes `limit_gib`."""
    page = os.sysconf("SC_PAGE_SIZE")

    def watch():
        while True:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page / 2**30
            if rss > limit_gib:
                print(json.dumps({"over_memory_gib": round(rss, 2)}), flush=True)
                os._exit(OVER_MEMORY)
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()


def worker(args):
    """Runs one path in this process and prints its figures as one JSON line."""
    _watch_memory(args.max_rss_gib)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, REPO)
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_slowfast

    spec = MODELS[args.model]
    batch, crop = args.worker_config
    frames = spec["frames"]
    model = getattr(keras_slowfast, spec["builder"])(
        input_shape=(frames, crop, crop, 3), dtype=args.dtype, **spec["kwargs"]
    )
    macs = count_macs(model)
    clip = np.random.default_rng(0).integers(0, 256, (batch, frames, crop, crop, 3), np.uint8)
    path = args.worker_path
    if path == "keras_functional_eager":
        model = keras.Model(model.input, model.output)
    if path in ("eager", "keras_functional_eager"):

        def call():
            return model(clip)

    elif path == "predict_on_batch":

        def call():
            return model.predict_on_batch(clip)

    else:
        forward = tf.function(
            lambda x: model(x, training=False), reduce_retracing=True, jit_compile=False
        )
        clip_tensor = tf.constant(clip)

        def call():
            return forward(clip_tensor)

    rss_built = _peak_rss_gib()
    start = time.perf_counter()
    np.asarray(call())
    first = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        np.asarray(call())
        times.append(time.perf_counter() - start)
    peak = _peak_rss_gib()
    result = dict(
        first_s=first,
        times_s=times,
        median_s=statistics.median(times),
        macs=macs,
        peak_rss_gib=peak,
        built_rss_gib=rss_built,
        matmul_gflops=matmul_gflops(dtype=COMPUTE_DTYPES[args.dtype]),
    )
    print(json.dumps(result), flush=True)


def run_worker(args, path, batch, crop):
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--model",
        args.model,
        "--repeats",
        str(args.repeats),
        "--dtype",
        args.dtype,
        "--max-rss-gib",
        str(args.max_rss_gib),
        "--worker-path",
        path,
        "--worker-config",
        str(batch),
        str(crop),
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode == OVER_MEMORY:
        return {"error": f"stopped above {args.max_rss_gib} GiB"}
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def parse_config(text):
    try:
        batch, crop = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a configuration is BATCHxCROP, e.g. 2x256. Received: configs={text!r}"
        ) from None
    if batch < 1 or crop < 32:
        raise argparse.ArgumentTypeError(
            f"BATCH must be >= 1 and CROP >= 32. Received: configs={text!r}"
        )
    return batch, crop


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="slowfast_8x8_r50", choices=list(MODELS))
    parser.add_argument(
        "--configs",
        nargs="+",
        type=parse_config,
        default=[(1, 224), (2, 256)],
        help="clip batches as BATCHxCROP (default: 1x224 2x256)",
    )
    parser.add_argument("--paths", nargs="+", default=DEFAULT_PATHS, choices=list(PATHS))
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the first")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=list(COMPUTE_DTYPES),
        help="the builders' dtype policy; the matmul peak is measured in its compute dtype",
    )
    parser.add_argument(
        "--max-rss-gib", type=float, default=16.0, help="stop a worker above this memory"
    )
    parser.add_argument("--worker-path", choices=list(PATHS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-config", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1. Received: repeats={args.repeats}")
    if args.worker_path:
        worker(args)
        return

    print(
        f"model: {args.model}, dtype policy {args.dtype}; each path in a fresh process; "
        f"{args.repeats} timed calls"
    )
    header = (
        "| clips | path | first call s | s/call (median) | clips/s | GMAC/clip | GFLOP/s "
        "| matmul GFLOP/s | % of matmul | peak RSS GiB |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    results = {}
    for batch, crop in args.configs:
        for path in args.paths:
            r = run_worker(args, path, batch, crop)
            results[(batch, crop, path)] = r
            label = f"{batch}x{crop}"
            if "error" in r:
                print(f"| {label} | {PATHS[path]} | {r['error']} |" + " |" * 7, flush=True)
                continue
            rate = batch / r["median_s"]
            gflops = 2 * r["macs"] * rate / 1e9
            print(
                f"| {label} | {PATHS[path]} | {r['first_s']:.2f} | {r['median_s']:.3f} "
                f"| {rate:.2f} | {r['macs'] / 1e9:.2f} | {gflops:.1f} "
                f"| {r['matmul_gflops']:.1f} | {100 * gflops / r['matmul_gflops']:.0f}% "
                f"| {r['peak_rss_gib']:.2f} |",
                flush=True,
            )
    for batch, crop in args.configs:
        base = results.get((batch, crop, "predict_on_batch"))
        if not base or "error" in base:
            continue
        for path in args.paths:
            r = results[(batch, crop, path)]
            if path == "predict_on_batch" or "error" in r:
                continue
            print(
                f"{batch}x{crop} {path} / predict_on_batch: time "
                f"{r['median_s'] / base['median_s']:.2f}x, first call "
                f"{r['first_s'] / base['first_s']:.2f}x, peak RSS "
                f"{r['peak_rss_gib'] / base['peak_rss_gib']:.2f}x"
            )


if __name__ == "__main__":
    main()
