"""Argument checks shared by the package, and the one format of their error messages.

Every message names the argument and the value received:
``"`top_k` must be a positive integer. Received: top_k=0"``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "argument_error",
    "check_positive_int",
    "check_positive_number",
    "is_int",
]


def argument_error(message: str, **received: object) -> ValueError:
    """A `ValueError` whose message ends with the values received.

    Example:
        >>> str(argument_error("`top_k` must be a positive integer.", top_k=0))
        '`top_k` must be a positive integer. Received: top_k=0'
    """
    values = ", ".join(f"{k}={v!r}" for k, v in received.items())
    return ValueError(f"{message} Received: {values}")


def is_int(value: object) -> bool:
    """Whether `value` is an integer (a Python or NumPy one), a bool not counting as one.

    Example:
        >>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
        (True, True, False, False)
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_positive_int(name: str, value: object, allow_none: bool = False) -> int | None:
    """`value` as an `int` when it is an integer >= 1 (or None, with `allow_none`).

    Raises:
        ValueError: naming `name` and the value received otherwise.

    Example:
        >>> check_positive_int("num_frames", np.int64(8))
        8
        >>> check_positive_int("num_frames", 0)
        Traceback (most recent call last):
        ...
        ValueError: `num_frames` must be a positive integer. Received: num_frames=0
    """
    if value is None and allow_none:
        return None
    if not is_int(value) or value < 1:
        allowed = "a positive integer or None" if allow_none else "a positive integer"
        raise argument_error(f"`{name}` must be {allowed}.", **{name: value})
    return int(value)


def check_positive_number(name: str, value: object, allow_none: bool = False) -> float | None:
    """`value` as a `float` when it is a finite number > 0 (or None, with `allow_none`).

    Raises:
        ValueError: naming `name` and the value received otherwise.

    Example:
        >>> check_positive_number("fps", 29.97)
        29.97
        >>> check_positive_number("timeout", None, allow_none=True) is None
        True
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:
        allowed = "None or a positive number" if allow_none else "a positive number"
        raise argument_error(f"`{name}` must be {allowed}.", **{name: value})
    return float(value)
