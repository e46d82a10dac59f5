"""detect.scoring: actions on any video (annotated video and CSV), scores against a clip built
in the test."""

import csv
import fractions
import math
import os
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from keras_slowfast import detect
from keras_slowfast.data.ava_video import read_frames_at_fps
from keras_slowfast.detect import scoring

_REPO = Path(__file__).resolve().parents[1]
CROP = 128  # test short side (the published protocol uses 256)


@pytest.fixture(scope="module")
def model(golden):
    path = golden / "ava_data" / "ava_e2e_model.pyth"
    if not path.is_file():
        pytest.skip("golden ava_data/ava_e2e_model.pyth not found")
    from keras_slowfast import load_pyslowfast

    return load_pyslowfast(path)


def _decode(path):
    """Every frame (RGB) of a video with plain PyAV, and its stream's rate and frame count."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, stream.average_rate


def _read_csv(path):
    with open(path, newline="") as f:
        return [row for row in csv.reader(f)]


def _expected_scores(model, video, second, boxes, fps_frames):
    """The detector's scores for a keyframe, with the AVA test-mode clip built here.

    Clip: 32 frames every 2 at 30 fps around frame 30 * second (clamped), short side to
    CROP with cv2.resize INTER_LINEAR (long side floor(long / short * CROP)); boxes to
    pixels, clipped, scaled by the long side's ratio as PySlowFast does, clipped to the
    new frame, normalised by its size.
    """
    center = 30 * second
    indices = np.clip(np.arange(center - 32, center + 32, 2), 0, fps_frames - 1)
    frames = read_frames_at_fps(video, indices)
    h, w = frames.shape[1:3]
    if w >= h:
        new_h, new_w = CROP, int(math.floor(w / h * CROP))
        ratio = new_w / w
    else:
        new_h, new_w = int(math.floor(h / w * CROP)), CROP
        ratio = new_h / h
    clip = np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for f in frames])
    b = np.asarray(boxes, np.float64) * [w, h, w, h]
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w - 1)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h - 1)
    b *= ratio
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, new_w - 1)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, new_h - 1)
    b /= [new_w, new_h, new_w, new_h]
    # Zero rows up to 4 boxes: each box's scores do not depend on the other rows, and the
    # detector's graph for this input shape is then the one `detect_actions` already traced.
    padded = np.zeros((1, max(4, len(b)), 4), np.float32)
    padded[0, : len(b)] = b
    out = model.predict_on_batch({"clip": clip[None], "boxes": padded})
    return np.asarray(out)[0, : len(b)]


def _nearest_second_frames(num_frames, rate, second):
    """Native frame indices whose nearest whole second is `second` (constant-rate video)."""
    t = np.arange(num_frames) / float(rate)
    return np.flatnonzero(np.floor(t + 0.5) == second)


def _outline_pixels(box, width, height):
    """Pixels of the top and left edges of a normalised box, as drawn."""
    x1, y1 = round(box[0] * (width - 1)), round(box[1] * (height - 1))
    x2, y2 = round(box[2] * (width - 1)), round(box[3] * (height - 1))
    ys = np.r_[np.full(x2 - x1 - 8, y1), np.arange(y1 + 40, y2 - 4)]
    xs = np.r_[np.arange(x1 + 4, x2 - 4), np.full(max(0, y2 - 4 - y1 - 40), x1)]
    return ys, xs


BOXES_CSV = (
    "k00,1,0.10,0.15,0.45,0.95,12,0.95\n"
    "k00,1,0.10,0.15,0.45,0.95,80,0.95\n"  # the same box again (one row per action)
    "k00,3,0.55,0.10,0.90,0.90,,0.9\n"
    "k00,3,0.05,0.20,0.40,0.98,,0.9\n"
    "other,3,0.1,0.1,0.2,0.2,,0.9\n"  # another video's row
)


def test_detect_with_boxes_csv(model, videos, tmp_path):
    video = videos / "k00.mp4"
    boxes_csv = tmp_path / "boxes.csv"
    boxes_csv.write_text(BOXES_CSV)
    out_video, out_csv = tmp_path / "annotated.mp4", tmp_path / "actions.csv"
    found = detect.detect_actions(
        model,
        video,
        boxes_csv,
        output_video=out_video,
        output_csv=out_csv,
        test_crop_size=CROP,
        top_k=3,
        progress=False,
    )
    assert found.keyframes == 10 and found.seconds.tolist() == [1, 3, 3]

    # The CSV: one row per box and top action, AVA's format.
    rows = _read_csv(out_csv)
    assert len(rows) == 3 * 3 and all(len(r) == 8 and r[0] == "k00" for r in rows)
    given = {1: [[0.10, 0.15, 0.45, 0.95]], 3: [[0.55, 0.10, 0.90, 0.90], [0.05, 0.20, 0.40, 0.98]]}
    for second, boxes in given.items():
        expected = _expected_scores(model, video, second, boxes, 300)
        for i, box in enumerate(boxes):
            got = [r for r in rows if int(r[1]) == second and [float(v) for v in r[2:6]] == box]
            assert len(got) == 3
            top = np.argsort(-expected[i])[:3]
            assert [int(r[6]) for r in got] == (top + 1).tolist()  # 1-based AVA ids
            np.testing.assert_allclose(
                [float(r[7]) for r in got], expected[i][top], rtol=1e-6, atol=1e-6
            )

    # The video: same frames, size and rate; boxes drawn near their keyframes only.
    src, src_rate = _decode(video)
    out, out_rate = _decode(out_video)
    assert out.shape == src.shape and out_rate == src_rate
    height, width = src.shape[1:3]
    diff = np.abs(out.astype(np.int16) - src).max(axis=-1)
    for second, boxes in given.items():
        frames = _nearest_second_frames(len(src), src_rate, second)
        assert len(frames) == 30
        for box in boxes:
            ys, xs = _outline_pixels(box, width, height)
            assert diff[frames][:, ys, xs].mean() > 40, (second, box)
    quiet = _nearest_second_frames(len(src), src_rate, 6)  # no box at second 6
    assert diff[quiet].mean() < 5  # re-encoding only


def _hog_available():
    return hasattr(cv2, "HOGDescriptor") and hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector")


@pytest.mark.skipif(
    not _hog_available(),
    reason="this OpenCV has no HOG people detector (OpenCV 5: opencv-contrib-python-headless)",
)
def test_detect_with_opencv_person_detector(model, videos, tmp_path):
    # bikes.mp4 (25 fps) shows a cyclist and people in the street.
    video = videos / "bikes.mp4"
    out_video, out_csv = tmp_path / "annotated.mp4", tmp_path / "actions.csv"
    found = detect.detect_actions(
        model,
        video,
        person_detector="opencv",
        output_video=out_video,
        output_csv=out_csv,
        test_crop_size=CROP,
        top_k=2,
        progress=False,
    )
    assert len(found.seconds) > 0
    rows = _read_csv(out_csv)
    assert len(rows) == 2 * len(found.seconds)
    # The boxes are the HOG detector's on the keyframe (30 fps frame 30 * s; at 25 fps that
    # is decoded frame 25 * s), run here on a frame decoded with plain PyAV.
    src, src_rate = _decode(video)
    hog = detect.OpenCVPersonDetector()
    second = int(found.seconds[0])
    boxes, scores = hog(src[25 * second])
    assert len(boxes) and np.all((0 <= boxes) & (boxes <= 1))
    np.testing.assert_allclose(found.boxes[found.seconds == second], boxes, atol=1e-6)
    expected = _expected_scores(model, video, second, boxes, 300)
    np.testing.assert_allclose(found.scores[found.seconds == second], expected, atol=1e-6)

    out, out_rate = _decode(out_video)
    assert out.shape == src.shape and out_rate == src_rate
    height, width = src.shape[1:3]
    diff = np.abs(out.astype(np.int16) - src).max(axis=-1)
    frames = _nearest_second_frames(len(src), src_rate, second)
    ys, xs = _outline_pixels(boxes[0], width, height)
    assert diff[frames][:, ys, xs].mean() > 40


def test_no_person_gives_an_empty_csv_and_a_plain_video(model, videos, tmp_path):
    video = videos / "k00.mp4"
    out_video, out_csv = tmp_path / "annotated.mp4", tmp_path / "actions.csv"
    seen = []

    def nobody(frame):
        seen.append(frame.shape)
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)

    with pytest.warns(RuntimeWarning, match="No person"):
        found = detect.detect_actions(
            model,
            video,
            person_detector=nobody,
            output_video=out_video,
            output_csv=out_csv,
            test_crop_size=CROP,
            progress=False,
        )
    # The person detector saw every keyframe, at the video's own size.
    assert seen == [(256, 340, 3)] * 10
    assert len(found.seconds) == 0 and found.scores.shape == (0, 80) and found.rows() == []
    assert out_csv.read_text() == ""
    src, _ = _decode(video)
    out, _ = _decode(out_video)
    assert out.shape == src.shape
    assert np.abs(out.astype(np.int16) - src).mean() < 5


def test_bad_input(model, videos, tmp_path):
    video = videos / "k00.mp4"
    bad = tmp_path / "bad.csv"
    bad.write_text("video,sec,x1,y1,x2,y2\nk00,1,0.1,0.1,0.5,0.5\nk00,2,0.1,oops,0.5,0.5\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 3: the row does not parse"):
        detect.detect_actions(model, video, bad, progress=False)
    bad.write_text("k00,1,0.1,0.1,1.5,0.5\n")
    with pytest.raises(ValueError, match=r"line 1: boxes must be normalised"):
        detect.detect_actions(model, video, bad, progress=False)
    bad.write_text("other,1,0.1,0.1,0.5,0.5\n")
    with pytest.raises(ValueError, match=r"no row for video 'k00'.*\['other'\]"):
        detect.detect_actions(model, video, bad, progress=False)
    with pytest.raises(ValueError, match="must not be the input video"):
        detect.detect_actions(model, video, {}, output_video=video, progress=False)
    with pytest.raises(ValueError, match="Received: top_k=0"):
        detect.detect_actions(model, video, {}, top_k=0, progress=False)
    with pytest.raises(ValueError, match="person_detector"):
        detect.detect_actions(model, video, person_detector="yolo", progress=False)
    with pytest.raises(ValueError, match="normalised"):
        detect.detect_actions(model, video, {1: [[0.5, 0.5, 0.2, 0.9]]}, progress=False)
    with pytest.raises(TypeError, match="AVA detector"):
        detect.detect_actions(object(), video, {}, progress=False)
    with pytest.raises(ValueError, match="file not found"):
        detect.detect_actions(model, tmp_path / "missing.mp4", {}, progress=False)


def test_command_line_with_boxes(golden, videos, tmp_path):
    weights = golden / "ava_data" / "ava_e2e_model.pyth"
    if not weights.is_file():
        pytest.skip("golden ava_data/ava_e2e_model.pyth not found")
    boxes_csv = tmp_path / "boxes.csv"
    boxes_csv.write_text("k00,2,0.2,0.1,0.6,0.9\n")
    out_video, out_csv = tmp_path / "out.mp4", tmp_path / "out.csv"
    run = subprocess.run(
        [sys.executable, "-m", "keras_slowfast.cli", "detect", str(videos / "k00.mp4")]
        + ["--boxes", str(boxes_csv), "--weights", str(weights), "--top-k", "2"]
        + ["--test-crop-size", str(CROP), "--output", str(out_video), "--csv", str(out_csv)],
        cwd=_REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "1 person boxes in 1 of 10 keyframes" in run.stdout
    assert "10/10 keyframes" in run.stderr and "300/300 frames" in run.stderr
    rows = _read_csv(out_csv)
    assert rows[0] == ["video", "sec", "x1", "y1", "x2", "y2", "action", "score"]
    assert len(rows) == 3 and rows[1][:6] == ["k00", "2", "0.2", "0.1", "0.6", "0.9"]
    out, rate = _decode(out_video)
    assert out.shape == (300, 256, 340, 3) and rate == fractions.Fraction(30)
    assert sorted(os.listdir(tmp_path)) == ["boxes.csv", "out.csv", "out.mp4"]  # no temp file


def test_docstring_examples():
    import doctest

    from keras_slowfast import progress

    for module in (scoring, progress):
        assert doctest.testmod(module).failed == 0, module.__name__
