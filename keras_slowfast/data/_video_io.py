"""PyAV decoding plumbing shared by the readers, the detector and the visualisations.

Opening a file or stream URL with every blocking FFmpeg call bounded by a deadline, the
stream's header, decoded frames in output order, seeking, RGB conversion, and the mapping
of timestamps to the output slots of a constant frame rate (FFmpeg's `fps` filter).
Errors are :class:`keras_slowfast.data.VideoReadError`, whose public home is
:mod:`keras_slowfast.data.video`.
"""

from __future__ import annotations

import fractions
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from keras_slowfast.data.sampling import VideoInfo

if TYPE_CHECKING:
    import av.container
    import av.video.frame
    import av.video.stream

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "FpsSlots",
    "VideoReadError",
    "check_fps",
    "check_timeout",
    "checked_pts",
    "decode_failure",
    "decoded_frames",
    "is_stream_url",
    "open_video",
    "seek",
    "stream_info",
    "to_rgb",
]

#: Seconds a reader may take by default before it gives up on a video.
DEFAULT_TIMEOUT_S = 300.0


class VideoReadError(ValueError):
    """A video file that cannot be opened or decoded.

    Raised too when a reader's `timeout` passes (the reason then says "timed
    out"): the deadline is checked between packets, and each blocking FFmpeg
    call (opening, probing, a packet read, the reads of a seek, on a local file
    or a stream URL) is interrupted once the time left at opening has passed
    without it returning. A stalled source therefore fails at most about
    `2 * timeout` after the call began, and at `timeout` when it stalls early.

    Attributes:
        path: the file.
        reason: what went wrong.

    Example:

    >>> try:
    ...     read_clip("missing.mp4", num_frames=8, sampling_rate=8)
    ... except VideoReadError as e:
    ...     print(e.path)
    missing.mp4
    """

    # Its public home: tracebacks, pickles and the docs name it `keras_slowfast.data.video`.
    __module__ = "keras_slowfast.data.video"

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"Cannot read video {self.path!r}: {reason}. Received: video_path={path!r}"
        )


def _import_av():
    import av

    return av


# `scheme://...` names a stream FFmpeg opens itself (http://, https://, rtsp://, ...).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_stream_url(path: str | os.PathLike) -> bool:
    """Whether `path` is a stream URL (`scheme://...`) rather than a local file.

    Example:

    >>> is_stream_url("http://127.0.0.1:8000/a.mp4"), is_stream_url("videos/a.mp4")
    (True, False)
    """
    return isinstance(path, str) and bool(_URL.match(path))


def _timed_out(deadline, error=None):
    """Whether a failure is the deadline's doing.

    Every FFmpeg wait is interrupted no earlier than the deadline (see `open_video`),
    so a failure seen after it, or FFmpeg's "immediate exit requested", is a timeout.
    """
    exit_error = getattr(_import_av().error, "ExitError", ())
    return time.monotonic() > deadline or (error is not None and isinstance(error, exit_error))


def decode_failure(
    path: str | os.PathLike, what: str, error: BaseException, deadline: float
) -> VideoReadError:
    """The `VideoReadError` for an FFmpeg failure: a timeout when past the deadline."""
    if isinstance(error, VideoReadError):
        return error
    if _timed_out(deadline, error):
        return VideoReadError(path, f"{what} timed out ({error})")
    return VideoReadError(path, f"{what} failed ({error})")


def open_video(
    path: str | os.PathLike, decode_threads: int, deadline: float = math.inf
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Opens a video file or stream URL; every blocking FFmpeg call ends by `deadline`.

    With a finite deadline, FFmpeg's interrupt callback aborts opening, probing
    and each packet read once the time left at opening has passed without the
    call returning (PyAV's `timeout`), and protocol reads and seeks give up
    after as long without data (`rw_timeout`). The deadline itself is checked
    between packets, so a stalled source fails at the deadline and a source
    that stalls late fails at most the time left at opening after its last packet.
    """
    if not is_stream_url(path):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise VideoReadError(path, "file not found")
        if not os.path.isfile(path):
            raise VideoReadError(path, "not a regular file")
        if os.path.getsize(path) == 0:
            raise VideoReadError(path, "file is empty")
    av = _import_av()
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise VideoReadError(path, "opening timed out (no time left)")
    kwargs = {}
    if math.isfinite(remaining):
        kwargs["timeout"] = (remaining, remaining)
        if is_stream_url(path):
            kwargs["container_options"] = {"rw_timeout": str(max(1, int(remaining * 1e6)))}
    try:
        container = av.open(path, **kwargs)
    except Exception as e:  # PyAV raises a variety of FFmpeg and OS errors.
        if _timed_out(deadline, e):
            raise VideoReadError(path, f"opening timed out ({e})") from e
        raise VideoReadError(path, f"not a readable media file ({e})") from e
    try:
        if not container.streams.video:
            raise VideoReadError(path, "no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # e.g. an unknown or damaged codec description
            raise VideoReadError(path, "no decoder for the video stream")
        stream.thread_type = "AUTO" if decode_threads != 1 else "SLICE"
        stream.thread_count = int(decode_threads)
    except BaseException:
        container.close()
        raise
    return container, stream


def stream_info(path: str | os.PathLike, stream: av.video.stream.VideoStream) -> VideoInfo:
    """The `VideoInfo` of an open video stream (frame rate, header counts, frame size)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or float(rate) <= 0:
        raise VideoReadError(path, "the video stream has no frame rate")
    ctx = stream.codec_context
    return VideoInfo(
        fps=float(rate),
        frame_rate=fractions.Fraction(rate),
        header_frames=int(stream.frames or 0),
        duration=None if stream.duration is None else int(stream.duration),
        height=int(ctx.height or 0),
        width=int(ctx.width or 0),
    )


def decoded_frames(
    path: str | os.PathLike,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    deadline: float,
) -> Iterator[av.video.frame.VideoFrame]:
    """Decoded frames in output order; bounded by EOF and a wall-clock deadline."""
    try:
        for packet in container.demux(stream):
            if time.monotonic() > deadline:
                raise VideoReadError(path, "decoding timed out")
            yield from packet.decode()
    except VideoReadError:
        raise
    except Exception as e:
        raise decode_failure(path, "decoding", e, deadline) from e
    if time.monotonic() > deadline:
        # An interrupted read can end the stream early instead of failing.
        raise VideoReadError(path, "decoding timed out")


def seek(
    path: str | os.PathLike,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    pts: int,
    deadline: float = math.inf,
) -> None:
    """Seeks to the keyframe at or before timestamp `pts`, failing once past `deadline`."""
    if time.monotonic() > deadline:
        raise VideoReadError(path, "decoding timed out")
    try:
        container.seek(int(pts), any_frame=False, backward=True, stream=stream)
    except Exception as e:
        raise decode_failure(path, f"seeking to timestamp {pts}", e, deadline) from e


def checked_pts(path: str | os.PathLike, frame: av.video.frame.VideoFrame) -> int:
    """The timestamp of a decoded frame; a `VideoReadError` when it has none."""
    if frame.pts is None:
        raise VideoReadError(path, "a decoded frame has no timestamp")
    return frame.pts


_local = threading.local()


def to_rgb(frame: av.video.frame.VideoFrame) -> np.ndarray:
    """A decoded frame as a uint8 `(height, width, 3)` RGB array."""
    # One colour converter per thread: PyAV otherwise builds a new swscale
    # context (and, in recent versions, a scaling thread pool) for every frame,
    # which costs more than the conversion itself. The conversion is the same
    # `rgb24` one as `frame.to_ndarray(format="rgb24")`.
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:
        from av.video.reformatter import VideoReformatter

        reformatter = VideoReformatter()
        try:
            rgb = reformatter.reformat(frame, format="rgb24", threads=1)
            kwargs = {"threads": 1}
        except TypeError:  # PyAV without the `threads` argument.
            rgb = reformatter.reformat(frame, format="rgb24")
            kwargs = {}
        # Cached only once a conversion succeeded, so a failure leaves no half-set state.
        _local.kwargs = kwargs
        _local.reformatter = reformatter
        return rgb.to_ndarray()
    return reformatter.reformat(frame, format="rgb24", **_local.kwargs).to_ndarray()


def check_fps(fps: float | fractions.Fraction) -> fractions.Fraction:
    """`fps` as an exact `Fraction` (29.97 -> 2997/100); a `TypeError` or `ValueError` naming
    `fps` when it is not a positive number."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, fractions.Fraction, np.number)):
        raise TypeError(f"`fps` must be a positive number. Received: fps={fps!r}")
    if not math.isfinite(float(fps)) or fps <= 0:
        raise ValueError(f"`fps` must be a positive number. Received: fps={fps!r}")
    if isinstance(fps, (float, np.floating)):
        # 29.97 -> 2997/100, the rate an `fps=29.97` option parses to.
        return fractions.Fraction(str(float(fps)))
    return fractions.Fraction(fps)


def check_timeout(timeout: float | None) -> float:
    """`timeout` in seconds as a float (`None`: `math.inf`); a `ValueError` naming it when it
    is not a positive number or None."""
    if timeout is None:
        return math.inf
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(
            f"`timeout` must be a positive number of seconds or None. Received: timeout={timeout!r}"
        )
    return float(timeout)


def _round_half_away(x):
    """Nearest integer of a Fraction, halves away from zero (FFmpeg's AV_ROUND_NEAR_INF)."""
    n = math.floor(abs(x) + fractions.Fraction(1, 2))
    return n if x >= 0 else -n


class FpsSlots:
    """Maps stream timestamps of one video to output slots at `fps` (FFmpeg's `fps` filter).

    A frame at timestamp `pts` goes to slot `round((pts - start) * time_base * fps)`,
    halves away from zero, `start` being the container's start time.
    """

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        fps: fractions.Fraction,
    ) -> None:
        self.time_base = fractions.Fraction(stream.time_base)
        start = container.start_time  # AV_TIME_BASE (microsecond) units, or None
        self.offset = (
            0
            if start is None
            else _round_half_away(fractions.Fraction(start, 10**6) / self.time_base)
        )
        self.fps = fps
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        # Duration of a frame that carries none: one frame interval of the stream.
        self.default_duration = (
            max(1, _round_half_away(1 / (fractions.Fraction(rate) * self.time_base))) if rate else 1
        )

    def slot(self, pts: int) -> int:
        return _round_half_away((pts - self.offset) * self.time_base * self.fps)

    def end_slot(self, pts: int, duration: int | None) -> int:
        if not duration or duration <= 0:
            duration = self.default_duration
        return self.slot(pts + duration)
