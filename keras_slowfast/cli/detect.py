"""`keras-slowfast detect`: people's actions in a video, scored by an AVA detector.

Examples::

    keras-slowfast detect video.mp4 --output annotated.mp4 --csv actions.csv
    keras-slowfast detect video.mp4 --csv actions.csv --boxes people.csv
"""

import argparse
import os
import time
import warnings
from typing import Any

from keras_slowfast.cli.common import (
    Command,
    add_detector_args,
    add_run_flags,
    build_detector,
    check_detector_inputs,
    check_video,
    positive,
    print_warning,
    setting,
)

__all__ = ["COMMAND", "KERAS_HUB_PRESET", "add_parser", "check_inputs", "check_usage", "run"]

NAME = "detect"
# The keras-hub person detector of `--person-detector keras-hub`.
KERAS_HUB_PRESET = "retinanet_resnet50_fpn_coco"
# (flag, value the flag must have, module to import, extra that installs it)
EXTRAS = (("--person-detector", "keras-hub", "keras_hub", "keras-hub"),)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the `detect` parser to `subparsers` (of `keras-slowfast`) and returns it.

    Example:
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> _ = add_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["detect", "video.mp4", "--csv", "a.csv"]).top_k
        3
    """
    p = subparsers.add_parser(
        NAME,
        help="detect people's actions in a video with an AVA detector",
        description="Every second of the video is a keyframe: person boxes (from --boxes, or "
        "a person detector) are scored by an AVA detector; writes the video with the boxes "
        "and top actions drawn, and/or a CSV video,sec,x1,y1,x2,y2,action,score.",
    )
    p.add_argument("video", help="the video file")
    p.add_argument("--output", default=None, help="the annotated video to write (e.g. .mp4)")
    p.add_argument(
        "--csv",
        default=None,
        help="the detections CSV to write: a header row video,sec,x1,y1,x2,y2,action,score, "
        "then the top actions of each box (boxes normalised, action = AVA's 1-based id)",
    )
    add_detector_args(p)
    p.add_argument(
        "--boxes",
        default=None,
        help="person boxes, CSV video,sec,x1,y1,x2,y2[,action[,score]] (normalised; video = "
        "the file name without extension, sec = second from the start)",
    )
    p.add_argument(
        "--person-detector",
        choices=("opencv", "keras-hub"),
        default=None,
        help="find people when --boxes is not given: opencv (HOG, offline; the default) or "
        "keras-hub (a keras-hub detector preset, downloaded on first use)",
    )
    p.add_argument(
        "--keras-hub-preset",
        default=None,
        help=f"with --person-detector keras-hub: the keras-hub detector preset (default: "
        f"{KERAS_HUB_PRESET})",
    )
    p.add_argument(
        "--person-thresh",
        type=float,
        default=None,
        help="minimum person score (opencv default 1.0, keras-hub 0.5; with --boxes, drops rows "
        "scored below it, default: a PySlowFast checkpoint's AVA.DETECTION_SCORE_THRESH)",
    )
    p.add_argument(
        "--score-thresh",
        type=float,
        default=0.0,
        help="minimum action score to keep (default: %(default)s)",
    )
    p.add_argument("--top-k", type=positive, default=3, help="actions per box (default: 3)")
    add_run_flags(p)
    return p


def check_usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Person-detector flags with `--boxes`, or keras-hub's without it, are usage errors.

    Also fills in the default of `--keras-hub-preset`.

    Example:
        >>> args = argparse.Namespace(boxes=None, person_detector="keras-hub",
        ...                           keras_hub_preset=None)
        >>> check_usage(args, argparse.ArgumentParser())
        >>> args.keras_hub_preset
        'retinanet_resnet50_fpn_coco'
    """
    if args.boxes is not None and args.person_detector is not None:
        parser.error("--person-detector has no effect with --boxes (give one of them)")
    if args.keras_hub_preset is not None and args.person_detector != "keras-hub":
        parser.error("--keras-hub-preset has no effect without --person-detector keras-hub")
    args.keras_hub_preset = args.keras_hub_preset or KERAS_HUB_PRESET


def check_inputs(args: argparse.Namespace) -> None:
    """A detector, its checkpoint file if one is named, a readable video and an output.

    Example:
        >>> args = argparse.Namespace(model=None, weights=None, video="missing.mp4")
        >>> check_inputs(args)
        Traceback (most recent call last):
        ...
        ValueError: No video file at this path. Received: video='missing.mp4'
    """
    check_detector_inputs(NAME, args)
    check_video(args.video)
    if args.output is None and args.csv is None:
        raise ValueError("Give --output VIDEO and/or --csv FILE. Received: neither")


def run(args: argparse.Namespace) -> int:
    """Scores the person boxes of every second; writes the annotated video and/or the CSV.

    Returns:
        The exit status, 0 (also when nobody is found: a warning says what to try).

    Example:
        >>> from keras_slowfast.cli import build_parser
        >>> args = build_parser().parse_args(["detect", "video.mp4", "--csv", "actions.csv"])
        >>> run(args)  # doctest: +SKIP
        0
    """
    from keras_slowfast.detect import detect_actions, write_detections_csv

    person_detector = _person_detector(args) if args.boxes is None else None
    model, settings = build_detector(args)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        found = detect_actions(
            model,
            args.video,
            args.boxes,
            person_detector=person_detector,
            output_video=args.output,
            sampling_rate=setting(args, settings, "sampling_rate", 2),
            test_crop_size=args.test_crop_size,
            top_k=args.top_k,
            score_thresh=args.score_thresh,
            box_score_thresh=(
                setting(args, {}, "person_thresh", settings.get("detection_score_thresh"))
                if args.boxes is not None
                else None
            ),
            bgr=args.bgr or settings.get("bgr", False),
            progress=not args.quiet,
        )
    if args.csv is not None:
        write_detections_csv(found, args.csv, header=True)
    nobody = len(found.seconds) == 0
    for w in caught:
        if not (nobody and str(w.message).startswith("No person")):  # said below, with a hint
            print_warning(NAME, w.message)
    if nobody:
        _warn_nobody(args)
    elapsed = time.perf_counter() - start
    seconds = len(set(found.seconds.tolist()))
    print(
        f"{os.path.basename(args.video)}: {len(found.seconds)} person boxes in {seconds} of "
        f"{found.keyframes} keyframes, {elapsed:.1f} s"
    )
    for path in (args.output, args.csv):
        if path is not None:
            print(f"written: {path}")
    return 0


def _person_detector(args):
    """The person detector of `--person-detector` (opencv by default)."""
    from keras_slowfast.detect import KerasHubPersonDetector, OpenCVPersonDetector

    kind = args.person_detector or "opencv"
    thresh = {} if args.person_thresh is None else {"score_thresh": args.person_thresh}
    if kind == "opencv":
        return OpenCVPersonDetector(**thresh)
    return KerasHubPersonDetector(args.keras_hub_preset, **thresh)


def _warn_nobody(args):
    """The warning when no person box was scored, with what to try."""
    if args.boxes is not None:
        stem = os.path.splitext(os.path.basename(args.video))[0]
        hint = (
            f"check that its `video` column is {stem!r} (the file name without extension) "
            "and --person-thresh"
        )
        source = f"no person box of this video in --boxes {args.boxes}"
    else:
        source = f"the {args.person_detector or 'opencv'} person detector found no one"
        hint = "give person boxes with --boxes FILE" + (
            ", or try --person-detector keras-hub"
            if args.person_detector != "keras-hub"
            else ", or lower --person-thresh"
        )
    print_warning(
        NAME,
        f"{source} in {args.video}, so no action was scored"
        + (" (the CSV has its header only)" if args.csv else "")
        + f"; {hint}.",
    )


COMMAND = Command(
    NAME, add_parser, run, check_usage=check_usage, check_inputs=check_inputs, extras=EXTRAS
)
