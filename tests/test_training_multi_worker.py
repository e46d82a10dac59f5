"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy (custom loop)."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "training_scripts" / "multi_worker.py"
TIMEOUT_S = 420


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


def _h5_arrays(path):
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return arrays


def _run_workers(tmp_path, list_file, model_dir, epochs, steps, tag):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs, weights = [], [], []
    try:
        for index in range(2):
            env = dict(os.environ)
            env["TF_CONFIG"] = json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            )
            env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
            env["PYTHONUNBUFFERED"] = "1"
            env["TF_CPP_MIN_LOG_LEVEL"] = "2"
            log = tmp_path / f"{tag}_worker{index}.log"
            out = tmp_path / f"{tag}_worker{index}.weights.h5"
            args = [sys.executable, str(SCRIPT), str(list_file), str(model_dir), str(out)]
            args += [str(epochs), str(steps), "slow"]
            with open(log, "w") as f:
                procs.append(
                    subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
                )
            logs.append(log)
            weights.append(out)
        deadline = time.monotonic() + TIMEOUT_S
        while any(p.poll() is None for p in procs):
            # A failed worker leaves the other waiting on collectives: stop early.
            if any(p.poll() not in (None, 0) for p in procs):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    texts = [log.read_text(errors="replace") for log in logs]
    for p, text in zip(procs, texts):
        assert p.returncode == 0, text[-4000:]
    results = []
    for text in texts:
        line = [ln for ln in text.splitlines() if ln.startswith("RESULT ")][-1]
        results.append(json.loads(line[len("RESULT ") :]))
    return results, weights


@pytest.fixture(scope="module")
def workers_run(videos, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("multi_worker")
    list_file = tmp_path / "train.csv"
    list_file.write_text(
        "".join(f"{videos / n} {i}\n" for i, n in enumerate(("bikes.mp4", "k00.mp4", "k03.mp4")))
    )
    model_dir = tmp_path / "run"
    results, weights = _run_workers(tmp_path, list_file, model_dir, 2, 3, "first")
    return dict(
        tmp_path=tmp_path,
        list_file=list_file,
        model_dir=model_dir,
        results=results,
        weights=weights,
    )


def test_workers_end_with_identical_weights(workers_run):
    first, second = (_h5_arrays(p) for p in workers_run["weights"])
    assert first.keys() == second.keys()
    assert len(first) > 100
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_workers_trained_in_step(workers_run):
    chief, worker = workers_run["results"]
    assert chief["chief"] and not worker["chief"]
    assert chief["step"] == worker["step"] == 6
    # The losses are all-reduced over both workers' shards, so they agree exactly.
    assert chief["history"] == worker["history"]
    assert chief["history"]["epoch"] == [0, 1]
    assert all(np.isfinite(chief["history"]["loss"]))


def test_chief_writes_checkpoints_and_summaries(workers_run):
    import tensorflow as tf

    d = workers_run["model_dir"]
    assert tf.train.latest_checkpoint(str(d / "checkpoints")).endswith("ckpt-6")
    assert (d / "checkpoints" / "ckpt-3.index").exists()
    leftovers = list((d / "worker_tmp").rglob("*")) if (d / "worker_tmp").exists() else []
    assert [p for p in leftovers if p.is_file()] == []
    events = list((d / "train").glob("events.out.tfevents.*"))
    assert len(events) == 1  # the chief's only
    tags = set()
    for event in tf.compat.v1.train.summary_iterator(str(events[0])):
        tags.update(v.tag for v in event.summary.value)
    assert {"loss", "learning_rate", "epoch_loss", "epoch_accuracy"} <= tags


@pytest.mark.large
def test_workers_resume_from_latest_checkpoint(workers_run):
    results, weights = _run_workers(
        workers_run["tmp_path"],
        workers_run["list_file"],
        workers_run["model_dir"],
        3,
        3,
        "resumed",
    )
    chief, worker = results
    assert chief["history"]["epoch"] == worker["history"]["epoch"] == [2]
    assert chief["step"] == worker["step"] == 9
    first, second = (_h5_arrays(p) for p in weights)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
