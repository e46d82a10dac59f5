"""Throughput of the Kinetics data pipelines per CPU core.

Measures train clips/s and test views/s of the PyAV video pipeline
(`kinetics_dataset`) and of the JPEG-frame TFRecord pipeline
(`frame_tfrecord_dataset`) on the sample videos repeated. Each configuration
runs in a fresh process pinned to `k` cores (before TensorFlow starts), and
prints:

* wall throughput and wall throughput divided by `k`;
* throughput per CPU-second actually consumed by the process, a per-core
  figure that stays meaningful on a machine shared with other work.

Reference (PySlowFast, same videos, one core): 1.75 train clips/s and 1.94
test views/s; the targets are 4x (7.0) and 10x (19.4).

Usage:

    python benchmarks/bench_data_pipeline.py --cores 1,2 --repeat 8
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

PYSLOWFAST_TRAIN_CLIPS_PER_S = 1.75
PYSLOWFAST_TEST_VIEWS_PER_S = 1.94


def _default_videos():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = []
    golden = os.environ.get("KERAS_SLOWFAST_GOLDEN")
    if golden:
        candidates.append(os.path.join(os.path.dirname(os.path.abspath(golden)), "videos"))
    candidates.append(os.path.join(here, "..", "..", "shared", "videos"))
    for c in candidates:
        if os.path.isdir(c):
            return os.path.normpath(c)
    return None


def _child(args):
    cores = list(range(args.cores))
    available = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, [available[i % len(available)] for i in cores])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(args.cores)
    tf.config.threading.set_intra_op_parallelism_threads(args.cores)
    from keras_slowfast import data

    videos = sorted(
        os.path.join(args.videos, f) for f in os.listdir(args.videos) if f.endswith(".mp4")
    )
    entries = [(v, i) for i, v in enumerate(videos)] * args.repeat
    common = dict(
        num_frames=args.num_frames,
        sampling_rate=args.sampling_rate,
        batch_size=args.batch_size,
        seed=0,
        num_parallel_calls=args.cores,
        deterministic=False,
    )
    if args.pipeline == "video":
        ds = data.kinetics_dataset(entries, args.mode, **common)
    else:
        ds = data.frame_tfrecord_dataset(args.tfrecords, args.mode, **common)
    options = tf.data.Options()
    options.threading.private_threadpool_size = args.cores
    options.autotune.cpu_budget = args.cores
    ds = ds.with_options(options)

    warmup = args.warmup
    count = 0
    start = None
    cpu_start = None
    for _epoch in range(1000):
        for batch in ds:
            n = int(batch[0].shape[0])
            if warmup > 0:
                warmup -= 1
                continue
            if start is None:
                start = time.perf_counter()
                cpu_start = time.process_time()
            count += n
            if count >= args.items:
                break
        if count >= args.items:
            break
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    print(
        json.dumps(
            {
                "items": count,
                "wall_s": wall,
                "cpu_s": cpu,
                "per_s": count / wall,
                "per_cpu_s": count / cpu,
            }
        )
    )


def _run(args, pipeline, mode, cores, tfrecords):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--_child",
        "--pipeline",
        pipeline,
        "--mode",
        mode,
        "--cores",
        str(cores),
        "--videos",
        args.videos,
        "--repeat",
        str(args.repeat),
        "--num-frames",
        str(args.num_frames),
        "--sampling-rate",
        str(args.sampling_rate),
        "--batch-size",
        str(args.batch_size if mode == "train" else 30),
        "--items",
        str(args.train_clips if mode == "train" else args.test_views),
        "--warmup",
        str(args.warmup),
        "--tfrecords",
        tfrecords or "",
    ]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=_default_videos(), help="folder of .mp4 files")
    parser.add_argument("--repeat", type=int, default=8, help="times the video list is repeated")
    parser.add_argument("--cores", default=None, help="comma-separated core counts (default 1,N)")
    parser.add_argument("--pipelines", default="video,tfrecord")
    parser.add_argument("--modes", default="train,test")
    parser.add_argument("--num-frames", type=int, default=32)
    parser.add_argument("--sampling-rate", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-clips", type=int, default=96)
    parser.add_argument("--test-views", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=1, help="batches not timed")
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline", default="video", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="train", help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--tfrecords", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        args.cores = int(args.cores)
        return _child(args)
    if not args.videos:
        parser.error("sample videos not found; pass --videos")
    ncpu = len(os.sched_getaffinity(0))
    cores = [int(c) for c in args.cores.split(",")] if args.cores else sorted({1, ncpu})
    pipelines = args.pipelines.split(",")
    modes = args.modes.split(",")
    print(
        f"videos: {args.videos} x{args.repeat}; clips of {args.num_frames} frames at rate "
        f"{args.sampling_rate}; test = 10 temporal views x 3 crops; machine cores: {ncpu}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tfrecords = None
        if "tfrecord" in pipelines:
            from keras_slowfast import data

            videos = sorted(
                os.path.join(args.videos, f) for f in os.listdir(args.videos) if f.endswith(".mp4")
            )
            entries = [(v, i) for i, v in enumerate(videos)] * args.repeat
            shards = data.write_frame_tfrecords(
                entries, os.path.join(tmp, "bench"), num_shards=4, num_workers=ncpu
            )
            tfrecords = ",".join(shards)
        for pipeline in pipelines:
            for mode in modes:
                for k in cores:
                    pattern = (
                        tfrecords.split(",")[0].replace("-00000-of-", "-*-of-")
                        if tfrecords
                        else None
                    )
                    r = _run(args, pipeline, mode, k, pattern)
                    unit = "clips" if mode == "train" else "views"
                    ref = (
                        PYSLOWFAST_TRAIN_CLIPS_PER_S
                        if mode == "train"
                        else PYSLOWFAST_TEST_VIEWS_PER_S
                    )
                    per_core = r["per_s"] / k
                    print(
                        f"{pipeline:8s} {mode:5s} cores={k}: {r['per_s']:7.2f} {unit}/s, "
                        f"{per_core:7.2f} {unit}/s/core (wall), "
                        f"{r['per_cpu_s']:7.2f} {unit}/CPU-s; "
                        f"x{per_core / ref:.1f} / x{r['per_cpu_s'] / ref:.1f} PySlowFast "
                        f"({r['items']} {unit} in {r['wall_s']:.1f} s)",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
