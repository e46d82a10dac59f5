"""Pure name maps between checkpoint formats and Keras layer names.

All checkpoint formats are first translated to PySlowFast's PyTorch state-dict keys
(`s2.pathway0_res0.branch2.a.weight`); Keras layer names are those module paths with dots
replaced by underscores. Each function maps one name and returns `None` for names it does
not know, so that callers can account for every key strictly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# Keras layer name -> PySlowFast module path.
_KERAS_TO_TORCH = [
    (re.compile(r"^(s1)_(pathway\d+_stem)_(conv|bn)$"), r"\1.\2.\3"),
    (re.compile(r"^(s\d+_fuse)_(conv_f2s|bn)$"), r"\1.\2"),
    (re.compile(r"^(s\d+)_(pathway\d+_res\d+)_(branch1|branch1_bn)$"), r"\1.\2.\3"),
    (
        re.compile(r"^(s\d+)_(pathway\d+_res\d+)_branch2_(a|b|c|a_bn|b_bn|c_bn)$"),
        r"\1.\2.branch2.\3",
    ),
    (
        re.compile(r"^(s\d+)_(pathway\d+_nonlocal\d+)_(conv_theta|conv_phi|conv_g|conv_out|bn)$"),
        r"\1.\2.\3",
    ),
    (re.compile(r"^head_projection$"), "head.projection"),
]


def keras_layer_to_torch_module(layer_name: str) -> str | None:
    """Maps a Keras layer name to its PySlowFast module path.

    Example:
        >>> keras_layer_to_torch_module("s2_pathway0_res0_branch2_a_bn")
        's2.pathway0_res0.branch2.a_bn'
    """
    for pattern, repl in _KERAS_TO_TORCH:
        if pattern.match(layer_name):
            return pattern.sub(repl, layer_name)
    return None


# Caffe2 BatchNorm (affine) suffixes -> PyTorch parameter names.
_C2_BN = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
_C2_PARAM = {"w": "weight", "b": "bias"}

# Blobs that Caffe2 training files carry besides the model: solver state.
_C2_IGNORED = re.compile(r"^(lr|model_iter|.*_momentum)$")


def caffe2_is_solver_state(name: str) -> bool:
    """True for Caffe2 blobs that are solver state (`lr`, `model_iter`, `*_momentum`)."""
    return bool(_C2_IGNORED.match(name))


def caffe2_to_pyslowfast(name: str) -> str | None:
    """Maps a Caffe2 blob name of the PySlowFast model zoo to a PySlowFast state-dict key.

    The fast pathway's blobs carry a `t_` prefix; the lateral connections are named after the
    layer they follow (`t_pool1_subsample`, `t_res<S>_<last>_branch2c_bn_subsample`).

    Example:
        >>> caffe2_to_pyslowfast("t_res3_0_branch2a_bn_riv")
        's3.pathway1_res0.branch2.a_bn.running_var'
        >>> caffe2_to_pyslowfast("t_res2_2_branch2c_bn_subsample_w")
        's2_fuse.conv_f2s.weight'
    """
    pathway = 0
    base = name
    if base.startswith("t_"):
        pathway, base = 1, base[2:]
    m = re.fullmatch(r"(pool1|res(\d)_\d+_branch2c_bn)_subsample_(w|bn_(s|b|rm|riv))", base)
    if m:
        if pathway != 1:
            return None
        stage = 1 if m.group(1) == "pool1" else int(m.group(2))
        if m.group(3) == "w":
            return f"s{stage}_fuse.conv_f2s.weight"
        return f"s{stage}_fuse.bn.{_C2_BN[m.group(4)]}"
    m = re.fullmatch(r"conv1_w", base)
    if m:
        return f"s1.pathway{pathway}_stem.conv.weight"
    m = re.fullmatch(r"res_conv1_bn_(s|b|rm|riv)", base)
    if m:
        return f"s1.pathway{pathway}_stem.bn.{_C2_BN[m.group(1)]}"
    m = re.fullmatch(r"res(\d)_(\d+)_branch(1|2a|2b|2c)_(w|bn_(s|b|rm|riv))", base)
    if m:
        stage, block, branch = m.group(1), int(m.group(2)), m.group(3)
        module = f"s{stage}.pathway{pathway}_res{block}."
        module += "branch1" if branch == "1" else f"branch2.{branch[1]}"
        if m.group(4) == "w":
            return f"{module}.weight"
        return f"{module}_bn.{_C2_BN[m.group(5)]}"
    m = re.fullmatch(r"nonlocal_conv(\d)_(\d+)_((theta|phi|g|out)_(w|b)|bn_(s|b|rm|riv))", base)
    if m:
        module = f"s{m.group(1)}.pathway{pathway}_nonlocal{int(m.group(2))}"
        if m.group(4):
            return f"{module}.conv_{m.group(4)}.{_C2_PARAM[m.group(5)]}"
        return f"{module}.bn.{_C2_BN[m.group(6)]}"
    if pathway == 0:
        m = re.fullmatch(r"pred_(w|b)", base)
        if m:
            return f"head.projection.{_C2_PARAM[m.group(1)]}"
    return None


_PTV_NORM = {"norm": "bn", "branch1_norm": "branch1_bn"}


def pytorchvideo_to_pyslowfast(key: str) -> str | None:
    """Maps a PyTorchVideo SlowFast state-dict key to a PySlowFast one.

    Accepts the `model.` prefix of PySlowFast-hosted copies. `blocks.0` is the stem,
    `blocks.1..4` are res2..res5, `multipathway_fusion` the lateral connections, `blocks.6`
    (classification) or `detection_head` the projection.

    Example:
        >>> key = "blocks.2.multipathway_blocks.1.res_blocks.0.branch2.norm_a.bias"
        >>> pytorchvideo_to_pyslowfast(key)
        's3.pathway1_res0.branch2.a_bn.bias'
    """
    if key.startswith("model."):
        key = key[len("model.") :]
    m = re.fullmatch(r"blocks\.0\.multipathway_blocks\.(\d)\.(conv|norm)\.(\w+)", key)
    if m:
        mod = "conv" if m.group(2) == "conv" else "bn"
        return f"s1.pathway{m.group(1)}_stem.{mod}.{m.group(3)}"
    m = re.fullmatch(r"blocks\.([0-3])\.multipathway_fusion\.(conv_fast_to_slow|norm)\.(\w+)", key)
    if m:
        mod = "conv_f2s" if m.group(2) == "conv_fast_to_slow" else "bn"
        return f"s{int(m.group(1)) + 1}_fuse.{mod}.{m.group(3)}"
    m = re.fullmatch(
        r"blocks\.([1-4])\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\."
        r"(branch1_conv|branch1_norm|branch2\.(conv|norm)_([abc]))\.(\w+)",
        key,
    )
    if m:
        module = f"s{int(m.group(1)) + 1}.pathway{m.group(2)}_res{m.group(3)}."
        if m.group(4) == "branch1_conv":
            module += "branch1"
        elif m.group(4) == "branch1_norm":
            module += "branch1_bn"
        else:
            module += f"branch2.{m.group(6)}" + ("_bn" if m.group(5) == "norm" else "")
        return f"{module}.{m.group(7)}"
    m = re.fullmatch(r"(blocks\.6|detection_head)\.proj\.(weight|bias)", key)
    if m:
        return f"head.projection.{m.group(2)}"
    return None


def pytorchvideo_resnet_to_pyslowfast(key: str) -> str | None:
    """Maps a PyTorchVideo `create_resnet` (Slow-only) state-dict key to a PySlowFast one.

    Covers `create_resnet` classifiers (`blocks.0` stem, `blocks.1..4` res2..res5,
    `blocks.5.proj` the classifier) and `create_resnet_with_roi_head` detectors, whose
    backbone sits under `model.` and whose projection is `detection_head.proj`. Only the
    layout without a pooling layer after res2 is known (`stage1_pool=None`, as in every
    published Slow checkpoint); any other key gives `None`.

    Example:
        >>> pytorchvideo_resnet_to_pyslowfast("blocks.3.res_blocks.2.branch2.conv_a.weight")
        's4.pathway0_res2.branch2.a.weight'
        >>> pytorchvideo_resnet_to_pyslowfast("model.blocks.0.norm.running_var")
        's1.pathway0_stem.bn.running_var'
        >>> pytorchvideo_resnet_to_pyslowfast("detection_head.proj.bias")
        'head.projection.bias'
        >>> pytorchvideo_resnet_to_pyslowfast("blocks.6.proj.weight") is None
        True
    """
    if key.startswith("model."):
        key = key[len("model.") :]
    m = re.fullmatch(r"blocks\.0\.(conv|norm)\.(\w+)", key)
    if m:
        mod = "conv" if m.group(1) == "conv" else "bn"
        return f"s1.pathway0_stem.{mod}.{m.group(2)}"
    m = re.fullmatch(
        r"blocks\.([1-4])\.res_blocks\.(\d+)\."
        r"(branch1_conv|branch1_norm|branch2\.(conv|norm)_([abc]))\.(\w+)",
        key,
    )
    if m:
        module = f"s{int(m.group(1)) + 1}.pathway0_res{m.group(2)}."
        if m.group(3) == "branch1_conv":
            module += "branch1"
        elif m.group(3) == "branch1_norm":
            module += "branch1_bn"
        else:
            module += f"branch2.{m.group(5)}" + ("_bn" if m.group(4) == "norm" else "")
        return f"{module}.{m.group(6)}"
    m = re.fullmatch(r"(blocks\.5|detection_head)\.proj\.(weight|bias)", key)
    if m:
        return f"head.projection.{m.group(2)}"
    return None


#: PyTorchVideo builders whose checkpoints convert, and the key of each one's stem conv.
PYTORCHVIDEO_BUILDERS = {
    "create_slowfast": "blocks.0.multipathway_blocks.0.conv.weight",
    "create_resnet": "blocks.0.conv.weight",
}


def pytorchvideo_builder(keys: Iterable[str]) -> str | None:
    """Which PyTorchVideo builder wrote a state dict with these keys, from its stem.

    Returns `"create_slowfast"` (also `create_slowfast_with_roi_head`), `"create_resnet"`
    (also `create_resnet_with_roi_head`), or `None` when neither stem is present.

    Example:
        >>> pytorchvideo_builder(["model.blocks.0.conv.weight", "detection_head.proj.bias"])
        'create_resnet'
    """
    keys = {k[len("model.") :] if k.startswith("model.") else k for k in keys}
    found = [name for name, stem in PYTORCHVIDEO_BUILDERS.items() if stem in keys]
    return found[0] if len(found) == 1 else None


# What PySlowFast's ContrastiveModel saves besides its backbone: the momentum copy
# (`backbone_hist.`, MoCo / BYOL), the backbone's MLP projection and BYOL predictor
# (`backbone.head.`), the MoCo queue and counters, SwAV prototypes and queue, and the
# memory banks.
_CONTRASTIVE_DROPPED = re.compile(
    r"^(backbone_hist\.|backbone\.head\.|memory\.|knn_mem\.|swav_prototypes(\.|$)"
    r"|queue_x$|queue_swav$|ptr$|iter$)"
)


def contrastive_to_pyslowfast(key: str) -> str | None:
    """Maps a key of a PySlowFast self-supervised (ContrastiveModel) checkpoint.

    The backbone's stages (`backbone.s1...` to `backbone.s5...`, with `backbone.` removed)
    are kept; the training-only parts are dropped.

    Returns:
        The PySlowFast key to keep, `""` for a key that is dropped, or `None` for a key
        that belongs to neither (the caller reports it).

    Example:
        >>> contrastive_to_pyslowfast("backbone.s2.pathway0_res0.branch2.a.weight")
        's2.pathway0_res0.branch2.a.weight'
        >>> contrastive_to_pyslowfast("backbone_hist.s1.pathway0_stem.conv.weight")
        ''
        >>> contrastive_to_pyslowfast("backbone.head.projection.projection.0.weight")
        ''
        >>> contrastive_to_pyslowfast("predictor.weight") is None
        True
    """
    m = re.fullmatch(r"backbone\.(s[1-5](_fuse)?\..+)", key)
    if m:
        return m.group(1)
    if _CONTRASTIVE_DROPPED.match(key):
        return ""
    return None


def strip_prefix(state: Mapping[str, Any], prefix: str = "model.") -> dict[str, Any]:
    """Removes `prefix` from every key when all keys carry it."""
    keys = list(state)
    if keys and all(k.startswith(prefix) for k in keys):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)
