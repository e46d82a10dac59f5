"""The builders' `dtype` option: a bfloat16 backbone under a float32 head.

The plumbing tests check which layers compute in which dtype. The accuracy tests compare a
`mixed_bfloat16` model with the float64 reference outputs of the golden fixtures. Those
narrow networks have random weights and random BatchNorm statistics, which amplify a
perturbation at every stage: measured against the float32 model, bfloat16's rounding is
0.5% of the largest activation after the stem and grows to about 50% of it (max-abs) at
res5, in R50 as in R101. Pooling averages most of it away for the classifiers (their
probabilities move by 0.03-0.09), not for the R101 AVA detector's per-box scores (up to
0.8). The bounds below are what bfloat16 gives on such weights, not the accuracy on
trained ones.
"""

import keras
import numpy as np
import pytest

import keras_slowfast


def to_keras_layout(x):
    """(N, C, T, H, W) -> (N, T, H, W, C) float32."""
    return np.transpose(np.asarray(x, np.float32), (0, 2, 3, 4, 1))


def head_layers(model):
    return [layer for layer in model.layers if layer.name.startswith("head_")]


def backbone_layers(model):
    return [
        layer
        for layer in model.layers
        if not layer.name.startswith("head_") and not isinstance(layer, keras.layers.InputLayer)
    ]


@pytest.mark.parametrize("kind", ["classifier", "detector"])
def test_plumbing_bfloat16_backbone_float32_head(kind):
    if kind == "classifier":
        model = keras_slowfast.SlowFastR50(width_per_group=8, classes=5, dtype="mixed_bfloat16")
        x = np.zeros((1, 32, 64, 64, 3), np.uint8)
    else:
        model = keras_slowfast.SlowFastR50AVA(width_per_group=8, classes=5, dtype="mixed_bfloat16")
        x = {"clip": np.zeros((1, 32, 64, 64, 3), np.uint8), "boxes": np.full((1, 2, 4), 0.5)}
    assert keras.config.dtype_policy().name == "float32"  # the global policy is untouched
    for layer in backbone_layers(model):
        assert layer.compute_dtype == "bfloat16", layer.name
        assert all(w.dtype == "float32" for w in layer.weights), layer.name
    conv = model.get_layer("s2_pathway0_res0_branch2_a")
    assert conv.output.dtype == "bfloat16"
    for layer in head_layers(model):
        assert layer.compute_dtype == "float32", layer.name
    assert model(x).dtype == "float32"


def test_plumbing_explicit_float32_overrides_a_global_mixed_policy():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = keras_slowfast.SlowR50(width_per_group=8, classes=5, dtype="float32")
        mixed = keras_slowfast.SlowR50(width_per_group=8, classes=5)
    finally:
        keras.config.set_dtype_policy("float32")
    assert all(layer.compute_dtype == "float32" for layer in backbone_layers(model))
    # Without `dtype` the global policy applies to the backbone; the head stays float32.
    assert model.get_layer("s1_pathway0_stem_conv").compute_dtype == "float32"
    assert mixed.get_layer("s1_pathway0_stem_conv").compute_dtype == "bfloat16"
    assert all(layer.compute_dtype == "float32" for layer in head_layers(mixed))


@pytest.mark.parametrize("dtype", ["float64", "bf16", 16])
def test_bad_dtype_names_the_argument(dtype):
    with pytest.raises(ValueError, match=r"`dtype` must be .*Received: dtype="):
        keras_slowfast.SlowFastR50(width_per_group=8, classes=5, dtype=dtype)


def test_bfloat16_model_keras_round_trip(tmp_path):
    model = keras_slowfast.SlowFast(
        width_per_group=8, classes=5, num_frames=8, dtype="mixed_bfloat16"
    )
    clip = np.random.default_rng(0).integers(0, 256, (1, 8, 64, 64, 3)).astype(np.uint8)
    expected = model.predict_on_batch(clip)
    model.save(tmp_path / "bf16.keras")
    restored = keras.saving.load_model(tmp_path / "bf16.keras")
    assert restored.get_layer("s1_pathway0_stem_conv").compute_dtype == "bfloat16"
    assert restored.get_layer("head_projection").compute_dtype == "float32"
    np.testing.assert_array_equal(restored.predict_on_batch(clip), expected)


# Largest |probability - reference| measured over both crops, with bfloat16 on this
# machine: 0.030 (train crop) and 0.026 (test crop) for 8x8 R50, 0.056 for NLN 8x8 R50.
@pytest.mark.parametrize(
    "folder,bound", [("slowfast_8x8_r50", 0.06), ("slowfast_nln_8x8_r50", 0.1)]
)
def test_mixed_bfloat16_near_the_float64_reference(golden, folder, bound):
    io = np.load(golden / "models" / folder / "io.npz")
    path = golden / "models" / folder / "pyslowfast.pyth"
    model = keras_slowfast.load_pyslowfast(
        path, include_preprocessing=False, dtype="mixed_bfloat16"
    )
    for crop in ("train_crop", "test_crop"):
        got = model.predict_on_batch(to_keras_layout(io[f"{crop}/fast"]))
        expected = io[f"{crop}/output"].astype(np.float64)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)
        assert np.abs(got - expected).max() < bound, crop
        np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
