"""`keras-slowfast features`: pooled backbone features every second of each video of a list.

Example::

    keras-slowfast features videos.txt --output feats/     # pooled features every second
"""

import argparse
import os
import sys
import time
from typing import Any

from keras_slowfast.cli.common import (
    Command,
    add_batch_size_arg,
    add_model_args,
    add_run_flags,
    add_video_timeout_arg,
    add_window_stride_arg,
    build_model,
    check_model_kind,
    check_video,
    classifier,
)

__all__ = ["COMMAND", "add_parser", "check_inputs", "run"]

NAME = "features"
# (flag, value the flag must have, module to import, extra that installs it)
EXTRAS = (("--format", "hdf5", "h5py", "hdf5"),)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the `features` parser to `subparsers` (of `keras-slowfast`) and returns it.

    Example:
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> _ = add_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["features", "videos.txt", "--output", "feats"]).format
        'npy'
    """
    p = subparsers.add_parser(
        NAME,
        help="write pooled backbone features every --stride seconds of videos",
        description="For each video writes OUTPUT/<name>.npy (windows x dim float32) and "
        "OUTPUT/<name>.json (times, frame indices, settings), or OUTPUT/<name>.h5; <name> "
        "is the video's path relative to the list's folder (or --path-prefix) without its "
        "extension. Resumable: complete videos are skipped. Unreadable videos are skipped "
        "and listed in OUTPUT/failures.txt; the exit status is 1 when any failed.",
    )
    p.add_argument(
        "videos",
        metavar="VIDEO_OR_LIST",
        help="a video file, or a list file (.txt/.csv/.lst/.list, one video path per line)",
    )
    p.add_argument("--output", required=True, metavar="DIR", help="the output folder")
    p.add_argument(
        "--format",
        choices=("npy", "hdf5"),
        default="npy",
        help="npy: OUTPUT/<name>.npy and .json (default); hdf5: OUTPUT/<name>.h5 (needs "
        'h5py: pip install "keras-slowfast[hdf5]")',
    )
    add_model_args(p, accepts=classifier)
    add_window_stride_arg(p)
    add_batch_size_arg(p)
    p.add_argument("--path-prefix", default=None, help="folder of the list's relative paths")
    add_video_timeout_arg(p)
    add_run_flags(p)
    return p


def check_inputs(args: argparse.Namespace) -> None:
    """A classifier or backbone (the input is read once TensorFlow loads, see :func:`run`).

    Example:
        >>> check_inputs(argparse.Namespace(model="slowfast_8x8_r50"))
    """
    check_model_kind(NAME, args.model, classifier)


def run(args: argparse.Namespace) -> int:
    """Writes the features of each video; unreadable videos are skipped and listed.

    A bad list, or a single video that does not open, fails before the model is built.

    Returns:
        The exit status: 0, or 1 when any video failed (see OUTPUT/failures.txt).

    Example:
        >>> from keras_slowfast.cli import build_parser
        >>> args = build_parser().parse_args(["features", "videos.txt", "--output", "feats"])
        >>> run(args)  # doctest: +SKIP
        0
    """
    from keras_slowfast import presets
    from keras_slowfast.inference import feature_model
    from keras_slowfast.streaming import save_features, video_list

    preset = presets.get_preset(args.model)
    # A list's videos are read one by one: the unreadable ones are skipped and listed.
    entries = video_list(args.videos, args.path_prefix)
    single = os.path.join(args.path_prefix or "", args.videos)
    if len(entries) == 1 and entries[0][0] in (args.videos, single):
        check_video(entries[0][0], "videos")
    model = feature_model(build_model(args))
    start = time.perf_counter()

    def report(path, name, status):
        if status not in ("extracted", "existing"):
            print(f"skipped {path}: {status}", file=sys.stderr, flush=True)

    summary = save_features(
        model,
        args.videos,
        args.output,
        preset=preset.name,
        weights=args.weights or preset.weights,
        format=args.format,
        window_stride_seconds=args.stride,
        batch_size=args.batch_size,
        path_prefix=args.path_prefix,
        timeout=args.timeout,
        progress=not args.quiet,
        on_video=report,
    )
    elapsed = time.perf_counter() - start
    total = len(summary.extracted) + len(summary.existing) + len(summary.failed)
    print(
        f"{total} video(s): {len(summary.extracted)} extracted, {len(summary.existing)} "
        f"already complete, {len(summary.failed)} failed; {model.output_shape[-1]}-d "
        f"features of {preset.name} every {args.stride:g} s in {args.output}, {elapsed:.1f} s"
    )
    if summary.failures_file:
        print(f"failures: {summary.failures_file}")
        return 1
    return 0


COMMAND = Command(NAME, add_parser, run, check_inputs=check_inputs, extras=EXTRAS)
