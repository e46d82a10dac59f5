"""Dense features of long videos: `extract_features`, `save_features` and `keras-slowfast features`.

The pooled features are checked against an oracle written here: the res5 maps of the
model (the inputs of its head's pooling layers) on independently decoded clips, averaged
over time, height and width with NumPy.
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
from test_streaming_scoring import centre_crop, decode_all, expected_windows  # noqa: E402

from keras_slowfast import cli, hub  # noqa: E402
from keras_slowfast.inference import extract_features, feature_model  # noqa: E402
from keras_slowfast.streaming import save_features, video_list  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NARROW = ["--model", "slow_8x8_r50", "--weights", "none", "--width-per-group", "8"]


@pytest.fixture(scope="module")
def slow_narrow():
    keras.utils.set_random_seed(3)
    return hub.from_preset("slow_8x8_r50", load_weights=False, width_per_group=8, classes=5)


@pytest.fixture(scope="module")
def slow_features(slow_narrow):
    return feature_model(slow_narrow)  # one feature model for the module: traced once


def test_feature_dims_are_slow_plus_fast_res5_channels():
    # res5 has 32 * width channels in the slow pathway, 32 * width / beta_inv (8) in the
    # fast one: 2048 + 256 = 2304 at width 64; 256 + 32 at width 8.
    width = 8
    net = hub.from_preset("slowfast_8x8_r50", load_weights=False, width_per_group=width)
    assert feature_model(net).output_shape == (None, 32 * width + 4 * width)


@pytest.mark.large
def test_full_size_feature_dims():
    full = hub.from_preset("slowfast_8x8_r50", load_weights=False)
    assert feature_model(full).output_shape == (None, 2304)
    slow = hub.from_preset("slow_8x8_r50", load_weights=False)
    assert feature_model(slow).output_shape == (None, 2048)
    backbone = hub.from_preset("slowfast_8x8_r50", load_weights=False, include_top=False)
    assert feature_model(backbone).output_shape == (None, 2304)


def test_features_are_pooled_res5_maps_of_each_window(slow_narrow, slow_features, videos):
    video = str(videos / "k03.mp4")
    assert slow_features.output_shape == (None, 256)
    feats = extract_features(
        slow_features, video, preset="slow_8x8_r50", window_stride_seconds=3.0, batch_size=2
    )
    fps, frames = decode_all(video)
    want = expected_windows(len(frames), fps, 3.0, 8, 8)
    assert feats.features.shape == (len(want), 256) and feats.features.dtype == np.float32
    np.testing.assert_array_equal(feats.times, [w[1] for w in want])
    np.testing.assert_array_equal(feats.starts, [w[2] for w in want])
    np.testing.assert_array_equal(feats.ends, [w[3] for w in want])
    np.testing.assert_array_equal(feats.frame_indices, np.stack([w[4] for w in want]))
    assert (feats.fps, feats.total_frames, feats.num_frames, feats.sampling_rate) == (
        30.0, 300, 8, 8,
    )  # fmt: skip
    res5 = keras.Model(slow_narrow.input, slow_narrow.get_layer("head_pathway0_avgpool").input)
    for row, (_, _, _, _, indices) in zip(feats.features, want):
        clip = centre_crop([frames[i] for i in indices], 256)
        maps = np.asarray(res5.predict_on_batch(clip[None]), np.float64)[0]
        np.testing.assert_allclose(row, maps.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)


def test_extract_features_from_a_preset_name(videos):
    feats = extract_features(
        "slow_8x8_r50",
        str(videos / "k00.mp4"),
        weights="none",
        model_kwargs={"width_per_group": 8},
        window_stride_seconds=5.0,
        batch_size=2,
    )
    assert feats.features.shape == (2, 256)
    assert feats.times.tolist() == [2.5, 7.5] and feats.ends.tolist() == [5.0, 10.0]
    assert feats.frame_indices.shape == (2, 8)


def test_bad_arguments(slow_narrow, videos):
    with pytest.raises(TypeError, match="model_or_preset"):
        extract_features(3, str(videos / "k00.mp4"))
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
