"""Processes of a multi-worker run on 127.0.0.1, for the tests: ports, TF_CONFIG, cleanup.

Every process starts in its own session (process group), so that it and anything it
starts are killed as one; `Workers` is a context manager that kills whatever is still
running when it exits, whatever happened. Waiting is always bounded, and a failed
worker ends the wait at once (its peers would otherwise wait on collectives).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py

REPO = Path(__file__).resolve().parents[1]
TRAIN_PROBE = REPO / "tests" / "training_scripts" / "train_probe.py"


def free_ports(count):
    """`count` distinct TCP ports of 127.0.0.1 that were free a moment ago."""
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


def h5_arrays(path):
    """Every dataset of an HDF5 file (a `.weights.h5`), by its path in the file."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return arrays


def tf_config(ports, index):
    """The TF_CONFIG of worker `index` of a cluster of workers on 127.0.0.1 `ports`."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def child_env(extra=None):
    """The environment of a child process: this checkout first on the path, quiet TF."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra or {})
    return env


def read(path):
    return Path(path).read_text(errors="replace") if Path(path).exists() else ""


class Workers:
    """Starts processes, waits for them within a deadline and always kills the leftovers.

    Example (in a test):

        with Workers(tmp_path, "run") as workers:
            for i in range(2):
                workers.start([sys.executable, script, ...], {"TF_CONFIG": tf_config(ports, i)})
            workers.wait(timeout=600)
        workers.check()  # every return code 0, else the logs' tails
    """

    def __init__(self, folder, tag):
        self.folder = Path(folder)
        self.tag = tag
        self.procs = []
        self.logs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill_all()
        return False

    def start(self, args, env=None):
        """Starts one process (in its own process group); returns its index."""
        index = len(self.procs)
        log = self.folder / f"{self.tag}_{index}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [str(a) for a in args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(env),
                cwd=REPO,
                start_new_session=True,
            )
        self.procs.append(proc)
        self.logs.append(log)
        return index

    def log(self, index):
        return read(self.logs[index])

    def kill(self, index, sig=signal.SIGKILL):
        """Sends `sig` to process `index`'s group (if it still runs) and reaps it."""
        proc = self.procs[index]
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill_all(self):
        for index in range(len(self.procs)):
            self.kill(index)

    def wait(self, timeout, indices=None, stop_on_failure=True):
        """Waits until processes `indices` (default all) end, at most `timeout` seconds.

        Returns:
            True if they all ended; False on the deadline or when one failed first
            (`stop_on_failure`), the others then still running.
        """
        indices = range(len(self.procs)) if indices is None else indices
        procs = [self.procs[i] for i in indices]
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs):
            if stop_on_failure and any(p.poll() not in (None, 0) for p in procs):
                return False
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def wait_for(self, condition, timeout, what):
        """Polls `condition()` until true; fails (with the logs) on a deadline or a dead process."""
        deadline = time.monotonic() + timeout
        while not condition():
            ended = [i for i, p in enumerate(self.procs) if p.poll() is not None]
            if ended or time.monotonic() > deadline:
                raise AssertionError(
                    f"waiting for {what}: "
                    + ("process ended" if ended else f"no sign within {timeout} s")
                    + "\n"
                    + self.tails()
                )
            time.sleep(0.1)

    def returncodes(self):
        return [p.poll() for p in self.procs]

    def tails(self, chars=3000):
        return "\n".join(
            f"--- {log.name} (rc {p.poll()}):\n{read(log)[-chars:]}"
            for p, log in zip(self.procs, self.logs)
        )

    def check(self):
        """Asserts that every process ended with return code 0."""
        assert all(rc == 0 for rc in self.returncodes()), self.tails()


def result_lines(text, prefix):
    """The lines of `text` that start with `prefix`, without it."""
    return [ln[len(prefix) :] for ln in text.splitlines() if ln.startswith(prefix)]


def step_losses(text):
    """`{global step: loss}` from the `STEP <step> <loss>` lines of `train_probe.py`."""
    losses = {}
    for line in result_lines(text, "STEP "):
        step, loss = line.split()
        losses[int(step)] = float(loss)
    return losses


# The narrow two-pathway SlowFast 8x8 R50 of the tests, on tiny clips, through train.py.
NARROW_SLOWFAST_FLAGS = (
    "--arch=slowfast_8x8_r50",
    "--width_per_group=8",
    "--dropout_rate=0",
    "--num_frames=8",
    "--sampling_rate=2",
    "--crop_size=32",
    "--jitter_min=32",
    "--jitter_max=40",
    "--seed=1",
    "--base_lr=0.4",
    "--warmup_epochs=1",
    "--precise_bn_batches=0",
)


def data_source_flags(source):
    """`train.py` flags of a data source: TFRecord files directly, or through a service.

    Args:
        source: `{"tfrecords": pattern}`, optionally with `"data_service_address":
            "grpc://HOST:PORT"` (the workers then read the files through the tf.data
            service instead of each opening its share).
    """
    flags = [f"--train_tfrecords={source['tfrecords']}"]
    if source.get("data_service_address"):
        flags.append(f"--data_service_address={source['data_service_address']}")
    return flags


def start_train_workers(workers, ports, flags, probe_dir=None):
    """Starts one `train_probe.py` (i.e. `examples/train.py`) per port, multi-worker."""
    for index in range(len(ports)):
        args = [sys.executable, TRAIN_PROBE, "--strategy=multi_worker", *flags]
        if probe_dir is not None:
            args.append(f"--probe_dir={probe_dir}")
        workers.start(args, {"TF_CONFIG": tf_config(ports, index)})
