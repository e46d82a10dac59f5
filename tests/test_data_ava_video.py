"""Frames of a video at 30 fps: FFmpeg's own `fps` filter and decode timestamps as oracles."""

import fractions

import av
import numpy as np
import pytest

from keras_slowfast.data import ava_video, video

NAMES = ("bikes.mp4", "k00.mp4", "k03.mp4")


def _plain_decode(path):
    """Every decoded frame (RGB) and its timestamp, with plain PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, pts = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            pts.append(frame.pts)
        return np.stack(frames), pts, fractions.Fraction(stream.time_base)


def _ffmpeg_fps_filter(path, fps):
    """The frames FFmpeg's `fps` filter outputs (default options), run through libavfilter."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        graph = av.filter.Graph()
        source = graph.add_buffer(template=stream)
        fps_filter = graph.add("fps", str(fps))
        sink = graph.add("buffersink")
        source.link_to(fps_filter)
        fps_filter.link_to(sink)
        graph.configure()

        def drain():
            while True:
                try:
                    frame = graph.pull()
                except (BlockingIOError, av.error.EOFError):
                    return
                out.append(frame.to_ndarray(format="rgb24"))

        for frame in container.decode(stream):
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
    return np.stack(out)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fps", [30, 12])
def test_all_frames_equal_ffmpeg_fps_filter(videos, name, fps):
    expected = _ffmpeg_fps_filter(videos / name, fps)
    assert ava_video.count_frames_at_fps(videos / name, fps=fps) == len(expected)
    got = [(i, f) for i, f in ava_video.iter_frames_at_fps(videos / name, fps=fps)]
    assert [i for i, _ in got] == list(range(len(expected)))
    np.testing.assert_array_equal(np.stack([f for _, f in got]), expected)


@pytest.mark.parametrize("name", NAMES)
def test_read_frames_equal_ffmpeg_fps_filter(videos, name):
    expected = _ffmpeg_fps_filter(videos / name, 30)
    rng = np.random.default_rng(0)
    # Unsorted with repeats; near the start (decoded from the start) and late (after a seek).
    for indices in (
        [0],
        [5, 3, 3, 40, 0],
        rng.integers(0, len(expected), size=20),
        list(range(236, 300, 2)),
        [299, 150, 150, 299],
    ):
        got = ava_video.read_frames_at_fps(videos / name, indices)
        assert got.dtype == np.uint8 and got.shape == (len(indices),) + expected.shape[1:]
        np.testing.assert_array_equal(got, expected[np.asarray(indices)])


def _sources_from_timestamps(pts, time_base, fps, end):
    """Which decoded frame each 30 fps frame shows, from the rule written out in NumPy."""
    t = np.asarray(pts, dtype=np.float64) * float(time_base)
    slots = np.floor(t * fps + 0.5).astype(np.int64)  # nearest, halves up (t >= 0)
    end_slot = int(np.floor(end * float(time_base) * fps + 0.5))
    out = np.arange(slots[0], end_slot)
    return np.searchsorted(slots, out, side="right") - 1


def test_25fps_video_repeats_every_fifth_frame(videos):
    frames, pts, tb = _plain_decode(videos / "bikes.mp4")
    assert len(frames) == 250 and tb == fractions.Fraction(1, 12800)
    sources = _sources_from_timestamps(pts, tb, 30, pts[-1] + 512)
    assert len(sources) == 300
    assert sources[:10].tolist() == [0, 1, 2, 2, 3, 4, 5, 6, 7, 7]
    # 6 output frames per 5 input frames, the third one repeated.
    assert sources.tolist() == [5 * (j // 6) + [0, 1, 2, 2, 3, 4][j % 6] for j in range(300)]
    indices = list(range(12)) + list(range(12, 300, 7))
    got = ava_video.read_frames_at_fps(videos / "bikes.mp4", indices)
    np.testing.assert_array_equal(got, frames[sources[indices]])


def test_30fps_video_is_identity(videos):
    frames, pts, tb = _plain_decode(videos / "k00.mp4")
    sources = _sources_from_timestamps(pts, tb, 30, pts[-1] + 512)
    assert sources.tolist() == list(range(300))
    indices = [299, 0, 31, 30, 30, 200]
    np.testing.assert_array_equal(
        ava_video.read_frames_at_fps(videos / "k00.mp4", indices), frames[indices]
    )
    assert ava_video.count_frames_at_fps(videos / "k00.mp4") == 300


def test_timestamps_helper_agrees(videos):
    # The project's decode_timestamps sees the same frames the rule is applied to.
    info, pts = video.decode_timestamps(videos / "bikes.mp4")
    assert info.fps == 25.0 and len(pts) == 250
    assert ava_video.count_frames_at_fps(videos / "bikes.mp4") == 300
    assert ava_video.count_frames_at_fps(videos / "bikes.mp4", fps=25) == 250


def test_empty_indices(videos):
    got = ava_video.read_frames_at_fps(videos / "k00.mp4", [])
    assert got.shape == (0, 256, 340, 3) and got.dtype == np.uint8


def _audio_only_file(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_bad_files_raise_video_read_error(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    audio = tmp_path / "audio.wav"
    _audio_only_file(audio)
    cases = {
        tmp_path / "missing.mp4": "file not found",
        empty: "file is empty",
        garbage: "not a readable media file",
        audio: "no video stream",
        tmp_path: "not a regular file",
    }
    for path, reason in cases.items():
        for call in (
            lambda p: ava_video.count_frames_at_fps(p),
            lambda p: ava_video.read_frames_at_fps(p, [0]),
            lambda p: list(ava_video.iter_frames_at_fps(p)),
        ):
            with pytest.raises(video.VideoReadError, match=reason) as e:
                call(path)
            assert e.value.path == str(path)


def test_index_past_the_end(videos):
    with pytest.raises(video.VideoReadError, match="no frame 300 at 30 fps"):
        ava_video.read_frames_at_fps(videos / "bikes.mp4", [10, 300])


def test_bad_arguments(videos):
    path = videos / "k00.mp4"
    with pytest.raises(ValueError, match=r"Received: frame_indices=\[-1\]"):
        ava_video.read_frames_at_fps(path, [-1])
    with pytest.raises(TypeError, match="frame_indices"):
        ava_video.read_frames_at_fps(path, [0.5])
    with pytest.raises(TypeError, match="frame_indices"):
        ava_video.read_frames_at_fps(path, [[0, 1]])
    with pytest.raises(ValueError, match="Received: fps=0"):
        ava_video.read_frames_at_fps(path, [0], fps=0)
    with pytest.raises(TypeError, match="Received: fps='30'"):
        ava_video.count_frames_at_fps(path, fps="30")
    with pytest.raises(ValueError, match="Received: timeout=-1"):
        ava_video.count_frames_at_fps(path, timeout=-1)


def test_timeout(videos):
    with pytest.raises(video.VideoReadError, match="timed out"):
        ava_video.read_frames_at_fps(videos / "k00.mp4", [299], timeout=1e-9)
    with pytest.raises(video.VideoReadError, match="timed out"):
        ava_video.count_frames_at_fps(videos / "k00.mp4", timeout=1e-9)


def _variable_rate_video(path, codec):
    """A short video with irregular frame times and a start time of 0.137 s."""
    rng = np.random.default_rng(1)
    tb = fractions.Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = tb
        stream.codec_context.gop_size = 12
        t = 137
        for k in range(120):
            image = np.full((48, 64, 3), (k * 2) % 256, np.uint8)
            image[:, : k % 64] = 255 - k
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = t, tb
            t += int(rng.integers(10, 70))  # 14 to 100 fps
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _ffmpeg_fps_filter_shifted(path, fps):
    """As `_ffmpeg_fps_filter`, with the container start time subtracted as `ffmpeg` does."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = fractions.Fraction(stream.time_base)
        shift = round(fractions.Fraction(container.start_time, 10**6) / tb)
        graph = av.filter.Graph()
        source = graph.add_buffer(template=stream)
        fps_filter = graph.add("fps", str(fps))
        sink = graph.add("buffersink")
        source.link_to(fps_filter)
        fps_filter.link_to(sink)
        graph.configure()

        def drain():
            while True:
                try:
                    frame = graph.pull()
                except (BlockingIOError, av.error.EOFError):
                    return
                out.append(frame.to_ndarray(format="rgb24"))

        for frame in container.decode(stream):
            frame.pts -= shift
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
    return np.stack(out)


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_variable_rate_video_with_start_offset(tmp_path, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} encoder not in this PyAV build")
    path = tmp_path / "vfr.mp4"
    _variable_rate_video(path, codec)
    with av.open(str(path)) as container:
        assert container.start_time > 0
    for fps in (30, 12):
        expected = _ffmpeg_fps_filter_shifted(path, fps)
        count = ava_video.count_frames_at_fps(path, fps=fps)
        assert count == len(expected)
        got = np.stack([f for _, f in ava_video.iter_frames_at_fps(path, fps=fps)])
        np.testing.assert_array_equal(got, expected)
        # Late indices are read after a seek.
        for indices in ([count - 1, 0, 5], list(range(count - 40, count, 3)), [count - 1] * 2):
            np.testing.assert_array_equal(
                ava_video.read_frames_at_fps(path, indices, fps=fps), expected[indices]
            )
