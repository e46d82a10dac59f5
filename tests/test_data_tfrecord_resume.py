"""TFRecord conversion at scale: a killed conversion resumes; machines split the shards."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_slowfast import data

REPO = Path(__file__).resolve().parents[1]
NAMES = ["bikes.mp4", "k00.mp4", "k03.mp4"]
NUM_VIDEOS, NUM_SHARDS = 12, 4
SETTINGS = dict(num_shards=NUM_SHARDS, short_side=32)


@pytest.fixture(scope="module")
def listing(tmp_path_factory, videos):
    folder = tmp_path_factory.mktemp("resume")
    path = folder / "list.csv"
    path.write_text("".join(f"{videos / NAMES[i % 3]} {i}\n" for i in range(NUM_VIDEOS)))
    return path


@pytest.fixture(scope="module")
def reference(listing):
    """An uninterrupted conversion: the records every other run must reproduce."""
    shards = data.write_frame_tfrecords(listing, listing.parent / "ref" / "p", **SETTINGS)
    return {Path(s).name: _records(s) for s in shards}


def _records(path):
    """The shard's examples, in order (compared as messages: the serialised order of
    map entries may differ between processes)."""
    import tensorflow as tf

    return [
        tf.train.SequenceExample.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))
    ]


def _shards(folder):
    return sorted(p.name for p in folder.glob("p-*"))


def test_killed_conversion_resumes(listing, reference, tmp_path):
    prefix = tmp_path / "out" / "p"
    marker = tmp_path / "out" / "p.manifest" / "p-00000-of-00004.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    args = [sys.executable, "-m", "keras_slowfast.data.write_tfrecords_cli", str(listing)]
    args += [str(prefix), "--num-shards", str(NUM_SHARDS), "--short-side", "32"]
    proc = subprocess.Popen(
        args,
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), "the first shard was never recorded"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the conversion ended before it was killed"
    recorded = sorted(p.name for p in (tmp_path / "out" / "p.manifest").glob("*.json"))
    assert 1 <= len(recorded) < NUM_SHARDS
    # Shard files appear whole or not at all.
    left = _shards(tmp_path / "out")
    assert 1 <= len(left) < NUM_SHARDS
    for name in left:
        assert _records(tmp_path / "out" / name) == reference[name], name
    assert not (tmp_path / "out" / "p.manifest.json").exists()
    kept = {name: (tmp_path / "out" / name).stat().st_mtime_ns for name in left}

    shards = data.write_frame_tfrecords(listing, prefix, **SETTINGS)
    assert [Path(s).name for s in shards] == sorted(reference)
    for name, content in reference.items():
        assert _records(tmp_path / "out" / name) == content, name
    for name in recorded:  # recorded shards were kept, not rewritten
        shard = name.replace(".json", ".tfrecord")
        assert (tmp_path / "out" / shard).stat().st_mtime_ns == kept[shard]
    assert not list((tmp_path / "out").glob(".*partial"))
    manifest = json.loads((tmp_path / "out" / "p.manifest.json").read_text())
    assert manifest["num_written"] == NUM_VIDEOS and manifest["skipped"] == []
    assert manifest["shards"] == sorted(reference)
    entry = json.loads(marker.read_text())
    assert entry["videos"] == list(range(0, NUM_VIDEOS, NUM_SHARDS))

    with pytest.raises(ValueError, match="other settings.*Received: output_prefix="):
        data.write_frame_tfrecords(listing, prefix, num_shards=NUM_SHARDS, short_side=48)


@pytest.mark.large  # over the default suite's time budget
def test_tasks_split_the_shards(listing, reference, tmp_path):
    prefix = tmp_path / "p"
    first = data.write_frame_tfrecords(listing, prefix, task_index=1, num_tasks=2, **SETTINGS)
    assert [Path(s).name for s in first] == [
        "p-00001-of-00004.tfrecord",
        "p-00003-of-00004.tfrecord",
    ]
    assert _shards(tmp_path) == [Path(s).name for s in first]
    assert not (tmp_path / "p.manifest.json").exists()  # the other task has not run yet
    second = data.write_frame_tfrecords(listing, prefix, task_index=0, num_tasks=2, **SETTINGS)
    assert len(second) == 2
    assert _shards(tmp_path) == sorted(reference)
    for name, content in reference.items():
        assert _records(tmp_path / name) == content, name
    assert json.loads((tmp_path / "p.manifest.json").read_text())["num_written"] == NUM_VIDEOS
    with pytest.raises(ValueError, match=r"Received: task_index=2"):
        data.write_frame_tfrecords(listing, prefix, task_index=2, num_tasks=2, **SETTINGS)
