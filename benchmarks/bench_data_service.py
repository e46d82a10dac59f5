"""Input throughput of the TFRecord training pipeline: in-process vs the tf.data service.

Writes JPEG-frame TFRecords of the sample videos (repeated), then times the training
pipeline (`frame_tfrecord_dataset`, mode train: clip sampling, JPEG decoding, scale
jitter, crop, flip, batching) in these configurations, each in a fresh client process:

* `local`: in the client process, all cores;
* `local-1core`: pinned to one core with a tf.data threadpool of size 1 (the per-core
  clip rate a data-service CPU worker achieves);
* `service-1w`, `service-2w`: through a dispatcher and 1 or 2 worker processes started
  with `keras-slowfast data-service` on 127.0.0.1 (distributed_epoch mode).

For each: clips/s (wall), and clips per CPU-second consumed by the client and the worker
processes together (from /proc), a per-core figure that stays meaningful when the
workers and the client share a small machine.

Usage:

    python benchmarks/bench_data_service.py                 # 32x224 from 256-320 jitter
    python benchmarks/bench_data_service.py --narrow        # 8x112 from 128-160 jitter
"""

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _default_videos():
    candidates = []
    golden = os.environ.get("KERAS_SLOWFAST_GOLDEN")
    if golden:
        candidates.append(os.path.join(os.path.dirname(os.path.abspath(golden)), "videos"))
    candidates.append(os.path.join(REPO, "..", "shared", "videos"))
    for c in candidates:
        if os.path.isdir(c):
            return os.path.normpath(c)
    return None


def _proc_cpu_s(pid):
    """User + system CPU seconds of process `pid` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _pipeline_kwargs(args):
    if args.narrow:
        return dict(num_frames=8, sampling_rate=8, crop_size=112, jitter_scales=(128, 160))
    return dict(num_frames=32, sampling_rate=2, crop_size=224, jitter_scales=(256, 320))


def _child(args):
    if args.one_core:
        os.sched_setaffinity(0, [sorted(os.sched_getaffinity(0))[0]])
    import tensorflow as tf

    if args.one_core:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    from keras_slowfast import data
    from keras_slowfast.training import data_service

    ds = data.frame_tfrecord_dataset(
        args.tfrecords.split(","),
        "train",
        batch_size=args.batch_size,
        seed=0,
        **_pipeline_kwargs(args),
    ).repeat()
    if args.one_core:
        options = tf.data.Options()
        options.threading.private_threadpool_size = 1
        options.threading.max_intra_op_parallelism = 1
        ds = ds.with_options(options)
    if args.target:
        ds = data_service.distribute_dataset(ds, args.target, "distributed_epoch")
    worker_pids = [int(p) for p in args.worker_pids.split(",") if p]
    it = iter(ds)
    for _ in range(args.warmup):
        next(it)
    batches = max(1, args.clips // args.batch_size)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    workers0 = [_proc_cpu_s(p) for p in worker_pids]
    start = time.perf_counter()
    for _ in range(batches):
        clips, _labels = next(it)
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    workers1 = [_proc_cpu_s(p) for p in worker_pids]
    client_cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    worker_cpu = sum(b - a for a, b in zip(workers0, workers1))
    n = batches * args.batch_size
    print(
        "RESULT "
        + json.dumps(
            dict(
                clips=n,
                shape=list(clips.shape),
                wall_s=wall,
                clips_per_s=n / wall,
                client_cpu_s=client_cpu,
                worker_cpu_s=worker_cpu,
                clips_per_cpu_s=n / (client_cpu + worker_cpu),
            )
        ),
        flush=True,
    )


def _start_server(args_list, log):
    return subprocess.Popen(
        [sys.executable, "-m", "keras_slowfast.cli", "data-service", *args_list],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
        cwd=REPO,
        start_new_session=True,
    )


def _wait_address(proc, log_path, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path, errors="replace") as f:
            for line in f:
                if " listening on " in line:
                    return line.split()[-1]
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"server failed to start, see {log_path}")


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def _client(args, tfrecords, target="", worker_pids=(), one_core=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", "--tfrecords", tfrecords]
    cmd += ["--clips", str(args.clips), "--batch-size", str(args.batch_size)]
    cmd += ["--warmup", str(args.warmup), "--target", target]
    cmd += ["--worker-pids", ",".join(str(p) for p in worker_pids)]
    if one_core:
        cmd.append("--one-core")
    if args.narrow:
        cmd.append("--narrow")
    out = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=1800)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(out.stderr[-3000:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=_default_videos(), help="folder of .mp4 files")
    parser.add_argument("--repeat", type=int, default=4, help="times the video list is repeated")
    parser.add_argument("--short-side", type=int, default=None, help="TFRecord frame size")
    parser.add_argument("--narrow", action="store_true", help="8x112 clips (default 32x224)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clips", type=int, default=48, help="clips timed per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="batches not timed")
    parser.add_argument("--configs", default="local,local-1core,service-1w,service-2w")
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tfrecords", default="", help=argparse.SUPPRESS)
    parser.add_argument("--target", default="", help=argparse.SUPPRESS)
    parser.add_argument("--worker-pids", default="", help=argparse.SUPPRESS)
    parser.add_argument("--one-core", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        return _child(args)
    if not args.videos:
        parser.error("no sample videos found: give --videos")
    short_side = args.short_side or (160 if args.narrow else 320)
    videos = sorted(f for f in os.listdir(args.videos) if f.endswith(".mp4"))
    with tempfile.TemporaryDirectory() as tmp:
        listing = os.path.join(tmp, "list.csv")
        with open(listing, "w") as f:
            for _ in range(args.repeat):
                for k, v in enumerate(videos):
                    f.write(f"{os.path.join(args.videos, v)} {k}\n")
        writer = [sys.executable, "-m", "keras_slowfast.data.write_tfrecords_cli", listing]
        writer += [os.path.join(tmp, "rec", "train"), "--num-shards", "8"]
        writer += ["--short-side", str(short_side), "--workers", "2"]
        subprocess.run(writer, env=_env(), cwd=REPO, check=True, capture_output=True)
        tfrecords = ",".join(
            sorted(
                os.path.join(tmp, "rec", n)
                for n in os.listdir(os.path.join(tmp, "rec"))
                if n.endswith(".tfrecord")
            )
        )
        kw = _pipeline_kwargs(args)
        print(
            f"TFRecord training pipeline: {kw['num_frames']}x{kw['crop_size']} clips, "
            f"jitter {kw['jitter_scales']}, frames stored at short side {short_side}, "
            f"batch {args.batch_size}, {len(videos) * args.repeat} videos; "
            f"{len(os.sched_getaffinity(0))} cores; {args.clips} clips timed",
            flush=True,
        )
        print(
            f"{'config':<14}{'clips/s':>10}{'client CPU-s':>14}{'worker CPU-s':>14}"
            f"{'clips/CPU-s':>13}"
        )
        for config in args.configs.split(","):
            procs = []
            try:
                if config.startswith("service-"):
                    num_workers = int(config.split("-")[1].rstrip("w"))
                    log = os.path.join(tmp, "dispatcher.log")
                    with open(log, "w") as f:
                        procs.append(_start_server(["dispatcher"], f))
                    address = _wait_address(procs[0], log)
                    logs = []
                    for k in range(num_workers):
                        logs.append(os.path.join(tmp, f"worker{k}.log"))
                        with open(logs[-1], "w") as f:
                            procs.append(_start_server(["worker", "--dispatcher", address], f))
                    for p, lg in zip(procs[1:], logs):
                        _wait_address(p, lg)
                    r = _client(args, tfrecords, "grpc://" + address, [p.pid for p in procs[1:]])
                else:
                    r = _client(args, tfrecords, one_core=config == "local-1core")
            finally:
                _stop(procs)
            print(
                f"{config:<14}{r['clips_per_s']:>10.2f}{r['client_cpu_s']:>14.1f}"
                f"{r['worker_cpu_s']:>14.1f}{r['clips_per_cpu_s']:>13.2f}",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
