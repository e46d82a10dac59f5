"""Person boxes for the action detector: read from AVA's CSV format, or found on a frame.

- :func:`read_box_csv`: boxes in AVA's CSV format `video,sec,x1,y1,x2,y2[,action[,score]]`,
  each box once per (video, second) however many action rows list it.
- :class:`OpenCVPersonDetector`: OpenCV's HOG people detector (offline, nothing to
  download), with greedy non-maximum suppression.
- :class:`KerasHubPersonDetector`: the person class of a keras-hub object detector (the
  optional `keras-hub` dependency).

A detector takes an RGB keyframe and returns normalised `[x1, y1, x2, y2]` boxes and their
scores, best first: the boxes :func:`keras_slowfast.detect.detect_actions` scores. The
detector model (:mod:`keras_slowfast.models.detection`) finds no person itself: it scores
the boxes it is given.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import ArrayLike

from keras_slowfast._ava_csv import csv_rows
from keras_slowfast._checks import argument_error, check_positive_int

if TYPE_CHECKING:
    import keras_hub

__all__ = ["KerasHubPersonDetector", "OpenCVPersonDetector", "read_box_csv"]


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _is_number(text: str) -> bool:
    try:
        _parse_float(text)
    except ValueError:
        return False
    return True


def read_box_csv(
    path: str | os.PathLike,
    video: str | None = None,
    score_thresh: float | None = None,
) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Reads person boxes in AVA's CSV format: `video,sec,x1,y1,x2,y2[,action[,score]]`.

    Coordinates are normalised to [0, 1]. A box listed on several rows (one per action, as
    in AVA's ground truth) is kept once, with its highest score. A first line whose `sec`
    field is not a number is taken as a header.

    Args:
        path: the CSV file.
        video: keep only this video's rows (`None`: all).
        score_thresh: drop rows whose score is below it (rows without a score are kept).

    Returns:
        `{video: {second: (boxes, scores)}}` with float32 `(n, 4)` boxes and `(n,)` scores
        (NaN where the row has none), seconds in file order.

    Raises:
        ValueError: naming the file and line of a row that does not parse or whose box is
            outside [0, 1] or empty.

    Example:

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
    ...     _ = f.write("v,1,0.1,0.2,0.5,0.9,12,0.9\\nv,1,0.1,0.2,0.5,0.9,80,0.9\\n")
    >>> boxes, scores = read_box_csv(f.name)["v"][1]
    >>> np.round(boxes.astype(float), 3).tolist(), np.round(scores.astype(float), 3).tolist()
    ([[0.1, 0.2, 0.5, 0.9]], [0.9])
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise argument_error("No boxes CSV at this path.", boxes=path)
    found = {}
    for line_number, row in csv_rows(path):
        where = f"{path}, line {line_number}"
        if line_number == 1 and not _is_number(row[1] if len(row) > 1 else ""):
            continue  # a header such as video,sec,x1,...
        if not 6 <= len(row) <= 8:
            raise argument_error(
                f"{where}: a boxes row has 6 to 8 fields (video,sec,x1,y1,x2,y2[,action[,score]]).",
                row=",".join(row),
            )
        try:
            second = _parse_float(row[1])
            x1, y1, x2, y2 = (_parse_float(v) for v in row[2:6])
            score = _parse_float(row[7]) if len(row) == 8 and row[7].strip() else math.nan
        except ValueError:
            raise argument_error(f"{where}: the row does not parse.", row=",".join(row)) from None
        if second != int(second) or second < 0:
            raise argument_error(f"{where}: `sec` must be a whole second >= 0.", row=",".join(row))
        if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
            raise argument_error(
                f"{where}: boxes must be normalised with 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1.",
                row=",".join(row),
            )
        name = row[0].strip()
        if video is not None and name != video:
            continue
        if score_thresh is not None and score == score and score < score_thresh:
            continue
        per_second = found.setdefault(name, {}).setdefault(int(second), {})
        key = (x1, y1, x2, y2)
        previous = per_second.get(key, -math.inf)
        per_second[key] = score if not previous >= score else previous
    return {
        name: {
            sec: (
                np.array(list(boxes), np.float32).reshape(-1, 4),
                np.array(list(boxes.values()), np.float32),
            )
            for sec, boxes in seconds.items()
        }
        for name, seconds in found.items()
    }


def _nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns the kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    area = np.maximum(0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0, boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0])
        h = np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1])
        inter = np.maximum(0, w) * np.maximum(0, h)
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        order = rest[iou <= iou_thresh]
    return np.array(keep, np.int64)


def _check_unit(name: str, value: object, low: float = 0.0, high: float = 1.0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise argument_error(f"`{name}` must be a number in [{low}, {high}].", **{name: value})


class OpenCVPersonDetector:
    """OpenCV's HOG + linear SVM people detector (Dalal-Triggs), with no model to download.

    The frame is resized so that its short side is `short_side` (people must be at least
    about 128 px tall there to be found), the detector's windows scoring at least
    `score_thresh` are kept, then non-maximum suppression at `nms_thresh` IoU. The
    detector is `cv2.HOGDescriptor` with `cv2.HOGDescriptor_getDefaultPeopleDetector()`:
    in OpenCV 4 it is part of `opencv-python-headless`; OpenCV 5 moved it to
    `opencv-contrib-python-headless`, which this package installs.

    Args:
        score_thresh: minimum SVM score of a window (its signed distance to the margin;
            lower finds more people and more false ones).
        nms_thresh: IoU above which the lower-scored of two boxes is dropped.
        short_side: short side, in pixels, of the frame the detector scans.
        win_stride: window step in pixels.
        scale: pyramid scale step.

    Call with an RGB uint8 frame `(H, W, 3)`; returns `(boxes, scores)`: float32 `(n, 4)`
    normalised `[x1, y1, x2, y2]` and `(n,)`, best first.

    Example:

    >>> detector = OpenCVPersonDetector()
    >>> boxes, scores = detector(np.zeros((256, 340, 3), np.uint8))  # no one in a black frame
    >>> boxes.shape, scores.shape
    ((0, 4), (0,))
    """

    def __init__(
        self,
        score_thresh: float = 1.0,
        nms_thresh: float = 0.45,
        short_side: int = 480,
        win_stride: int = 8,
        scale: float = 1.05,
    ) -> None:
        if not hasattr(cv2, "HOGDescriptor") or not hasattr(
            cv2, "HOGDescriptor_getDefaultPeopleDetector"
        ):
            raise ImportError(
                f"This OpenCV ({cv2.__version__}) has no HOG people detector: OpenCV 5 moved "
                "it to the contrib build. Install it with `pip install "
                "opencv-contrib-python-headless` (it replaces opencv-python-headless), or give "
                "person boxes as a CSV."
            )
        if isinstance(score_thresh, bool) or not isinstance(score_thresh, (int, float)):
            raise argument_error("`score_thresh` must be a number.", score_thresh=score_thresh)
        _check_unit("nms_thresh", nms_thresh)
        if isinstance(short_side, bool) or not isinstance(short_side, int) or short_side < 128:
            raise argument_error("`short_side` must be an integer >= 128.", short_side=short_side)
        win_stride = check_positive_int("win_stride", win_stride)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 1:
            raise argument_error("`scale` must be a number > 1.", scale=scale)
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.short_side = short_side
        self.win_stride = win_stride
        self.scale = float(scale)
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, frame: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """`(boxes, scores)` of the people in an RGB uint8 frame `(H, W, 3)`, best first."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise argument_error("`frame` must be an RGB image (H, W, 3).", frame_shape=frame.shape)
        height, width = frame.shape[:2]
        factor = self.short_side / min(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        image = cv2.cvtColor(np.ascontiguousarray(frame, np.uint8), cv2.COLOR_RGB2BGR)
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        stride = (self.win_stride, self.win_stride)
        rects, weights = self._hog.detectMultiScale(
            image, winStride=stride, padding=stride, scale=self.scale
        )
        rects = np.asarray(rects, np.float64).reshape(-1, 4)
        scores = np.asarray(weights, np.float64).reshape(-1)
        keep = scores >= self.score_thresh
        rects, scores = rects[keep], scores[keep]
        boxes = np.stack(
            [
                rects[:, 0] / size[0],
                rects[:, 1] / size[1],
                (rects[:, 0] + rects[:, 2]) / size[0],
                (rects[:, 1] + rects[:, 3]) / size[1],
            ],
            axis=1,
        ).clip(0.0, 1.0)
        kept = _nms(boxes, scores, self.nms_thresh) if len(boxes) else np.zeros(0, np.int64)
        return boxes[kept].astype(np.float32), scores[kept].astype(np.float32)


class KerasHubPersonDetector:
    """The person class of a keras-hub object detector (optional `keras-hub` dependency).

    The frame is padded at the bottom or right to a square (so that the detector's own
    resizing keeps its aspect ratio), resized to the detector's input size, and the boxes of
    class `person_class_id` scoring at least `score_thresh` are returned, normalised to the
    frame. A preset name is downloaded on first use (`keras_hub` caches it).

    Args:
        model: a keras-hub preset name (e.g. `"retinanet_resnet50_fpn_coco"`,
            `"dfine_small_coco"`) or a `keras_hub.models.ObjectDetector`.
        score_thresh: minimum detection confidence.
        person_class_id: the class index of people (0 in the COCO presets).
        image_size: the square side fed to the detector (default: its image converter's
            size, else the padded frame's).

    Call with an RGB uint8 frame `(H, W, 3)`; returns `(boxes, scores)` as
    :class:`OpenCVPersonDetector` does.

    Example:

    >>> detector = KerasHubPersonDetector("retinanet_resnet50_fpn_coco")  # doctest: +SKIP
    >>> frame = np.zeros((256, 340, 3), np.uint8)
    >>> boxes, scores = detector(frame)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | keras_hub.models.ObjectDetector = "retinanet_resnet50_fpn_coco",
        score_thresh: float = 0.5,
        person_class_id: int = 0,
        image_size: int | None = None,
    ) -> None:
        _check_unit("score_thresh", score_thresh)
        if isinstance(person_class_id, bool) or not isinstance(person_class_id, int):
            raise argument_error(
                "`person_class_id` must be an integer.", person_class_id=person_class_id
            )
        if image_size is not None and (
            isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32
        ):
            raise argument_error(
                "`image_size` must be an integer >= 32 or None.", image_size=image_size
            )
        if isinstance(model, str):
            try:
                import keras_hub
            except ImportError as e:
                raise ImportError(
                    "The keras-hub person detector needs keras-hub: "
                    '`pip install "keras-slowfast[keras-hub]"`.'
                ) from e
            model = keras_hub.models.ObjectDetector.from_preset(model)
        if not hasattr(model, "predict") or not hasattr(model, "bounding_box_format"):
            raise TypeError(
                "`model` must be a keras-hub preset name or a keras_hub ObjectDetector. "
                f"Received: model={model!r}"
            )
        self.model = model
        self.score_thresh = float(score_thresh)
        self.person_class_id = person_class_id
        if image_size is None:
            converter = getattr(getattr(model, "preprocessor", None), "image_converter", None)
            size = getattr(converter, "image_size", None)
            if size is not None and size[0] == size[1]:
                image_size = int(size[0])
        self.image_size = image_size

    def __call__(self, frame: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """`(boxes, scores)` of the people in an RGB uint8 frame `(H, W, 3)`, best first."""
        import keras

        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise argument_error("`frame` must be an RGB image (H, W, 3).", frame_shape=frame.shape)
        height, width = frame.shape[:2]
        side = max(height, width)
        square = np.zeros((side, side, 3), np.uint8)
        square[:height, :width] = frame
        size = self.image_size or side
        if size != side:
            square = cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR)
        out = self.model.predict(square[None].astype(np.float32), verbose=0)
        boxes = keras.utils.bounding_boxes.convert_format(
            out["boxes"],
            source=self.model.bounding_box_format,
            target="xyxy",
            height=size,
            width=size,
        )
        boxes = np.asarray(boxes, np.float64)[0].reshape(-1, 4)
        scores = np.asarray(out["confidence"], np.float64)[0].reshape(-1)
        labels = np.asarray(out["labels"])[0].reshape(-1)
        count = int(np.asarray(out.get("num_detections", [len(scores)])).reshape(-1)[0])
        boxes, scores, labels = boxes[:count], scores[:count], labels[:count]
        keep = (labels == self.person_class_id) & (scores >= self.score_thresh)
        boxes, scores = boxes[keep], scores[keep]
        scale = side / size
        boxes = boxes * scale / np.array([width, height, width, height], np.float64)
        boxes = boxes.clip(0.0, 1.0)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[valid], scores[valid]
        order = np.argsort(-scores, kind="stable")
        return boxes[order].astype(np.float32), scores[order].astype(np.float32)
