"""`keras-slowfast evaluate-ava`: the frame-mAP of an AVA detector on an AVA-layout folder.

Example::

    keras-slowfast evaluate-ava ava/ --weights ava_model.pyth --output-dir results/
"""

import argparse
import os
import time
from typing import Any

from keras_slowfast.cli.common import (
    Command,
    add_detector_args,
    add_run_flags,
    build_detector,
    check_detector_inputs,
    positive,
    setting,
)

__all__ = ["COMMAND", "add_parser", "check_inputs", "check_usage", "run"]

NAME = "evaluate-ava"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the `evaluate-ava` parser to `subparsers` (of `keras-slowfast`) and returns it.

    Example:
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> _ = add_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["evaluate-ava", "ava"]).mode
        'test'
    """
    p = subparsers.add_parser(
        NAME,
        help="score an AVA detector on an AVA-layout dataset (frame-mAP)",
        description="Runs an AVA detector on every keyframe of an AVA-layout folder "
        "(frames/, frame_lists/, annotations/ with PySlowFast's default file names), writes "
        "detections.csv and metrics.json, and prints the frame-mAP.",
    )
    p.add_argument("data_dir", help="the AVA-layout dataset folder")
    add_detector_args(p)
    p.add_argument(
        "--mode",
        choices=("test", "val"),
        default="test",
        help="test: every keyframe, no crop (default); val: centre crops",
    )
    p.add_argument(
        "--full-test-on-val",
        action="store_true",
        help="with --mode val: every second instead of every fourth",
    )
    p.add_argument(
        "--detection-score-thresh",
        type=float,
        default=None,
        help="minimum person-box score (default: the config's, or 0.8)",
    )
    p.add_argument(
        "--labelmap", default=None, help="evaluated classes .pbtxt (default: the 60-class AVA list)"
    )
    p.add_argument(
        "--groundtruth",
        default=None,
        help="ground-truth CSV (default: annotations/ava_val_v2.2.csv)",
    )
    p.add_argument(
        "--exclusions",
        default=None,
        help="excluded timestamps CSV (default: the one in annotations/)",
    )
    p.add_argument(
        "--video-dir",
        default=None,
        help="read frames from <video>.mp4 files here instead of frames/",
    )
    p.add_argument(
        "--batch-size", type=positive, default=8, help="keyframes per model call (default: 8)"
    )
    p.add_argument("--output-dir", default=None, help="write detections.csv and metrics.json")
    add_run_flags(p)
    return p


def check_usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """`--full-test-on-val` without `--mode val` is a usage error.

    Example:
        >>> check_usage(argparse.Namespace(full_test_on_val=False, mode="test"),
        ...             argparse.ArgumentParser())
    """
    if args.full_test_on_val and args.mode != "val":
        parser.error("--full-test-on-val has no effect without --mode val")


def check_inputs(args: argparse.Namespace) -> None:
    """A detector, its checkpoint file if one is named, and the dataset folder.

    Example:
        >>> check_inputs(argparse.Namespace(model=None, weights=None, data_dir="missing"))
        Traceback (most recent call last):
        ...
        ValueError: No folder at this path. Received: data_dir='missing'
    """
    check_detector_inputs(NAME, args)
    if not os.path.isdir(args.data_dir):
        raise ValueError(f"No folder at this path. Received: data_dir={args.data_dir!r}")


def run(args: argparse.Namespace) -> int:
    """Runs the detector on every keyframe, writes the results, prints the frame-mAP.

    Returns:
        The exit status, 0.

    Example:
        >>> from keras_slowfast.cli import build_parser
        >>> run(build_parser().parse_args(["evaluate-ava", "ava"]))  # doctest: +SKIP
        0
    """
    from keras_slowfast.evaluation.ava_detector import evaluate_ava_detector

    model, settings = build_detector(args)
    start = time.perf_counter()
    result = evaluate_ava_detector(
        model,
        args.data_dir,
        mode=args.mode,
        labelmap=args.labelmap,
        groundtruth=args.groundtruth,
        exclusions=args.exclusions,
        output_dir=args.output_dir,
        sampling_rate=setting(args, settings, "sampling_rate", 2),
        test_crop_size=args.test_crop_size,
        full_test_on_val=args.full_test_on_val,
        detection_score_thresh=setting(args, settings, "detection_score_thresh", 0.8),
        bgr=args.bgr or settings.get("bgr", False),
        batch_size=args.batch_size,
        video_dir=args.video_dir,
        progress=not args.quiet,
    )
    elapsed = time.perf_counter() - start
    keyframes = len(set(zip(result.videos, result.seconds.tolist())))
    print(
        f"{keyframes} keyframes, {len(result.scores)} boxes in {elapsed:.1f} s "
        f"({keyframes / max(elapsed, 1e-9):.2f} keyframes/s)"
    )
    if args.output_dir:
        print(
            f"written: {os.path.join(args.output_dir, 'detections.csv')}, "
            f"{os.path.join(args.output_dir, 'metrics.json')}"
        )
    print(f"frame-mAP@0.5IOU: {result.mean_ap:.6f}")
    return 0


COMMAND = Command(NAME, add_parser, run, check_usage=check_usage, check_inputs=check_inputs)
