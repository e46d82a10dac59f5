"""The windows of a video and their clips, decoded in one sequential pass.

Window `k` is centred at `(k + 0.5) * stride` seconds; its clip's frames are those
:func:`window_frame_indices` gives (PySlowFast's test-clip rule, clamped to the video).
The rules for the windows at the end of a video are those of :mod:`keras_slowfast.streaming`.

Each decoded frame is converted (RGB, resize, crop) only if a pending window uses it and
kept only while one does; a window is handed out as soon as its last frame is decoded and
its interval has ended, so memory does not grow with the video's length.
"""

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from keras_slowfast._checks import check_positive_int, check_positive_number
from keras_slowfast.data._video_io import (
    VideoReadError,
    decoded_frames,
    is_stream_url,
    open_video,
    stream_info,
    to_rgb,
)
from keras_slowfast.data.transforms import resize_short_side, uniform_crop_offset
from keras_slowfast.frame_indices import torch_linspace
from keras_slowfast.progress import ProgressBar
from keras_slowfast.streaming._clip_settings import (
    DEFAULT_READ_TIMEOUT_S,
    check_stream_args,
    resolve_clip,
)

__all__ = ["Window", "window_clips", "window_frame_indices"]


@dataclasses.dataclass(frozen=True, eq=False)
class Window:
    """One scored window of a video.

    Attributes:
        index: the window number `k`, from 0.
        time: the window's centre in seconds, `(k + 0.5) * stride`.
        start: the start of the interval the window labels, `k * stride` seconds.
        end: the end of that interval, `min((k + 1) * stride, N / fps)` seconds.
        frame_indices: int64 `(num_frames,)`: the ordinals (decoder output order, from 0)
            of the stream's frames the clip used, in clip order.
        scores: float32 `(classes,)`: the model's output for the clip (probabilities for
            a classifier; pooled features for a feature model); `None` for a window of
            :func:`window_clips`, which is not scored.

    Example:
        >>> w = Window(0, 0.5, 0.0, 1.0, np.zeros(8, np.int64), np.ones(3, np.float32))
        >>> w.time, w.scores.shape
        (0.5, (3,))
    """

    index: int
    time: float
    start: float
    end: float
    frame_indices: np.ndarray
    scores: np.ndarray | None


def window_frame_indices(
    centre_seconds: float,
    fps: float,
    num_frames: int,
    sampling_rate: int,
    target_fps: float = 30,
    total_frames: int | None = None,
) -> np.ndarray:
    """The stream frame ordinals of the clip centred at `centre_seconds` (pure NumPy).

    PySlowFast's test-clip arithmetic with the clip placed by its centre: the clip spans
    `clip_size = sampling_rate * num_frames / target_fps * fps` native frames (float64),
    starting at `start = centre_seconds * fps - clip_size / 2`; the indices are a float32
    torch-style `linspace(start, start + clip_size - 1, num_frames)`, clamped to
    `[0, total_frames - 1]` and truncated toward zero.

    Args:
        centre_seconds: the clip's centre in seconds.
        fps: the stream's frame rate.
        num_frames: frames per clip.
        sampling_rate: frame stride at `target_fps`.
        target_fps: the frame rate `sampling_rate` refers to.
        total_frames: the video's frame count, or `None` when it is not known yet (then
            only the start is clamped; clamping the end later gives the same result).

    Returns:
        An int64 array `(num_frames,)`.

    Example:
        >>> window_frame_indices(0.5, 30.0, 8, 8, total_frames=300).tolist()
        [0, 0, 1, 10, 19, 28, 37, 46]
        >>> window_frame_indices(9.5, 30.0, 8, 8, total_frames=300).tolist()
        [253, 262, 271, 280, 289, 298, 299, 299]
    """
    fps = check_positive_number("fps", fps)
    num_frames = check_positive_int("num_frames", num_frames)
    sampling_rate = check_positive_int("sampling_rate", sampling_rate)
    target_fps = check_positive_number("target_fps", target_fps)
    if total_frames is not None:
        total_frames = check_positive_int("total_frames", total_frames)
    clip_size = sampling_rate * num_frames / target_fps * fps
    start = float(centre_seconds) * fps - clip_size / 2.0
    values = torch_linspace(start, start + clip_size - 1.0, num_frames)
    upper = np.float32(np.inf) if total_frames is None else np.float32(total_frames - 1)
    return np.trunc(np.clip(values, np.float32(0), upper)).astype(np.int64)


def _convert(rgb: np.ndarray, size: int) -> np.ndarray:
    """An RGB frame with its short side resized to `size`, centre-cropped square."""
    frame = resize_short_side(rgb, size)
    y, x = uniform_crop_offset(frame.shape[0], frame.shape[1], size, 1)
    return np.ascontiguousarray(frame[y : y + size, x : x + size])


class _Pending:
    """A window whose frames are still being decoded."""

    __slots__ = ("index", "indices", "unique", "centre_frame", "end_frame")

    def __init__(
        self, index: int, indices: np.ndarray, centre_frame: float, end_frame: float
    ) -> None:
        self.index = index
        self.indices = indices
        self.unique = np.unique(indices)
        self.centre_frame = centre_frame
        self.end_frame = end_frame


def _live_frames(
    video: str | os.PathLike, container: Any, stream: Any, deadline: float
) -> Iterator[Any]:
    """The decoded frames; a stream URL's I/O error after some frames ends the stream.

    A live source without a length (HTTP without Content-Length, a camera going away) ends
    by closing its connection, which FFmpeg reports as an I/O error: that is the end of the
    stream (with a warning), so the last windows are still completed. Timeouts, errors
    before the first frame and any error in a file still raise.
    """
    frames = decoded_frames(video, container, stream, deadline)
    if not is_stream_url(video):
        yield from frames
        return
    count = 0
    try:
        for frame in frames:
            count += 1
            yield frame
    except VideoReadError as e:
        if count == 0 or "timed out" in str(e):
            raise
        try:  # the frames still in the decoder (reordering delay)
            for frame in stream.codec_context.decode(None):
                count += 1
                yield frame
        except Exception:  # noqa: BLE001 - nothing more to drain
            pass
        warnings.warn(
            f"{video}: the stream ended with an error after {count} frames ({e.reason}); "
            "taking that as the end of the stream (the connection closed).",
            stacklevel=3,
        )


class _WindowQueue:
    """The windows planned and not yet handed out, and the converted frames they use.

    Frames are added in decoder order. A window is planned when its first frame arrives,
    each frame a planned window uses is converted and kept, and a frame is dropped when
    the last window using it is handed out. `counters` holds the statistics that
    :func:`window_clips` documents; `stats` (a dict or `None`) receives a copy of them
    at the start, after each window and when the length is known.
    """

    def __init__(
        self,
        video: str | os.PathLike,
        fps: float,
        stride: float,
        clip: tuple[int, int, float],
        size: int,
        stats: dict | None,
    ) -> None:
        self.video, self.fps, self.stride, self.clip, self.size = video, fps, stride, clip, size
        self.stats = stats
        self.counters = {
            "fps": fps,
            "decoded_frames": 0,
            "converted_frames": 0,
            "max_buffered_frames": 0,
            "windows": 0,
            "total_frames": None,
        }
        self.publish()
        self.store = {}  # ordinal -> converted frame, for frames a pending window uses
        self.needed = {}  # ordinal -> number of pending windows using it
        self.pending = []  # planned windows, by index
        self.next_k = 0  # the next window to plan, and its clip's frames
        self.next_indices = self.indices_of(0)
        self.decoded = 0
        self.last_raw = None  # the last decoded frame, as decoded

    def publish(self) -> None:
        """Copies the counters into `stats`."""
        if self.stats is not None:
            self.stats.update(self.counters)

    def indices_of(self, k: int) -> np.ndarray:
        """The frame ordinals of window `k`'s clip, not clamped at the (unknown) end."""
        return window_frame_indices((k + 0.5) * self.stride, self.fps, *self.clip)

    def plan_next(self) -> None:
        """Plans window `next_k`: the frames of its clip are now needed."""
        k = self.next_k
        centre = (k + 0.5) * self.stride
        p = _Pending(k, self.next_indices, centre * self.fps, (k + 1) * self.stride * self.fps)
        for u in p.unique.tolist():
            self.needed[u] = self.needed.get(u, 0) + 1
        self.pending.append(p)
        self.next_k = k + 1
        self.next_indices = self.indices_of(self.next_k)

    def add(self, frame: Any) -> None:
        """Takes the next decoded frame: plans the windows it starts, keeps it if needed."""
        j = self.decoded
        self.decoded += 1
        self.counters["decoded_frames"] = self.decoded
        while int(self.next_indices[0]) <= j:
            self.plan_next()
        self.last_raw = frame
        if j in self.needed:
            try:
                self.store[j] = _convert(to_rgb(frame), self.size)
            except Exception as e:
                raise VideoReadError(self.video, f"colour conversion failed ({e})") from e
            self.counters["converted_frames"] += 1
            if len(self.store) > self.counters["max_buffered_frames"]:
                self.counters["max_buffered_frames"] = len(self.store)

    def complete_windows(self) -> Iterator[tuple[Window, np.ndarray]]:
        """Hands out, in order, the windows whose last frame is decoded and interval ended."""
        n = self.decoded
        while self.pending:
            p = self.pending[0]
            exists = p.index == 0 or p.centre_frame < n
            if not (exists and int(p.indices[-1]) <= n - 1 and n >= p.end_frame):
                break
            self.pending.pop(0)
            yield self.assemble(p, None)

    def final_windows(self) -> Iterator[tuple[Window, np.ndarray]]:
        """At the end of the video: hands out the pending windows that exist, clamped."""
        total = self.decoded
        self.counters["total_frames"] = total
        self.publish()
        if self.next_k == 0:
            # A video shorter than window 0's clip start: window 0 still exists.
            self.plan_next()
        last_frame = self.store.get(total - 1)
        for p in self.pending:
            if not (p.index == 0 or p.centre_frame < total):
                continue
            if last_frame is None:
                # Indices past the end are clamped to the last frame, which no window may
                # have kept.
                last_frame = _convert(to_rgb(self.last_raw), self.size)
                self.counters["converted_frames"] += 1
            yield self.assemble(p, total, last_frame)
        self.pending.clear()

    def release(self, p: _Pending) -> None:
        """Drops window `p`'s use of its frames, and the frames no other window uses."""
        for u in p.unique.tolist():
            left = self.needed[u] - 1
            if left:
                self.needed[u] = left
            else:
                del self.needed[u]
                self.store.pop(u, None)

    def assemble(
        self, p: _Pending, total: int | None, last_frame: np.ndarray | None = None
    ) -> tuple[Window, np.ndarray]:
        """Window `p` (without scores) and its clip; `total` is the length, once known."""
        indices = p.indices if total is None else np.minimum(p.indices, total - 1)
        store = self.store
        clip = np.stack([store[i] if i in store else last_frame for i in indices.tolist()])
        end = (p.index + 1) * self.stride
        if total is not None:
            end = min(end, total / self.fps)
        self.release(p)
        window = Window(
            index=int(p.index),
            time=(p.index + 0.5) * self.stride,
            start=p.index * self.stride,
            end=float(end),
            frame_indices=indices.astype(np.int64),
            scores=None,
        )
        self.counters["windows"] += 1
        self.publish()
        return window, clip


def _frame_rate(
    video: str | os.PathLike, stream: Any, stride: float, bar: ProgressBar | None
) -> float:
    """The stream's frame rate; the bar's total becomes the window count the header gives."""
    info = stream_info(video, stream)
    expected = None
    if info.header_frames > 0:
        expected = max(1, math.ceil(info.header_frames / (stride * info.fps) - 0.5))
    if bar is not None:
        bar.total = expected
    return info.fps


def stream_clips(
    video: str | os.PathLike,
    *,
    stride: float,
    num_frames: int,
    sampling_rate: int,
    target_fps: float,
    size: int,
    timeout: float | None,
    read_timeout: float,
    stats: dict | None,
    bar: ProgressBar | None,
) -> Iterator[tuple[Window, np.ndarray]]:
    """Yields `(Window without scores, clip)` for each window as soon as it is complete.

    The engine of :func:`window_clips` and :func:`keras_slowfast.streaming.timeline`, with
    checked arguments (see :func:`window_clips`); `bar` (or `None`) gets the number of
    windows the video's header announces as its total.

    Example:
        >>> clips = stream_clips("video.mp4", stride=1.0, num_frames=8, sampling_rate=8,
        ...                      target_fps=30, size=256, timeout=None, read_timeout=60.0,
        ...                      stats=None, bar=None)  # doctest: +SKIP
        >>> window, clip = next(clips)  # doctest: +SKIP
        >>> window.index, clip.shape  # doctest: +SKIP
        (0, (8, 256, 256, 3))
    """
    start_time = time.monotonic()
    deadline = math.inf if timeout is None else start_time + timeout
    open_deadline = min(deadline, start_time + read_timeout)
    container, stream = open_video(video, 1, open_deadline)
    try:
        fps = _frame_rate(video, stream, stride, bar)
        queue = _WindowQueue(
            video, fps, stride, (num_frames, sampling_rate, target_fps), size, stats
        )
        for frame in _live_frames(video, container, stream, deadline):
            queue.add(frame)
            yield from queue.complete_windows()
        if queue.decoded == 0:
            raise VideoReadError(video, "no decodable frame")
        yield from queue.final_windows()
    finally:
        container.close()


def preset_stream_clips(
    video: str | os.PathLike,
    preset: str | None,
    *,
    stride: float,
    num_frames: int | None,
    sampling_rate: int | None,
    crop_size: int | None,
    timeout: float | None,
    read_timeout: float,
    stats: dict | None,
    bar: ProgressBar | None,
) -> Iterator[tuple[Window, np.ndarray]]:
    """:func:`stream_clips` with the clip of `preset` (each setting overridable).

    The clip settings are resolved (and checked) at once, before the video is opened;
    `stride`, `timeout` and `read_timeout` are already checked.

    Example:
        >>> clips = preset_stream_clips("video.mp4", "slowfast_8x8_r50", stride=1.0,
        ...                             num_frames=None, sampling_rate=None, crop_size=None,
        ...                             timeout=None, read_timeout=60.0, stats=None,
        ...                             bar=None)  # doctest: +SKIP
        >>> window, clip = next(clips)  # doctest: +SKIP
        >>> clip.shape  # doctest: +SKIP
        (32, 256, 256, 3)
    """
    num_frames, sampling_rate, target_fps, size = resolve_clip(
        preset, num_frames, sampling_rate, crop_size
    )
    return stream_clips(
        video,
        stride=stride,
        num_frames=num_frames,
        sampling_rate=sampling_rate,
        target_fps=target_fps,
        size=size,
        timeout=timeout,
        read_timeout=read_timeout,
        stats=stats,
        bar=bar,
    )


def window_clips(
    video: str | os.PathLike,
    preset: str | None = None,
    *,
    window_stride_seconds: float = 1.0,
    num_frames: int | None = None,
    sampling_rate: int | None = None,
    crop_size: int | None = None,
    timeout: float | None = None,
    read_timeout: float = DEFAULT_READ_TIMEOUT_S,
    stats: dict | None = None,
) -> Iterator[tuple[Window, np.ndarray]]:
    """The windows of a video and their clips, without a model (what :func:`timeline` scores).

    Args:
        video, preset, window_stride_seconds, num_frames, sampling_rate, crop_size,
            timeout, read_timeout, stats: as for :func:`timeline`.

    Yields:
        `(window, clip)`: a :class:`Window` whose `scores` is `None`, and its uint8 clip
        `(num_frames, size, size, 3)`, as soon as the clip's frames are decoded.

    Example:
        >>> for window, clip in window_clips("video.mp4", "slowfast_8x8_r50"):  # doctest: +SKIP
        ...     print(window.time, window.frame_indices[:3], clip.shape)
        0.5 [0 0 0] (32, 256, 256, 3)
    """
    stride, timeout, read_timeout = check_stream_args(
        video, window_stride_seconds, timeout, read_timeout, stats
    )
    return preset_stream_clips(
        video,
        preset,
        stride=stride,
        num_frames=num_frames,
        sampling_rate=sampling_rate,
        crop_size=crop_size,
        timeout=timeout,
        read_timeout=read_timeout,
        stats=stats,
        bar=None,
    )
