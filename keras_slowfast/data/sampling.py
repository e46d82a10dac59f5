"""Pure index math of PySlowFast's Kinetics and SSv2 sampling (NumPy, no decoding).

Everything here is deterministic given its inputs (random choices take a
`numpy.random.Generator`), so it is tested exactly against the reference
indices. The decoders in `video.py` and `tfrecord.py` only feed it timestamps.
"""

from __future__ import annotations

import dataclasses
import fractions
import math
from collections.abc import Sequence

import numpy as np

from keras_slowfast.frame_indices import slow_pathway_indices, torch_linspace

__all__ = [
    "VideoInfo",
    "frame_indices_from_timestamps",
    "segment_indices",
    "slow_pathway_indices",
    "start_end_index",
    "temporal_sample_indices",
    "torch_linspace",
]

# PySlowFast seeks this many timestamp ticks before the first wanted frame,
# because container seeking is imprecise.
SEEK_MARGIN_PTS = 1024


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container header says about a video stream.

    Attributes:
        fps: average frame rate of the stream.
        header_frames: frame count from the header (0 when unknown).
        duration: stream duration in timestamp ticks (None when unknown).
        height: frame height in pixels.
        width: frame width in pixels.
        frame_rate: the exact frame rate as a `fractions.Fraction` when known
            (`fps` is its float64 value, as PySlowFast uses it).

    Example:

    >>> VideoInfo(fps=30.0, header_frames=300, duration=153600, height=256, width=340).selective
    True
    """

    fps: float
    header_frames: int
    duration: int | None
    height: int = 0
    width: int = 0
    frame_rate: fractions.Fraction | None = None

    @property
    def selective(self) -> bool:
        """Whether a clip can be located by timestamps without decoding everything.

        PySlowFast needs both the stream duration and the frame count; without
        a duration it decodes the whole video. (A zero frame count would make
        PySlowFast fail; it is treated as a missing duration here.)
        """
        return self.duration is not None and self.duration > 0 and self.header_frames > 0


def temporal_sample_indices(
    start: float, end: float, num_samples: int, num_frames: int
) -> np.ndarray:
    """Indices of `num_samples` frames spread over `[start, end]`.

    PySlowFast's `temporal_sampling`: a float32 torch-style linspace, clamped
    to `[0, num_frames - 1]` and truncated toward zero. A clip that runs past
    the last frame therefore repeats that frame.

    Args:
        start: index (possibly fractional) of the first sampled frame.
        end: index (possibly fractional) of the last sampled frame.
        num_samples: number of indices to return.
        num_frames: number of frames available, `>= 1`.

    Returns:
        An int64 array of shape `(num_samples,)`.

    Example:

    >>> temporal_sample_indices(0, 63, 4, num_frames=50).tolist()
    [0, 21, 42, 49]
    """
    if num_frames < 1:
        raise ValueError(f"`num_frames` must be >= 1. Received: num_frames={num_frames}")
    values = torch_linspace(start, end, num_samples)
    values = np.clip(values, np.float32(0), np.float32(num_frames - 1))
    return np.trunc(values).astype(np.int64)


_SEGMENT_MODES = ("train", "val", "test")


def segment_indices(
    num_video_frames: int,
    num_segments: int,
    mode: str = "test",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame indices of PySlowFast's Something-Something v2 clips: one frame per segment.

    The video's `L` frames are cut into `num_segments` equal segments of `(L - 1) / n`
    frames. Segment `i` runs from `round(seg * i)` to `round(seg * (i + 1))` (NumPy
    rounding, halves to even); a test (or val) clip takes the middle frame of each
    segment, `(start + end) // 2`, a training clip a random frame in `[start, end]`
    (both ends included). The whole video is covered whatever its length: a video
    shorter than `num_segments` repeats frames.

    SSv2 frames are the video resampled to 30 fps, so `num_video_frames` is the frame
    count at 30 fps (:func:`keras_slowfast.data.count_frames_at_fps`).

    Args:
        num_video_frames: frames of the video, `>= 1`.
        num_segments: frames per clip (`DATA.NUM_FRAMES`), `>= 1`.
        mode: `"test"` or `"val"` (middle frames) or `"train"` (random frames).
        rng: a `numpy.random.Generator` for `"train"` (default: a fresh unseeded one).

    Returns:
        An int64 array `(num_segments,)` of indices in `[0, num_video_frames)`.

    Raises:
        ValueError: for a non-positive count or an unknown mode.
        TypeError: for a non-integer count.

    Example:

    >>> segment_indices(100, 8).tolist()
    [6, 18, 31, 43, 56, 68, 80, 93]
    >>> segment_indices(3, 4).tolist()
    [0, 0, 1, 2]
    """
    for name, value in (("num_video_frames", num_video_frames), ("num_segments", num_segments)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        if value < 1:
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    if mode not in _SEGMENT_MODES:
        raise ValueError(f"`mode` must be one of {_SEGMENT_MODES}. Received: mode={mode!r}")
    seg = float(num_video_frames - 1) / int(num_segments)
    i = np.arange(int(num_segments) + 1, dtype=np.float64)
    bounds = np.round(seg * i).astype(np.int64)
    start, end = bounds[:-1], bounds[1:]
    if mode != "train":
        return (start + end) // 2
    if rng is None:
        rng = np.random.default_rng()
    return np.asarray(rng.integers(start, end + 1), dtype=np.int64)


def window_clip_size(num_frames, sampling_rate, fps, target_fps=30):
    """Clip span in source frames, as PySlowFast computes it for the decode window.

    `sampling_rate * num_frames / target_fps * fps`, evaluated left to right
    in float64 (PySlowFast evaluates the same quantity in a different order
    when it samples the decoded segment; see `segment_clip_size`).

    Example:

    >>> window_clip_size(32, 2, fps=25)
    53.333333333333336
    """
    return sampling_rate * num_frames / target_fps * fps


def segment_clip_size(num_frames, sampling_rate, fps, target_fps=30):
    """Clip span in source frames, as PySlowFast computes it for temporal sampling.

    `num_frames * sampling_rate * fps / target_fps` in float64.

    Example:

    >>> segment_clip_size(32, 2, fps=30)
    64.0
    """
    return num_frames * sampling_rate * fps / target_fps


def start_end_index(
    video_size: int,
    clip_size: float,
    view_index: int,
    num_views: int,
    rng: np.random.Generator | None = None,
) -> tuple[float, float]:
    """First and last (fractional) frame index of a clip.

    PySlowFast's `get_start_end_idx`: with `delta = max(video_size -
    clip_size, 0)`, a random clip (`view_index == -1`) starts at
    `uniform(0, delta)`; test view `t` of `num_views` starts at
    `delta * t / num_views`. The clip ends at `start + clip_size - 1`.

    Args:
        video_size: number of frames of the video.
        clip_size: clip span in frames (may be fractional).
        view_index: `-1` for a random clip, else the view in `[0, num_views)`.
        num_views: number of uniformly spaced views.
        rng: a `numpy.random.Generator`, used when `view_index == -1`.

    Returns:
        A tuple `(start, end)` of floats.

    Example:

    >>> start_end_index(300, 64.0, 3, 10)
    (70.8, 133.8)
    """
    delta = max(video_size - clip_size, 0)
    if view_index == -1:
        if rng is None:
            rng = np.random.default_rng()
        start = float(rng.uniform(0, delta))
    else:
        start = delta * view_index / num_views
    return start, start + clip_size - 1


def pts_window(start_index, end_index, duration, header_frames):
    """Timestamp window `[start_pts, end_pts]` of a clip, PySlowFast's way.

    The time base per frame is `duration / header_frames` (stream duration in
    timestamp ticks over the frame count of the container header); both
    window ends are truncated to integers.

    Example:

    >>> pts_window(70.8, 133.8, duration=153600, header_frames=300)
    (36249, 68505)
    """
    ticks_per_frame = duration / header_frames
    return int(start_index * ticks_per_frame), int(end_index * ticks_per_frame)


def select_segment(pts, start_pts, end_pts):
    """Frames that PySlowFast keeps for a decode window, in timestamp order.

    Walking the decoded frames in output order, frames before `start_pts` are
    skipped, frames up to `end_pts` are kept, and the first frame after
    `end_pts` is kept too before decoding stops. The kept frames are then
    ordered by timestamp; of frames sharing a timestamp the last one wins.

    Args:
        pts: timestamps of the decoded frames in output order.
        start_pts: first timestamp of the window.
        end_pts: last timestamp of the window (may be `math.inf`).

    Returns:
        An int64 array of positions into `pts`.

    Example:

    >>> select_segment([0, 512, 1024, 1536, 2048], 400, 1100).tolist()
    [1, 2, 3]
    """
    by_pts = {}
    for position, p in enumerate(pts):
        if p < start_pts:
            continue
        by_pts[p] = position
        if p > end_pts:
            break
    return np.array([by_pts[p] for p in sorted(by_pts)], dtype=np.int64)


def plan_clip(
    info,
    num_frames,
    sampling_rate,
    view_index,
    num_views=10,
    target_fps=30,
    rng=None,
):
    """Decode window of one clip: what to seek to and which timestamps bound it.

    Args:
        info: a `VideoInfo` (fps, header frame count, stream duration).
        num_frames: frames per clip.
        sampling_rate: frame stride at `target_fps`.
        view_index: `-1` for a random (training) clip, else the test view.
        num_views: number of test views.
        target_fps: frame rate the sampling rate refers to.
        rng: a `numpy.random.Generator` for random clips.

    Returns:
        A `ClipPlan`.
    """
    if info.selective:
        start, end = start_end_index(
            info.header_frames,
            window_clip_size(num_frames, sampling_rate, info.fps, target_fps),
            view_index,
            num_views,
            rng,
        )
        start_pts, end_pts = pts_window(start, end, info.duration, info.header_frames)
        return ClipPlan(start_pts, end_pts, view_index, selective=True)
    # No duration in the header: PySlowFast decodes the whole stream from
    # timestamp 0 and picks the clip among all decoded frames afterwards.
    return ClipPlan(0, math.inf, view_index, selective=False)


def plan_indices(plan, segment_length, info, num_frames, sampling_rate, num_views, target_fps, rng):
    """Positions within a decoded segment for a planned clip.

    For a selective decode the segment is sampled from its start over one
    clip span; for a whole-video decode the clip is placed among all
    decoded frames (random or uniform by view).
    """
    clip = segment_clip_size(num_frames, sampling_rate, info.fps, target_fps)
    if plan.selective:
        start, end = start_end_index(segment_length, clip, 0, 1)
    else:
        start, end = start_end_index(segment_length, clip, plan.view_index, num_views, rng)
    return temporal_sample_indices(start, end, num_frames, segment_length)


class ClipPlan:
    """Timestamp window of one clip (see `plan_clip`)."""

    __slots__ = ("start_pts", "end_pts", "view_index", "selective")

    def __init__(self, start_pts, end_pts, view_index, selective):
        self.start_pts = start_pts
        self.end_pts = end_pts
        self.view_index = view_index
        self.selective = selective

    @property
    def seek_pts(self):
        return max(self.start_pts - SEEK_MARGIN_PTS, 0)

    def __repr__(self):
        return (
            f"ClipPlan(start_pts={self.start_pts}, end_pts={self.end_pts}, "
            f"view_index={self.view_index}, selective={self.selective})"
        )


def frame_indices_from_timestamps(
    pts: Sequence[int] | np.ndarray,
    info: VideoInfo,
    num_frames: int,
    sampling_rate: int,
    view_index: int,
    num_views: int = 10,
    target_fps: float = 30,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Decode-order indices of a clip, given every decoded frame's timestamp.

    This is the whole PySlowFast model-zoo PyAV path as index math: the clip
    window in timestamps from the header (or the whole video when the header
    has no duration), the frames kept for that window, and the float32
    linspace over them.

    Args:
        pts: timestamps of all decoded frames of the video, in output order.
        info: a `VideoInfo`.
        num_frames: frames per clip.
        sampling_rate: frame stride at `target_fps`.
        view_index: `-1` for a random clip, else the test view.
        num_views: number of test views.
        target_fps: frame rate the sampling rate refers to.
        rng: a `numpy.random.Generator` for random clips.

    Returns:
        An int64 array of `num_frames` indices into `pts`.

    Raises:
        ValueError: if no frame falls in the clip window.

    Example:
        >>> info = VideoInfo(fps=30.0, header_frames=300, duration=153600)  # 10 s
        >>> pts = np.arange(300) * 512  # time base 1/15360
        >>> frame_indices_from_timestamps(pts, info, 8, 8, view_index=0).tolist()
        [0, 9, 18, 27, 36, 45, 54, 63]
        >>> frame_indices_from_timestamps(pts, info, 8, 8, view_index=9).tolist()
        [213, 222, 231, 240, 249, 258, 267, 276]
    """
    plan = plan_clip(info, num_frames, sampling_rate, view_index, num_views, target_fps, rng)
    segment = select_segment(pts, plan.start_pts, plan.end_pts)
    if len(segment) == 0:
        raise ValueError(
            "No decoded frame falls in the clip window "
            f"[{plan.start_pts}, {plan.end_pts}]. Received: view_index={view_index}"
        )
    positions = plan_indices(
        plan, len(segment), info, num_frames, sampling_rate, num_views, target_fps, rng
    )
    return segment[positions]
