"""Actions of the people in any video: an AVA detector scoring person boxes every second.

Every whole second `s` of the video is a keyframe, as in AVA: its frame is frame `30 * s`
of the video at 30 fps (:mod:`keras_slowfast.data.ava_video`), and its clip is the
`num_frames` frames every `sampling_rate` frames centred there (PySlowFast's
`get_sequence`, clamped to the video), prepared as AVA's test mode (short side to
`test_crop_size` with OpenCV's bilinear resize, no crop). Person boxes come from a CSV in
AVA's format, or from a person detector run on the keyframe: OpenCV's HOG people detector
(offline, nothing to download) or a keras-hub object detector (optional). The detector
model scores every box of a keyframe in one call.

Outputs: a CSV `video,sec,x1,y1,x2,y2,action,score` in AVA's format (no header, boxes
normalised, `action` the 1-based AVA action id, the `top_k` actions of each box), and the
video re-encoded with each second's boxes and top actions drawn on the frames nearest to
its keyframe (same frame count, size and frame rate).
"""

import csv
import dataclasses
import math
import os
import warnings

import cv2
import numpy as np

from keras_slowfast._ava_csv import csv_rows
from keras_slowfast._checks import argument_error, check_positive_int
from keras_slowfast._video_writer import reencode_video
from keras_slowfast.atomic import atomic_path
from keras_slowfast.data._video_io import DEFAULT_TIMEOUT_S, FpsSlots, check_timeout
from keras_slowfast.data.ava import AVA_FPS
from keras_slowfast.data.ava_video import count_frames_at_fps, read_frames_at_fps

__all__ = [
    "ActionDetections",
    "KerasHubPersonDetector",
    "OpenCVPersonDetector",
    "detect_actions",
    "draw_detections",
    "read_box_csv",
    "write_annotated_video",
    "write_detections_csv",
]

# ---------------------------------------------------------------------------------------------
# Person boxes.


def _parse_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _is_number(text):
    try:
        _parse_float(text)
    except ValueError:
        return False
    return True


def read_box_csv(path, video=None, score_thresh=None):
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


def _nms(boxes, scores, iou_thresh):
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


def _check_unit(name, value, low=0.0, high=1.0):
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

    def __init__(self, score_thresh=1.0, nms_thresh=0.45, short_side=480, win_stride=8, scale=1.05):
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

    def __call__(self, frame):
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
    >>> boxes, scores = detector(frame)  # doctest: +SKIP
    """

    def __init__(
        self,
        model="retinanet_resnet50_fpn_coco",
        score_thresh=0.5,
        person_class_id=0,
        image_size=None,
    ):
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

    def __call__(self, frame):
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


def _person_detector(person_detector):
    if callable(person_detector):
        return person_detector
    if person_detector == "opencv":
        return OpenCVPersonDetector()
    if person_detector == "keras-hub":
        return KerasHubPersonDetector()
    raise argument_error(
        "`person_detector` must be 'opencv', 'keras-hub' or a callable frame -> (boxes, scores).",
        person_detector=person_detector,
    )


# ---------------------------------------------------------------------------------------------
# Scoring.


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
    class_names: list
    top_k: int
    score_thresh: float
    keyframes: int

    def top_actions(self, index):
        """`[(class index, name, score)]` of box `index`, best first."""
        scores = self.scores[index]
        order = np.argsort(-scores, kind="stable")[: self.top_k]
        return [
            (int(c), self.class_names[int(c)], float(scores[c]))
            for c in order
            if scores[c] >= self.score_thresh
        ]

    def rows(self):
        """CSV rows `(video, sec, x1, y1, x2, y2, action_id, score)`; `action_id` is 1-based."""
        out = []
        for i in range(len(self.seconds)):
            box = [round(float(v), 6) for v in self.boxes[i]]
            for c, _, score in self.top_actions(i):
                out.append((self.video, int(self.seconds[i]), *box, c + 1, score))
        return out


def _check_detector(model):
    inputs = getattr(model, "input", None)
    if not hasattr(model, "predict_on_batch") or not isinstance(inputs, dict):
        raise TypeError(
            "`model` must be an AVA detector (a Keras model taking {'clip', 'boxes'}). "
            f"Received: model={model!r}"
        )
    if "clip" not in inputs or "boxes" not in inputs:
        raise argument_error("`model` must take {'clip', 'boxes'}.", model_inputs=sorted(inputs))
    return inputs


def _box_slots(n):
    """Box rows fed to the model: a power of two >= n (at least 4), so few shapes are traced."""
    return max(4, 1 << max(0, int(n) - 1).bit_length())


def _keyframe_boxes(boxes, video_name):
    """`{second: (boxes, scores)}` from a CSV path or a mapping."""
    if isinstance(boxes, (str, os.PathLike)):
        table = read_box_csv(boxes)
        if video_name in table:
            return table[video_name]
        if len(table) == 1 and "" in table:
            return table[""]
        raise argument_error(
            f"The boxes CSV has no row for video {video_name!r} (the file name without its "
            f"extension); it has rows for {sorted(table)[:10]}.",
            boxes=os.fspath(boxes),
        )
    if isinstance(boxes, dict):
        out = {}
        for sec, value in boxes.items():
            b = np.asarray(value[0] if isinstance(value, tuple) else value, np.float32)
            b = b.reshape(-1, 4)
            if b.size and not (
                np.all((0 <= b) & (b <= 1))
                and np.all(b[:, 2] > b[:, 0])
                and np.all(b[:, 3] > b[:, 1])
            ):
                raise argument_error(
                    "Boxes must be normalised `[x1, y1, x2, y2]` with 0 <= x1 < x2 <= 1 and "
                    "0 <= y1 < y2 <= 1.",
                    second=sec,
                    boxes=b.tolist(),
                )
            scores = (
                np.asarray(value[1], np.float32)
                if isinstance(value, tuple)
                else np.full(len(b), np.nan, np.float32)
            )
            out[int(sec)] = (b, scores)
        return out
    raise TypeError(
        "`boxes` must be None, the path of a boxes CSV or a dict {second: boxes}. "
        f"Received: boxes={boxes!r}"
    )


def _transform(frames, boxes, size):
    """AVA test mode: short side to `size` (OpenCV bilinear), boxes as PySlowFast moves them.

    Returns the clip and the boxes normalised to it (what the detector model takes).
    """
    from keras_slowfast.data.ava import ava_transform

    clip, pixel_boxes = ava_transform(frames, boxes, "test", crop_size=size)
    height, width = clip.shape[1:3]
    return clip, (pixel_boxes / np.array([width, height, width, height], np.float32)).astype(
        np.float32
    )


def detect_actions(
    model,
    video,
    boxes=None,
    *,
    person_detector="opencv",
    output_video=None,
    output_csv=None,
    num_frames=None,
    sampling_rate=2,
    test_crop_size=256,
    top_k=3,
    score_thresh=0.0,
    box_score_thresh=None,
    class_names=None,
    bgr=False,
    progress=True,
    timeout=DEFAULT_TIMEOUT_S,
):
    """Detects the actions of the people in a video with an AVA detector.

    Every whole second of the video is a keyframe (see the module docstring): its person
    boxes are scored by `model` on the AVA test-mode clip around it. Keyframes without a
    box are skipped; a video with no person gives no detection (and an empty CSV) with a
    warning.

    Args:
        model: an AVA detector taking `{"clip", "boxes"}` (e.g. `SlowFastR101AVA`).
        video: path of the video file.
        boxes: person boxes: the path of a CSV `video,sec,x1,y1,x2,y2[,action[,score]]`
            (normalised; `video` is the file name without extension, `sec` the second from
            the start of the video), or a dict `{second: boxes (n, 4)}`; `None` runs
            `person_detector` on each keyframe.
        person_detector: `"opencv"` (:class:`OpenCVPersonDetector`), `"keras-hub"`
            (:class:`KerasHubPersonDetector`) or a callable `rgb_frame -> (boxes, scores)`.
        output_video: if given, the annotated video is written there (atomically).
        output_csv: if given, the detections CSV is written there (atomically).
        num_frames: clip length (default: the model's input length).
        sampling_rate: frame stride of the clip at 30 fps (2 for the 32x2 models).
        test_crop_size: short side of the clip (256 in AVA's protocol).
        top_k: actions kept per box in the CSV and drawn.
        score_thresh: minimum score of a kept action.
        box_score_thresh: with a CSV, drop boxes whose score is below it.
        class_names: class names (default: AVA's for 80 classes), see
            `keras_slowfast.labels.class_names_for`.
        bgr: feed the model BGR clips (for detectors trained with PySlowFast's `AVA.BGR`).
        progress: draw progress bars on stderr.
        timeout: seconds allowed for decoding one clip.

    Returns:
        An :class:`ActionDetections`.

    Raises:
        VideoReadError: (a `ValueError`) if the video cannot be decoded.
        ValueError: for bad arguments, or a boxes CSV row that does not parse (naming the
            file and line).

    Example:

    >>> model = keras_slowfast.SlowFastR101AVA(weights="ava")  # doctest: +SKIP
    >>> found = detect_actions(model, "video.mp4", output_video="annotated.mp4",
    ...                        output_csv="actions.csv")  # doctest: +SKIP
    >>> found.top_actions(0)  # doctest: +SKIP
    [(11, 'stand', 0.93), (16, 'talk to (e.g., self, a person, a group)', 0.41)]
    """
    from keras_slowfast.data.ava import ava_sequence
    from keras_slowfast.labels import class_names_for
    from keras_slowfast.progress import ProgressBar

    inputs = _check_detector(model)
    if num_frames is None:
        num_frames = inputs["clip"].shape[1]
        if num_frames is None:
            raise argument_error(
                "Pass `num_frames`: the model's clip length is not fixed.", num_frames=None
            )
    check_positive_int("num_frames", num_frames)
    check_positive_int("sampling_rate", sampling_rate)
    check_positive_int("test_crop_size", test_crop_size)
    check_positive_int("top_k", top_k)
    if isinstance(score_thresh, bool) or not isinstance(score_thresh, (int, float)):
        raise argument_error("`score_thresh` must be a number.", score_thresh=score_thresh)
    check_timeout(timeout)
    video = os.fspath(video)
    for name, path in (("output_video", output_video), ("output_csv", output_csv)):
        if path is not None and os.path.abspath(os.fspath(path)) == os.path.abspath(video):
            raise argument_error(f"`{name}` must not be the input video.", **{name: path})
    name = os.path.splitext(os.path.basename(video))[0]
    total = count_frames_at_fps(video, fps=AVA_FPS, timeout=timeout)
    keyframes = (total + AVA_FPS - 1) // AVA_FPS
    if boxes is not None:
        given = _keyframe_boxes(boxes, name)
        if box_score_thresh is not None:
            given = {
                s: (b[~(sc < box_score_thresh)], sc[~(sc < box_score_thresh)])
                for s, (b, sc) in given.items()
            }
        outside = sorted(s for s in given if s >= keyframes)
        if outside:
            warnings.warn(
                f"Boxes of seconds {outside[:5]} are past the end of {video!r} "
                f"({keyframes} keyframes); they are ignored.",
                RuntimeWarning,
                stacklevel=2,
            )
        detector = None
    else:
        given = None
        detector = _person_detector(person_detector)

    seconds, all_boxes, all_scores = [], [], []
    num_classes = None
    with ProgressBar(keyframes, f"{name}: scoring", unit="keyframes", enabled=progress) as bar:
        for second in range(keyframes):
            if given is not None:
                person_boxes = given.get(second, (np.zeros((0, 4), np.float32), None))[0]
                if len(person_boxes) == 0:
                    bar.update()
                    continue
            seq = ava_sequence(second * AVA_FPS, num_frames, sampling_rate, total)
            frames = read_frames_at_fps(
                video, np.concatenate([seq, [second * AVA_FPS]]), fps=AVA_FPS, timeout=timeout
            )
            if detector is not None:
                person_boxes, _ = detector(frames[-1])
                person_boxes = np.asarray(person_boxes, np.float32).reshape(-1, 4)
                if len(person_boxes) == 0:
                    bar.update()
                    continue
            clip, model_boxes = _transform(frames[:-1], person_boxes, test_crop_size)
            if bgr:
                clip = np.ascontiguousarray(clip[..., ::-1])
            slots = _box_slots(len(model_boxes))
            padded = np.zeros((1, slots, 4), np.float32)
            padded[0, : len(model_boxes)] = model_boxes
            out = model.predict_on_batch({"clip": clip[None], "boxes": padded})
            out = np.asarray(out, np.float32)[0, : len(model_boxes)]
            num_classes = out.shape[-1]
            seconds.extend([second] * len(person_boxes))
            all_boxes.append(person_boxes)
            all_scores.append(out)
            bar.update()

    if num_classes is None:
        num_classes = int(getattr(model, "output_shape", (None, None, 0))[-1] or 0)
        warnings.warn(
            f"No person in {video!r}: no box "
            + ("in the boxes given." if given is not None else "found by the person detector."),
            RuntimeWarning,
            stacklevel=2,
        )
    result = ActionDetections(
        video=name,
        seconds=np.asarray(seconds, np.int64),
        boxes=(np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4), np.float32)),
        scores=(
            np.concatenate(all_scores) if all_scores else np.zeros((0, num_classes), np.float32)
        ),
        class_names=class_names_for(num_classes, class_names),
        top_k=int(top_k),
        score_thresh=float(score_thresh),
        keyframes=keyframes,
    )
    if output_csv is not None:
        write_detections_csv(result, output_csv)
    if output_video is not None:
        write_annotated_video(video, result, output_video, progress=progress)
    return result


# ---------------------------------------------------------------------------------------------
# Outputs.


# The columns of a detections CSV.
_CSV_COLUMNS = ("video", "sec", "x1", "y1", "x2", "y2", "action", "score")


def write_detections_csv(detections, path, header=False):
    """Writes `detections.rows()` as AVA's CSV, atomically.

    Args:
        detections: an :class:`ActionDetections`.
        path: the CSV file to write.
        header: start with the row `video,sec,x1,y1,x2,y2,action,score` (AVA's own files
            have none; :func:`read_box_csv` skips it).

    Example:

    >>> write_detections_csv(found, "actions.csv")  # doctest: +SKIP
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


_PALETTE = (
    (255, 64, 64),
    (64, 200, 255),
    (64, 255, 96),
    (255, 200, 32),
    (224, 96, 255),
    (255, 128, 192),
    (32, 224, 200),
    (255, 255, 255),
)


def draw_detections(frame, boxes, labels, thickness=None):
    """Draws boxes and their label lines on an RGB frame (in place) with OpenCV.

    Args:
        frame: uint8 `(H, W, 3)` RGB, modified in place.
        boxes: `(n, 4)` normalised `[x1, y1, x2, y2]`.
        labels: `n` lists of text lines (e.g. `"stand 0.93"`).
        thickness: box line width in pixels (default: from the frame size).

    Returns:
        The frame.

    Example:

    >>> frame = np.zeros((120, 160, 3), np.uint8)
    >>> _ = draw_detections(frame, np.array([[0.25, 0.25, 0.75, 0.75]]), [["stand 0.9"]])
    >>> bool(frame[30, 60:100].any(axis=-1).all())  # the top edge is drawn
    True
    """
    height, width = frame.shape[:2]
    if thickness is None:
        thickness = max(2, round(min(height, width) / 180))
    font_scale = max(0.35, min(height, width) / 600)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, (box, lines) in enumerate(zip(np.asarray(boxes, np.float64).reshape(-1, 4), labels)):
        colour = _PALETTE[i % len(_PALETTE)]
        x1, y1 = int(round(box[0] * (width - 1))), int(round(box[1] * (height - 1)))
        x2, y2 = int(round(box[2] * (width - 1))), int(round(box[3] * (height - 1)))
        cv2.rectangle(frame, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        sizes = [cv2.getTextSize(line, font, font_scale, 1) for line in lines]
        if not sizes:
            continue
        line_height = max(s[0][1] + s[1] for s in sizes) + 4
        block_height = line_height * len(lines)
        block_width = max(s[0][0] for s in sizes) + 6
        top = y1 - block_height if y1 - block_height >= 0 else y1 + thickness
        left = min(max(0, x1), max(0, width - block_width))
        cv2.rectangle(
            frame, (left, top), (left + block_width, top + block_height), colour, cv2.FILLED
        )
        for j, line in enumerate(lines):
            baseline_y = top + (j + 1) * line_height - 4
            cv2.putText(
                frame, line, (left + 3, baseline_y), font, font_scale, (0, 0, 0), 1, cv2.LINE_AA
            )
    return frame


def write_annotated_video(video, detections, path, progress=True, timeout=None):
    """Re-encodes `video` with each second's boxes and top actions drawn, atomically.

    Each frame shows the detections of its nearest keyframe (the frames within half a
    second of it). The output has the input's frames (same count, size and frame rate),
    encoded with H.264 (or MPEG-4 Part 2 when the PyAV build has no H.264 encoder); audio is
    not copied.

    Args:
        video: the input video.
        detections: an :class:`ActionDetections` of that video.
        path: the output file (its extension picks the container, e.g. `.mp4`).
        progress: draw a progress bar on stderr.
        timeout: seconds allowed (`None`: no limit).

    Example:

    >>> write_annotated_video("video.mp4", found, "annotated.mp4")  # doctest: +SKIP
    """
    import fractions

    by_second = {}
    for i, second in enumerate(detections.seconds.tolist()):
        lines = [f"{n} {s:.2f}" for _, n, s in detections.top_actions(i)]
        by_second.setdefault(second, ([], []))
        by_second[second][0].append(detections.boxes[i])
        by_second[second][1].append(lines)

    def start(container, stream):
        slots = FpsSlots(container, stream, fractions.Fraction(AVA_FPS))
        first_slot = None

        def draw(rgb, pts):
            nonlocal first_slot
            slot = slots.slot(pts)
            if first_slot is None:
                first_slot = slot
            position = (slot - first_slot) / AVA_FPS
            last = max(0, detections.keyframes - 1)
            second = min(max(0, math.floor(position + 0.5)), last)
            if second in by_second:
                rgb = np.ascontiguousarray(rgb)
                draw_detections(rgb, np.array(by_second[second][0]), by_second[second][1])
            return rgb

        return draw

    return reencode_video(
        video, path, start, f"{detections.video}: writing", progress=progress, timeout=timeout
    )
