"""`keras-slowfast export`: a TF Serving SavedModel, or an ONNX, OpenVINO or TFLite file.

Examples::

    keras-slowfast export serving/slowfast --model slowfast_8x8_r50 --weights k400
    keras-slowfast export slowfast.onnx --format onnx      # also openvino (.xml), tflite
"""

import argparse
from typing import Any

from keras_slowfast.cli.common import (
    Command,
    add_model_args,
    add_run_flags,
    any_model,
    build_model,
    positive,
    print_error,
)

__all__ = ["COMMAND", "FORMATS", "add_parser", "check_usage", "run"]

NAME = "export"
# The formats besides saved_model: format -> (exporter of keras_slowfast.export, what it writes).
FORMATS = {
    "onnx": ("export_onnx", "ONNX model"),
    "openvino": ("export_openvino", "OpenVINO IR (.xml + .bin)"),
    "tflite": ("export_tflite", "TensorFlow Lite model"),
}
# (flag, value the flag must have, module to import, extra that installs it)
EXTRAS = (
    ("--format", "onnx", "tf2onnx", "onnx"),
    ("--format", "openvino", "openvino", "openvino"),
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the `export` parser to `subparsers` (of `keras-slowfast`) and returns it.

    Example:
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> _ = add_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["export", "m.onnx", "--format", "onnx"]).format
        'onnx'
    """
    p = subparsers.add_parser(
        NAME,
        help="write a TF Serving SavedModel (export_dir/<version>/), or an ONNX, OpenVINO "
        "or TensorFlow Lite file",
        description="Exports a classifier or detector with its preprocessing: a SavedModel "
        "for TF Serving (export_dir/<version>/, signature serving_default with top-k "
        "outputs), or an ONNX, OpenVINO IR or TensorFlow Lite file.",
    )
    p.add_argument(
        "export_dir",
        help="the model's base folder for TF Serving; with another --format, the file to "
        "write (.onnx, .xml, .tflite)",
    )
    add_model_args(p, accepts=any_model)
    p.add_argument(
        "--format",
        choices=("saved_model", *FORMATS),
        default="saved_model",
        help="saved_model (default), onnx, openvino or tflite (classifiers only); onnx and "
        "openvino need the optional packages: pip install 'keras-slowfast[onnx]' or "
        "'keras-slowfast[openvino]'",
    )
    p.add_argument(
        "--quantize",
        choices=("none", "dynamic"),
        default="none",
        help="with --format tflite: dynamic-range quantisation (int8 weights)",
    )
    p.add_argument(
        "--version",
        type=positive,
        default=None,
        help="with --format saved_model: the model version, written to export_dir/<version>/ "
        "(default: 1)",
    )
    p.add_argument(
        "--top-k",
        type=positive,
        default=None,
        help="with --format saved_model: classes in the signature's top_k_scores and "
        "top_k_indices outputs (default: 5)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing version/file")
    add_run_flags(p, quiet=False)
    return p


def check_usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Flags of one format given with another are usage errors; fills in their defaults.

    Example:
        >>> args = argparse.Namespace(format="saved_model", quantize="none", version=None,
        ...                           top_k=None)
        >>> check_usage(args, argparse.ArgumentParser())
        >>> args.version, args.top_k
        (1, 5)
    """
    if args.quantize != "none" and args.format != "tflite":
        parser.error(f"--quantize {args.quantize} has no effect without --format tflite "
                     f"(received --format {args.format})")  # fmt: skip
    for flag, value in (("--version", args.version), ("--top-k", args.top_k)):
        if value is not None and args.format != "saved_model":
            parser.error(f"{flag} has no effect without --format saved_model "
                         f"(received --format {args.format})")  # fmt: skip
    args.version = 1 if args.version is None else args.version
    args.top_k = 5 if args.top_k is None else args.top_k


def run(args: argparse.Namespace) -> int:
    """Builds the model and exports it in `args.format` to `args.export_dir`.

    Returns:
        The exit status: 0, or 2 when the format's converter does not import.

    Example:
        >>> from keras_slowfast.cli import build_parser
        >>> run(build_parser().parse_args(["export", "serving/slowfast"]))  # doctest: +SKIP
        0
    """
    from keras_slowfast.export import export_saved_model

    if args.format != "saved_model":
        return _export_file(args)
    model = build_model(args)
    path = export_saved_model(
        model, args.export_dir, version=args.version, top_k=args.top_k, overwrite=args.overwrite
    )
    print(f"SavedModel for TF Serving written to {path}")
    print(
        "signature serving_default: clip uint8 (batch, frames, height, width, 3)"
        + (", boxes float32 (batch, max_boxes, 4)" if isinstance(model.input, dict) else "")
        + " -> probabilities, top_k_scores, top_k_indices"
    )
    return 0


def _export_file(args):
    """An ONNX, OpenVINO or TFLite file."""
    from keras_slowfast import export

    function, label = FORMATS[args.format]
    model = build_model(args)
    kwargs = {"quantize": "dynamic"} if args.quantize == "dynamic" else {}
    try:
        path = getattr(export, function)(model, args.export_dir, overwrite=args.overwrite, **kwargs)
    except ImportError as e:
        print_error(NAME, e)
        return 2
    print(f"{label} written to {path}")
    print(
        "inputs: clip float32 (batch, frames, height, width, 3)"
        + (", boxes float32 (batch, boxes, 4)" if isinstance(model.input, dict) else "")
        + " -> probabilities"
    )
    return 0


COMMAND = Command(NAME, add_parser, run, check_usage=check_usage, extras=EXTRAS)
