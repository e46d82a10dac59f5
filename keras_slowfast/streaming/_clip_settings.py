"""The clip settings and argument checks that the streaming modules share.

A window's clip comes from a preset's test protocol (`num_frames`, `sampling_rate`,
`target_fps`, `test_crop_size`), each overridable; the streaming entry points check their
video, stride and timeouts the same way.
"""

import os

from keras_slowfast import presets
from keras_slowfast._checks import check_positive_int, check_positive_number

__all__ = ["DEFAULT_READ_TIMEOUT_S", "check_stream_args", "resolve_clip"]

# Seconds one blocking read (opening the video, a packet) may wait by default.
DEFAULT_READ_TIMEOUT_S = 60.0


def resolve_clip(
    preset: str | None,
    num_frames: int | None,
    sampling_rate: int | None,
    crop_size: int | None,
) -> tuple[int, int, float, int]:
    """`(num_frames, sampling_rate, target_fps, crop_size)` of a window's clip.

    Each of `num_frames`, `sampling_rate` and `crop_size` left `None` comes from the
    preset's classifier test protocol; without a preset, `num_frames` and `sampling_rate`
    are needed (then 30 fps and a 256 crop).

    Raises:
        ValueError: for an unknown preset, a missing clip setting without a preset, or a
            setting that is not a positive integer (naming it).

    Example:
        >>> resolve_clip("slowfast_8x8_r50", None, None, None)
        (32, 2, 30, 256)
        >>> resolve_clip(None, 8, 8, 128)
        (8, 8, 30, 128)
    """
    if preset is not None:
        proto = presets.get_preset(preset, kind=presets.CLASSIFIER).protocol
    else:
        proto = presets.Protocol(num_frames=0, sampling_rate=0)
    num_frames = proto.num_frames if num_frames is None else num_frames
    sampling_rate = proto.sampling_rate if sampling_rate is None else sampling_rate
    if preset is None and (num_frames == 0 or sampling_rate == 0):
        raise ValueError(
            "Give `preset` or both `num_frames` and `sampling_rate`. "
            f"Received: preset={preset!r}, num_frames={num_frames!r}, "
            f"sampling_rate={sampling_rate!r}"
        )
    num_frames = check_positive_int("num_frames", num_frames)
    sampling_rate = check_positive_int("sampling_rate", sampling_rate)
    size = proto.test_crop_size if crop_size is None else crop_size
    size = check_positive_int("crop_size", size)
    return num_frames, sampling_rate, proto.target_fps, size


def check_stream_args(
    video: str | os.PathLike,
    window_stride_seconds: float,
    timeout: float | None,
    read_timeout: float,
    stats: dict | None,
) -> tuple[float, float | None, float]:
    """`(stride, timeout, read_timeout)` as floats, once the arguments are checked.

    Raises:
        ValueError: for a stride or timeout that is not a finite number > 0 (naming it).
        TypeError: for `stats` that is not a dict, or `video` that is not a path.

    Example:
        >>> check_stream_args("video.mp4", 2, None, 60, None)
        (2.0, None, 60.0)
    """
    stride = check_positive_number("window_stride_seconds", window_stride_seconds)
    timeout = check_positive_number("timeout", timeout, allow_none=True)
    read_timeout = check_positive_number("read_timeout", read_timeout)
    if stats is not None and not isinstance(stats, dict):
        raise TypeError(f"`stats` must be None or a dict. Received: stats={stats!r}")
    if not isinstance(video, (str, os.PathLike)):
        raise TypeError(f"`video` must be a path or a stream URL. Received: video={video!r}")
    return stride, timeout, read_timeout
