"""Writing videos with PyAV: an H.264 (else MPEG-4 Part 2) stream, and re-encoding a video
with something drawn on each of its frames, written atomically.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from keras_slowfast.atomic import atomic_path
from keras_slowfast.data._video_io import (
    VideoReadError,
    check_timeout,
    checked_pts,
    decoded_frames,
    open_video,
    stream_info,
    to_rgb,
)
from keras_slowfast.progress import ProgressBar

if TYPE_CHECKING:
    import fractions

    import av.container
    import av.video.stream
    import numpy as np

__all__ = ["add_video_stream", "reencode_video"]


def _encoder_like(container, template, width, height):
    """An H.264 (else MPEG-4 Part 2) stream on `container` with the timing of `template`."""
    rate = template.average_rate or template.guessed_rate or template.base_rate
    return add_video_stream(container, rate, template.time_base, width, height)


def add_video_stream(
    container: av.container.OutputContainer,
    rate: fractions.Fraction | float,
    time_base: fractions.Fraction,
    width: int,
    height: int,
) -> av.video.stream.VideoStream:
    """Adds an H.264 (else MPEG-4 Part 2) video stream of `rate` fps to `container`."""
    import av

    even = width % 2 == 0 and height % 2 == 0
    for codec, options in (("libx264", {"crf": "18", "preset": "veryfast"}), ("mpeg4", {})):
        if codec not in av.codecs_available:
            continue
        try:
            stream = container.add_stream(codec, rate=rate, options=options)
        except Exception:  # this build cannot encode with it
            continue
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if even or codec == "mpeg4" else "yuv444p"
        if codec == "mpeg4":
            stream.codec_context.qscale = 2
            stream.codec_context.flags |= "QSCALE"  # constant quality
        stream.codec_context.time_base = time_base
        return stream
    raise ValueError("No video encoder (libx264 or mpeg4) in this PyAV build.")


def reencode_video(
    video: str | os.PathLike,
    path: str | os.PathLike,
    start: Callable[
        [av.container.InputContainer, av.video.stream.VideoStream],
        Callable[[np.ndarray, int], np.ndarray],
    ],
    description: str,
    progress: bool = True,
    timeout: float | None = None,
) -> str:
    """Decodes `video`, draws on every frame and encodes the frames to `path`, atomically.

    `start(container, stream)` is called once the input is open and returns
    `draw(rgb, pts) -> rgb`, called on each decoded RGB frame with its timestamp (in
    `stream.time_base` units). The output keeps the input's frames (count, size, frame rate
    and timestamps when they increase) in H.264, or MPEG-4 Part 2 without an H.264 encoder.
    """
    import av

    path = os.fspath(path)
    deadline = time.monotonic() + check_timeout(timeout)
    container, stream = open_video(video, 1, deadline)
    try:
        # The temporary file keeps the extension: PyAV picks the container format by it.
        with atomic_path(path, suffix=os.path.splitext(path)[1]) as tmp:
            info = stream_info(video, stream)
            draw = start(container, stream)
            total = info.header_frames or None
            last_pts = None
            with (
                av.open(tmp, "w") as out,
                ProgressBar(total, description, unit="frames", enabled=progress) as bar,
            ):
                encoder = None
                for frame in decoded_frames(video, container, stream, deadline):
                    pts = checked_pts(video, frame)
                    rgb = draw(to_rgb(frame), pts)
                    if encoder is None:
                        encoder = _encoder_like(out, stream, rgb.shape[1], rgb.shape[0])
                    new = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    # Keep the input's timing when its timestamps increase, else count frames.
                    if last_pts is not None and pts <= last_pts:
                        pts = last_pts + 1
                    new.pts, new.time_base = pts, stream.time_base
                    last_pts = pts
                    for packet in encoder.encode(new):
                        out.mux(packet)
                    bar.update()
                if encoder is None:
                    raise VideoReadError(video, "no decodable frame")
                for packet in encoder.encode(None):
                    out.mux(packet)
    finally:
        container.close()
    return path
