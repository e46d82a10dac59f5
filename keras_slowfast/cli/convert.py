"""`keras-slowfast convert`: a PySlowFast / PyTorchVideo / Caffe2 checkpoint to .weights.h5.

Example::

    keras-slowfast convert SLOWFAST_8x8_R50.pkl slowfast_8x8_r50.weights.h5
"""

import argparse
from typing import Any

from keras_slowfast.cli.common import Command, any_model, model_kwargs, model_name, positive

__all__ = ["COMMAND", "add_parser", "run"]

NAME = "convert"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the `convert` parser to `subparsers` (of `keras-slowfast`) and returns it.

    Example:
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> _ = add_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["convert", "in.pkl", "out.weights.h5"]).model
        'slowfast_8x8_r50'
    """
    p = subparsers.add_parser(
        NAME,
        help="convert a .pyth/.pkl checkpoint to .weights.h5",
        description="Converts a PySlowFast or PyTorchVideo .pyth, or a Caffe2 .pkl, checkpoint "
        "of the given architecture to a Keras .weights.h5 file (every tensor used once, every "
        "weight assigned), then reloads the file and compares the outputs.",
    )
    p.add_argument("checkpoint", help="PySlowFast / PyTorchVideo .pyth or Caffe2 .pkl file")
    p.add_argument("output", help="the .weights.h5 file to write")
    p.add_argument(
        "--model",
        default="slowfast_8x8_r50",
        type=model_name(any_model),
        metavar="PRESET",
        help="the preset or architecture the checkpoint belongs to (default: %(default)s)",
    )
    p.add_argument("--width-per-group", type=positive, default=None, help=argparse.SUPPRESS)
    p.add_argument("--classes", type=positive, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--skip-check", action="store_true", help="skip reloading the file and comparing outputs"
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Converts `args.checkpoint` to `args.output`, then reloads it and compares outputs.

    Returns:
        The exit status: 0, or 1 when the reloaded file's outputs differ.

    Example:
        >>> from keras_slowfast.cli import build_parser
        >>> args = build_parser().parse_args(["convert", "SLOWFAST_8x8_R50.pkl", "out.weights.h5"])
        >>> run(args)  # doctest: +SKIP
        0
    """
    from keras_slowfast import hub

    kwargs = model_kwargs(args)
    model, summary = hub.convert_checkpoint(args.checkpoint, args.output, args.model, **kwargs)
    print(f"checkpoint: {args.checkpoint}")
    print(f"format:     {summary['format']}")
    print(f"preset:     {summary['preset']}")
    print(f"tensors:    {summary['tensors']}")
    print(f"parameters: {summary['params']:,}")
    print(f"width:      {summary['width_per_group']}, classes: {summary['classes']}")
    print(f"written:    {args.output}")
    if not args.skip_check:
        check = hub.check_weights_file(
            model,
            args.output,
            args.model,
            width_per_group=summary["width_per_group"],
            classes=summary["classes"],
        )
        ok = check["finite"] and check["max_abs_diff"] == 0.0
        print(
            f"check:      reloaded output {check['output_shape']}, max abs diff "
            f"{check['max_abs_diff']:.3g}, finite {check['finite']} -> "
            f"{'OK' if ok else 'FAILED'}"
        )
        if not ok:
            return 1
    return 0


COMMAND = Command(NAME, add_parser, run)
