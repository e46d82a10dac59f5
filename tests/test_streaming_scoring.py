"""Streaming sliding-window inference (`keras_slowfast.inference.timeline`).

The oracle for the clips is written here: every frame decoded with PyAV directly
(`frame.to_ndarray(format="rgb24")`), the windows and frame indices from PySlowFast's test
clip rule as a NumPy formula (clip of `sampling_rate * num_frames / 30 * fps` native frames,
`linspace(start, start + clip_size - 1, num_frames)`, clamped to `[0, N - 1]`, truncated),
placed by the window centre. The last step, the short-side resize, calls the package's
`resize_short_side` (OpenCV bilinear); the centre crop offsets are computed here.
"""

import csv
import http.server
import math
import os
import re
import threading
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import av  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_slowfast import hub  # noqa: E402
from keras_slowfast.data import VideoReadError  # noqa: E402
from keras_slowfast.data.transforms import resize_short_side  # noqa: E402
from keras_slowfast.inference import (  # noqa: E402
    Window,
    timeline,
    window_clips,
    window_frame_indices,
)

SLOWFAST = "slowfast_8x8_r50"  # 32 frames every 2 at 30 fps, 256 crop


# --------------------------------------------------------------------------- oracle


def decode_all(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return fps, frames


def expected_windows(n_frames, fps, stride, num_frames, sampling_rate):
    """(k, centre, start, end, indices) of every window, from the rule written here."""
    out = []
    k = 0
    while k == 0 or (k + 0.5) * stride * fps < n_frames:
        centre = (k + 0.5) * stride
        clip_size = sampling_rate * num_frames / 30.0 * fps
        first = centre * fps - clip_size / 2
        values = np.linspace(first, first + clip_size - 1, num_frames)
        indices = np.clip(values, 0, n_frames - 1).astype(np.int64)  # astype truncates
        out.append((k, centre, k * stride, min((k + 1) * stride, n_frames / fps), indices))
        k += 1
    return out


def centre_crop(frames, size):
    frames = resize_short_side(np.stack(frames), size)
    h, w = frames.shape[1:3]
    y, x = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
    return frames[:, y : y + size, x : x + size]


@pytest.fixture(scope="module")
def narrow():
    # A narrow Slow 8x8 (8 frames every 8): the same window rule as SlowFast's clip, cheaper.
    keras.utils.set_random_seed(1)
    return hub.from_preset("slow_8x8_r50", load_weights=False, width_per_group=8, classes=7)


# --------------------------------------------------------------------------- pure indices


def test_window_frame_indices_hand_derived_30fps():
    # 8 frames every 8 at 30 fps on a 30 fps video: a 64-frame clip, step 63 / 7 = 9.
    # Centre 0.5 s = frame 15: start 15 - 32 = -17 -> -17, -8, 1, ..., 46; clamped at 0.
    assert window_frame_indices(0.5, 30, 8, 8, total_frames=300).tolist() == [
        0, 0, 1, 10, 19, 28, 37, 46,
    ]  # fmt: skip
    # Centre 9.5 s = frame 285 of 300: 253, ..., 307, 316 clamped to 299.
    assert window_frame_indices(9.5, 30, 8, 8, total_frames=300).tolist() == [
        253, 262, 271, 280, 289, 298, 299, 299,
    ]  # fmt: skip
    # Unknown length: only the start is clamped.
    assert window_frame_indices(9.5, 30, 8, 8).tolist()[-2:] == [307, 316]
    # 32 frames every 2: the same 64-frame span, step 63 / 31; centre 1.5 s -> 13 ... 76.
    got = window_frame_indices(1.5, 30, 32, 2, total_frames=300)
    assert got[0] == 13 and got[-1] == 76 and got[1] == 15  # 13 + 2.032


def test_window_frame_indices_hand_derived_25fps():
    # At 25 fps the 8x8 clip spans 64 / 30 * 25 = 53.33 native frames, step 52.33 / 7.
    # Centre 0.5 s = 12.5: start -14.17 -> -14.17, -6.69, 0.79, 8.26, 15.74, 23.21, 30.69, 38.17
    assert window_frame_indices(0.5, 25, 8, 8, total_frames=250).tolist() == [
        0, 0, 0, 8, 15, 23, 30, 38,
    ]  # fmt: skip
    # Centre 9.5 s = 237.5: 210.83, 218.31, 225.79, 233.26, 240.74, 248.21, 255.69, 263.17
    assert window_frame_indices(9.5, 25, 8, 8, total_frames=250).tolist() == [
        210, 218, 225, 233, 240, 248, 249, 249,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(window_stride_seconds=0), "window_stride_seconds"),
        (dict(window_stride_seconds=float("nan")), "window_stride_seconds"),
        (dict(batch_size=0), "batch_size"),
        (dict(num_frames=0), "num_frames"),
        (dict(timeout=-1), "timeout"),
    ],
)
def test_bad_arguments_name_the_argument(narrow, videos, kwargs, name):
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
        timeline(narrow, str(videos / "k00.mp4"), SLOWFAST, **kwargs)


def test_without_preset_needs_clip_settings(narrow, videos):
    with pytest.raises(ValueError, match="num_frames"):
        timeline(narrow, str(videos / "k00.mp4"))


# --------------------------------------------------------------------------- clips


@pytest.mark.parametrize("name, stride", [("k00.mp4", 1.0), ("bikes.mp4", 1.0), ("k03.mp4", 3.0)])
def test_clips_equal_independently_decoded_frames(videos, name, stride):
    fps, frames = decode_all(videos / name)
    want = expected_windows(len(frames), fps, stride, 32, 2)
    stats = {}
    got = list(window_clips(str(videos / name), SLOWFAST, window_stride_seconds=stride,
                            stats=stats))  # fmt: skip
    assert len(got) == len(want)
    for (window, clip), (k, centre, start, end, indices) in zip(got, want):
        assert isinstance(window, Window) and window.scores is None
        assert (window.index, window.time, window.start, window.end) == (k, centre, start, end)
        assert window.frame_indices.dtype == np.int64
        np.testing.assert_array_equal(window.frame_indices, indices)
        expected = centre_crop([frames[i] for i in indices], 256)
        assert clip.dtype == np.uint8 and clip.shape == (32, 256, 256, 3)
        np.testing.assert_array_equal(clip, expected)
    # PySlowFast clamps the first and last clips: the first frame, and the last, repeat.
    first, last = got[0][0].frame_indices, got[-1][0].frame_indices
    if stride == 1.0:  # the first clip starts before frame 0, the last ends past the end
        assert first[0] == first[1] == 0
        assert last[-1] == last[-2] == len(frames) - 1
    # One sequential decode: every frame once, whatever the overlap of the windows.
    assert stats["decoded_frames"] == stats["total_frames"] == len(frames)
    assert stats["max_buffered_frames"] <= 64 * 25 / 30 + 64 / stride


def test_scores_equal_clips_scored_one_by_one(narrow, videos):
    # A 128 crop (the model is fully convolutional) keeps this quick; 3 windows in
    # batches of 2 and 1.
    fps, frames = decode_all(videos / "k03.mp4")
    want = expected_windows(len(frames), fps, 3.3, 8, 8)
    got = list(timeline(narrow, str(videos / "k03.mp4"), "slow_8x8_r50",
                        window_stride_seconds=3.3, batch_size=2, crop_size=128))  # fmt: skip
    assert [w.index for w in got] == [0, 1, 2]
    for w, (_, centre, start, end, indices) in zip(got, want):
        clip = centre_crop([frames[i] for i in indices], 128)
        probs = np.asarray(narrow.predict_on_batch(clip[None]))[0]
        assert w.scores.dtype == np.float32 and w.scores.shape == (7,)
        np.testing.assert_allclose(w.scores, probs, rtol=0, atol=1e-5)
        assert (w.time, w.start, w.end) == (centre, start, end)


def test_video_shorter_than_half_a_stride_has_one_window(videos):
    fps, frames = decode_all(videos / "k00.mp4")  # 10 s
    got = list(window_clips(str(videos / "k00.mp4"), SLOWFAST, window_stride_seconds=30.0))
    assert len(got) == 1
    window, _ = got[0]
    assert (window.time, window.start, window.end) == (15.0, 0.0, 10.0)
    # The whole clip lies past the last frame: every index clamps to it.
    assert window.frame_indices.tolist() == [len(frames) - 1] * 32


# --------------------------------------------------------------------------- streams


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode, _, key = self.path.lstrip("/").partition("/")
        body = self.server.files.get(key)
        if body is None:
            self.send_error(404)
            return
        if mode == "silent":
            self.server.stop.wait(30)
            return
        if mode == "live":
            # A live source: no length, no ranges; the end is the connection closing.
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
            return
        start = 0
        match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body[start:])


@pytest.fixture(scope="module")
def server(tmp_path_factory, videos):
    folder = tmp_path_factory.mktemp("streams")
    ts = folder / "k03.ts"
    _remux(videos / "k03.mp4", ts, "mpegts")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    srv.daemon_threads = True
    srv.files = {"k00.mp4": (videos / "k00.mp4").read_bytes(), "k03.ts": ts.read_bytes()}
    srv.stop = threading.Event()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    srv.ts_path = ts
    yield srv
    srv.stop.set()
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def _remux(src, dst, fmt):
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)


def _same_windows(a, b):
    assert len(a) == len(b)
    for (wa, ca), (wb, cb) in zip(a, b):
        assert (wa.index, wa.time, wa.start, wa.end) == (wb.index, wb.time, wb.start, wb.end)
        np.testing.assert_array_equal(wa.frame_indices, wb.frame_indices)
        np.testing.assert_array_equal(ca, cb)


def test_stream_url_gives_the_windows_of_the_file(server, videos):
    from_file = list(window_clips(str(videos / "k00.mp4"), SLOWFAST, window_stride_seconds=2.0))
    from_url = list(
        window_clips(
            f"{server.url}/full/k00.mp4", SLOWFAST, window_stride_seconds=2.0, timeout=60
        )  # fmt: skip
    )
    _same_windows(from_file, from_url)


def test_live_stream_of_unknown_length(server):
    # MPEG-TS has no frame count or duration in a header: the length is found at the end.
    with av.open(str(server.ts_path)) as c:
        assert c.streams.video[0].frames == 0
    fps, frames = decode_all(server.ts_path)
    want = expected_windows(len(frames), fps, 1.0, 32, 2)
    stats = {}
    got = list(window_clips(f"{server.url}/full/k03.ts", SLOWFAST, stats=stats))
    assert len(got) == len(want)
    for (window, clip), (_, centre, _, end, indices) in zip(got, want):
        np.testing.assert_array_equal(window.frame_indices, indices)
        assert (window.time, window.end) == (centre, end)
        np.testing.assert_array_equal(clip, centre_crop([frames[i] for i in indices], 256))
    assert stats["total_frames"] == len(frames)


def test_live_stream_ending_with_the_connection_keeps_its_last_windows(server):
    # No Content-Length: FFmpeg reports the closed connection as an I/O error at the end.
    fps, frames = decode_all(server.ts_path)
    want = expected_windows(len(frames), fps, 1.0, 32, 2)
    with pytest.warns(UserWarning, match="the stream ended with an error after 300 frames"):
        got = list(window_clips(f"{server.url}/live/k03.ts", SLOWFAST, timeout=60))
    assert [w.index for w, _ in got] == [k for k, *_ in want]
    for (window, clip), (*_, indices) in zip(got, want):
        np.testing.assert_array_equal(window.frame_indices, indices)
        np.testing.assert_array_equal(clip, centre_crop([frames[i] for i in indices], 256))


def test_stalled_stream_raises_instead_of_hanging(server):
    start = time.monotonic()
    with pytest.raises(VideoReadError, match="timed out"):
        list(window_clips(f"{server.url}/silent/k00.mp4", SLOWFAST, read_timeout=2.0))
    assert time.monotonic() - start < 15


def test_windows_come_out_before_the_stream_ends(videos):
    # A generator: the first window is out after decoding about its clip's frames.
    stats = {}
    gen = window_clips(str(videos / "k00.mp4"), SLOWFAST, stats=stats)
    window, _ = next(gen)
    assert window.index == 0
    assert stats["decoded_frames"] <= int(window.frame_indices.max()) + 1 + 30
    gen.close()


# --------------------------------------------------------------------------- memory


def make_video(path, seconds, fps=30, width=64, height=48):
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "250"}
        for i in range(int(seconds * fps)):
            img = np.stack(
                [(xx + 3 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (5 * i) % 256)], -1
            ).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _tiny_model(size, frames):
    inputs = keras.Input((frames, size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))


def _traced_peak(model, path, **kwargs):
    stats = {}
    tracemalloc.start()
    try:
        count = sum(1 for _ in timeline(model, str(path), stats=stats, **kwargs))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, count, stats


def _memory_check(tmp_path, minutes, **kwargs):
    model = _tiny_model(kwargs["crop_size"], kwargs["num_frames"])
    model.predict_on_batch(np.zeros((8, kwargs["num_frames"], *(kwargs["crop_size"],) * 2, 3)))
    peaks = []
    for m in minutes:
        path = tmp_path / f"{m}min.mp4"
        make_video(path, 60 * m, **kwargs.pop("video", {}))
        peak, count, stats = _traced_peak(model, path, **kwargs)
        assert count == 60 * m
        # Frames decoded per window: the stride (30 frames), not the 64-frame window.
        assert stats["decoded_frames"] / count == 30
        peaks.append(peak)
        print(f"{m} min: {count} windows, traced peak {peak / 2**20:.2f} MiB, stats {stats}")
    return peaks


def test_memory_does_not_grow_with_length(tmp_path):
    # 1 and 4 minutes at 64x48: the traced peak (NumPy frames, clips, batches) is the same.
    kw = dict(num_frames=32, sampling_rate=2, crop_size=64, batch_size=8)
    short, long = _memory_check(tmp_path, (1, 4), **kw)
    assert long <= short * 1.05 + 256 * 1024


@pytest.mark.large
def test_memory_does_not_grow_with_length_2_and_10_minutes(tmp_path):
    # 320x240, the preset's 256 crop: as the benchmark, with a tiny model.
    kw = dict(num_frames=32, sampling_rate=2, crop_size=256, batch_size=8)
    short, long = _memory_check(tmp_path, (2, 10), video=dict(width=320, height=240), **kw)
    assert long <= short * 1.05 + 1024 * 1024


# --------------------------------------------------------------------------- CLI


def test_cli_timeline_csv_matches_the_api(narrow, tmp_path, videos, capsys):
    from keras_slowfast import cli

    model = narrow
    weights = tmp_path / "narrow.weights.h5"
    model.save_weights(weights)
    out = tmp_path / "timeline.csv"
    video = str(videos / "bikes.mp4")
    status = cli.main(
        [
            "timeline",
            video,
            "--model",
            "slow_8x8_r50",
            "--weights",
            str(weights),
            "--width-per-group",
            "8",
            "--classes",
            "7",
            "--stride",
            "4",
            "--top",
            "2",
            "--csv",
            str(out),
            "--quiet",
        ]  # fmt: skip
    )
    assert status == 0
    printed = capsys.readouterr().out
    api = list(timeline(model, video, "slow_8x8_r50", window_stride_seconds=4.0))
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    names = [f"class_{i}" for i in range(7)]
    assert rows[0] == ["window", "start", "end", "time", "top_class", "top_score", *names]
    assert len(rows) - 1 == len(api) == 2  # centres 2 and 6 s of 10 s
    for row, w in zip(rows[1:], api):
        assert int(row[0]) == w.index
        np.testing.assert_allclose([float(v) for v in row[1:4]], [w.start, w.end, w.time])
        assert row[4] == names[int(w.scores.argmax())]
        np.testing.assert_allclose([float(v) for v in row[6:]], w.scores, rtol=1e-5)
    assert len([line for line in printed.splitlines() if "class_" in line]) == 2
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_cli_timeline_plot_and_annotated_video(narrow, tmp_path, videos):
    pytest.importorskip("matplotlib")
    import av
    import cv2

    from keras_slowfast import cli

    weights = tmp_path / "narrow.weights.h5"
    narrow.save_weights(weights)
    plot, annotated = tmp_path / "timeline.png", tmp_path / "annotated.mp4"
    video = str(videos / "k00.mp4")
    args = ["timeline", video, "--model", "slow_8x8_r50", "--weights", str(weights),
            "--width-per-group", "8", "--classes", "7", "--stride", "5", "--quiet",
            "--plot", str(plot), "--annotate", str(annotated)]  # fmt: skip
    assert cli.main(args) == 0
    image = cv2.imread(str(plot))
    assert image is not None and image.ndim == 3 and image.std() > 0
    with av.open(video) as src, av.open(str(annotated)) as out:
        a = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
        b = [f.to_ndarray(format="rgb24") for f in out.decode(video=0)]
    assert len(b) == len(a) == 300 and b[0].shape == a[0].shape
    # The labels are drawn at the top left of every frame; the rest is the re-encoded input.
    diff = np.abs(np.stack(a[::50]).astype(int) - np.stack(b[::50]).astype(int)).mean(-1)
    assert diff[:, :40, :100].mean() > 10 * diff[:, 120:, 200:].mean()
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_cli_classify_annotate_draws_the_timeline_windows(narrow, tmp_path, videos, capsys):
    import av

    from keras_slowfast import cli

    weights = tmp_path / "narrow.weights.h5"
    narrow.save_weights(weights)
    annotated = tmp_path / "annotated.mp4"
    video = str(videos / "k03.mp4")
    args = ["classify", video, "--model", "slow_8x8_r50", "--weights", str(weights),
            "--width-per-group", "8", "--classes", "7", "--views", "1", "--stride", "5",
            "--annotate", str(annotated)]  # fmt: skip
    assert cli.main(args) == 0
    assert f"written: {annotated}" in capsys.readouterr().out
    with av.open(str(annotated)) as out:
        stream = out.streams.video[0]
        frames = sum(1 for _ in out.decode(video=0))
        assert (stream.width, stream.height, stream.average_rate) == (340, 256, 30)
    assert frames == 300
