"""Strict transfer of checkpoint tensors onto a built Keras model.

Every checkpoint format is first translated to PySlowFast state-dict keys (pure functions in
:mod:`keras_slowfast.weights.name_maps`); :func:`convert_state` then maps those tensors onto
the Keras model's weights and fails, listing the names, if any checkpoint tensor is left
unused or any Keras weight unassigned. The model is given: this package builds none (the
presets and loaders above it do), and imports nothing of `keras_slowfast.models`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from keras_slowfast._deprecation import deprecated_alias
from keras_slowfast.weights import name_maps
from keras_slowfast.weights.readers import CHECKPOINT_SUFFIXES, load_state_dict

# PyTorch layouts -> Keras layouts.
_CONV_T = (2, 3, 4, 1, 0)  # (O, I, T, H, W) -> (T, H, W, I, O)

_BN_KERAS_TO_TORCH = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


class CheckpointMismatchError(ValueError):
    """Raised when a checkpoint and a model do not correspond one to one.

    A `ValueError`, so that one `except ValueError` catches it with bad arguments.

    Example:
        >>> try:
        ...     checkpoint_head({"conv1.weight": np.zeros((64, 3, 7, 7))})
        ... except CheckpointMismatchError as err:
        ...     print(err)
        The checkpoint has no tensor s1.pathway0_stem.conv.weight: it is not a SlowFast checkpoint.
    """


def weight_specs(model: keras.Model) -> list[tuple[keras.Variable, str, tuple[int, ...] | None]]:
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


def convert_state(
    state: Mapping[str, np.ndarray],
    specs: Sequence[tuple[keras.Variable, str, tuple[int, ...] | None]],
) -> list[tuple[keras.Variable, np.ndarray]]:
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


def transfer_state(model: keras.Model, state: Mapping[str, np.ndarray]) -> keras.Model:
    """Loads PySlowFast-keyed tensors into `model`, all or nothing."""
    pairs = convert_state(state, weight_specs(model))
    for weight, value in pairs:
        weight.assign(value)
    return model


def model_state(model: keras.Model) -> dict[str, np.ndarray]:
    """PySlowFast-keyed NumPy tensors of a Keras SlowFast model (the inverse of loading)."""
    state = {}
    for weight, key, transform in weight_specs(model):
        value = keras.ops.convert_to_numpy(weight.value)
        if transform is not None:
            value = np.transpose(value, np.argsort(transform))
        state[key] = value
    return state


def _rename_strictly(items, rename, what):
    """`{rename(name): value}` for `(name, value)` items, every name mapped exactly once.

    `rename` returns `None` for a name it does not know; unknown names and two names mapping
    to the same key are errors naming them (`what` names the checkpoint's kind).
    """
    out = {}
    unknown = []
    for name, value in items:
        key = rename(name)
        if key is None:
            unknown.append(name)
        elif key in out:
            raise CheckpointMismatchError(f"Two {what} names map to {key}: one of them is {name}")
        else:
            out[key] = value
    if unknown:
        raise CheckpointMismatchError(
            f"Unknown {what} names (not part of the network):\n  " + "\n  ".join(sorted(unknown))
        )
    return out


def caffe2_blobs_to_state(blobs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Translates Caffe2 model-zoo blobs to PySlowFast state-dict keys (pure function)."""
    items = [(n, v) for n, v in blobs.items() if not name_maps.caffe2_is_solver_state(n)]
    return _rename_strictly(items, name_maps.caffe2_to_pyslowfast, "Caffe2 blob")


def pytorchvideo_state_to_pyslowfast(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Translates a PyTorchVideo state dict to PySlowFast keys (pure function).

    The builder is recognised by the stem: `create_slowfast` /
    `create_slowfast_with_roi_head` (two pathways) or `create_resnet` /
    `create_resnet_with_roi_head` (Slow-only). Every key must map, and no two keys may map
    to the same name.

    Raises:
        CheckpointMismatchError: when no known stem is found, listing the keys that do not
            belong to the recognised builder.

    Example:
        >>> state = {"blocks.0.conv.weight": np.zeros((8, 3, 1, 7, 7)),
        ...          "blocks.5.proj.bias": np.zeros(10)}
        >>> sorted(pytorchvideo_state_to_pyslowfast(state))
        ['head.projection.bias', 's1.pathway0_stem.conv.weight']
    """
    builder = name_maps.pytorchvideo_builder(state)
    if builder is None:
        raise CheckpointMismatchError(
            "Not a PyTorchVideo SlowFast or Slow checkpoint: it has neither "
            + " nor ".join(repr(k) for k in name_maps.PYTORCHVIDEO_BUILDERS.values())
            + " (with or without a `model.` prefix)."
        )
    mapper = (
        name_maps.pytorchvideo_resnet_to_pyslowfast
        if builder == "create_resnet"
        else name_maps.pytorchvideo_to_pyslowfast
    )
    return _rename_strictly(state.items(), mapper, f"PyTorchVideo {builder}")


def contrastive_state_to_pyslowfast(
    state: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The backbone of a PySlowFast self-supervised checkpoint, with PySlowFast keys.

    PySlowFast's contrastive learning (MoCo, BYOL, SimCLR, SwAV) saves a ContrastiveModel:
    the backbone under `backbone.`, plus training-only parts (momentum copy, MLP projection
    and predictor, queues, memory banks). The backbone's stages are kept; the rest is
    dropped and named in the returned list (pure function).

    Returns:
        `(state, dropped)`: the backbone's tensors and the sorted names of the dropped keys.

    Raises:
        CheckpointMismatchError: listing keys that are neither backbone stages nor known
            training-only parts, or when no backbone stage is present.

    Example:
        >>> state, dropped = contrastive_state_to_pyslowfast({
        ...     "backbone.s1.pathway0_stem.conv.weight": np.zeros((8, 3, 1, 7, 7)),
        ...     "backbone_hist.s1.pathway0_stem.conv.weight": np.zeros((8, 3, 1, 7, 7)),
        ...     "backbone.head.projection.projection.0.weight": np.zeros((16, 256))})
        >>> sorted(state), len(dropped)
        (['s1.pathway0_stem.conv.weight'], 2)
    """
    out, dropped, unknown = {}, [], []
    for key, value in state.items():
        new = name_maps.contrastive_to_pyslowfast(key)
        if new is None:
            unknown.append(key)
        elif new == "":
            dropped.append(key)
        else:
            out[new] = value
    if unknown:
        raise CheckpointMismatchError(
            "Unknown keys in a self-supervised (ContrastiveModel) checkpoint:\n  "
            + "\n  ".join(sorted(unknown))
        )
    if not out:
        raise CheckpointMismatchError(
            "The self-supervised checkpoint has no backbone stage (`backbone.s1...`)."
        )
    return out, sorted(dropped)


def _is_contrastive(state):
    return any(k.startswith("backbone.s1.") for k in state)


def read_checkpoint_tensors(
    path: str | os.PathLike,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`(tensors, info)` of a checkpoint file, with its own key names.

    :func:`keras_slowfast.weights.readers.load_state_dict` on an existing file (whereas
    :func:`keras_slowfast.weights.readers.read_checkpoint` returns the file's whole
    top-level object).

    Example:
        >>> import pickle, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = os.path.join(tmp, "tiny.pkl")
        ...     with open(path, "wb") as f:
        ...         pickle.dump({"blobs": {"conv1_w": np.ones((8, 3, 1, 7, 7), "float32")}}, f)
        ...     tensors, info = read_checkpoint_tensors(path)
        >>> info["format"], tensors["conv1_w"].shape
        ('caffe2', (8, 3, 1, 7, 7))
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a file path. Received: path={path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"No checkpoint file at this path. Received: path={str(path)!r}")
    return load_state_dict(path)


read_checkpoint = deprecated_alias(
    read_checkpoint_tensors, "read_checkpoint", "keras_slowfast.weights.transfer"
)


def _is_pytorchvideo(state):
    return any(re.match(r"^(model\.)?(blocks\.\d|detection_head\.)", k) for k in state)


_STEM_KEYS = ("s1.pathway0_stem.conv.weight", "s1.pathway1_stem.conv.weight")
_HEAD_KEY = "head.projection.weight"


def checkpoint_head(state: Mapping[str, np.ndarray]) -> tuple[int, int | None]:
    """`(width_per_group, classes)` of PySlowFast-keyed checkpoint tensors.

    `classes` is `None` for a checkpoint without a classification head.

    Example:
        >>> state = {"s1.pathway0_stem.conv.weight": np.zeros((8, 3, 1, 7, 7)),
        ...          "head.projection.weight": np.zeros((10, 72))}
        >>> checkpoint_head(state)
        (8, 10)
    """
    if _STEM_KEYS[0] not in state:
        raise CheckpointMismatchError(
            f"The checkpoint has no tensor {_STEM_KEYS[0]}: it is not a SlowFast checkpoint."
        )
    classes = int(np.shape(state[_HEAD_KEY])[0]) if _HEAD_KEY in state else None
    return int(np.shape(state[_STEM_KEYS[0]])[0]), classes


def checkpoint_to_pyslowfast_state(
    path: str | os.PathLike,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reads any supported checkpoint and returns `(state, info)` with PySlowFast keys."""
    tensors, info = read_checkpoint_tensors(path)
    if info.get("format") == "caffe2":
        state = caffe2_blobs_to_state(tensors)
    else:
        state = name_maps.strip_prefix(tensors, "model.")
        if _is_pytorchvideo(state):
            state = pytorchvideo_state_to_pyslowfast(state)
        elif _is_contrastive(state):
            state, dropped = contrastive_state_to_pyslowfast(state)
            info = dict(info, dropped=dropped)
    return state, info


def load_weights_into(model: keras.Model, weights: str | os.PathLike) -> keras.Model:
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


def transfer_weights(
    source: keras.Model, target: keras.Model, skip: Iterable[str] = ()
) -> list[str]:
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
