"""`keras-slowfast data-service`: a `tf.data` service dispatcher or worker until SIGINT/SIGTERM.

On startup the command prints one line, `data-service <kind> listening on HOST:PORT`,
(flushed), so scripts can wait for it and read the bound port (useful with `--port 0`).

Example::

    keras-slowfast data-service dispatcher --port 5050 --work-dir gs://bucket/ds --fault-tolerant
    keras-slowfast data-service worker --dispatcher dispatcher-host:5050 --port 5051 \\
        --worker-address "$(hostname -f)"
"""

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from keras_slowfast.cli.common import Command, print_error

__all__ = ["COMMAND", "add_arguments", "add_parser", "build_parser", "main", "port", "run"]

NAME = "data-service"
_DESCRIPTION = (
    "Run a tf.data service dispatcher or worker; input pipelines given "
    "its address (examples/train.py --data_service_address) run on the workers."
)


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535.

    Example:
        >>> port("5050")
        5050
        >>> port("65536")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be in [0, 65535], got 65536
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"must be in [0, 65535], got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the `dispatcher` / `worker` subcommands to `parser`.

    Example:
        >>> p = argparse.ArgumentParser()
        >>> add_arguments(p)
        >>> p.parse_args(["worker", "--dispatcher", "localhost:5050"]).port
        0
    """
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser(
        "dispatcher",
        help="run a dispatcher (one per cluster)",
        description="Runs the tf.data service dispatcher that workers register with and "
        "input pipelines are given the address of (one per cluster).",
    )
    p.add_argument("--port", type=port, default=0, help="port (default 0: any free port)")
    p.add_argument(
        "--work-dir",
        default=None,
        help="folder for the dispatcher's journal (storage that outlives this machine)",
    )
    p.add_argument(
        "--fault-tolerant",
        action="store_true",
        help="journal state to --work-dir so that a restarted dispatcher recovers its jobs",
    )
    p = sub.add_parser(
        "worker",
        help="run a worker (one or more per CPU machine)",
        description="Runs a tf.data service worker that registers with --dispatcher and "
        "runs the input pipelines it is given (one or more per CPU machine).",
    )
    p.add_argument(
        "--dispatcher", required=True, metavar="HOST:PORT", help="the dispatcher's address"
    )
    p.add_argument("--port", type=port, default=0, help="port (default 0: any free port)")
    p.add_argument(
        "--worker-address",
        default=None,
        metavar="HOST",
        help="host name or IP address consumers reach this worker at (default: localhost)",
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the `data-service` parser to `subparsers` (of `keras-slowfast`) and returns it.

    Example:
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> _ = add_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["data-service", "dispatcher", "--port", "5050"]).port
        5050
    """
    p = subparsers.add_parser(
        NAME,
        help="run a tf.data service dispatcher or worker (input on CPU hosts)",
        description=_DESCRIPTION,
    )
    add_arguments(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `keras-slowfast data-service` on its own.

    Example:
        >>> build_parser().parse_args(["dispatcher", "--port", "5050"]).port
        5050
    """
    parser = argparse.ArgumentParser(prog=f"keras-slowfast {NAME}", description=_DESCRIPTION)
    add_arguments(parser)
    return parser


def check_usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """`--fault-tolerant` without `--work-dir` is a usage error.

    Example:
        >>> check_usage(build_parser().parse_args(["worker", "--dispatcher", "h:5050"]),
        ...             build_parser())
    """
    if getattr(args, "fault_tolerant", False) and not args.work_dir:
        parser.error("--fault-tolerant needs --work-dir (the dispatcher's journal)")


def run(args: argparse.Namespace, stop_event: threading.Event | None = None) -> int:
    """Starts the server `args` describe and blocks until SIGINT/SIGTERM (or `stop_event`).

    Args:
        args: parsed arguments of `build_parser`.
        stop_event: a `threading.Event` that also stops the server (for tests).

    Returns:
        The exit status, 0.

    Example:
        >>> stop = threading.Event(); stop.set()
        >>> run(build_parser().parse_args(["dispatcher"]), stop)  # doctest: +ELLIPSIS
        data-service dispatcher listening on localhost:...
        data-service dispatcher stopped
        0
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_slowfast.training import data_service

    if args.role == "dispatcher":
        server = data_service.start_dispatcher(args.port, args.work_dir, args.fault_tolerant)
    else:
        server = data_service.start_worker(args.dispatcher, args.port, args.worker_address)
    stop = stop_event if stop_event is not None else threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: stop.set())
    try:
        print(f"data-service {server.kind} listening on {server.address}", flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"data-service {server.kind} stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `keras-slowfast data-service` on its own; returns the exit status.

    Returns:
        0 once stopped; 2 on a bad argument.

    Example:
        >>> main(["worker", "--dispatcher", "localhost:5050"])  # doctest: +SKIP
    """
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    check_usage(args, parser)
    try:
        return run(args)
    except ValueError as e:
        print_error(NAME, e)
        return 2


COMMAND = Command(NAME, add_parser, run, check_usage=check_usage, reported_errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
