"""Reading PySlowFast YAML configs into builder arguments."""

from __future__ import annotations

import copy
import os
from typing import Any

import yaml

from keras_slowfast.weights.readers import load_state_dict

# The PySlowFast defaults that matter for the network, used for keys a (partial) config
# file does not set.
_DEFAULTS = {
    "MODEL": {
        "ARCH": "slowfast",
        "NUM_CLASSES": 400,
        "DROPOUT_RATE": 0.5,
        "HEAD_ACT": "softmax",
    },
    "RESNET": {
        "DEPTH": 50,
        "WIDTH_PER_GROUP": 64,
        "NUM_GROUPS": 1,
        "TRANS_FUNC": "bottleneck_transform",
        "STRIDE_1X1": False,
        "NUM_BLOCK_TEMP_KERNEL": [[3], [4], [6], [3]],
        "SPATIAL_STRIDES": [[1], [2], [2], [2]],
        "SPATIAL_DILATIONS": [[1], [1], [1], [1]],
    },
    "NONLOCAL": {
        "LOCATION": [[[]], [[]], [[]], [[]]],
        "INSTANTIATION": "dot_product",
        "POOL": [[[1, 2, 2], [1, 2, 2]]] * 4,
    },
    "SLOWFAST": {
        "ALPHA": 8,
        "BETA_INV": 8,
        "FUSION_CONV_CHANNEL_RATIO": 2,
        "FUSION_KERNEL_SZ": 5,
    },
    "DATA": {
        "NUM_FRAMES": 8,
        "TRAIN_CROP_SIZE": 224,
        "TEST_CROP_SIZE": 256,
        "REVERSE_INPUT_CHANNEL": False,
    },
    "MULTIGRID": {"SHORT_CYCLE": False, "LONG_CYCLE": False},
    "DETECTION": {
        "ENABLE": False,
        "ALIGNED": True,
        "ROI_XFORM_RESOLUTION": 7,
        "SPATIAL_SCALE_FACTOR": 16,
    },
}


def _merge(base, override):
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_pyslowfast_config(config: dict[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """Parses a PySlowFast config given as a dict, YAML text or the path of a YAML file.

    Keys the config does not set take PySlowFast's defaults.

    Args:
        config: a dict, YAML text, or a path to a `.yaml` file.

    Returns:
        The merged config as nested dicts.

    Example:
        >>> cfg = read_pyslowfast_config("SLOWFAST:\\n  ALPHA: 4\\n")
        >>> cfg["SLOWFAST"]["ALPHA"], cfg["RESNET"]["DEPTH"]
        (4, 50)
    """
    if isinstance(config, dict):
        data = config
    elif isinstance(config, (str, os.PathLike)):
        text = str(config)
        if "\n" not in text and os.path.isfile(text):
            with open(text, encoding="utf-8") as f:
                text = f.read()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(
                f"`config` is not valid YAML ({e}). Received: config={config!r}"
            ) from e
        if not isinstance(data, dict):
            raise ValueError(
                "`config` must be a PySlowFast YAML mapping, the path of a YAML file, or a "
                f"variant name. Received: config={str(config)[:200]!r}"
            )
    else:
        raise TypeError(
            f"`config` must be a dict, YAML text or a file path. Received: config={config!r}"
        )
    return _merge(_DEFAULTS, data)


def builder_kwargs_from_config(
    config: dict[str, Any] | str | os.PathLike,
) -> tuple[str, dict[str, Any]]:
    """Turns a PySlowFast config into arguments of the keras_slowfast builders.

    Returns:
        `(kind, kwargs)` where `kind` is `"classifier"` (for `SlowFast`) or `"detector"`
        (for `SlowFastDetector`).

    Example:
        >>> kind, kwargs = builder_kwargs_from_config({"SLOWFAST": {"ALPHA": 4}})
        >>> kind, kwargs["alpha"], kwargs["depth"]
        ('classifier', 4, 50)
    """
    cfg = read_pyslowfast_config(config)
    model, resnet, sf, nl, data, det = (
        cfg["MODEL"],
        cfg["RESNET"],
        cfg["SLOWFAST"],
        cfg["NONLOCAL"],
        cfg["DATA"],
        cfg["DETECTION"],
    )
    arch = model["ARCH"]
    if arch not in ("slowfast", "slow"):
        raise ValueError(
            f"Only the 'slowfast' and 'slow' architectures are supported. Received: "
            f"MODEL.ARCH={arch!r}"
        )
    if resnet["TRANS_FUNC"] != "bottleneck_transform":
        raise ValueError(
            "Only RESNET.TRANS_FUNC 'bottleneck_transform' is supported. Received: "
            f"RESNET.TRANS_FUNC={resnet['TRANS_FUNC']!r}"
        )
    if resnet["STRIDE_1X1"]:
        raise ValueError("RESNET.STRIDE_1X1 True is not supported. Received: STRIDE_1X1=True")
    if resnet["NUM_GROUPS"] != 1:
        raise ValueError(
            f"Only RESNET.NUM_GROUPS 1 is supported. Received: NUM_GROUPS={resnet['NUM_GROUPS']}"
        )
    single = arch == "slow"
    kwargs = dict(
        depth=int(resnet["DEPTH"]),
        num_frames=int(data["NUM_FRAMES"]),
        alpha=1 if single else int(sf["ALPHA"]),
        beta_inv=int(sf["BETA_INV"]),
        fusion_kernel_size=int(sf["FUSION_KERNEL_SZ"]),
        fusion_conv_channel_ratio=int(sf["FUSION_CONV_CHANNEL_RATIO"]),
        width_per_group=int(resnet["WIDTH_PER_GROUP"]),
        num_block_temp_kernel=resnet["NUM_BLOCK_TEMP_KERNEL"],
        nonlocal_location=nl["LOCATION"],
        nonlocal_pool=nl["POOL"],
        nonlocal_instantiation=nl["INSTANTIATION"],
        spatial_strides=resnet["SPATIAL_STRIDES"],
        spatial_dilations=resnet["SPATIAL_DILATIONS"],
        single_pathway=single,
        classes=int(model["NUM_CLASSES"]),
        classifier_activation=_activation(model["HEAD_ACT"]),
        dropout_rate=float(model["DROPOUT_RATE"]),
    )
    if det["ENABLE"]:
        kwargs.update(
            aligned=bool(det["ALIGNED"]),
            roi_resolution=int(det["ROI_XFORM_RESOLUTION"]),
            spatial_scale_factor=int(det["SPATIAL_SCALE_FACTOR"]),
        )
        return "detector", kwargs
    # Short-cycle multigrid training (and contrastive models) pool globally
    # (AdaptiveAvgPool3d) instead of over the training crop's window.
    global_pool = cfg["MULTIGRID"]["SHORT_CYCLE"] or model.get("MODEL_NAME") == "ContrastiveModel"
    kwargs["train_crop_size"] = None if global_pool else int(data["TRAIN_CROP_SIZE"])
    return "classifier", kwargs


def _activation(head_act):
    if head_act in ("softmax", "sigmoid"):
        return head_act
    if head_act in (None, "none"):
        return None
    raise ValueError(
        f"MODEL.HEAD_ACT must be 'softmax', 'sigmoid' or 'none'. Received: HEAD_ACT={head_act!r}"
    )


# The clip settings of an AVA detector: (config section, key, setting name, type).
_AVA_CLIP_SETTINGS = (
    ("DATA", "SAMPLING_RATE", "sampling_rate", int),
    ("AVA", "BGR", "bgr", bool),
    ("AVA", "DETECTION_SCORE_THRESH", "detection_score_thresh", float),
)


def ava_clip_settings(config: dict | str | os.PathLike) -> dict:
    """The clip settings of an AVA detector that a PySlowFast config sets.

    These are what a detector's clips must be read with to match its training and test
    runs: `sampling_rate` (`DATA.SAMPLING_RATE`, frame stride at 30 fps), `bgr`
    (`AVA.BGR`, channel order) and `detection_score_thresh`
    (`AVA.DETECTION_SCORE_THRESH`, the minimum person-box score).

    Args:
        config: a dict, YAML text, or a path to a `.yaml` file (see
            :func:`read_pyslowfast_config`).

    Returns:
        A dict with those of the three keys that the config sets.

    Example:
        >>> ava_clip_settings("DATA:\\n  SAMPLING_RATE: 2\\nAVA:\\n  BGR: true\\n")
        {'sampling_rate': 2, 'bgr': True}
    """
    cfg = read_pyslowfast_config(config)
    settings = {}
    for section, key, name, kind in _AVA_CLIP_SETTINGS:
        if key in cfg.get(section, {}):
            settings[name] = kind(cfg[section][key])
    return settings


def checkpoint_ava_clip_settings(path: str | os.PathLike) -> dict:
    """:func:`ava_clip_settings` of the config embedded in a PySlowFast checkpoint.

    Args:
        path: a checkpoint file (`.pyth`; a Caffe2 `.pkl` carries no config).

    Returns:
        The settings the embedded config sets; `{}` for a checkpoint without one.

    Example:
        >>> checkpoint_ava_clip_settings("SLOWFAST_32x2_R101_50_50.pkl")  # doctest: +SKIP
        {}
    """
    _, info = load_state_dict(path)
    return ava_clip_settings(info["cfg"]) if info.get("cfg") else {}
