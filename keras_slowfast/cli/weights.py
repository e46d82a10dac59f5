"""`keras-slowfast weights`: every preset, its published weights and checkpoint, the cache.

Example::

    keras-slowfast weights                                 # the published weights
"""

import argparse
from typing import Any

from keras_slowfast.cli.common import Command

__all__ = ["COMMAND", "add_parser", "run"]

NAME = "weights"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the `weights` parser to `subparsers` (of `keras-slowfast`) and returns it.

    Example:
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> _ = add_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["weights"]).command
        'weights'
    """
    return subparsers.add_parser(
        NAME,
        help="list every preset, its checkpoint and the cache folder",
        description="Lists every preset (published weights, checkpoint format, dataset, "
        "published metric, test protocol and checkpoint path), the download base URL and the "
        "cache folder.",
    )


def run(args: argparse.Namespace) -> int:
    """Prints the download base URL, the cache folder and a table of every preset.

    Returns:
        The exit status, 0.

    Example:
        >>> run(argparse.Namespace())  # doctest: +ELLIPSIS
        base URL: ...
        slowfast_8x8_r50_kinetics400  k400 ...
        0
    """
    from keras_slowfast import hub, presets

    print(f"base URL: {hub.base_url()}  (set ${hub.MIRROR_ENV} to use a mirror)")
    print(f"cache:    {hub.cache_dir()}")
    header = ("preset", "weights", "format", "dataset", "metric", "protocol", "checkpoint")
    rows = [header]
    for p in presets.PRESETS:
        proto = p.protocol
        views = f"{proto.temporal_views}x{proto.spatial_crops}"
        rows.append(
            (
                p.name,
                p.weights or "-",
                p.checkpoint.format if p.checkpoint else "-",
                p.dataset or "-",
                f"{p.metric} {p.value}" if p.value is not None else "-",
                f"{proto.num_frames}x{proto.sampling_rate} {views} {proto.ensemble}"
                + (" bgr" if proto.channel_order == "bgr" else "")
                + (" segment" if proto.sampling == "segment" else ""),
                p.checkpoint.path if p.checkpoint else "(architecture only)",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


COMMAND = Command(NAME, add_parser, run)
