"""A small text progress bar for long commands (written to stderr, no dependency)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """Counts steps towards a total and redraws one status line on a stream.

    On a terminal the line is redrawn in place at most every `interval`
    seconds; on other streams (logs, pipes) a plain line (no carriage return,
    no terminal codes) is written at most every `log_interval` seconds and at
    the end, so logs stay short. The final count is shown once.

    Args:
        total: the number of steps, or `None` when unknown (steps may be fractions,
            e.g. megabytes).
        description: a label shown before the bar.
        unit: what a step is called (`"frames"`, `"keyframes"`).
        stream: where to write (default `sys.stderr`); `None` or
            `enabled=False` draws nothing.
        enabled: draw the bar at all.
        interval: seconds between redraws on a terminal.
        log_interval: seconds between lines on a non-terminal stream.

    Example:

    >>> import io
    >>> out = io.StringIO()
    >>> with ProgressBar(3, "demo", unit="steps", stream=out) as bar:
    ...     for _ in range(3):
    ...         bar.update()
    >>> out.getvalue().splitlines()[-1].startswith("demo: 3/3 steps")
    True
    """

    def __init__(
        self,
        total: float | None = None,
        description: str = "",
        unit: str = "",
        stream: TextIO | None = None,
        enabled: bool = True,
        interval: float = 0.2,
        log_interval: float = 10.0,
    ) -> None:
        self.total = None if total is None else _number(total)
        self.description = description
        self.unit = unit
        self.count = 0
        self._stream = (sys.stderr if stream is None else stream) if enabled else None
        self._tty = bool(self._stream is not None and getattr(self._stream, "isatty", bool)())
        self._interval = interval if self._tty else log_interval
        self._start = time.monotonic()
        self._last_draw = -float("inf")
        self._drawn = None  # the count the last line showed
        self._width = 0
        self._closed = False

    def set_description(self, description: str) -> None:
        """Changes the label (shown at the next redraw)."""
        self.description = description

    def update(self, steps: float = 1) -> None:
        """Counts `steps` more and redraws if it is time."""
        self.count += steps
        now = time.monotonic()
        if now - self._last_draw >= self._interval:
            self._draw(now)

    def _line(self, now):
        elapsed = now - self._start
        # No rate before a second has passed: the first steps say little.
        rate = self.count / elapsed if elapsed >= 1.0 else 0.0
        unit = f" {self.unit}" if self.unit else ""
        head = f"{self.description}: " if self.description else ""
        count = _format(self.count)
        if self.total:
            done = min(1.0, self.count / self.total)
            filled = int(round(20 * done))
            bar = "#" * filled + "-" * (20 - filled)
            left = max(0.0, self.total - self.count)
            speed = f" {rate:.1f}/s, {left / rate:.0f} s left" if rate else ""
            return f"{head}{count}/{_format(self.total)}{unit} [{bar}] {100 * done:3.0f}%{speed}"
        speed = f" {rate:.1f}/s" if rate else ""
        return f"{head}{count}{unit}{speed}, {elapsed:.0f} s"

    def _draw(self, now, final=False):
        if self._stream is None:
            return
        self._last_draw = now
        self._drawn = self.count
        line = self._line(now)
        if self._tty:
            pad = " " * max(0, self._width - len(line))
            self._stream.write("\r" + line + pad + ("\n" if final else ""))
            self._width = len(line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Ends the bar: draws the final count unless the last line already shows it."""
        if self._closed:
            return
        self._closed = True
        if self._stream is None:
            return
        if self._drawn is None or self._drawn != self.count:
            self._draw(time.monotonic(), final=True)
        elif self._tty:  # the line on screen is final: only end it
            self._stream.write("\n")
            self._stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> bool:
        self.close()
        return False


def _number(value):
    """`value` as an int when it is a whole number, else as a float."""
    value = float(value) if not isinstance(value, int) else value
    return int(value) if float(value).is_integer() else value


def _format(value):
    """A count as shown: whole numbers as they are, fractions with one decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
