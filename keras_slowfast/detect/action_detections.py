"""What the action detector found: :class:`ActionDetections` and its CSV.

One entry per (keyframe second, person box) with the detector's scores of every class;
:meth:`ActionDetections.rows` and :func:`write_detections_csv` give the `top_k` actions of
each box in AVA's CSV format `video,sec,x1,y1,x2,y2,action,score` (no header by default,
boxes normalised, `action` the 1-based AVA action id). The CSV is read back as person boxes
by :func:`keras_slowfast.detect.read_box_csv`. (The evaluator's detections CSV,
:func:`keras_slowfast.evaluation.write_csv`, has AVA's official fixed decimals instead.)
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from keras_slowfast.atomic import atomic_path

__all__ = ["ActionDetections", "write_detections_csv"]


@dataclasses.dataclass
class ActionDetections:
    """The actions `detect_actions` found, one entry per (second, box).

    Attributes:
        video: the video's name (file name without extension), the CSV's `video` column.
        seconds: int64 `(n,)` keyframe second of each box.
        boxes: float32 `(n, 4)` normalised `[x1, y1, x2, y2]` person boxes.
        scores: float32 `(n, classes)` the detector's scores of each box.
        class_names: the names of the classes.
        top_k: actions per box in `rows` (those scoring at least `score_thresh`).
        score_thresh: minimum score of an action in `rows`.
        keyframes: number of keyframes (whole seconds) of the video.

    Example:

    >>> d = ActionDetections("v", np.array([3]), np.array([[0.1, 0.1, 0.5, 0.9]], "float32"),
    ...                      np.array([[0.2, 0.7]], "float32"), ["sit", "stand"], 1, 0.0, 10)
    >>> d.rows()
    [('v', 3, 0.1, 0.1, 0.5, 0.9, 2, 0.699999988079071)]
    """

    video: str
    seconds: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    class_names: list[str]
    top_k: int
    score_thresh: float
    keyframes: int

    def top_actions(self, index: int) -> list[tuple[int, str, float]]:
        """`[(class index, name, score)]` of box `index`, best first.

        At most `top_k` classes, those scoring at least `score_thresh`; the class index is
        0-based.

        Example:

        >>> d = ActionDetections("v", np.array([3]), np.array([[0.1, 0.1, 0.5, 0.9]]),
        ...                      np.array([[0.2, 0.7, 0.1]]), ["sit", "stand", "walk"], 2, 0.0, 10)
        >>> d.top_actions(0)
        [(1, 'stand', 0.7), (0, 'sit', 0.2)]
        """
        scores = self.scores[index]
        order = np.argsort(-scores, kind="stable")[: self.top_k]
        return [
            (int(c), self.class_names[int(c)], float(scores[c]))
            for c in order
            if scores[c] >= self.score_thresh
        ]

    def rows(self) -> list[tuple[str, int, float, float, float, float, int, float]]:
        """CSV rows `(video, sec, x1, y1, x2, y2, action_id, score)`; `action_id` is 1-based.

        Each box gives its `top_actions`, so a box may give fewer than `top_k` rows, or none.

        Example:

        >>> d = ActionDetections("v", np.array([3, 3]), np.array([[0, 0, 0.5, 1], [0.5, 0, 1, 1]]),
        ...                      np.array([[0.25, 0.75], [0.5, 0.0]]), ["sit", "stand"], 2, 0.1, 10)
        >>> for row in d.rows():
        ...     print(row)
        ('v', 3, 0.0, 0.0, 0.5, 1.0, 2, 0.75)
        ('v', 3, 0.0, 0.0, 0.5, 1.0, 1, 0.25)
        ('v', 3, 0.5, 0.0, 1.0, 1.0, 1, 0.5)
        """
        out = []
        for i in range(len(self.seconds)):
            box = [round(float(v), 6) for v in self.boxes[i]]
            for c, _, score in self.top_actions(i):
                out.append((self.video, int(self.seconds[i]), *box, c + 1, score))
        return out


# The columns of a detections CSV.
_CSV_COLUMNS = ("video", "sec", "x1", "y1", "x2", "y2", "action", "score")


def write_detections_csv(
    detections: ActionDetections, path: str | os.PathLike, header: bool = False
) -> None:
    """Writes `detections.rows()` as AVA's CSV, atomically.

    Args:
        detections: an :class:`ActionDetections`.
        path: the CSV file to write.
        header: start with the row `video,sec,x1,y1,x2,y2,action,score` (AVA's own files
            have none; :func:`keras_slowfast.detect.read_box_csv` skips it).

    Example:

    >>> import tempfile
    >>> found = ActionDetections("v", np.array([3]), np.array([[0.1, 0.1, 0.5, 0.9]]),
    ...                          np.array([[0.25, 0.75]]), ["sit", "stand"], 1, 0.0, 10)
    >>> path = os.path.join(tempfile.mkdtemp(), "actions.csv")
    >>> write_detections_csv(found, path, header=True)
    >>> print(open(path).read(), end="")
    video,sec,x1,y1,x2,y2,action,score
    v,3,0.1,0.1,0.5,0.9,2,0.75
    """
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            if header:
                writer.writerow(_CSV_COLUMNS)
            for video, sec, x1, y1, x2, y2, action, score in detections.rows():
                writer.writerow(
                    [video, sec, *(f"{v:.6g}" for v in (x1, y1, x2, y2)), action, f"{score:.9g}"]
                )
