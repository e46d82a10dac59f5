"""Scoring a video window by window: :func:`timeline`, in constant memory.

The windows and their clips come from :mod:`keras_slowfast.streaming.windows`; here they
are batched, scored with the model's `predict_on_batch` and handed out in time order.
"""

import dataclasses
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from keras_slowfast._checks import check_positive_int
from keras_slowfast.progress import ProgressBar
from keras_slowfast.streaming._clip_settings import (
    DEFAULT_READ_TIMEOUT_S,
    check_stream_args,
)
from keras_slowfast.streaming.windows import Window, preset_stream_clips

if TYPE_CHECKING:
    import keras

__all__ = ["timeline"]


def _scored(
    model: "keras.Model",
    clips: Iterator[tuple[Window, np.ndarray]],
    batch_size: int,
    bar: ProgressBar,
) -> Iterator[Window]:
    """Scores `(window, clip)` items in batches; yields the windows with their scores."""
    ready = []

    def flush() -> list[Window]:
        batch = np.stack([clip for _, clip in ready])
        out = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(ready):
            raise ValueError(
                "The model must return one vector per clip, shape (batch, classes). "
                f"Received: output shape {out.shape}"
            )
        windows = [dataclasses.replace(w, scores=row.copy()) for (w, _), row in zip(ready, out)]
        ready.clear()
        bar.update(len(windows))
        return windows

    try:
        for item in clips:
            ready.append(item)
            if len(ready) >= batch_size:
                yield from flush()
        if ready:
            yield from flush()
    finally:
        clips.close()
        bar.close()


def timeline(
    model: "keras.Model",
    video: str | os.PathLike,
    preset: str | None = None,
    *,
    window_stride_seconds: float = 1.0,
    num_frames: int | None = None,
    sampling_rate: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
    timeout: float | None = None,
    read_timeout: float = DEFAULT_READ_TIMEOUT_S,
    crop_size: int | None = None,
    stats: dict | None = None,
) -> Iterator[Window]:
    """Scores a video window by window; a generator of :class:`Window`, in time order.

    The video is decoded once, front to back (a file, a stream URL or a device PyAV
    opens), and windows come out as soon as their clips are decoded and a batch is full,
    so this works on live sources and on videos of any length in constant memory (see
    :mod:`keras_slowfast.streaming` for the exact window and clamping rules).

    Args:
        model: a model taking uint8 RGB clips `(batch, num_frames, size, size, 3)` and
            returning `(batch, classes)` (a classifier; or a feature model, see
            :func:`feature_model`). Called with `predict_on_batch`.
        video: path of the video file, or a stream URL (`http://...`, `rtsp://...`).
        preset: the model's preset name or architecture key: gives the clip (`num_frames`,
            `sampling_rate`, `target_fps`) and the crop size (its `test_crop_size`).
            Without it give `num_frames` and `sampling_rate` (crop 256, 30 fps).
        window_stride_seconds: seconds between window centres (and each window's length).
        num_frames: frames per clip (default: the preset's).
        sampling_rate: frame stride at `target_fps` (default: the preset's).
        batch_size: windows per model call.
        progress: draw a progress bar on stderr.
        timeout: seconds allowed for the whole video, or `None` (no limit: a live source).
        read_timeout: seconds one blocking read (opening, a packet) may wait; a stalled
            source then raises :class:`keras_slowfast.data.VideoReadError` instead of
            hanging.
        crop_size: short side and crop size (default: the preset's `test_crop_size`).
        stats: an optional dict updated with counters: `decoded_frames`,
            `converted_frames`, `max_buffered_frames`, `windows`, `fps`, `total_frames`.

    Yields:
        :class:`Window` objects with `index`, `time`, `start`, `end`, `frame_indices`
        and `scores`.

    Raises:
        ValueError: for a bad argument (naming it).
        keras_slowfast.data.VideoReadError: when the video cannot be opened or decoded,
            or a timeout passes.

    Example:
        >>> model = keras_slowfast.SlowFastR50(weights="k400")  # doctest: +SKIP
        >>> for w in timeline(model, "video.mp4", "slowfast_8x8_r50"):  # doctest: +SKIP
        ...     print(f"{w.start:6.1f}-{w.end:6.1f} s  class {w.scores.argmax()}")
    """
    stride, timeout, read_timeout = check_stream_args(
        video, window_stride_seconds, timeout, read_timeout, stats
    )
    batch_size = check_positive_int("batch_size", batch_size)
    if not hasattr(model, "predict_on_batch"):
        raise TypeError(f"`model` must be a Keras model. Received: model={model!r}")
    bar = ProgressBar(None, os.path.basename(str(video)), unit="windows", enabled=bool(progress))
    clips = preset_stream_clips(
        video,
        preset,
        stride=stride,
        num_frames=num_frames,
        sampling_rate=sampling_rate,
        crop_size=crop_size,
        timeout=timeout,
        read_timeout=read_timeout,
        stats=stats,
        bar=bar,
    )
    return _scored(model, clips, batch_size, bar)
