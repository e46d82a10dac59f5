"""PyAV decoding that picks exactly the frames of PySlowFast's model-zoo path.

The clip window is located from the container header (timestamps), the
stream is decoded forward from the keyframe before the window, and only the
frames that end up in a clip are converted to RGB. In test mode one pass over
the video serves every temporal view.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from keras_slowfast._checks import check_positive_int
from keras_slowfast.data import sampling
from keras_slowfast.data._video_io import (
    DEFAULT_TIMEOUT_S,
    VideoReadError,
    checked_pts,
    decoded_frames,
    is_stream_url,
    open_video,
    seek,
    stream_info,
    to_rgb,
)
from keras_slowfast.data.sampling import VideoInfo

__all__ = [
    "DecodeErrorCounter",
    "VideoInfo",
    "VideoReadError",
    "clip_frame_indices",
    "decode_all_frames",
    "decode_timestamps",
    "is_stream_url",
    "probe_video",
    "read_clip",
    "read_test_views",
]

# Views further apart than this many frames are reached by seeking instead of
# decoding through the gap (longer than the usual 250-frame keyframe interval).
_SEEK_GAP_FRAMES = 300


def probe_video(video_path: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT_S) -> VideoInfo:
    """Reads the stream header of a video (no decoding).

    Args:
        video_path: path of the video file or a stream URL.
        timeout: seconds after which opening is abandoned.

    Returns:
        A `VideoInfo` with the frame rate, header frame count, duration in
        timestamp ticks and frame size.

    Raises:
        VideoReadError: (a `ValueError`) if the file is missing, empty, not a
            media file, or has no video stream.

    Example:

    >>> import os
    >>> video = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data",
    ...                      "sample.mp4")  # the repository's 10 s, 30 fps, 340x256 video
    >>> info = probe_video(video)
    >>> info.fps, info.header_frames
    (30.0, 300)
    """
    container, stream = open_video(video_path, 1, time.monotonic() + timeout)
    try:
        return stream_info(video_path, stream)
    finally:
        container.close()


def _group_plans(plans, info):
    """Splits windows (sorted by start) into runs decoded after a single seek."""
    gap = _SEEK_GAP_FRAMES * info.duration / info.header_frames
    groups = []
    for plan in plans:
        if groups and plan.seek_pts <= max(p.end_pts for p in groups[-1]) + gap:
            groups[-1].append(plan)
        else:
            groups.append([plan])
    return groups


def _collect_windows(path, container, stream, plans, info, deadline, on_segment):
    """Streams the frames PySlowFast keeps for each window.

    `on_segment(plan, items)` is called as soon as a window is complete, with
    its frames as `(key, frame)` sorted by timestamp (`key` identifies a
    decoded frame across windows), so that frames no window needs any more
    are released while decoding goes on.
    """
    ordinal = 0
    for group in _group_plans(sorted(plans, key=lambda p: p.start_pts), info):
        seek(path, container, stream, group[0].seek_pts, deadline)
        segments = {id(p): {} for p in group}
        open_plans = list(group)

        def close(plan, segments=segments):
            segment = segments.pop(id(plan))
            on_segment(plan, [segment[p] for p in sorted(segment)])

        for frame in decoded_frames(path, container, stream, deadline):
            pts = checked_pts(path, frame)
            key = ordinal
            ordinal += 1
            still_open = []
            for plan in open_plans:
                if pts >= plan.start_pts:
                    # Of frames sharing a timestamp the last one wins.
                    segments[id(plan)][pts] = (key, frame)
                    if pts > plan.end_pts:
                        close(plan)
                        continue
                still_open.append(plan)
            open_plans = still_open
            if not open_plans:
                break
        for plan in open_plans:  # the video ended inside these windows
            close(plan)


class _FrameStore:
    """Converts each chosen frame once and remembers its position."""

    def __init__(self, path, convert):
        self._path = path
        self._convert = convert
        self._position = {}
        self.frames = []

    def add(self, key, frame):
        position = self._position.get(key)
        if position is None:
            try:
                converted = self._convert(to_rgb(frame))
            except Exception as e:
                raise VideoReadError(self._path, f"colour conversion failed ({e})") from e
            position = self._position[key] = len(self.frames)
            self.frames.append(converted)
        return position


def _decode_all_timestamps(path, container, stream, deadline):
    seek(path, container, stream, 0, deadline)
    return [checked_pts(path, f) for f in decoded_frames(path, container, stream, deadline)]


def _frames_at(path, container, stream, ordinals, deadline):
    """Re-decodes from the start and returns the frames at the given output ordinals."""
    wanted = set(int(o) for o in ordinals)
    last = max(wanted)
    found = {}
    seek(path, container, stream, 0, deadline)
    for ordinal, frame in enumerate(decoded_frames(path, container, stream, deadline)):
        if ordinal in wanted:
            found[ordinal] = frame
        if ordinal >= last:
            break
    if len(found) != len(wanted):
        raise VideoReadError(path, "the second decoding pass returned fewer frames")
    return found


def _read_clips(
    path,
    view_indices,
    num_frames,
    sampling_rate,
    num_views,
    target_fps,
    rng,
    decode_threads,
    timeout,
    convert,
):
    """Decodes the clips `view_indices` (-1 = random) of one video in one pass.

    Returns `(info, frames, table)`: the converted unique frames (as returned
    by `convert`) and a `(len(view_indices), num_frames)` table of positions
    into them.
    """
    deadline = time.monotonic() + timeout
    container, stream = open_video(path, decode_threads, deadline)
    try:
        info = stream_info(path, stream)
        plans = [
            sampling.plan_clip(info, num_frames, sampling_rate, v, num_views, target_fps, rng)
            for v in view_indices
        ]
        store = _FrameStore(path, convert)
        table = np.empty((len(plans), num_frames), dtype=np.int32)
        if info.selective:
            rows = {id(plan): row for row, plan in enumerate(plans)}

            def on_segment(plan, items):
                if not items:
                    raise VideoReadError(
                        path,
                        f"no frame in the timestamp window [{plan.start_pts}, {plan.end_pts}] "
                        "(the file may be truncated or its header wrong)",
                    )
                positions = sampling.plan_indices(
                    plan, len(items), info, num_frames, sampling_rate, num_views, target_fps, rng
                )
                table[rows[id(plan)]] = [store.add(*items[i]) for i in positions]

            _collect_windows(path, container, stream, plans, info, deadline, on_segment)
        else:
            all_pts = _decode_all_timestamps(path, container, stream, deadline)
            segment = sampling.select_segment(all_pts, 0, math.inf)
            if len(segment) == 0:
                raise VideoReadError(path, "no decodable frame")
            ordinal_lists = [
                segment[
                    sampling.plan_indices(
                        plan,
                        len(segment),
                        info,
                        num_frames,
                        sampling_rate,
                        num_views,
                        target_fps,
                        rng,
                    )
                ]
                for plan in plans
            ]
            by_ordinal = _frames_at(
                path, container, stream, np.concatenate(ordinal_lists), deadline
            )
            for row, ordinals in enumerate(ordinal_lists):
                table[row] = [store.add(int(o), by_ordinal[int(o)]) for o in ordinals]
        return info, np.stack(store.frames), table
    finally:
        container.close()


def _check_clip_args(num_frames, sampling_rate, num_views, target_fps):
    check_positive_int("num_frames", num_frames)
    check_positive_int("sampling_rate", sampling_rate)
    check_positive_int("num_views", num_views)
    if not target_fps or target_fps <= 0:
        raise ValueError(f"`target_fps` must be positive. Received: target_fps={target_fps!r}")


def read_clip(
    video_path: str | os.PathLike,
    num_frames: int,
    sampling_rate: int,
    view_index: int = -1,
    num_views: int = 10,
    target_fps: float = 30,
    rng: np.random.Generator | None = None,
    decode_threads: int = 1,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> np.ndarray:
    """Decodes one clip as PySlowFast's PyAV path would (no spatial transform).

    Args:
        video_path: path of the video file or a stream URL (`http://...`).
        num_frames: frames in the clip.
        sampling_rate: frame stride at `target_fps`.
        view_index: `-1` for a random temporal position (training), else the
            uniform test view in `[0, num_views)`.
        num_views: number of uniform test views.
        target_fps: frame rate the sampling rate refers to (30 in PySlowFast).
        rng: a `numpy.random.Generator` for the random position.
        decode_threads: FFmpeg decoding threads (1 is the most efficient per
            core when many videos are decoded in parallel).
        timeout: seconds after which decoding is abandoned; a stalled read is
            abandoned too (see `VideoReadError`).

    Returns:
        A uint8 array `(num_frames, height, width, 3)` of RGB frames.

    Raises:
        VideoReadError: (a `ValueError` naming the file) if the video cannot be
            decoded.

    Example:

    >>> import os
    >>> video = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data",
    ...                      "sample.mp4")  # the repository's 10 s, 30 fps, 340x256 video
    >>> clip = read_clip(video, num_frames=32, sampling_rate=2, view_index=0)
    >>> clip.shape
    (32, 256, 340, 3)
    """
    _check_clip_args(num_frames, sampling_rate, num_views, target_fps)
    if not -1 <= view_index < num_views:
        raise ValueError(
            f"`view_index` must be -1 or in [0, {num_views}). Received: view_index={view_index}"
        )
    _, frames, table = _read_clips(
        video_path,
        [view_index],
        num_frames,
        sampling_rate,
        num_views,
        target_fps,
        rng,
        decode_threads,
        timeout,
        convert=lambda x: x,
    )
    return frames[table[0]]


def read_test_views(
    video_path: str | os.PathLike,
    num_frames: int,
    sampling_rate: int,
    num_views: int = 10,
    target_fps: float = 30,
    convert: Callable[[np.ndarray], np.ndarray] | None = None,
    decode_threads: int = 1,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> tuple[np.ndarray, np.ndarray]:
    """Decodes every uniform test view of a video in a single pass.

    Each frame used by any view is decoded and converted once.

    Args:
        video_path: path of the video file or a stream URL (`http://...`).
        num_frames: frames per clip.
        sampling_rate: frame stride at `target_fps`.
        num_views: number of uniform temporal views.
        target_fps: frame rate the sampling rate refers to.
        convert: optional function applied to each RGB frame (e.g. a resize).
        decode_threads: FFmpeg decoding threads.
        timeout: seconds after which decoding is abandoned; a stalled read is
            abandoned too (see `VideoReadError`).

    Returns:
        `(frames, table)`: the unique frames `(U, H, W, 3)` and an int32 table
        `(num_views, num_frames)` so that view `t` is `frames[table[t]]`.

    Raises:
        VideoReadError: (a `ValueError` naming the file) if the video cannot be
            decoded or a view has no frame.

    Example:

    >>> import os
    >>> video = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data",
    ...                      "sample.mp4")  # the repository's 10 s, 30 fps, 340x256 video
    >>> frames, table = read_test_views(video, 32, 2)
    >>> frames[table[3]].shape
    (32, 256, 340, 3)
    """
    _check_clip_args(num_frames, sampling_rate, num_views, target_fps)
    _, frames, table = _read_clips(
        video_path,
        list(range(num_views)),
        num_frames,
        sampling_rate,
        num_views,
        target_fps,
        None,
        decode_threads,
        timeout,
        convert=convert or (lambda x: x),
    )
    return frames, table


def decode_all_frames(
    video_path: str | os.PathLike,
    convert: Callable[[np.ndarray], Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    decode_threads: int = 1,
) -> tuple[VideoInfo, list[int], list[Any]]:
    """Decodes every frame of a video, in decoder output order.

    Args:
        video_path: path of the video file or a stream URL (`http://...`).
        convert: optional function applied to each RGB frame (its result is
            stored instead of the frame, e.g. JPEG bytes).
        timeout: seconds after which decoding is abandoned; a stalled read is
            abandoned too (see `VideoReadError`).
        decode_threads: FFmpeg decoding threads.

    Returns:
        `(info, pts, frames)`: a `VideoInfo`, the frame timestamps and the
        (converted) frames.

    Example:

    >>> import os
    >>> video = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data",
    ...                      "sample.mp4")  # the repository's 10 s, 30 fps, 340x256 video
    >>> info, pts, frames = decode_all_frames(video)
    >>> frames[0].shape
    (256, 340, 3)
    """
    convert = convert or (lambda x: x)
    deadline = time.monotonic() + timeout
    container, stream = open_video(video_path, decode_threads, deadline)
    try:
        info = stream_info(video_path, stream)
        pts, frames = [], []
        for frame in decoded_frames(video_path, container, stream, deadline):
            pts.append(checked_pts(video_path, frame))
            frames.append(convert(to_rgb(frame)))
    finally:
        container.close()
    if not pts:
        raise VideoReadError(video_path, "no decodable frame")
    return info, pts, frames


def decode_timestamps(
    video_path: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT_S
) -> tuple[VideoInfo, list[int]]:
    """Decodes a whole video stream and returns its header info and frame timestamps.

    Args:
        video_path: path of the video file or a stream URL (`http://...`).
        timeout: seconds after which decoding is abandoned; a stalled read is
            abandoned too (see `VideoReadError`).

    Returns:
        `(info, pts)`: a `VideoInfo` and the list of frame timestamps in
        decoder output order.

    Example:

    >>> import os
    >>> video = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data",
    ...                      "sample.mp4")  # the repository's 10 s, 30 fps, 340x256 video
    >>> info, pts = decode_timestamps(video)
    >>> len(pts)
    300
    """
    deadline = time.monotonic() + timeout
    container, stream = open_video(video_path, 1, deadline)
    try:
        info = stream_info(video_path, stream)
        pts = [
            checked_pts(video_path, f)
            for f in decoded_frames(video_path, container, stream, deadline)
        ]
    finally:
        container.close()
    if not pts:
        raise VideoReadError(video_path, "no decodable frame")
    return info, pts


def clip_frame_indices(
    video_path: str | os.PathLike,
    num_frames: int,
    sampling_rate: int,
    view: int,
    num_views: int = 10,
    target_fps: float = 30,
) -> list[int]:
    """Decode-order indices of the frames a test view uses.

    These are the frames the datasets yield for temporal view `view`
    (0-based position of each frame among all frames the decoder outputs
    from the start of the video). They equal the indices PySlowFast's
    model-zoo PyAV path picks.

    Args:
        video_path: path of the video file or a stream URL (`http://...`).
        num_frames: frames per clip.
        sampling_rate: frame stride at `target_fps`.
        view: temporal view in `[0, num_views)`.
        num_views: number of uniform temporal views.
        target_fps: frame rate the sampling rate refers to.

    Returns:
        A list of `num_frames` ints.

    Example:

    >>> import os
    >>> video = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data",
    ...                      "sample.mp4")  # the repository's 10 s, 30 fps, 340x256 video
    >>> clip_frame_indices(video, num_frames=8, sampling_rate=8, view=0)
    [0, 9, 18, 27, 36, 45, 54, 63]
    """
    _check_clip_args(num_frames, sampling_rate, num_views, target_fps)
    if not isinstance(view, (int, np.integer)) or not 0 <= view < num_views:
        raise ValueError(f"`view` must be in [0, {num_views}). Received: view={view!r}")
    info, pts = decode_timestamps(video_path)
    try:
        indices = sampling.frame_indices_from_timestamps(
            pts, info, num_frames, sampling_rate, int(view), num_views, target_fps
        )
    except ValueError as e:
        raise VideoReadError(video_path, f"no frame in the clip window ({e})") from e
    return [int(i) for i in indices]


class DecodeErrorCounter:
    """Thread-safe count of the videos a dataset skipped (`on_error="skip"`).

    Attributes:
        count: number of skipped videos so far.
        failures: list of `(path, reason)` of the skipped videos (the first
            `max_failures` ones).

    Example:

    >>> counter = DecodeErrorCounter()
    >>> counter.record("broken.mp4", "file is empty")
    >>> counter.count, counter.failures
    (1, [('broken.mp4', 'file is empty')])
    """

    def __init__(self, max_failures: int = 1000) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._failures = []
        self._max_failures = max_failures

    def record(self, path: str | os.PathLike, reason: str) -> None:
        """Counts one skipped video."""
        with self._lock:
            self._count += 1
            if len(self._failures) < self._max_failures:
                self._failures.append((str(path), str(reason)))

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def failures(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._failures)

    def reset(self) -> None:
        """Sets the count back to zero."""
        with self._lock:
            self._count = 0
            self._failures = []

    def __repr__(self):
        return f"DecodeErrorCounter(count={self.count})"
