"""Tests of the AVA frame-mAP evaluator against the reference fixtures and hand-built cases."""

import csv
import io
import json
import math
import re

import numpy as np
import pytest

from keras_slowfast.evaluation import (
    average_precision,
    detections_from_predictions,
    evaluate_ava,
    make_image_key,
    read_csv,
    read_exclusions,
    read_labelmap,
    write_csv,
)

MAP = "PascalBoxes_Precision/mAP@0.5IOU"


def ap_key(name):
    return f"PascalBoxes_PerformanceByCategory/AP@0.5IOU/{name}"


# The official evaluator ranks detections with `numpy.argsort` (an unstable sort), so the
# order of equal scores is whatever NumPy's sort does on the machine. The fixtures contain
# such ties, and their numbers hold where `argsort` orders ties as on the machine that made
# them. This probe, recorded there, tells whether this machine does the same.
_TIE_PROBE = np.round(np.random.default_rng(0).random(41), 1)
_TIE_PROBE_ORDER = [
    26, 27, 16, 37, 9, 12, 38, 5, 10, 4, 28, 7, 14, 22, 29, 33, 30, 0, 6, 23, 24,
    40, 36, 17, 34, 8, 31, 39, 25, 19, 35, 1, 18, 15, 32, 21, 20, 11, 13, 2, 3,
]  # fmt: skip


def _numpy_ties_like_fixtures():
    return np.argsort(_TIE_PROBE)[::-1].tolist() == _TIE_PROBE_ORDER


def _cases(golden):
    root = golden / "ava_eval"
    cases = sorted(p for p in root.iterdir() if (p / "expected_metrics.json").is_file())
    assert cases, f"no AVA cases under {root}"
    return cases


def _evaluate_case(case, **overrides):
    kwargs = dict(
        groundtruth=case / "groundtruth.csv",
        detections=case / "detections.csv",
        labelmap=case / "labelmap.pbtxt",
        excluded_timestamps=case / "excluded_timestamps.csv",
    )
    kwargs.update(overrides)
    return evaluate_ava(**kwargs)


def _assert_metrics_equal(got, expected, where, atol=1e-6):
    assert list(got) == list(expected), f"{where}: metric names or their order differ"
    for key, want in expected.items():
        value = got[key]
        if want is None:
            assert math.isnan(value), f"{where}: {key} should be nan, got {value}"
        else:
            assert value == pytest.approx(want, abs=atol), f"{where}: {key}"


def test_golden_cases_reproduce_reference(golden):
    if not _numpy_ties_like_fixtures():
        pytest.skip(
            "NumPy's argsort orders equal scores differently on this machine than where the "
            "fixtures were made; the official evaluator's numbers then differ for tied scores"
        )
    for case in _cases(golden):
        expected = json.loads((case / "expected_metrics.json").read_text())
        _assert_metrics_equal(_evaluate_case(case), expected, case.name)


def test_golden_metric_names_and_classes_without_groundtruth(golden):
    # Independent of tie order: names, their order, and which classes are nan.
    for case in _cases(golden):
        expected = json.loads((case / "expected_metrics.json").read_text())
        got = _evaluate_case(case)
        assert list(got) == list(expected)
        assert len(got) == 61
        for key, want in expected.items():
            assert (want is None) == math.isnan(got[key]), (case.name, key)


def test_golden_in_memory_inputs_match_paths(golden):
    for case in _cases(golden):
        from_paths = _evaluate_case(case)
        gt_rows = list(csv.reader((case / "groundtruth.csv").open()))
        det_rows = list(csv.reader((case / "detections.csv").open()))
        excluded = [tuple(r) for r in csv.reader((case / "excluded_timestamps.csv").open())]
        labelmap_text = (case / "labelmap.pbtxt").read_text()
        from_rows = _evaluate_case(
            case,
            groundtruth=gt_rows,
            detections=det_rows,
            labelmap=labelmap_text,
            excluded_timestamps=excluded,
        )
        from_dicts = _evaluate_case(
            case,
            groundtruth=read_csv(case / "groundtruth.csv"),
            detections=read_csv(case / "detections.csv", load_score=True),
            labelmap=read_labelmap(case / "labelmap.pbtxt"),
            excluded_timestamps={f"{v},{s}" for v, s in excluded},
        )
        expected = {k: (None if math.isnan(v) else v) for k, v in from_paths.items()}
        _assert_metrics_equal(from_rows, expected, case.name, atol=0)
        _assert_metrics_equal(from_dicts, expected, case.name, atol=0)


def test_golden_exclusions_change_the_result(golden):
    # The fixtures are built so that forgetting the exclusions changes the numbers.
    for case in _cases(golden):
        expected = json.loads((case / "expected_metrics.json").read_text())
        got = _evaluate_case(case, excluded_timestamps=None)
        assert got[MAP] != pytest.approx(expected[MAP], abs=1e-6)


# --- hand-built cases --------------------------------------------------------------------

LABELMAP = [{"id": 1, "name": "bend"}, {"id": 3, "name": "crouch"}, {"id": 5, "name": "fall"}]
BOX_A = (0.1, 0.1, 0.4, 0.6)
BOX_B = (0.5, 0.2, 0.9, 0.8)


def gt_row(video, sec, box, label):
    return (video, sec, *box, label, 0)


def det_row(video, sec, box, label, score):
    return (video, sec, *box, label, score)


def test_perfect_detections_give_one():
    gt = [gt_row("v", 902, BOX_A, 1), gt_row("v", 902, BOX_B, 3), gt_row("w", 903, BOX_A, 1)]
    det = [det_row(g[0], g[1], g[2:6], g[6], 0.7) for g in gt]
    m = evaluate_ava(gt, det, LABELMAP)
    assert m[MAP] == 1.0
    assert m[ap_key("bend")] == 1.0
    assert m[ap_key("crouch")] == 1.0
    assert math.isnan(m[ap_key("fall")])  # no ground truth: nan, left out of the mean
    assert list(m) == [MAP, ap_key("bend"), ap_key("crouch"), ap_key("fall")]


def test_no_detections_give_zero():
    gt = [gt_row("v", 902, BOX_A, 1), gt_row("v", 902, BOX_B, 3)]
    m = evaluate_ava(gt, [], LABELMAP)
    assert m[MAP] == 0.0
    assert m[ap_key("bend")] == 0.0 and m[ap_key("crouch")] == 0.0


def test_duplicate_detection_is_a_false_positive():
    gt = [gt_row("v", 902, BOX_A, 1), gt_row("v", 902, BOX_B, 1)]
    det = [
        det_row("v", 902, BOX_A, 1, 0.9),
        det_row("v", 902, BOX_A, 1, 0.8),  # second hit on the same person
        det_row("v", 902, BOX_B, 1, 0.7),
    ]
    # Ranked TP, FP, TP: precision 1 at recall 1/2, 2/3 at recall 1.
    assert evaluate_ava(gt, det, LABELMAP)[ap_key("bend")] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_matching_within_an_image_follows_input_order_not_score():
    # The official evaluator matches greedily in the order detections are given; the later
    # (higher scoring) duplicate is the false positive and ranks first.
    gt = [gt_row("v", 902, BOX_A, 1)]
    det = [det_row("v", 902, BOX_A, 1, 0.6), det_row("v", 902, BOX_A, 1, 0.9)]
    assert evaluate_ava(gt, det, LABELMAP)[ap_key("bend")] == pytest.approx(0.5)


def test_detection_only_checks_its_best_overlapping_groundtruth():
    big = (0.0, 0.0, 1.0, 1.0)
    inner = (0.0, 0.0, 1.0, 0.9)  # IoU 0.9 with `big`
    gt = [gt_row("v", 902, big, 1), gt_row("v", 902, inner, 1)]
    det = [
        det_row("v", 902, big, 1, 0.9),
        # IoU 0.95 with `big` (taken) and ~0.947 with `inner`: still a false positive.
        det_row("v", 902, (0.0, 0.0, 1.0, 0.95), 1, 0.8),
    ]
    assert evaluate_ava(gt, det, LABELMAP)[ap_key("bend")] == pytest.approx(0.5)


def test_iou_threshold_is_inclusive_and_uses_plain_areas():
    gt = [gt_row("v", 902, (0.0, 0.0, 1.0, 1.0), 1)]
    half = [det_row("v", 902, (0.0, 0.0, 0.5, 1.0), 1, 0.9)]  # IoU exactly 0.5
    below = [det_row("v", 902, (0.0, 0.0, 0.49, 1.0), 1, 0.9)]
    assert evaluate_ava(gt, half, LABELMAP)[ap_key("bend")] == 1.0
    assert evaluate_ava(gt, below, LABELMAP)[ap_key("bend")] == 0.0


def test_classes_outside_the_labelmap_are_ignored():
    gt = [gt_row("v", 902, BOX_A, 1), gt_row("v", 902, BOX_B, 2)]
    det = [det_row("v", 902, BOX_A, 1, 0.5), det_row("v", 902, BOX_A, 2, 0.9)]
    m = evaluate_ava(gt, det, LABELMAP)
    assert m[MAP] == 1.0
    assert not any(k.endswith("/2") for k in m)


def test_detections_on_frames_without_groundtruth_are_false_positives():
    gt = [gt_row("v", 902, BOX_A, 1)]
    det = [det_row("v", 902, BOX_A, 1, 0.5), det_row("v", 904, BOX_A, 1, 0.9)]
    assert evaluate_ava(gt, det, LABELMAP)[ap_key("bend")] == pytest.approx(0.5)


def test_excluded_timestamps_drop_groundtruth_and_detections():
    gt = [gt_row("v", 902, BOX_A, 1), gt_row("v", 905, BOX_B, 1)]
    det = [det_row("v", 902, BOX_A, 1, 0.5), det_row("v", 904, BOX_A, 1, 0.9)]
    assert evaluate_ava(gt, det, LABELMAP)[ap_key("bend")] == pytest.approx(0.25)
    for excluded in ([("v", 904), ("v", 905)], ["v,0904", "v,905"]):
        m = evaluate_ava(gt, det, LABELMAP, excluded_timestamps=excluded)
        assert m[ap_key("bend")] == 1.0
    csv_file = io.StringIO("v,904\nv,0905\n")
    assert evaluate_ava(gt, det, LABELMAP, excluded_timestamps=csv_file)[MAP] == 1.0


def test_invalid_detection_boxes_are_dropped():
    gt = [gt_row("v", 902, BOX_A, 1)]
    det = [
        det_row("v", 902, BOX_A, 1, 0.5),
        det_row("v", 902, (0.5, 0.1, 0.5, 0.6), 1, 0.9),  # zero width
        det_row("v", 902, (0.1, 0.6, 0.4, 0.1), 1, 0.9),  # y2 < y1
    ]
    assert evaluate_ava(gt, det, LABELMAP)[ap_key("bend")] == 1.0


def test_mean_skips_classes_without_groundtruth():
    gt = [gt_row("v", 902, BOX_A, 1), gt_row("v", 902, BOX_B, 3)]
    det = [
        det_row("v", 902, BOX_A, 1, 0.9),  # bend: AP 1
        det_row("v", 902, BOX_A, 3, 0.9),  # crouch: FP then TP -> AP 0.5
        det_row("v", 902, BOX_B, 3, 0.8),
        det_row("v", 902, BOX_B, 5, 0.8),  # fall: no ground truth
    ]
    m = evaluate_ava(gt, det, LABELMAP)
    assert m[ap_key("crouch")] == pytest.approx(0.5)
    assert m[MAP] == pytest.approx(0.75)


def _independent_voc_ap(scores, tp, num_gt):
    """All-point AP as the mean over ground truths of the best precision at that recall."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    hits = [bool(tp[i]) for i in order]
    precisions, n_tp = [], 0
    for rank, hit in enumerate(hits, start=1):
        n_tp += hit
        precisions.append(n_tp / rank)
    total = 0.0
    for rank, hit in enumerate(hits):
        if hit:
            total += max(precisions[rank:])
    return total / num_gt


def test_average_precision_matches_an_independent_formula():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(1, 30))
        scores = rng.permutation(n) / n + 0.01  # distinct scores: the order is well defined
        tp = rng.random(n) < 0.5
        num_gt = int(tp.sum() + rng.integers(0, 4))
        if num_gt == 0:
            continue
        got = average_precision(scores, tp, num_gt)
        assert got == pytest.approx(_independent_voc_ap(scores.tolist(), tp.tolist(), num_gt))
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], 3) == pytest.approx(
        1 / 3 + 1 / 3 * 2 / 3
    )
    assert math.isnan(average_precision([], [], 0))
    assert average_precision([], [], 2) == 0.0


def test_average_precision_bad_inputs():
    with pytest.raises(ValueError, match="Received: len"):
        average_precision([0.1, 0.2], [True], 1)
    with pytest.raises(ValueError, match="Received: num_groundtruth=1"):
        average_precision([0.1, 0.2], [True, True], 1)


# --- readers and writers ------------------------------------------------------------------

PBTXT = """item {
  name: "bend/bow (at the waist)"
  id: 1
}
item {
  name: "crouch/kneel"
  label_id: 3
  display_name: "ignored"
}
"""


def test_read_labelmap_text_and_file(tmp_path):
    cats, ids = read_labelmap(PBTXT)
    assert cats == [{"id": 1, "name": "bend/bow (at the waist)"}, {"id": 3, "name": "crouch/kneel"}]
    assert ids == {1, 3}
    path = tmp_path / "labels.pbtxt"
    path.write_text(PBTXT)
    assert read_labelmap(path) == (cats, ids)
    assert read_labelmap(str(path)) == (cats, ids)


def test_read_labelmap_golden_has_60_classes(golden):
    cats, ids = read_labelmap(golden / "ava_eval" / "case0" / "labelmap.pbtxt")
    text = (golden / "ava_eval" / "case0" / "labelmap.pbtxt").read_text()
    assert len(cats) == 60 and len(ids) == 60
    assert [c["id"] for c in cats] == [int(i) for i in re.findall(r"id: (\d+)", text)]


@pytest.mark.parametrize(
    "text, match",
    [
        ("item {\n  id: 3\n}\n", "Received: item="),
        ('item {\n  name: "a"\n  id: 0\n}\n', "Received: id=0"),
        ('item {\n  name: "a"\n  id: 2\n}\nitem {\n  name: "b"\n  id: 2\n}\n', "duplicate id=2"),
        ("no items here {}", "Received: path_or_text="),
        ("missing_file.pbtxt", "Received: path_or_text="),
    ],
)
def test_read_labelmap_bad_inputs(text, match):
    with pytest.raises(ValueError, match=match):
        read_labelmap(text)


def test_read_labelmap_type_error():
    with pytest.raises(TypeError, match="Received: path_or_text=3"):
        read_labelmap(3)


def test_read_csv_groups_by_padded_key_and_filters_classes(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("v,902,0.1,0.2,0.3,0.4,1,7\n\nv,0902,0.5,0.6,0.7,0.8,2,8\nw,1000,0,0,1,1,3,9\n")
    data = read_csv(path)
    assert list(data.boxes) == ["v,0902", "w,1000"]
    np.testing.assert_array_equal(
        data.boxes["v,0902"], [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]
    )
    np.testing.assert_array_equal(data.labels["v,0902"], [1, 2])
    np.testing.assert_array_equal(data.scores["v,0902"], [1.0, 1.0])  # person id is not a score
    kept = read_csv(path, class_whitelist={2, 3})
    np.testing.assert_array_equal(kept.labels["v,0902"], [2])
    scored = read_csv(path, load_score=True)
    np.testing.assert_array_equal(scored.scores["v,0902"], [7.0, 8.0])
    boxes, labels, scores = read_csv(io.StringIO("x,3,0,0,1,1,4\n"))
    assert list(boxes) == ["x,0003"] and labels["x,0003"].tolist() == [4]


@pytest.mark.parametrize(
    "text, load_score, match",
    [
        ("v,902,0.1,0.2,0.3\n", False, "7 or 8 columns"),
        ("v,902,0.1,0.2,0.3,0.4,1\n", True, "need a score"),
        ("v,902,a,0.2,0.3,0.4,1\n", False, "Received: row="),
        ("v,902.5,0.1,0.2,0.3,0.4,1\n", False, "whole number"),
    ],
)
def test_read_csv_bad_rows(text, load_score, match):
    with pytest.raises(ValueError, match=match):
        read_csv(io.StringIO(text), load_score=load_score)


def test_read_csv_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="Received: path="):
        read_csv(tmp_path / "missing.csv")
    with pytest.raises(TypeError, match="Received: path=5"):
        read_csv(5)
    with pytest.raises(ValueError, match="Received: class_whitelist=set()"):
        read_csv(io.StringIO(""), class_whitelist=set())


def test_read_exclusions(tmp_path):
    assert read_exclusions(None) == set()
    path = tmp_path / "ex.csv"
    path.write_text("v,903\nw,1002\n")
    assert read_exclusions(path) == {"v,0903", "w,1002"}
    with pytest.raises(ValueError, match="2 columns"):
        read_exclusions(io.StringIO("v,903,1\n"))


def test_make_image_key():
    assert make_image_key("abc", 902) == "abc,0902"
    assert make_image_key("abc", "0902") == "abc,0902"
    assert make_image_key("abc", 12345) == "abc,12345"


def test_detections_from_predictions_rows_and_evaluation():
    video_ids = np.array(["v", "v", "w"])
    seconds = np.array([902.0, 902.0, 903.2])
    boxes = np.array([BOX_A, BOX_B, BOX_A], dtype=np.float32)
    scores = np.zeros((3, 5), dtype=np.float32)
    scores[0, 0] = 0.9  # bend on BOX_A of v
    scores[1, 2] = 0.8  # crouch on BOX_B of v
    scores[2, 0] = 0.1  # bend on w: a false positive ranked last
    rows = detections_from_predictions(video_ids, seconds, boxes, scores, class_ids={1, 3, 5})
    assert len(rows) == 9
    assert rows[0][:2] == ("v", 902) and rows[0][6:] == (1, pytest.approx(0.9))
    assert rows[0][2:6] == pytest.approx(BOX_A)
    assert [r[6] for r in rows[:3]] == [1, 3, 5]
    assert rows[6][1] == 903
    all_rows = detections_from_predictions(video_ids, seconds, boxes, scores)
    assert len(all_rows) == 15 and [r[6] for r in all_rows[:5]] == [1, 2, 3, 4, 5]

    gt = [gt_row("v", 902, BOX_A, 1), gt_row("v", 902, BOX_B, 3)]
    m = evaluate_ava(gt, rows, LABELMAP)
    assert m[ap_key("bend")] == 1.0 and m[ap_key("crouch")] == 1.0


def test_detections_from_predictions_bad_shapes():
    with pytest.raises(ValueError, match="Received: boxes shape=\\(1, 5\\)"):
        detections_from_predictions(["v"], [902], np.zeros((1, 5)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="Received: scores shape=\\(2, 3\\)"):
        detections_from_predictions(["v"], [902], np.zeros((1, 4)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="Received: seconds shape"):
        detections_from_predictions(["v"], [902, 903], np.zeros((1, 4)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="Received: class_ids="):
        detections_from_predictions(["v"], [902], np.zeros((1, 4)), np.zeros((1, 3)), {4})


def test_write_csv_round_trip(tmp_path):
    rows = [("v", 902, 0.12345, 0.2, 0.5, 0.9, 12, 0.123456), ("w", 1000, 0, 0, 1, 1, 3, 1)]
    path = tmp_path / "det.csv"
    write_csv(rows, path)
    lines = path.read_text().splitlines()
    assert lines == [
        "v,0902,0.123,0.200,0.500,0.900,12,0.1235",
        "w,1000,0.000,0.000,1.000,1.000,3,1.0000",
    ]
    data = read_csv(path, load_score=True)
    np.testing.assert_allclose(data.boxes["v,0902"], [[0.123, 0.2, 0.5, 0.9]])
    np.testing.assert_allclose(data.scores["v,0902"], [0.1235])
    with pytest.raises(ValueError, match="8 fields"):
        write_csv([("v", 902)], path)


def test_write_detections_csv_is_the_deprecated_name_of_write_csv(tmp_path):
    # `keras_slowfast.detect.write_detections_csv` writes detector results, with other
    # arguments; this module's writer is `write_csv` and its former name warns.
    from keras_slowfast import evaluation

    rows = [("v", 902, 0.1, 0.2, 0.5, 0.9, 12, 0.75)]
    with pytest.warns(DeprecationWarning, match=r"write_detections_csv .*use .*\.write_csv"):
        evaluation.write_detections_csv(rows, tmp_path / "old.csv")
    assert (tmp_path / "old.csv").read_text() == "v,0902,0.100,0.200,0.500,0.900,12,0.7500\n"
    assert "write_detections_csv" not in evaluation.__all__


def test_evaluate_ava_bad_inputs():
    gt = [gt_row("v", 902, BOX_A, 1)]
    with pytest.raises(TypeError, match="Received: groundtruth=5"):
        evaluate_ava(5, [], LABELMAP)
    with pytest.raises(TypeError, match="Received: labelmap=5"):
        evaluate_ava(gt, [], 5)
    with pytest.raises(ValueError, match="Received: category="):
        evaluate_ava(gt, [], [{"id": 0, "name": "x"}])
    with pytest.raises(ValueError, match="Received: iou_threshold=0"):
        evaluate_ava(gt, [], LABELMAP, iou_threshold=0)
    with pytest.raises(ValueError, match="Received: box="):
        evaluate_ava([gt_row("v", 902, (0.5, 0.1, 0.2, 0.6), 1)], [], LABELMAP)
    with pytest.raises(ValueError, match="need a score"):
        evaluate_ava(gt, [gt_row("v", 902, BOX_A, 1)[:7]], LABELMAP)
    with pytest.raises(TypeError, match="Received: excluded_timestamps=3"):
        evaluate_ava(gt, [], LABELMAP, excluded_timestamps=3)
    with pytest.raises(ValueError, match="Received: excluded_timestamps item="):
        evaluate_ava(gt, [], LABELMAP, excluded_timestamps=[("v", 902, 1)])


def test_docstring_examples():
    import doctest

    import keras_slowfast.evaluation.ava as module

    assert doctest.testmod(module).failed == 0


def test_in_memory_dicts():
    boxes = {"v,902": np.array([BOX_A, BOX_B]), "w,0903": np.array([BOX_A])}
    labels = {"v,902": [1, 3], "w,0903": [1]}
    gt = (boxes, labels)
    det = (boxes, labels, {"v,902": [0.9, 0.8], "w,0903": [0.7]})
    m = evaluate_ava(gt, det, LABELMAP, excluded_timestamps=["w,903"])
    assert m[MAP] == 1.0
    with pytest.raises(ValueError, match="Received: key=7"):
        evaluate_ava(({7: np.array([BOX_A])}, {7: [1]}), [], LABELMAP)
    with pytest.raises(ValueError, match="needs scores"):
        evaluate_ava(gt, gt, LABELMAP)
    with pytest.raises(ValueError, match="2 labels and 1 scores"):
        evaluate_ava(gt, (boxes, labels, {"v,902": [0.9]}), LABELMAP)
