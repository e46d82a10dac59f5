"""Class names of the published models and `decode_predictions`.

Kinetics-400 names are in the index order of the released classifiers; AVA v2.2 action
`id` `i` (1..80) is output index `i - 1` of the released detectors; Something-Something v2
(174 templates, brackets removed, the index order of its label file) and Charades (157
actions `c000`..`c156`) for those presets.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_slowfast._checks import check_positive_int

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "LABEL_SETS",
    "ava_class_names",
    "class_names",
    "class_names_for",
    "decode_predictions",
    "kinetics400_class_names",
]


def _load_json(name):
    return json.loads((resources.files("keras_slowfast") / "resources" / name).read_text("utf-8"))


@functools.cache
def _kinetics400():
    return tuple(_load_json("kinetics400_classes.json"))


@functools.cache
def _ava():
    actions = sorted(_load_json("ava_v2.2_actions.json"), key=lambda a: a["id"])
    return tuple(a["name"] for a in actions)


@functools.cache
def _ssv2():
    return tuple(_load_json("ssv2_classes.json"))


@functools.cache
def _charades():
    return tuple(_load_json("charades_classes.json"))


#: The label sets the presets name (`Preset.labels`), each a function returning the names.
LABEL_SETS = {"kinetics400": _kinetics400, "ava": _ava, "ssv2": _ssv2, "charades": _charades}


def class_names(label_set: str) -> list[str]:
    """The class names of a label set, in output order.

    Args:
        label_set: `"kinetics400"`, `"ava"`, `"ssv2"` or `"charades"`.

    Example:
        >>> class_names("charades")[:2]
        ['Holding some clothes', 'Putting clothes somewhere']
        >>> len(class_names("ssv2"))
        174
    """
    if label_set not in LABEL_SETS:
        raise ValueError(
            f"`label_set` must be one of {sorted(LABEL_SETS)}. Received: label_set={label_set!r}"
        )
    return list(LABEL_SETS[label_set]())


def kinetics400_class_names() -> list[str]:
    """The 400 Kinetics class names, in output order.

    Example:
        >>> kinetics400_class_names()[:2]
        ['abseiling', 'air drumming']
    """
    return list(_kinetics400())


def ava_class_names() -> list[str]:
    """The 80 AVA v2.2 action names, in output order (action id minus one).

    Example:
        >>> ava_class_names()[:2]
        ['bend/bow (at the waist)', 'crawl']
    """
    return list(_ava())


def class_names_for(num_classes: int, class_names: str | Sequence[str] | None = None) -> list[str]:
    """The names to use for `num_classes` outputs.

    Args:
        num_classes: the size of the class axis.
        class_names: `None` (Kinetics-400 names for 400 classes, AVA names for 80, SSv2
            names for 174, Charades names for 157, otherwise `class_<i>`), a label set name
            (`"kinetics400"`, `"ava"`, `"ssv2"`, `"charades"`), or a sequence of names.

    Returns:
        A list of `num_classes` strings.

    Example:
        >>> class_names_for(157)[0]
        'Holding some clothes'
        >>> class_names_for(3)
        ['class_0', 'class_1', 'class_2']
    """
    if class_names is None:
        by_count = {len(f()): f for f in LABEL_SETS.values()}
        if num_classes in by_count:
            return list(by_count[num_classes]())
        return [f"class_{i}" for i in range(num_classes)]
    if isinstance(class_names, str):
        if class_names not in LABEL_SETS:
            raise ValueError(
                f"`class_names` must be None, one of {sorted(LABEL_SETS)} or a list of names. "
                f"Received: class_names={class_names!r}"
            )
        names = list(LABEL_SETS[class_names]())
    else:
        names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(
            f"`class_names` must have one name per class ({num_classes}). "
            f"Received: class_names with {len(names)} names"
        )
    return names


def decode_predictions(
    preds: npt.ArrayLike, top: int = 5, class_names: str | Sequence[str] | None = None
) -> list[list[Any]]:
    """Decodes model outputs into `(class_index, class_name, score)` tuples, best first.

    Works like `keras.applications.*.decode_predictions`. For a classifier's
    `(batch, classes)` output it returns one list per clip; for a detector's
    `(batch, boxes, classes)` output one list per clip holding one list per box (AVA
    actions are multi-label, so each box has its own top scores). Ties keep the lower
    class index first.

    Args:
        preds: scores with the classes on the last axis (NumPy array or tensor), at least
            2-D.
        top: how many classes to return per row (at most the number of classes).
        class_names: as in :func:`class_names_for`: by default Kinetics-400 names for 400
            classes, AVA names for 80, `class_<i>` otherwise.

    Returns:
        Nested lists of `(class_index, class_name, score)` tuples.

    Example:
        >>> preds = np.zeros((1, 400))
        >>> preds[0, 5] = 0.9
        >>> decode_predictions(preds, top=1)
        [[(5, 'archery', 0.9)]]
    """
    if hasattr(preds, "numpy") and callable(preds.numpy):
        preds = preds.numpy()
    preds = np.asarray(preds)
    if preds.ndim < 2 or preds.shape[-1] < 1 or not np.issubdtype(preds.dtype, np.number):
        raise ValueError(
            "`decode_predictions` expects numeric scores of shape (batch, classes) or "
            f"(batch, boxes, classes). Received: preds with shape {preds.shape}"
        )
    num_classes = preds.shape[-1]
    top = check_positive_int("top", top)
    names = class_names_for(num_classes, class_names)
    top = min(int(top), num_classes)

    def decode_rows(p):
        if p.ndim > 1:
            return [decode_rows(row) for row in p]
        order = np.argsort(-p, kind="stable")[:top]
        return [(int(i), names[i], float(p[i])) for i in order]

    return decode_rows(preds)
