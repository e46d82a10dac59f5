"""`keras-slowfast extract-frames`: AVA's frame layout (frames/, frame_lists/) from videos.

Example::

    keras-slowfast extract-frames videos.txt --output ava/ --split val
"""

import argparse
import os
import sys
import time
import warnings
from typing import Any

from keras_slowfast.cli.common import (
    Command,
    add_run_flags,
    add_video_timeout_arg,
    positive,
    positive_number,
)

__all__ = ["COMMAND", "add_parser", "jpeg_quality", "run"]

NAME = "extract-frames"


def jpeg_quality(value: str) -> int:
    """An argparse type: an OpenCV JPEG quality, an integer from 1 to 100.

    Example:
        >>> jpeg_quality("95")
        95
        >>> jpeg_quality("101")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be an integer from 1 to 100, got 101
    """
    number = positive(value)
    if number > 100:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to 100, got {value}")
    return number


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the `extract-frames` parser to `subparsers` (of `keras-slowfast`) and returns it.

    Example:
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> _ = add_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["extract-frames", "a.mp4", "--output", "ava"]).fps
        30.0
    """
    p = subparsers.add_parser(
        NAME,
        help="write AVA's frame layout (frames/, frame_lists/) from video files",
        description="Write every video's frames at 30 fps as DATA_DIR/frames/<video>/"
        "<video>_%06d.jpg and list them in DATA_DIR/frame_lists/<split>.csv, as AVA's "
        "frame extraction and PySlowFast's frame lists do. Resumable: complete folders "
        "are kept.",
    )
    p.add_argument(
        "videos",
        nargs="+",
        metavar="VIDEO_OR_LIST",
        help="video files, or list files (.txt/.csv/.lst/.list, one video path per line)",
    )
    p.add_argument("--output", required=True, metavar="DATA_DIR", help="the dataset folder")
    p.add_argument("--split", default="train", help="frame list name (default: %(default)s)")
    p.add_argument("--fps", type=positive_number, default=30.0, help="frame rate (default: 30)")
    p.add_argument(
        "--jpeg-quality",
        type=jpeg_quality,
        default=95,
        help="OpenCV JPEG quality, 1 to 100 (default: 95)",
    )
    p.add_argument(
        "--on-error",
        choices=("skip", "raise"),
        default="skip",
        help="skip unreadable videos with a message (default) or stop at the first one",
    )
    add_video_timeout_arg(p)
    add_run_flags(p, cpu=False)
    return p


def run(args: argparse.Namespace) -> int:
    """Writes the frames and the frame list; lists the skipped videos on stderr.

    Returns:
        The exit status, 0.

    Example:
        >>> from keras_slowfast.cli import build_parser
        >>> args = build_parser().parse_args(["extract-frames", "a.mp4", "--output", "ava"])
        >>> run(args)  # doctest: +SKIP
        0
    """
    from keras_slowfast.data.ava_extract import extract_ava_frames
    from keras_slowfast.data.video import DecodeErrorCounter

    counter = DecodeErrorCounter()
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Skipped videos are listed once at the end instead.
        warnings.filterwarnings("ignore", message="Skipping video", category=RuntimeWarning)
        result = extract_ava_frames(
            args.videos,
            args.output,
            fps=args.fps,
            split=args.split,
            jpeg_quality=args.jpeg_quality,
            on_error=args.on_error,
            timeout=args.timeout,
            progress=not args.quiet,
            error_counter=counter,
        )
    elapsed = time.perf_counter() - start
    print(
        f"{len(result.frames)} video(s), {sum(result.frames.values())} frames at {args.fps:g} fps "
        f"in {os.path.join(args.output, 'frames')} ({len(result.extracted)} extracted, "
        f"{len(result.existing)} already complete, {len(result.failed)} skipped), "
        f"{elapsed:.1f} s"
    )
    print(f"frame list: {result.frame_list}")
    for path, reason in result.failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return 0


COMMAND = Command(NAME, add_parser, run)
