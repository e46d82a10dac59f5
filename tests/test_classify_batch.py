"""`classify_video(..., batch_size=...)`: views regrouped per model call, same scores.

The reference is the protocol written independently in `test_cli` (PyAV decode, OpenCV
resize, the golden frame indices), scored view by view.
"""

import json

import numpy as np
import pytest
from test_cli import _reference_views

from keras_slowfast import hub as registry
from keras_slowfast.inference import classify_video

pytest.importorskip("av")


class _RecordingModel:
    """Delegates to the real model and records the batch size of every call."""

    def __init__(self, model):
        self.model = model
        self.batches = []

    def predict_on_batch(self, x):
        self.batches.append(len(x))
        return self.model.predict_on_batch(x)


@pytest.fixture(scope="module")
def logits_model(golden):
    checkpoint = golden / "models" / "slow_8x8_r50" / "pyslowfast.pyth"
    return registry.build("slow_8x8_r50", checkpoint, classifier_activation=None)


@pytest.fixture(scope="module")
def expected(golden, videos, logits_model):
    table = json.loads((golden / "sampling" / "test_views.json").read_text())["videos"]
    indices = table["bikes.mp4"]["views_8x8"]
    indices = json.loads(indices) if isinstance(indices, str) else indices
    clips = _reference_views(videos / "bikes.mp4", indices)
    return np.mean(logits_model.predict(clips, batch_size=6, verbose=0), axis=0)


@pytest.mark.parametrize(
    "batch_size, calls",
    [(None, [3] * 10), (4, [4] * 7 + [2]), (30, [30])],
)
def test_batch_size_groups_views_and_keeps_the_scores(
    videos, logits_model, expected, batch_size, calls
):
    model = _RecordingModel(logits_model)
    got = classify_video(model, videos / "bikes.mp4", "slow_8x8_r50", batch_size=batch_size)
    assert model.batches == calls
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)


@pytest.mark.parametrize("bad", [0, -2, 2.0, True, "4"])
def test_batch_size_must_be_a_positive_integer(videos, logits_model, bad):
    with pytest.raises(ValueError, match=r"batch_size.*Received: batch_size="):
        classify_video(logits_model, videos / "bikes.mp4", "slow_8x8_r50", batch_size=bad)
