"""The `keras-slowfast` command: classify a video, convert checkpoints, export for serving.

One module per command (`keras_slowfast.cli.classify`, ...) holds its arguments, its checks
and its run function (a :class:`keras_slowfast.cli.common.Command`); `common` holds what
they share. This module assembles the parser and runs a command line.

Examples::

    keras-slowfast classify video.mp4                      # SlowFast 8x8 R50, Kinetics-400
    keras-slowfast classify video.mp4 --views 1 --top 3    # one centred view, quicker
    keras-slowfast classify video.mp4 --model slowfast_16x8_r101_50_50
    keras-slowfast classify video.mp4 --weights SLOWFAST_8x8_R50.pkl
    keras-slowfast classify video.mp4 --views 1 --gradcam cam.mp4   # Grad-CAM overlay video
    keras-slowfast convert SLOWFAST_8x8_R50.pkl slowfast_8x8_r50.weights.h5
    keras-slowfast export serving/slowfast --model slowfast_8x8_r50 --weights k400
    keras-slowfast export slowfast.onnx --format onnx      # also openvino (.xml), tflite
    keras-slowfast weights                                 # the published weights
    keras-slowfast info slowfast_8x8_r50                   # params, GMACs, sampling, accuracy
    keras-slowfast data-service dispatcher --port 5050     # tf.data service (docs/scaling.md)
    keras-slowfast timeline long.mp4 --csv timeline.csv    # top classes every second
    keras-slowfast features videos.txt --output feats/     # pooled features every second
    keras-slowfast write-tfrecords train.csv tfrecords/train --num-shards 256
"""

import argparse
import sys
from collections.abc import Sequence

from keras_slowfast.cli import (
    classify,
    convert,
    data_service,
    detect,
    evaluate_ava,
    export,
    extract_frames,
    features,
    info,
    timeline,
    weights,
    write_tfrecords,
)
from keras_slowfast.cli.common import PROG, check_extras, print_error
from keras_slowfast.cli.quiet_start import import_tensorflow

__all__ = ["build_parser", "main"]

# The commands, in the order `keras-slowfast --help` lists them.
COMMANDS = {
    module.COMMAND.name: module.COMMAND
    for module in (
        classify,
        convert,
        export,
        evaluate_ava,
        extract_frames,
        detect,
        timeline,
        features,
        weights,
        info,
        write_tfrecords,
        data_service,
    )
}


def build_parser() -> argparse.ArgumentParser:
    """The `argparse` parser of the `keras-slowfast` command, every command included.

    Example:
        >>> args = build_parser().parse_args(["classify", "video.mp4", "--views", "1"])
        >>> args.command, args.model, args.views
        ('classify', 'slowfast_8x8_r50_kinetics400', 1)
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="SlowFast video networks for Keras: classify, convert, export.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(sub).set_defaults(command_parser=sub.choices[command.name])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status.

    Usage errors (argparse's, and flags that would have no effect) exit with status 2
    before anything else runs; so do a missing optional package, a model of the wrong kind
    and an input that is not a readable video. Progress goes to stderr, results to stdout.

    Example:
        >>> main(["classify", "video.mp4", "--views", "1"])  # doctest: +SKIP
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    if command.check_usage is not None:
        command.check_usage(args, args.command_parser)
    try:
        check_extras(args, command.extras)
        if command.check_inputs is not None:
            command.check_inputs(args)
        tf = import_tensorflow()
        if getattr(args, "cpu", False):
            tf.config.set_visible_devices([], "GPU")
        return command.run(args)
    except command.reported_errors as e:
        print_error(args.command, e)
        return 2
