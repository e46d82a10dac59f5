"""`keras-slowfast timeline`: the top classes of a long video (or a stream) every second.

Example::

    keras-slowfast timeline long.mp4 --csv timeline.csv    # top classes every second
"""

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from keras_slowfast.cli.common import (
    Command,
    add_batch_size_arg,
    add_model_args,
    add_run_flags,
    add_window_stride_arg,
    annotate_windows,
    build_preset_model,
    check_model_kind,
    check_video,
    headed_classifier,
    isatty,
    positive,
    positive_number,
    preset_class_names,
)

__all__ = ["COMMAND", "add_parser", "check_inputs", "run", "write_timeline_csv"]

NAME = "timeline"
# (flag, value the flag must have, module to import, extra that installs it)
EXTRAS = (("--plot", None, "matplotlib.figure", "plot"),)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the `timeline` parser to `subparsers` (of `keras-slowfast`) and returns it.

    Example:
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> _ = add_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["timeline", "long.mp4", "--stride", "2"]).stride
        2.0
    """
    p = subparsers.add_parser(
        NAME,
        help="score a long video (or a stream) every --stride seconds",
        description="Scores one centred clip per window (centres at (k + 0.5) * stride "
        "seconds) with the preset's clip and test crop, decoding the video once; prints "
        "each window's top classes and writes a CSV with one row per window: window, "
        "start, end, time, top_class, top_score, then one column of scores per class.",
    )
    p.add_argument("video", help="the video file or a stream URL")
    add_model_args(p)
    p.add_argument("--csv", default=None, help="the CSV file to write")
    p.add_argument(
        "--plot",
        default=None,
        help="a PNG of the top classes over time to write (needs matplotlib: "
        "pip install 'keras-slowfast[plot]')",
    )
    p.add_argument(
        "--annotate",
        metavar="OUT.mp4",
        default=None,
        help="a copy of the video with each window's top classes (up to 3) drawn on it",
    )
    add_window_stride_arg(p)
    p.add_argument("--top", type=positive, default=5, help="classes printed per window")
    add_batch_size_arg(p)
    p.add_argument(
        "--timeout",
        type=positive_number,
        default=None,
        help="seconds allowed (default: no limit)",
    )
    add_run_flags(p)
    return p


def check_inputs(args: argparse.Namespace) -> None:
    """A classifier with a head; a local video file must be readable (a URL opens later).

    Example:
        >>> args = argparse.Namespace(model="slowfast_8x8_r50_kinetics400",
        ...                           video="rtsp://camera/stream")
        >>> check_inputs(args)
    """
    check_model_kind(NAME, args.model, headed_classifier)
    if os.path.isfile(args.video):  # else a stream URL or a device, opened when it runs
        check_video(args.video)


def write_timeline_csv(path: str, windows: Sequence[Any], names: Sequence[str]) -> None:
    """Writes one row per window: window,start,end,time,top_class,top_score,<each class>.

    The file is replaced atomically; numbers have 6 significant digits.

    Example:
        >>> import os, tempfile, types
        >>> import numpy as np
        >>> window = types.SimpleNamespace(index=0, start=0.0, end=2.0, time=1.0,
        ...                                scores=np.array([0.25, 0.75]))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_timeline_csv(os.path.join(tmp, "t.csv"), [window], ["run", "walk"])
        ...     print(open(os.path.join(tmp, "t.csv")).read(), end="")
        window,start,end,time,top_class,top_score,run,walk
        0,0,2,1,walk,0.75,0.25,0.75
    """
    import csv
    import io

    from keras_slowfast.atomic import write_text_atomically

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["window", "start", "end", "time", "top_class", "top_score", *names])
    for w in windows:
        best = int(w.scores.argmax())
        writer.writerow(
            [
                w.index,
                f"{w.start:.6g}",
                f"{w.end:.6g}",
                f"{w.time:.6g}",
                names[best],
                f"{float(w.scores[best]):.6g}",
                *(f"{float(s):.6g}" for s in w.scores),
            ]
        )
    write_text_atomically(path, buffer.getvalue())


def run(args: argparse.Namespace) -> int:
    """Prints each window's top classes as it is scored; writes the CSV, plot and video.

    Returns:
        The exit status, 0.

    Example:
        >>> from keras_slowfast.cli import build_parser
        >>> run(build_parser().parse_args(["timeline", "long.mp4"]))  # doctest: +SKIP
        0
    """
    import numpy as np

    from keras_slowfast.inference import timeline

    preset, model = build_preset_model(args)
    names = preset_class_names(preset, model.output_shape[-1])
    top = min(args.top, len(names))
    start = time.perf_counter()
    windows = []
    # Each window's line is progress enough where it shows on the terminal the bar would use.
    rows_on_terminal = isatty(sys.stdout) and isatty(sys.stderr)
    for w in timeline(
        model,
        args.video,
        preset.name,
        window_stride_seconds=args.stride,
        batch_size=args.batch_size,
        progress=not args.quiet and not rows_on_terminal,
        timeout=args.timeout,
    ):
        windows.append(w)
        best = np.argsort(-w.scores, kind="stable")[:top]
        labels = ", ".join(f"{names[i]} {w.scores[i]:.3f}" for i in best)
        print(f"{w.start:8.2f} {w.end:8.2f}  {labels}", flush=True)
    elapsed = time.perf_counter() - start
    print(
        f"{os.path.basename(args.video)}: {len(windows)} windows every {args.stride:g} s, "
        f"{preset.name}, {elapsed:.1f} s"
    )
    _write_outputs(args, windows, names, top)
    return 0


def _write_outputs(args, windows, names, top):
    """The CSV, the plot and the annotated video that the flags ask for."""
    import numpy as np

    if args.csv:
        write_timeline_csv(args.csv, windows, names)
        print(f"written: {args.csv}")
    if args.plot:
        from keras_slowfast.visualize import plot_timeline

        plot_timeline(
            np.array([w.time for w in windows]),
            np.stack([w.scores for w in windows]),
            names,
            args.plot,
            top=top,
        )
        print(f"written: {args.plot}")
    if args.annotate:
        annotate_windows(args.video, windows, names, args.annotate, min(top, 3), not args.quiet)


COMMAND = Command(NAME, add_parser, run, check_inputs=check_inputs, extras=EXTRAS)
