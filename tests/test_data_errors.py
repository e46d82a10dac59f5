"""Bad inputs: missing, empty, truncated, non-video, no video stream, too short."""

import shutil
import time
import wave

import numpy as np
import pytest
import tensorflow as tf

from keras_slowfast import data
from keras_slowfast.data import video

SMALL = dict(num_frames=4, sampling_rate=4, crop_size=32, jitter_scales=(32, 40))


def _write_video(path, num_frames, fps=30, size=(64, 48)):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "0"}
        for i in range(num_frames):
            img = np.full((size[1], size[0], 3), 20 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _faststart_copy(src, dst):
    """Remuxes a video with its index (moov) before the data, as streaming files are."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, videos):
    d = tmp_path_factory.mktemp("bad")
    files = {"missing": d / "missing.mp4", "empty": d / "empty.mp4"}
    files["empty"].write_bytes(b"")
    text = d / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    files["not_video"] = text
    audio = d / "audio.wav"
    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(8000, np.int16).tobytes())
    files["no_video_stream"] = audio
    raw = (videos / "k00.mp4").read_bytes()
    # Index at the end (as in k00.mp4): truncation loses the index.
    files["truncated_index_last"] = d / "trunc_end.mp4"
    files["truncated_index_last"].write_bytes(raw[: len(raw) // 2])
    # Index first: the header promises 300 frames, the data stop half way.
    fast = d / "fast.mp4"
    _faststart_copy(videos / "k00.mp4", fast)
    fast_raw = fast.read_bytes()
    files["truncated_index_first"] = d / "trunc_start.mp4"
    files["truncated_index_first"].write_bytes(fast_raw[: len(fast_raw) // 2])
    files["directory"] = d / "folder.mp4"
    files["directory"].mkdir()
    return files


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("missing", "file not found"),
        ("empty", "file is empty"),
        ("not_video", "not a readable media file"),
        ("no_video_stream", "no video stream"),
        ("truncated_index_last", "not a readable media file"),
        ("truncated_index_first", "decoding failed|no frame"),
        ("directory", "not a regular file"),
    ],
)
def test_read_errors_name_the_file(bad_files, kind, reason):
    path = bad_files[kind]
    with pytest.raises(ValueError, match=reason) as info:
        video.read_test_views(path, 8, 8)
    assert isinstance(info.value, video.VideoReadError)
    assert str(path) in str(info.value) and "Received: video_path=" in str(info.value)
    with pytest.raises(video.VideoReadError):
        video.clip_frame_indices(path, 8, 8, view=9)


def test_truncated_file_still_serves_clips_before_the_cut(bad_files, videos):
    # PySlowFast stops decoding after the clip window, so an early clip of a
    # truncated file decodes; so does ours, and it is the same clip.
    path = bad_files["truncated_index_first"]
    clip = video.read_clip(path, 8, 8, view_index=0)
    np.testing.assert_array_equal(clip, video.read_clip(videos / "k00.mp4", 8, 8, view_index=0))


def test_short_video_repeats_its_last_frame(tmp_path):
    path = tmp_path / "short.mp4"
    _write_video(path, 10)
    clip = video.read_clip(path, 8, 8, view_index=0)  # spans 64 frames, video has 10
    levels = clip.reshape(8, -1).mean(axis=1)
    np.testing.assert_allclose(levels, [0, 180, 180, 180, 180, 180, 180, 180], atol=2)
    assert video.clip_frame_indices(path, 8, 8, view=5) == [0, 9, 9, 9, 9, 9, 9, 9]
    ds = data.kinetics_dataset(
        [(str(path), 1)], "test", num_frames=8, sampling_rate=8, crop_size=48, batch_size=30
    )
    clips, labels, _, _ = next(iter(ds))
    assert clips.shape == (30, 8, 48, 48, 3)


def test_decoding_is_bounded_by_the_timeout(videos):
    with pytest.raises(video.VideoReadError, match="timed out"):
        video.read_test_views(videos / "k00.mp4", 8, 8, timeout=0)


@pytest.mark.parametrize("mode", ["train", "test"])
def test_skip_warns_counts_and_keeps_going(bad_files, videos, mode):
    # (A train clip early in the truncated file decodes; see above. Test mode
    # needs the whole file, so there it fails.)
    kinds = [k for k in bad_files if mode == "test" or k != "truncated_index_first"]
    good = str(videos / "k03.mp4")
    entries = [(good, 0)] + [(str(bad_files[k]), 1) for k in kinds] + [(good, 2)]
    counter = data.DecodeErrorCounter()
    ds = data.kinetics_dataset(
        entries,
        mode,
        batch_size=64,
        error_counter=counter,
        seed=0,
        num_temporal_views=2,
        num_spatial_crops=1,
        drop_remainder=False,
        **SMALL,
    )
    assert ds.error_counter is counter
    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="Skipping video") as record:
        batches = [tuple(t.numpy() for t in b) for b in ds]
    assert time.monotonic() - start < 120
    labels = np.concatenate([b[1] for b in batches])
    assert sorted(labels.tolist()) == ([0, 2] if mode == "train" else [0, 0, 2, 2])
    assert counter.count == len(kinds)
    failed = {path for path, _ in counter.failures}
    for kind in kinds:
        assert str(bad_files[kind]) in failed
        assert any(str(bad_files[kind]) in str(w.message) for w in record)
    counter.reset()
    assert counter.count == 0 and counter.failures == []


def test_raise_names_the_file(bad_files, videos):
    good = str(videos / "k03.mp4")
    with pytest.raises(ValueError, match="not found.*missing.mp4"):
        data.kinetics_dataset(
            [(good, 0), (str(bad_files["missing"]), 1)], "train", on_error="raise", **SMALL
        )
    for kind in ("not_video", "empty", "no_video_stream"):
        ds = data.kinetics_dataset([(str(bad_files[kind]), 1)], "val", on_error="raise", **SMALL)
        # Inside tf.data, TensorFlow turns the ValueError raised by the decoder
        # into InvalidArgumentError and keeps its message.
        with pytest.raises(tf.errors.InvalidArgumentError, match="VideoReadError") as info:
            next(iter(ds))
        assert str(bad_files[kind]) in str(info.value)


def test_unknown_errors_are_wrapped(tmp_path, videos):
    # A file that vanishes after the dataset is built is reported like any
    # other unreadable video.
    path = tmp_path / "gone.mp4"
    shutil.copy(videos / "k00.mp4", path)
    counter = data.DecodeErrorCounter()
    ds = data.kinetics_dataset([(str(path), 0)], "val", error_counter=counter, **SMALL)
    path.unlink()
    with pytest.warns(RuntimeWarning, match="gone.mp4"):
        assert list(ds) == []
    assert counter.count == 1
