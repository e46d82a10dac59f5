"""PySlowFast self-supervised (ContrastiveModel) checkpoints: the key rule and the presets.

Plumbing only: the checkpoint is written from a Keras backbone's own PySlowFast-keyed
tensors (wrapped as a ContrastiveModel state: `backbone.`, a momentum copy, an MLP
projection, a queue), so loading it back proves the key rule and the `include_top=False`
presets, not the numerics (the PySlowFast parity tests cover those for the same backbone).
"""

import numpy as np
import pytest

import keras_slowfast
from keras_slowfast import presets
from keras_slowfast.weights.transfer import (
    CheckpointMismatchError,
    contrastive_state_to_pyslowfast,
    model_state,
)

torch = pytest.importorskip("torch")

PRESET = "slow_8x8_r50_moco_rho2"


def _contrastive_state(backbone):
    rng = np.random.default_rng(0)
    state = {}
    for key, value in model_state(backbone).items():
        value = rng.normal(size=value.shape).astype(np.float32) if value.ndim > 1 else value
        state[f"backbone.{key}"] = value
        state[f"backbone_hist.{key}"] = value + 1
    state["backbone.head.projection.projection.0.weight"] = np.ones((32, 256), np.float32)
    state["backbone.head.projection.projection.3.weight"] = np.ones((16, 32), np.float32)
    state["queue_x"] = np.zeros((16, 4), np.float32)
    state["ptr"] = np.zeros(1, np.int64)
    state["iter"] = np.zeros(1, np.int64)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def test_self_supervised_presets_have_no_top():
    rows = [p for p in presets.PRESETS if p.name.startswith("slow_") and not p.include_top]
    assert len(rows) == 7
    for p in rows:
        assert p.kwargs["include_top"] is False
        assert p.checkpoint.format == "pyslowfast"
        assert p.checkpoint.path.startswith("pyslowfast/videomoco_models/")


def test_key_rule_keeps_the_backbone_and_names_what_is_dropped():
    backbone = keras_slowfast.from_preset(PRESET, load_weights=False, width_per_group=8)
    state = _contrastive_state(backbone)
    kept, dropped = contrastive_state_to_pyslowfast(state)
    assert set(kept) == set(model_state(backbone))
    assert len(dropped) == len(kept) + 5
    assert "queue_x" in dropped and "backbone.head.projection.projection.0.weight" in dropped
    with pytest.raises(CheckpointMismatchError, match="predictor.0.weight"):
        contrastive_state_to_pyslowfast(dict(state, **{"predictor.0.weight": state["ptr"]}))


def test_from_preset_loads_the_backbone_plumbing(tmp_path):
    source = keras_slowfast.from_preset(PRESET, load_weights=False, width_per_group=8)
    state = _contrastive_state(source)
    path = tmp_path / "MoCo_SlowR50_8x8_T2_epoch_00200.pyth"
    torch.save({"model_state": state, "epoch": 200}, path)
    model = keras_slowfast.from_preset(
        PRESET, checkpoint=path, pooling="avg", include_preprocessing=False
    )
    for key, value in model_state(model).items():
        np.testing.assert_array_equal(value, state[f"backbone.{key}"].numpy(), err_msg=key)
    x = np.random.default_rng(1).normal(size=(1, 8, 64, 64, 3)).astype("float32")
    assert model.predict(x, verbose=0).shape == (1, 256)
    with pytest.raises(CheckpointMismatchError, match="include_top=False"):
        keras_slowfast.from_preset(PRESET, checkpoint=path, include_top=True)
