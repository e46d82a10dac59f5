"""The weights cache under stress: concurrent first loads, damage, kills, read-only folders.

Every test downloads from a real HTTP mirror on 127.0.0.1 (the narrow golden checkpoints
under the published paths) and counts its requests; concurrency and kills use real child
processes, permissions a real read-only folder. Outputs are checked against the reference
outputs stored beside the golden checkpoint.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import forward

import keras_slowfast as ks
from keras_slowfast import atomic, presets
from keras_slowfast import hub as registry

_REPO = Path(__file__).resolve().parents[1]
PRESET = "slow_8x8_r50_kinetics400"
_ENTRY = presets.get_preset(PRESET)
_REQUEST = f"/{_ENTRY.checkpoint.path}"


@pytest.fixture(scope="module")
def golden_io(golden):
    io = np.load(golden / "models/slow_8x8_r50/io.npz")
    clip = np.transpose(io["train_crop/fast"].astype(np.float32), (0, 2, 3, 4, 1))
    return clip, io["train_crop/output"]


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _cache_files(folder=None):
    folder = folder or registry.cache_dir()
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _final_names():
    return sorted(os.path.basename(p) for p in registry.cache_paths(PRESET))


@pytest.fixture(scope="module")
def scores_of(golden_io):
    """`scores_of(weights_path)`: the golden clip's scores with a `.weights.h5` of PRESET.

    The network (what `ks.SlowR50(weights="k400", train_crop_size=64,
    include_preprocessing=False)` builds) is built once; every weight is set to NaN before
    the file is loaded, so that only the file's values can give the reference scores.
    """
    clip, _ = golden_io
    model = ks.SlowR50(
        width_per_group=8, classes=10, train_crop_size=64, include_preprocessing=False
    )

    def scores(weights_path):
        for weight in model.weights:
            weight.assign(np.full(weight.shape, np.nan, weight.dtype))
        model.load_weights(weights_path)
        return forward(model, clip)

    return scores


# A child process: loads PRESET (waiting for a "go" file first when one is named), writes
# the model's output on the golden clip and prints what it saw as one JSON line.
_CHILD = r"""
import json, os, sys, time
import numpy as np
go, out, io_path = sys.argv[1:4]
import keras_slowfast as ks
from keras_slowfast import hub
if go != "-":
    open(go + ".ready-" + str(os.getpid()), "w").close()
    deadline = time.monotonic() + 120
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("no go")
        time.sleep(0.005)
t0 = time.perf_counter()
path, info = hub.fetch("slow_8x8_r50_kinetics400")
fetch_s = time.perf_counter() - t0
info_stat = os.stat(hub.cache_paths("slow_8x8_r50_kinetics400")[1])
model = ks.SlowR50(weights="k400", train_crop_size=64, include_preprocessing=False)
io = np.load(io_path)
clip = np.transpose(io["train_crop/fast"].astype(np.float32), (0, 2, 3, 4, 1))
np.save(out, model.predict_on_batch(clip))
print(json.dumps(dict(fetch_s=fetch_s, path=path, info_mtime_ns=info_stat.st_mtime_ns,
                      info_ino=info_stat.st_ino)))
"""


def _child_env(extra=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(_REPO))
    env.update(extra or {})
    return env


def _spawn(args, env, prefix=()):
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", _CHILD, *map(str, args)],
        cwd=_REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc, timeout=180):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"child {proc.pid} timed out: {err[-2000:]}")
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), err


def _wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.mark.large  # two TensorFlow processes at once: 35-50 s on two shared cores
def test_two_processes_loading_at_once_download_and_convert_once(served, golden, tmp_path):
    # The mirror holds each response 1.5 s half way, so the first process keeps the lock
    # long enough for the second one to find it taken.
    served.mode, served.delay = "slow", 1.5
    go = tmp_path / "go"
    io_path = golden / "models/slow_8x8_r50/io.npz"
    env = _child_env()
    procs = [_spawn([go, tmp_path / f"out{i}.npy", io_path], env) for i in range(2)]
    try:
        _wait_for(lambda: len(list(tmp_path.glob("go.ready-*"))) == 2, 180, "both children")
        go.touch()
        results = [_finish(p)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    print("fetch seconds of the two processes:", [round(r["fetch_s"], 2) for r in results])
    # One request: one download, hence one conversion (each conversion consumes its own
    # download, deleted afterwards); the description was written once (same file, same
    # mtime seen by both) and nothing else is left in the cache.
    assert served.requests == [_REQUEST]
    assert len({(r["info_ino"], r["info_mtime_ns"]) for r in results}) == 1
    assert _cache_files() == _final_names()
    # Both waited for the one slow download: the lock, not a cache hit, made them agree.
    assert min(r["fetch_s"] for r in results) >= 1.5
    a, b = (np.load(tmp_path / f"out{i}.npy") for i in range(2))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, np.load(io_path)["train_crop/output"], atol=1e-4)


def test_the_description_records_both_digests(served):
    path, info = registry.fetch(PRESET)
    served_file = served.root / _ENTRY.checkpoint.path
    assert info["checkpoint_sha256"] == _sha256(served_file)
    assert info["weights_sha256"] == _sha256(path)
    assert info["weights_bytes"] == os.path.getsize(path)
    assert json.loads(Path(registry.cache_paths(PRESET)[1]).read_text()) == info


def _truncate(weights_path, info_path):
    data = Path(weights_path).read_bytes()
    Path(weights_path).write_bytes(data[: len(data) // 2])


def _flip_a_byte(weights_path, info_path):
    data = bytearray(Path(weights_path).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the digest can tell
    Path(weights_path).write_bytes(bytes(data))


def _garble_description(weights_path, info_path):
    Path(info_path).write_text('{"cache_version": ')


def _remove_weights(weights_path, info_path):
    os.remove(weights_path)


@pytest.mark.parametrize(
    "damage",
    [_truncate, _flip_a_byte, _garble_description, _remove_weights],
    ids=lambda f: f.__name__[1:],
)
def test_a_damaged_cache_entry_is_converted_again(served, golden_io, scores_of, damage):
    _, expected = golden_io
    registry.fetch(PRESET)
    assert len(served.requests) == 1
    weights_path, info_path = registry.cache_paths(PRESET)
    damage(weights_path, info_path)
    with pytest.warns(UserWarning, match=f"The cached weights of {PRESET} are damaged"):
        path, _ = registry.fetch(PRESET)
    assert len(served.requests) == 2
    assert path == weights_path
    np.testing.assert_allclose(scores_of(path), expected, atol=1e-4)
    info = json.loads(Path(info_path).read_text())
    assert info["weights_sha256"] == _sha256(weights_path)
    assert _cache_files() == _final_names()
    registry.fetch(PRESET)  # and now a plain hit
    assert len(served.requests) == 2


def test_a_digest_in_the_table_is_checked(served, monkeypatch):
    # The table records no digest (none is published); a row carrying one is built here
    # with dataclasses.replace and put in the table's place for the test.
    digest = _sha256(served.root / _ENTRY.checkpoint.path)
    wrong = hashlib.sha256(b"another file").hexdigest()

    def with_digest(value):
        row = dataclasses.replace(
            _ENTRY, checkpoint=dataclasses.replace(_ENTRY.checkpoint, sha256=value)
        )
        monkeypatch.setitem(presets._BY_NAME, PRESET, row)

    with_digest(wrong)
    with pytest.raises(
        registry.WeightsDownloadError, match=f"does not have the sha256 recorded.*{wrong}"
    ):
        registry.fetch(PRESET)
    assert _cache_files() == []
    with_digest(digest)
    _, info = registry.fetch(PRESET)
    assert info["checkpoint_sha256"] == digest
    assert len(served.requests) == 2


def test_a_lock_held_too_long_fails_clearly(served, monkeypatch):
    monkeypatch.setenv(registry.LOCK_TIMEOUT_ENV, "0.5")
    os.makedirs(registry.cache_dir())
    lock = os.path.join(registry.cache_dir(), f"{PRESET}.lock")
    with atomic.file_lock(lock):  # another holder (flock conflicts between descriptors)
        start = time.monotonic()
        with pytest.raises(registry.WeightsDownloadError, match=r"Waited 0.5 s .*\.lock"):
            registry.fetch(PRESET)
        waited = time.monotonic() - start
    assert 0.5 <= waited < 5
    assert served.requests == []
    monkeypatch.setenv(registry.LOCK_TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="Received: KERAS_SLOWFAST_LOCK_TIMEOUT='soon'"):
        registry.fetch(PRESET)


# The kill during the download is `large` (a second TensorFlow child) to keep the default
# suite short; the kill during the conversion runs by default.
@pytest.mark.parametrize("phase", [pytest.param("download", marks=pytest.mark.large), "conversion"])
def test_a_killed_first_load_leaves_nothing_that_blocks_the_next(
    served, golden_io, scores_of, tmp_path, monkeypatch, phase
):
    _, expected = golden_io
    folder = Path(registry.cache_dir())
    weights_path, info_path = registry.cache_paths(PRESET)
    raw_size = (served.root / _ENTRY.checkpoint.path).stat().st_size

    def raw_files():
        return [f for f in folder.glob(f".{PRESET}.download-*/*") if f.is_file()]

    if phase == "download":
        served.mode, served.delay = "slow", 60.0  # half the file, then a long wait

        def ready():
            return any(f.stat().st_size > 0 for f in raw_files())
    else:

        def ready():  # the whole file is on disk: the child is converting it
            return bool(served.completed) and any(f.stat().st_size == raw_size for f in raw_files())

    child = _spawn(["-", tmp_path / "out.npy", "-"], _child_env())
    try:
        _wait_for(lambda: ready() or child.poll() is not None, 180, f"the {phase}")
        if phase == "conversion":
            time.sleep(0.2)
        assert child.poll() is None, child.communicate()[1][-2000:]
        assert not os.path.exists(info_path)
        assert (folder / f"{PRESET}.lock").exists()
        child.send_signal(signal.SIGKILL)
        child.communicate()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    left = _cache_files()
    print(f"left by the load killed during its {phase}:", left)
    assert not set(left) & set(_final_names())
    served.reset()

    monkeypatch.setenv(registry.LOCK_TIMEOUT_ENV, "10")  # a stale lock would fail, not hang
    start = time.perf_counter()
    path, _ = registry.fetch(PRESET)
    print(f"next load after the kill: {time.perf_counter() - start:.2f} s")
    assert served.requests == [_REQUEST]
    assert _cache_files() == _final_names()  # leftovers and the lock file are gone
    assert path == weights_path
    np.testing.assert_allclose(scores_of(path), expected, atol=1e-4)


@pytest.mark.large  # a TensorFlow child process without the DAC override: 22-28 s
def test_a_read_only_keras_home_falls_back_to_the_temp_folder(
    served, golden_io, tmp_path, monkeypatch
):
    home = tmp_path / "read_only_home"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # A second preset converted while the folder was writable stays readable from it.
    monkeypatch.setenv("KERAS_HOME", str(home))
    other = "slowfast_8x8_r50_kinetics400"
    registry.fetch(other)
    assert len(served.requests) == 1
    readable = _cache_files()
    for folder in (home / "models" / "keras_slowfast", home / "models", home):
        folder.chmod(0o555)
    try:
        prefix = ()
        if os.access(home, os.W_OK):
            # Root bypasses permissions: start the child without that capability.
            prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
            if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"]).returncode:
                pytest.skip("0o555 is not enforced for root here and setpriv cannot drop it")
        script = (
            "import json, warnings\n"
            "from keras_slowfast import hub\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            f"    old, _ = hub.fetch({other!r})\n"
            f"    new, _ = hub.fetch({PRESET!r})\n"
            "ours = [str(x.message) for x in w if str(x.message).startswith('The cache')]\n"
            "print(json.dumps(dict(old=old, new=new, warnings=ours)))\n"
        )
        proc = subprocess.run(
            [*prefix, sys.executable, "-c", script],
            cwd=_REPO,
            env=_child_env({"TMPDIR": str(tmp)}),
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        for folder in (home, home / "models", home / "models" / "keras_slowfast"):
            folder.chmod(0o755)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    fallback = tmp / ".keras" / "models" / "keras_slowfast"
    assert result["old"] == str(home / "models" / "keras_slowfast" / f"{other}.weights.h5")
    assert result["new"] == str(fallback / f"{PRESET}.weights.h5")
    assert len(result["warnings"]) == 1
    assert "cannot be written" in result["warnings"][0]
    assert served.requests == [f"/{presets.get_preset(other).checkpoint.path}", _REQUEST]
    assert _cache_files(str(home / "models" / "keras_slowfast")) == readable
    assert sorted(os.listdir(fallback)) == [f"{PRESET}.json", f"{PRESET}.weights.h5"]
    clip, expected = golden_io
    model = ks.SlowR50(
        weights=result["new"],
        width_per_group=8,
        classes=10,
        train_crop_size=64,
        include_preprocessing=False,
    )
    np.testing.assert_allclose(model.predict_on_batch(clip), expected, atol=1e-4)


@pytest.mark.skipif(atomic.fcntl is None, reason="flock needs fcntl")
def test_a_flock_held_by_a_killed_process_is_free_at_once(tmp_path):
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            # The module alone (standard library only), without importing TensorFlow.
            "import importlib.util, sys, time\n"
            "spec = importlib.util.spec_from_file_location('atomic', sys.argv[1])\n"
            "atomic = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(atomic)\n"
            f"with atomic.file_lock({str(lock)!r}):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(120)\n",
            atomic.__file__,
        ],
        cwd=_REPO,
        env=_child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(atomic.LockTimeout, match="still holds"):
            with atomic.file_lock(lock, timeout=0.3):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert lock.exists()  # left by the killed holder, but not locked
    start = time.monotonic()
    with atomic.file_lock(lock, timeout=5):
        waited = time.monotonic() - start
    print(f"lock wait after the holder was killed: {waited * 1000:.1f} ms")
    assert waited < 0.5
    assert not lock.exists()


def test_the_exclusive_lock_times_out_and_replaces_a_stale_file(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text("12345\n")  # a live holder's file, just written
    with pytest.raises(atomic.LockTimeout, match="if none is running, remove"):
        with atomic.file_lock(lock, timeout=0.3, method="exclusive"):
            pass
    old = time.time() - 3600
    os.utime(lock, (old, old))  # left by a holder killed an hour ago
    with atomic.file_lock(lock, timeout=0.3, stale_s=600, method="exclusive"):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert not lock.exists()
    with pytest.raises(ValueError, match="Received: method='fcntl'"):
        with atomic.file_lock(lock, method="fcntl"):
            pass
