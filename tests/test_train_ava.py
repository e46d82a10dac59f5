"""`examples/train_ava.py`: fine-tuning a narrow detector on the golden AVA-layout dataset.

The detector (narrow `ava_slowfast_r50_detection`) starts from the narrow golden
SLOWFAST_8x8_R50 classifier and trains on `ava_data/dataset` in a subprocess, with a small
crop so that it is quick. The loss is checked twice: the script's own history, and the
binary cross-entropy computed here in NumPy from the scores of the initial and the final
weights on the same training batches. A second run (large) is killed during an epoch under
`MirroredStrategy` with synchronized BatchNorm and resumed.
"""

import csv
import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_training_fit import REPO, SCRIPTS, _env, _read, _run

SCRIPT = REPO / "examples" / "train_ava.py"
ARCH = "ava_slowfast_r50_detection"
CROP, JITTER = 64, (64, 80)
EPOCHS, STEPS, BATCH, LR = 3, 4, 2, 0.05


def _args(golden, model_dir, epochs=EPOCHS, steps=STEPS, extra=()):
    return [
        sys.executable,
        str(SCRIPT),
        f"--data_dir={golden / 'ava_data' / 'dataset'}",
        f"--arch={ARCH}",
        "--width_per_group=8",
        f"--init_weights={golden / 'models' / 'slowfast_8x8_r50' / 'pyslowfast.pyth'}",
        f"--train_crop_size={CROP}",
        f"--jitter_min={JITTER[0]}",
        f"--jitter_max={JITTER[1]}",
        f"--test_crop_size={CROP}",
        f"--global_batch_size={BATCH}",
        f"--base_batch_size={BATCH}",  # the rates below are those of this batch
        f"--base_lr={LR}",
        "--warmup_epochs=0",
        "--lr_steps=0,2",  # steps_with_relative_lrs: 0.05, then 0.005 from epoch 2
        "--lr_values=1,0.1",
        f"--epochs={epochs}",
        f"--steps_per_epoch={steps}",
        f"--eval_every_n_epochs={epochs}",
        "--seed=0",
        "--precise_bn_batches=2",
        "--verbose=2",
        f"--model_dir={model_dir}",
        *extra,
    ]


def _run_until_killed(args, log, marker, timeout, delay=0.5):
    """Starts the script and SIGKILLs it `delay` seconds after `marker` appears in its log."""
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
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _reference_lr(step, steps_per_epoch):
    return LR * (1.0 if step / steps_per_epoch < 2 else 0.1)


@pytest.fixture(scope="module")
def finetuned(golden, tmp_path_factory):
    root = tmp_path_factory.mktemp("train_ava")
    model_dir = root / "run"
    log = root / "train.log"
    _run(_args(golden, model_dir), log, timeout=600)
    return dict(model_dir=model_dir, log=_read(log), rows=_rows(model_dir / "history.csv"))


def _bce(scores, labels, weights):
    """torch.nn.BCELoss(reduction="mean") over the real boxes, in NumPy."""
    real = weights.astype(bool)
    p, y = scores[real].astype(np.float64), labels[real]
    with np.errstate(divide="ignore"):
        terms = y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log(1 - p), -100)
    return float(-terms.mean())


def test_backbone_loaded_from_the_classifier(finetuned):
    assert (
        "Loaded 550 backbone weights from " in finetuned["log"]
        and "; new: head_projection/kernel, head_projection/bias; skipped checkpoint tensors: "
        "head.projection.bias, head.projection.weight"
        in finetuned["log"]
    ), finetuned["log"][-2000:]
    assert "14 training keyframes, 4 steps per epoch, global batch 2" in finetuned["log"]
    assert "Precise BN statistics from 2 batches." in finetuned["log"]


def test_training_loss_falls(finetuned, golden):
    import keras

    from keras_slowfast import data, training
    from keras_slowfast import hub as registry

    losses = [float(r["loss"]) for r in finetuned["rows"]]
    assert [int(r["epoch"]) for r in finetuned["rows"]] == list(range(EPOCHS))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses

    # The same training batches scored by the initial and the final detector as in training
    # (BatchNorm on batch statistics; no dropout, which has no weights).
    ds = data.ava_dataset(
        golden / "ava_data" / "dataset",
        "train",
        batch_size=BATCH,
        train_crop_size=CROP,
        train_jitter_scales=JITTER,
        seed=1,
    )
    batches = list(ds)
    keras.utils.set_random_seed(0)
    model = registry.build(
        ARCH, width_per_group=8, classes=80, dropout_rate=0.0, input_shape=(32, None, None, 3)
    )
    training.load_classifier_backbone(
        model, golden / "models" / "slowfast_8x8_r50" / "pyslowfast.pyth"
    )

    def loss_of(m):
        scores = [np.asarray(m(x, training=True)) for x, _, _ in batches]
        labels = [y.numpy() for _, y, _ in batches]
        weights = [w.numpy() for _, _, w in batches]
        return _bce(np.concatenate(scores), np.concatenate(labels), np.concatenate(weights))

    before = loss_of(model)
    model.load_weights(finetuned["model_dir"] / "final.weights.h5")
    after = loss_of(model)
    print(f"training-set BCE before {before:.4f}, after {after:.4f}; history {losses}")
    assert after < 0.5 * before


def test_schedule_in_history(finetuned):
    # The rate logged after each epoch is the schedule at the next step.
    for r in finetuned["rows"]:
        step = (int(r["epoch"]) + 1) * STEPS
        assert float(r["learning_rate"]) == pytest.approx(_reference_lr(step, STEPS), rel=1e-6)


def test_validation_checkpoints_and_tensorboard(finetuned):
    import tensorflow as tf

    d = finetuned["model_dir"]
    rows = finetuned["rows"]
    assert [r["val_mAP"] for r in rows[:-1]] == ["nan"] * (EPOCHS - 1)
    metrics = json.loads((d / "val" / f"epoch_{EPOCHS:03d}" / "metrics.json").read_text())
    value = metrics["PascalBoxes_Precision/mAP@0.5IOU"]
    assert 0.0 <= value <= 1.0
    assert float(rows[-1]["val_mAP"]) == pytest.approx(value, rel=1e-6)
    assert f"Epoch {EPOCHS}: AVA frame-mAP@0.5 {value:.4f}" in finetuned["log"]
    assert (d / "val" / f"epoch_{EPOCHS:03d}" / "detections.csv").stat().st_size > 0
    for epoch in range(1, EPOCHS + 1):
        assert (d / "checkpoints" / f"epoch_{epoch:03d}.weights.h5").stat().st_size > 0
    assert (d / "final.weights.h5").stat().st_size > 0
    assert (d / "backup" / "training_metadata.json").is_file()
    tags = {}
    for split in ("train", "validation"):
        tags[split] = set()
        for path in (d / "logs" / split).glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                tags[split].update(v.tag for v in event.summary.value)
    assert {"epoch_loss", "epoch_learning_rate"} <= tags["train"]
    assert "epoch_mAP" in tags["validation"]


@pytest.mark.large  # two runs of the script, each tracing the training step: about 2 minutes
def test_killed_and_resumed_under_mirrored_strategy(golden, tmp_path):
    model_dir = tmp_path / "run"
    args = _args(
        golden,
        model_dir,
        epochs=3,
        steps=4,
        extra=["--strategy=mirrored", "--devices=/cpu:0,/cpu:1", "--sync_bn"],
    )
    args = [args[0], str(SCRIPTS / "with_virtual_cpus.py"), "2", *args[1:]]
    rc = _run_until_killed(args, tmp_path / "killed.log", "Epoch 2/3", timeout=500)
    assert rc == -signal.SIGKILL
    killed = _read(tmp_path / "killed.log")
    assert "Epoch 3/3" not in killed, killed[-2000:]
    assert [int(r["epoch"]) for r in _rows(model_dir / "history.csv")] == [0]
    assert "2 replica(s)" in killed
    _run(args, tmp_path / "resumed.log", timeout=500)
    resumed = _read(tmp_path / "resumed.log")
    epochs = [line for line in resumed.splitlines() if re.match(r"Epoch \d+/3$", line)]
    assert epochs == ["Epoch 2/3", "Epoch 3/3"], resumed[-2000:]
    rows = _rows(model_dir / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for r in rows:
        step = (int(r["epoch"]) + 1) * 4
        assert float(r["learning_rate"]) == pytest.approx(_reference_lr(step, 4), rel=1e-6)
    assert (model_dir / "final.weights.h5").stat().st_size > 0


def test_help_documents_every_flag():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"],
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1) and "--data_dir" in result.stdout, result.stderr[-2000:]
    defined = re.findall(r'flags\.DEFINE_\w+\(\s*"(\w+)"', SCRIPT.read_text())
    assert len(defined) > 20
    entries = dict(
        re.findall(r"^  --(?:\[no\])?(\w+):((?:.*\n)(?:    .*\n)*)", result.stdout, re.M)
    )
    for name in defined:
        assert name in entries, name


def test_usage_error():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--model_dir=x"],
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "--data_dir is required" in result.stderr + result.stdout
