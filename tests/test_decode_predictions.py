"""decode_predictions and the packaged class names."""

import json

import numpy as np
import pytest

import keras_slowfast
from keras_slowfast.labels import ava_class_names, class_names_for, kinetics400_class_names


@pytest.fixture(scope="module")
def shared_data(golden):
    return golden.parent / "data"


def test_packaged_names_equal_the_reference_lists(shared_data):
    kinetics = json.loads((shared_data / "kinetics400_classes.json").read_text())
    assert kinetics400_class_names() == kinetics
    actions = json.loads((shared_data / "ava_v2.2_actions.json").read_text())
    by_id = {a["id"]: a["name"] for a in actions}
    assert ava_class_names() == [by_id[i] for i in range(1, 81)]


def test_kinetics_top_k_against_a_sort(shared_data):
    kinetics = json.loads((shared_data / "kinetics400_classes.json").read_text())
    preds = np.random.default_rng(0).dirichlet(np.ones(400), size=3).astype(np.float32)
    decoded = keras_slowfast.decode_predictions(preds, top=5)
    assert len(decoded) == 3
    for row, clip in zip(preds, decoded):
        expected = sorted(range(400), key=lambda i: -row[i])[:5]
        assert [c[0] for c in clip] == expected
        assert [c[1] for c in clip] == [kinetics[i] for i in expected]
        assert [c[2] for c in clip] == [float(row[i]) for i in expected]


def test_detector_output_is_decoded_per_box():
    preds = np.zeros((2, 3, 80), np.float32)
    preds[1, 2, 11] = 0.9  # AVA action id 12
    preds[1, 2, 79] = 0.5  # AVA action id 80
    decoded = keras_slowfast.decode_predictions(preds, top=2)
    assert len(decoded) == 2 and all(len(clip) == 3 for clip in decoded)
    assert decoded[1][2] == [(11, "stand", pytest.approx(0.9)), (79, "watch (a person)", 0.5)]


def test_other_class_counts_and_explicit_names():
    preds = np.array([[0.1, 0.7, 0.2]])
    assert keras_slowfast.decode_predictions(preds, top=10) == [
        [(1, "class_1", 0.7), (2, "class_2", 0.2), (0, "class_0", 0.1)]
    ]
    decoded = keras_slowfast.decode_predictions(preds, top=1, class_names=["a", "b", "c"])
    assert decoded == [[(1, "b", 0.7)]]
    assert class_names_for(400, "kinetics400")[0] == "abseiling"


def test_ties_keep_the_lower_index_first():
    decoded = keras_slowfast.decode_predictions(np.full((1, 10), 0.1), top=3)
    assert [c[0] for c in decoded[0]] == [0, 1, 2]


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: preds with shape \(400,\)"):
        keras_slowfast.decode_predictions(np.zeros(400))
    with pytest.raises(ValueError, match="Received: top=0"):
        keras_slowfast.decode_predictions(np.zeros((1, 400)), top=0)
    with pytest.raises(ValueError, match="one name per class"):
        keras_slowfast.decode_predictions(np.zeros((1, 3)), class_names=["a"])
    with pytest.raises(ValueError, match="Received: class_names='imagenet'"):
        keras_slowfast.decode_predictions(np.zeros((1, 400)), class_names="imagenet")
