"""Weights by name: download through a real HTTP mirror, strict conversion, cache.

The mirror serves the narrow golden checkpoints (width 8, 10 classes) under the published
relative paths, so every step runs as with the real files; the Keras outputs are compared
with the reference outputs stored beside each golden checkpoint.
"""

import json
import os

import numpy as np
import pytest
from helpers import forward, golden_detector_inputs, keras_layout, softmax
from weights_mirror import GOLDEN_FOR_PUBLISHED

import keras_slowfast as ks
from keras_slowfast import hub as registry
from keras_slowfast import presets


def _cache_files():
    folder = registry.cache_dir()
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _io(golden, published_path):
    folder = GOLDEN_FOR_PUBLISHED[published_path].split("/")[0]
    return np.load(golden / "models" / folder / "io.npz")


# Every published entry: the public builder call and how to check it against the fixture.
_CLASSIFIER_CASES = {
    "slowfast_4x16_r50": lambda **kw: ks.SlowFastR50(variant="4x16", **kw),
    "slowfast_8x8_r50": lambda **kw: ks.SlowFastR50(variant="8x8", **kw),
    "slow_8x8_r50": lambda **kw: ks.SlowR50(variant="8x8", **kw),
    "slowfast_8x8_r101": lambda **kw: ks.SlowFastR101(variant="8x8", **kw),
    "slowfast_16x8_r101_50_50": lambda **kw: ks.SlowFastR101(variant="16x8", **kw),
}
_DETECTOR_CASES = {
    "ava_slowfast_32x2_r101_50_50": ks.SlowFastR101AVA,
    "ava_slowfast_r50_detection": ks.SlowFastR50AVA,
}
_LARGE = {"slowfast_8x8_r101", "slowfast_16x8_r101_50_50", "ava_slowfast_32x2_r101_50_50"}


def _entry_params(cases):
    out = []
    for variant in cases:
        marks = [pytest.mark.large] if variant in _LARGE else []
        out.append(pytest.param(variant, marks=marks, id=variant))
    return out


def test_every_variant_with_published_weights_is_covered():
    served = {p.architecture for p in presets.PRESETS if p.url_path in GOLDEN_FOR_PUBLISHED}
    assert served == set(_CLASSIFIER_CASES) | set(_DETECTOR_CASES) | {"slow_4x16_r50"}


@pytest.mark.parametrize("variant", _entry_params(_CLASSIFIER_CASES))
def test_classifier_by_name_matches_fixture(served, golden, variant):
    entry = presets.find_preset(variant, "k400")
    model = _CLASSIFIER_CASES[variant](
        weights="k400", train_crop_size=64, include_preprocessing=False
    )
    assert served.requests == [f"/{entry.checkpoint.path}"]
    io = _io(golden, entry.checkpoint.path)
    expected = io["train_crop/output"]
    source = GOLDEN_FOR_PUBLISHED[entry.checkpoint.path]
    if entry.checkpoint.format == "pytorchvideo" and "ptv_" in source:
        # PyTorchVideo's reference outputs logits; named weights give probabilities.
        expected = softmax(expected)
    got = forward(model, keras_layout(io["train_crop/fast"]))
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("variant", _entry_params(_DETECTOR_CASES))
def test_detector_by_name_matches_fixture(served, golden, variant):
    entry = presets.find_preset(variant, "ava")
    model = _DETECTOR_CASES[variant](weights="ava", include_preprocessing=False)
    assert served.requests == [f"/{entry.checkpoint.path}"]
    io = _io(golden, entry.checkpoint.path)
    inputs, slots = golden_detector_inputs(io)
    got = forward(model, inputs)
    np.testing.assert_allclose([got[slot] for slot in slots], io["train_crop/output"], atol=1e-4)


def test_slow_4x16_by_name_matches_direct_conversion(served, golden):
    # No fixture exists for Slow 4x16; its tensors are those of Slow 8x8 (the mirror serves
    # that file), so the named load must equal a direct strict load of the same file.
    model = ks.SlowR50(variant="4x16", weights="k400")
    reference = ks.load_pyslowfast(
        golden / "models/slow_8x8_r50/caffe2.pkl",
        config="slow_4x16_r50",
        width_per_group=8,
        classes=10,
    )
    clip = np.random.default_rng(1).integers(0, 256, (2, 4, 96, 128, 3)).astype(np.float32)
    np.testing.assert_allclose(forward(model, clip), forward(reference, clip), rtol=0, atol=1e-6)


def test_second_load_neither_downloads_nor_converts(served, golden):
    io = np.load(golden / "models/slow_8x8_r50/io.npz")
    first = ks.SlowR50(weights="k400", train_crop_size=64, include_preprocessing=False)
    assert len(served.requests) == 1
    entry = presets.find_preset("slow_8x8_r50", "k400")
    weights_path, info_path = registry.cache_paths(entry.name)
    assert _cache_files() == sorted(os.path.basename(p) for p in (weights_path, info_path))
    info = json.loads(open(info_path).read())
    assert info["url"] == f"{served.url}/pyslowfast/model_zoo/kinetics400/SLOWONLY_8x8_R50.pkl"
    assert (info["format"], info["width_per_group"], info["classes"]) == ("caffe2", 8, 10)
    assert (
        info["params"]
        == json.loads((golden / "models/slow_8x8_r50/meta.json").read_text())["params"]
    )
    stamps = [os.stat(p).st_mtime_ns for p in (weights_path, info_path)]

    second = ks.SlowR50(weights="kinetics400", train_crop_size=64, include_preprocessing=False)
    assert len(served.requests) == 1
    assert [os.stat(p).st_mtime_ns for p in (weights_path, info_path)] == stamps
    x = keras_layout(io["train_crop/fast"])
    np.testing.assert_array_equal(forward(first, x), forward(second, x))
    np.testing.assert_allclose(forward(second, x), io["train_crop/output"], atol=1e-4)

    # A cache written by another cache version is converted again (one new download).
    info["cache_version"] = registry.CACHE_VERSION + 1
    with open(info_path, "w") as f:
        json.dump(info, f)
    registry.fetch(entry.name)
    assert len(served.requests) == 2
    assert json.loads(open(info_path).read())["cache_version"] == registry.CACHE_VERSION


def test_include_top_false_takes_the_backbone(served):
    top = ks.SlowR50(weights="k400")
    features = ks.SlowR50(weights="k400", include_top=False, pooling="avg")
    assert features.output_shape == (None, 8 * 32)
    assert len(served.requests) == 1
    compared = 0
    for layer in features.layers:
        if not layer.weights:
            continue
        for a, b in zip(layer.get_weights(), top.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
            compared += 1
    assert compared == len(top.weights) - 2  # all but the projection's kernel and bias
    # Without the top the class count does not matter.
    ks.SlowR50(weights="k400", include_top=False, classes=400)


def test_class_count_and_width_must_match_the_checkpoint(served):
    with pytest.raises(ValueError, match=r"`classes` must be 10 .*Received: classes=400"):
        ks.SlowR50(weights="k400", classes=400)
    with pytest.raises(ValueError, match=r"`width_per_group` must be 8 .*width_per_group=64"):
        ks.SlowR50(weights="k400", width_per_group=64)
    assert len(served.requests) == 1  # the failed calls still cached the download


def test_unknown_names_are_rejected_before_any_request(served):
    with pytest.raises(ValueError, match=r"one of \['charades_ptv', 'k400', 'k400_multigrid'"):
        ks.SlowFastR50(weights="imagenet")
    with pytest.raises(ValueError, match=r"no weights are published.*weights='k400'"):
        ks.SlowFastR50(nonlocal_blocks=True, weights="k400")
    with pytest.raises(ValueError, match="Received: weights='k400'"):
        ks.SlowFastR101AVA(weights="k400")
    assert served.requests == []
    assert _cache_files() == []


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_bad_download_is_never_cached(served, damage):
    path = served.root / presets.find_preset("slow_8x8_r50", "k400").checkpoint.path
    original = path.read_bytes()
    try:
        path.write_bytes(original[: len(original) // 2] if damage == "truncated" else b"<html>")
        with pytest.raises(registry.WeightsDownloadError, match="not a valid caffe2 checkpoint"):
            ks.SlowR50(weights="k400")
        assert _cache_files() == []
    finally:
        path.write_bytes(original)
    registry.fetch("slow_8x8_r50_kinetics400")  # the intact file: downloaded and cached
    assert len(served.requests) == 2


def test_an_interrupted_download_is_never_cached(served):
    served.mode = "short_body"
    with pytest.raises(registry.WeightsDownloadError, match="failed"):
        ks.SlowR50(weights="k400")
    assert _cache_files() == []


def test_a_missing_file_names_the_url(served, monkeypatch):
    monkeypatch.setenv(registry.MIRROR_ENV, served.url + "/elsewhere/")
    with pytest.raises(registry.WeightsDownloadError, match="/elsewhere/pyslowfast/model_zoo"):
        ks.SlowR50(weights="k400")
    assert _cache_files() == []


def test_base_url_and_cache_location(monkeypatch, tmp_path):
    entry = presets.find_preset("slowfast_8x8_r50", "k400")
    monkeypatch.delenv(registry.MIRROR_ENV, raising=False)
    assert registry.url_for(entry.name) == (
        "https://dl.fbaipublicfiles.com/pyslowfast/model_zoo/kinetics400/SLOWFAST_8x8_R50.pkl"
    )
    monkeypatch.setenv(registry.MIRROR_ENV, "http://mirror.example/fb/")
    assert registry.url_for(entry.name) == f"http://mirror.example/fb/{entry.checkpoint.path}"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert registry.cache_paths(entry.name)[0] == str(
        tmp_path / "models" / "keras_slowfast" / "slowfast_8x8_r50_kinetics400.weights.h5"
    )


def test_build_reads_width_and_classes_from_a_checkpoint_file(golden):
    io = np.load(golden / "models/slow_8x8_r50/io.npz")
    model = registry.build(
        "slow_8x8_r50",
        golden / "models/slow_8x8_r50/pyslowfast.pyth",
        train_crop_size=64,
        include_preprocessing=False,
    )
    np.testing.assert_allclose(
        forward(model, keras_layout(io["train_crop/fast"])), io["train_crop/output"], atol=1e-4
    )
    with pytest.raises(ValueError, match="Received: preset='slowfast_9x9'"):
        registry.build("slowfast_9x9")


@pytest.mark.parametrize("suffix", [".pth", ".pt"])
def test_pytorch_file_suffixes_name_checkpoint_files(tmp_path, suffix):
    """`.pth` and `.pt` (PyTorch's usual suffixes) are checkpoint paths, not weights names:
    a missing one is reported as a missing file."""
    path = str(tmp_path / f"absent{suffix}")
    with pytest.raises(ValueError, match=rf"No checkpoint file at this path\. .*{suffix}'"):
        registry.build("slow_8x8_r50", path)
    with pytest.raises(ValueError, match=rf"No checkpoint file at this path\. .*{suffix}'"):
        ks.SlowR50(weights=path)
