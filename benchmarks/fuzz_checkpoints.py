"""Seeded mutation fuzzing of the checkpoint readers.

Every case is a damaged copy of a real checkpoint (byte flips, truncation, splices, and
the same applied to the pickle inside a ``.pyth`` zip, re-zipped so that its CRC holds).
Cases run in a worker process that loads ``keras_slowfast/weights/readers.py`` on its own
(no TensorFlow), under an address-space limit, with an audit hook that records anything
a pickle could use to run code (``os.system``, ``subprocess.Popen``, ``exec``, ``compile``,
``import``, files opened for writing, sockets, ``ctypes``). The parent enforces a time
limit per case and restarts the worker when it dies. Each case ends as one of:

* ``clean``: ``ValueError`` (``UnsafeCheckpointError`` included) with ``Received: path=``;
* ``loaded``: the mutation still parses (e.g. a flipped bit inside tensor data);
* ``executed``: the audit hook saw code being run (must be 0);
* ``crash``: any other exception type, a dead worker, or a case over the time limit.

Run from the repository root:

    python benchmarks/fuzz_checkpoints.py --cases 3000 --seed 0

``run_fuzz(...)`` and ``mutate(...)`` are importable (the tests run a few hundred cases).
"""

import argparse
import glob
import io
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_READERS = os.path.join(_REPO, "keras_slowfast", "weights", "readers.py")
_MEMORY_LIMIT = 3 << 30  # address space of the worker

# The worker: reads case paths on stdin, answers one JSON line each.
_WORKER = r"""
import importlib.util, json, os, resource, sys
# Codecs that zipfile and the readers may look up lazily, loaded before watching.
import encodings.ascii, encodings.cp437, encodings.latin_1, encodings.utf_8  # noqa
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
spec = importlib.util.spec_from_file_location("fuzzed_readers", sys.argv[1])
readers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readers)
for warm in sys.argv[3:]:
    readers.read_checkpoint(warm)  # imports done lazily (codecs...) happen here

_WATCH = ("os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "subprocess.Popen",
          "exec", "compile", "ctypes.", "socket.", "os.remove", "os.rename", "shutil.")
seen = []
current = [None]

def rss_mb():
    # Peak RSS of this process image (VmHWM): getrusage's ru_maxrss also keeps the peak
    # of the process this one was forked from, which Linux carries over exec.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def hook(event, args):
    if current[0] is None:
        return
    if event.startswith(_WATCH) or (event == "import" and args[0] not in sys.modules):
        seen.append(event)
    elif event == "open":
        path, mode = args[0], args[1]
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            seen.append("open for writing")
        elif isinstance(path, str) and path != current[0]:
            seen.append("open " + path)

sys.addaudithook(hook)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    path = line.strip()
    seen.clear()
    current[0] = path
    try:
        obj = readers.read_checkpoint(path)
        result = {"outcome": "loaded"}
    except ValueError as err:
        ok = "Received: path=" in str(err)
        result = {"outcome": "clean" if ok else "crash", "type": type(err).__name__,
                  "message": str(err)[:300]}
    except BaseException as err:
        result = {"outcome": "crash", "type": type(err).__name__, "message": str(err)[:300]}
    current[0] = None
    if seen:
        result = {"outcome": "executed", "events": seen[:5]}
    result["rss_mb"] = rss_mb()
    print(json.dumps(result), flush=True)
"""


class _Worker:
    """One worker process; restarted by the caller after a crash or a timeout."""

    def __init__(self, warm_files=()):
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER, _READERS, str(_MEMORY_LIMIT), *warm_files],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        ready = self._answer(120)
        if not ready or not ready.get("ready"):
            self.close()
            raise RuntimeError("the fuzz worker did not start")

    def _answer(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def run(self, path, timeout):
        """The worker's answer for one file, or None if it died or ran out of time."""
        try:
            self.proc.stdin.write(path + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return None
        return self._answer(timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# ---------------------------------------------------------------------------------------
# Mutations.


def _flip(rng, raw):
    out = bytearray(raw)
    for _ in range(int(rng.integers(1, 9))):
        pos = int(rng.integers(0, len(out)))
        out[pos] = int(rng.integers(0, 256))
    return bytes(out)


def _truncate(rng, raw):
    return raw[: int(rng.integers(1, len(raw)))]


def _splice(rng, raw):
    # A run of the file copied over another place (or inserted): repeats opcodes, tensor
    # headers and zip records in the wrong context.
    n = int(rng.integers(1, min(4096, len(raw)) + 1))
    src = int(rng.integers(0, len(raw) - n + 1))
    dst = int(rng.integers(0, len(raw)))
    chunk = raw[src : src + n]
    if rng.random() < 0.5:
        return raw[:dst] + chunk + raw[dst:]
    return raw[:dst] + chunk + raw[dst + n :]


def _interesting_int(rng, raw):
    # Little-endian integers that break size fields: 0, 1, -1, 2**31, 2**63 ...
    values = [0, 1, 0xFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 40, (1 << 63) - 1, (1 << 64) - 1]
    value = values[int(rng.integers(0, len(values)))]
    width = int(rng.choice([1, 2, 4, 8]))
    pos = int(rng.integers(0, max(1, len(raw) - width)))
    return (
        raw[:pos]
        + (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        + raw[pos + width :]
    )


_BYTE_MUTATIONS = {"flip": _flip, "truncate": _truncate, "splice": _splice, "int": _interesting_int}


def _pickle_region(raw, fmt):
    """(start, end) of the pickled part, where mutations matter most."""
    if fmt == "caffe2":
        # The pickle holds the blobs inline; the opcodes are spread over all of it.
        return 0, len(raw)
    if fmt == "pyth_legacy":
        # Five pickles, then the raw storages: the pickles are in the first part.
        return 0, min(len(raw), 1 << 16)
    return 0, len(raw)


def mutate(raw, fmt, rng):
    """One seeded mutation of a checkpoint's bytes.

    Args:
        raw: the bytes of a real checkpoint.
        fmt: ``"pyth"``, ``"pyth_legacy"`` or ``"caffe2"``.
        rng: a ``numpy.random.Generator``.

    Returns:
        ``(name, mutated_bytes)``.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> name, out = mutate(b"\\x80\\x02}q\\x00.", "caffe2", rng)
    >>> isinstance(out, bytes)
    True
    """
    names = list(_BYTE_MUTATIONS)
    if fmt == "pyth":
        names.append("pickle_in_zip")
    name = names[int(rng.integers(0, len(names)))]
    if name == "pickle_in_zip":
        # Mutate data.pkl and rewrite the archive with valid CRCs, so that the damage
        # reaches the unpickler rather than the zip checks.
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            records = [(info.filename, zf.read(info)) for info in zf.infolist()]
        sub = list(_BYTE_MUTATIONS)[int(rng.integers(0, len(_BYTE_MUTATIONS)))]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for filename, data in records:
                if filename.endswith("data.pkl") and data:
                    data = _BYTE_MUTATIONS[sub](rng, data)
                zf.writestr(filename, data)
        return f"pickle_in_zip/{sub}", buf.getvalue()
    start, end = _pickle_region(raw, fmt)
    if name in ("flip", "int") and rng.random() < 0.8:
        head = _BYTE_MUTATIONS[name](rng, raw[start:end])
        return name, raw[:start] + head + raw[end:]
    return name, _BYTE_MUTATIONS[name](rng, raw)


def golden_files(golden_dir):
    """The real checkpoints of the golden fixtures, as ``(path, format)`` pairs."""
    out = []
    for path in sorted(glob.glob(os.path.join(golden_dir, "models", "*", "*"))):
        base = os.path.basename(path)
        if base == "caffe2.pkl":
            out.append((path, "caffe2"))
        elif base.endswith("_legacy.pyth"):
            out.append((path, "pyth_legacy"))
        elif base.endswith(".pyth"):
            out.append((path, "pyth"))
    return out


def run_fuzz(files, cases, seed=0, time_limit=20.0, workdir=None, log=None):
    """Runs ``cases`` seeded mutations of ``files`` and counts the outcomes.

    Args:
        files: ``(path, format)`` pairs of real checkpoints.
        cases: how many mutated files to read.
        seed: the seed of the mutations.
        time_limit: seconds one case may take.
        workdir: where mutated files are written (a temporary folder by default).
        log: a callable given a line for every case that is not a clean error or a load.

    Returns:
        A dict with ``cases``, ``clean``, ``loaded``, ``executed``, ``crashes``,
        ``max_seconds``, ``peak_rss_mb``, ``by_mutation`` and ``failures`` (the first 20
        bad cases).

    Example:

    >>> run_fuzz([], 0)["cases"]
    0
    """
    rng = np.random.default_rng(seed)
    raws = [(path, fmt, open(path, "rb").read()) for path, fmt in files]
    counts = {"cases": 0, "clean": 0, "loaded": 0, "executed": 0, "crashes": 0}
    counts.update(max_seconds=0.0, peak_rss_mb=0.0, by_mutation={}, failures=[])
    if not cases or not raws:
        return counts
    warm = [path for path, _, _ in raws[:3]]
    own_dir = None
    if workdir is None:
        own_dir = tempfile.TemporaryDirectory()
        workdir = own_dir.name
    worker = _Worker(warm)
    try:
        for index in range(cases):
            path, fmt, raw = raws[index % len(raws)]
            name, data = mutate(raw, fmt, rng)
            case = os.path.join(workdir, f"case{index % 2}{os.path.splitext(path)[1]}")
            with open(case, "wb") as f:
                f.write(data)
            start = time.perf_counter()
            answer = worker.run(case, time_limit)
            seconds = time.perf_counter() - start
            counts["cases"] += 1
            counts["max_seconds"] = max(counts["max_seconds"], seconds)
            if answer is None:
                outcome = "crash"
                answer = {"type": "worker died or timed out", "message": f"{seconds:.1f} s"}
                worker.close()
                worker = _Worker(warm)
            else:
                outcome = answer["outcome"]
                counts["peak_rss_mb"] = max(counts["peak_rss_mb"], answer["rss_mb"])
            key = {"crash": "crashes"}.get(outcome, outcome)
            counts[key] += 1
            per = counts["by_mutation"].setdefault(name.split("/")[0], {})
            per[outcome] = per.get(outcome, 0) + 1
            if outcome in ("crash", "executed"):
                detail = {"case": index, "file": path, "mutation": name, **answer}
                if len(counts["failures"]) < 20:
                    counts["failures"].append(detail)
                if log is not None:
                    log(json.dumps(detail))
    finally:
        worker.close()
        if own_dir is not None:
            own_dir.cleanup()
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=20.0)
    parser.add_argument(
        "--golden",
        default=os.environ.get(
            "KERAS_SLOWFAST_GOLDEN", os.path.join(_REPO, "..", "shared", "golden")
        ),
        help="folder of the golden fixtures (models/*/*.pyth, caffe2.pkl)",
    )
    args = parser.parse_args(argv)
    files = golden_files(args.golden)
    if not files:
        raise SystemExit(
            f"No checkpoint found under the golden folder. Received: golden={args.golden}"
        )
    start = time.perf_counter()
    counts = run_fuzz(files, args.cases, args.seed, args.time_limit, log=print)
    counts["files"] = len(files)
    counts["wall_seconds"] = round(time.perf_counter() - start, 1)
    counts["max_seconds"] = round(counts["max_seconds"], 3)
    failures = counts.pop("failures")
    print(json.dumps(counts, indent=1))
    if counts["executed"] or counts["crashes"]:
        print(f"{len(failures)} failing cases shown above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
