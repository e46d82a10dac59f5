"""The presets: one row per published SlowFast-family network, and nothing else knows one.

A row says how to build the network (the builder and its full-size arguments), where its
checkpoint is published (path under `https://dl.fbaipublicfiles.com`, format, the
upstream config it was trained with, sha256 where known), what it was trained on (dataset,
label set, published metric) and how it is tested (the input protocol: frames, sampling
rate, fps, crops, views, ensemble method, channel order, sampling mode).

Rows without a checkpoint are architectures that build (and load a user's checkpoint) but
have no published weights. The named builders (:func:`keras_slowfast.SlowFastR50`, ...),
:func:`keras_slowfast.from_preset`, the loaders, the CLI,
:func:`keras_slowfast.inference.classify_video` and the examples all read this table.

This module is plain data: it imports neither the models nor the weights code.

Example:
    >>> preset = get_preset("slowfast_8x8_r50_kinetics400")
    >>> preset.architecture, preset.weights, preset.protocol.views
    ('slowfast_8x8_r50', 'k400', 30)
    >>> find_preset("slowfast_8x8_r50", "kinetics400").name
    'slowfast_8x8_r50_kinetics400'
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

__all__ = [
    "BASE_URL",
    "CLASSIFIER",
    "DETECTOR",
    "KINDS",
    "PRESETS",
    "Checkpoint",
    "Preset",
    "Protocol",
    "architecture_names",
    "find_preset",
    "get_preset",
    "preset_names",
    "presets_of",
    "weights_names",
]

#: Where the published checkpoints live (`KERAS_SLOWFAST_MIRROR` replaces it).
BASE_URL = "https://dl.fbaipublicfiles.com"

#: The kinds of model a preset builds: a classifier or an AVA detector.
CLASSIFIER = "classifier"
DETECTOR = "detector"
KINDS = (CLASSIFIER, DETECTOR)
_FORMATS = ("caffe2", "pyslowfast", "pytorchvideo")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A published checkpoint file.

    Attributes:
        path: the path under :data:`BASE_URL`.
        format: `"caffe2"` (PySlowFast model zoo `.pkl`), `"pyslowfast"` (PySlowFast's own
            `.pyth`) or `"pytorchvideo"` (PyTorchVideo hub `.pyth`, `{"model_state": ...}`).
        sha256: the file's SHA-256, or `None`: no digest is published for any of these
            files, so a download is checked by strict conversion (and, for `.pyth` zips,
            by every member's CRC-32), not by a digest.
    """

    path: str
    format: str
    sha256: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Protocol:
    """How a network is fed and tested (PySlowFast's `DATA.*` and `TEST.*`).

    Attributes:
        num_frames: frames per clip (`DATA.NUM_FRAMES`; the fast pathway's).
        sampling_rate: frame stride at `target_fps` (`DATA.SAMPLING_RATE`).
        target_fps: the frame rate clips are sampled at (`DATA.TARGET_FPS`).
        train_crop_size: training crop (`DATA.TRAIN_CROP_SIZE`).
        test_crop_size: test crop and short side (`DATA.TEST_CROP_SIZE`).
        temporal_views: clips per video at test time (`TEST.NUM_ENSEMBLE_VIEWS`).
        crop_indices: the test crops of each clip along the long side (0 start, 1 centre,
            2 end); their count is `TEST.NUM_SPATIAL_CROPS`. PySlowFast's Kinetics loader
            takes the centre for one crop, its SSv2 loader the start.
        ensemble: how view scores combine, `"sum"` or `"max"` (`DATA.ENSEMBLE_METHOD`).
        channel_order: the channel order the upstream network sees, `"rgb"` for every
            published network, as for every keras_slowfast model. (The SSv2 and Charades
            configs set `DATA.REVERSE_INPUT_CHANNEL` because their loaders decode JPEG
            frames with OpenCV, which gives BGR: the reversal turns them into RGB, so the
            weights convert unchanged.)
        sampling: `"uniform"` (PySlowFast's Kinetics clips) or `"segment"` (one frame from
            each of `num_frames` equal segments of the whole video, PySlowFast's SSv2).
        multi_label: classes are independent (sigmoid scores, Charades) rather than one
            softmax.
    """

    num_frames: int
    sampling_rate: int
    target_fps: int = 30
    train_crop_size: int = 224
    test_crop_size: int = 256
    temporal_views: int = 10
    crop_indices: tuple = (0, 1, 2)
    ensemble: str = "sum"
    channel_order: str = "rgb"
    sampling: str = "uniform"
    multi_label: bool = False

    @property
    def spatial_crops(self) -> int:
        """Test crops per clip."""
        return len(self.crop_indices)

    @property
    def views(self) -> int:
        """Test views per video: `temporal_views * spatial_crops`."""
        return self.temporal_views * self.spatial_crops


@dataclasses.dataclass(frozen=True, kw_only=True)
class Preset:
    """One published network (or one architecture without published weights).

    Attributes:
        name: the unique preset name, e.g. `"slowfast_8x8_r50_kinetics400"`.
        architecture: the architecture key shared by rows of the same network, e.g.
            `"slowfast_8x8_r50"`: the named builders pick a row by it and `weights`.
        weights: the weights name within the architecture (`"k400"`, `"ava"`, ...), or
            `None` for an architecture without published weights.
        aliases: other accepted weights names (`"kinetics400"`, `"ava_v2.2"`, ...).
        kind: `"classifier"` (:func:`keras_slowfast.SlowFast`) or `"detector"`
            (:func:`keras_slowfast.SlowFastDetector`).
        kwargs: the builder's arguments for the full-size network (read-only).
        config: the upstream config the checkpoint was trained and tested with.
        checkpoint: the published :class:`Checkpoint`, or `None`.
        source: `"pyslowfast"` or `"pytorchvideo"` (who published it).
        hub_name: PyTorchVideo's hub function name, for its checkpoints.
        dataset: what it was trained on.
        labels: the label set of its outputs (a name :func:`keras_slowfast.labels.class_names`
            knows), or `None`.
        classes: the class count of its head (0 without a head).
        metric, value: the published metric and its value.
        params: the trainable parameter count of the full-size PyTorch network (BatchNorm
            statistics excluded, PyTorch's convention).
        protocol: the :class:`Protocol`.
        include_top: `False` for backbones published without a classifier.
        backbone_of: for detectors, the classifier presets whose backbones fit them
            (preferred first), used to initialise a detector from a classifier.
        notes: anything a user should know.
    """

    name: str
    architecture: str
    weights: str | None
    aliases: tuple = ()
    kind: str
    kwargs: types.MappingProxyType
    config: str | None
    checkpoint: Checkpoint | None
    source: str
    hub_name: str | None = None
    dataset: str | None
    labels: str | None
    classes: int
    metric: str | None = None
    value: float | None = None
    params: int
    protocol: Protocol
    include_top: bool = True
    backbone_of: tuple = ()
    notes: str = ""

    @property
    def url_path(self) -> str | None:
        """The checkpoint's path under the base URL, or `None`."""
        return None if self.checkpoint is None else self.checkpoint.path

    def builder_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """The builder arguments with `overrides` applied (a new dict); the model is named
        after the architecture unless `name` is given."""
        return {"name": self.architecture, **self.kwargs, **overrides}


def _frozen(d):
    return types.MappingProxyType(dict(d))


# ---------------------------------------------------------------------------------------
# Architectures (full-size builder arguments). A row below refers to one of these.

_R50_TEMP = ((3, 3), (4, 4), (6, 6), (3, 3))
_R101_TEMP = ((3, 3), (4, 4), (23, 23), (3, 3))
# "R101_50_50": only the first 6 res4 blocks have temporal kernels, as in R50.
_R101_50_50_TEMP = _R50_TEMP
_NL_R50 = (((), ()), ((1, 3), ()), ((1, 3, 5), ()), ((), ()))
_NL_R101 = (((), ()), ((), ()), ((6, 13, 20), ()), ((), ()))
# AVA detectors: res5 at stride 1 with dilation 2 (features at stride 16).
_AVA_RES5 = dict(spatial_strides=(1, 2, 2, 1), spatial_dilations=(1, 1, 1, 2))

_SLOWFAST_4X16_R50 = dict(
    depth=50, num_frames=32, alpha=8, fusion_kernel_size=5, num_block_temp_kernel=_R50_TEMP
)
_SLOWFAST_8X8_R50 = dict(
    depth=50, num_frames=32, alpha=4, fusion_kernel_size=7, num_block_temp_kernel=_R50_TEMP
)
_SLOWFAST_NLN_8X8_R50 = dict(
    _SLOWFAST_8X8_R50, fusion_kernel_size=5, nonlocal_location=_NL_R50, nonlocal_pool=(1, 2, 2)
)
_SLOWFAST_8X8_R101 = dict(
    depth=101, num_frames=32, alpha=4, fusion_kernel_size=5, num_block_temp_kernel=_R101_TEMP
)
_SLOWFAST_16X8_R101_50_50 = dict(
    depth=101,
    num_frames=64,
    alpha=4,
    fusion_kernel_size=5,
    num_block_temp_kernel=_R101_50_50_TEMP,
)
_SLOWFAST_NLN_16X8_R101_50_50 = dict(
    _SLOWFAST_16X8_R101_50_50, nonlocal_location=_NL_R101, nonlocal_pool=(1, 2, 2)
)
_SLOW_8X8_R50 = dict(depth=50, num_frames=8, single_pathway=True)
_SLOW_4X16_R50 = dict(depth=50, num_frames=4, single_pathway=True)
_AVA_SLOWFAST_32X2_R101_50_50 = dict(
    _SLOWFAST_16X8_R101_50_50,
    num_frames=32,
    nonlocal_location=_NL_R101,
    nonlocal_pool=(2, 2, 2),
    aligned=False,
    classes=80,
    **_AVA_RES5,
)
_AVA_SLOWFAST_R50_DETECTION = dict(_SLOWFAST_8X8_R50, aligned=False, classes=80, **_AVA_RES5)

_SLOWFAST_16X8_R50 = dict(_SLOWFAST_8X8_R50, num_frames=64)
_AVA_SLOWFAST_64X2_R101_50_50 = dict(_AVA_SLOWFAST_32X2_R101_50_50, num_frames=64)
_AVA_SLOW_4X16_R50 = dict(_SLOW_4X16_R50, aligned=False, classes=80, **_AVA_RES5)

# Protocols.
_K400_32X2 = Protocol(num_frames=32, sampling_rate=2)
_K400_64X2 = Protocol(num_frames=64, sampling_rate=2)
_K400_SLOW_8X8 = Protocol(num_frames=8, sampling_rate=8)
_K400_SLOW_4X16 = Protocol(num_frames=4, sampling_rate=16)
# Multigrid models are tested at 224 (their configs' TEST_CROP_SIZE).
_K400_32X2_MULTIGRID = Protocol(num_frames=32, sampling_rate=2, test_crop_size=224)
# SSv2 (PySlowFast ssv2.py): one frame from the middle of each of 64 equal segments of the
# whole video, one view, the first crop along the long side.
_SSV2_64 = Protocol(
    num_frames=64, sampling_rate=1, sampling="segment", temporal_views=1, crop_indices=(0,)
)
_SSV2_64_MULTIGRID = dataclasses.replace(_SSV2_64, test_crop_size=224)
# PyTorchVideo's SSv2 models: the same segment rule, one clip x 3 crops.
_SSV2_PTV_SLOW = Protocol(num_frames=8, sampling_rate=1, sampling="segment", temporal_views=1)
_SSV2_PTV_SLOWFAST = dataclasses.replace(_SSV2_PTV_SLOW, num_frames=32)
# Charades: multi-label, 10 clips x 3 crops, the maximum over the views.
_CHARADES_64X2 = Protocol(num_frames=64, sampling_rate=2, ensemble="max", multi_label=True)
_CHARADES_SLOW_8X8 = Protocol(num_frames=8, sampling_rate=8, ensemble="max", multi_label=True)
_CHARADES_32X2 = Protocol(num_frames=32, sampling_rate=2, ensemble="max", multi_label=True)
# AVA: one clip per keyframe, the whole frame with its short side at 256 (no crop).
_AVA_32X2 = Protocol(num_frames=32, sampling_rate=2, temporal_views=1, crop_indices=(1,))
_AVA_64X2 = dataclasses.replace(_AVA_32X2, num_frames=64)
_AVA_4X16 = dataclasses.replace(_AVA_32X2, num_frames=4, sampling_rate=16)

_K400 = "kinetics400"
_PSF_K400 = "pyslowfast/model_zoo/kinetics400"
_PSF_AVA = "pyslowfast/model_zoo/ava"
# The multigrid-era files sit under a doubled "pyslowfast/" (their published links).
_PSF_MG = "pyslowfast/pyslowfast/model_zoo/multigrid/model_zoo"
_PTV = "pytorchvideo/model_zoo"

# Trainable parameters of the full-size PyTorch backbones (without the head), from the
# published full-size counts (SlowFast 8x8 R50 34,566,488, 4x16 R50 34,480,216, Slow R50
# 32,454,096, R101 8x8 62,826,968, 16x8 R101_50_50 53,774,808, AVA 32x2 R101_50_50
# 59,342,488; NLN 41,838,680 and 60,080,088) minus their 400- or 80-class projection.
_BACKBONE_PARAMS = {
    "slowfast_r50_a4": 34_566_488 - 2305 * 400,
    "slowfast_r50_a8": 34_480_216 - 2305 * 400,
    "slow_r50": 32_454_096 - 2049 * 400,
    "slowfast_nln_r50": 41_838_680 - 2305 * 400,
    "slowfast_r101": 62_826_968 - 2305 * 400,
    "slowfast_r101_50_50": 53_774_808 - 2305 * 400,
    "slowfast_nln_r101_50_50": 60_080_088 - 2305 * 400,
    "ava_slowfast_r101_50_50": 59_342_488 - 2305 * 80,
}


def _params(backbone, classes):
    """Backbone parameters plus a `classes`-way projection of its pooled features."""
    features = 2048 if backbone in ("slow_r50",) else 2304
    return _BACKBONE_PARAMS[backbone] + (features + 1) * classes


def _classifier(name, architecture, weights, kwargs, backbone, **fields):
    kwargs = dict(kwargs)
    classes = fields.pop("classes", 400)
    if "train_crop_size" not in kwargs:
        kwargs["train_crop_size"] = fields["protocol"].train_crop_size
    if fields["protocol"].multi_label:
        kwargs["classifier_activation"] = "sigmoid"
    kwargs.setdefault("classes", classes)
    return Preset(
        name=name,
        architecture=architecture,
        weights=weights,
        kind=CLASSIFIER,
        kwargs=_frozen(kwargs),
        classes=classes,
        params=_params(backbone, classes),
        **fields,
    )


def _detector(name, architecture, weights, kwargs, backbone, **fields):
    kwargs = dict(kwargs)
    return Preset(
        name=name,
        architecture=architecture,
        weights=weights,
        kind=DETECTOR,
        kwargs=_frozen(kwargs),
        classes=kwargs["classes"],
        params=_params(backbone, kwargs["classes"]),
        **fields,
    )


def _backbone(name, architecture, weights, kwargs, backbone, **fields):
    """A backbone published without a classifier (built with `include_top=False`)."""
    return Preset(
        name=name,
        architecture=architecture,
        weights=weights,
        kind=CLASSIFIER,
        kwargs=_frozen(dict(kwargs, include_top=False)),
        classes=0,
        labels=None,
        params=_params(backbone, 0),
        include_top=False,
        **fields,
    )


_K400_FIELDS = dict(dataset=_K400, labels=_K400, metric="top1")
_SSV2_FIELDS = dict(dataset="ssv2", labels="ssv2", metric="top1", classes=174)
_CHARADES_FIELDS = dict(dataset="charades", labels="charades", metric="mAP", classes=157)
_AVA_FIELDS = dict(dataset="ava_v2.2", labels="ava", metric="mAP")


def _ptv(path):
    return Checkpoint(path=f"{_PTV}/{path}", format="pytorchvideo")


#: Every preset, in display order.
PRESETS = (
    # --- Kinetics-400 classifiers ------------------------------------------------------
    _classifier(
        "slowfast_4x16_r50_kinetics400", "slowfast_4x16_r50", "k400", _SLOWFAST_4X16_R50,
        "slowfast_r50_a8", aliases=("kinetics400",),
        config="configs/Kinetics/c2/SLOWFAST_4x16_R50.yaml",
        checkpoint=Checkpoint(path=f"{_PSF_K400}/SLOWFAST_4x16_R50.pkl", format="caffe2"),
        source="pyslowfast", value=75.6, protocol=_K400_32X2, **_K400_FIELDS,
    ),
    _classifier(
        "slowfast_4x16_r50_kinetics400_ptv", "slowfast_4x16_r50", "k400_ptv",
        _SLOWFAST_4X16_R50, "slowfast_r50_a8",
        config="configs/Kinetics/pytorchvideo/SLOWFAST_4x16_R50.yaml",
        checkpoint=_ptv("kinetics/SLOWFAST_4x16_R50.pyth"), source="pytorchvideo",
        value=75.34, protocol=_K400_32X2, **_K400_FIELDS,
    ),
    _classifier(
        "slowfast_8x8_r50_kinetics400", "slowfast_8x8_r50", "k400", _SLOWFAST_8X8_R50,
        "slowfast_r50_a4", aliases=("kinetics400",),
        config="configs/Kinetics/c2/SLOWFAST_8x8_R50.yaml",
        checkpoint=Checkpoint(path=f"{_PSF_K400}/SLOWFAST_8x8_R50.pkl", format="caffe2"),
        source="pyslowfast", value=77.0, protocol=_K400_32X2, **_K400_FIELDS,
    ),
    _classifier(
        "slowfast_8x8_r50_kinetics400_ptv", "slowfast_8x8_r50", "k400_ptv", _SLOWFAST_8X8_R50,
        "slowfast_r50_a4", config="configs/Kinetics/pytorchvideo/SLOWFAST_8x8_R50.yaml",
        checkpoint=_ptv("kinetics/SLOWFAST_8x8_R50.pyth"), source="pytorchvideo",
        hub_name="slowfast_r50", value=76.94, protocol=_K400_32X2, **_K400_FIELDS,
    ),
    _classifier(
        "slowfast_8x8_r50_kinetics400_stepwise", "slowfast_8x8_r50", "k400_stepwise",
        _SLOWFAST_8X8_R50, "slowfast_r50_a4",
        config="configs/Kinetics/SLOWFAST_8x8_R50_stepwise.yaml",
        # A PyTorch checkpoint despite its `.pkl` name (the reader goes by the contents).
        checkpoint=Checkpoint(
            path=f"{_PSF_MG}/Kinetics/SLOWFAST_8x8_R50_stepwise.pkl", format="pyslowfast"
        ),
        source="pyslowfast", value=76.8, protocol=_K400_32X2, **_K400_FIELDS,
    ),
    _classifier(
        "slowfast_8x8_r50_kinetics400_multigrid", "slowfast_8x8_r50", "k400_multigrid",
        # Short-cycle multigrid training pools globally (AdaptiveAvgPool3d).
        dict(_SLOWFAST_8X8_R50, train_crop_size=None), "slowfast_r50_a4",
        config="configs/Kinetics/SLOWFAST_8x8_R50_stepwise_multigrid.yaml",
        checkpoint=Checkpoint(
            path=f"{_PSF_MG}/Kinetics/SLOWFAST_8x8_R50_stepwise_multigrid.pkl",
            format="pyslowfast",
        ),
        source="pyslowfast", value=76.6, protocol=_K400_32X2_MULTIGRID, **_K400_FIELDS,
    ),
    _classifier(
        "slowfast_nln_8x8_r50", "slowfast_nln_8x8_r50", None, _SLOWFAST_NLN_8X8_R50,
        "slowfast_nln_r50", config="configs/Kinetics/SLOWFAST_NLN_8x8_R50.yaml",
        checkpoint=None, source="pyslowfast", protocol=_K400_32X2, dataset=None, labels=_K400,
        notes="Non-local 8x8 R50: an architecture; no weights are published.",
    ),
    _classifier(
        "slowfast_8x8_r101_kinetics400", "slowfast_8x8_r101", "k400", _SLOWFAST_8X8_R101,
        "slowfast_r101", aliases=("kinetics400",),
        config="configs/Kinetics/pytorchvideo/SLOWFAST_8x8_R101.yaml",
        checkpoint=_ptv("kinetics/SLOWFAST_8x8_R101.pyth"), source="pytorchvideo",
        hub_name="slowfast_r101", value=77.9, protocol=_K400_32X2, **_K400_FIELDS,
    ),
    _classifier(
        "slowfast_16x8_r101_50_50_kinetics400", "slowfast_16x8_r101_50_50", "k400",
        _SLOWFAST_16X8_R101_50_50, "slowfast_r101_50_50", aliases=("kinetics400",),
        config="configs/Kinetics/pytorchvideo/SLOWFAST_16x8_R101_50_50.yaml",
        checkpoint=_ptv("kinetics/SLOWFAST_16x8_R101_50_50.pyth"), source="pytorchvideo",
        hub_name="slowfast_16x8_r101_50_50", value=78.7, protocol=_K400_64X2, **_K400_FIELDS,
    ),
    _classifier(
        "slowfast_nln_16x8_r101_50_50", "slowfast_nln_16x8_r101_50_50", None,
        _SLOWFAST_NLN_16X8_R101_50_50, "slowfast_nln_r101_50_50",
        config="configs/Kinetics/c2/SLOWFAST_NLN_16x8_R101_50_50.yaml", checkpoint=None,
        source="pyslowfast", protocol=_K400_64X2, dataset=None, labels=_K400,
        notes="Non-local 16x8 R101_50_50: an architecture; no weights are published.",
    ),
    _classifier(
        "slow_8x8_r50_kinetics400", "slow_8x8_r50", "k400", _SLOW_8X8_R50, "slow_r50",
        aliases=("kinetics400",), config="configs/Kinetics/c2/SLOW_8x8_R50.yaml",
        checkpoint=Checkpoint(path=f"{_PSF_K400}/SLOWONLY_8x8_R50.pkl", format="caffe2"),
        source="pyslowfast", value=74.8, protocol=_K400_SLOW_8X8, **_K400_FIELDS,
    ),
    _classifier(
        "slow_8x8_r50_kinetics400_ptv", "slow_8x8_r50", "k400_ptv", _SLOW_8X8_R50, "slow_r50",
        config="configs/Kinetics/pytorchvideo/SLOW_8x8_R50.yaml",
        checkpoint=_ptv("kinetics/SLOW_8x8_R50.pyth"), source="pytorchvideo",
        hub_name="slow_r50", value=74.58, protocol=_K400_SLOW_8X8, **_K400_FIELDS,
    ),
    _classifier(
        "slow_4x16_r50_kinetics400", "slow_4x16_r50", "k400", _SLOW_4X16_R50, "slow_r50",
        aliases=("kinetics400",), config="configs/Kinetics/c2/SLOW_4x16_R50.yaml",
        checkpoint=Checkpoint(path=f"{_PSF_K400}/SLOWONLY_4x16_R50.pkl", format="caffe2"),
        source="pyslowfast", value=72.7, protocol=_K400_SLOW_4X16, **_K400_FIELDS,
    ),
    _classifier(
        "slow_4x16_r50_kinetics400_ptv", "slow_4x16_r50", "k400_ptv", _SLOW_4X16_R50,
        "slow_r50", config="configs/Kinetics/pytorchvideo/SLOW_4x16_R50.yaml",
        checkpoint=_ptv("kinetics/SLOW_4x16_R50.pyth"), source="pytorchvideo", value=72.4,
        protocol=_K400_SLOW_4X16, **_K400_FIELDS,
    ),
    # --- Something-Something v2 --------------------------------------------------------
    _classifier(
        "slowfast_16x8_r50_ssv2", "slowfast_16x8_r50", "ssv2", _SLOWFAST_16X8_R50,
        "slowfast_r50_a4", config="configs/SSv2/SLOWFAST_16x8_R50.yaml",
        checkpoint=Checkpoint(path=f"{_PSF_MG}/SSv2/SLOWFAST_16x8_R50.pkl", format="pyslowfast"),
        source="pyslowfast", value=63.0, protocol=_SSV2_64, **_SSV2_FIELDS,
    ),
    _classifier(
        "slowfast_16x8_r50_ssv2_multigrid", "slowfast_16x8_r50", "ssv2_multigrid",
        dict(_SLOWFAST_16X8_R50, train_crop_size=None), "slowfast_r50_a4",
        config="configs/SSv2/SLOWFAST_16x8_R50_multigrid.yaml",
        checkpoint=Checkpoint(
            path=f"{_PSF_MG}/SSv2/SLOWFAST_16x8_R50_multigrid.pkl", format="pyslowfast"
        ),
        source="pyslowfast", value=63.5, protocol=_SSV2_64_MULTIGRID, **_SSV2_FIELDS,
    ),
    _classifier(
        "slowfast_8x8_r50_ssv2_ptv", "slowfast_8x8_r50", "ssv2_ptv", _SLOWFAST_8X8_R50,
        "slowfast_r50_a4", config="configs/SSv2/pytorchvideo/SLOWFAST_8x8_R50.yaml",
        checkpoint=_ptv("ssv2/SLOWFAST_8x8_R50.pyth"), source="pytorchvideo", value=61.68,
        protocol=_SSV2_PTV_SLOWFAST, **_SSV2_FIELDS,
    ),
    _classifier(
        "slow_8x8_r50_ssv2_ptv", "slow_8x8_r50", "ssv2_ptv", _SLOW_8X8_R50, "slow_r50",
        config="configs/SSv2/pytorchvideo/SLOW_8x8_R50.yaml",
        checkpoint=_ptv("ssv2/SLOW_8x8_R50.pyth"), source="pytorchvideo", value=60.04,
        protocol=_SSV2_PTV_SLOW, **_SSV2_FIELDS,
    ),
    # --- Charades (multi-label) --------------------------------------------------------
    _classifier(
        "slowfast_16x8_r50_charades", "slowfast_16x8_r50", "charades", _SLOWFAST_16X8_R50,
        "slowfast_r50_a4", config="configs/Charades/SLOWFAST_16x8_R50.yaml",
        checkpoint=Checkpoint(
            path=f"{_PSF_MG}/Charades/SLOWFAST_16x8_R50.pkl", format="pyslowfast"
        ),
        source="pyslowfast", value=38.9, protocol=_CHARADES_64X2, **_CHARADES_FIELDS,
    ),
    _classifier(
        "slowfast_16x8_r50_charades_multigrid", "slowfast_16x8_r50", "charades_multigrid",
        dict(_SLOWFAST_16X8_R50, train_crop_size=None), "slowfast_r50_a4",
        config="configs/Charades/SLOWFAST_16x8_R50_multigrid.yaml",
        checkpoint=Checkpoint(
            path=f"{_PSF_MG}/Charades/SLOWFAST_16x8_R50_multigrid.pkl", format="pyslowfast"
        ),
        source="pyslowfast", value=38.6, protocol=_CHARADES_64X2, **_CHARADES_FIELDS,
    ),
    _classifier(
        "slowfast_8x8_r50_charades_ptv", "slowfast_8x8_r50", "charades_ptv", _SLOWFAST_8X8_R50,
        "slowfast_r50_a4", config="configs/Charades/pytorchvideo/SLOWFAST_8x8_R50.yaml",
        checkpoint=_ptv("charades/SLOWFAST_8x8_R50.pyth"), source="pytorchvideo",
        value=37.24, protocol=_CHARADES_32X2, **_CHARADES_FIELDS,
    ),
    _classifier(
        "slow_8x8_r50_charades_ptv", "slow_8x8_r50", "charades_ptv", _SLOW_8X8_R50,
        "slow_r50", config="configs/Charades/pytorchvideo/SLOW_8x8_R50.yaml",
        checkpoint=_ptv("charades/SLOW_8x8_R50.pyth"), source="pytorchvideo", value=34.72,
        protocol=_CHARADES_SLOW_8X8, **_CHARADES_FIELDS,
    ),
    # --- Self-supervised Slow R50 backbones (PySlowFast contrastive_ssl, Kinetics-400) ---
    # The value is the published Kinetics-400 linear-evaluation top-1; rho is the number of
    # clips per training sample.
    *(
        _backbone(
            f"slow_{frames}x{rate}_r50_{method.lower()}_rho{rho}", f"slow_{frames}x{rate}_r50",
            f"{method.lower()}_rho{rho}", dict(_SLOW_8X8_R50, num_frames=frames), "slow_r50",
            config=f"configs/contrastive_ssl/{config}.yaml",
            checkpoint=Checkpoint(
                path=f"pyslowfast/videomoco_models/{method}_SlowR50_{frames}x{rate}_T{rho}"
                "_epoch_00200.pyth",
                format="pyslowfast",
            ),
            source="pyslowfast", dataset=_K400, metric="k400_linear_top1", value=value,
            protocol=Protocol(num_frames=frames, sampling_rate=rate),
            notes="Self-supervised backbone without a classifier: build with "
            "include_top=False; the checkpoint's momentum copy and MLP projection are dropped.",
        )
        for method, frames, rate, rho, config, value in (
            ("MoCo", 8, 8, 2, "MoCo_SlowR50_8x8", 66.6),
            ("BYOL", 8, 8, 2, "BYOL_SlowR50_8x8", 67.4),
            ("SimCLR", 8, 8, 2, "SimCLR_SlowR50_8x8", 61.5),
            ("SwAV", 8, 8, 2, "SwAV_Slow_R50_8x8", 62.6),
            ("MoCo", 8, 8, 4, "MoCo_SlowR50_8x8", 71.0),
            ("BYOL", 8, 8, 4, "BYOL_SlowR50_8x8", 70.1),
            ("BYOL", 16, 4, 4, "BYOL_SlowR50_8x8", 71.1),
        )
    ),
    # --- AVA detectors -----------------------------------------------------------------
    _detector(
        "ava_slowfast_32x2_r101_50_50_v2.2", "ava_slowfast_32x2_r101_50_50", "ava",
        _AVA_SLOWFAST_32X2_R101_50_50, "ava_slowfast_r101_50_50", aliases=("ava_v2.2",),
        config="configs/AVA/c2/SLOWFAST_32x2_R101_50_50.yaml",
        # A PyTorch checkpoint despite its `.pkl` name (the config's CHECKPOINT_TYPE).
        checkpoint=Checkpoint(
            path=f"{_PSF_AVA}/SLOWFAST_32x2_R101_50_50.pkl", format="pyslowfast"
        ),
        source="pyslowfast", value=29.1, protocol=_AVA_32X2, **_AVA_FIELDS,
        backbone_of=("slowfast_nln_16x8_r101_50_50", "slowfast_16x8_r101_50_50_kinetics400"),
        notes="Person boxes with score >= 0.8.",
    ),
    _detector(
        "ava_slowfast_32x2_r101_50_50_v2.1", "ava_slowfast_32x2_r101_50_50", "ava_v2.1",
        _AVA_SLOWFAST_32X2_R101_50_50, "ava_slowfast_r101_50_50",
        config="configs/AVA/c2/SLOWFAST_32x2_R101_50_50_v2.1.yaml",
        checkpoint=Checkpoint(
            path=f"{_PSF_AVA}/SLOWFAST_32x2_R101_50_50_v2.1.pkl", format="caffe2"
        ),
        source="pyslowfast", value=28.2, protocol=_AVA_32X2, dataset="ava_v2.1",
        labels="ava", metric="mAP",
        backbone_of=("slowfast_nln_16x8_r101_50_50", "slowfast_16x8_r101_50_50_kinetics400"),
        notes="AVA v2.1 (evaluated with the v2.1 label map and ground truth).",
    ),
    _detector(
        "ava_slowfast_64x2_r101_50_50_v2.2", "ava_slowfast_64x2_r101_50_50", "ava",
        _AVA_SLOWFAST_64X2_R101_50_50, "ava_slowfast_r101_50_50", aliases=("ava_v2.2",),
        config="configs/AVA/c2/SLOWFAST_64x2_R101_50_50.yaml",
        # Its config says Caffe2, a later upstream note says PyTorch: the reader goes by the
        # file's contents either way.
        checkpoint=Checkpoint(path=f"{_PSF_AVA}/SLOWFAST_64x2_R101_50_50.pkl", format="caffe2"),
        source="pyslowfast", value=29.4, protocol=_AVA_64X2, **_AVA_FIELDS,
        notes="Person boxes with score >= 0.8.",
    ),
    _detector(
        "ava_slow_4x16_r50_v2.2", "ava_slow_4x16_r50", "ava", _AVA_SLOW_4X16_R50, "slow_r50",
        aliases=("ava_v2.2",), config="configs/AVA/c2/SLOW_8x8_R50.yaml",
        checkpoint=Checkpoint(path=f"{_PSF_AVA}/C2D_8x8_R50.pkl", format="caffe2"),
        source="pyslowfast", value=19.5, protocol=_AVA_4X16, **_AVA_FIELDS,
        backbone_of=("slow_4x16_r50_kinetics400",),
        notes="Slow 4x16 R50 (published under the name C2D_8x8_R50.pkl); person boxes with "
        "score >= 0.9.",
    ),
    _detector(
        "ava_slow_4x16_r50_v2.2_ptv", "ava_slow_4x16_r50", "ava_ptv", _AVA_SLOW_4X16_R50,
        "slow_r50", config=None, checkpoint=_ptv("ava/SLOW_4x16_R50_DETECTION.pyth"),
        source="pytorchvideo", hub_name="slow_r50_detection", value=19.5,
        protocol=_AVA_4X16, **_AVA_FIELDS, backbone_of=("slow_4x16_r50_kinetics400",),
    ),
    _detector(
        "ava_slowfast_r50_detection_v2.2", "ava_slowfast_r50_detection", "ava",
        _AVA_SLOWFAST_R50_DETECTION, "slowfast_r50_a4", aliases=("ava_v2.2",), config=None,
        checkpoint=_ptv("ava/SLOWFAST_8x8_R50_DETECTION.pyth"), source="pytorchvideo",
        hub_name="slowfast_r50_detection", value=24.67, protocol=_AVA_32X2, **_AVA_FIELDS,
        backbone_of=("slowfast_8x8_r50_kinetics400",),
    ),
)  # fmt: skip

_BY_NAME = {p.name: p for p in PRESETS}


def _check_table():
    """The table's own invariants (run at import: a bad row fails loudly)."""
    if len(_BY_NAME) != len(PRESETS):
        raise RuntimeError("Two presets share a name.")
    seen = {}
    for p in PRESETS:
        if p.kind not in KINDS:
            raise RuntimeError(f"Preset {p.name}: kind must be one of {KINDS}.")
        if p.checkpoint is not None and p.checkpoint.format not in _FORMATS:
            raise RuntimeError(f"Preset {p.name}: format must be one of {_FORMATS}.")
        if p.weights is not None and p.checkpoint is None:
            raise RuntimeError(f"Preset {p.name}: a weights name needs a checkpoint.")
        if p.checkpoint is not None and p.weights is None:
            raise RuntimeError(f"Preset {p.name}: a checkpoint needs a weights name.")
        if p.protocol.ensemble not in ("sum", "max"):
            raise RuntimeError(f"Preset {p.name}: ensemble must be 'sum' or 'max'.")
        if p.protocol.channel_order != "rgb":
            raise RuntimeError(f"Preset {p.name}: channel_order must be 'rgb'.")
        if not set(p.protocol.crop_indices) <= {0, 1, 2} or not p.protocol.crop_indices:
            raise RuntimeError(f"Preset {p.name}: crop_indices must be within (0, 1, 2).")
        if p.protocol.sampling not in ("uniform", "segment"):
            raise RuntimeError(f"Preset {p.name}: sampling must be 'uniform' or 'segment'.")
        if p.kwargs.get("num_frames") != p.protocol.num_frames:
            raise RuntimeError(f"Preset {p.name}: num_frames differs from its protocol's.")
        for name in (p.weights, *p.aliases):
            if name is None:
                continue
            key = (p.architecture, name)
            if key in seen:
                raise RuntimeError(f"Presets {seen[key]} and {p.name} both answer to {key}.")
            seen[key] = p.name
        for other in p.backbone_of:
            if other not in _BY_NAME or _BY_NAME[other].kind != CLASSIFIER:
                raise RuntimeError(f"Preset {p.name}: backbone_of names {other!r}.")


_check_table()


def preset_names(kind: str | None = None) -> list[str]:
    """The preset names, in table order (of one `kind` if given).

    Example:
        >>> preset_names("detector")  # doctest: +ELLIPSIS
        ['ava_slowfast_32x2_r101_50_50_v2.2', ..., 'ava_slowfast_r50_detection_v2.2']
    """
    return [p.name for p in PRESETS if kind is None or p.kind == kind]


def architecture_names(kind: str | None = None) -> list[str]:
    """The architecture keys, in table order, each once (of one `kind` if given).

    Example:
        >>> architecture_names("detector")  # doctest: +ELLIPSIS
        ['ava_slowfast_32x2_r101_50_50', ..., 'ava_slowfast_r50_detection']
    """
    out = []
    for p in PRESETS:
        if (kind is None or p.kind == kind) and p.architecture not in out:
            out.append(p.architecture)
    return out


def get_preset(name: str, kind: str | None = None) -> Preset:
    """The :class:`Preset` named `name`; an architecture key gives its first row.

    Args:
        name: a preset name (`"slowfast_8x8_r50_kinetics400"`) or an architecture key
            (`"slowfast_8x8_r50"`).
        kind: if given, the preset must be of this kind (`"classifier"` or `"detector"`).

    Raises:
        ValueError: for an unknown name or another kind, listing the choices.

    Example:
        >>> get_preset("slow_8x8_r50").name
        'slow_8x8_r50_kinetics400'
    """
    preset = _BY_NAME.get(name) if isinstance(name, str) else None
    if preset is None and isinstance(name, str):
        preset = next((p for p in PRESETS if p.architecture == name), None)
    if preset is None or (kind is not None and preset.kind != kind):
        what = "preset" if kind is None else f"{kind} preset"
        raise ValueError(
            f"`preset` must be a {what} name or architecture: one of "
            f"{preset_names(kind)} or {architecture_names(kind)}. Received: preset={name!r}"
        )
    return preset


def presets_of(architecture: str) -> list[Preset]:
    """The rows of an architecture key.

    Example:
        >>> [p.weights for p in presets_of("slowfast_8x8_r50")]  # doctest: +ELLIPSIS
        ['k400', 'k400_ptv', 'k400_stepwise', 'k400_multigrid', ...]
    """
    return [p for p in PRESETS if p.architecture == architecture]


def weights_names(architecture: str) -> list[str]:
    """The published weights names (aliases included) of an architecture, sorted.

    Example:
        >>> weights_names("ava_slowfast_32x2_r101_50_50")
        ['ava', 'ava_v2.1', 'ava_v2.2']
    """
    names = []
    for p in presets_of(architecture):
        if p.checkpoint is not None:
            names += [p.weights, *p.aliases]
    return sorted(names)


def find_preset(architecture: str, weights: str) -> Preset:
    """The row of `architecture` whose weights name (or alias) is `weights`.

    Raises:
        ValueError: when there is none, listing the names the architecture has.

    Example:
        >>> find_preset("slowfast_8x8_r50", "k400").checkpoint.path
        'pyslowfast/model_zoo/kinetics400/SLOWFAST_8x8_R50.pkl'
    """
    get_preset(architecture)  # validates the key
    for p in presets_of(architecture):
        if p.checkpoint is not None and weights in (p.weights, *p.aliases):
            return p
    names = weights_names(architecture)
    choices = f"one of {names}" if names else "None (no weights are published for it)"
    raise ValueError(
        f"`weights` for {architecture} must be {choices}, or the path of a .weights.h5, "
        f".pyth or .pkl file. Received: weights={weights!r}"
    )
