"""Named builders in the keras.applications manner: `SlowFastR50(weights="k400")`.

Each picks an architecture key of the presets table from its arguments and builds it with
:func:`keras_slowfast.hub.build`; the table holds every fact about the network.
`weights` takes `None`, a published weights name of the architecture (its choices are
listed by :func:`keras_slowfast.presets.weights_names`), a PySlowFast / PyTorchVideo /
Caffe2 checkpoint path, or a Keras `.weights.h5` file.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from keras_slowfast import hub

if TYPE_CHECKING:
    import keras

__all__ = [
    "SlowFastR50",
    "SlowFastR50AVA",
    "SlowFastR101",
    "SlowFastR101AVA",
    "SlowR50",
    "SlowR50AVA",
]


def _check_choice(value, allowed, arg):
    if value not in allowed:
        raise ValueError(f"`{arg}` must be one of {list(allowed)}. Received: {arg}={value!r}")


def SlowFastR50(
    variant: str = "8x8",
    nonlocal_blocks: bool = False,
    weights: str | os.PathLike | None = None,
    **kwargs: Any,
) -> keras.Model:
    """SlowFast R50 (Kinetics-400 architecture).

    Args:
        variant: `"8x8"` (T=8 slow frames, alpha 4, fusion kernel 7), `"4x16"` (T=4,
            alpha 8) or `"16x8"` (the 8x8 network on 64 frames: the SSv2 and Charades
            models).
        nonlocal_blocks: add PySlowFast's non-local blocks (8x8 only: res3 blocks 1, 3 and
            res4 blocks 1, 3, 5 of the slow pathway; fusion kernel 5). No weights are
            published for it.
        weights: `None`, a published weights name of the variant (8x8: `"k400"`, alias
            `"kinetics400"`, `"k400_ptv"`, `"k400_stepwise"`, `"k400_multigrid"`,
            `"ssv2_ptv"`, `"charades_ptv"`; 4x16: `"k400"`, `"k400_ptv"`; 16x8: `"ssv2"`,
            `"ssv2_multigrid"`, `"charades"`, `"charades_multigrid"`), downloaded and
            converted on first use, or a checkpoint / `.weights.h5` path.
        **kwargs: any argument of :func:`keras_slowfast.SlowFast` (`include_top`,
            `classes`, `input_shape`, `pooling`, `dtype`, ...).

    Example:
        >>> model = SlowFastR50(variant="4x16", width_per_group=8, classes=10)
        >>> model.input_shape
        (None, 32, None, None, 3)
    """
    _check_choice(variant, ("8x8", "4x16", "16x8"), "variant")
    if nonlocal_blocks and variant != "8x8":
        raise ValueError(
            "The non-local SlowFast R50 is defined for the 8x8 variant only. "
            f"Received: variant={variant!r}, nonlocal_blocks=True"
        )
    key = "slowfast_nln_8x8_r50" if nonlocal_blocks else f"slowfast_{variant}_r50"
    return hub.build(key, weights, **kwargs)


def SlowFastR101(
    variant: str = "8x8",
    nonlocal_blocks: bool = False,
    weights: str | os.PathLike | None = None,
    **kwargs: Any,
) -> keras.Model:
    """SlowFast R101.

    Args:
        variant: `"8x8"` (R101 temporal kernels in all res4 blocks) or `"16x8"`
            (PySlowFast's R101_50_50: 64 fast frames, temporal kernels in the first 6
            res4 blocks only).
        nonlocal_blocks: add non-local blocks after res4 blocks 6, 13, 20 (16x8 only; no
            weights are published for it).
        weights: `None`, `"k400"` (alias `"kinetics400"`), or a checkpoint / `.weights.h5`
            path.
        **kwargs: any argument of :func:`keras_slowfast.SlowFast`.

    Example:
        >>> model = SlowFastR101(variant="16x8", width_per_group=8, classes=10)
        >>> model.input_shape
        (None, 64, None, None, 3)
    """
    _check_choice(variant, ("8x8", "16x8"), "variant")
    if nonlocal_blocks and variant != "16x8":
        raise ValueError(
            "The non-local SlowFast R101 is defined for the 16x8 variant only. "
            f"Received: variant={variant!r}, nonlocal_blocks=True"
        )
    if variant == "8x8":
        key = "slowfast_8x8_r101"
    else:
        key = "slowfast_nln_16x8_r101_50_50" if nonlocal_blocks else "slowfast_16x8_r101_50_50"
    return hub.build(key, weights, **kwargs)


def SlowR50(
    variant: str = "8x8", weights: str | os.PathLike | None = None, **kwargs: Any
) -> keras.Model:
    """Slow-only R50: one pathway, no temporal convolution before res4.

    Args:
        variant: `"8x8"` (8 frames) or `"4x16"` (4 frames).
        weights: `None`, `"k400"` (alias `"kinetics400"`), `"k400_ptv"`, and for 8x8
            `"ssv2_ptv"` and `"charades_ptv"`, or a checkpoint / `.weights.h5` path.
        **kwargs: any argument of :func:`keras_slowfast.SlowFast`.

    Example:
        >>> model = SlowR50(width_per_group=8, classes=10)
        >>> model.input_shape
        (None, 8, None, None, 3)
    """
    _check_choice(variant, ("8x8", "4x16"), "variant")
    return hub.build(f"slow_{variant}_r50", weights, **kwargs)


def SlowFastR101AVA(
    variant: str = "32x2", weights: str | os.PathLike | None = None, **kwargs: Any
) -> keras.Model:
    """SlowFast R101_50_50 AVA action detector (PySlowFast's released AVA models).

    Non-local blocks after res4 blocks 6, 13, 20 (slow pathway, pool `(2, 2, 2)`), res5 at
    stride 1 with dilation 2, RoIAlign 7x7 at stride 16 with `aligned=False`, 80 classes.
    Inputs `{"clip": (batch, 32, H, W, 3), "boxes": (batch, max_boxes, 4)}` with boxes
    `[x1, y1, x2, y2]` normalised to [0, 1]; output `(batch, max_boxes, 80)` sigmoid scores.

    Args:
        variant: `"32x2"` or `"64x2"` (64 frames).
        weights: `None`, `"ava"` (alias `"ava_v2.2"`: the published AVA v2.2 weights),
            `"ava_v2.1"` (32x2), or a checkpoint / `.weights.h5` path.
        **kwargs: any argument of :func:`keras_slowfast.SlowFastDetector`.

    Example:
        >>> model = SlowFastR101AVA(width_per_group=8, classes=10)
        >>> model.output_shape
        (None, None, 10)
    """
    _check_choice(variant, ("32x2", "64x2"), "variant")
    return hub.build(f"ava_slowfast_{variant}_r101_50_50", weights, **kwargs)


def SlowFastR50AVA(weights: str | os.PathLike | None = None, **kwargs: Any) -> keras.Model:
    """SlowFast 8x8 R50 AVA action detector (PyTorchVideo's `slowfast_r50_detection`).

    Same head as :func:`SlowFastR101AVA` on the 8x8 R50 backbone (fusion kernel 7), with
    res5 at stride 1 and dilation 2. Its RoIAlign is torchvision's default, which is not
    aligned (`aligned=False`); that is what reproduces the reference's scores.

    Args:
        weights: `None`, `"ava"` (alias `"ava_v2.2"`), or a checkpoint / `.weights.h5` path.
        **kwargs: any argument of :func:`keras_slowfast.SlowFastDetector`.

    Example:
        >>> model = SlowFastR50AVA(width_per_group=8, classes=10)
        >>> model.output_shape
        (None, None, 10)
    """
    return hub.build("ava_slowfast_r50_detection", weights, **kwargs)


def SlowR50AVA(weights: str | os.PathLike | None = None, **kwargs: Any) -> keras.Model:
    """Slow-only 4x16 R50 AVA action detector (PySlowFast's and PyTorchVideo's).

    One pathway of 4 frames (stride 16), res5 at stride 1 and dilation 2, the RoI head of
    :func:`SlowFastR101AVA` with `aligned=False`, 80 classes.

    Args:
        weights: `None`, `"ava"` (alias `"ava_v2.2"`: PySlowFast's file), `"ava_ptv"`
            (PyTorchVideo's `slow_r50_detection`), or a checkpoint / `.weights.h5` path.
        **kwargs: any argument of :func:`keras_slowfast.SlowFastDetector`.

    Example:
        >>> model = SlowR50AVA(width_per_group=8, classes=10)
        >>> model.input["clip"].shape
        (None, 4, None, None, 3)
    """
    return hub.build("ava_slow_4x16_r50", weights, **kwargs)
