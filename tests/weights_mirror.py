"""A real HTTP server on 127.0.0.1 serving the golden checkpoints at the published paths.

The narrow golden checkpoints stand in for the published files: same formats, same tensor
names, width 8 and 10 classes. Tests point `KERAS_SLOWFAST_MIRROR` at the server.
"""

import http.server
import os
import shutil
import threading
from pathlib import Path

# Published relative path -> golden file standing in for it.
GOLDEN_FOR_PUBLISHED = {
    "pyslowfast/model_zoo/kinetics400/SLOWFAST_4x16_R50.pkl": "slowfast_4x16_r50/caffe2.pkl",
    "pyslowfast/model_zoo/kinetics400/SLOWFAST_8x8_R50.pkl": "slowfast_8x8_r50/caffe2.pkl",
    "pyslowfast/model_zoo/kinetics400/SLOWONLY_8x8_R50.pkl": "slow_8x8_r50/caffe2.pkl",
    # Slow 4x16 differs from Slow 8x8 only in the clip length: the same tensors fit it.
    "pyslowfast/model_zoo/kinetics400/SLOWONLY_4x16_R50.pkl": "slow_8x8_r50/caffe2.pkl",
    # No PyTorchVideo golden exists for the 8x8 R101; the PySlowFast checkpoint of the same
    # architecture exercises the same download path (the reader detects the format).
    "pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R101.pyth": "slowfast_8x8_r101/pyslowfast.pyth",
    "pytorchvideo/model_zoo/kinetics/SLOWFAST_16x8_R101_50_50.pyth": (
        "ptv_slowfast_16x8_r101_50_50/pytorchvideo.pyth"
    ),
    "pyslowfast/model_zoo/ava/SLOWFAST_32x2_R101_50_50.pkl": (
        "ava_slowfast_32x2_r101_50_50/caffe2.pkl"
    ),
    "pytorchvideo/model_zoo/ava/SLOWFAST_8x8_R50_DETECTION.pyth": (
        "ptv_slowfast_r50_detection/pytorchvideo.pyth"
    ),
}


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        server.requests.append(self.path)
        try:
            self._serve(server)
        finally:
            server.completed.append(self.path)

    def _serve(self, server):
        if server.mode == "slow":
            # Send the first half, wait `delay` seconds (or until released), then the rest.
            path = self.translate_path(self.path)
            if not os.path.isfile(path):
                self.send_error(404)
                return
            data = Path(path).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            server.release.wait(server.delay)
            try:
                self.wfile.write(data[len(data) // 2 :])
            except OSError:  # the client went away (killed)
                self.close_connection = True
            return
        if server.mode == "short_body":
            # Announce the whole file but close the connection half way.
            path = self.translate_path(self.path)
            if not os.path.isfile(path):
                self.send_error(404)
                return
            data = Path(path).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


class Mirror:
    """The served folder, the base URL, the requests seen and a failure `mode`.

    `mode`: `None` (serve the files), `"short_body"` (send half of each file under the
    full Content-Length), `"slow"` (send half, wait `delay` seconds or until `release()`,
    then the rest). `completed` lists the requests answered so far.
    """

    def __init__(self, root):
        self.root = Path(root)
        handler = lambda *a, **k: _Handler(*a, directory=str(self.root), **k)  # noqa: E731
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.requests = []
        self.server.mode = None
        self.server.delay = 0.0
        self.server.release = threading.Event()
        self.server.completed = []
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self):
        return self.server.requests

    @property
    def mode(self):
        return self.server.mode

    @mode.setter
    def mode(self, value):
        self.server.mode = value

    @property
    def completed(self):
        return self.server.completed

    @property
    def delay(self):
        return self.server.delay

    @delay.setter
    def delay(self, value):
        self.server.delay = value

    def release(self):
        """Lets every request held by the `"slow"` mode finish now."""
        self.server.release.set()

    def reset(self):
        """Back to serving the files at once, with empty request lists."""
        self.server.release.set()
        self.server.release = threading.Event()
        self.server.mode = None
        self.server.delay = 0.0
        self.server.requests.clear()
        self.server.completed.clear()

    def close(self):
        self.server.release.set()
        self.server.shutdown()
        self.server.server_close()


def make_mirror(golden, root):
    """Copies the golden checkpoints to `root` under the published paths and serves them."""
    for published, source in GOLDEN_FOR_PUBLISHED.items():
        target = Path(root) / published
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(golden) / "models" / source, target)
    return Mirror(root)
