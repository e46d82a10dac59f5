"""Named SlowFast variants: one table row each, built by the generic builders."""

_R50_TEMP = [[3, 3], [4, 4], [6, 6], [3, 3]]
_R101_TEMP = [[3, 3], [4, 4], [23, 23], [3, 3]]
# "R101_50_50": only the first 6 res4 blocks have temporal kernels, as in R50.
_R101_50_50_TEMP = [[3, 3], [4, 4], [6, 6], [3, 3]]
_NO_NL = [[[], []], [[], []], [[], []], [[], []]]

# name -> frame stride at 30 fps (DATA.SAMPLING_RATE), builder kind, full-size arguments, and
# the PySlowFast config it corresponds to.
VARIANTS = {
    "slowfast_4x16_r50": dict(
        sampling_rate=2,
        kind="classifier",
        config="configs/Kinetics/c2/SLOWFAST_4x16_R50.yaml",
        kwargs=dict(
            depth=50, num_frames=32, alpha=8, fusion_kernel_size=5, num_block_temp_kernel=_R50_TEMP
        ),
    ),
    "slowfast_8x8_r50": dict(
        sampling_rate=2,
        kind="classifier",
        config="configs/Kinetics/c2/SLOWFAST_8x8_R50.yaml",
        kwargs=dict(
            depth=50, num_frames=32, alpha=4, fusion_kernel_size=7, num_block_temp_kernel=_R50_TEMP
        ),
    ),
    "slowfast_nln_8x8_r50": dict(
        sampling_rate=2,
        kind="classifier",
        config="configs/Kinetics/SLOWFAST_NLN_8x8_R50.yaml",
        kwargs=dict(
            depth=50,
            num_frames=32,
            alpha=4,
            fusion_kernel_size=5,
            num_block_temp_kernel=_R50_TEMP,
            nonlocal_location=[[[], []], [[1, 3], []], [[1, 3, 5], []], [[], []]],
            nonlocal_pool=(1, 2, 2),
        ),
    ),
    "slowfast_8x8_r101": dict(
        sampling_rate=2,
        kind="classifier",
        config="configs/Kinetics/c2/SLOWFAST_8x8_R101_101_101.yaml",
        kwargs=dict(
            depth=101,
            num_frames=32,
            alpha=4,
            fusion_kernel_size=5,
            num_block_temp_kernel=_R101_TEMP,
        ),
    ),
    "slowfast_16x8_r101_50_50": dict(
        sampling_rate=2,
        kind="classifier",
        config="configs/Kinetics/c2/SLOWFAST_16x8_R101_50_50.yaml",
        kwargs=dict(
            depth=101,
            num_frames=64,
            alpha=4,
            fusion_kernel_size=5,
            num_block_temp_kernel=_R101_50_50_TEMP,
        ),
    ),
    "slowfast_nln_16x8_r101_50_50": dict(
        sampling_rate=2,
        kind="classifier",
        config="configs/Kinetics/c2/SLOWFAST_NLN_16x8_R101_50_50.yaml",
        kwargs=dict(
            depth=101,
            num_frames=64,
            alpha=4,
            fusion_kernel_size=5,
            num_block_temp_kernel=_R101_50_50_TEMP,
            nonlocal_location=[[[], []], [[], []], [[6, 13, 20], []], [[], []]],
            nonlocal_pool=(1, 2, 2),
        ),
    ),
    "slow_8x8_r50": dict(
        sampling_rate=8,
        kind="classifier",
        config="configs/Kinetics/c2/SLOW_8x8_R50.yaml",
        kwargs=dict(depth=50, num_frames=8, single_pathway=True),
    ),
    "slow_4x16_r50": dict(
        sampling_rate=16,
        kind="classifier",
        config="configs/Kinetics/c2/SLOW_4x16_R50.yaml",
        kwargs=dict(depth=50, num_frames=4, single_pathway=True),
    ),
    "ava_slowfast_32x2_r101_50_50": dict(
        sampling_rate=2,
        kind="detector",
        config="configs/AVA/c2/SLOWFAST_32x2_R101_50_50.yaml",
        kwargs=dict(
            depth=101,
            num_frames=32,
            alpha=4,
            fusion_kernel_size=5,
            num_block_temp_kernel=_R101_50_50_TEMP,
            nonlocal_location=[[[], []], [[], []], [[6, 13, 20], []], [[], []]],
            nonlocal_pool=(2, 2, 2),
            spatial_strides=[1, 2, 2, 1],
            spatial_dilations=[1, 1, 1, 2],
            aligned=False,
            classes=80,
        ),
    ),
    "ava_slowfast_r50_detection": dict(
        sampling_rate=2,
        kind="detector",
        config=None,
        kwargs=dict(
            depth=50,
            num_frames=32,
            alpha=4,
            fusion_kernel_size=7,
            num_block_temp_kernel=_R50_TEMP,
            spatial_strides=[1, 2, 2, 1],
            spatial_dilations=[1, 1, 1, 2],
            aligned=False,
            classes=80,
        ),
    ),
}


def clip_sampling(variant):
    """`(num_frames, sampling_rate)` a variant was trained with (PySlowFast's DATA settings).

    Example:
        >>> clip_sampling("slowfast_8x8_r50")
        (32, 2)
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"`variant` must be one of {sorted(VARIANTS)}. Received: variant={variant!r}"
        )
    spec = VARIANTS[variant]
    return spec["kwargs"]["num_frames"], spec["sampling_rate"]


def _check_choice(value, allowed, arg):
    if value not in allowed:
        raise ValueError(f"`{arg}` must be one of {list(allowed)}. Received: {arg}={value!r}")


def _is_weights_name(weights):
    from keras_slowfast.weights.loading import CHECKPOINT_SUFFIXES

    return isinstance(weights, str) and not weights.endswith((".h5",) + CHECKPOINT_SUFFIXES)


def _build_variant(key, **kwargs):
    if _is_weights_name(kwargs.get("weights")):
        # Named weights (e.g. "k400"): download, convert and cache, then build and load.
        from keras_slowfast.weights import registry

        return registry.build_pretrained(key, kwargs.pop("weights"), **kwargs)
    spec = VARIANTS[key]
    merged = dict(spec["kwargs"])
    merged.update(kwargs)
    merged.setdefault("name", key)
    if spec["kind"] == "detector":
        from keras_slowfast.models.detection import SlowFastDetector

        return SlowFastDetector(**merged)
    from keras_slowfast.models.slowfast import SlowFast

    return SlowFast(**merged)


def SlowFastR50(variant="8x8", nonlocal_blocks=False, **kwargs):
    """SlowFast R50 (Kinetics-400 architecture).

    Args:
        variant: `"8x8"` (T=8 slow frames, alpha 4, fusion kernel 7) or `"4x16"` (T=4,
            alpha 8).
        nonlocal_blocks: add PySlowFast's non-local blocks (8x8 only: res3 blocks 1, 3 and
            res4 blocks 1, 3, 5 of the slow pathway; fusion kernel 5).
        **kwargs: any argument of :func:`keras_slowfast.SlowFast` (`weights`, `include_top`,
            `classes`, `input_shape`, ...).
            `weights` also takes `"k400"` (alias `"kinetics400"`): the published
            Kinetics-400 weights, downloaded and converted on first use (see
            :mod:`keras_slowfast.weights.registry`).

    Example:
        >>> model = SlowFastR50(variant="4x16", width_per_group=8, classes=10)
        >>> model.input_shape
        (None, 32, None, None, 3)
    """
    _check_choice(variant, ("8x8", "4x16"), "variant")
    if nonlocal_blocks and variant != "8x8":
        raise ValueError(
            "Non-local blocks are published for the 8x8 R50 only. "
            f"Received: variant={variant!r}, nonlocal_blocks=True"
        )
    key = "slowfast_nln_8x8_r50" if nonlocal_blocks else f"slowfast_{variant}_r50"
    return _build_variant(key, **kwargs)


def SlowFastR101(variant="8x8", nonlocal_blocks=False, **kwargs):
    """SlowFast R101.

    Args:
        variant: `"8x8"` (R101 temporal kernels in all res4 blocks) or `"16x8"`
            (PySlowFast's R101_50_50: 64 fast frames, temporal kernels in the first 6
            res4 blocks only).
        nonlocal_blocks: add non-local blocks after res4 blocks 6, 13, 20 (16x8 only).
        **kwargs: any argument of :func:`keras_slowfast.SlowFast`.
            `weights` also takes `"k400"` (alias `"kinetics400"`): the published
            Kinetics-400 weights, downloaded and converted on first use (see
            :mod:`keras_slowfast.weights.registry`).

    Example:
        >>> model = SlowFastR101(variant="16x8", width_per_group=8, classes=10)
        >>> model.input_shape
        (None, 64, None, None, 3)
    """
    _check_choice(variant, ("8x8", "16x8"), "variant")
    if nonlocal_blocks and variant != "16x8":
        raise ValueError(
            "Non-local blocks are published for the 16x8 R101 only. "
            f"Received: variant={variant!r}, nonlocal_blocks=True"
        )
    if variant == "8x8":
        key = "slowfast_8x8_r101"
    else:
        key = "slowfast_nln_16x8_r101_50_50" if nonlocal_blocks else "slowfast_16x8_r101_50_50"
    return _build_variant(key, **kwargs)


def SlowR50(variant="8x8", **kwargs):
    """Slow-only R50: one pathway, no temporal convolution before res4.

    Args:
        variant: `"8x8"` (8 frames) or `"4x16"` (4 frames).
        **kwargs: any argument of :func:`keras_slowfast.SlowFast`.
            `weights` also takes `"k400"` (alias `"kinetics400"`): the published
            Kinetics-400 weights, downloaded and converted on first use (see
            :mod:`keras_slowfast.weights.registry`).

    Example:
        >>> model = SlowR50(width_per_group=8, classes=10)
        >>> model.input_shape
        (None, 8, None, None, 3)
    """
    _check_choice(variant, ("8x8", "4x16"), "variant")
    key = f"slow_{variant}_r50"
    return _build_variant(key, **kwargs)


def SlowFastR101AVA(variant="32x2", **kwargs):
    """SlowFast 32x2 R101_50_50 AVA action detector (PySlowFast's released AVA model).

    Non-local blocks after res4 blocks 6, 13, 20 (slow pathway, pool `(2, 2, 2)`), res5 at
    stride 1 with dilation 2, RoIAlign 7x7 at stride 16 with `aligned=False`, 80 classes.
    Inputs `{"clip": (batch, 32, H, W, 3), "boxes": (batch, max_boxes, 4)}` with boxes
    `[x1, y1, x2, y2]` normalised to [0, 1]; output `(batch, max_boxes, 80)` sigmoid scores.

    Args:
        variant: `"32x2"`.
        **kwargs: any argument of :func:`keras_slowfast.SlowFastDetector`.
            `weights` also takes `"ava"`: the published AVA v2.2 weights, downloaded and
            converted on first use (see :mod:`keras_slowfast.weights.registry`).

    Example:
        >>> model = SlowFastR101AVA(width_per_group=8, classes=10)
        >>> model.output_shape
        (None, None, 10)
    """
    _check_choice(variant, ("32x2",), "variant")
    key = "ava_slowfast_32x2_r101_50_50"
    return _build_variant(key, **kwargs)


def SlowFastR50AVA(**kwargs):
    """SlowFast 8x8 R50 AVA action detector (PyTorchVideo's `slowfast_r50_detection`).

    Same head as :func:`SlowFastR101AVA` on the 8x8 R50 backbone (fusion kernel 7), with
    res5 at stride 1 and dilation 2. Its RoIAlign is torchvision's default, which is not
    aligned (`aligned=False`); that is what reproduces the reference's scores.

    Args:
        **kwargs: any argument of :func:`keras_slowfast.SlowFastDetector`.
            `weights` also takes `"ava"`: the published AVA v2.2 weights, downloaded and
            converted on first use (see :mod:`keras_slowfast.weights.registry`).

    Example:
        >>> model = SlowFastR50AVA(width_per_group=8, classes=10)
        >>> model.output_shape
        (None, None, 10)
    """
    key = "ava_slowfast_r50_detection"
    return _build_variant(key, **kwargs)
