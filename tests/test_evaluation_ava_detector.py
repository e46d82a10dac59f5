"""End to end: AVA data -> detector -> frame-mAP, against PySlowFast's own run (golden)."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MAP_KEY = "PascalBoxes_Precision/mAP@0.5IOU"


@pytest.fixture(scope="module")
def e2e(golden):
    root = golden / "ava_data"
    if not (root / "ava_e2e_model.pyth").is_file():
        pytest.skip("golden ava_data/ava_e2e_model.pyth not found")
    meta = json.loads((root / "ava_data.json").read_text())
    return root, meta["end_to_end"]


def _assert_metrics_equal(got, expected):
    assert list(got) == list(expected)
    for key, value in expected.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            assert got[key] is None or math.isnan(got[key]), key
        else:
            assert abs(got[key] - value) <= 1e-6, (key, got[key], value)


@pytest.fixture(scope="module")
def detector(e2e):
    """The golden end-to-end detector (a lean functional model), loaded once."""
    import keras_slowfast

    return keras_slowfast.load_pyslowfast(e2e[0] / "ava_e2e_model.pyth")


@pytest.mark.large
def test_evaluate_ava_detector_reproduces_pyslowfast(e2e, detector, tmp_path):
    """The lean detector's scores, metrics and files equal PySlowFast's run.

    Large: `test_evaluate_ava_command` runs the same lean detector through the same
    function (metrics, detections file, output folder), and
    `test_a_plain_keras_detector_gives_the_same_scores` compares the scores (atol 1e-4)
    and the mAP.
    """
    from keras_slowfast.evaluation.ava_detector import evaluate_ava_detector

    root, expected = e2e
    model = detector
    result = evaluate_ava_detector(
        model,
        root / "dataset",
        test_crop_size=128,
        full_test_on_val=True,
        output_dir=tmp_path,
        progress=False,
    )
    # Scores: float32 here, float64 in the reference run.
    reference = np.load(root / "expected_scores.npy")
    assert result.scores.shape == reference.shape == (expected["num_boxes_scored"], 80)
    np.testing.assert_allclose(result.scores, reference, atol=1e-4)
    _assert_metrics_equal(result.metrics, expected["metrics"])
    assert abs(result.mean_ap - expected["metrics"][MAP_KEY]) <= 1e-6


def _read_rows(path):
    with open(path, newline="") as f:
        return [row for row in csv.reader(f)]


def test_evaluate_ava_command(e2e, tmp_path):
    root, expected = e2e
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "keras_slowfast.cli", "evaluate-ava", str(root / "dataset"),
        "--weights", str(root / "ava_e2e_model.pyth"), "--test-crop-size", "128",
        "--output-dir", str(out), "--quiet",
    ]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"frame-mAP@0.5IOU: {expected['metrics'][MAP_KEY]:.6f}" in result.stdout
    _assert_metrics_equal(json.loads((out / "metrics.json").read_text()), expected["metrics"])
    # The official detections file: same rows in the same order; scores are written with 4
    # decimals, so float32 vs float64 can flip the last one.
    ours, reference = (
        _read_rows(out / "detections.csv"),
        _read_rows(root / "expected_detections.csv"),
    )
    assert len(ours) == len(reference) == 15 * 60
    for a, b in zip(ours, reference):
        assert a[:7] == b[:7]
        assert abs(float(a[7]) - float(b[7])) <= 1.5e-4
    assert sorted(p.name for p in out.iterdir()) == ["detections.csv", "metrics.json"]


def test_evaluate_ava_command_errors(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    base = [sys.executable, "-m", "keras_slowfast.cli", "evaluate-ava"]
    result = subprocess.run(
        base + [str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 2
    assert "Received: data_dir=" in result.stderr
    result = subprocess.run(
        base + [str(tmp_path), "--model", "slowfast_8x8_r50", "--weights", "none"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert "detector preset" in result.stderr and "Received: --model slowfast_8x8_r50" in (
        result.stderr
    )


def test_a_plain_keras_detector_gives_the_same_scores(e2e, detector):
    """Any Keras detector works (here the same graph as a plain functional model)."""
    import keras

    from keras_slowfast.evaluation.ava_detector import evaluate_ava_detector

    root, expected = e2e
    lean = detector
    plain = keras.Model(lean.input, lean.output)
    assert type(plain) is not type(lean)
    result = evaluate_ava_detector(
        plain, root / "dataset", test_crop_size=128, full_test_on_val=True, progress=False
    )
    np.testing.assert_allclose(result.scores, np.load(root / "expected_scores.npy"), atol=1e-4)
    assert abs(result.mean_ap - expected["metrics"][MAP_KEY]) <= 1e-6
