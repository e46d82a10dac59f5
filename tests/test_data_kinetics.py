"""The PyAV `kinetics_dataset`: list files, shapes, determinism, frames and crops."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_slowfast import data
from keras_slowfast.data import transforms, video

SMALL = dict(num_frames=4, sampling_rate=4, crop_size=64, jitter_scales=(64, 80), batch_size=2)


@pytest.fixture(scope="module")
def entries(videos):
    return [(str(videos / n), i) for i, n in enumerate(["bikes.mp4", "k00.mp4", "k03.mp4"])]


@pytest.fixture(scope="module")
def decoded(videos):
    import av

    out = {}
    for name in ("k00.mp4", "k03.mp4"):
        with av.open(str(videos / name)) as container:
            out[name] = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return out


def _batches(ds):
    return [tuple(t.numpy() for t in batch) for batch in ds]


def test_read_video_list(tmp_path):
    f = tmp_path / "train.csv"
    f.write_text("a.mp4 3\n\nsub dir/b.mp4 0\n  c.mp4   12  \n")
    paths, labels = data.read_video_list(f, path_prefix="root")
    assert paths == ["root/a.mp4", "root/sub dir/b.mp4", "root/c.mp4"]
    assert labels == [3, 0, 12]
    assert data.read_video_list(f)[0][0] == "a.mp4"
    (tmp_path / "bad.csv").write_text("a.mp4\n")
    with pytest.raises(ValueError, match="Line 1"):
        data.read_video_list(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("a.mp4 cat\n")
    with pytest.raises(ValueError, match="Received: label='cat'"):
        data.read_video_list(tmp_path / "bad2.csv")
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        data.read_video_list(tmp_path / "empty.csv")
    with pytest.raises(ValueError, match="List file not found"):
        data.read_video_list(tmp_path / "missing.csv")


def test_train_shapes_dtypes_and_batching(entries):
    ds = data.kinetics_dataset(entries * 3, "train", seed=0, **SMALL)
    clip_spec, label_spec = ds.element_spec
    assert clip_spec.shape.as_list() == [2, 4, 64, 64, 3] and clip_spec.dtype == tf.uint8
    assert label_spec.shape.as_list() == [2] and label_spec.dtype == tf.int32
    batches = _batches(ds)
    assert len(batches) == 4  # 9 videos, last partial batch dropped
    labels = np.concatenate([b[1] for b in batches])
    assert set(labels.tolist()) <= {0, 1, 2}
    assert ds.error_counter.count == 0


def test_train_seeded_determinism_and_reshuffling(entries):
    a = _batches(data.kinetics_dataset(entries * 2, "train", seed=7, **SMALL))
    b = _batches(data.kinetics_dataset(entries * 2, "train", seed=7, **SMALL))
    c = _batches(data.kinetics_dataset(entries * 2, "train", seed=8, **SMALL))
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])
    assert any(not np.array_equal(x[0], z[0]) for x, z in zip(a, c))
    # A second epoch of the same dataset draws new clips.
    ds = data.kinetics_dataset(entries * 2, "train", seed=7, **SMALL)
    first, second = _batches(ds), _batches(ds)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(first, second))


def test_val_is_ordered_and_repeatable(entries):
    ds = data.kinetics_dataset(entries, "val", **SMALL)
    first, second = _batches(ds), _batches(ds)
    assert np.concatenate([b[1] for b in first]).tolist() == [0, 1, 2]  # no shuffle, no drop
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x[0], y[0])


_CROP_INDEX = {}


def _locate(decoded, frame):
    """(index, x offset, flipped) of `frame` as a full-height crop of a decoded frame."""
    _cache = _CROP_INDEX
    size = frame.shape[1]
    key = (id(decoded), size)
    if key not in _cache:
        # First rows of every possible crop, to find candidates quickly.
        _cache[key] = {}
        for index in range(len(decoded)):
            for x in range(decoded.shape[2] - size + 1):
                _cache[key].setdefault(decoded[index, 0, x : x + size].tobytes(), []).append(
                    (index, x)
                )
    for flipped in (False, True):
        f = np.ascontiguousarray(frame[:, ::-1] if flipped else frame)
        for index, x in _cache[key].get(f[0].tobytes(), []):
            if np.array_equal(decoded[index, :, x : x + size], f):
                return index, x, flipped
    return None


def test_train_clips_are_windows_crops_and_flips_of_the_video(videos, decoded):
    # Short side jitter fixed at the native 256 and a 256 crop: no resize, so
    # each frame must be a crop of a decoded frame; the indices must form a
    # PySlowFast window (8x8 at 30 fps: offsets 0, 9, ..., 63 from its start).
    ds = data.kinetics_dataset(
        [(str(videos / "k00.mp4"), 0)] * 6,
        "train",
        num_frames=8,
        sampling_rate=8,
        crop_size=256,
        jitter_scales=(256, 256),
        batch_size=1,
        seed=3,
    )
    flips = []
    for clip, _ in _batches(ds):
        found = [_locate(decoded["k00.mp4"], frame) for frame in clip[0]]
        assert all(f is not None for f in found)
        indices = np.array([f[0] for f in found])
        assert len({(f[1], f[2]) for f in found}) == 1  # one crop and flip per clip
        x = found[0][1]
        assert 0 <= x < 340 - 256  # exclusive upper bound
        assert (indices - indices[0]).tolist() == [0, 9, 18, 27, 36, 45, 54, 63]
        flips.append(found[0][2])
    assert 0 < sum(flips) < len(flips)  # both flipped and unflipped clips


def test_test_mode_yields_every_view_with_golden_frames(videos, golden, decoded):
    with open(golden / "sampling" / "test_views.json") as f:
        golden_views = json.load(f)["videos"]
    names = ["k00.mp4", "k03.mp4"]
    ds = data.kinetics_dataset(
        [(str(videos / n), 10 + i) for i, n in enumerate(names)],
        "test",
        num_frames=8,
        sampling_rate=8,
        batch_size=16,
    )
    clips, labels, vids, views = (np.concatenate(x) for x in zip(*_batches(ds)))
    assert clips.shape == (60, 8, 256, 256, 3) and clips.dtype == np.uint8
    assert vids.tolist() == [0] * 30 + [1] * 30
    assert labels.tolist() == [10] * 30 + [11] * 30
    assert views.tolist() == list(range(30)) * 2
    for k in range(60):
        name = names[vids[k]]
        temporal, spatial = divmod(int(views[k]), 3)
        frames = decoded[name][golden_views[name]["views_8x8"][temporal]]
        y, x = transforms.uniform_crop_offset(256, 340, 256, spatial)
        np.testing.assert_array_equal(clips[k], frames[:, y : y + 256, x : x + 256])


def test_test_mode_resizes_and_single_centre_crop(videos):
    ds = data.kinetics_dataset(
        [(str(videos / "bikes.mp4"), 4)],
        "test",
        num_frames=4,
        sampling_rate=8,
        crop_size=64,
        num_temporal_views=2,
        num_spatial_crops=1,
        batch_size=8,
    )
    clips, labels, vids, views = _batches(ds)[0]
    assert clips.shape == (2, 4, 64, 64, 3) and views.tolist() == [0, 1]
    frames, table = video.read_test_views(
        videos / "bikes.mp4",
        4,
        8,
        num_views=2,
        convert=lambda f: transforms.resize_short_side(f, 64, exact=True),
    )
    h, w = frames.shape[1:3]
    assert (h, w) == transforms.short_side_scale_size(272, 640, 64)
    y, x = transforms.uniform_crop_offset(h, w, 64, 1)
    for t in range(2):
        np.testing.assert_array_equal(clips[t], frames[table[t]][:, y : y + 64, x : x + 64])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mode="eval"), "Received: mode='eval'"),
        (dict(mode="train", crop_size=300), "jitter_scales"),
        (dict(mode="test", num_spatial_crops=2), "Received: num_spatial_crops=2"),
        (dict(mode="train", on_error="ignore"), "Received: on_error='ignore'"),
        (dict(mode="train", num_frames=0), "Received: num_frames=0"),
        (dict(mode="train", batch_size=-1), "Received: batch_size=-1"),
        (dict(mode="train", jitter_scales=256), "Received: jitter_scales=256"),
        (dict(mode="train", decode_threads=-2), "Received: decode_threads=-2"),
    ],
)
def test_argument_errors(entries, kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.kinetics_dataset(entries, **kwargs)


def test_seed_type_error(entries):
    with pytest.raises(TypeError, match="Received: seed='1'"):
        data.kinetics_dataset(entries, "train", seed="1")


@pytest.mark.parametrize("mode", ["train", "test"])
def test_process_exits_with_a_live_iterator(videos, tmp_path, mode):
    # An iterator still running its decode calls when Python exits must not hang the exit.
    list_file = tmp_path / "list.txt"
    list_file.write_text(
        "\n".join(f"{videos / name} 0" for name in ["bikes.mp4", "k00.mp4", "k03.mp4"] * 3)
    )
    script = tmp_path / "live_iterator.py"
    script.write_text(
        "import sys\n"
        "from keras_slowfast.data import kinetics_dataset\n"
        f"ds = kinetics_dataset({str(list_file)!r}, mode={mode!r}, num_frames=8,\n"
        "    sampling_rate=2, crop_size=64, jitter_scales=(64, 80), batch_size=2).repeat()\n"
        "it = iter(ds)\n"
        "next(it)\n"
        "print('first batch', flush=True)\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pythonpath = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=pythonpath)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "first batch" in result.stdout
