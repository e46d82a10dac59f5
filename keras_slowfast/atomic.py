"""Atomic file writes: a temporary file beside the target, renamed onto it on success.

A reader never sees a half-written file, and an interrupted write leaves nothing behind.
:func:`file_lock` serialises processes writing the same files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

try:
    import fcntl
except ImportError:  # Windows: `file_lock` falls back to exclusive creation.
    fcntl = None

__all__ = [
    "LockTimeout",
    "atomic_path",
    "file_lock",
    "save_weights_atomically",
    "write_text_atomically",
]


def _umask():
    """The process' file mode creation mask (read without changing it where possible)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yields a temporary file name beside `path`; renames it onto `path` when the block ends.

    The temporary file is in the same folder (so `os.replace` is atomic) and ends with
    `suffix` (for writers that insist on an extension, such as Keras' `.weights.h5`). If the
    block raises, the temporary file is removed and `path` is left as it was.

    Example:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = pathlib.Path(tmp).write_text("done")
        >>> target.read_text(), len(list(target.parent.iterdir()))
        ('done', 1)
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}", dir=folder
    )
    os.close(handle)
    try:
        yield tmp
        # mkstemp creates the file owner-only; give it the mode a plain open() would.
        if os.path.isfile(tmp):
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically.

    Example:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.json"
        >>> write_text_atomically(target, "{}")
        >>> target.read_text()
        '{}'
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)


def save_weights_atomically(model: keras.Model, path: str | os.PathLike) -> None:
    """Writes `model.save_weights(path)` through a temporary file beside it (see `atomic_path`).

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = os.path.join(tmp, "runs", "demo", "final.weights.h5")
        ...     save_weights_atomically(model, path)
        ...     sorted(os.listdir(os.path.dirname(path)))  # no temporary file left behind
        ['final.weights.h5']
    """
    path = os.fspath(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"`path` must end with '.weights.h5'. Received: path={path!r}")
    # Keras insists on the `.weights.h5` suffix, so the temporary name keeps it.
    with atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp, overwrite=True)


class LockTimeout(TimeoutError):
    """A :func:`file_lock` was not acquired within its timeout."""


def _flock_acquire(path, deadline, poll):
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(f"Another process still holds the lock {path}.") from None
                    time.sleep(poll)
            # The previous holder removes the file before releasing it: a lock taken on a
            # removed (or replaced) file protects nothing, so start again on the new one.
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(fd), current):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _exclusive_acquire(path, deadline, poll, stale_s):
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                age = time.time() - os.stat(path).st_mtime
            except FileNotFoundError:
                continue
            if age > stale_s:
                # Its holder died without removing it (a killed process).
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                continue
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"Another process has held the lock {path} for {age:.0f} s; if none is "
                    "running, remove that file."
                ) from None
            time.sleep(poll)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return None


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike,
    timeout: float = 1800.0,
    poll: float = 0.1,
    stale_s: float = 600.0,
    method: str = "auto",
) -> Iterator[str]:
    """Holds an inter-process lock on the file `path` for the duration of the block.

    With `fcntl` (POSIX) the lock is `flock` on `path`: the kernel releases it when its
    holder exits, even when killed, so a lock is never stale. Elsewhere `path` is created
    exclusively (`O_EXCL`) and removed on release; a lock file older than `stale_s` seconds
    is taken to be left by a killed process and replaced. Either way the file is removed
    when the block ends.

    Args:
        path: the lock file (its folder must exist).
        timeout: seconds to wait for another holder before raising :class:`LockTimeout`.
        poll: seconds between attempts.
        stale_s: age after which an exclusive lock file is stale (`"exclusive"` only).
        method: `"auto"` (`"flock"` where `fcntl` exists, else `"exclusive"`), `"flock"`
            or `"exclusive"`.

    Raises:
        LockTimeout: when the lock is still held by another after `timeout` seconds.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with file_lock(os.path.join(folder, "demo.lock")):
        ...     os.listdir(folder)
        ['demo.lock']
        >>> os.listdir(folder)
        []
    """
    if method not in ("auto", "flock", "exclusive"):
        raise ValueError(
            f"`method` must be 'auto', 'flock' or 'exclusive'. Received: method={method!r}"
        )
    if method == "auto":
        method = "flock" if fcntl is not None else "exclusive"
    if method == "flock" and fcntl is None:
        raise ValueError("`method='flock'` needs the fcntl module. Received: method='flock'")
    path = os.fspath(path)
    deadline = time.monotonic() + timeout
    if method == "flock":
        fd = _flock_acquire(path, deadline, poll)
    else:
        fd = _exclusive_acquire(path, deadline, poll, stale_s)
    try:
        yield path
    finally:
        # Removed while still held: a waiter that then gets the old file notices and retries.
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        if fd is not None:
            os.close(fd)
