"""detect.action_detections: the rows of what the detector found, and their CSV."""

import os

import numpy as np

from keras_slowfast.detect import action_detections
from keras_slowfast.detect.action_detections import ActionDetections, write_detections_csv


def _found():
    return ActionDetections(
        video="clip",
        seconds=np.array([4, 7], np.int64),
        boxes=np.array([[0.1234567, 0.25, 0.5, 1.0], [0.0, 0.125, 0.75, 0.875]], np.float32),
        scores=np.array([[0.5, 0.25, 0.75], [0.0625, 0.7, 0.05]], np.float32),
        class_names=["a", "b", "c"],
        top_k=2,
        score_thresh=0.1,
        keyframes=10,
    )


# Written by hand: each box's two best actions scoring >= 0.1 (the second box's runner-up,
# 0.0625, is below), 1-based ids, boxes to 6 significant digits, scores to 9 (float32 0.7
# is 0.699999988...).
EXPECTED_ROWS = (
    "clip,4,0.123457,0.25,0.5,1,3,0.75\n"
    "clip,4,0.123457,0.25,0.5,1,1,0.5\n"
    "clip,7,0,0.125,0.75,0.875,2,0.699999988\n"
)


def test_detections_csv_without_and_with_header(tmp_path):
    path = tmp_path / "actions.csv"
    assert write_detections_csv(_found(), path) is None
    assert path.read_text() == EXPECTED_ROWS
    write_detections_csv(_found(), path, header=True)  # replaces the file
    assert path.read_text() == "video,sec,x1,y1,x2,y2,action,score\n" + EXPECTED_ROWS
    assert os.listdir(tmp_path) == ["actions.csv"]  # no temporary file left


def test_rows_follow_top_k_and_score_thresh():
    found = _found()
    assert [row[6] for row in found.rows()] == [3, 1, 2]
    found.top_k, found.score_thresh = 3, 0.0
    assert [row[6] for row in found.rows()] == [3, 1, 2, 2, 1, 3]
    found.score_thresh = 0.9
    assert found.rows() == []


def test_docstring_examples():
    import doctest

    assert doctest.testmod(action_detections).failed == 0
