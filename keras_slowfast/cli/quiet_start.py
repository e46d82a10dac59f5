"""A quiet start: TensorFlow's C++ start-up logs stay off stderr unless asked for.

The `keras-slowfast` commands import TensorFlow (and optional packages that import it)
inside :func:`quiet_tensorflow_start`, once every check that needs no model has passed.

Example:
    >>> with quiet_tensorflow_start():
    ...     import json  # a module that may import TensorFlow
"""

import contextlib
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from types import ModuleType

__all__ = ["filtered_stderr", "gpu_driver_present", "import_tensorflow", "quiet_tensorflow_start"]

_TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
# absl's notice that it logs to stderr before it is set up, and a C++ log line (severity
# letter I, W, E or F, then the date).
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"
_CPP_LOG_LINE = re.compile(r"^([IWEF])\d{4} ")
_SEVERITIES = "IWEF"


def gpu_driver_present() -> bool:
    """Whether an NVIDIA driver is installed (Linux or WSL): TensorFlow may find a GPU.

    Example:
        >>> isinstance(gpu_driver_present(), bool)
        True
    """
    devices = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg")
    return sys.platform.startswith("linux") and any(os.path.exists(d) for d in devices)


@contextlib.contextmanager
def quiet_tensorflow_start() -> Iterator[None]:
    """Keeps TensorFlow's C++ start-up logs off stderr while the block imports it.

    Unless `TF_CPP_MIN_LOG_LEVEL` is set (then nothing changes), it is set to 2 (errors
    only), or to 3 where no NVIDIA driver is installed: there TensorFlow's GPU probe can only
    fail ("failed call to cuInit"), and says so at the error level. Some start-up lines are
    written before TensorFlow reads the variable (absl's logging is not set up yet): while
    the block runs, the lines on file descriptor 2 below that level are dropped and every
    other line is passed on as it comes.

    Example:
        >>> with quiet_tensorflow_start():
        ...     import tensorflow as tf  # doctest: +SKIP
    """
    if os.environ.get(_TF_LOG_LEVEL) is not None or "tensorflow" in sys.modules:
        yield
        return
    level = 2 if gpu_driver_present() else 3
    os.environ[_TF_LOG_LEVEL] = str(level)

    def keep(line):
        if line.startswith(_ABSL_NOTICE):
            return False
        match = _CPP_LOG_LINE.match(line)
        return match is None or _SEVERITIES.index(match[1]) >= level

    with filtered_stderr(keep):
        yield


@contextlib.contextmanager
def filtered_stderr(keep: Callable[[str], bool]) -> Iterator[None]:
    """Passes each line written to file descriptor 2 in the block through `keep(line)`.

    Lines for which `keep` is false are dropped; the others reach the real stderr as they
    come. Without a real stderr (no file descriptor 2), nothing is filtered.

    Example:
        >>> with filtered_stderr(lambda line: not line.startswith("noise")):
        ...     _ = os.write(2, b"noise: dropped\\n")
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no real stderr: nothing to filter
        yield
        return
    read_end, write_end = os.pipe()

    def forward():
        with open(read_end, "rb") as pipe:
            for line in pipe:
                if keep(line.decode("utf-8", "replace")):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the thread reads to its end
        thread.join(timeout=5.0)
        os.close(saved)


def import_tensorflow() -> ModuleType:
    """Imports TensorFlow inside :func:`quiet_tensorflow_start` and returns it.

    Example:
        >>> tf = import_tensorflow()  # doctest: +SKIP
        >>> tf.config.set_visible_devices([], "GPU")  # doctest: +SKIP
    """
    with quiet_tensorflow_start():
        import tensorflow as tf
    return tf
