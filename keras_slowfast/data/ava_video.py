"""Frames of a video resampled to a constant rate (30 fps for AVA), decoded with PyAV.

AVA's frame folders hold a movie's frames at 30 fps, extracted with FFmpeg
(`ffmpeg -i VIDEO -r 30 ...`), whatever the rate of the movie. The functions
here give the same frames straight from a video file, so that an AVA-style
dataset can be read from videos, and they are what the frame extractor writes.

Resampling rule (FFmpeg's `fps` filter with its default `round=near`):

- each decoded frame `k` gets the output slot `q_k = round(t_k * fps)`, where
  `t_k` is its timestamp in seconds from the start of the file (the
  container's start time subtracted, as the `ffmpeg` command does) and
  `round` goes to the nearest integer, halves away from zero;
- the output starts at slot `q_0` of the first decoded frame; output frame
  `j` fills slot `q_0 + j` with the last decoded frame whose slot is at most
  `q_0 + j` (of frames that share a slot the last one is kept, so a frame is
  dropped when the next one is due no later; a frame is repeated until the
  next one is due);
- the output ends before slot `round(t_end * fps)`, where `t_end` is the end
  of the last frame (its timestamp plus its duration).

So a 30 fps video maps to itself, and a 25 fps video shows one frame in five
twice: sources `0, 1, 2, 2, 3, 4, 5, 6, 7, 7, ...`. Frame `j` is the picture
shown at time `(q_0 + j) / fps`, i.e. `j / fps` when the video starts at the
start of the file. (FFmpeg's command-line `-r` conversion runs its own sync
code with a tolerance of about one frame; it agrees with this rule on
ordinary constant-rate videos such as 25 -> 30 fps, but may pick a
neighbouring frame elsewhere.)
"""

from __future__ import annotations

import fractions
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from keras_slowfast.data._video_io import (
    DEFAULT_TIMEOUT_S,
    FpsSlots,
    VideoReadError,
    check_fps,
    check_timeout,
    checked_pts,
    decode_failure,
    decoded_frames,
    open_video,
    seek,
    stream_info,
    to_rgb,
)

__all__ = ["count_frames_at_fps", "iter_frames_at_fps", "read_frames_at_fps"]

# Wanted frames further than this from the start of the video are reached by
# seeking to the keyframe before them rather than by decoding from the start.
_SEEK_AFTER_S = 2.0


def _resample(decoded, slots, next_slot=None):
    """Yields `(slot, key, frame)` for every output slot from decoded `(key, frame)` items.

    This is the `fps` filter's loop: the current frame is emitted for each slot
    until the next decoded frame is due, then replaced by it. `next_slot=None`
    starts at the first frame's slot.
    """
    current = None
    for key, frame in decoded:
        q = slots.slot(frame.pts)
        if current is None:
            current = (key, frame)
            if next_slot is None:
                next_slot = q
            continue
        while q > next_slot:
            yield next_slot, current[0], current[1]
            next_slot += 1
        current = (key, frame)
    if current is None:
        return
    end = slots.end_slot(current[1].pts, current[1].duration)
    while next_slot < end:
        yield next_slot, current[0], current[1]
        next_slot += 1


def _checked_frames(path, container, stream, deadline):
    """Decoded frames as `(ordinal, frame)`, each with a timestamp."""
    for ordinal, frame in enumerate(decoded_frames(path, container, stream, deadline)):
        checked_pts(path, frame)
        yield ordinal, frame


def count_frames_at_fps(
    video_path: str | os.PathLike,
    fps: float | fractions.Fraction = 30,
    timeout: float | None = DEFAULT_TIMEOUT_S,
) -> int:
    """How many frames a video has when resampled to `fps`.

    One pass over the container's packets: the first frame is decoded (for
    its timestamp) and the end is the latest packet end, without decoding the
    rest. See the module docstring for the resampling rule.

    Args:
        video_path: path of the video file.
        fps: the output frame rate (30 for AVA).
        timeout: seconds after which reading is abandoned (`None`: no limit).

    Returns:
        The number of frames, as `read_frames_at_fps` and `iter_frames_at_fps`
        index them.

    Raises:
        VideoReadError: (a `ValueError` naming the file) if the file is
            missing, not a video, has no video stream or no decodable frame.
        ValueError: if `fps` or `timeout` is not a positive number.

    Example:

    >>> import os
    >>> video = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data",
    ...                      "sample.mp4")  # the repository's 10 s, 30 fps, 340x256 video
    >>> count_frames_at_fps(video)  # 10 s at 30 fps
    300
    >>> count_frames_at_fps(video, fps=25)
    250
    """
    fps = check_fps(fps)
    deadline = time.monotonic() + check_timeout(timeout)
    container, stream = open_video(video_path, 1, deadline)
    try:
        stream_info(video_path, stream)
        slots = FpsSlots(container, stream, fps)
        first = None
        end = None
        timestamps = True
        try:
            for packet in container.demux(stream):
                if time.monotonic() > deadline:
                    raise VideoReadError(video_path, "reading timed out")
                if first is None:
                    # The empty packet at the end flushes the decoder.
                    first = next(iter(packet.decode()), None)
                if packet.size == 0 or packet.is_discard:
                    continue
                if packet.pts is None:
                    timestamps = False
                    break
                packet_end = slots.end_slot(packet.pts, packet.duration)
                end = packet_end if end is None else max(end, packet_end)
        except VideoReadError:
            raise
        except Exception as e:
            raise decode_failure(video_path, "reading the video", e, deadline) from e
        if timestamps:
            if first is None:
                raise VideoReadError(video_path, "no decodable frame")
            first_slot = slots.slot(checked_pts(video_path, first))
    finally:
        container.close()
    if not timestamps:  # packets without timestamps: decode everything
        return sum(1 for _ in _iter_slots(video_path, fps, deadline, 1))
    return max(0, end - first_slot)


def _iter_slots(video_path, fps, deadline, decode_threads):
    """Yields `(index, key, frame)` of every output frame; `key` identifies the decoded frame."""
    container, stream = open_video(video_path, decode_threads, deadline)
    try:
        stream_info(video_path, stream)
        slots = FpsSlots(container, stream, fps)
        first_slot = None
        decoded = _checked_frames(video_path, container, stream, deadline)
        for slot, key, frame in _resample(decoded, slots):
            if first_slot is None:
                first_slot = slot
            yield slot - first_slot, key, frame
        if first_slot is None:
            raise VideoReadError(video_path, "no decodable frame")
    finally:
        container.close()


def iter_frames_at_fps(
    video_path: str | os.PathLike,
    fps: float | fractions.Fraction = 30,
    timeout: float | None = None,
    convert: Callable[[np.ndarray], Any] | None = None,
    decode_threads: int = 1,
) -> Iterator[tuple[int, Any]]:
    """Yields every frame of a video resampled to `fps`, in order, as `(index, frame)`.

    One decoding pass; each decoded frame is converted once, and a repeated
    frame is the same object again. See the module docstring for the
    resampling rule.

    Args:
        video_path: path of the video file.
        fps: the output frame rate (30 for AVA).
        timeout: seconds after which decoding is abandoned (`None`: no limit).
        convert: optional function applied to each RGB frame (its result is
            yielded instead, e.g. JPEG bytes).
        decode_threads: FFmpeg decoding threads.

    Yields:
        `(index, frame)`: the 0-based output index and a uint8
        `(height, width, 3)` RGB array (or what `convert` returned).

    Raises:
        VideoReadError: (a `ValueError` naming the file) if the video cannot
            be decoded.

    Example:

    >>> import os
    >>> video = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data",
    ...                      "sample.mp4")  # the repository's 10 s, 30 fps, 340x256 video
    >>> frames = [f for _, f in iter_frames_at_fps(video)]
    >>> len(frames), frames[0].shape
    (300, (256, 340, 3))
    """
    fps = check_fps(fps)
    deadline = time.monotonic() + check_timeout(timeout)
    convert = convert or (lambda x: x)
    last_key, last_value = None, None
    for index, key, frame in _iter_slots(video_path, fps, deadline, decode_threads):
        if key != last_key:
            try:
                last_value = convert(to_rgb(frame))
            except Exception as e:
                raise VideoReadError(video_path, f"frame conversion failed ({e})") from e
            last_key = key
        yield index, last_value


def _check_indices(frame_indices):
    try:
        indices = np.asarray(frame_indices)
    except Exception as e:
        raise TypeError(
            "`frame_indices` must be a sequence of integers. "
            f"Received: frame_indices={frame_indices!r}"
        ) from e
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
        raise TypeError(
            "`frame_indices` must be a 1-D sequence of integers. "
            f"Received: frame_indices={frame_indices!r}"
        )
    indices = indices.astype(np.int64)
    if indices.size and indices.min() < 0:
        raise ValueError(
            "`frame_indices` must be non-negative (clamp them to the video first). "
            f"Received: frame_indices={frame_indices!r}"
        )
    return indices


class _NotSeekable(Exception):
    """The frames after a seek cannot be trusted to give the exact resampling."""


def _collect(path, decoded, slots, next_slot, wanted_slots, monotonic):
    """Converts the frames of the wanted slots; returns `{slot: position}` and the frames."""
    last_wanted = max(wanted_slots)
    store = {}
    frames = []
    by_slot = {}
    previous_q = None

    def checked(items):
        nonlocal previous_q
        for key, frame in items:
            q = slots.slot(frame.pts)
            if monotonic and previous_q is not None and q < previous_q:
                raise _NotSeekable()
            previous_q = q
            yield key, frame

    for slot, key, frame in _resample(checked(decoded), slots, next_slot):
        if slot in wanted_slots:
            position = store.get(key)
            if position is None:
                try:
                    frames.append(to_rgb(frame))
                except Exception as e:
                    raise VideoReadError(path, f"colour conversion failed ({e})") from e
                position = store[key] = len(frames) - 1
            by_slot[slot] = position
        if slot >= last_wanted:
            break
    return by_slot, frames


def read_frames_at_fps(
    video_path: str | os.PathLike,
    frame_indices: Sequence[int] | np.ndarray,
    fps: float | fractions.Fraction = 30,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    decode_threads: int = 1,
) -> np.ndarray:
    """Decodes the frames at `frame_indices` of a video resampled to `fps`.

    The decoder seeks to the keyframe before the first wanted frame and stops
    after the last one; only the wanted frames are converted and kept. See
    the module docstring for the resampling rule.

    Args:
        video_path: path of the video file.
        frame_indices: 0-based indices into the resampled frames, in any
            order, repeats allowed. Indices must lie in
            `[0, count_frames_at_fps(video_path, fps))`: clamping is the
            caller's.
        fps: the output frame rate (30 for AVA).
        timeout: seconds after which decoding is abandoned (`None`: no limit).
        decode_threads: FFmpeg decoding threads.

    Returns:
        A uint8 array `(len(frame_indices), height, width, 3)` of RGB frames.

    Raises:
        VideoReadError: (a `ValueError` naming the file) if the file is
            missing, not a video, has no video stream, cannot be decoded, or
            ends before an index.
        ValueError: if an index is negative, or `fps` / `timeout` is not a
            positive number.
        TypeError: if `frame_indices` is not a 1-D sequence of integers.

    Example:

    >>> import os
    >>> video = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data",
    ...                      "sample.mp4")  # the repository's 10 s, 30 fps, 340x256 video
    >>> clip = read_frames_at_fps(video, range(0, 64, 2))
    >>> clip.shape
    (32, 256, 340, 3)
    """
    fps = check_fps(fps)
    indices = _check_indices(frame_indices)
    deadline = time.monotonic() + check_timeout(timeout)
    container, stream = open_video(video_path, decode_threads, deadline)
    try:
        stream_info(video_path, stream)
        slots = FpsSlots(container, stream, fps)
        decoded = _checked_frames(video_path, container, stream, deadline)
        first = next(decoded, None)
        if first is None:
            raise VideoReadError(video_path, "no decodable frame")
        first_slot = slots.slot(first[1].pts)
        if indices.size == 0:
            height, width = first[1].height, first[1].width
            return np.zeros((0, height, width, 3), np.uint8)
        wanted = {first_slot + int(i) for i in np.unique(indices)}
        if fractions.Fraction(min(wanted) - first_slot) / fps > _SEEK_AFTER_S:
            result = _read_after_seek(video_path, container, stream, slots, wanted, deadline)
            if result is None:  # back to the start
                seek(video_path, container, stream, stream.start_time or 0, deadline)
                decoded = _checked_frames(video_path, container, stream, deadline)
                result = _collect(video_path, decoded, slots, None, wanted, monotonic=False)
        else:

            def from_start():
                yield first
                yield from decoded

            result = _collect(video_path, from_start(), slots, None, wanted, monotonic=False)
    finally:
        container.close()
    by_slot, frames = result
    missing = sorted(s - first_slot for s in wanted if s not in by_slot)
    if missing:
        raise VideoReadError(
            video_path,
            f"the video has no frame {missing[0]} at {float(fps):g} fps (it ends at frame "
            f"{missing[0] - 1} or before; see count_frames_at_fps)",
        )
    table = np.array([by_slot[first_slot + int(i)] for i in indices], dtype=np.int64)
    return np.stack(frames)[table]


def _read_after_seek(path, container, stream, slots, wanted, deadline):
    """Reads the wanted slots after seeking close to them; None when that is not exact."""
    lowest = min(wanted)
    # The frame of slot `lowest` starts no earlier than (lowest - 1/2) / fps; go a frame earlier.
    seconds = (fractions.Fraction(2 * lowest - 3, 2)) / slots.fps
    target = slots.offset + math.floor(seconds / slots.time_base)
    seek(path, container, stream, target, deadline)
    decoded = _checked_frames(path, container, stream, deadline)
    first = next(decoded, None)
    if first is None or slots.slot(first[1].pts) > lowest:
        return None

    def items():
        yield first
        yield from decoded

    try:
        return _collect(path, items(), slots, None, wanted, monotonic=True)
    except _NotSeekable:
        return None
