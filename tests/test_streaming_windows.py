"""The windows of a video and their clips (`keras_slowfast.streaming.windows`).

The clips are checked against the oracle of `streaming_oracle` (frames decoded with PyAV
directly, PySlowFast's test clip rule written with NumPy), also through an HTTP server
(a file with its length, a live source without one, a stalled one).
"""

import http.server
import os
import re
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import av  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from streaming_oracle import centre_crop, decode_all, expected_windows  # noqa: E402

from keras_slowfast.data import VideoReadError  # noqa: E402
from keras_slowfast.streaming import Window, window_clips, window_frame_indices  # noqa: E402

SLOWFAST = "slowfast_8x8_r50"  # 32 frames every 2 at 30 fps, 256 crop


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
