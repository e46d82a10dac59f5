"""The action-detection pipeline: an AVA detector scoring person boxes every second.

Every whole second `s` of the video is a keyframe, as in AVA: its frame is frame `30 * s`
of the video at 30 fps (:mod:`keras_slowfast.data.ava_video`), and its clip is the
`num_frames` frames every `sampling_rate` frames centred there (PySlowFast's
`get_sequence`, clamped to the video), prepared as AVA's test mode (short side to
`test_crop_size` with OpenCV's bilinear resize, no crop). Person boxes come from a CSV in
AVA's format, or from a person detector run on the keyframe
(:mod:`keras_slowfast.detect.person_boxes`). The detector model scores every box of a
keyframe in one call.
"""

import os
import warnings

import numpy as np

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

__all__ = ["detect_actions"]


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
