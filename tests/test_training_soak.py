"""Soak test of resuming: SIGKILL a `model.fit` run at random points, resume it each time.

`tests/training_scripts/soak_train.py` trains a tiny Slow R50 deterministically (op
determinism, seeded initialisation and dropout, batch `s` a function of step `s`) with the
package's `standard_callbacks`. One run goes through uninterrupted; another is killed
with SIGKILL several times at seeded random moments, half of them while a checkpoint is
being written, and rerun until it finishes. The tests check, after every kill, that every
file under a final name is complete (it loads into the model), and at the end that the
resumed run's `final.weights.h5` equals the uninterrupted run's.

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
import re
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


def _start(model_dir, epochs, steps, log):
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, str(SCRIPT), str(model_dir), str(epochs), str(steps)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
            cwd=REPO,
        )


def _run_to_end(model_dir, epochs, steps, log):
    proc = _start(model_dir, epochs, steps, log)
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


def _seconds_per_epoch(log_text, steps):
    """From Keras' `4/4 - 1s - 290ms/step` lines (the last, after tracing)."""
    found = re.findall(r"- (\d+(?:\.\d+)?)(ms|s)/step", log_text)
    value, unit = found[-1]
    return steps * float(value) / (1000.0 if unit == "ms" else 1.0)


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
            lambda name, obj: arrays.__setitem__(name, obj[()])
            if isinstance(obj, h5py.Dataset)
            else None
        )
    return arrays


def _soak(root, epochs, steps, kills, seed):
    """Runs the reference and the killed-and-resumed run; returns the figures."""
    started = time.monotonic()
    reference = root / "reference"
    _run_to_end(reference, epochs, steps, root / "reference.log")
    epoch_s = _seconds_per_epoch(_read(root / "reference.log"), steps)
    model = _script().build_model(epochs, steps)
    rng = random.Random(seed)
    soaked = root / "soaked"
    cycles = []
    for k in range(kills):
        at_start = _backup_epoch(soaked)
        log = root / f"soaked_{k}.log"
        mid_save = k % 2 == 1
        proc = _start(soaked, epochs, steps, log)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT
            # Progress first (a finished epoch), so that every cycle moves the run on.
            while _backup_epoch(soaked) <= at_start:
                assert proc.poll() is None, f"run {k} ended early:\n{_read(log)[-3000:]}"
                assert time.monotonic() < deadline, _read(log)[-3000:]
                time.sleep(0.02)
            if mid_save:
                # The next save: kill as soon as one of its temporary files appears.
                while not _temp_files(soaked):
                    assert proc.poll() is None, f"run {k} ended early:\n{_read(log)[-3000:]}"
                    assert time.monotonic() < deadline, _read(log)[-3000:]
                    time.sleep(0.002)
                delay = 0.0
            else:
                delay = rng.uniform(0.0, epoch_s)
                time.sleep(delay)
            assert proc.poll() is None, f"run {k} ended before its kill:\n{_read(log)[-3000:]}"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        temps = _temp_files(soaked)
        backup_epoch, checked = _check_files(model, soaked, steps)
        assert backup_epoch is not None and backup_epoch > at_start
        cycles.append(
            dict(mid_save=mid_save, delay=delay, backup_epoch=backup_epoch, temps=temps,
                 files_loaded=checked)
        )
    _run_to_end(soaked, epochs, steps, root / "soaked_final.log")
    assert not list((soaked / "backup").glob(".*")), "stale temporary files in backup/"
    assert not list((soaked / "checkpoints").glob(".*")), "stale temporary files"
    _check_files(model, soaked, steps)
    expected = _weights(reference / "final.weights.h5")
    got = _weights(soaked / "final.weights.h5")
    assert sorted(got) == sorted(expected)
    diff = max(float(np.max(np.abs(got[n] - expected[n]), initial=0.0)) for n in expected)
    figures = dict(
        kills=len(cycles),
        mid_save_kills_with_temp_files=sum(bool(c["temps"]) for c in cycles if c["mid_save"]),
        max_abs_diff=diff,
        arrays=len(expected),
        seconds=round(time.monotonic() - started, 1),
        epoch_seconds=round(epoch_s, 2),
        cycles=cycles,
    )
    print(json.dumps(figures, indent=1))
    return figures, expected, got


def _assert_soak(figures, expected, got):
    assert figures["mid_save_kills_with_temp_files"] >= 1, figures
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert figures["max_abs_diff"] == 0.0


def test_soak_two_kills(tmp_path):
    """Two SIGKILLs (one at a random moment, one during a save), resumed each time."""
    figures, expected, got = _soak(tmp_path, epochs=6, steps=4, kills=2, seed=1)
    assert figures["kills"] == 2
    _assert_soak(figures, expected, got)


@pytest.mark.large
def test_soak_ten_kills(tmp_path):
    """Ten seeded SIGKILLs, alternately at random moments and during saves."""
    figures, expected, got = _soak(tmp_path, epochs=22, steps=4, kills=10, seed=10)
    assert figures["kills"] == 10
    _assert_soak(figures, expected, got)
