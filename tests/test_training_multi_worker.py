"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy (custom loop)."""

import json
import sys

import numpy as np
import pytest
from multi_worker_harness import REPO, Workers, free_ports, h5_arrays, result_lines, tf_config

SCRIPT = REPO / "tests" / "training_scripts" / "multi_worker.py"
TIMEOUT_S = 420
_h5_arrays = h5_arrays


def _run_workers(tmp_path, list_file, model_dir, epochs, steps, tag):
    ports = free_ports(2)
    weights = [tmp_path / f"{tag}_worker{index}.weights.h5" for index in range(2)]
    with Workers(tmp_path, tag) as workers:
        for index in range(2):
            args = [sys.executable, SCRIPT, list_file, model_dir, weights[index]]
            args += [epochs, steps, "slow"]
            workers.start(args, {"TF_CONFIG": tf_config(ports, index)})
        # A failed worker leaves the other waiting on collectives: the wait stops early.
        workers.wait(TIMEOUT_S)
    workers.check()
    results = [json.loads(result_lines(workers.log(i), "RESULT ")[-1]) for i in range(2)]
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


@pytest.mark.large  # over the default suite's time budget
def test_workers_end_with_identical_weights(workers_run):
    first, second = (_h5_arrays(p) for p in workers_run["weights"])
    assert first.keys() == second.keys()
    assert len(first) > 100
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


@pytest.mark.large  # over the default suite's time budget
def test_workers_trained_in_step(workers_run):
    chief, worker = workers_run["results"]
    assert chief["chief"] and not worker["chief"]
    assert chief["step"] == worker["step"] == 6
    # The losses are all-reduced over both workers' shards, so they agree exactly.
    assert chief["history"] == worker["history"]
    assert chief["history"]["epoch"] == [0, 1]
    assert all(np.isfinite(chief["history"]["loss"]))


@pytest.mark.large  # over the default suite's time budget
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
