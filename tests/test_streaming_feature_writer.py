"""Saving the features of many videos, resumably (`keras_slowfast.streaming.feature_writer`).

`save_features` and `keras-slowfast features`: output names mirroring the list's folders,
atomic writes that survive a kill, resuming, the failures list and the HDF5 format. The
features themselves are checked in test_streaming_features.py.
"""

import json
import os
import signal
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_slowfast import cli, hub  # noqa: E402
from keras_slowfast.streaming import feature_model, save_features, video_list  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NARROW = ["--model", "slow_8x8_r50", "--weights", "none", "--width-per-group", "8"]


@pytest.fixture(scope="module")
def slow_narrow():
    keras.utils.set_random_seed(3)
    return hub.from_preset("slow_8x8_r50", load_weights=False, width_per_group=8, classes=5)


@pytest.fixture(scope="module")
def slow_features(slow_narrow):
    return feature_model(slow_narrow)  # one feature model for the module: traced once


def test_bad_format_names_the_argument(slow_narrow, videos):
    with pytest.raises(ValueError, match="Received: format='csv'"):
        save_features(slow_narrow, str(videos / "k00.mp4"), "out", preset="slow_8x8_r50",
                      format="csv")  # fmt: skip


def test_video_list_names_mirror_relative_paths(tmp_path):
    (tmp_path / "list.txt").write_text("a/clip.mp4\n\n# x\nb/clip.mp4,3\n/abs/c/clip.mp4\n")
    entries = video_list(str(tmp_path / "list.txt"))
    assert [n for _, n in entries] == ["a/clip", "b/clip", "abs/c/clip"]
    assert entries[0][0] == str(tmp_path / "a" / "clip.mp4")
    prefixed = video_list(str(tmp_path / "list.txt"), path_prefix="/data")
    assert prefixed[1] == ("/data/b/clip.mp4", "b/clip")
    (tmp_path / "dup.txt").write_text("a/clip.mp4\na/clip.avi\n")
    with pytest.raises(ValueError, match="same output name 'a/clip'"):
        video_list(str(tmp_path / "dup.txt"))


def _dataset(tmp_path, videos, count):
    """`count` videos with equal file names in different folders, then a corrupt one."""
    sources = ["k00.mp4", "k03.mp4", "bikes.mp4"]
    lines = []
    for i in range(count):
        folder = tmp_path / "data" / f"part{i}"
        folder.mkdir(parents=True)
        os.symlink(videos / sources[i % 3], folder / "clip.mp4")
        lines.append(f"part{i}/clip.mp4")
    bad = tmp_path / "data" / "broken" / "clip.mp4"
    bad.parent.mkdir()
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    lines.append("broken/clip.mp4")
    listing = tmp_path / "data" / "videos.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def _leftovers(folder):
    return [
        os.path.join(root, f) for root, _, files in os.walk(folder) for f in files if ".tmp" in f
    ]


def test_cli_features_resumes_after_a_kill_and_reports_bad_videos(tmp_path, videos, capsys):
    listing = _dataset(tmp_path, videos, 3)
    out = tmp_path / "features"
    cmd = [sys.executable, "-m", "keras_slowfast.cli", "features", str(listing), "--output",
           str(out), "--stride", "2", "--quiet", *NARROW]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=_REPO)
    proc = subprocess.Popen(cmd, cwd=_REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    first = out / "part0" / "clip.json"
    deadline = time.monotonic() + 240
    try:
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.exists(), proc.communicate(timeout=30)[1].decode()[-3000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done_before = {p: p.stat().st_mtime_ns for p in out.rglob("clip.json")}
    assert 1 <= len(done_before) < 3
    # The kill left no temporary file behind, and no features without their sidecar.
    assert not _leftovers(out)
    for npy in out.rglob("clip.npy"):
        assert npy.with_suffix(".json").exists()

    status = cli.main(["features", str(listing), "--output", str(out), "--stride", "2",
                       "--quiet", *NARROW])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 1  # the corrupt video
    summary = (
        f"4 video(s): {3 - len(done_before)} extracted, {len(done_before)} already complete, "
        "1 failed"
    )
    assert summary in captured.out, captured.out
    assert "skipped" in captured.err and "broken" in captured.err
    failures = (out / "failures.txt").read_text().splitlines()
    assert len(failures) == 1 and failures[0].startswith(str(listing.parent / "broken"))
    assert "Cannot read video" in failures[0]
    # Complete videos were skipped, not rewritten.
    for path, mtime in done_before.items():
        assert path.stat().st_mtime_ns == mtime
    assert not _leftovers(out)
    for i, source in enumerate(["k00", "k03", "bikes"]):
        meta = json.loads((out / f"part{i}" / "clip.json").read_text())
        feats = np.load(out / f"part{i}" / "clip.npy")
        assert feats.shape == (5, 256) and feats.dtype == np.float32
        assert meta["dim"] == 256 and meta["preset"] == "slow_8x8_r50_kinetics400"
        assert meta["times"] == [1.0, 3.0, 5.0, 7.0, 9.0]
        assert meta["fps"] == (25.0 if source == "bikes" else 30.0)
        assert np.array(meta["frame_indices"]).shape == (5, 8)
        assert meta["stride"] == 2.0 and meta["num_frames"] == 8 and meta["sampling_rate"] == 8
        assert "keras_slowfast_version" in meta
    # A third run: everything done; changed settings make a video count as not done.
    status = cli.main(["features", str(listing), "--output", str(out), "--stride", "2",
                       "--quiet", *NARROW])  # fmt: skip
    assert "0 extracted, 3 already complete, 1 failed" in capsys.readouterr().out


def test_hdf5_output(slow_features, tmp_path, videos):
    h5py = pytest.importorskip("h5py")
    summary = save_features(
        slow_features,
        str(videos / "k00.mp4"),
        tmp_path,
        preset="slow_8x8_r50",
        format="hdf5",
        window_stride_seconds=5.0,
    )
    assert [n for _, n in summary.extracted] == ["k00"] and summary.failures_file is None
    with h5py.File(tmp_path / "k00.h5", "r") as f:
        assert f["features"].shape == (2, 256)
        np.testing.assert_array_equal(f["times"][:], [2.5, 7.5])
        assert f["frame_indices"].shape == (2, 8)
        assert json.loads(f.attrs["metadata"])["dim"] == 256
    again = save_features(slow_features, str(videos / "k00.mp4"), tmp_path, preset="slow_8x8_r50",
                          format="hdf5", window_stride_seconds=5.0)  # fmt: skip
    assert again.existing == [(str(videos / "k00.mp4"), "k00")] and not again.extracted
    other = save_features(slow_features, str(videos / "k00.mp4"), tmp_path, preset="slow_8x8_r50",
                          format="hdf5", window_stride_seconds=2.5)  # fmt: skip
    assert other.extracted  # another stride: written again
    assert sorted(os.listdir(tmp_path)) == ["k00.h5"]
