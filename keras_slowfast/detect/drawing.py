"""Drawing the action detector's boxes and top actions, on a frame or through a video.

- :func:`draw_detections`: boxes and their label lines on one RGB frame, with OpenCV.
- :func:`write_annotated_video`: the video re-encoded with each second's boxes and top
  actions drawn on the frames nearest to its keyframe (same frame count, size and frame
  rate).

:func:`keras_slowfast.visualize.annotate_video` draws a classifier's top classes per window
instead; both re-encode the video with the same writer.
"""

from __future__ import annotations

import fractions
import math
import os
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike

from keras_slowfast._video_writer import reencode_video
from keras_slowfast.data._video_io import FpsSlots
from keras_slowfast.data.ava import AVA_FPS
from keras_slowfast.detect.action_detections import ActionDetections

__all__ = ["draw_detections", "write_annotated_video"]


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


def draw_detections(
    frame: np.ndarray,
    boxes: ArrayLike,
    labels: Sequence[Sequence[str]],
    thickness: int | None = None,
) -> np.ndarray:
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


def _labels_by_second(
    detections: ActionDetections,
) -> dict[int, tuple[list[np.ndarray], list[list[str]]]]:
    """`{second: (boxes, label lines)}`: each box's top actions as `"name score"` lines."""
    by_second = {}
    for i, second in enumerate(detections.seconds.tolist()):
        lines = [f"{n} {s:.2f}" for _, n, s in detections.top_actions(i)]
        by_second.setdefault(second, ([], []))
        by_second[second][0].append(detections.boxes[i])
        by_second[second][1].append(lines)
    return by_second


def write_annotated_video(
    video: str | os.PathLike,
    detections: ActionDetections,
    path: str | os.PathLike,
    progress: bool = True,
    timeout: float | None = None,
) -> str:
    """Re-encodes `video` with each second's boxes and top actions drawn, atomically.

    Each frame shows the detections of its nearest keyframe (the frames within half a
    second of it). The output has the input's frames (same count, size and frame rate),
    encoded with H.264 (or MPEG-4 Part 2 when the PyAV build has no H.264 encoder); audio is
    not copied.

    Args:
        video: the input video.
        detections: the :class:`~keras_slowfast.detect.ActionDetections` of that video.
        path: the output file (its extension picks the container, e.g. `.mp4`).
        progress: draw a progress bar on stderr.
        timeout: seconds allowed (`None`: no limit).

    Returns:
        `path`, as a string.

    Example:

    >>> found = keras_slowfast.detect.detect_actions(model, "video.mp4")  # doctest: +SKIP
    >>> write_annotated_video("video.mp4", found, "annotated.mp4")  # doctest: +SKIP
    'annotated.mp4'
    """
    by_second = _labels_by_second(detections)

    def start(container, stream) -> Callable[[np.ndarray, int], np.ndarray]:
        slots = FpsSlots(container, stream, fractions.Fraction(AVA_FPS))
        first_slot = None

        def draw(rgb: np.ndarray, pts: int) -> np.ndarray:
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
