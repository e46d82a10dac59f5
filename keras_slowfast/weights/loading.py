"""Building Keras models from PySlowFast / PyTorchVideo checkpoints, with strict accounting.

Every checkpoint format is first translated to PySlowFast state-dict keys (pure functions in
:mod:`keras_slowfast.weights.name_maps`); :func:`convert_state` then maps those tensors onto
the Keras model's weights and fails, listing the names, if any checkpoint tensor is left
unused or any Keras weight unassigned.
"""

import os
import re

import keras
import numpy as np

from keras_slowfast.weights import name_maps
from keras_slowfast.weights.pyslowfast_config import builder_kwargs_from_config

# PyTorch layouts -> Keras layouts.
_CONV_T = (2, 3, 4, 1, 0)  # (O, I, T, H, W) -> (T, H, W, I, O)

_BN_KERAS_TO_TORCH = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


# File suffixes read as PyTorch / Caffe2 checkpoints (anything else is a weights name or a
# Keras `.weights.h5` file).
CHECKPOINT_SUFFIXES = (".pyth", ".pkl", ".pth", ".pt")


class CheckpointMismatchError(ValueError):
    """Raised when a checkpoint and a model do not correspond one to one."""


def _weight_specs(model):
    """Lists `(keras_weight, torch_key, transform)` for every weight of `model`."""
    specs = []
    unmapped = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not layer.weights or isinstance(layer, keras.Model):
            continue
        module = name_maps.keras_layer_to_torch_module(layer.name)
        for w in layer.weights:
            short = w.path.split("/")[-1]
            if module is None:
                unmapped.append(w.path)
                continue
            if isinstance(layer, keras.layers.BatchNormalization):
                key = f"{module}.{_BN_KERAS_TO_TORCH[short]}"
                transform = None
            elif isinstance(layer, keras.layers.Conv3D):
                key = f"{module}.{'weight' if short == 'kernel' else 'bias'}"
                transform = _CONV_T if short == "kernel" else None
            elif isinstance(layer, keras.layers.Dense):
                key = f"{module}.{'weight' if short == 'kernel' else 'bias'}"
                transform = (1, 0) if short == "kernel" else None
            else:
                unmapped.append(w.path)
                continue
            specs.append((w, key, transform))
    if unmapped:
        raise CheckpointMismatchError(
            "These Keras weights have no checkpoint name mapping: " + ", ".join(unmapped)
        )
    return specs


def convert_state(state, specs):
    """Maps PySlowFast-keyed tensors to Keras weight values, strictly.

    Args:
        state: dict of PySlowFast state-dict key -> NumPy array.
        specs: list of `(keras_weight, torch_key, transform)`.

    Returns:
        A list of `(keras_weight, value)` pairs, one per spec.

    Raises:
        CheckpointMismatchError: listing missing and unused tensors, or naming both sides of
            a shape mismatch.
    """
    used = set()
    missing = []
    out = []
    problems = []
    for weight, key, transform in specs:
        if key not in state:
            missing.append(f"{key} (for {weight.path})")
            continue
        value = np.asarray(state[key])
        used.add(key)
        if transform is not None:
            if value.ndim != len(transform):
                problems.append(
                    f"checkpoint {key} has shape {value.shape}, Keras {weight.path} has "
                    f"shape {tuple(weight.shape)}"
                )
                continue
            value = np.transpose(value, transform)
        if tuple(value.shape) != tuple(weight.shape):
            problems.append(
                f"checkpoint {key} has shape {tuple(np.asarray(state[key]).shape)} "
                f"(as Keras: {value.shape}), Keras {weight.path} has shape {tuple(weight.shape)}"
            )
            continue
        out.append((weight, value.astype(weight.dtype)))
    # BatchNorm's `num_batches_tracked` counter has no Keras counterpart: it is accounted for
    # when the rest of its BatchNorm was used.
    used_modules = {k.rsplit(".", 1)[0] for k in used}
    unused = [
        k
        for k in state
        if k not in used
        and not (k.endswith(".num_batches_tracked") and k.rsplit(".", 1)[0] in used_modules)
    ]
    messages = []
    if problems:
        messages.append("Shape mismatches:\n  " + "\n  ".join(problems))
    if missing:
        messages.append(
            f"{len(missing)} Keras weights found no checkpoint tensor:\n  " + "\n  ".join(missing)
        )
    if unused:
        messages.append(
            f"{len(unused)} checkpoint tensors were not used:\n  " + "\n  ".join(sorted(unused))
        )
    if messages:
        raise CheckpointMismatchError(
            "The checkpoint does not match the model.\n" + "\n".join(messages)
        )
    return out


def transfer_state(model, state):
    """Loads PySlowFast-keyed tensors into `model`, all or nothing."""
    pairs = convert_state(state, _weight_specs(model))
    for weight, value in pairs:
        weight.assign(value)
    return model


def caffe2_blobs_to_state(blobs):
    """Translates Caffe2 model-zoo blobs to PySlowFast state-dict keys (pure function)."""
    state = {}
    unknown = []
    for name, value in blobs.items():
        if name_maps.caffe2_is_solver_state(name):
            continue
        key = name_maps.caffe2_to_pyslowfast(name)
        if key is None:
            unknown.append(name)
        elif key in state:
            raise CheckpointMismatchError(f"Two Caffe2 blobs map to {key}: one of them is {name}")
        else:
            state[key] = value
    if unknown:
        raise CheckpointMismatchError(
            "Unknown Caffe2 blobs (not part of a SlowFast network):\n  "
            + "\n  ".join(sorted(unknown))
        )
    return state


def pytorchvideo_state_to_pyslowfast(state):
    """Translates a PyTorchVideo SlowFast state dict to PySlowFast keys (pure function)."""
    out = {}
    unknown = []
    for key, value in state.items():
        new = name_maps.pytorchvideo_to_pyslowfast(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise CheckpointMismatchError(
            "Unknown PyTorchVideo keys (not part of a SlowFast network):\n  "
            + "\n  ".join(sorted(unknown))
        )
    return out


def _read(path):
    from keras_slowfast.weights.readers import load_state_dict

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a file path. Received: path={path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"No checkpoint file at this path. Received: path={str(path)!r}")
    return load_state_dict(path)


def _is_pytorchvideo(state):
    return any(re.match(r"^(model\.)?(blocks\.\d|detection_head\.)", k) for k in state)


def checkpoint_to_pyslowfast_state(path):
    """Reads any supported checkpoint and returns `(state, info)` with PySlowFast keys."""
    tensors, info = _read(path)
    if info.get("format") == "caffe2":
        state = caffe2_blobs_to_state(tensors)
    else:
        state = name_maps.strip_prefix(tensors, "model.")
        if _is_pytorchvideo(state):
            state = pytorchvideo_state_to_pyslowfast(state)
    return state, info


def load_weights_into(model, weights):
    """Loads a `.weights.h5`, `.pyth` or `.pkl` file into an already built model."""
    path = os.fspath(weights)
    if path.endswith((".weights.h5",) + CHECKPOINT_SUFFIXES) and not os.path.isfile(path):
        raise ValueError(f"No weights file at this path. Received: weights={weights!r}")
    if path.endswith(".weights.h5"):
        model.load_weights(path)
        return model
    if path.endswith(CHECKPOINT_SUFFIXES):
        state, _ = checkpoint_to_pyslowfast_state(path)
        return transfer_state(model, state)
    raise ValueError(
        "`weights` must be None, a known weights name, or the path of a .weights.h5, .pyth "
        f"or .pkl file. Received: weights={weights!r}"
    )


def _build(kind, kwargs):
    if kind == "detector":
        from keras_slowfast.models.detection import SlowFastDetector

        return SlowFastDetector(**kwargs)
    from keras_slowfast.models.slowfast import SlowFast

    return SlowFast(**kwargs)


def load_pyslowfast(path, config=None, **overrides):
    """Builds the Keras model of a PySlowFast checkpoint and loads all its weights.

    The architecture comes from the checkpoint's embedded config (the `cfg` YAML text that
    PySlowFast writes into `.pyth` files) or from `config`: a PySlowFast YAML file or text,
    a dict, or a variant name such as `"slowfast_8x8_r50"` (needed for Caffe2 `.pkl`
    files, which carry no config). Loading is strict: a checkpoint tensor left unused or a
    Keras weight left unassigned is an error listing them. No PyTorch is needed and the file
    is read with restricted unpickling.

    Args:
        path: `.pyth` (PySlowFast output, zip or legacy format) or Caffe2 `.pkl`.
        config: optional config overriding the embedded one.
        **overrides: builder arguments, e.g. `include_preprocessing=False`.

    Returns:
        A `keras.Model` reproducing the reference's outputs (softmax for classifiers,
        sigmoid for AVA detectors, as `MODEL.HEAD_ACT` says).

    Example:
        >>> model = load_pyslowfast("SLOWFAST_8x8_R50.pkl", config="slowfast_8x8_r50")
        ... # doctest: +SKIP
    """
    state, info = checkpoint_to_pyslowfast_state(path)
    if config is None:
        config = info.get("cfg")
        if not config:
            raise ValueError(
                "This checkpoint carries no PySlowFast config (Caffe2 .pkl files never do): "
                "pass `config=` a PySlowFast YAML file or a variant name. "
                f"Received: path={str(path)!r}, config=None"
            )
    kind, kwargs = _kwargs_for_config(config)
    kwargs.update(overrides)
    model = _build(kind, kwargs)
    return transfer_state(model, state)


def _kwargs_for_config(config):
    from keras_slowfast.models import variants

    if isinstance(config, str) and config in variants.VARIANTS:
        spec = variants.VARIANTS[config]
        return spec["kind"], dict(spec["kwargs"])
    return builder_kwargs_from_config(config)


# PyTorchVideo hub architectures: what the weights do not tell.
PYTORCHVIDEO_ARCHS = {
    "slowfast_r50": dict(depth=50, num_frames=32, alpha=4, detection=False),
    "slowfast_r101": dict(depth=101, num_frames=32, alpha=4, detection=False),
    "slowfast_16x8_r101_50_50": dict(depth=101, num_frames=64, alpha=4, detection=False),
    "slowfast_r50_detection": dict(depth=50, num_frames=32, alpha=4, detection=True),
}


def infer_pytorchvideo_kwargs(state, arch):
    """Infers builder arguments from PySlowFast-keyed PyTorchVideo tensors and `arch`."""
    if arch not in PYTORCHVIDEO_ARCHS:
        raise ValueError(
            f"`arch` must be one of {sorted(PYTORCHVIDEO_ARCHS)}. Received: arch={arch!r}"
        )
    spec = PYTORCHVIDEO_ARCHS[arch]

    def shape(key):
        if key not in state:
            raise CheckpointMismatchError(
                f"The checkpoint lacks {key}, needed for arch={arch!r}; is it a {arch} checkpoint?"
            )
        return np.asarray(state[key]).shape

    slow_w = shape("s1.pathway0_stem.conv.weight")[0]
    fast_w = shape("s1.pathway1_stem.conv.weight")[0]
    fuse = shape("s1_fuse.conv_f2s.weight")
    classes = shape("head.projection.weight")[0]
    from keras_slowfast.models.slowfast import STAGE_DEPTHS

    blocks = STAGE_DEPTHS[spec["depth"]]
    temporal = [
        [shape("s1.pathway0_stem.conv.weight")[2], shape("s1.pathway1_stem.conv.weight")[2]]
    ]
    counts = []
    for s in range(4):
        stage_k, stage_n = [], []
        for p in range(2):
            ks = [
                shape(f"s{s + 2}.pathway{p}_res{i}.branch2.a.weight")[2] for i in range(blocks[s])
            ]
            k = ks[0]
            n = sum(1 for v in ks if v == k) if k > 1 else blocks[s]
            if ks != [k] * n + [1] * (blocks[s] - n):
                raise CheckpointMismatchError(
                    f"Unsupported temporal kernel pattern in res{s + 2}: {ks}"
                )
            stage_k.append(k)
            stage_n.append(n)
        temporal.append(stage_k)
        counts.append(stage_n)
    kwargs = dict(
        depth=spec["depth"],
        num_frames=spec["num_frames"],
        alpha=spec["alpha"],
        beta_inv=slow_w // fast_w,
        fusion_kernel_size=fuse[2],
        fusion_conv_channel_ratio=fuse[0] // fast_w,
        width_per_group=slow_w,
        temporal_kernels=temporal,
        num_block_temp_kernel=counts,
        classes=classes,
    )
    if spec["detection"]:
        kwargs.update(
            spatial_strides=[1, 2, 2, 1],
            spatial_dilations=[1, 1, 1, 2],
            # torchvision's RoIAlign, which PyTorchVideo's head builds with its defaults,
            # is not aligned (measured against the reference outputs).
            aligned=False,
            roi_resolution=7,
            spatial_scale_factor=16,
            classifier_activation="sigmoid",
        )
        return "detector", kwargs
    # PyTorchVideo's hub classifiers have no final activation: the output is the logits
    # averaged over the head's positions.
    kwargs.update(classifier_activation=None, train_crop_size=224)
    return "classifier", kwargs


def load_pytorchvideo(path, arch, **overrides):
    """Builds the Keras model of a PyTorchVideo SlowFast checkpoint and loads its weights.

    Widths, the fusion kernel, temporal kernels and the class count are read from the
    tensor shapes; `arch` supplies what shapes cannot tell (frames, alpha, depth, head).
    Keys prefixed with `model.` (PySlowFast-hosted copies) are accepted. By default the model
    reproduces the reference: raw logits for the hub classifiers (no softmax), sigmoid scores
    for the detector; pass `classifier_activation="softmax"` to get probabilities.

    Args:
        path: the `.pyth` file (`{"model_state": ...}`).
        arch: `"slowfast_r50"`, `"slowfast_r101"`, `"slowfast_16x8_r101_50_50"` or
            `"slowfast_r50_detection"`.
        **overrides: builder arguments, e.g. `include_preprocessing=False`.

    Returns:
        A `keras.Model`.

    Example:
        >>> model = load_pytorchvideo("SLOWFAST_8x8_R50.pyth", arch="slowfast_r50")
        ... # doctest: +SKIP
    """
    if arch not in PYTORCHVIDEO_ARCHS:
        raise ValueError(
            f"`arch` must be one of {sorted(PYTORCHVIDEO_ARCHS)}. Received: arch={arch!r}"
        )
    tensors, info = _read(path)
    if info.get("format") == "caffe2":
        raise ValueError(
            "This is a Caffe2 .pkl file, not a PyTorchVideo checkpoint: use load_pyslowfast. "
            f"Received: path={str(path)!r}"
        )
    state = pytorchvideo_state_to_pyslowfast(name_maps.strip_prefix(tensors, "model."))
    kind, kwargs = infer_pytorchvideo_kwargs(state, arch)
    kwargs.update(overrides)
    model = _build(kind, kwargs)
    return transfer_state(model, state)


def transfer_weights(source, target, skip=()):
    """Copies the weights of `source` into `target` layer by layer (matched by name).

    Layers whose names appear in `skip`, or that are missing in `source`, keep their
    weights; a layer present in both with different weight shapes is an error.

    Args:
        source: the model to copy from.
        target: the model to copy into.
        skip: layer names not to copy (e.g. `("head_projection",)` for a new head).

    Returns:
        The names of the target layers that were not copied.

    Example:
        >>> import keras_slowfast
        >>> pretrained = keras_slowfast.SlowR50(width_per_group=8, classes=400)
        >>> model = keras_slowfast.SlowR50(width_per_group=8, classes=10)
        >>> transfer_weights(pretrained, model, skip=("head_projection",))
        ['head_projection']
    """
    source_layers = {layer.name: layer for layer in source.layers}
    skip = set(skip)
    untouched = []
    for layer in target.layers:
        if not layer.weights:
            continue
        src = source_layers.get(layer.name)
        if layer.name in skip or src is None:
            untouched.append(layer.name)
            continue
        values = src.get_weights()
        shapes = [tuple(w.shape) for w in layer.weights]
        if [tuple(v.shape) for v in values] != shapes:
            raise ValueError(
                f"Layer {layer.name!r} has weights of shapes {shapes} in the target but "
                f"{[tuple(v.shape) for v in values]} in the source. Received: "
                f"skip={sorted(skip)!r}"
            )
        layer.set_weights(values)
    return untouched
