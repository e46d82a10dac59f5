"""`keras-slowfast classify`: the top classes of a video, as its preset was tested.

Examples::

    keras-slowfast classify video.mp4                      # SlowFast 8x8 R50, Kinetics-400
    keras-slowfast classify video.mp4 --views 1 --top 3    # one centred view, quicker
    keras-slowfast classify video.mp4 --views 1 --gradcam cam.mp4   # Grad-CAM overlay video
"""

import argparse
import os
import time
from typing import Any

from keras_slowfast.cli.common import (
    Command,
    add_model_args,
    add_run_flags,
    annotate_windows,
    build_preset_model,
    centre_view_clip,
    check_model_kind,
    check_video,
    headed_classifier,
    positive,
    positive_number,
    preset_class_names,
)

__all__ = ["COMMAND", "add_parser", "check_inputs", "check_usage", "run"]

NAME = "classify"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the `classify` parser to `subparsers` (of `keras-slowfast`) and returns it.

    Example:
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> _ = add_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["classify", "video.mp4", "--views", "1"]).views
        1
    """
    p = subparsers.add_parser(
        NAME,
        help="print the top classes of a video",
        description="Classifies a video with a Kinetics (or SSv2, Charades) classifier as its "
        "preset was tested (by default its full multi-view protocol, e.g. 10 clips x 3 crops) "
        "and prints the top classes; optionally writes a Grad-CAM video of the centre view "
        "(--gradcam) or the video with the top classes of each window drawn on it "
        "(--annotate).",
    )
    p.add_argument("video", help="the video file")
    add_model_args(p)
    p.add_argument(
        "--views",
        type=int,
        choices=(1, 30),
        default=None,
        help="default: the preset's published protocol (10 clips x 3 crops for Kinetics); "
        "1: one centred view",
    )
    p.add_argument("--top", type=positive, default=5, help="how many classes to print")
    p.add_argument(
        "--gradcam",
        metavar="OUT.mp4",
        default=None,
        help="also write the Grad-CAM maps of the centre view (centred clip, centre crop) "
        "as a video: [frame | slow | fast]",
    )
    p.add_argument(
        "--gradcam-class",
        type=int,
        default=None,
        metavar="N",
        help="the class index Grad-CAM explains (default: the centre view's top class)",
    )
    p.add_argument(
        "--annotate",
        metavar="OUT.mp4",
        default=None,
        help="also write the video with the top classes (up to 3) of a window every "
        "--stride seconds drawn on the frames it covers",
    )
    p.add_argument(
        "--stride",
        type=positive_number,
        default=None,
        help="with --annotate: seconds between window centres (default: 1)",
    )
    add_run_flags(p, quiet=False)
    return p


def check_usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """`--gradcam-class` and `--stride` without their partner flags are usage errors.

    Also fills in the default of `--stride`.

    Example:
        >>> args = argparse.Namespace(gradcam=None, gradcam_class=None, annotate=None,
        ...                           stride=None)
        >>> check_usage(args, argparse.ArgumentParser())
        >>> args.stride
        1.0
    """
    if args.gradcam_class is not None and args.gradcam is None:
        parser.error("--gradcam-class has no effect without --gradcam OUT.mp4")
    if args.stride is not None and args.annotate is None:
        parser.error("--stride has no effect without --annotate OUT.mp4")
    args.stride = 1.0 if args.stride is None else args.stride


def check_inputs(args: argparse.Namespace) -> None:
    """A classifier with a head, and a readable video (before TensorFlow loads).

    Example:
        >>> args = argparse.Namespace(model="slowfast_8x8_r50_kinetics400", video="missing.mp4")
        >>> check_inputs(args)
        Traceback (most recent call last):
        ...
        ValueError: No video file at this path. Received: video='missing.mp4'
    """
    check_model_kind(
        NAME,
        args.model,
        headed_classifier,
        " (AVA detectors also need person boxes; self-supervised backbones have no classes)",
    )
    check_video(args.video)


def run(args: argparse.Namespace) -> int:
    """Prints the top classes of `args.video`; writes the Grad-CAM and annotated videos.

    Returns:
        The exit status, 0.

    Example:
        >>> from keras_slowfast.cli import build_parser
        >>> run(build_parser().parse_args(["classify", "video.mp4"]))  # doctest: +SKIP
        0
    """
    from keras_slowfast.inference import classify_video, describe_protocol
    from keras_slowfast.labels import decode_predictions

    preset, model = build_preset_model(args)
    classes = model.output_shape[-1]
    if args.gradcam_class is not None and not 0 <= args.gradcam_class < classes:
        raise ValueError(
            f"--gradcam-class must be a class index in [0, {classes}). "
            f"Received: --gradcam-class {args.gradcam_class}"
        )
    start = time.perf_counter()
    probs = classify_video(model, args.video, preset=preset.name, views=args.views)
    elapsed = time.perf_counter() - start
    print(
        f"{os.path.basename(args.video)}: {preset.name}, weights {args.weights or preset.weights}, "
        f"{describe_protocol(preset.name, args.views)}, {args.precision}, {elapsed:.1f} s"
    )
    names = preset.labels if model.output_shape[-1] == preset.classes else None
    top = decode_predictions(probs[None], args.top, class_names=names)[0]
    for rank, (index, name, score) in enumerate(top):
        print(f"{rank + 1:>3}. {score:8.4f}  {name}  (class {index})")
    if args.gradcam is not None:
        _write_gradcam(args, model, preset, names)
    if args.annotate is not None:
        _write_annotated(args, model, preset)
    return 0


def _write_gradcam(args, model, preset, names):
    """`classify --gradcam`: Grad-CAM of the quick centre view, written as a video."""
    from keras_slowfast.labels import class_names_for
    from keras_slowfast.visualize import grad_cam, write_gradcam_video

    proto = preset.protocol
    clip = centre_view_clip(args.video, preset)
    heatmaps, index = grad_cam(model, clip, class_index=args.gradcam_class)
    name = class_names_for(model.output_shape[-1], names)[index]
    score = float(model.predict_on_batch(clip[None])[0, index])
    # Uniform clips play in real time; a segment clip spans the video, shown at 8 fps.
    fps = proto.target_fps / proto.sampling_rate if proto.sampling == "uniform" else 8
    write_gradcam_video(clip, heatmaps, args.gradcam, fps=fps, title=f"{name} {score:.2f}")
    print(f"Grad-CAM of class {index} ({name}, {score:.4f} on the centre view): {args.gradcam}")


def _write_annotated(args, model, preset):
    """`classify --annotate`: one window every `--stride` seconds, labels drawn per window."""
    from keras_slowfast.inference import timeline

    names = preset_class_names(preset, model.output_shape[-1])
    windows = list(
        timeline(model, args.video, preset.name, window_stride_seconds=args.stride, progress=True)
    )
    annotate_windows(args.video, windows, names, args.annotate, min(args.top, 3, len(names)), True)


COMMAND = Command(NAME, add_parser, run, check_usage=check_usage, check_inputs=check_inputs)
