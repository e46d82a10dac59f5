"""Plumbing shared by the `tf.data` loaders (Kinetics videos, TFRecords, AVA).

The exit gate of the Python decode calls, what a loader does with a video it cannot read
(`on_error="skip"` or `"raise"`), and the `(..., ok)` flag that drops a skipped element.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from keras_slowfast.data._video_io import VideoReadError

if TYPE_CHECKING:
    import tensorflow as tf

    from keras_slowfast.data.video import DecodeErrorCounter

_T = TypeVar("_T")

__all__ = [
    "DECODE_GATE",
    "MODES",
    "ON_ERROR",
    "VIDEO_LIST_SUFFIXES",
    "DecodeGate",
    "as_read_error",
    "check_mode",
    "check_on_error",
    "drop_last",
    "last_is_ok",
    "read_video_list_entries",
    "report_failure",
]

#: The modes of a loader: random clips (train, val) or every test view (test).
MODES = ("train", "val", "test")
#: What a loader may do with a video it cannot read.
ON_ERROR = ("skip", "raise")
#: File endings of a list of videos (one path per line), as opposed to a video file.
VIDEO_LIST_SUFFIXES = (".txt", ".csv", ".lst", ".list")


def read_video_list_entries(list_file: str | os.PathLike) -> list[str]:
    """The video paths a list file names, as written: the first comma- or whitespace-separated
    field of each line, blank lines and `#` comments left out.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with open(f"{tmp}/videos.txt", "w") as f:
        ...         _ = f.write("# AVA\\nk00.mp4\\n\\nclips/a.mp4,train\\n/v/b.mp4 3\\n")
        ...     read_video_list_entries(f"{tmp}/videos.txt")
        ['k00.mp4', 'clips/a.mp4', '/v/b.mp4']
    """
    entries = []
    with open(list_file, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append(line.replace(",", " ").split()[0])
    return entries


def check_mode(mode: str) -> str:
    """A `ValueError` naming `mode` unless it is one of `MODES`."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    return mode


def check_on_error(on_error: str) -> str:
    """A `ValueError` naming `on_error` unless it is one of `ON_ERROR`."""
    if on_error not in ON_ERROR:
        raise ValueError(f"`on_error` must be one of {ON_ERROR}. Received: on_error={on_error!r}")
    return on_error


class DecodeGate:
    """Lets Python decode calls from tf.data threads drain before the interpreter exits.

    A tf.data iterator still alive at exit keeps calling its `numpy_function`s from
    background threads; a call that is running, or starts, while Python finalises waits for
    the GIL forever and the process never exits. At exit this gate makes new calls return a
    placeholder at once (the pipeline's buffers then fill and its threads go idle) and waits
    for the calls in flight, then for the pipeline to go quiet (no call for `quiet`
    seconds), so that no call starts once the interpreter finalises; a loaded machine fills
    the buffers slowly.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._calls = 0
        self.closing = False

    def enter(self) -> bool:
        """Registers a decode call; False once closing (the caller must not decode)."""
        with self._lock:
            self._calls += 1
            if self.closing:
                return False
            self._active += 1
            return True

    def leave(self) -> None:
        """Ends a decode call that `enter` let in."""
        with self._lock:
            self._active -= 1

    def call(self, function: Callable[..., _T], placeholder: Callable[[], _T], *args: Any) -> _T:
        """`function(*args)` between `enter` and `leave`; `placeholder()` once closing."""
        if not self.enter():
            return placeholder()
        try:
            return function(*args)
        finally:
            self.leave()

    def drain(self, timeout: float = 60.0, quiet: float = 0.5) -> None:
        """Closes the gate and waits (at most `timeout` s) for the calls to stop."""
        with self._lock:
            self.closing = True
            calls = self._calls
        if calls == 0:  # no pipeline ever decoded here
            return
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                active, now_calls = self._active, self._calls
            if now_calls != calls:
                calls, quiet_since = now_calls, time.monotonic()
            if active == 0 and time.monotonic() - quiet_since >= quiet:
                return
            time.sleep(0.01)


DECODE_GATE = DecodeGate()
atexit.register(DECODE_GATE.drain)


def report_failure(
    path: str | os.PathLike, error: Exception, on_error: str, counter: DecodeErrorCounter
) -> None:
    """Raises `error` (`on_error="raise"`) or counts it and warns (`"skip"`)."""
    if on_error == "raise":
        raise error
    reason = error.reason if isinstance(error, VideoReadError) else str(error)
    counter.record(path, reason)
    warnings.warn(f"Skipping video {path!r}: {reason}", RuntimeWarning, stacklevel=2)


def last_is_ok(*element: tf.Tensor) -> tf.Tensor:
    """The `ok` flag a decode step appends to an element (a `Dataset.filter` predicate)."""
    return element[-1]


def drop_last(*element: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """The element without its `ok` flag (after `last_is_ok` has filtered on it)."""
    return element[:-1]


def as_read_error(path: str | os.PathLike, error: BaseException) -> VideoReadError:
    """`error` as a `VideoReadError` naming `path` (the original kept as its cause)."""
    if isinstance(error, VideoReadError):
        return error
    wrapped = VideoReadError(path, f"{type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped
