"""`keras-slowfast info`: a variant's parameters, GMACs, clip sampling and published accuracy.

Example::

    keras-slowfast info slowfast_8x8_r50                   # params, GMACs, sampling, accuracy
"""

import argparse
import math
from typing import Any

from keras_slowfast.cli.common import Command, any_model, model_name

__all__ = ["COMMAND", "add_parser", "run"]

NAME = "info"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the `info` parser to `subparsers` (of `keras-slowfast`) and returns it.

    Example:
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> _ = add_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["info", "slowfast_8x8_r50"]).variant
        'slowfast_8x8_r50'
    """
    p = subparsers.add_parser(
        NAME,
        help="print a variant's parameters, GMACs, clip sampling and published accuracy",
        description="Builds the variant (no weights, no forward pass) and prints its parameter "
        "count, its multiply-accumulates per clip at 224x224 and 256x256 (counted as fvcore "
        "counts, see keras_slowfast.model_flops), its clip sampling and its published metric.",
    )
    p.add_argument(
        "variant",
        type=model_name(any_model),
        metavar="PRESET",
        help="a preset or architecture",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Builds the variant without weights and prints what it is and what it costs.

    Returns:
        The exit status, 0.

    Example:
        >>> run(argparse.Namespace(variant="slow_8x8_r50"))  # doctest: +SKIP
        slow_8x8_r50: Slow R50 classifier, 400 classes
        ...
        0
    """
    from keras_slowfast import hub, presets
    from keras_slowfast.flops import model_flops

    preset = presets.get_preset(args.variant)
    kw = preset.kwargs
    frames, rate = preset.protocol.num_frames, preset.protocol.sampling_rate
    detector = preset.kind == presets.DETECTOR
    model = hub.from_preset(preset.name, load_weights=False)
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    statistics = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    if kw.get("single_pathway"):
        arch, pathways = "Slow", "one pathway"
    else:
        arch, alpha = "SlowFast", kw["alpha"]
        pathways = f"Slow pathway {frames // alpha} frames, Fast {frames} (alpha {alpha})"
    rows = [("parameters", f"{trainable:,} (+ {statistics:,} BatchNorm statistics)")]
    if preset.config:
        rows.insert(0, ("config", f"{preset.source} {preset.config}"))
    rows.append(("clip", f"{frames} frames, sampling rate {rate}; {pathways}"))
    for size in (224, 256):
        shape = (frames, size, size, 3)
        if detector:
            shape = {"clip": shape, "boxes": (1, 4)}
        macs = model_flops(model, shape).gmacs
        with_bn = model_flops(model, shape, batchnorm="inference").gmacs
        text = f"{macs:.2f} ({with_bn:.2f} with BatchNorm, as fvcore counts it today)"
        rows.append((f"GMACs {size}x{size}", text))
    if detector:
        rows.append(("", "for one person box; RoIAlign not counted (as fvcore)"))
    if preset.checkpoint is not None:
        rows.append(
            (
                "published",
                f"{preset.weights} weights: {preset.dataset} {preset.metric} {preset.value}",
            )
        )
        rows.append(("checkpoint", f"{preset.checkpoint.format} {preset.checkpoint.path}"))
    else:
        rows.append(("published", "no weights"))
    print(f"{preset.name}: {arch} R{kw['depth']} {preset.kind}, {preset.classes} classes")
    for label, text in rows:
        print(f"  {label + ':' if label else '':<15}{text}")
    return 0


COMMAND = Command(NAME, add_parser, run)
