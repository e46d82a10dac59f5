"""The action-detection pipeline: an AVA detector scoring person boxes every second.

Every whole second `s` of the video is a keyframe, as in AVA: its frame is frame `30 * s`
of the video at 30 fps (:mod:`keras_slowfast.data.ava_video`), and its clip is the
`num_frames` frames every `sampling_rate` frames centred there (PySlowFast's
`get_sequence`, clamped to the video), prepared as AVA's test mode (short side to
`test_crop_size` with OpenCV's bilinear resize, no crop). Person boxes come from a CSV in
AVA's format, or from a person detector run on the keyframe
(:mod:`keras_slowfast.detect.person_boxes`). The detector model scores every box of a
keyframe in one call.

:func:`detect_actions` runs in phases: the arguments are checked, the video's keyframes
counted, the source of the person boxes chosen (the boxes given, or a person detector),
each keyframe's boxes scored, and the scores gathered in an
:class:`~keras_slowfast.detect.action_detections.ActionDetections`, which is written out
as a CSV and an annotated video when asked.

Unlike :func:`keras_slowfast.evaluation.evaluate_ava_detector`, which scores an AVA-layout
dataset's boxes against its ground truth, this runs on any video file, without ground truth.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from keras_slowfast._checks import argument_error, check_positive_int
from keras_slowfast.data._video_io import DEFAULT_TIMEOUT_S, check_timeout
from keras_slowfast.data.ava import AVA_FPS
from keras_slowfast.data.ava_video import count_frames_at_fps, read_frames_at_fps
from keras_slowfast.detect.action_detections import ActionDetections, write_detections_csv
from keras_slowfast.detect.drawing import write_annotated_video
from keras_slowfast.detect.person_boxes import (
    KerasHubPersonDetector,
    OpenCVPersonDetector,
    read_box_csv,
)

if TYPE_CHECKING:
    import keras

__all__ = ["detect_actions"]

# A person detector: an RGB frame `(H, W, 3)` -> normalised boxes `(n, 4)` and scores `(n,)`.
_PersonDetector = Callable[[np.ndarray], tuple[ArrayLike, ArrayLike]]
# The person boxes given per keyframe second: `{second: (boxes (n, 4), scores (n,))}`.
_BoxTable = dict[int, tuple[np.ndarray, np.ndarray]]
# What `detect_actions` takes as `boxes`: a CSV path, or `{second: boxes or (boxes, scores)}`.
_GivenBoxes = str | os.PathLike | dict[int, ArrayLike | tuple[ArrayLike, ArrayLike]]


# ---------------------------------------------------------------------------------------------
# Checks.


def _check_detector(model: keras.Model) -> dict:
    inputs = getattr(model, "input", None)
    if not hasattr(model, "predict_on_batch") or not isinstance(inputs, dict):
        raise TypeError(
            "`model` must be an AVA detector (a Keras model taking {'clip', 'boxes'}). "
            f"Received: model={model!r}"
        )
    if "clip" not in inputs or "boxes" not in inputs:
        raise argument_error("`model` must take {'clip', 'boxes'}.", model_inputs=sorted(inputs))
    return inputs


def _clip_length(model: keras.Model, num_frames: int | None) -> int:
    """The clip length: `num_frames`, else the model's (an error when it is not fixed)."""
    inputs = _check_detector(model)
    if num_frames is None:
        num_frames = inputs["clip"].shape[1]
        if num_frames is None:
            raise argument_error(
                "Pass `num_frames`: the model's clip length is not fixed.", num_frames=None
            )
    return check_positive_int("num_frames", num_frames)


def _check_outputs(video: str, **outputs: str | os.PathLike | None) -> None:
    """An error naming the output that is the input video itself."""
    for name, path in outputs.items():
        if path is not None and os.path.abspath(os.fspath(path)) == os.path.abspath(video):
            raise argument_error(f"`{name}` must not be the input video.", **{name: path})


# ---------------------------------------------------------------------------------------------
# Keyframes and their person boxes.


@dataclasses.dataclass(frozen=True)
class _Keyframes:
    """The keyframes of a video, one per whole second, and how their frames are read."""

    video: str  # the video file
    name: str  # its file name without extension
    frames_at_fps: int  # its frame count at AVA's 30 fps
    num_frames: int
    sampling_rate: int
    timeout: float | None

    @property
    def count(self) -> int:
        return (self.frames_at_fps + AVA_FPS - 1) // AVA_FPS

    def read(self, second: int) -> np.ndarray:
        """The clip's frames around keyframe `second`, then the keyframe's own frame."""
        from keras_slowfast.data.ava import ava_sequence

        center = second * AVA_FPS
        seq = ava_sequence(center, self.num_frames, self.sampling_rate, self.frames_at_fps)
        indices = np.concatenate([seq, [center]])
        return read_frames_at_fps(self.video, indices, fps=AVA_FPS, timeout=self.timeout)


def _keyframes_of(
    video: str, num_frames: int, sampling_rate: int, timeout: float | None
) -> _Keyframes:
    name = os.path.splitext(os.path.basename(video))[0]
    total = count_frames_at_fps(video, fps=AVA_FPS, timeout=timeout)
    return _Keyframes(video, name, total, num_frames, sampling_rate, timeout)


def _person_detector(person_detector: str | _PersonDetector) -> _PersonDetector:
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


def _boxes_from_csv(path: str | os.PathLike, video_name: str) -> _BoxTable:
    """The boxes CSV's rows of `video_name` (or of its only, unnamed video)."""
    table = read_box_csv(path)
    if video_name in table:
        return table[video_name]
    if len(table) == 1 and "" in table:
        return table[""]
    raise argument_error(
        f"The boxes CSV has no row for video {video_name!r} (the file name without its "
        f"extension); it has rows for {sorted(table)[:10]}.",
        boxes=os.fspath(path),
    )


def _boxes_from_dict(boxes: dict) -> _BoxTable:
    """`{second: boxes or (boxes, scores)}` checked (normalised boxes), scores NaN if none."""
    out = {}
    for sec, value in boxes.items():
        b = np.asarray(value[0] if isinstance(value, tuple) else value, np.float32)
        b = b.reshape(-1, 4)
        if b.size and not (
            np.all((0 <= b) & (b <= 1)) and np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
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


def _keyframe_boxes(boxes: _GivenBoxes, video_name: str) -> _BoxTable:
    """`{second: (boxes, scores)}` from a CSV path or a mapping."""
    if isinstance(boxes, (str, os.PathLike)):
        return _boxes_from_csv(boxes, video_name)
    if isinstance(boxes, dict):
        return _boxes_from_dict(boxes)
    raise TypeError(
        "`boxes` must be None, the path of a boxes CSV or a dict {second: boxes}. "
        f"Received: boxes={boxes!r}"
    )


def _given_boxes(
    boxes: _GivenBoxes, box_score_thresh: float | None, keyframes: _Keyframes
) -> _BoxTable:
    """The boxes given, those scoring below `box_score_thresh` dropped; a warning names the
    seconds past the end of the video (their boxes are never scored)."""
    given = _keyframe_boxes(boxes, keyframes.name)
    if box_score_thresh is not None:
        given = {
            s: (b[~(sc < box_score_thresh)], sc[~(sc < box_score_thresh)])
            for s, (b, sc) in given.items()
        }
    outside = sorted(s for s in given if s >= keyframes.count)
    if outside:
        warnings.warn(
            f"Boxes of seconds {outside[:5]} are past the end of {keyframes.video!r} "
            f"({keyframes.count} keyframes); they are ignored.",
            RuntimeWarning,
            stacklevel=3,  # the caller of detect_actions
        )
    return given


# ---------------------------------------------------------------------------------------------
# Scoring.


def _box_slots(n: int) -> int:
    """Box rows fed to the model: a power of two >= n (at least 4), so few shapes are traced."""
    return max(4, 1 << max(0, int(n) - 1).bit_length())


def _transform(frames: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """AVA test mode: short side to `size` (OpenCV bilinear), boxes as PySlowFast moves them.

    Returns the clip and the boxes normalised to it (what the detector model takes).
    """
    from keras_slowfast.data.ava import ava_transform

    clip, pixel_boxes = ava_transform(frames, boxes, "test", crop_size=size)
    height, width = clip.shape[1:3]
    return clip, (pixel_boxes / np.array([width, height, width, height], np.float32)).astype(
        np.float32
    )


def _score_boxes(
    model: keras.Model, frames: np.ndarray, boxes: np.ndarray, test_crop_size: int, bgr: bool
) -> np.ndarray:
    """The model's float32 `(n, classes)` scores of the `n` boxes on the clip of `frames`."""
    clip, model_boxes = _transform(frames, boxes, test_crop_size)
    if bgr:
        clip = np.ascontiguousarray(clip[..., ::-1])
    padded = np.zeros((1, _box_slots(len(model_boxes)), 4), np.float32)
    padded[0, : len(model_boxes)] = model_boxes
    out = model.predict_on_batch({"clip": clip[None], "boxes": padded})
    return np.asarray(out, np.float32)[0, : len(model_boxes)]


def _score_keyframe(
    model: keras.Model,
    keyframes: _Keyframes,
    second: int,
    given: _BoxTable | None,
    detector: _PersonDetector | None,
    test_crop_size: int,
    bgr: bool,
) -> tuple[np.ndarray, np.ndarray] | None:
    """`(boxes, scores)` of the people of keyframe `second`; None when it has none.

    With boxes given, a keyframe without any is skipped before its frames are read; with a
    person detector, it runs on the keyframe's frame.
    """
    if given is not None:
        boxes = given.get(second, (np.zeros((0, 4), np.float32), None))[0]
        if len(boxes) == 0:
            return None
    frames = keyframes.read(second)
    if detector is not None:
        boxes, _ = detector(frames[-1])
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return None
    return boxes, _score_boxes(model, frames[:-1], boxes, test_crop_size, bgr)


def _score_keyframes(
    model: keras.Model,
    keyframes: _Keyframes,
    given: _BoxTable | None,
    detector: _PersonDetector | None,
    test_crop_size: int,
    bgr: bool,
    progress: bool,
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """`(second, boxes, scores)` of each keyframe with people, in order."""
    from keras_slowfast.progress import ProgressBar

    found = []
    description = f"{keyframes.name}: scoring"
    with ProgressBar(keyframes.count, description, unit="keyframes", enabled=progress) as bar:
        for second in range(keyframes.count):
            people = _score_keyframe(model, keyframes, second, given, detector, test_crop_size, bgr)
            if people is not None:
                found.append((second, *people))
            bar.update()
    return found


def _gather(
    model: keras.Model,
    keyframes: _Keyframes,
    found: list[tuple[int, np.ndarray, np.ndarray]],
    boxes_given: bool,
    class_names: list[str] | None,
    top_k: int,
    score_thresh: float,
) -> ActionDetections:
    """The :class:`ActionDetections` of the scored keyframes; a warning when there are none."""
    from keras_slowfast.labels import class_names_for

    if found:
        num_classes = found[-1][2].shape[-1]
    else:
        num_classes = int(getattr(model, "output_shape", (None, None, 0))[-1] or 0)
        warnings.warn(
            f"No person in {keyframes.video!r}: no box "
            + ("in the boxes given." if boxes_given else "found by the person detector."),
            RuntimeWarning,
            stacklevel=3,  # the caller of detect_actions
        )
    seconds = [second for second, boxes, _ in found for _ in range(len(boxes))]
    return ActionDetections(
        video=keyframes.name,
        seconds=np.asarray(seconds, np.int64),
        boxes=(np.concatenate([b for _, b, _ in found]) if found else np.zeros((0, 4), np.float32)),
        scores=(
            np.concatenate([s for _, _, s in found])
            if found
            else np.zeros((0, num_classes), np.float32)
        ),
        class_names=class_names_for(num_classes, class_names),
        top_k=int(top_k),
        score_thresh=float(score_thresh),
        keyframes=keyframes.count,
    )


# ---------------------------------------------------------------------------------------------
# The pipeline.


def detect_actions(
    model: keras.Model,
    video: str | os.PathLike,
    boxes: _GivenBoxes | None = None,
    *,
    person_detector: str | _PersonDetector = "opencv",
    output_video: str | os.PathLike | None = None,
    output_csv: str | os.PathLike | None = None,
    num_frames: int | None = None,
    sampling_rate: int = 2,
    test_crop_size: int = 256,
    top_k: int = 3,
    score_thresh: float = 0.0,
    box_score_thresh: float | None = None,
    class_names: list[str] | None = None,
    bgr: bool = False,
    progress: bool = True,
    timeout: float | None = DEFAULT_TIMEOUT_S,
) -> ActionDetections:
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
    num_frames = _clip_length(model, num_frames)
    check_positive_int("sampling_rate", sampling_rate)
    check_positive_int("test_crop_size", test_crop_size)
    check_positive_int("top_k", top_k)
    if isinstance(score_thresh, bool) or not isinstance(score_thresh, (int, float)):
        raise argument_error("`score_thresh` must be a number.", score_thresh=score_thresh)
    check_timeout(timeout)
    video = os.fspath(video)
    _check_outputs(video, output_video=output_video, output_csv=output_csv)

    keyframes = _keyframes_of(video, num_frames, sampling_rate, timeout)
    if boxes is not None:
        given, detector = _given_boxes(boxes, box_score_thresh, keyframes), None
    else:
        given, detector = None, _person_detector(person_detector)
    found = _score_keyframes(model, keyframes, given, detector, test_crop_size, bgr, progress)
    result = _gather(model, keyframes, found, given is not None, class_names, top_k, score_thresh)

    if output_csv is not None:
        write_detections_csv(result, output_csv)
    if output_video is not None:
        write_annotated_video(video, result, output_video, progress=progress)
    return result
