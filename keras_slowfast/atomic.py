"""Atomic file writes: a temporary file beside the target, renamed onto it on success.

A reader never sees a half-written file, and an interrupted write leaves nothing behind.
"""

import contextlib
import os
import tempfile

__all__ = ["atomic_path", "save_weights_atomically", "write_text_atomically"]


@contextlib.contextmanager
def atomic_path(path, suffix=""):
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
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomically(path, text):
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


def save_weights_atomically(model, path):
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
