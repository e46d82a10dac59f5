"""Speed and memory of streaming sliding-window inference (`keras_slowfast.inference.timeline`).

Generates long synthetic videos with PyAV (320x240, 30 fps, H.264, a moving gradient and
square, a keyframe every 250 frames) of each `--minutes` length, then, in a fresh process
per length and mode, runs over every window (stride `--stride` seconds) and reports:

* `clips` mode: :func:`keras_slowfast.inference.window_clips` alone (decoding, colour
  conversion, resize and crop; no model): windows/s and decoded frames/s;
* `narrow` mode: :func:`timeline` with a narrow SlowFast 8x8 R50 (`width_per_group=8`,
  random weights), batch `--batch-size`;

with, for each: frames decoded per window (about `stride * fps`, not the 64-frame window
length: windows share decoded frames), frames converted per window, the most frames held
at once, the process's peak resident memory (`resource.getrusage`, which includes
TensorFlow) and the peak of memory traced by `tracemalloc` (NumPy's buffers: frames,
clips, batches; not TensorFlow's own allocations). Both peaks should not grow with the
video's length.

`--live` measures the latency of a live source with the full-size SlowFast 8x8 R50 (random
weights) on this machine's CPU, batch 1: the video (`--live-seconds` long) is served as
MPEG-TS over HTTP on 127.0.0.1 at its real-time rate, and each window's latency is the
time from the moment its clip's last frame was sent to the moment the window came out.
When the model is slower than one window per stride the latency grows window after
window: that rate is printed too.

Figures on 2 shared CPU cores (load average 6-8), stride 1 s, SlowFast 8x8 clips (32 frames
every 2, 256 crop):

    video   mode windows      s  win/s dec fr/s dec/win conv/win held RSS MiB traced MiB
    2 min  clips     120    4.3  28.10      843    30.0     16.0   33      704       19.4
    2 min narrow     120   75.9   1.58       47    30.0     16.0   33     1503      152.9
   10 min  clips     600   30.5  19.66      590    30.0     16.0   33      704       19.4
   10 min narrow     600  517.1   1.16       35    30.0     16.0   33     1504      152.9

Live (12 s paced over HTTP, full-size R50, batch 1): first window 3.6 s after its clip's last
frame was sent, then one window every 4.5 s, so the lag grows (43 s after 12 windows): this
CPU cannot follow a 1 s stride with the full-size model in real time.

Run from the repository root:

    python benchmarks/bench_timeline.py                       # 2 and 10 minutes
    python benchmarks/bench_timeline.py --minutes 2 --modes clips --live
"""

import argparse
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)


def make_video(path, seconds, fps=30, width=320, height=240, fmt=None):
    """Writes a synthetic video with moving content (H.264, or MPEG-TS for `fmt="mpegts"`)."""
    import av

    frames = int(round(seconds * fps))
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(path, "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "250", "crf": "28"}
        for i in range(frames):
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = (xx + 3 * i) % 256
            img[..., 1] = (yy + 2 * i) % 256
            img[..., 2] = (i * 5) % 256
            x = (7 * i) % (width - 40)
            y = (3 * i) % (height - 40)
            img[y : y + 40, x : x + 40] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return frames


def _worker(args):
    """Runs one mode on one video in this process; prints a JSON line."""
    import resource
    import tracemalloc

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_slowfast import hub
    from keras_slowfast.inference import timeline, window_clips

    preset = "slowfast_8x8_r50"
    stats = {}
    model = None
    if args.mode == "narrow":
        model = hub.from_preset(preset, load_weights=False, width_per_group=8)
        model.predict_on_batch(np.zeros((1, 32, 256, 256, 3), np.uint8))  # set-up, untimed
    tracemalloc.start()
    start = time.perf_counter()
    count = 0
    if model is None:
        for _ in window_clips(args.video, preset, window_stride_seconds=args.stride, stats=stats):
            count += 1
    else:
        for _ in timeline(
            model,
            args.video,
            preset,
            window_stride_seconds=args.stride,
            batch_size=args.batch_size,
            stats=stats,
        ):
            count += 1
    elapsed = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "windows": count,
                "seconds": elapsed,
                "decoded": stats["decoded_frames"],
                "converted": stats["converted_frames"],
                "max_buffered": stats["max_buffered_frames"],
                "rss_mib": rss_kib / 1024,
                "traced_peak_mib": traced_peak / 2**20,
            }
        )
    )


class _PacedHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = self.server.body
        rate = len(body) / self.server.seconds  # bytes per second of video
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        # With its length known FFmpeg ends the stream cleanly instead of an I/O error.
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.server.started = time.monotonic()
        sent = 0
        chunk = 4096
        while sent < len(body):
            due = (sent + chunk) / rate - (time.monotonic() - self.server.started)
            if due > 0:
                time.sleep(due)
            self.wfile.write(body[sent : sent + chunk])
            sent += chunk
        self.wfile.flush()


def _live(args, folder):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)
    from keras_slowfast import hub
    from keras_slowfast.inference import timeline

    path = os.path.join(folder, "live.ts")
    make_video(path, args.live_seconds, fmt="mpegts")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PacedHandler)
    server.daemon_threads = True
    with open(path, "rb") as f:
        server.body = f.read()
    server.seconds = args.live_seconds
    server.started = None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/live.ts"
    model = hub.from_preset("slowfast_8x8_r50", load_weights=False)
    model.predict_on_batch(np.zeros((1, 32, 256, 256, 3), np.uint8))  # set-up, untimed
    rows = []
    try:
        for w in timeline(model, url, "slowfast_8x8_r50", batch_size=1, read_timeout=30):
            now = time.monotonic() - server.started
            available = (int(w.frame_indices.max()) + 1) / 30.0
            rows.append((w.index, w.time, now, now - available))
    finally:
        server.shutdown()
        server.server_close()
    print(f"\nLive source: {args.live_seconds:g} s of 30 fps video paced at real time over HTTP,")
    print("full-size SlowFast 8x8 R50 (random weights), CPU, batch 1")
    print(f"{'window':>6} {'centre s':>8} {'out at s':>8} {'latency s':>9}")
    for index, centre, now, latency in rows:
        print(f"{index:>6} {centre:>8.1f} {now:>8.2f} {latency:>9.2f}")
    if len(rows) > 1:
        per = (rows[-1][2] - rows[0][2]) / (len(rows) - 1)
        print(f"first window latency {rows[0][3]:.2f} s; {per:.2f} s between windows")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="*", default=[2, 10])
    parser.add_argument("--modes", nargs="*", default=["clips", "narrow"])
    parser.add_argument("--stride", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--live", action="store_true", help="full-size R50 live latency")
    parser.add_argument("--live-seconds", type=float, default=12.0)
    parser.add_argument("--folder", default=None, help="keep the generated videos here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--video", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    folder = args.folder or tempfile.mkdtemp(prefix="bench_timeline_")
    os.makedirs(folder, exist_ok=True)
    rows = []
    for minutes in args.minutes:
        path = os.path.join(folder, f"synthetic_{minutes:g}min.mp4")
        if not os.path.exists(path):
            start = time.perf_counter()
            frames = make_video(path, minutes * 60)
            print(
                f"generated {path}: {frames} frames in {time.perf_counter() - start:.0f} s",
                flush=True,
            )
        for mode in args.modes:
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                "1",
                "--mode",
                mode,
                "--video",
                path,
                "--stride",
                str(args.stride),
                "--batch-size",
                str(args.batch_size),
            ]
            env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
            if done.returncode != 0 or not lines:
                print(f"{minutes:g} min {mode}: failed\n{done.stderr[-2000:]}", flush=True)
                continue
            r = json.loads(lines[-1])
            rows.append((minutes, mode, r))
            print(f"{minutes:g} min {mode}: {r}", flush=True)
    header = (
        f"{'video':>7} {'mode':>6} {'windows':>7} {'s':>7} {'win/s':>6} {'dec fr/s':>8} "
        f"{'dec/win':>7} {'conv/win':>8} {'held':>5} {'RSS MiB':>8} {'traced MiB':>10}"
    )
    print("\n" + header)
    for minutes, mode, r in rows:
        w = max(r["windows"], 1)
        print(
            f"{minutes:>5g} m {mode:>6} {r['windows']:>7} {r['seconds']:>7.1f} "
            f"{r['windows'] / r['seconds']:>6.2f} {r['decoded'] / r['seconds']:>8.0f} "
            f"{r['decoded'] / w:>7.1f} {r['converted'] / w:>8.1f} {r['max_buffered']:>5} "
            f"{r['rss_mib']:>8.0f} {r['traced_peak_mib']:>10.1f}"
        )
    if args.live:
        _live(args, folder)


if __name__ == "__main__":
    main()
