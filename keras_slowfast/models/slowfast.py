"""The generic SlowFast / Slow-only builder.

Layers are named after the PySlowFast module paths with dots replaced by underscores
(`s2.pathway0_res0.branch2.a` becomes `s2_pathway0_res0_branch2_a`), so that checkpoint
conversion is a mechanical name map (see :mod:`keras_slowfast.weights.name_maps`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras

from keras_slowfast._checks import argument_error, check_positive_int
from keras_slowfast.models.functional import LeanFunctional
from keras_slowfast.models.layers import (
    ClipNormalization,
    NonLocalAttention,
    SlidingAveragePooling3D,
    TemporalSubsample,
)

__all__ = ["Backbone", "SlowFast"]

# Blocks per stage (res2..res5).
STAGE_DEPTHS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}

# Temporal kernel sizes of the stem and of each stage's `a` conv, per pathway (slow, fast):
# the slow pathway has no temporal convolution before res4.
SLOWFAST_TEMPORAL_KERNELS = ((1, 5), (1, 3), (1, 3), (3, 3), (3, 3))
SLOW_TEMPORAL_KERNELS = ((1,), (1,), (1,), (3,), (3,))

# PyTorch BatchNorm defaults: eps 1e-5, momentum 0.1 (Keras momentum = 1 - 0.1).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

# The head (pooling, projection, activation) always computes in float32.
HEAD_DTYPE = "float32"
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "bfloat16", "mixed_float16", "float16")


def _conv_init():
    """He-normal (fan-out) initialiser, one per layer.

    A fresh instance per convolution draws its seed when the layer is built (after
    `keras.utils.set_random_seed`), so initialisation is reproducible and two kernels of the
    same shape do not start equal, as they would with one shared, seeded instance.
    """
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def _bn(x, name, zero_init=False, synchronized=False):
    return keras.layers.BatchNormalization(
        axis=-1,
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if zero_init else "ones",
        synchronized=synchronized,
        name=name,
    )(x)


def _conv(x, filters, kernel, stride, padding, name, dilation=(1, 1, 1), use_bias=False):
    """Conv3D with PyTorch's symmetric zero padding made explicit."""
    if any(padding):
        # TensorFlow's "same" pads more at the end for even strides; PyTorch pads both
        # sides equally, so pad explicitly and convolve "valid".
        x = keras.layers.ZeroPadding3D(padding=tuple((p, p) for p in padding), name=f"{name}_pad")(
            x
        )
    return keras.layers.Conv3D(
        filters,
        kernel,
        strides=stride,
        padding="valid",
        dilation_rate=dilation,
        use_bias=use_bias,
        kernel_initializer=_conv_init(),
        name=name,
    )(x)


def stem(x, filters, temporal_kernel, name, sync_bn=False):
    """ResNet stem: Conv (kt, 7, 7) stride (1, 2, 2) -> BN -> ReLU -> MaxPool (1, 3, 3)."""
    x = _conv(
        x,
        filters,
        (temporal_kernel, 7, 7),
        (1, 2, 2),
        (temporal_kernel // 2, 3, 3),
        name=f"{name}_conv",
    )
    x = _bn(x, f"{name}_bn", synchronized=sync_bn)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    # Zero padding equals PyTorch's -inf max-pool padding here because it follows a ReLU.
    x = keras.layers.ZeroPadding3D(((0, 0), (1, 1), (1, 1)), name=f"{name}_pool_pad")(x)
    return keras.layers.MaxPooling3D((1, 3, 3), strides=(1, 2, 2), name=f"{name}_pool")(x)


def bottleneck_block(
    x,
    filters_inner,
    filters_out,
    temporal_kernel,
    stride,
    dilation,
    name,
    num_groups=1,
    sync_bn=False,
):
    """The one residual bottleneck block used everywhere.

    `a`: Conv (kt, 1, 1); `b`: Conv (1, 3, 3) carrying the spatial stride and dilation;
    `c`: Conv 1x1x1 (its BN zero-initialised); a projection shortcut (`branch1`) when the
    width or the stride changes. Output `ReLU(c + shortcut)`.
    """
    if stride > 1 and dilation > 1:
        raise argument_error(
            "A block cannot have both a spatial stride and a dilation above 1.",
            stride=stride,
            dilation=dilation,
        )
    in_channels = x.shape[-1]
    shortcut = x
    if in_channels != filters_out or stride != 1:
        shortcut = _conv(
            x, filters_out, (1, 1, 1), (1, stride, stride), (0, 0, 0), name=f"{name}_branch1"
        )
        shortcut = _bn(shortcut, f"{name}_branch1_bn", synchronized=sync_bn)
    b2 = f"{name}_branch2"
    y = _conv(
        x,
        filters_inner,
        (temporal_kernel, 1, 1),
        (1, 1, 1),
        (temporal_kernel // 2, 0, 0),
        name=f"{b2}_a",
    )
    y = _bn(y, f"{b2}_a_bn", synchronized=sync_bn)
    y = keras.layers.ReLU(name=f"{b2}_a_relu")(y)
    if num_groups != 1:
        raise argument_error("Only num_groups=1 is supported.", num_groups=num_groups)
    y = _conv(
        y,
        filters_inner,
        (1, 3, 3),
        (1, stride, stride),
        (0, dilation, dilation),
        name=f"{b2}_b",
        dilation=(1, dilation, dilation),
    )
    y = _bn(y, f"{b2}_b_bn", synchronized=sync_bn)
    y = keras.layers.ReLU(name=f"{b2}_b_relu")(y)
    y = _conv(y, filters_out, (1, 1, 1), (1, 1, 1), (0, 0, 0), name=f"{b2}_c")
    y = _bn(y, f"{b2}_c_bn", zero_init=True, synchronized=sync_bn)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_relu")(y)


def nonlocal_block(x, pool_size, instantiation, name, sync_bn=False):
    """Non-local block with theta/phi/g embeddings to half the channels and a BN'd output."""
    channels = x.shape[-1]
    inner = channels // 2

    def embed(t, suffix):
        return keras.layers.Conv3D(
            inner,
            1,
            use_bias=True,
            kernel_initializer=keras.initializers.RandomNormal(0.01),
            name=f"{name}_{suffix}",
        )(t)

    theta = embed(x, "conv_theta")
    pooled = x
    if any(p > 1 for p in pool_size):
        pooled = keras.layers.MaxPooling3D(pool_size, strides=pool_size, name=f"{name}_pool")(x)
    phi = embed(pooled, "conv_phi")
    g = embed(pooled, "conv_g")
    y = NonLocalAttention(instantiation, name=f"{name}_attention")([theta, phi, g])
    y = keras.layers.Conv3D(
        channels,
        1,
        use_bias=True,
        kernel_initializer=keras.initializers.RandomNormal(0.01),
        name=f"{name}_conv_out",
    )(y)
    y = _bn(y, f"{name}_bn", zero_init=True, synchronized=sync_bn)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def fuse_fast_to_slow(slow, fast, alpha, kernel_size, channel_ratio, name, sync_bn=False):
    """Lateral connection: time-strided Conv on the fast features, concatenated after slow."""
    f = _conv(
        fast,
        fast.shape[-1] * channel_ratio,
        (kernel_size, 1, 1),
        (alpha, 1, 1),
        (kernel_size // 2, 0, 0),
        name=f"{name}_conv_f2s",
    )
    f = _bn(f, f"{name}_bn", synchronized=sync_bn)
    f = keras.layers.ReLU(name=f"{name}_relu")(f)
    return keras.layers.Concatenate(axis=-1, name=f"{name}_concat")([slow, f])


def check_dtype(dtype):
    """Validates a builder's `dtype`: None, a policy name of `DTYPE_POLICIES` or a policy."""
    if dtype is None or isinstance(dtype, keras.DTypePolicy):
        return dtype
    if not isinstance(dtype, str) or dtype not in DTYPE_POLICIES:
        raise argument_error(
            f"`dtype` must be None, a keras.DTypePolicy or one of {', '.join(DTYPE_POLICIES)}.",
            dtype=dtype,
        )
    return dtype


@contextlib.contextmanager
def dtype_policy_scope(dtype):
    """Layers created inside take the dtype policy `dtype` (None: the global policy)."""
    if dtype is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _normalize_per_stage(value, name, num_pathways):
    """Expands a per-stage setting to `[stage][pathway]` lists, validating its shape."""
    value = [list(v) if isinstance(v, (list, tuple)) else v for v in value]
    if len(value) != 4:
        raise argument_error(
            f"`{name}` must have one entry per stage (res2..res5).", **{name: value}
        )
    out = []
    for v in value:
        if not isinstance(v, list) or not v:
            raise argument_error(
                f"Each stage of `{name}` must list a value per pathway.", **{name: value}
            )
        # PySlowFast configs may give one value for all pathways; repeat the last one.
        v = v + [v[-1]] * (num_pathways - len(v))
        out.append(v[:num_pathways])
    return out


def _parse_config(cfg):
    """Validates and fills in the architecture settings (a dict) in place."""
    depth = cfg["depth"]
    if depth not in STAGE_DEPTHS or depth == 18:
        raise argument_error("`depth` must be 50, 101 or 152.", depth=depth)
    single = cfg["single_pathway"]
    num_pathways = 1 if single else 2
    cfg["num_pathways"] = num_pathways
    alpha = cfg["alpha"]
    if single:
        alpha = cfg["alpha"] = 1
    else:
        alpha = cfg["alpha"] = check_positive_int("alpha", alpha)
    if not isinstance(cfg["num_frames"], int) or cfg["num_frames"] < alpha:
        raise argument_error(
            "`num_frames` (the fast-pathway frame count) must be an integer >= alpha.",
            num_frames=cfg["num_frames"],
            alpha=alpha,
        )
    for key in ("beta_inv", "width_per_group", "fusion_kernel_size", "fusion_conv_channel_ratio"):
        cfg[key] = check_positive_int(key, cfg[key])
    if not single and cfg["width_per_group"] < cfg["beta_inv"]:
        raise argument_error(
            "`width_per_group` must be at least `beta_inv` (the fast pathway has "
            "width_per_group // beta_inv channels).",
            width_per_group=cfg["width_per_group"],
            beta_inv=cfg["beta_inv"],
        )
    blocks = STAGE_DEPTHS[depth]
    if cfg["num_block_temp_kernel"] is None:
        cfg["num_block_temp_kernel"] = [[b] * num_pathways for b in blocks]
    cfg["num_block_temp_kernel"] = _normalize_per_stage(
        cfg["num_block_temp_kernel"], "num_block_temp_kernel", num_pathways
    )
    if cfg["temporal_kernels"] is None:
        cfg["temporal_kernels"] = SLOW_TEMPORAL_KERNELS if single else SLOWFAST_TEMPORAL_KERNELS
    tk = [list(v) for v in cfg["temporal_kernels"]]
    if len(tk) != 5 or any(len(v) < num_pathways for v in tk):
        raise argument_error(
            "`temporal_kernels` must give (stem, res2, res3, res4, res5) kernels per pathway.",
            temporal_kernels=cfg["temporal_kernels"],
        )
    cfg["temporal_kernels"] = [v[:num_pathways] for v in tk]
    if cfg["nonlocal_location"] is None:
        cfg["nonlocal_location"] = [[[] for _ in range(num_pathways)] for _ in range(4)]
    cfg["nonlocal_location"] = _normalize_per_stage(
        cfg["nonlocal_location"], "nonlocal_location", num_pathways
    )
    pool = cfg["nonlocal_pool"]
    if pool is None:
        pool = [[[1, 2, 2]] * num_pathways for _ in range(4)]
    elif len(pool) == 3 and all(isinstance(p, int) for p in pool):
        pool = [[list(pool)] * num_pathways for _ in range(4)]
    cfg["nonlocal_pool"] = [
        [tuple(int(v) for v in p) for p in stage]
        for stage in _normalize_per_stage(pool, "nonlocal_pool", num_pathways)
    ]
    for key, default in (("spatial_strides", [1, 2, 2, 2]), ("spatial_dilations", [1, 1, 1, 1])):
        value = cfg[key]
        if value is None:
            value = [[v] * num_pathways for v in default]
        value = [[v] * num_pathways if isinstance(v, int) else v for v in value]
        cfg[key] = _normalize_per_stage(value, key, num_pathways)
    for s in range(4):
        for p in range(num_pathways):
            n = cfg["num_block_temp_kernel"][s][p]
            if not 0 <= n <= blocks[s]:
                raise argument_error(
                    f"`num_block_temp_kernel` for stage res{s + 2} must be within "
                    f"[0, {blocks[s]}].",
                    num_block_temp_kernel=cfg["num_block_temp_kernel"],
                )
            for i in cfg["nonlocal_location"][s][p]:
                if not 0 <= i < blocks[s]:
                    raise argument_error(
                        f"Non-local block indices for stage res{s + 2} must be within "
                        f"[0, {blocks[s] - 1}].",
                        nonlocal_location=cfg["nonlocal_location"],
                    )
    if cfg["nonlocal_instantiation"] not in ("dot_product", "softmax"):
        raise argument_error(
            "`nonlocal_instantiation` must be 'dot_product' or 'softmax'.",
            nonlocal_instantiation=cfg["nonlocal_instantiation"],
        )
    return cfg


def backbone_features(x, cfg):
    """Builds stem, fusions and res2..res5 on the (normalised) pathway inputs.

    Args:
        x: list of pathway input tensors `[slow]` or `[slow, fast]`.
        cfg: settings as validated by `_parse_config`.

    Returns:
        The list of res5 outputs, one per pathway.
    """
    num_pathways = cfg["num_pathways"]
    w = cfg["width_per_group"]
    beta_inv = cfg["beta_inv"]
    sync = cfg.get("sync_bn", False)
    fuse_args = dict(
        alpha=cfg["alpha"],
        kernel_size=cfg["fusion_kernel_size"],
        channel_ratio=cfg["fusion_conv_channel_ratio"],
        sync_bn=sync,
    )
    divisors = [1, beta_inv][:num_pathways]
    x = [
        stem(
            x[p],
            w // divisors[p],
            cfg["temporal_kernels"][0][p],
            f"s1_pathway{p}_stem",
            sync_bn=sync,
        )
        for p in range(num_pathways)
    ]
    if num_pathways == 2:
        x[0] = fuse_fast_to_slow(x[0], x[1], name="s1_fuse", **fuse_args)
    blocks = STAGE_DEPTHS[cfg["depth"]]
    for s in range(4):
        stage = f"s{s + 2}"
        inner_mult, out_mult = 2**s, 4 * 2**s
        for p in range(num_pathways):
            y = x[p]
            nl_set = set(cfg["nonlocal_location"][s][p])
            for i in range(blocks[s]):
                kt = cfg["temporal_kernels"][s + 1][p]
                if i >= cfg["num_block_temp_kernel"][s][p]:
                    kt = 1
                y = bottleneck_block(
                    y,
                    w * inner_mult // divisors[p],
                    w * out_mult // divisors[p],
                    temporal_kernel=kt,
                    stride=cfg["spatial_strides"][s][p] if i == 0 else 1,
                    dilation=cfg["spatial_dilations"][s][p],
                    name=f"{stage}_pathway{p}_res{i}",
                    sync_bn=sync,
                )
                if i in nl_set:
                    y = nonlocal_block(
                        y,
                        cfg["nonlocal_pool"][s][p],
                        cfg["nonlocal_instantiation"],
                        name=f"{stage}_pathway{p}_nonlocal{i}",
                        sync_bn=sync,
                    )
            x[p] = y
        if num_pathways == 2 and s < 3:
            x[0] = fuse_fast_to_slow(x[0], x[1], name=f"{stage}_fuse", **fuse_args)
    return x


def pathway_inputs(inputs, cfg, include_preprocessing):
    """Normalises the clip and splits it into the pathway inputs."""
    x = inputs
    if include_preprocessing:
        x = ClipNormalization(name="preprocessing")(x)
    if cfg["num_pathways"] == 1:
        return [x]
    slow = TemporalSubsample(cfg["alpha"], name="slow_pathway_frames")(x)
    return [slow, x]


def classification_head(features, cfg, classes, classifier_activation, dropout_rate):
    """PySlowFast's fully-convolutional classification head.

    Each pathway is average-pooled with the window fixed by the training crop at stride 1;
    the projection classifies every remaining position; the activation is applied per
    position and the results are averaged. At the training crop size this is the usual
    global pooling + linear layer.
    """
    crop = cfg["train_crop_size"]
    t_slow = cfg["num_frames"] // cfg["alpha"]
    frames = [t_slow, cfg["num_frames"]][: cfg["num_pathways"]]
    pooled = []
    for p, f in enumerate(features):
        if crop is None:
            window = (frames[p], None, None)
        else:
            window = (frames[p], crop // 32, crop // 32)
        pooled.append(
            SlidingAveragePooling3D(window, name=f"head_pathway{p}_avgpool", dtype=HEAD_DTYPE)(f)
        )
    x = pooled[0]
    if len(pooled) > 1:
        x = keras.layers.Concatenate(axis=-1, name="head_concat", dtype=HEAD_DTYPE)(pooled)
    if dropout_rate:
        x = keras.layers.Dropout(dropout_rate, name="head_dropout", dtype=HEAD_DTYPE)(x)
    x = keras.layers.Dense(
        classes,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="head_projection",
        dtype=HEAD_DTYPE,
    )(x)
    if classifier_activation is not None:
        x = keras.layers.Activation(classifier_activation, name="head_act", dtype=HEAD_DTYPE)(x)
    return keras.layers.GlobalAveragePooling3D(name="head_mean", dtype=HEAD_DTYPE)(x)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Backbone:
    """The architecture of a SlowFast / Slow-only backbone (stem, lateral connections, res2-5).

    One definition serves the classifier (:func:`SlowFast`) and the detector
    (:func:`keras_slowfast.SlowFastDetector`); the presets table holds one per published
    network. The fields follow the paper and PySlowFast's config (`RESNET.*`, `SLOWFAST.*`,
    `NONLOCAL.*`).

    Attributes:
        depth: ResNet depth, 50 or 101 (152 also builds).
        num_frames: frames of the fast pathway (`T * alpha`); for `single_pathway` models,
            the frames of the single pathway.
        alpha: frame-rate ratio between the pathways (`SLOWFAST.ALPHA`).
        beta_inv: channel ratio between the pathways (`SLOWFAST.BETA_INV`).
        fusion_kernel_size: temporal kernel of the lateral connections
            (`SLOWFAST.FUSION_KERNEL_SZ`).
        fusion_conv_channel_ratio: output channels of a lateral connection per fast
            channel (`SLOWFAST.FUSION_CONV_CHANNEL_RATIO`).
        width_per_group: base width `w` (`RESNET.WIDTH_PER_GROUP`, 64 in released models).
        num_block_temp_kernel: per stage and pathway, how many leading blocks use the
            temporal kernel (`RESNET.NUM_BLOCK_TEMP_KERNEL`); default: all.
        temporal_kernels: temporal kernel sizes `(stem, res2, res3, res4, res5)`, each a
            per-pathway list; default: SlowFast's `((1, 5), (1, 3), (1, 3), (3, 3), (3, 3))`
            or Slow-only's.
        nonlocal_location: per stage and pathway, the block indices followed by a non-local
            block (`NONLOCAL.LOCATION`).
        nonlocal_pool: the non-local `phi`/`g` max-pool size, one `(t, h, w)` for all or per
            stage and pathway (`NONLOCAL.POOL`); default `(1, 2, 2)`.
        nonlocal_instantiation: `"dot_product"` or `"softmax"`.
        spatial_strides: per stage (and pathway) spatial stride; default `(1, 2, 2, 2)`.
        spatial_dilations: per stage (and pathway) spatial dilation; default all 1.
        single_pathway: a Slow-only network (one pathway, no fusion).
        sync_bn: synchronized BatchNormalization (for multi-replica training).

    Example:
        >>> spec = Backbone(depth=101, num_frames=64)
        >>> spec.replace(width_per_group=8).width_per_group
        8
        >>> Backbone.from_settings(None, {"alpha": 8}).alpha
        8
    """

    depth: int = 50
    num_frames: int = 32
    alpha: int = 4
    beta_inv: int = 8
    fusion_kernel_size: int = 5
    fusion_conv_channel_ratio: int = 2
    width_per_group: int = 64
    num_block_temp_kernel: object = None
    temporal_kernels: object = None
    nonlocal_location: object = None
    nonlocal_pool: object = None
    nonlocal_instantiation: str = "dot_product"
    spatial_strides: object = None
    spatial_dilations: object = None
    single_pathway: bool = False
    sync_bn: bool = False

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of the settings, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> Backbone:
        """A copy with `changes` applied; an unknown name is a `TypeError` naming it."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise TypeError(
                f"Unknown backbone setting {unknown[0]!r}; the settings are "
                f"{', '.join(self.field_names())}. Received: {unknown[0]}={changes[unknown[0]]!r}"
            )
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_settings(
        cls,
        backbone: Backbone | None,
        settings: Mapping[str, Any],
        default: Backbone | None = None,
    ) -> Backbone:
        """`backbone` (or `default`, or the plain defaults) with `settings` applied.

        Args:
            backbone: a `Backbone`, or `None`.
            settings: a dict of field overrides (a builder's `**backbone_settings`).
            default: the `Backbone` used when `backbone` is `None`.
        """
        if backbone is None:
            backbone = default if default is not None else cls()
        elif not isinstance(backbone, cls):
            raise TypeError(
                f"`backbone` must be a keras_slowfast.models.Backbone or None. "
                f"Received: backbone={backbone!r}"
            )
        return backbone.replace(**settings)

    def resolved(self) -> dict[str, Any]:
        """The validated settings as a dict, every per-stage value expanded per pathway."""
        cfg = dataclasses.asdict(self)
        cfg["single_pathway"] = bool(cfg["single_pathway"])
        cfg["sync_bn"] = bool(cfg["sync_bn"])
        return _parse_config(cfg)


def check_head_arguments(classes, dropout_rate):
    check_positive_int("classes", classes)
    if not 0 <= float(dropout_rate) < 1:
        raise argument_error("`dropout_rate` must be in [0, 1).", dropout_rate=dropout_rate)


def SlowFast(
    backbone: Backbone | None = None,
    *,
    train_crop_size: int | None = 224,
    dtype: str | keras.DTypePolicy | None = None,
    include_top: bool = True,
    weights: str | os.PathLike | None = None,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classes: int = 400,
    classifier_activation: str | Callable[..., Any] | None = "softmax",
    include_preprocessing: bool = True,
    dropout_rate: float = 0.5,
    name: str | None = None,
    **backbone_settings: Any,
) -> keras.Model:
    """Builds a SlowFast (or Slow-only) network as a functional Keras model.

    The model takes one clip `(batch, num_frames, height, width, 3)` at the fast pathway's
    frame rate and takes the slow pathway's frames from it itself
    (`trunc(linspace(0, T - 1, T // alpha))`). The architecture arguments follow the paper
    and PySlowFast's config (`RESNET.*`, `SLOWFAST.*`, `NONLOCAL.*`).

    The default head reproduces PySlowFast's fully-convolutional testing: features are
    average-pooled with the window of the training crop (`train_crop_size // 32`) at
    stride 1, every position is classified, and the per-position probabilities are averaged.
    At the training crop this is plain global pooling; on the 256x256 crops of the published
    3-crop x 10-clip protocol it gives exactly the reference's scores. Set
    `train_crop_size=None` to pool globally at any input size.

    Args:
        backbone: a :class:`Backbone` (the architecture); `None` takes the defaults.
        **backbone_settings: fields of :class:`Backbone` overriding those of `backbone`
            (`depth`, `num_frames`, `alpha`, `fusion_kernel_size`, `width_per_group`, ...).
        train_crop_size: the crop the network was trained at; fixes the head's pooling
            window. `None` pools globally (PyTorch's `AdaptiveAvgPool3d`, as the multigrid
            models do).
        dtype: the Keras dtype policy of the backbone: `None` (the global policy),
            `"float32"`, `"mixed_bfloat16"` (float32 weights, bfloat16 computation: faster
            inference on CPUs with AVX-512 BF16 or AMX and on recent accelerators),
            `"bfloat16"` (bfloat16 weights too), `"mixed_float16"`, `"float16"` or a
            `keras.DTypePolicy`. The head (pooling, projection, activation) and
            `pooling` always compute in float32, so probabilities are float32.
        include_top: include the classification head.
        weights: `None` (random initialisation) or the path of a Keras `.weights.h5` file
            saved from this architecture. Published weights and PySlowFast / PyTorchVideo /
            Caffe2 checkpoints load through :func:`keras_slowfast.from_preset`, the named
            builders or :func:`keras_slowfast.load_pyslowfast`.
        input_shape: `(frames, height, width, 3)`; frames must equal `num_frames`; height and
            width may be `None`. Default `(num_frames, None, None, 3)`.
        pooling: with `include_top=False`, `None` (the res5 feature maps, a list of one per
            pathway), `"avg"` or `"max"` (pooled per pathway and concatenated).
        classes: number of classes of the head.
        classifier_activation: activation of the head (`"softmax"`, `"sigmoid"`, `None`, ...).
        include_preprocessing: the model takes RGB in [0, 255] (uint8 or float) and
            normalises it itself (`(x / 255 - 0.45) / 0.225`); with `False` it takes
            normalised input.
        dropout_rate: dropout before the projection (active only in training).
        name: model name.

    Returns:
        A `keras.Model`.

    Example:
        >>> model = SlowFast(depth=50, num_frames=32, alpha=4, fusion_kernel_size=7,
        ...                  width_per_group=8, classes=10, input_shape=(32, 64, 64, 3))
        >>> model.output_shape
        (None, 10)
    """
    spec = Backbone.from_settings(backbone, backbone_settings)
    cfg = spec.resolved()
    cfg["train_crop_size"] = train_crop_size
    if train_crop_size is not None and (
        isinstance(train_crop_size, bool)
        or not isinstance(train_crop_size, int)
        or train_crop_size < 32
    ):
        raise argument_error(
            "`train_crop_size` must be an integer >= 32 or None.", train_crop_size=train_crop_size
        )
    if pooling not in (None, "avg", "max"):
        raise argument_error("`pooling` must be None, 'avg' or 'max'.", pooling=pooling)
    if include_top:
        check_head_arguments(classes, dropout_rate)
    input_shape = check_input_shape(input_shape, spec.num_frames)
    dtype = check_dtype(dtype)

    inputs = keras.Input(shape=input_shape, name="clip")
    with dtype_policy_scope(dtype):
        x = pathway_inputs(inputs, cfg, include_preprocessing)
        features = backbone_features(x, cfg)
    if include_top:
        outputs = classification_head(features, cfg, classes, classifier_activation, dropout_rate)
    elif pooling is not None:
        pool_cls = (
            keras.layers.GlobalAveragePooling3D
            if pooling == "avg"
            else keras.layers.GlobalMaxPooling3D
        )
        pooled = [
            pool_cls(name=f"pathway{p}_{pooling}_pool", dtype=HEAD_DTYPE)(f)
            for p, f in enumerate(features)
        ]
        outputs = (
            pooled[0]
            if len(pooled) == 1
            else keras.layers.Concatenate(name="pooled_concat", dtype=HEAD_DTYPE)(pooled)
        )
    else:
        outputs = features[0] if len(features) == 1 else features
    if name is None:
        name = "slow" if spec.single_pathway else "slowfast"
    model = LeanFunctional(inputs, outputs, name=name)
    load_keras_weights(model, weights)
    return model


def load_keras_weights(model, weights):
    """Loads a Keras `.weights.h5` file into a freshly built model (`None`: nothing).

    PySlowFast / PyTorchVideo / Caffe2 checkpoints are converted above the builders (by
    :func:`keras_slowfast.from_preset`, :func:`keras_slowfast.load_pyslowfast` and the named
    builders such as :func:`keras_slowfast.SlowFastR50`), which know the checkpoint's
    conventions.
    """
    if weights is None:
        return model
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            "`weights` must be None or the path of a .weights.h5 file. "
            f"Received: weights={weights!r}"
        )
    path = os.fspath(weights)
    if not path.endswith(".weights.h5"):
        raise ValueError(
            "The generic builders take `weights` as a Keras .weights.h5 file; load "
            "PySlowFast / PyTorchVideo / Caffe2 checkpoints and published weights with "
            "keras_slowfast.from_preset, load_pyslowfast, load_pytorchvideo or a named "
            f"builder such as SlowFastR50(weights=...). Received: weights={weights!r}"
        )
    if not os.path.isfile(path):
        raise ValueError(f"No weights file at this path. Received: weights={weights!r}")
    model.load_weights(path)
    return model


def check_input_shape(input_shape, num_frames):
    if input_shape is None:
        return (num_frames, None, None, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 4 or input_shape[-1] != 3:
        raise argument_error(
            "`input_shape` must be (frames, height, width, 3).", input_shape=input_shape
        )
    if input_shape[0] != num_frames:
        raise argument_error(
            "The frames of `input_shape` must equal `num_frames`.",
            input_shape=input_shape,
            num_frames=num_frames,
        )
    for d in input_shape[1:3]:
        if d is not None and d < 32:
            raise argument_error(
                "`input_shape` height and width must be at least 32.", input_shape=input_shape
            )
    return input_shape
