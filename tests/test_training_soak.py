"""Soak test of resuming: SIGKILL a `model.fit` run at random points, resume it each time.

`tests/training_scripts/soak_train.py` trains a tiny Slow R50 deterministically (op
determinism, seeded initialisation and dropout, batch `s` a function of step `s`) with the
package's `standard_callbacks`. One run goes through uninterrupted; another is killed
with SIGKILL several times at seeded points, half of them while a checkpoint is being
written, and rerun until it finishes. The tests check, after every kill, that every file
under a final name is complete (it loads into the model), and at the end that the resumed
run's `final.weights.h5` equals the uninterrupted run's.

A kill point is a point of the run's progress, not a moment: the run is told it (the
script's `PAUSE`), stops there, says so and waits; the test then sends SIGKILL. A run
cannot finish before its kill, however fast or loaded the machine. Each run is killed in
the epoch after the first one it finishes (so that every cycle moves the backup on):
after a seeded step, or in one of the epoch's saves (seeded: the epoch's weights, the
backup's weights or its JSON) at a seeded phase (the temporary file just created, partly
written, or complete but not yet renamed). No file is written during the steps, so where
in a step the process dies does not matter to what it leaves.

What is guaranteed: a rerun resumes at the start of the epoch after the last finished one
(the interrupted epoch's steps are redone) with the weights, the optimizer state (step
counter and momenta) and the dropout seed states of that epoch's end. With an input
pipeline that yields an epoch's batches whatever epoch it starts at, the weights are
bit-identical to an uninterrupted run's.

The comparison is of the code with itself (plumbing, not numerics): any difference at all
means state was lost or replayed, so the tolerance is zero.
"""

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "training_scripts" / "soak_train.py"
RUN_TIMEOUT = 600


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _script():
    spec = importlib.util.spec_from_file_location("soak_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path):
    return Path(path).read_text(errors="replace") if Path(path).exists() else ""


def _start(model_dir, epochs, steps, log, kind, pause=None):
    args = [sys.executable, str(SCRIPT), str(model_dir), str(epochs), str(steps), kind]
    if pause is not None:
        args.append(json.dumps(pause))
    with open(log, "w") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=REPO,
        )


def _run_to_end(model_dir, epochs, steps, log, kind):
    proc = _start(model_dir, epochs, steps, log, kind)
    try:
        proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, _read(log)[-3000:]


def _backup_epoch(model_dir):
    from keras_slowfast import training

    return training.resume_epoch(model_dir / "backup")


def _temp_files(model_dir):
    return sorted(
        p.relative_to(model_dir).as_posix()
        for folder in ("backup", "checkpoints")
        for p in (model_dir / folder).glob(".*")
    )


def _check_files(model, model_dir, steps):
    """Loads every file under a final name; returns the backup's epoch (or None)."""
    import h5py

    from keras_slowfast import training

    checked = 0
    for path in sorted(model_dir.glob("**/*.weights.h5")):
        if path.name.startswith("."):
            continue
        with h5py.File(path, "r"):  # a truncated HDF5 file fails here
            pass
        model.load_weights(str(path))
        checked += 1
    backup_epoch = None
    backup = model_dir / "backup" / "latest.weights.h5"
    if backup.exists():
        backup_epoch = training.resume_epoch(model_dir / "backup")
        model.load_weights(str(backup))
        # The optimizer state travels in the same file as the epoch number.
        assert int(model.optimizer.iterations.numpy()) == backup_epoch * steps
        metadata = json.loads((model_dir / "backup" / "training_metadata.json").read_text())
        # Written after the weights, so at most one epoch behind them.
        assert metadata["epoch"] in (backup_epoch, backup_epoch - 1), metadata
    for path in sorted((model_dir / "checkpoints").glob("epoch_*.weights.h5")):
        epoch = int(path.name[len("epoch_") : -len(".weights.h5")])
        model.load_weights(str(path))
        assert int(model.optimizer.iterations.numpy()) == epoch * steps, path.name
    return backup_epoch, checked


def _weights(path):
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return arrays


def _kill_cycle(soaked, epochs, steps, log, kind, mid_save, rng):
    """Starts a run, SIGKILLs it where it pauses (a seeded point); returns the kill point."""
    at_start = _backup_epoch(soaked)
    # The epoch after the first one this run finishes (0-based, from the first run).
    pause = dict(epoch=at_start + 1)
    assert pause["epoch"] < epochs, f"too few epochs for this many kills: {epochs}"
    if mid_save:
        pause["file"] = rng.choice(["checkpoint", "backup", "metadata"])
        phases = (
            ["created", "written"]
            if pause["file"] == "metadata"
            else ["created", "partial", "written"]
        )
        pause["phase"] = rng.choice(phases)
    else:
        pause["step"] = rng.randrange(steps)
    proc = _start(soaked, epochs, steps, log, kind, pause)
    point = dict(resumed_at=at_start, mid_save=mid_save, pause=pause)
    marker = f"PAUSED {json.dumps(pause, sort_keys=True)}"
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while marker not in _read(log):
            # It cannot end before its pause (an epoch before the last): only by failing.
            assert proc.poll() is None, f"the run ended before its pause:\n{_read(log)[-3000:]}"
            assert time.monotonic() < deadline, _read(log)[-3000:]
            time.sleep(0.05)
        assert f"resuming at epoch {at_start}" in _read(log)
        point["temp_files"] = _temp_files(soaked)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # What the kill left.
    assert _temp_files(soaked) == point["temp_files"]
    return point


def _soak(root, epochs, steps, kills, seed, kind):
    """The uninterrupted run (alongside) and the killed-and-resumed one; the figures."""
    started = time.monotonic()
    reference, soaked = root / "reference", root / "soaked"
    reference_proc = _start(reference, epochs, steps, root / "reference.log", kind)
    try:
        model = _script().build_model(epochs, steps, kind)
        rng = random.Random(seed)
        points = []
        for k in range(kills):
            log = root / f"soaked_{k}.log"
            point = _kill_cycle(soaked, epochs, steps, log, kind, k % 2 == 1, rng)
            backup_epoch, loaded = _check_files(model, soaked, steps)
            assert backup_epoch is not None and backup_epoch > point["resumed_at"], point
            point.update(backup_epoch=backup_epoch, files_loaded=loaded)
            points.append(point)
        _run_to_end(soaked, epochs, steps, root / "soaked_final.log", kind)
        reference_proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if reference_proc.poll() is None:
            reference_proc.kill()
            reference_proc.wait()
    assert reference_proc.returncode == 0, _read(root / "reference.log")[-3000:]
    # The next start removed the temporary files of the saves that were killed.
    assert not _temp_files(soaked)
    _check_files(model, soaked, steps)
    names = [f"epoch_{e:03d}.weights.h5" for e in range(1, epochs + 1)]
    assert sorted(p.name for p in (soaked / "checkpoints").iterdir()) == names
    pairs = [(reference / "final.weights.h5", soaked / "final.weights.h5")]
    pairs += [(reference / "checkpoints" / n, soaked / "checkpoints" / n) for n in names]
    diffs = {}
    for expected_path, got_path in pairs:
        expected, got = _weights(expected_path), _weights(got_path)
        assert sorted(got) == sorted(expected)
        diffs[got_path.name] = max(
            float(np.max(np.abs(got[n] - expected[n]), initial=0.0)) for n in expected
        )
    figures = dict(
        kills=len(points),
        mid_save_kills_with_temp_files=sum(bool(p["temp_files"]) for p in points if p["mid_save"]),
        max_abs_diff=max(diffs.values()),
        files_compared=len(diffs),
        seconds=round(time.monotonic() - started, 1),
        points=points,
    )
    print(json.dumps(figures, indent=1))
    return figures


def _assert_soak(figures, kills):
    assert figures["kills"] == kills
    # Every kill in a save landed there: its temporary file was left behind.
    assert figures["mid_save_kills_with_temp_files"] == kills // 2, figures
    # Bit-identical: the final weights and every epoch's checkpoint (optimizer included).
    assert figures["max_abs_diff"] == 0.0, figures


def test_soak_two_kills_tiny(tmp_path):
    """Two SIGKILLs (a seeded step, then during a save) of a tiny model with dropout."""
    _assert_soak(_soak(tmp_path, epochs=6, steps=3, kills=2, seed=1, kind="tiny"), kills=2)


@pytest.mark.large
def test_soak_two_kills_slow_r50(tmp_path):
    """The same with a narrow Slow R50 (about 100 s of CPU)."""
    _assert_soak(_soak(tmp_path, epochs=5, steps=2, kills=2, seed=1, kind="slow_r50"), kills=2)


@pytest.mark.large
def test_soak_ten_kills_slow_r50(tmp_path):
    """Ten seeded SIGKILLs of the narrow Slow R50, alternately at a step and during a save."""
    _assert_soak(_soak(tmp_path, epochs=21, steps=3, kills=10, seed=10, kind="slow_r50"), kills=10)
