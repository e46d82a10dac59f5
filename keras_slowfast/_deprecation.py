"""Former public names kept for one release: calling one warns and calls its new name."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["deprecated_alias"]


def deprecated_alias(
    function: Callable[..., Any], old_name: str, module: str
) -> Callable[..., Any]:
    """`function` under its former name `module.old_name`, warning when called.

    The warning is a `DeprecationWarning` that names the new function; the alias has the
    function's signature and is otherwise the function itself.

    Example:
        >>> def area(w, h):
        ...     return w * h
        >>> size = deprecated_alias(area, "size", "shapes")
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     size(2, 3)
        6
        >>> print(caught[0].message)
        shapes.size is deprecated and will be removed in the next release: use ...area.
    """
    new = f"{function.__module__}.{function.__qualname__}"

    @functools.wraps(function)
    def alias(*args, **kwargs):
        warnings.warn(
            f"{module}.{old_name} is deprecated and will be removed in the next release: "
            f"use {new}.",
            DeprecationWarning,
            stacklevel=2,
        )
        return function(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old_name
    alias.__module__ = module
    alias.__doc__ = f"Deprecated alias of `{new}`, removed in the next release."
    return alias
