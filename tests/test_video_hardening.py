"""A stalled source never hangs the readers: real HTTP servers on 127.0.0.1, real videos.

The servers accept the connection and then (a) send nothing, or (b) send the first part of
a real video under its full Content-Length and stop without closing. Readers given
`timeout=2` must fail with a `VideoReadError` that names the URL and says it timed out,
within the timeout plus a margin; the Kinetics dataset skips (and counts) or raises.
Also the seeded fuzz smoke run of `video_fuzz` (the full run is benchmarks/fuzz_videos.py).
"""

import http.server
import re
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_slowfast import data
from keras_slowfast.data import video

TIMEOUT = 2.0
# Opening, thread start-up and a loaded 2-core machine; a hang would take minutes.
MARGIN = 3.0
SMALL = dict(num_frames=4, sampling_rate=4, crop_size=32, jitter_scales=(32, 40))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        name = self.path.lstrip("/")
        server.requests.append((name, self.headers.get("Range")))
        mode, _, key = name.partition("/")
        body = server.files.get(key)
        if body is None:
            self.send_error(404)
            return
        if mode == "silent":  # accept, read the request, answer nothing
            server.stop.wait(60)
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
        if mode == "full":
            self.wfile.write(body[start:])
            return
        # "stall": the bytes before a third of the file, then silence with the connection
        # open (a request starting past that point gets its headers only).
        self.wfile.write(body[start : len(body) // 3])
        self.wfile.flush()
        server.stop.wait(60)


class StallServer:
    """Serves `files` at `/{mode}/{name}`, `mode` one of `full`, `silent`, `stall`."""

    def __init__(self, files):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.files = dict(files)
        self.server.requests = []
        self.server.stop = threading.Event()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        # Releases the stalled handlers, then stops the accept loop and joins it.
        self.server.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def _faststart_copy(src, dst):
    """Remuxes a video with its index (moov) first, as streamed files are."""
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
def server(tmp_path_factory, videos):
    fast = tmp_path_factory.mktemp("stall") / "k03_fast.mp4"
    _faststart_copy(videos / "k03.mp4", fast)
    srv = StallServer(
        {
            "k03_fast.mp4": fast.read_bytes(),
            # Index last: a stall before the index fails while opening.
            "k00.mp4": (videos / "k00.mp4").read_bytes(),
        }
    )
    try:
        yield srv
    finally:
        before = threading.active_count()
        srv.close()
        assert not srv.thread.is_alive()
        # The handler threads of the stalled requests end once released.
        deadline = time.monotonic() + 10
        while threading.active_count() >= before and time.monotonic() < deadline:
            time.sleep(0.05)


def test_a_url_is_read_like_the_file(server, videos):
    # Plumbing check of the URL path: the same bytes give the same clip.
    url = f"{server.url}/full/k03_fast.mp4"
    clip = video.read_clip(url, 8, 8, view_index=3, timeout=30)
    np.testing.assert_array_equal(clip, video.read_clip(videos / "k03.mp4", 8, 8, view_index=3))


@pytest.mark.parametrize(
    "reader,mode,name",
    [
        ("read_clip", "silent", "k03_fast.mp4"),  # nothing after the request: opening stalls
        ("read_clip", "stall", "k00.mp4"),  # index last, past the stall: stalls while opening
        ("read_clip", "stall", "k03_fast.mp4"),  # index first: stalls seeking to a late clip
        ("read_test_views", "stall", "k03_fast.mp4"),  # index first: stalls while decoding
    ],
)
def test_a_stalled_source_times_out(server, mode, name, reader):
    url = f"{server.url}/{mode}/{name}"
    start = time.monotonic()
    with pytest.raises(video.VideoReadError, match="timed out") as info:
        if reader == "read_clip":
            video.read_clip(url, 8, 8, view_index=9, timeout=TIMEOUT)
        else:
            video.read_test_views(url, 8, 8, timeout=TIMEOUT)
    elapsed = time.monotonic() - start
    print(f"{reader} {mode}/{name}: VideoReadError after {elapsed:.2f} s")
    assert info.value.path == url and url in str(info.value)
    assert elapsed < TIMEOUT + MARGIN


def test_probe_and_count_frames_time_out(server):
    url = f"{server.url}/silent/k03_fast.mp4"
    for call in (
        lambda: video.probe_video(url, timeout=TIMEOUT),
        lambda: data.count_frames_at_fps(url, timeout=TIMEOUT),
    ):
        start = time.monotonic()
        with pytest.raises(video.VideoReadError, match="timed out"):
            call()
        assert time.monotonic() - start < TIMEOUT + MARGIN


@pytest.mark.parametrize("mode", ["val", "test"])
def test_dataset_skips_a_stalled_source(server, videos, mode):
    # (A random clip early in stall/k03_fast.mp4 would decode before the stall.)
    stalled = [f"{server.url}/silent/k03_fast.mp4", f"{server.url}/stall/k00.mp4"]
    good = str(videos / "k00.mp4")
    counter = data.DecodeErrorCounter()
    ds = data.kinetics_dataset(
        [(stalled[0], 1), (good, 0), (stalled[1], 2)],
        mode,
        error_counter=counter,
        num_temporal_views=1,
        num_spatial_crops=1,
        batch_size=8,
        timeout=TIMEOUT,
        **SMALL,
    )
    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="Skipping video") as record:
        labels = np.concatenate([b[1].numpy() for b in ds])
    elapsed = time.monotonic() - start
    print(f"dataset ({mode}) with 2 stalled sources: {elapsed:.2f} s")
    assert labels.tolist() == [0]
    assert counter.count == 2
    assert sorted(p for p, _ in counter.failures) == sorted(stalled)
    assert all("timed out" in reason for _, reason in counter.failures)
    assert any(stalled[0] in str(w.message) for w in record)
    # The videos decode in parallel, so two stalls cost about one timeout.
    assert elapsed < 2 * TIMEOUT + MARGIN


def test_dataset_raises_on_a_stalled_source(server):
    # A source that never answers: whichever clip the val sampler draws, the read stalls.
    # (A mid-file stall is met only by clips reaching past it; the readers' tests cover it.)
    url = f"{server.url}/silent/k03_fast.mp4"
    ds = data.kinetics_dataset([(url, 0)], "val", on_error="raise", timeout=TIMEOUT, **SMALL)
    start = time.monotonic()
    with pytest.raises(tf.errors.InvalidArgumentError, match="timed out") as info:
        next(iter(ds))
    assert url in str(info.value) and "VideoReadError" in str(info.value)
    assert time.monotonic() - start < TIMEOUT + MARGIN


def test_fuzzed_videos_fail_cleanly(tmp_path, videos):
    """A seeded few hundred mutated clips: no crash, no hang, every failure clear or counted."""
    import video_fuzz

    sources = video_fuzz.prepare_sources(str(videos), str(tmp_path / "sources"))
    # The readers are cheap, the pipelines (tf.data, a model, JPEG encoding) less so.
    weights = {t: 4 for t in video_fuzz.READER_TARGETS}
    weights.update({t: 1 for t in video_fuzz.PIPELINE_TARGETS})
    cases = video_fuzz.make_cases(sources, 160, seed=2024, target_weights=weights)
    start = time.monotonic()
    results = video_fuzz.run_cases(cases, sources, str(tmp_path / "cases"), timeout=5.0)
    summary = video_fuzz.summarize(results)
    print(f"fuzz: {summary} in {time.monotonic() - start:.1f} s")
    bad = [r for r in results if r["outcome"] in ("crash", "hang")]
    assert not bad, "\n".join(
        f"{r['source']} {r['mutator']} -> {r['target']}: {r['outcome']}\n{r['detail']}"
        for r in bad[:5]
    )
    assert summary["cases"] == len(cases)
    # The mutations do break files, and the skipping targets do skip.
    assert summary["error"] > 0 and summary["skip"] > 0 and summary["ok"] > 0
    assert {r["mutator"] for r in results} == set(video_fuzz.MUTATORS)
    for r in results:
        if r["mutator"] == "unchanged" and r["source"] != "audio_only.mp4":
            assert r["outcome"] == "ok", r
        if r["source"] == "audio_only.mp4":
            assert r["outcome"] in ("error", "skip"), r
    # Each case is bounded by the reader timeout (5 s) plus the work of one small clip.
    assert summary["max_seconds"] < 30
