"""Training steps per second of the narrow SlowFast: one process vs two workers on 127.0.0.1.

Each configuration runs in fresh processes: one process (default strategy, per-replica
batch `B`), and two worker processes under `MultiWorkerMirroredStrategy` (TF_CONFIG on
127.0.0.1, ring all-reduce over gRPC, synchronized BatchNorm; per-replica batch `B`,
global batch `2B`). Every process runs the training step of
`keras_slowfast.training.DistributedTrainer` on clips held in memory (no decoding: the
figure is compute plus the all-reduce), with `--threads` TensorFlow threads. The first
steps (tracing) are reported apart; the table gives the median of the timed steps.

On a machine with N cores, two workers with one thread each use at most 2 cores; compare
them with the single process given the same number of threads.

    python benchmarks/bench_multi_worker.py --steps 6 --single_threads 1,2 --compare_unsynced

`--compare_unsynced` adds two workers without synchronized BatchNorm, to separate the
cost of its all-reduces (several per BatchNorm layer and step, about 110 layers) from that of
the gradients'.

Prints one JSON line per run and a table.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def _worker(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    from keras_slowfast import hub, training

    multi = bool(os.environ.get("TF_CONFIG"))
    strategy = training.get_strategy(
        "multi_worker" if multi else "default", **({"communication": "ring"} if multi else {})
    )
    replicas = strategy.num_replicas_in_sync
    global_batch = args.batch_per_replica * replicas
    with strategy.scope():
        model = hub.build(
            "slowfast_8x8_r50",
            width_per_group=args.width_per_group,
            classes=args.classes,
            num_frames=args.frames,
            input_shape=(args.frames, args.crop, args.crop, 3),
            train_crop_size=args.crop,
            dropout_rate=0.0,
            sync_bn=multi and args.sync_bn,
        )
        optimizer = training.create_optimizer(
            model,
            epochs=1,
            steps_per_epoch=args.warmup + args.steps,
            global_batch_size=global_batch,
            warmup_epochs=0.0,
        )
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (args.batch_per_replica, args.frames, args.crop, args.crop, 3))
    labels = rng.integers(0, args.classes, (args.batch_per_replica,))

    def dataset_fn(input_context):
        del input_context
        ds = tf.data.Dataset.from_tensors((clips.astype("uint8"), labels.astype("int64")))
        return ds.repeat()

    with tempfile.TemporaryDirectory() as model_dir:
        trainer = training.DistributedTrainer(model, optimizer, model_dir, strategy)
        # The trainer's own step function (what `fit` runs), timed step by step.
        step = trainer._make_train_step()
        iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
        times = []
        for _ in range(args.warmup + args.steps):
            start = time.perf_counter()
            loss = float(step(iterator)[0])
            times.append(time.perf_counter() - start)
    record = dict(
        processes=replicas,
        threads=args.threads,
        sync_bn=multi and args.sync_bn,
        global_batch=global_batch,
        chief=training.is_chief(strategy),
        first_steps_s=[round(t, 3) for t in times[: args.warmup]],
        step_times_s=[round(t, 3) for t in times[args.warmup :]],
        median_step_s=round(statistics.median(times[args.warmup :]), 4),
        last_loss=loss,
    )
    print("RESULT " + json.dumps(record), flush=True)


def _free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run(args, processes, threads, sync_bn=True):
    ports = _free_ports(processes) if processes > 1 else []
    procs = []
    try:
        for index in range(processes):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
            env.pop("TF_CONFIG", None)
            if processes > 1:
                cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
                env["TF_CONFIG"] = json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                )
            command = [sys.executable, os.path.abspath(__file__), "--_worker"]
            command += [f"--threads={threads}"] + _shared_flags(args)
            command += ["--sync_bn" if sync_bn else "--no-sync_bn"]
            procs.append(
                subprocess.Popen(
                    command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=env,
                    text=True,
                    start_new_session=True,
                )
            )
        outputs = [p.communicate(timeout=args.timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    records = []
    for p, out in zip(procs, outputs):
        lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        if p.returncode != 0 or not lines:
            raise RuntimeError(f"a benchmark process failed (rc {p.returncode}):\n{out[-3000:]}")
        records.append(json.loads(lines[-1][len("RESULT ") :]))
    return records


def _shared_flags(args):
    return [
        f"--batch_per_replica={args.batch_per_replica}",
        f"--frames={args.frames}",
        f"--crop={args.crop}",
        f"--width_per_group={args.width_per_group}",
        f"--classes={args.classes}",
        f"--warmup={args.warmup}",
        f"--steps={args.steps}",
    ]


def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch_per_replica", type=int, default=2)
    p.add_argument("--frames", type=int, default=8, help="Fast-pathway frames.")
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--width_per_group", type=int, default=8)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2, help="Untimed first steps (tracing).")
    p.add_argument("--steps", type=int, default=6, help="Timed steps.")
    p.add_argument("--threads", type=int, default=1, help="TF threads of each worker.")
    p.add_argument(
        "--sync_bn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Synchronized BatchNorm in the workers (set by the runner).",
    )
    p.add_argument(
        "--compare_unsynced",
        action="store_true",
        help="Also run the two workers without synchronized BatchNorm.",
    )
    p.add_argument(
        "--single_threads", default="1,2", help="Thread counts of the single-process runs."
    )
    p.add_argument("--timeout", type=float, default=1200, help="Seconds per configuration.")
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    for name in ("batch_per_replica", "frames", "crop", "width_per_group", "classes", "steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name}` must be >= 1. Received: {name}={getattr(args, name)}")
    if args._worker:
        _worker(args)
        return
    print(f"{os.cpu_count()} CPU cores visible", flush=True)
    rows = []
    configs = [(1, int(t), False) for t in args.single_threads.split(",") if t]
    configs.append((2, args.threads, True))
    if args.compare_unsynced:
        configs.append((2, args.threads, False))
    for processes, threads, sync_bn in configs:
        records = _run(args, processes, threads, sync_bn)
        for r in records:
            print(json.dumps(r), flush=True)
        chief = next(r for r in records if r["chief"])
        median = max(r["median_step_s"] for r in records)
        rows.append(
            (
                f"{processes} process{'es' if processes > 1 else ''} x {threads} thread(s)"
                + (", sync BN" if chief["sync_bn"] else ""),
                chief["global_batch"],
                " ".join(f"{t:.2f}" for t in chief["first_steps_s"]),
                " ".join(f"{t:.2f}" for t in chief["step_times_s"]),
                median,
            )
        )
    print()
    print(
        "| run | global batch | first steps (s) | timed steps (s) | median step (s) | "
        "steps/s | clips/s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, batch, first, timed, median in rows:
        print(
            f"| {name} | {batch} | {first} | {timed} | {median:.3f} | {1 / median:.2f} | "
            f"{batch / median:.1f} |"
        )


if __name__ == "__main__":
    main()
