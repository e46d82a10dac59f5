"""PySlowFast configs read into settings: the clip settings of an AVA detector."""

from pathlib import Path

import pytest
import yaml

from keras_slowfast.weights.pyslowfast_config import (
    ava_clip_settings,
    checkpoint_ava_clip_settings,
)
from keras_slowfast.weights.readers import load_state_dict


def test_ava_clip_settings_of_a_checkpoint_are_its_embedded_config(golden):
    path = golden / "ava_data" / "ava_e2e_model.pyth"
    if not path.is_file():
        pytest.skip("golden ava_data/ava_e2e_model.pyth not found")
    cfg = yaml.safe_load(load_state_dict(path)[1]["cfg"])  # the YAML, read here directly
    expected = {
        "sampling_rate": cfg["DATA"]["SAMPLING_RATE"],
        "bgr": cfg["AVA"]["BGR"],
        "detection_score_thresh": cfg["AVA"]["DETECTION_SCORE_THRESH"],
    }
    assert checkpoint_ava_clip_settings(path) == expected
    assert checkpoint_ava_clip_settings(str(path)) == expected


def test_a_checkpoint_without_a_config_has_no_settings(golden):
    path = golden / "models" / "slow_8x8_r50" / "caffe2.pkl"
    assert load_state_dict(path)[1]["cfg"] is None
    assert checkpoint_ava_clip_settings(path) == {}


def test_only_the_settings_a_config_sets(tmp_path: Path):
    assert ava_clip_settings({"AVA": {"DETECTION_SCORE_THRESH": "0.5"}}) == {
        "detection_score_thresh": 0.5
    }
    assert ava_clip_settings({"MODEL": {"NUM_CLASSES": 80}}) == {}
    config = tmp_path / "ava.yaml"
    config.write_text("DATA:\n  SAMPLING_RATE: 4\nAVA:\n  BGR: false\n")
    assert ava_clip_settings(str(config)) == {"sampling_rate": 4, "bgr": False}
