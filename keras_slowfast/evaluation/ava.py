"""AVA frame-level mean average precision (frame-mAP), in pure NumPy.

This reproduces the official AVA v2.x evaluation that PySlowFast runs (the ActivityNet
evaluator built on the PASCAL metrics of the TensorFlow Object Detection API):

* every ``(video, second)`` pair is one image, keyed ``"video,%04d"``;
* ground truth and detections of classes outside the label map are dropped, and so are
  images listed as excluded timestamps (in both ground truth and detections);
* detection boxes with ``x2 <= x1`` or ``y2 <= y1`` are dropped;
* within one image and one class, detections are matched greedily *in input order* (not by
  score): each detection looks at the ground-truth box it overlaps most (IoU without the
  ``+1`` pixel convention, boxes are normalised) and is a true positive when that IoU is at
  least 0.5 and the box is not matched yet; otherwise it is a false positive. Detections on
  an image without ground truth of that class are false positives;
* per class, all detections are ranked by score (``numpy.argsort`` reversed, which fixes the
  order of ties) and the PASCAL VOC all-point average precision is computed;
* classes of the label map without ground truth get ``nan`` and are left out of the mean.

The coordinate order does not change any number (IoU is symmetric in x and y), so boxes are
kept here in the CSV order ``x1, y1, x2, y2``.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

import numpy as np

from keras_slowfast._ava_csv import csv_rows, is_blank
from keras_slowfast._deprecation import deprecated_alias

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "AVABoxes",
    "average_precision",
    "detections_from_predictions",
    "evaluate_ava",
    "make_image_key",
    "read_csv",
    "read_exclusions",
    "read_labelmap",
    "write_csv",
]

_MAP_KEY = "PascalBoxes_Precision/mAP@{}IOU"
_CLASS_KEY = "PascalBoxes_PerformanceByCategory/AP@{}IOU/{}"


class AVABoxes(NamedTuple):
    """Boxes, labels and scores of AVA rows, grouped by image key.

    Each field maps an image key ``"video,%04d"`` to a NumPy array, in the order the rows
    were given: ``boxes`` ``(n, 4)`` float64 ``x1, y1, x2, y2`` (normalised), ``labels``
    ``(n,)`` int64 action ids, ``scores`` ``(n,)`` float64 (1.0 for ground truth).

    Example:
        >>> rows = "vid,902,0.1,0.2,0.5,0.9,12,0\\nvid,902,0.1,0.2,0.5,0.9,17,0\\n"
        >>> gt = read_csv(io.StringIO(rows))
        >>> gt.boxes["vid,0902"].tolist(), gt.labels["vid,0902"].tolist()
        ([[0.1, 0.2, 0.5, 0.9], [0.1, 0.2, 0.5, 0.9]], [12, 17])
        >>> gt.scores["vid,0902"].tolist()
        [1.0, 1.0]
    """

    boxes: dict
    labels: dict
    scores: dict


def _fmt(value):
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _parse_second(value, where):
    try:
        return int(value)
    except (TypeError, ValueError):
        pass
    try:
        sec = float(value)
    except (TypeError, ValueError):
        sec = math.nan
    if not math.isfinite(sec) or sec != int(sec):
        raise ValueError(
            f"The timestamp {where} must be a whole number of seconds. Received: second={value!r}"
        )
    return int(sec)


def make_image_key(video_id: str, second: int | str) -> str:
    """Returns the AVA image key of a video and a keyframe second.

    Args:
        video_id: The video name (for example the YouTube id).
        second: The keyframe timestamp in whole seconds (an int or a string such as
            ``"0902"``).

    Returns:
        The string ``"video,%04d"``.

    Example:
        >>> make_image_key("-5KQ66BBWC4", 902)
        '-5KQ66BBWC4,0902'
    """
    return f"{video_id},{_parse_second(second, 'of the image key'):04d}"


def _is_pathlike(value):
    return isinstance(value, (str, os.PathLike))


def read_labelmap(path_or_text: str | os.PathLike) -> tuple[list[dict[str, Any]], set[int]]:
    """Reads an AVA label map (``.pbtxt``) into categories and class ids.

    Each ``item { name: "..." id: N }`` (``label_id`` is accepted for ``id``) becomes one
    category. Only the classes of the label map are evaluated (60 of the 80 AVA actions for
    the ActivityNet 2018 list).

    Args:
        path_or_text: A path to the ``.pbtxt`` file, or its text.

    Returns:
        A tuple ``(categories, class_ids)``: the list of ``{"id": int, "name": str}`` in file
        order and the set of their ids.

    Example:
        >>> cats, ids = read_labelmap('item {\\n  name: "stand"\\n  id: 12\\n}\\n')
        >>> cats, ids
        ([{'id': 12, 'name': 'stand'}], {12})
    """
    if isinstance(path_or_text, os.PathLike) or (
        isinstance(path_or_text, str) and "{" not in path_or_text
    ):
        if not os.path.isfile(path_or_text):
            raise ValueError(
                "`path_or_text` must be a label map file or its text, but no such file "
                f"exists. Received: path_or_text={_fmt(path_or_text)}"
            )
        with open(path_or_text, encoding="utf-8") as f:
            text = f.read()
    elif isinstance(path_or_text, str):
        text = path_or_text
    else:
        raise TypeError(
            "`path_or_text` must be a path or the text of a label map. "
            f"Received: path_or_text={_fmt(path_or_text)}"
        )

    categories = []
    seen = set()
    items = re.findall(r"\bitem\s*\{([^}]*)\}", text)
    for body in items:
        name = re.search(r'(?m)^\s*name\s*:\s*"([^"]*)"', body)
        cid = re.search(r"(?m)^\s*(?:label_)?id\s*:\s*(-?\d+)", body)
        if name is None or cid is None:
            raise ValueError(
                "Every label map item needs a `name` and an `id`. "
                f"Received: item={_fmt(body.strip())}"
            )
        class_id = int(cid.group(1))
        if class_id < 1:
            raise ValueError(f"Label map ids must be 1 or more. Received: id={class_id}")
        if class_id in seen:
            raise ValueError(f"Label map ids must be unique. Received: duplicate id={class_id}")
        seen.add(class_id)
        categories.append({"id": class_id, "name": name.group(1)})
    if not categories:
        raise ValueError(
            f"The label map has no `item {{...}}` entries. Received: path_or_text="
            f"{_fmt(path_or_text)}"
        )
    return categories, seen


def _check_whitelist(class_whitelist):
    if class_whitelist is None:
        return None
    if isinstance(class_whitelist, (str, bytes)) or not isinstance(class_whitelist, Iterable):
        raise TypeError(
            "`class_whitelist` must be a collection of integer class ids or None. "
            f"Received: class_whitelist={_fmt(class_whitelist)}"
        )
    ids = {int(c) for c in class_whitelist}
    if not ids:
        raise ValueError(
            "`class_whitelist` must not be empty (pass None to keep every class). "
            f"Received: class_whitelist={_fmt(class_whitelist)}"
        )
    return ids


def _group_rows(numbered_rows, class_whitelist, load_score, source):
    """Groups `(row number, row)` AVA rows by image key, keeping the order of first appearance."""
    boxes, labels, scores = {}, {}, {}
    for line_no, row in numbered_rows:
        if isinstance(row, str) or not isinstance(row, Sequence | np.ndarray):
            raise TypeError(
                f"Each AVA row must be a sequence of fields ({source}, row {line_no}). "
                f"Received: row={_fmt(row)}"
            )
        row = list(row)
        if is_blank(row):
            continue
        if len(row) not in (7, 8):
            raise ValueError(
                "AVA rows have 7 or 8 columns: video, second, x1, y1, x2, y2, action id "
                f"[, score or person id] ({source}, row {line_no}). Received: row={_fmt(row)}"
            )
        if load_score and len(row) != 8:
            raise ValueError(
                f"Detection rows need a score in column 8 ({source}, row {line_no}). "
                f"Received: row={_fmt(row)}"
            )
        try:
            key = make_image_key(str(row[0]).strip(), row[1])
            box = [float(v) for v in row[2:6]]
            action = int(row[6])
            score = float(row[7]) if load_score else 1.0
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"Could not parse an AVA row ({source}, row {line_no}): {e}. "
                f"Received: row={_fmt(row)}"
            ) from None
        if class_whitelist is not None and action not in class_whitelist:
            continue
        boxes.setdefault(key, []).append(box)
        labels.setdefault(key, []).append(action)
        scores.setdefault(key, []).append(score)
    return AVABoxes(
        {k: np.asarray(v, dtype=np.float64).reshape(-1, 4) for k, v in boxes.items()},
        {k: np.asarray(v, dtype=np.int64) for k, v in labels.items()},
        {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()},
    )


def read_csv(
    path: str | os.PathLike | TextIO,
    class_whitelist: Iterable[int] | None = None,
    load_score: bool = False,
) -> AVABoxes:
    """Reads an AVA ground-truth or detection CSV.

    Rows are ``video, second, x1, y1, x2, y2, action_id[, score or person_id]`` with boxes
    normalised to ``[0, 1]``.

    Args:
        path: The CSV file (a path or an open text file).
        class_whitelist: Optional collection of action ids to keep; rows of other classes
            are skipped. None keeps every row.
        load_score: Whether column 8 is a score (detections). When False every score is 1.0
            and column 8, if any, is ignored (ground truth carries the person id there).

    Returns:
        An `AVABoxes` of dicts keyed by ``"video,%04d"``: ``boxes`` ``(n, 4)``
        ``x1, y1, x2, y2``, ``labels`` ``(n,)`` and ``scores`` ``(n,)``.

    Example:
        >>> import io
        >>> gt = read_csv(io.StringIO("vid,902,0.1,0.2,0.5,0.9,12,0\\n"))
        >>> gt.labels
        {'vid,0902': array([12])}
    """
    whitelist = _check_whitelist(class_whitelist)
    if _is_pathlike(path):
        if not os.path.isfile(path):
            raise ValueError(f"`path` must be an existing CSV file. Received: path={_fmt(path)}")
        return _group_rows(csv_rows(path), whitelist, load_score, os.fspath(path))
    if isinstance(path, io.IOBase) or hasattr(path, "read"):
        return _group_rows(csv_rows(path), whitelist, load_score, "file")
    raise TypeError(f"`path` must be a path or an open text file. Received: path={_fmt(path)}")


def read_exclusions(path: str | os.PathLike | TextIO | None) -> set[str]:
    """Reads the excluded timestamps CSV (rows ``video, second``).

    Args:
        path: The CSV file (a path or an open text file), or None for no exclusions.

    Returns:
        A set of image keys ``"video,%04d"``.

    Example:
        >>> import io
        >>> sorted(read_exclusions(io.StringIO("vid,903\\nvid,0904\\n")))
        ['vid,0903', 'vid,0904']
    """
    if path is None:
        return set()
    if _is_pathlike(path):
        if not os.path.isfile(path):
            raise ValueError(f"`path` must be an existing CSV file. Received: path={_fmt(path)}")
        return _exclusions_from_rows(csv_rows(path))
    if hasattr(path, "read"):
        return _exclusions_from_rows(csv_rows(path))
    raise TypeError(
        f"`path` must be a path, an open text file or None. Received: path={_fmt(path)}"
    )


def _exclusions_from_rows(numbered_rows):
    excluded = set()
    for _, row in numbered_rows:
        if len(row) != 2:
            raise ValueError(
                f"Excluded timestamps have 2 columns: video, second. Received: row={_fmt(row)}"
            )
        excluded.add(make_image_key(str(row[0]).strip(), row[1]))
    return excluded


def _as_boxes(data, name, class_whitelist, load_score):
    """Turns a path, rows or (boxes, labels[, scores]) dicts into `AVABoxes`."""
    if _is_pathlike(data) or hasattr(data, "read"):
        return read_csv(data, class_whitelist=class_whitelist, load_score=load_score)
    if (
        isinstance(data, tuple | list)
        and len(data) in (2, 3)
        and all(isinstance(d, Mapping) for d in data)
    ):
        boxes_d, labels_d = data[0], data[1]
        scores_d = data[2] if len(data) == 3 else None
        out = AVABoxes({}, {}, {})
        for key in boxes_d:
            b = np.asarray(boxes_d[key], dtype=np.float64)
            if b.size == 0:
                b = b.reshape(0, 4)
            lab = np.asarray(labels_d.get(key, ()), dtype=np.int64).reshape(-1)
            if scores_d is None:
                if load_score:
                    raise ValueError(
                        f"`{name}` needs scores: pass (boxes, labels, scores) dicts. "
                        f"Received: {name} with {len(data)} dicts"
                    )
                s = np.ones(len(lab), dtype=np.float64)
            else:
                s = np.asarray(scores_d.get(key, ()), dtype=np.float64).reshape(-1)
            if b.ndim != 2 or b.shape[1] != 4 or not (len(b) == len(lab) == len(s)):
                raise ValueError(
                    f"`{name}` boxes must be (n, 4) with n labels and n scores per image. "
                    f"Received: {name}[{key!r}] with boxes shape {b.shape}, "
                    f"{len(lab)} labels and {len(s)} scores"
                )
            if class_whitelist is not None:
                keep = np.isin(lab, sorted(class_whitelist))
                b, lab, s = b[keep], lab[keep], s[keep]
            if not isinstance(key, str) or "," not in key:
                raise ValueError(
                    f"`{name}` keys must be image keys 'video,second'. Received: key={key!r}"
                )
            image_key = make_image_key(*key.rsplit(",", 1))
            out.boxes[image_key] = b
            out.labels[image_key] = lab
            out.scores[image_key] = s
        return out
    if isinstance(data, Iterable) and not isinstance(data, str | bytes | Mapping):
        return _group_rows(enumerate(data, start=1), class_whitelist, load_score, name)
    raise TypeError(
        f"`{name}` must be a CSV path, a list of AVA rows or a tuple of (boxes, labels, "
        f"scores) dicts keyed by 'video,second'. Received: {name}={_fmt(data)}"
    )


def _as_labelmap(labelmap):
    if _is_pathlike(labelmap):
        return read_labelmap(labelmap)
    if isinstance(labelmap, tuple) and len(labelmap) == 2 and isinstance(labelmap[1], set):
        categories = list(labelmap[0])
    elif isinstance(labelmap, Sequence) and all(isinstance(c, Mapping) for c in labelmap):
        categories = list(labelmap)
    else:
        raise TypeError(
            "`labelmap` must be a .pbtxt path or text, the (categories, class_ids) pair of "
            f"`read_labelmap`, or a list of {{'id', 'name'}} dicts. Received: labelmap="
            f"{_fmt(labelmap)}"
        )
    if not categories:
        raise ValueError(f"`labelmap` has no categories. Received: labelmap={_fmt(labelmap)}")
    ids = set()
    for c in categories:
        if "id" not in c or "name" not in c or int(c["id"]) < 1 or int(c["id"]) in ids:
            raise ValueError(
                "Every category needs a unique integer 'id' of 1 or more and a 'name'. "
                f"Received: category={_fmt(c)}"
            )
        ids.add(int(c["id"]))
    return [{"id": int(c["id"]), "name": str(c["name"])} for c in categories], ids


def _pairwise_iou(a, b):
    """IoU of (n, 4) and (m, 4) boxes, areas without the +1 pixel convention."""
    ix = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    iy = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iy, 0.0) * np.maximum(ix, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area_a[:, None] + area_b[None, :] - inter)


def _match_image_class(det_boxes, gt_boxes, iou_threshold):
    """True/false positive flags of one image and class, greedy in input order."""
    tp = np.zeros(len(det_boxes), dtype=bool)
    if len(gt_boxes) == 0 or len(det_boxes) == 0:
        return tp
    iou = _pairwise_iou(det_boxes, gt_boxes)
    best = np.argmax(iou, axis=1)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for i, g in enumerate(best):
        if iou[i, g] >= iou_threshold and not taken[g]:
            tp[i] = True
            taken[g] = True
    return tp


def average_precision(
    scores: npt.ArrayLike, is_true_positive: npt.ArrayLike, num_groundtruth: int
) -> float:
    """PASCAL VOC all-point average precision of ranked detections.

    Detections are ranked by decreasing score (ties in the order of ``numpy.argsort``
    reversed, as the official evaluator does); precision is made monotone and integrated
    over every recall step.

    Args:
        scores: ``(n,)`` detection scores.
        is_true_positive: ``(n,)`` booleans.
        num_groundtruth: Number of ground-truth instances (at least the number of true
            positives).

    Returns:
        The AP as a float; ``nan`` when ``num_groundtruth`` is 0 and 0.0 when there are no
        detections.

    Example:
        >>> average_precision([0.9, 0.8, 0.7], [True, False, True], 2)
        0.8333333333333333
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    tp = np.asarray(is_true_positive, dtype=bool).reshape(-1)
    if scores.shape != tp.shape:
        raise ValueError(
            "`scores` and `is_true_positive` must have the same length. "
            f"Received: len(scores)={scores.size}, len(is_true_positive)={tp.size}"
        )
    if num_groundtruth < tp.sum():
        raise ValueError(
            "`num_groundtruth` must be at least the number of true positives. "
            f"Received: num_groundtruth={num_groundtruth}"
        )
    if num_groundtruth == 0:
        return math.nan
    if scores.size == 0:
        return 0.0
    order = np.argsort(scores)[::-1]
    hits = tp[order].astype(np.int64)
    cum_tp = np.cumsum(hits)
    cum_fp = np.cumsum(1 - hits)
    precision = cum_tp / (cum_tp + cum_fp)
    recall = cum_tp / float(num_groundtruth)
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def _as_exclusions(excluded_timestamps):
    if excluded_timestamps is None:
        return set()
    if _is_pathlike(excluded_timestamps) or hasattr(excluded_timestamps, "read"):
        return read_exclusions(excluded_timestamps)
    if isinstance(excluded_timestamps, Iterable) and not isinstance(excluded_timestamps, bytes):
        keys = set()
        for item in excluded_timestamps:
            if isinstance(item, str):
                parts = item.rsplit(",", 1)
            else:
                parts = list(item)
            if len(parts) != 2:
                raise ValueError(
                    "Excluded timestamps must be 'video,second' keys or (video, second) "
                    f"pairs. Received: excluded_timestamps item={_fmt(item)}"
                )
            keys.add(make_image_key(str(parts[0]).strip(), parts[1]))
        return keys
    raise TypeError(
        "`excluded_timestamps` must be None, a CSV path or a collection of (video, second) "
        f"pairs. Received: excluded_timestamps={_fmt(excluded_timestamps)}"
    )


def evaluate_ava(
    groundtruth: str
    | os.PathLike
    | TextIO
    | Iterable[Sequence[Any]]
    | tuple[Mapping[str, Any], ...],
    detections: str
    | os.PathLike
    | TextIO
    | Iterable[Sequence[Any]]
    | tuple[Mapping[str, Any], ...],
    labelmap: str
    | os.PathLike
    | tuple[Sequence[Mapping[str, Any]], set[int]]
    | Sequence[Mapping[str, Any]],
    excluded_timestamps: str | os.PathLike | TextIO | Iterable[str | Sequence[Any]] | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Computes the AVA frame-mAP and per-class AP, as the official evaluator does.

    Args:
        groundtruth: Ground truth: a CSV path, a list of rows
            ``(video, second, x1, y1, x2, y2, action_id[, person_id])``, or a tuple of
            ``(boxes, labels)`` dicts keyed by ``"video,second"`` (as `read_csv` returns).
        detections: Detections: a CSV path, a list of rows
            ``(video, second, x1, y1, x2, y2, action_id, score)`` (as
            `detections_from_predictions` returns) or ``(boxes, labels, scores)`` dicts.
        labelmap: The evaluated classes: a ``.pbtxt`` path or text, the pair returned by
            `read_labelmap`, or a list of ``{"id", "name"}`` dicts. Rows of other classes
            are ignored.
        excluded_timestamps: Optional CSV path or collection of ``(video, second)`` pairs
            (or ``"video,second"`` keys) whose frames are left out of both inputs.
        iou_threshold: IoU needed for a match (0.5 in the AVA protocol).

    Returns:
        A dict with ``"PascalBoxes_Precision/mAP@0.5IOU"`` first, then one
        ``"PascalBoxes_PerformanceByCategory/AP@0.5IOU/<name>"`` per label map class in id
        order. Classes without ground truth have ``nan`` and do not enter the mean.

    Example:
        >>> lm = [{"id": 1, "name": "bend"}]
        >>> gt = [("v", 902, 0.1, 0.1, 0.5, 0.5, 1)]
        >>> det = [("v", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.9)]
        >>> evaluate_ava(gt, det, lm)["PascalBoxes_Precision/mAP@0.5IOU"]
        1.0
    """
    if not isinstance(iou_threshold, int | float) or not 0.0 < iou_threshold <= 1.0:
        raise ValueError(
            f"`iou_threshold` must be a number in (0, 1]. Received: iou_threshold={iou_threshold}"
        )
    categories, class_ids = _as_labelmap(labelmap)
    gt = _as_boxes(groundtruth, "groundtruth", class_ids, load_score=False)
    det = _as_boxes(detections, "detections", class_ids, load_score=True)
    excluded = _as_exclusions(excluded_timestamps)

    num_gt = dict.fromkeys(class_ids, 0)
    gt_by_image = {}
    for key, boxes in gt.boxes.items():
        if key in excluded:
            continue
        invalid = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        invalid |= ~np.isfinite(boxes).all(axis=1)
        if invalid.any():
            raise ValueError(
                "Ground-truth boxes must be finite with x2 >= x1 and y2 >= y1. "
                f"Received: box={boxes[np.argmax(invalid)].tolist()} at image {key!r}"
            )
        labels = gt.labels[key]
        gt_by_image[key] = {}
        for c in np.unique(labels):
            sel = labels == c
            gt_by_image[key][int(c)] = boxes[sel]
            num_gt[int(c)] += int(sel.sum())

    det_scores = {c: [] for c in class_ids}
    det_tp = {c: [] for c in class_ids}
    for key, boxes in det.boxes.items():
        if key in excluded:
            continue
        labels, scores = det.labels[key], det.scores[key]
        valid = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
        boxes, labels, scores = boxes[valid], labels[valid], scores[valid]
        image_gt = gt_by_image.get(key, {})
        for c in np.unique(labels):
            sel = labels == c
            c = int(c)
            gt_boxes = image_gt.get(c, np.zeros((0, 4)))
            det_tp[c].append(_match_image_class(boxes[sel], gt_boxes, iou_threshold))
            det_scores[c].append(scores[sel])

    per_class = {}
    for c in sorted(class_ids):
        if num_gt[c] == 0:
            per_class[c] = math.nan
            continue
        s = np.concatenate(det_scores[c]) if det_scores[c] else np.zeros(0)
        t = np.concatenate(det_tp[c]) if det_tp[c] else np.zeros(0, dtype=bool)
        per_class[c] = average_precision(s, t, num_gt[c])

    # The official tool averages an array over ids 1..max id with nan for classes without
    # ground truth; the same array is used so that the rounding of the sum is the same.
    ap_by_index = np.full(max(class_ids), np.nan)
    for c, ap in per_class.items():
        ap_by_index[c - 1] = ap
    has_gt = ~np.isnan(ap_by_index)
    mean_ap = float(np.nanmean(ap_by_index)) if has_gt.any() else math.nan
    names = {c["id"]: c["name"] for c in categories}
    metrics = {_MAP_KEY.format(iou_threshold): mean_ap}
    for c in sorted(class_ids):
        metrics[_CLASS_KEY.format(iou_threshold, names[c])] = per_class[c]
    return metrics


def detections_from_predictions(
    video_ids: npt.ArrayLike,
    seconds: npt.ArrayLike,
    boxes: npt.ArrayLike,
    scores: npt.ArrayLike,
    class_ids: Iterable[int] | None = None,
) -> list[tuple[str, int, float, float, float, float, int, float]]:
    """Turns per-box class scores into AVA detection rows (one row per box and class).

    Args:
        video_ids: ``(N,)`` video names, one per box.
        seconds: ``(N,)`` keyframe seconds (rounded to whole seconds).
        boxes: ``(N, 4)`` normalised ``x1, y1, x2, y2`` person boxes.
        scores: ``(N, C)`` per-class scores (sigmoid outputs); column ``j`` is action id
            ``j + 1``.
        class_ids: Optional collection of action ids to emit (for example the ids of
            `read_labelmap`); None emits all ``C``.

    Returns:
        A list of ``(video, second, x1, y1, x2, y2, action_id, score)`` tuples, grouped by
        box in input order.

    Example:
        >>> rows = detections_from_predictions(["v"], [902], [[0.1, 0.2, 0.5, 0.9]],
        ...                                    [[0.25, 0.75]])
        >>> rows[1]
        ('v', 902, 0.1, 0.2, 0.5, 0.9, 2, 0.75)
    """
    ids = np.asarray(video_ids)
    secs = np.asarray(seconds, dtype=np.float64)
    b = np.asarray(boxes, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if ids.ndim != 1:
        raise ValueError(
            f"`video_ids` must be one-dimensional. Received: video_ids shape={ids.shape}"
        )
    n = ids.shape[0]
    if secs.shape != (n,):
        raise ValueError(
            f"`seconds` must have one entry per box ({n}). Received: seconds shape={secs.shape}"
        )
    if b.shape != (n, 4):
        raise ValueError(f"`boxes` must have shape ({n}, 4). Received: boxes shape={b.shape}")
    if s.ndim != 2 or s.shape[0] != n:
        raise ValueError(
            f"`scores` must have shape ({n}, num_classes). Received: scores shape={s.shape}"
        )
    if class_ids is None:
        keep = list(range(1, s.shape[1] + 1))
    else:
        keep = sorted(_check_whitelist(class_ids))
        if keep[0] < 1 or keep[-1] > s.shape[1]:
            raise ValueError(
                f"`class_ids` must lie in [1, {s.shape[1]}] for {s.shape[1]} score columns. "
                f"Received: class_ids={_fmt(class_ids)}"
            )
    rows = []
    for i in range(n):
        vid = ids[i].decode() if isinstance(ids[i], bytes) else str(ids[i])
        sec = int(np.round(secs[i]))
        x1, y1, x2, y2 = (float(v) for v in b[i])
        for c in keep:
            rows.append((vid, sec, x1, y1, x2, y2, c, float(s[i, c - 1])))
    return rows


def write_csv(rows: Iterable[Sequence[Any]], path: str | os.PathLike | TextIO) -> None:
    """Writes detection rows in the official AVA CSV format (what `read_csv` reads).

    Boxes are written with 3 decimals, scores with 4, seconds zero-padded to 4 digits, as
    PySlowFast writes its detection files.

    Args:
        rows: ``(video, second, x1, y1, x2, y2, action_id, score)`` rows, for example from
            `detections_from_predictions`.
        path: The output file (a path or an open text file).

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> write_csv([("v", 902, 0.1, 0.2, 0.5, 0.9, 12, 0.75)], out)
        >>> out.getvalue()
        'v,0902,0.100,0.200,0.500,0.900,12,0.7500\\n'
    """
    lines = []
    for row in rows:
        if isinstance(row, str) or len(row) != 8:
            raise ValueError(
                "Detection rows have 8 fields: video, second, x1, y1, x2, y2, action id, "
                f"score. Received: row={_fmt(row)}"
            )
        vid, sec, x1, y1, x2, y2, label, score = row
        lines.append(
            f"{make_image_key(vid, sec)},{float(x1):.3f},{float(y1):.3f},{float(x2):.3f},"
            f"{float(y2):.3f},{int(label)},{float(score):.4f}\n"
        )
    if _is_pathlike(path):
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(lines)
    elif hasattr(path, "write"):
        path.writelines(lines)
    else:
        raise TypeError(f"`path` must be a path or an open text file. Received: path={_fmt(path)}")


# Its former name, which `keras_slowfast.detect.write_detections_csv` also has (with other
# arguments and number formats).
write_detections_csv = deprecated_alias(
    write_csv, "write_detections_csv", "keras_slowfast.evaluation.ava"
)
