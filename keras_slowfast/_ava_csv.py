"""The rows of AVA's CSV files, read one way for every reader of the package.

AVA's box files have one `video,sec,x1,y1,x2,y2[,action[,person id or score]]` row per box
and action, and its excluded-timestamp files one `video,sec` row per keyframe. The readers
built on :func:`csv_rows` (`data.ava.read_box_csvs`, `detect.read_box_csv`,
`evaluation.ava.read_csv` and `read_exclusions`) differ in what they keep of a row and how
they group the rows, not in how a file is read.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from typing import TextIO

__all__ = ["csv_rows", "is_blank"]


def is_blank(fields: Iterable[object]) -> bool:
    """Whether a CSV row has no field with text (an empty line, or only separators).

    Example:
        >>> is_blank([]), is_blank([" ", ""]), is_blank(["v", "902"])
        (True, True, False)
    """
    return not any(str(field).strip() for field in fields)


def csv_rows(source: str | os.PathLike | TextIO) -> Iterator[tuple[int, list[str]]]:
    """`(line number, fields)` of each row of a CSV file that is not blank.

    Args:
        source: a path, or an open text file.

    Example:
        >>> import io
        >>> for line, fields in csv_rows(io.StringIO("v,902,0.1,0.2,0.5,0.9,12\\n\\nv,903\\n")):
        ...     print(line, fields)
        1 ['v', '902', '0.1', '0.2', '0.5', '0.9', '12']
        3 ['v', '903']
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8", newline="") as f:
            yield from _numbered(csv.reader(f))
    else:
        yield from _numbered(csv.reader(source))


def _numbered(rows):
    for line_number, fields in enumerate(rows, start=1):
        if not is_blank(fields):
            yield line_number, fields
