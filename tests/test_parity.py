"""Numerical parity with PySlowFast and PyTorchVideo on the golden fixtures.

Each fixture folder holds a narrow copy of a published architecture with random weights in
every checkpoint format, and the reference's outputs computed in float64. The Keras model
loaded from each file must reproduce the outputs and logits within 1e-4 of the largest
|logit|, and the per-stage features within float16 storage precision.
"""

import json
import re

import keras
import numpy as np
import pytest

import keras_slowfast
from keras_slowfast.data.sampling import slow_pathway_indices

TOL = 1e-4

CLASSIFIERS = [
    ("slowfast_4x16_r50", "pyslowfast.pyth"),
    ("slowfast_4x16_r50", "caffe2.pkl"),
    ("slowfast_8x8_r50", "pyslowfast.pyth"),
    ("slowfast_8x8_r50", "pyslowfast_legacy.pyth"),
    ("slowfast_8x8_r50", "caffe2.pkl"),
    ("slowfast_nln_8x8_r50", "pyslowfast.pyth"),
    ("slowfast_nln_8x8_r50", "caffe2.pkl"),
    ("slowfast_8x8_r101", "pyslowfast.pyth"),
    ("slowfast_8x8_r101", "caffe2.pkl"),
    ("slowfast_16x8_r101_50_50", "pyslowfast.pyth"),
    ("slowfast_16x8_r101_50_50", "caffe2.pkl"),
    ("slowfast_nln_16x8_r101_50_50", "pyslowfast.pyth"),
    ("slowfast_nln_16x8_r101_50_50", "caffe2.pkl"),
    ("slow_8x8_r50", "pyslowfast.pyth"),
    ("slow_8x8_r50", "caffe2.pkl"),
    ("ptv_slowfast_r50", "pytorchvideo.pyth"),
    ("ptv_slowfast_16x8_r101_50_50", "pytorchvideo.pyth"),
]

DETECTORS = [
    ("ava_slowfast_32x2_r101_50_50", "pyslowfast.pyth"),
    ("ava_slowfast_32x2_r101_50_50", "caffe2.pkl"),
    ("ava_slowfast_32x2_r50_aligned", "pyslowfast.pyth"),
    ("ava_slowfast_32x2_r50_aligned", "caffe2.pkl"),
    ("ptv_slowfast_r50_detection", "pytorchvideo.pyth"),
]

PTV_ARCHS = {
    "ptv_slowfast_r50": "slowfast_r50",
    "ptv_slowfast_16x8_r101_50_50": "slowfast_16x8_r101_50_50",
    "ptv_slowfast_r50_detection": "slowfast_r50_detection",
}


def load(golden, folder, fname):
    path = golden / "models" / folder / fname
    if fname == "pytorchvideo.pyth":
        return keras_slowfast.load_pytorchvideo(
            path, PTV_ARCHS[folder], include_preprocessing=False
        )
    if fname == "caffe2.pkl":
        return keras_slowfast.load_pyslowfast(
            path, config=golden / "models" / folder / "config.yaml", include_preprocessing=False
        )
    return keras_slowfast.load_pyslowfast(path, include_preprocessing=False)


def to_keras_layout(x):
    """(N, C, T, H, W) -> (N, T, H, W, C) float32."""
    return np.transpose(np.asarray(x, np.float32), (0, 2, 3, 4, 1))


def stage_layer(model, stage, pathway):
    """The layer whose output is PySlowFast's `feat_<stage>_pathway<p>`."""
    names = [layer.name for layer in model.layers]
    if stage.endswith("_fuse"):
        if pathway == 0:
            return f"{stage}_concat"
        stage = stage[: -len("_fuse")]
    if stage == "s1":
        return f"s1_pathway{pathway}_stem_pool"
    prefix = f"{stage}_pathway{pathway}_"
    pattern = re.compile(re.escape(prefix) + r"(res\d+_relu|nonlocal\d+_add)")
    return [n for n in names if pattern.fullmatch(n)][-1]


def max_rel_error(got, expected, scale):
    return float(np.max(np.abs(np.asarray(got, np.float64) - expected)) / scale)


@pytest.mark.parametrize("folder,fname", CLASSIFIERS)
def test_classifier_parity(golden, folder, fname):
    io = np.load(golden / "models" / folder / "io.npz")
    model = load(golden, folder, fname)
    proj = model.get_layer("head_projection").output
    feat_keys = sorted(k for k in io.files if k.startswith("train_crop/feat_"))
    feat_layers = []
    for key in feat_keys:
        stage, pathway = key[len("train_crop/feat_") :].rsplit("_pathway", 1)
        feat_layers.append(model.get_layer(stage_layer(model, stage, int(pathway))).output)
    probe = keras.Model(model.input, [model.output, proj] + feat_layers)
    for crop in ("train_crop", "test_crop"):
        if f"{crop}/fast" not in io.files:
            continue
        x = to_keras_layout(io[f"{crop}/fast"])
        out, logits, *feats = probe.predict(x, verbose=0)
        expected = io[f"{crop}/output"].astype(np.float64)
        if f"{crop}/logits" in io.files:
            ref_logits = io[f"{crop}/logits"].astype(np.float64)
            scale = np.abs(ref_logits).max()
            assert logits.shape == ref_logits.shape
            assert max_rel_error(logits, ref_logits, scale) < TOL, f"{crop} logits"
        else:
            # PyTorchVideo's hub classifiers output the averaged logits themselves.
            scale = np.abs(expected).max()
        err = max_rel_error(out, expected, scale)
        assert err < TOL, f"{folder}/{fname} {crop}: max error {err:.2e} of the largest |logit|"
        if crop == "train_crop":
            for key, feat in zip(feat_keys, feats):
                ref = to_keras_layout(io[key]).astype(np.float64)
                got = feat[:1]
                assert got.shape == ref.shape, key
                # Features are stored in float16: relative precision ~5e-4.
                assert max_rel_error(got, ref, np.abs(ref).max() + 1e-6) < 2e-3, key


@pytest.mark.parametrize("folder,fname", DETECTORS)
def test_detector_parity(golden, folder, fname):
    io = np.load(golden / "models" / folder / "io.npz")
    model = load(golden, folder, fname)
    x = to_keras_layout(io["train_crop/fast"])
    rows = io["train_crop/boxes"]
    height, width = x.shape[2:4]
    batch = x.shape[0]
    max_boxes = int(max((rows[:, 0] == b).sum() for b in range(batch))) + 1
    boxes = np.zeros((batch, max_boxes, 4), np.float32)
    slots = []
    filled = [0] * batch
    for row in rows:
        b = int(row[0])
        boxes[b, filled[b]] = row[1:] / np.array([width, height, width, height], np.float32)
        slots.append((b, filled[b]))
        filled[b] += 1
    probe = keras.Model(model.input, [model.output, model.get_layer("head_projection").output])
    out, logits = probe.predict({"clip": x, "boxes": boxes}, verbose=0)
    got = np.stack([out[b, j] for b, j in slots])
    got_logits = np.stack([logits[b, j] for b, j in slots])
    expected = io["train_crop/output"].astype(np.float64)
    if "train_crop/logits" in io.files:
        ref_logits = io["train_crop/logits"].astype(np.float64)
        scale = np.abs(ref_logits).max()
        assert max_rel_error(got_logits, ref_logits, scale) < TOL
    else:
        scale = np.abs(np.log(expected / (1 - expected))).max()
    err = max_rel_error(got, expected, scale)
    assert err < TOL, f"{folder}/{fname}: max error {err:.2e}"
    # Padding rows score exactly zero.
    for b in range(batch):
        assert np.all(out[b, filled[b] :] == 0)


def test_slow_pathway_frames_match_reference(golden):
    for folder in ("slowfast_8x8_r50", "slowfast_4x16_r50", "slowfast_16x8_r101_50_50"):
        io = np.load(golden / "models" / folder / "io.npz")
        meta = json.loads((golden / "models" / folder / "meta.json").read_text())
        fast = io["train_crop/fast"]
        idx = slow_pathway_indices(fast.shape[2], meta["alpha"])
        np.testing.assert_array_equal(fast[:, :, idx], io["train_crop/slow"])
        layer = keras_slowfast.TemporalSubsample(meta["alpha"])
        np.testing.assert_array_equal(
            np.asarray(layer(to_keras_layout(fast))), to_keras_layout(io["train_crop/slow"])
        )


def test_slow_indices_known_values():
    # SPEC: 32 frames, alpha 4 -> not every 4th frame.
    assert slow_pathway_indices(32, 4).tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    assert slow_pathway_indices(64, 4).tolist()[-1] == 63
    assert len(slow_pathway_indices(32, 8)) == 4
