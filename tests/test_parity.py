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
from helpers import forward, golden_detector_inputs, keras_layout

import keras_slowfast
from keras_slowfast.data.sampling import slow_pathway_indices
from keras_slowfast.weights.pyslowfast_config import builder_kwargs_from_config
from keras_slowfast.weights.readers import load_state_dict
from keras_slowfast.weights.transfer import load_weights_into

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


# Each fixture folder holds one network in several checkpoint formats, all with the same
# weights. The network is built once per folder, by the loader, from the file named here
# (both routes, an embedded config and a Caffe2 file with its `config.yaml`, are among
# them); every other file of the folder is then loaded into that model, whose weights are
# first set to NaN so that only the file's own tensors can give the reference outputs.
BUILT_FROM = {
    "slowfast_4x16_r50": "caffe2.pkl",
    "slowfast_8x8_r50": "pyslowfast.pyth",
    "slowfast_nln_8x8_r50": "pyslowfast.pyth",
    "slowfast_8x8_r101": "caffe2.pkl",
    "slowfast_16x8_r101_50_50": "pyslowfast.pyth",
    "slowfast_nln_16x8_r101_50_50": "caffe2.pkl",
    "slow_8x8_r50": "caffe2.pkl",
    "ptv_slowfast_r50": "pytorchvideo.pyth",
    "ptv_slowfast_16x8_r101_50_50": "pytorchvideo.pyth",
    "ava_slowfast_32x2_r101_50_50": "caffe2.pkl",
    "ava_slowfast_32x2_r50_aligned": "pyslowfast.pyth",
    "ptv_slowfast_r50_detection": "pytorchvideo.pyth",
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


def config_of(golden, folder, fname):
    """The PySlowFast config the loader builds the network of `fname` from."""
    if fname == "caffe2.pkl":
        return str(golden / "models" / folder / "config.yaml")
    return load_state_dict(golden / "models" / folder / fname)[1]["cfg"]


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


def feature_keys(io):
    return sorted(k for k in io.files if k.startswith("train_crop/feat_"))


def classifier_probe(model, io):
    """The model's outputs, its logits and the layers of the reference's stage features."""
    feats = []
    for key in feature_keys(io):
        stage, pathway = key[len("train_crop/feat_") :].rsplit("_pathway", 1)
        feats.append(model.get_layer(stage_layer(model, stage, int(pathway))).output)
    return keras.Model(
        model.input, [model.output, model.get_layer("head_projection").output] + feats
    )


def classifier_outputs(probe, io):
    """`{crop: [output, logits, *features]}` for the fixture's crops."""
    return {
        crop: forward(probe, keras_layout(io[f"{crop}/fast"]))
        for crop in ("train_crop", "test_crop")
        if f"{crop}/fast" in io.files
    }


def detector_probe(model, io):
    return keras.Model(model.input, [model.output, model.get_layer("head_projection").output])


def detector_outputs(probe, io):
    inputs, _ = golden_detector_inputs(io, extra_slots=1)
    return forward(probe, inputs)


PROBES = {
    "classifier": (classifier_probe, classifier_outputs),
    "detector": (detector_probe, detector_outputs),
}


@pytest.fixture(scope="module")
def outputs_with(golden):
    """`outputs_with(folder, fname)`: the fixture's outputs from the network with the
    weights of `fname`, the network of each folder built once (see BUILT_FROM)."""
    built = {}

    def get(folder, fname):
        io = np.load(golden / "models" / folder / "io.npz")
        make_probe, run = PROBES["detector" if folder in dict(DETECTORS) else "classifier"]
        if folder not in built:
            # The loader's model, run before any other file is loaded into it.
            model = load(golden, folder, BUILT_FROM[folder])
            probe = make_probe(model, io)
            built[folder] = model, probe, run(probe, io)
        model, probe, loaded = built[folder]
        if fname == BUILT_FROM[folder]:
            return loaded
        # The loader would build the same network from this file's config.
        assert builder_kwargs_from_config(
            config_of(golden, folder, fname)
        ) == builder_kwargs_from_config(config_of(golden, folder, BUILT_FROM[folder]))
        for weight in model.weights:
            weight.assign(np.full(weight.shape, np.nan, weight.dtype))
        load_weights_into(model, golden / "models" / folder / fname)
        return run(probe, io)

    return get


@pytest.mark.parametrize("folder,fname", CLASSIFIERS)
def test_classifier_parity(golden, outputs_with, folder, fname):
    io = np.load(golden / "models" / folder / "io.npz")
    outputs = outputs_with(folder, fname)
    for crop in ("train_crop", "test_crop"):
        if f"{crop}/fast" not in io.files:
            continue
        out, logits, *feats = outputs[crop]
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
            for key, feat in zip(feature_keys(io), feats):
                ref = keras_layout(io[key]).astype(np.float64)
                got = feat[:1]
                assert got.shape == ref.shape, key
                # Features are stored in float16: relative precision ~5e-4.
                assert max_rel_error(got, ref, np.abs(ref).max() + 1e-6) < 2e-3, key


@pytest.mark.parametrize("folder,fname", DETECTORS)
def test_detector_parity(golden, outputs_with, folder, fname):
    io = np.load(golden / "models" / folder / "io.npz")
    _, slots = golden_detector_inputs(io, extra_slots=1)
    out, logits = outputs_with(folder, fname)
    got = np.stack([out[slot] for slot in slots])
    got_logits = np.stack([logits[slot] for slot in slots])
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
    filled = {}
    for b, j in slots:
        filled[b] = max(filled.get(b, 0), j + 1)
    for b in range(out.shape[0]):
        assert np.all(out[b, filled.get(b, 0) :] == 0)


def test_slow_pathway_frames_match_reference(golden):
    for folder in ("slowfast_8x8_r50", "slowfast_4x16_r50", "slowfast_16x8_r101_50_50"):
        io = np.load(golden / "models" / folder / "io.npz")
        meta = json.loads((golden / "models" / folder / "meta.json").read_text())
        fast = io["train_crop/fast"]
        idx = slow_pathway_indices(fast.shape[2], meta["alpha"])
        np.testing.assert_array_equal(fast[:, :, idx], io["train_crop/slow"])
        layer = keras_slowfast.TemporalSubsample(meta["alpha"])
        np.testing.assert_array_equal(
            np.asarray(layer(keras_layout(fast))), keras_layout(io["train_crop/slow"])
        )


def test_slow_indices_known_values():
    # SPEC: 32 frames, alpha 4 -> not every 4th frame.
    assert slow_pathway_indices(32, 4).tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    assert slow_pathway_indices(64, 4).tolist()[-1] == 63
    assert len(slow_pathway_indices(32, 8)) == 4
