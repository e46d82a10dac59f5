"""The tf.data service: a dispatcher and two workers as real processes on 127.0.0.1.

The servers are started through `keras-slowfast data-service` in their own process groups
and always stopped (SIGTERM, then SIGKILL) in the fixture's teardown.
"""

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_slowfast import data, training
from keras_slowfast.training import data_service, data_service_cli

REPO = Path(__file__).resolve().parents[1]
NAMES = ["bikes.mp4", "k00.mp4", "k03.mp4"]
NUM_VIDEOS = 6  # the three sample videos twice, video indices 0..5
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30
# Deterministic test-mode clips (no random sampling or augmentation), small.
TEST_KW = dict(
    mode="test",
    num_frames=4,
    sampling_rate=2,
    crop_size=48,
    num_temporal_views=2,
    num_spatial_crops=1,
    batch_size=1,
)


@pytest.fixture(scope="module")
def records(tmp_path_factory, videos):
    out = tmp_path_factory.mktemp("ds_records")
    entries = [(str(videos / NAMES[i % 3]), i) for i in range(NUM_VIDEOS)]
    return data.write_frame_tfrecords(
        entries, out / "clips", num_shards=NUM_VIDEOS, short_side=64, num_workers=2
    )


def _start(args, log_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "keras_slowfast.cli", "data-service", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,  # its own process group, killed as a whole
        )


def _wait_listening(proc, log_path, deadline):
    """The `host:port` the server prints once listening (bounded wait)."""
    while time.monotonic() < deadline:
        for line in Path(log_path).read_text(errors="replace").splitlines():
            if " listening on " in line:
                return line.rsplit(" ", 1)[1]
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"server did not start: {Path(log_path).read_text(errors='replace')}")


def _stop(proc, timeout=STOP_TIMEOUT_S):
    """SIGTERM to the process group, SIGKILL if it is still there after `timeout`."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
    return proc.returncode


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ds_cluster")
    procs = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        log = tmp / "dispatcher.log"
        procs.append(_start(["dispatcher", "--port", "0"], log))
        dispatcher = _wait_listening(procs[0], log, deadline)
        port = dispatcher.rsplit(":", 1)[1]
        logs = []
        for k in range(2):
            logs.append(tmp / f"worker{k}.log")
            args = ["worker", "--dispatcher", f"127.0.0.1:{port}", "--worker-address", "127.0.0.1"]
            procs.append(_start(args, logs[-1]))
        workers = [_wait_listening(p, lg, deadline) for p, lg in zip(procs[1:], logs)]
        yield dict(target=f"grpc://127.0.0.1:{port}", workers=workers, procs=procs, tmp=tmp)
    finally:
        for p in reversed(procs):
            _stop(p)


def _by_view(dataset):
    """`{(video_index, view_index): [clip, ...]}` of a test-mode dataset of batches."""
    out = collections.defaultdict(list)
    for clips, labels, video_index, view_index in dataset:
        for c, lab, v, w in zip(clips.numpy(), labels.numpy(), video_index.numpy(), view_index):
            assert lab == v  # the label written is the video index
            out[(int(v), int(w))].append(c)
    return out


def test_workers_listen_on_127_0_0_1(cluster):
    assert len(set(cluster["workers"])) == 2
    assert all(w.startswith("127.0.0.1:") for w in cluster["workers"])


def test_distributed_epoch_each_clip_once_equal_to_local(cluster, records):
    local = _by_view(data.frame_tfrecord_dataset(records, **TEST_KW))
    expected = {(v, w) for v in range(NUM_VIDEOS) for w in range(2)}  # the written indices
    assert set(local) == expected
    remote = _by_view(
        data_service.distribute_dataset(
            data.frame_tfrecord_dataset(records, **TEST_KW),
            cluster["target"],
            "distributed_epoch",
        )
    )
    assert set(remote) == expected
    for key in expected:
        assert len(remote[key]) == 1, key
        assert remote[key][0].shape == (4, 48, 48, 3)
        np.testing.assert_array_equal(remote[key][0], local[key][0], err_msg=str(key))


def test_parallel_epochs_each_clip_once_per_worker(cluster, records):
    remote = _by_view(
        data_service.distribute_dataset(
            data.frame_tfrecord_dataset(records, **TEST_KW), cluster["target"], "parallel_epochs"
        )
    )
    assert set(remote) == {(v, w) for v in range(NUM_VIDEOS) for w in range(2)}
    assert {len(clips) for clips in remote.values()} == {2}
    for clips in remote.values():
        np.testing.assert_array_equal(clips[0], clips[1])


@pytest.mark.large  # over the default suite's time budget
def test_input_fn_consumers_share_one_job(cluster, records):
    fn = training.tfrecord_input_fn(
        records,
        2,
        seed=7,
        data_service_address=cluster["target"],
        job_name="shared_job_test",
        mode="train",
        num_frames=4,
        sampling_rate=2,
        crop_size=48,
        jitter_scales=(64, 80),
    )
    contexts = [
        tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2
        )
        for i in range(2)
    ]
    iterators = [iter(fn(c)) for c in contexts]
    labels = []
    for _ in range(NUM_VIDEOS):  # two passes over the files between the two consumers
        for it in iterators:
            clips, lab = next(it)
            assert clips.shape == (1, 4, 48, 48, 3) and clips.dtype == tf.uint8
            labels.extend(lab.numpy().tolist())
    counts = collections.Counter(labels)
    # The service repeats the files: every video appears; none runs far ahead of the rest.
    assert set(counts) == set(range(NUM_VIDEOS))
    assert max(counts.values()) <= 3


def test_python_function_pipeline_cannot_be_shipped(cluster, videos):
    # The PyAV list pipeline decodes in a tf.numpy_function: its Python code lives in
    # this process only, so a worker process cannot run it.
    ds = data.kinetics_dataset([(str(videos / "k00.mp4"), 0)], **TEST_KW)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Could not find callback.*pyfunc"):
        next(iter(data_service.distribute_dataset(ds, cluster["target"])))


def test_cli_stops_cleanly_on_sigterm(tmp_path):
    log = tmp_path / "dispatcher.log"
    proc = _start(["dispatcher"], log)
    try:
        address = _wait_listening(proc, log, time.monotonic() + START_TIMEOUT_S)
        assert address.startswith("localhost:")
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(STOP_TIMEOUT_S) == 0
        assert "data-service dispatcher stopped" in log.read_text()
    finally:
        _stop(proc)


@pytest.mark.parametrize(
    "address", ["localhost", "http://localhost:5050", "localhost:0", "localhost:70000", 5050]
)
def test_bad_address(address):
    with pytest.raises(ValueError, match=r"`service_address` must .*Received: service_address="):
        data_service.distribute_dataset(tf.data.Dataset.range(2), address)


def test_bad_arguments(records, capsys):
    ds = tf.data.Dataset.range(2)
    with pytest.raises(ValueError, match="Received: processing_mode='epochs'"):
        data_service.distribute_dataset(ds, "localhost:5050", "epochs")
    with pytest.raises(ValueError, match="Received: job_name=''"):
        data_service.distribute_dataset(ds, "localhost:5050", job_name="")
    with pytest.raises(TypeError, match="Received: dataset=list"):
        data_service.distribute_dataset([1], "localhost:5050")
    with pytest.raises(ValueError, match="Received: data_service_address='grpc://x'"):
        training.tfrecord_input_fn(records, 2, data_service_address="grpc://x")
    with pytest.raises(ValueError, match="Received: processing_mode='both'"):
        training.tfrecord_input_fn(records, 2, data_service_address="x:1", processing_mode="both")
    with pytest.raises(ValueError, match="Received: work_dir=None"):
        data_service.start_dispatcher(fault_tolerant=True)
    with pytest.raises(ValueError, match="Received: worker_address='a b'"):
        data_service.start_worker("localhost:5050", worker_address="a b")
    assert data_service_cli.main(["worker", "--dispatcher", "no-port"]) == 2
    assert "Received: dispatcher_address='no-port'" in capsys.readouterr().err


def test_in_process_servers_round_trip():
    """Plumbing: in-process servers and their addresses."""
    dispatcher = data_service.start_dispatcher()
    worker = data_service.start_worker(dispatcher.target, worker_address="127.0.0.1")
    try:
        assert worker.address == f"127.0.0.1:{worker.port}"
        ds = data_service.distribute_dataset(
            tf.data.Dataset.range(10).batch(3), dispatcher.address, job_name="round_trip"
        )
        assert sorted(x for b in ds for x in b.numpy().tolist()) == list(range(10))
    finally:
        worker.stop()
        dispatcher.stop()


def _train_script(*flags):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / "train.py"), *flags],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_train_script_refuses_video_list_with_data_service(tmp_path):
    result = _train_script(
        "--train_list=train.csv",
        "--data_service_address=grpc://localhost:5050",
        f"--model_dir={tmp_path}",
    )
    assert result.returncode != 0
    assert "--data_service_address needs --train_tfrecords" in result.stderr


@pytest.mark.large
def test_train_script_reads_through_the_service(cluster, records, tmp_path):
    result = _train_script(
        f"--train_tfrecords={','.join(records)}",
        f"--data_service_address={cluster['target']}",
        "--arch=slow_8x8_r50",
        "--num_frames=4",
        "--sampling_rate=2",
        "--width_per_group=8",
        "--classes=6",
        "--crop_size=32",
        "--jitter_min=32",
        "--jitter_max=40",
        "--global_batch_size=2",
        "--epochs=1",
        "--steps_per_epoch=3",
        "--warmup_epochs=0",
        "--precise_bn_batches=0",
        "--seed=0",
        f"--model_dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "run" / "final.weights.h5").exists()


def test_fault_tolerant_dispatcher_journals(tmp_path):
    """Plumbing: a fault-tolerant dispatcher keeps its journal in `work_dir`."""
    dispatcher = data_service.start_dispatcher(work_dir=str(tmp_path), fault_tolerant=True)
    worker = data_service.start_worker(dispatcher.address)
    try:
        ds = data_service.distribute_dataset(tf.data.Dataset.range(3), dispatcher.target)
        assert sorted(int(x) for x in ds) == [0, 1, 2]
        assert any(p.is_file() for p in tmp_path.rglob("*"))
    finally:
        worker.stop()
        dispatcher.stop()
