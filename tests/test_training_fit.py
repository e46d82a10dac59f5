"""`examples/train.py` under MirroredStrategy (two virtual CPUs), SIGKILL + resume, evaluation.

Each strategy lives in its own subprocess: a second MirroredStrategy with synchronized
BatchNorm in one process fails. One run of the training script is killed mid-epoch and
rerun; the tests check what it left behind.
"""

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "training_scripts"
EPOCHS, STEPS, BATCH, BASE_LR, WARMUP = 4, 6, 4, 0.4, 1.0
KILL_IN_EPOCH = 3  # 1-based, as Keras prints it


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _train_args(list_file, model_dir):
    return [
        sys.executable,
        str(SCRIPTS / "with_virtual_cpus.py"),
        "2",
        str(REPO / "examples" / "train.py"),
        f"--train_list={list_file}",
        "--arch=slow_8x8_r50",
        "--num_frames=8",
        "--sampling_rate=4",
        "--width_per_group=8",
        "--classes=3",
        "--crop_size=32",
        "--jitter_min=32",
        "--jitter_max=40",
        "--dropout_rate=0",
        f"--global_batch_size={BATCH}",
        f"--epochs={EPOCHS}",
        f"--steps_per_epoch={STEPS}",
        f"--base_lr={BASE_LR}",
        f"--warmup_epochs={WARMUP}",
        "--strategy=mirrored",
        "--devices=/cpu:0,/cpu:1",
        "--sync_bn",
        "--precise_bn_batches=2",
        "--seed=0",
        "--verbose=2",
        f"--model_dir={model_dir}",
    ]


def _read(path):
    return path.read_text(errors="replace") if path.exists() else ""


def _run_until_killed(args, log, marker, timeout):
    """Starts the script, SIGKILLs it shortly after `marker` appears in its output."""
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=REPO)
    try:
        deadline = time.monotonic() + timeout
        while marker not in _read(log):
            if proc.poll() is not None:
                raise AssertionError(f"training ended before {marker!r}:\n{_read(log)[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} after {timeout}s:\n{_read(log)[-3000:]}")
            time.sleep(0.05)
        time.sleep(_seconds_per_step(_read(log)))  # about one step into the epoch
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


def _seconds_per_step(log_text):
    """Step time of the last finished epoch, from Keras' `6/6 - 2s - 311ms/step` lines."""
    found = re.findall(r"- (\d+(?:\.\d+)?)(ms|s)/step", log_text)
    if not found:
        return 0.3
    value, unit = found[-1]
    return float(value) / (1000.0 if unit == "ms" else 1.0)


def _run(args, log, timeout):
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=REPO)
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, _read(log)[-3000:]


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _reference_lr(step):
    """PySlowFast's cosine policy with linear warm-up, written out independently."""
    scale = BATCH / 64
    base, start, end = BASE_LR * scale, 0.01 * scale, 0.0
    epoch = step / STEPS

    def cosine(e):
        return end + (base - end) * (math.cos(math.pi * e / EPOCHS) + 1.0) * 0.5

    if epoch < WARMUP:
        return start + epoch * (cosine(WARMUP) - start) / WARMUP
    return cosine(epoch)


@pytest.fixture(scope="module")
def trained(videos, tmp_path_factory):
    """A run killed during epoch 3 and resumed to the end; returns its folder and logs."""
    root = tmp_path_factory.mktemp("fit")
    # The sample videos show the same street, so a content label is not learnable; one
    # label for every clip is, and shows the optimisation working across replicas.
    entries = [f"{videos / name} 1" for name in ("bikes.mp4", "k00.mp4", "k03.mp4")] * 8
    list_file = root / "train.csv"
    list_file.write_text("\n".join(entries) + "\n")
    model_dir = root / "run"
    args = _train_args(list_file, model_dir)
    killed_log, resumed_log = root / "killed.log", root / "resumed.log"
    rc = _run_until_killed(args, killed_log, f"Epoch {KILL_IN_EPOCH}/{EPOCHS}", timeout=400)
    rows_at_kill = _csv_rows(model_dir / "history.csv")
    backup_meta = json.loads((model_dir / "backup" / "training_metadata.json").read_text())
    _run(args, resumed_log, timeout=400)
    return dict(
        root=root,
        list_file=list_file,
        model_dir=model_dir,
        killed_rc=rc,
        rows_at_kill=rows_at_kill,
        backup_meta=backup_meta,
        killed_log=_read(killed_log),
        resumed_log=_read(resumed_log),
        rows=_csv_rows(model_dir / "history.csv"),
    )


@pytest.mark.large  # over the default suite's time budget
def test_killed_mid_epoch(trained):
    assert trained["killed_rc"] == -signal.SIGKILL
    # Epochs 1 and 2 finished and were backed up; epoch 3 was running.
    assert [int(r["epoch"]) for r in trained["rows_at_kill"]] == [0, 1]
    assert trained["backup_meta"]["epoch"] == KILL_IN_EPOCH - 1
    assert f"Epoch {KILL_IN_EPOCH + 1}/{EPOCHS}" not in trained["killed_log"]


@pytest.mark.large  # over the default suite's time budget
def test_resume_continues_epochs_and_schedule(trained):
    log = trained["resumed_log"]
    epoch_lines = [line for line in log.splitlines() if line.startswith("Epoch ")]
    assert epoch_lines[0] == f"Epoch {KILL_IN_EPOCH}/{EPOCHS}", epoch_lines
    assert len(epoch_lines) == EPOCHS - KILL_IN_EPOCH + 1
    rows = trained["rows"]
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    # The learning rate logged after each epoch is the schedule at the next step, so the
    # resumed run restored the optimizer's step counter along with the weights.
    for r in rows:
        step = (int(r["epoch"]) + 1) * STEPS
        assert float(r["learning_rate"]) == pytest.approx(_reference_lr(step), abs=1e-6)


@pytest.mark.large  # over the default suite's time budget
def test_loss_falls(trained):
    losses = [float(r["loss"]) for r in trained["rows"]]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
    assert losses[0] < math.log(3) + 0.5  # trained from a near-uniform start


@pytest.mark.large  # over the default suite's time budget
def test_checkpoints_and_tensorboard_written(trained):
    import tensorflow as tf

    d = trained["model_dir"]
    for epoch in range(1, EPOCHS + 1):
        assert (d / "checkpoints" / f"epoch_{epoch:03d}.weights.h5").stat().st_size > 0
    assert (d / "final.weights.h5").stat().st_size > 0
    assert "Precise BN statistics from 2 batches." in trained["resumed_log"]
    events = sorted((d / "logs" / "train").glob("events.out.tfevents.*"))
    assert len(events) == 2  # one per run
    tags = set()
    for path in events:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(v.tag for v in event.summary.value)
    assert {"epoch_loss", "epoch_learning_rate"} <= tags


@pytest.mark.large  # over the default suite's time budget
def test_evaluate_multiview(trained, videos, tmp_path):
    """`examples/evaluate.py` against per-view predictions summed here in NumPy."""
    import keras_slowfast
    from keras_slowfast import data

    test_list = tmp_path / "test.csv"
    test_list.write_text(
        "".join(f"{videos / n} {i}\n" for i, n in enumerate(("k00.mp4", "bikes.mp4", "k03.mp4")))
    )
    weights = trained["model_dir"] / "final.weights.h5"
    out = tmp_path / "scores.json"
    views, crops = 2, 3
    args = [
        sys.executable,
        str(REPO / "examples" / "evaluate.py"),
        f"--test_list={test_list}",
        "--arch=slow_8x8_r50",
        "--num_frames=8",
        "--sampling_rate=4",
        "--width_per_group=8",
        "--classes=3",
        f"--weights={weights}",
        "--crop_size=32",
        "--train_crop_size=32",
        f"--num_temporal_views={views}",
        f"--num_spatial_crops={crops}",
        "--batch_size=4",
        f"--output_json={out}",
    ]
    result = subprocess.run(args, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())

    model = keras_slowfast.SlowR50(
        num_frames=8, width_per_group=8, classes=3, train_crop_size=32, weights=str(weights)
    )
    ds = data.kinetics_dataset(
        test_list,
        "test",
        num_frames=8,
        sampling_rate=4,
        crop_size=32,
        num_temporal_views=views,
        num_spatial_crops=crops,
        batch_size=5,
    )
    sums, labels, counts = np.zeros((3, 3)), np.zeros(3, int), np.zeros(3, int)
    for clips, label, video, _ in ds:
        probs = model.predict_on_batch(clips)
        for p, lab, v in zip(probs, label.numpy(), video.numpy()):
            sums[v] += p
            labels[v] = lab
            counts[v] += 1
    assert counts.tolist() == [views * crops] * 3
    assert report["video_indices"] == [0, 1, 2]
    assert report["labels"] == [0, 1, 2]
    np.testing.assert_allclose(report["scores"], sums, rtol=1e-4, atol=1e-5)
    assert report["top1"] == pytest.approx(np.mean(np.argmax(sums, 1) == labels))
    assert report["num_views"] == 3 * views * crops
    assert f"top1 {100 * report['top1']:.2f}%" in result.stdout


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
def test_help_documents_every_flag(script):
    path = REPO / "examples" / script
    result = subprocess.run(
        [sys.executable, str(path), "--help"],
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # absl exits with status 1 after printing the help.
    assert result.returncode in (0, 1) and "--arch" in result.stdout, result.stderr[-2000:]
    defined = re.findall(r'flags\.DEFINE_\w+\(\s*"(\w+)"', path.read_text())
    assert len(defined) > 10
    # Each flag's entry: `--name: description` (enums: `--name: <a|b>: description`).
    entries = dict(
        re.findall(r"^  --(?:\[no\])?(\w+):((?:.*\n)(?:    .*\n)*)", result.stdout, re.M)
    )
    for name in defined:
        assert name in entries, name
        text = re.sub(r"<[^>]*>:", "", " ".join(entries[name].split()))
        text = re.sub(r"\(default: .*?\)|\(an? [\w ]+\)", "", text).strip()
        assert len(text) > 10, (name, entries[name])
