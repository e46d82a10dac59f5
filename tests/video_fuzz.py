"""Seeded, time-bounded fuzzing of the video readers with mutated real MP4 files.

Mutations of real clips (truncations, bit flips in the index and in the payload, garbage
atoms, absurd box sizes, huge declared durations and sample counts, zero timescales, a
video track without samples, an audio-only file, random bytes, a file that grows while it
is read) are fed to the package's readers, the Kinetics dataset (`on_error` skip and
raise), `classify_video` with a narrow model and the TFRecord writer.

Every case runs in a worker process under a hard wall-clock limit, so that an abort
(segfault) or a hang is counted, not fatal. Outcomes:

* `ok`: the call returned data;
* `error`: the package's documented error (`VideoReadError`; inside `tf.data`,
  `InvalidArgumentError` carrying it);
* `skip`: `on_error="skip"` left the video out, counted it and warned;
* `crash`: any other exception, an inconsistent skip count, or the worker dying;
* `hang`: the case ran past the limit (the worker is killed and replaced).

Used by tests/test_video_hardening.py (a few hundred cases) and
benchmarks/fuzz_videos.py (thousands).
"""

import json
import os
import queue
import random
import shutil
import struct
import subprocess
import sys
import threading
import time
import traceback

# Boxes whose payload is a list of boxes (after `skip` bytes of their own fields).
_CONTAINERS = {
    b"moov": 0,
    b"trak": 0,
    b"mdia": 0,
    b"minf": 0,
    b"stbl": 0,
    b"edts": 0,
    b"dinf": 0,
    b"udta": 0,
    b"mvex": 0,
    b"moof": 0,
    b"traf": 0,
    b"stsd": 8,
}

READER_TARGETS = ("read_clip", "read_test_views", "probe", "decode_timestamps", "frames_at_fps")
PIPELINE_TARGETS = (
    "kinetics_skip",
    "kinetics_raise",
    "classify",
    "tfrecord_skip",
    "tfrecord_raise",
)
TARGETS = READER_TARGETS + PIPELINE_TARGETS
OUTCOMES = ("ok", "error", "skip", "crash", "hang")


# --------------------------------------------------------------------------- MP4 boxes


def parse_boxes(data, start=0, end=None, depth=0):
    """The boxes of an MP4 byte string as `(offset, size, type, header_size, depth)`.

    Descends into container boxes; stops at the first box whose size does not fit.
    """
    end = len(data) if end is None else end
    boxes = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > end:
                break
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        boxes.append((pos, size, kind, header, depth))
        if kind in _CONTAINERS and depth < 8:
            boxes += parse_boxes(data, pos + header + _CONTAINERS[kind], pos + size, depth + 1)
        pos += size
    return boxes


def _find(boxes, kind):
    return [b for b in boxes if b[2] == kind]


def _payload_range(boxes, kind):
    found = _find(boxes, kind)
    if not found:
        return None
    offset, size, _, header, _ = found[0]
    return offset + header, offset + size


# --------------------------------------------------------------------------- mutators


def _flip_bits(rng, data, lo, hi, count):
    out = bytearray(data)
    if hi <= lo:
        return bytes(out)
    for _ in range(count):
        i = rng.randrange(lo, hi)
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(rng, data, boxes):
    # Cut at a random offset, or just before/after a box boundary.
    if boxes and rng.random() < 0.4:
        offset = rng.choice(boxes)[0] + rng.choice([-1, 0, 1, 4, 8, 9, 17])
    else:
        offset = rng.randrange(1, len(data))
    return data[: max(1, min(len(data) - 1, offset))]


def flip_header(rng, data, boxes):
    span = _payload_range(boxes, b"moov") or (0, min(len(data), 4096))
    return _flip_bits(rng, data, span[0], span[1], rng.choice([1, 2, 4, 8, 32]))


def flip_payload(rng, data, boxes):
    span = _payload_range(boxes, b"mdat") or (len(data) // 2, len(data))
    return _flip_bits(rng, data, span[0], span[1], rng.choice([1, 4, 16, 64, 256]))


def garbage_atom(rng, data, boxes):
    kind = rng.choice(
        [b"free", b"moov", b"mdat", b"trak", b"stsz", b"\x00\x00\x00\x00", b"\xff\xfe\xfd\xfc"]
        + [bytes(rng.randrange(32, 127) for _ in range(4))]
    )
    payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 64, 1024])))
    size = rng.choice([8 + len(payload), 8 + len(payload), 0, 1, 9, 0xFFFFFFFF])
    atom = struct.pack(">I4s", size, kind) + payload
    candidates = [b[0] for b in boxes] + [len(data)]
    at = rng.choice(candidates)
    return data[:at] + atom + data[at:]


def absurd_size(rng, data, boxes):
    if not boxes:
        return truncate(rng, data, boxes)
    offset, size, _, header, _ = rng.choice(boxes)
    value = rng.choice([0, 1, 2, 7, 8, size + 1, size - 1, size * 2, 2**31, 0xFFFFFFFF])
    out = bytearray(data)
    out[offset : offset + 4] = struct.pack(">I", value & 0xFFFFFFFF)
    if value == 1 and offset + 16 <= len(out):  # 64-bit size follows the type
        out[offset + 8 : offset + 16] = struct.pack(">Q", rng.choice([2**63 - 1, 2**40, 0, 15]))
    return bytes(out)


# (box, offset of the field after the header, field size) of declared durations and counts.
_DURATION_FIELDS = [
    (b"mvhd", 16, 4),  # version 0 duration
    (b"mdhd", 16, 4),
    (b"tkhd", 20, 4),
    (b"mvhd", 12, 4),  # timescale
    (b"mdhd", 12, 4),
    (b"stsz", 8, 4),  # sample count
    (b"stts", 4, 4),  # entry count
    (b"stts", 8, 4),  # first entry: sample count
    (b"stts", 12, 4),  # first entry: sample delta
    (b"stss", 4, 4),
    (b"stco", 4, 4),
    (b"stsc", 4, 4),
    (b"elst", 12, 4),  # first edit: segment duration (version 0)
    (b"elst", 16, 4),  # first edit: media time
]


def huge_declared(rng, data, boxes):
    """A huge (or zero) declared duration, timescale, sample count or table size."""
    candidates = [(b, f) for f in _DURATION_FIELDS for b in _find(boxes, f[0])]
    if not candidates:
        return absurd_size(rng, data, boxes)
    (offset, _, _, header, _), (_, at, width) = rng.choice(candidates)
    pos = offset + header + at
    out = bytearray(data)
    value = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0x10000000, 0, 1])
    if pos + width <= len(out):
        out[pos : pos + width] = struct.pack(">I", value)
    return bytes(out)


def zero_samples(rng, data, boxes):
    """The video track declares no sample at all (a zero-length stream)."""
    out = bytearray(data)
    for kind, at in ((b"stsz", 8), (b"stts", 4), (b"stco", 4), (b"stsc", 4), (b"stss", 4)):
        for offset, _, _, header, _ in _find(boxes, kind):
            pos = offset + header + at
            out[pos : pos + 4] = b"\x00\x00\x00\x00"
    return bytes(out)


def splice(rng, data, boxes):
    """The head of one clip with the tail of itself at another offset (mismatched data)."""
    a = rng.randrange(1, len(data))
    b = rng.randrange(1, len(data))
    return data[:a] + data[b:]


def random_bytes(rng, data, boxes):
    head = data[: rng.choice([0, 8, 32])]
    return head + bytes(rng.randrange(256) for _ in range(rng.choice([1, 100, 5000])))


MUTATORS = {
    "truncate": truncate,
    "flip_header": flip_header,
    "flip_payload": flip_payload,
    "garbage_atom": garbage_atom,
    "absurd_size": absurd_size,
    "huge_declared": huge_declared,
    "zero_samples": zero_samples,
    "splice": splice,
    "random_bytes": random_bytes,
    "unchanged": lambda rng, data, boxes: data,
    "growing": lambda rng, data, boxes: data,  # written while the target reads it
}
# Relative frequencies of the mutators in `make_cases`.
_WEIGHTS = {
    "truncate": 6,
    "flip_header": 5,
    "flip_payload": 4,
    "garbage_atom": 3,
    "absurd_size": 4,
    "huge_declared": 4,
    "zero_samples": 1,
    "splice": 1,
    "random_bytes": 1,
    "unchanged": 1,
    "growing": 2,
}


# --------------------------------------------------------------------------- sources


def _remux(src, dst, seconds=None, faststart=False):
    import av

    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(src)) as inp, av.open(str(dst), "w", options=options) as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            if seconds is not None and packet.pts is not None:
                if packet.pts * packet.time_base >= seconds:
                    continue
            packet.stream = out_stream
            out.mux(packet)


def _write_audio_only(dst):
    import av
    import numpy as np

    with av.open(str(dst), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        t = np.arange(16000) / 16000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def prepare_sources(videos_dir, workdir, full_clips=False, seconds=2):
    """Seed files: short stream-copied cuts of the real clips (index last and first).

    Returns `{name: bytes}`. The cuts keep the clips' real encoded data, so that decoding
    stays quick; `full_clips` adds the whole clips. An audio-only MP4 is written with PyAV.
    """
    os.makedirs(workdir, exist_ok=True)
    sources = {}
    for name in sorted(os.listdir(videos_dir)):
        if not name.endswith(".mp4"):
            continue
        src = os.path.join(videos_dir, name)
        stem = name[: -len(".mp4")]
        for faststart in (False, True):
            dst = os.path.join(workdir, f"{stem}_{seconds}s{'_fast' if faststart else ''}.mp4")
            _remux(src, dst, seconds=seconds, faststart=faststart)
            sources[os.path.basename(dst)] = _read(dst)
        if full_clips:
            sources[name] = _read(src)
            dst = os.path.join(workdir, f"{stem}_fast.mp4")
            _remux(src, dst, faststart=True)
            sources[os.path.basename(dst)] = _read(dst)
    audio = os.path.join(workdir, "audio_only.mp4")
    _write_audio_only(audio)
    sources["audio_only.mp4"] = _read(audio)
    return sources


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def make_cases(sources, num_cases, seed=0, targets=TARGETS, target_weights=None):
    """`num_cases` seeded cases: `dict(id, source, mutator, target, seed)`."""
    rng = random.Random(seed)
    names = sorted(sources)
    mutators = sorted(_WEIGHTS)
    weights = [_WEIGHTS[m] for m in mutators]
    tw = [1] * len(targets) if target_weights is None else [target_weights[t] for t in targets]
    cases = []
    for i in range(num_cases):
        source = rng.choice(names)
        mutator = "unchanged" if source == "audio_only.mp4" else rng.choices(mutators, weights)[0]
        cases.append(
            dict(
                id=i,
                source=source,
                mutator=mutator,
                target=rng.choices(targets, tw)[0],
                seed=rng.randrange(2**31),
            )
        )
    return cases


def mutate(case, sources):
    """The bytes of a case (deterministic in its seed)."""
    data = sources[case["source"]]
    rng = random.Random(case["seed"])
    return MUTATORS[case["mutator"]](rng, data, parse_boxes(data))


# --------------------------------------------------------------------------- worker side

_MODEL = []


def _narrow_model():
    if not _MODEL:
        import keras_slowfast

        _MODEL.append(
            keras_slowfast.from_preset(
                "slow_8x8_r50_kinetics400", load_weights=False, width_per_group=8, classes=3
            )
        )
    return _MODEL[0]


def _grow(path, data, stop):
    """Writes `data` to `path` a chunk at a time while the target reads it."""
    step = max(1, len(data) // 10)
    with open(path, "r+b") as f:
        pos = os.path.getsize(path)
        while pos < len(data) and not stop.is_set():
            f.seek(pos)
            f.write(data[pos : pos + step])
            f.flush()
            pos += step
            time.sleep(0.01)


def _run_target(target, path, timeout):
    """Runs one target on one file; returns the outcome name (or raises: a crash)."""
    import warnings

    import numpy as np
    import tensorflow as tf

    from keras_slowfast import data as kdata
    from keras_slowfast.data import video

    small = dict(num_frames=4, sampling_rate=2, crop_size=32, jitter_scales=(32, 40))
    try:
        if target == "read_clip":
            video.read_clip(path, 4, 2, view_index=1, num_views=3, timeout=timeout)
        elif target == "read_test_views":
            convert = lambda f: f[::8, ::8]  # noqa: E731
            video.read_test_views(path, 4, 2, num_views=3, convert=convert, timeout=timeout)
        elif target == "probe":
            video.probe_video(path, timeout=timeout)
        elif target == "decode_timestamps":
            video.decode_timestamps(path, timeout=timeout)
        elif target == "frames_at_fps":
            n = kdata.count_frames_at_fps(path, timeout=timeout)
            kdata.read_frames_at_fps(path, [0, max(0, n - 1)], timeout=timeout)
        elif target in ("kinetics_skip", "kinetics_raise"):
            on_error = target.split("_")[1]
            counter = kdata.DecodeErrorCounter()
            ds = kdata.kinetics_dataset(
                [(path, 0)],
                "val",
                on_error=on_error,
                error_counter=counter,
                timeout=timeout,
                batch_size=1,
                **small,
            )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                clips = [b[0].numpy() for b in ds]
            warned = any("Skipping video" in str(w.message) for w in caught)
            if clips and counter.count == 0 and not warned:
                return "ok"
            if not clips and counter.count == 1 and warned and on_error == "skip":
                return "skip"
            raise AssertionError(
                f"inconsistent skip: {len(clips)} clips, count={counter.count}, warned={warned}"
            )
        elif target == "classify":
            from keras_slowfast import inference

            probs = inference.classify_video(
                _narrow_model(), path, preset="slow_8x8_r50_kinetics400", views=1
            )
            if probs.shape != (3,) or not np.all(np.isfinite(probs)):
                raise AssertionError(f"bad scores {probs!r}")
        elif target in ("tfrecord_skip", "tfrecord_raise"):
            on_error = target.split("_")[1]
            counter = kdata.DecodeErrorCounter()
            prefix = path + ".records"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                kdata.write_frame_tfrecords(
                    [(path, 0)],
                    prefix,
                    short_side=32,
                    on_error=on_error,
                    error_counter=counter,
                    timeout=timeout,
                )
            warned = any("Skipping video" in str(w.message) for w in caught)
            for name in os.listdir(os.path.dirname(prefix)):
                if name.startswith(os.path.basename(prefix)):
                    leftover = os.path.join(os.path.dirname(prefix), name)
                    if os.path.isdir(leftover):  # the writer's manifest folder
                        shutil.rmtree(leftover)
                    else:
                        os.remove(leftover)
            if counter.count == 1 and warned and on_error == "skip":
                return "skip"
            if counter.count == 0 and not warned:
                return "ok"
            raise AssertionError(f"inconsistent skip: count={counter.count}, warned={warned}")
        else:
            raise ValueError(f"unknown target {target!r}")
    except video.VideoReadError:
        return "error"
    except tf.errors.InvalidArgumentError as e:
        if "VideoReadError" in str(e):
            return "error"
        raise
    return "ok"


def _worker(protocol):
    """Reads cases as JSON lines from stdin; answers on `protocol` (a file)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # noqa: F401  (imported before the first case's clock starts)

    import keras_slowfast

    protocol.write(json.dumps({"ready": True, "package": keras_slowfast.__file__}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        case = json.loads(line)
        path = case["path"]
        start = time.monotonic()
        grower = None
        stop = threading.Event()
        try:
            if case["mutator"] == "growing":
                with open(case["full"], "rb") as f:
                    data = f.read()
                with open(path, "wb") as f:
                    f.write(data[: max(1, len(data) // 4)])
                grower = threading.Thread(target=_grow, args=(path, data, stop), daemon=True)
                grower.start()
            outcome = _run_target(case["target"], path, case["timeout"])
            detail = ""
        except Exception as e:
            outcome = "crash"
            detail = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
        finally:
            stop.set()
            if grower is not None:
                grower.join()
        result = dict(id=case["id"], outcome=outcome, seconds=time.monotonic() - start)
        result["detail"] = detail[-3000:]
        protocol.write(json.dumps(result) + "\n")
        protocol.flush()


def _worker_main():
    # The protocol gets the original stdout; stray prints go to stderr.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    _worker(protocol)


# --------------------------------------------------------------------------- parent side


class _Worker:
    def __init__(self, root, stderr):
        here = os.path.dirname(os.path.abspath(__file__))
        path = [here, root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        env["PYTHONPATH"] = os.pathsep.join(path)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import video_fuzz; video_fuzz._worker_main()"],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
        )
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)  # the process ended

    def get(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return "hang"
        return None if line is None else json.loads(line)

    def send(self, case):
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


def run_cases(
    cases,
    sources,
    workdir,
    workers=2,
    timeout=5.0,
    case_limit=60.0,
    start_limit=180.0,
    stderr=subprocess.DEVNULL,
    progress=None,
):
    """Runs cases in `workers` worker processes; returns one result dict per case.

    Each result has `id`, `source`, `mutator`, `target`, `outcome` (one of `OUTCOMES`),
    `seconds` and `detail`. A worker that dies is counted as a crash of its case, one
    that does not answer within `case_limit` seconds as a hang; either is replaced.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.makedirs(workdir, exist_ok=True)
    todo = queue.Queue()
    for case in cases:
        todo.put(case)
    results = []
    lock = threading.Lock()

    def start():
        worker = _Worker(root, stderr)
        ready = worker.get(start_limit)
        if not isinstance(ready, dict) or not ready.get("ready"):
            worker.kill()
            raise RuntimeError("a fuzz worker did not start")
        return worker

    def drive(slot):
        worker = start()
        try:
            while True:
                try:
                    case = todo.get_nowait()
                except queue.Empty:
                    return
                path = os.path.join(workdir, f"case{case['id']}_{slot}.mp4")
                full = path + ".full"
                data = mutate(case, sources)
                with open(full if case["mutator"] == "growing" else path, "wb") as f:
                    f.write(data)
                message = dict(case, path=path, full=full, timeout=timeout)
                began = time.monotonic()
                worker.send(message)
                answer = worker.get(case_limit)
                elapsed = time.monotonic() - began
                if not isinstance(answer, dict):
                    code = worker.proc.poll()
                    outcome = "hang" if answer == "hang" else "crash"
                    what = f"killed after {case_limit} s" if outcome == "hang" else "died"
                    detail = f"worker {what} (exit code {code})"
                    worker.kill()
                    worker = start()
                    answer = dict(id=case["id"], outcome=outcome, seconds=elapsed, detail=detail)
                answer.update(
                    source=case["source"],
                    mutator=case["mutator"],
                    target=case["target"],
                    seed=case["seed"],
                )
                for name in (path, full):
                    if os.path.exists(name):
                        os.remove(name)
                with lock:
                    results.append(answer)
                    if progress:
                        progress(answer, len(results))
        finally:
            worker.kill()

    errors = []

    def guarded(i):
        try:
            drive(i)
        except Exception as e:  # reported to the caller below
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sorted(results, key=lambda r: r["id"])


def summarize(results):
    """Counts: cases, each outcome, and the longest case in seconds."""
    counts = {o: sum(r["outcome"] == o for r in results) for o in OUTCOMES}
    return dict(
        cases=len(results),
        **counts,
        max_seconds=max((r["seconds"] for r in results), default=0.0),
    )
