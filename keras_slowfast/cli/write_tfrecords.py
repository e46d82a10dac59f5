"""`keras-slowfast write-tfrecords`: a PySlowFast video list as JPEG-frame TFRecords.

Resumable: complete shards are recorded in OUTPUT_PREFIX.manifest/ and kept by a rerun,
so a killed conversion is restarted with the same command. Several machines can share one
conversion with --task-index/--num-tasks (same list, prefix and settings on each).

Also the `keras-slowfast-write-tfrecords` console script (:func:`main`).

Example::

    keras-slowfast write-tfrecords train.csv tfrecords/train \\
        --path-prefix /data/kinetics --num-shards 256 --short-side 320 --workers 8
"""

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from keras_slowfast.cli.common import Command

__all__ = ["COMMAND", "add_arguments", "add_parser", "build_parser", "main", "run"]

NAME = "write-tfrecords"
_DESCRIPTION = (
    "Decode every video of a PySlowFast list file (`path label` per line) and store it "
    "as a TFRecord SequenceExample of JPEG frames with its timestamps, readable with "
    "keras_slowfast.data.frame_tfrecord_dataset."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the command's arguments to `parser`.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> parser.parse_args(["train.csv", "out/train"]).num_shards
        1
    """
    parser.add_argument("list_file", help="list file, one `path label` per line")
    parser.add_argument(
        "output_prefix",
        help="shards are written to OUTPUT_PREFIX-00000-of-NNNNN.tfrecord, ...",
    )
    parser.add_argument("--path-prefix", default="", help="folder prepended to listed paths")
    parser.add_argument("--num-shards", type=int, default=1, help="number of output files")
    parser.add_argument(
        "--short-side",
        type=int,
        default=None,
        help="resize frames so that their short side has this length (default: keep)",
    )
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality (1-100)")
    parser.add_argument("--workers", type=int, default=1, help="videos encoded in parallel")
    parser.add_argument(
        "--on-error",
        choices=("skip", "raise"),
        default="skip",
        help="skip unreadable videos with a warning (default) or stop at the first one",
    )
    parser.add_argument(
        "--task-index",
        type=int,
        default=0,
        help="this machine's index when NUM_TASKS machines share the conversion (default 0)",
    )
    parser.add_argument(
        "--num-tasks",
        type=int,
        default=1,
        help="machines sharing the conversion; task T writes shards K with K %% NUM_TASKS == T",
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the `write-tfrecords` parser to `subparsers` (of `keras-slowfast`) and returns it.

    Example:
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> sub = add_parser(parser.add_subparsers(dest="command"))
        >>> sub.prog
        'keras-slowfast write-tfrecords'
    """
    p = subparsers.add_parser(
        NAME, help="write JPEG-frame TFRecords of a video list", description=_DESCRIPTION
    )
    add_arguments(p)
    return p


def build_parser(prog: str = "keras-slowfast-write-tfrecords") -> argparse.ArgumentParser:
    """The argument parser of the command on its own (see the module docstring).

    Args:
        prog: the program name its usage and errors show.

    Example:
        >>> build_parser().parse_args(["train.csv", "out/train", "--workers", "8"]).workers
        8
    """
    parser = argparse.ArgumentParser(prog=prog, description=_DESCRIPTION)
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Writes the shards; lists the skipped videos on stderr.

    Returns:
        The exit status: 0, or 2 on a bad argument or list (`error: ...` on stderr).

    Example:
        >>> run(build_parser().parse_args(["train.csv", "out/train"]))  # doctest: +SKIP
        0
    """
    from keras_slowfast.data import tfrecord
    from keras_slowfast.data.video import DecodeErrorCounter

    counter = DecodeErrorCounter()
    try:
        shards = tfrecord.write_frame_tfrecords(
            args.list_file,
            args.output_prefix,
            path_prefix=args.path_prefix,
            num_shards=args.num_shards,
            short_side=args.short_side,
            jpeg_quality=args.jpeg_quality,
            num_workers=args.workers,
            on_error=args.on_error,
            error_counter=counter,
            task_index=args.task_index,
            num_tasks=args.num_tasks,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {len(shards)} shard(s) to {args.output_prefix}-* (complete shards of a "
        f"previous run kept); skipped {counter.count} video(s)"
    )
    for path, reason in counter.failures:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "keras-slowfast-write-tfrecords") -> int:
    """Runs the command on its own; returns the process exit status.

    Args:
        argv: the arguments (default: `sys.argv[1:]`).
        prog: the program name shown in usage and error messages.

    Returns:
        0 on success (skipped videos are listed on stderr), 2 on an error.

    Example:

    >>> main(["train.csv", "out/train", "--num-shards", "4"])  # doctest: +SKIP
    0
    """
    return run(build_parser(prog).parse_args(argv))


# Through `keras-slowfast`, errors other than a bad list end in a traceback, as they do
# when the command runs on its own.
COMMAND = Command(NAME, add_parser, run, reported_errors=())


if __name__ == "__main__":
    sys.exit(main())
