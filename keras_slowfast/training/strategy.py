"""Choosing a distribution strategy, synchronized BatchNorm and mixed precision."""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_slowfast.weights.transfer import transfer_weights

__all__ = [
    "STRATEGIES",
    "convert_sync_batchnorm",
    "get_strategy",
    "is_chief",
    "set_mixed_precision",
    "transfer_weights",
]

STRATEGIES = ("default", "mirrored", "multi_worker")
_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
_COMMUNICATIONS = ("auto", "ring", "nccl")


def get_strategy(
    name: str = "default", devices: Sequence[str] | None = None, communication: str = "auto"
) -> tf.distribute.Strategy:
    """Returns the `tf.distribute.Strategy` for `name`.

    * `"default"`: the default strategy (one device; whatever TensorFlow places on).
    * `"mirrored"`: `MirroredStrategy` over `devices` (default: all GPUs, else the CPU).
      Train with `model.fit`.
    * `"multi_worker"`: `MultiWorkerMirroredStrategy` configured by the `TF_CONFIG`
      environment variable. Keras 3's `model.fit` does not work under it (keras#20585);
      train with :class:`keras_slowfast.training.DistributedTrainer`.

    Create the strategy before any other TensorFlow operation (a multi-worker strategy
    must be created at program start-up), then build the model and optimizer inside
    `strategy.scope()`.

    Args:
        name: `"default"`, `"mirrored"` or `"multi_worker"`.
        devices: device names for `"mirrored"` (e.g. `["/gpu:0", "/gpu:1"]`).
        communication: collective implementation for `"multi_worker"`: `"auto"`, `"ring"`
            (gRPC, works on CPUs) or `"nccl"` (GPUs).

    Returns:
        A `tf.distribute.Strategy`.

    Example:
        >>> strategy = get_strategy("default")
        >>> strategy.num_replicas_in_sync
        1
    """
    if name not in STRATEGIES:
        raise ValueError(f"`name` must be one of {STRATEGIES}. Received: name={name!r}")
    if communication not in _COMMUNICATIONS:
        raise ValueError(
            f"`communication` must be one of {_COMMUNICATIONS}. "
            f"Received: communication={communication!r}"
        )
    if devices is not None and name != "mirrored":
        raise ValueError(
            f"`devices` applies to the 'mirrored' strategy only. Received: devices={devices!r}, "
            f"name={name!r}"
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    if not os.environ.get("TF_CONFIG"):
        raise ValueError(
            "The 'multi_worker' strategy is configured by the TF_CONFIG environment variable, "
            "which is not set. Received: name='multi_worker'"
        )
    implementation = {
        "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
        "ring": tf.distribute.experimental.CommunicationImplementation.RING,
        "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
    }[communication]
    options = tf.distribute.experimental.CommunicationOptions(implementation=implementation)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process is the chief (the one that writes checkpoints and logs).

    True for single-worker strategies; under a multi-worker strategy, the `chief` task, or
    worker 0 when the cluster has no chief.

    Args:
        strategy: a strategy; default: the current one.

    Returns:
        bool.

    Example:
        >>> is_chief()
        True
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def set_mixed_precision(policy: str) -> None:
    """Sets the global Keras dtype policy before models are built.

    `"mixed_bfloat16"` computes in bfloat16 with float32 weights (TPUs, recent CPUs and
    Ampere+ GPUs); `"mixed_float16"` computes in float16 (GPUs; `model.fit` then scales the
    loss automatically, the custom loop does it with `LossScaleOptimizer`). BatchNorm and
    the softmax head stay in float32.

    Args:
        policy: `"float32"`, `"mixed_float16"` or `"mixed_bfloat16"`.

    Example:
        >>> set_mixed_precision("float32")
    """
    if policy not in _POLICIES:
        raise ValueError(f"`policy` must be one of {_POLICIES}. Received: policy={policy!r}")
    keras.mixed_precision.set_global_policy(policy)


def _set_synchronized(layer_configs, synchronized):
    count = 0
    for layer in layer_configs:
        if layer.get("class_name") == "BatchNormalization":
            layer["config"]["synchronized"] = bool(synchronized)
            count += 1
        inner = layer.get("config", {}).get("layers")
        if isinstance(inner, list):
            count += _set_synchronized(inner, synchronized)
    return count


def convert_sync_batchnorm(model: keras.Model, synchronized: bool = True) -> keras.Model:
    """Rebuilds a functional model with (un)synchronized BatchNorm and the same weights.

    The Keras counterpart of `torch.nn.SyncBatchNorm.convert_sync_batchnorm`: every
    `BatchNormalization` layer gets `synchronized=synchronized`, so that its batch
    statistics are computed over the global batch of all replicas. Call it inside
    `strategy.scope()`; models of this package can instead be built with `sync_bn=True`.

    Args:
        model: a functional `keras.Model` (custom layers must be serializable).
        synchronized: the new setting.

    Returns:
        A new model (the input is not changed).

    Example:
        >>> import keras_slowfast
        >>> model = keras_slowfast.SlowR50(width_per_group=8, classes=5)
        >>> synced = convert_sync_batchnorm(model)
        >>> synced.get_layer("s1_pathway0_stem_bn").synchronized
        True
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={type(model).__name__}")
    config = model.get_config()
    if "layers" not in config:
        raise ValueError(
            "Only functional or sequential models can be converted. "
            f"Received: model={model.name!r} of class {type(model).__name__}"
        )
    _set_synchronized(config["layers"], synchronized)
    new_model = model.__class__.from_config(config)
    new_model.set_weights(model.get_weights())
    return new_model
