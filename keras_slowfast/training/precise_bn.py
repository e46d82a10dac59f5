"""Precise BatchNorm: recompute the BatchNorm statistics of a trained model from N batches.

During training the moving averages of BatchNorm mix statistics of many different weights.
PySlowFast (`BN.USE_PRECISE_STATS`, `BN.NUM_BATCHES_PRECISE: 200`) recomputes them with
the final weights using fvcore's `update_bn_stats`: the model runs in training mode (each
BatchNorm normalises with its batch's statistics) over N batches, and every BatchNorm gets

* mean: the average of its inputs over all N batches (batch means weighted by the number
  of values per channel, `batch * frames * height * width`);
* variance: the population variance of all those values together,
  `E[x^2] - E[x]^2`, i.e. the average of `batch variance + batch mean^2` minus the
  squared mean (fvcore's population-variance estimator, used since 2021 and by the
  fvcore that PySlowFast installs).

fvcore before 2021 kept running averages with momentum `1 / (i + 1)` instead: the plain
average of the batch means and of the Bessel-corrected batch variances (PyTorch's
`running_var`); it ignores the spread between batch means. `estimator="batch_average"`
reproduces that older rule.

Under a distribution strategy each replica computes its part and the sums are all-reduced,
so every replica and every worker ends with the same statistics, those of the global batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_slowfast._checks import check_positive_int

__all__ = ["PreciseBatchNorm", "update_bn_stats"]

ESTIMATORS = ("population", "batch_average")


def _batchnorm_layers(model):
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layers.append(layer)
    return layers


def _features(element):
    if isinstance(element, (tuple, list)):
        return element[0]
    return element


def _build_probe(model, layers):
    try:
        inputs = [layer.input for layer in layers]
    except (AttributeError, ValueError) as e:
        raise ValueError(
            "Precise BN needs a functional model whose BatchNormalization layers are each "
            f"called once ({e}). Received: model={model.name!r}"
        ) from None
    return keras.Model(model.input, inputs, name=f"{model.name}_bn_inputs")


def update_bn_stats(
    model: keras.Model,
    dataset: tf.data.Dataset | tf.distribute.DistributedDataset | Iterable[Any],
    num_batches: int = 200,
    strategy: tf.distribute.Strategy | None = None,
    estimator: str = "population",
) -> int:
    """Recomputes the moving mean and variance of every trainable BatchNorm layer.

    Reproduces fvcore's `update_bn_stats` as called by PySlowFast after training: `model`
    runs in training mode on `num_batches` batches of `dataset`, and each BatchNorm's
    `moving_mean` / `moving_variance` become the mean and population variance of all the
    values it received. Other weights are left unchanged. BatchNorm layers with
    `trainable=False` (frozen, they normalise with their moving statistics) are skipped.

    Args:
        model: a functional Keras model (BatchNorm layers at its top level).
        dataset: a `tf.data.Dataset` (or iterable) of inputs or of `(inputs, labels, ...)`
            tuples; the first element of each tuple is fed to the model. Under a strategy
            with several replicas, a `tf.data.Dataset` of global batches, or a
            `tf.distribute.DistributedDataset`.
        num_batches: batches to use (PySlowFast: 200, or the whole set if smaller).
        strategy: the `tf.distribute.Strategy` that owns the model's variables; default:
            the model's (`model.distribute_strategy`) or the current one.
        estimator: `"population"` (current fvcore, see above) or `"batch_average"` (fvcore
            before 2021: average of batch means and of unbiased batch variances).

    Returns:
        The number of batches used (fewer than `num_batches` if the dataset ends first).

    Raises:
        ValueError: if the dataset yields no batch.

    Example:
        >>> import numpy as np, tensorflow as tf, keras_slowfast
        >>> model = keras_slowfast.SlowR50(width_per_group=8, classes=5,
        ...                                input_shape=(8, 32, 32, 3))
        >>> clips = np.random.randint(0, 256, (4, 8, 32, 32, 3), np.uint8)
        >>> update_bn_stats(model, tf.data.Dataset.from_tensor_slices(clips).batch(2))
        2
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={type(model).__name__}")
    num_batches = check_positive_int("num_batches", num_batches)
    if estimator not in ESTIMATORS:
        raise ValueError(
            f"`estimator` must be one of {ESTIMATORS}. Received: estimator={estimator!r}"
        )
    layers = [layer for layer in _batchnorm_layers(model) if layer.trainable]
    if not layers:
        return 0
    if strategy is None:
        strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    probe = _build_probe(model, layers)
    channels = [int(layer.moving_mean.shape[0]) for layer in layers]

    def replica_moments(x):
        # One flat float64 vector, `[count, sum of x (C), sum of x^2 (C)]` per layer: a
        # single all-reduce per batch, and the same rank for every reduced value (some
        # strategies pack the values of a structure into one tensor).
        activations = probe(x, training=True)
        if not isinstance(activations, (list, tuple)):
            activations = [activations]
        out = []
        for a in activations:
            a = tf.cast(a, tf.float32)
            axes = list(range(len(a.shape) - 1))
            mean, var = tf.nn.moments(a, axes)
            count = tf.cast(tf.size(a) // tf.shape(a)[-1], tf.float64)
            mean = tf.cast(mean, tf.float64)
            var = tf.cast(var, tf.float64)
            # Sums of x and x^2 rebuilt from the (numerically stable) batch moments.
            out += [tf.reshape(count, [1]), count * mean, count * (var + tf.square(mean))]
        return tf.concat(out, axis=0)

    offsets = np.cumsum([0] + [1 + 2 * c for c in channels])

    distributed = strategy.num_replicas_in_sync > 1 or isinstance(
        dataset, tf.distribute.DistributedDataset
    )
    if distributed:

        @tf.function
        def step(x):
            per_replica = strategy.run(replica_moments, args=(x,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        if isinstance(dataset, tf.data.Dataset):
            dataset = strategy.experimental_distribute_dataset(dataset.map(lambda *e: e[0]))
    else:
        step = tf.function(replica_moments)

    # Per layer: [values seen, sum of x, sum of x^2] ("population"), or
    # [batches seen, sum of batch means, sum of unbiased batch variances].
    totals = [[0.0, np.zeros(c), np.zeros(c)] for c in channels]
    used = 0
    iterator = iter(dataset)
    while used < num_batches:
        try:
            element = next(iterator)
        except (StopIteration, tf.errors.OutOfRangeError):
            break
        sums = step(_features(element)).numpy()
        for total, c, start in zip(totals, channels, offsets):
            n = float(sums[start])
            s1, s2 = sums[start + 1 : start + 1 + c], sums[start + 1 + c : start + 1 + 2 * c]
            if estimator == "population":
                total[0] += n
                total[1] += s1
                total[2] += s2
            else:
                mean = s1 / n
                biased = np.maximum(s2 / n - mean * mean, 0.0)
                total[0] += 1
                total[1] += mean
                total[2] += biased * n / max(n - 1.0, 1.0)
        used += 1
    del iterator
    if used == 0:
        raise ValueError("`dataset` yielded no batch. Received: an empty dataset")
    for layer, (n, s1, s2) in zip(layers, totals):
        mean = s1 / n
        if estimator == "population":
            var = np.maximum(s2 / n - mean * mean, 0.0)
        else:
            var = s2 / n
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(var.astype(np.float32))
    return used


class PreciseBatchNorm(keras.callbacks.Callback):
    """Callback that runs :func:`update_bn_stats` during `model.fit`.

    PySlowFast recomputes precise statistics before each evaluation and at the end of
    training. This callback does it every `every_n_epochs` epochs and after the last
    epoch (before `ModelCheckpoint` / evaluation callbacks placed after it).

    Args:
        dataset: batches as for :func:`update_bn_stats` (PySlowFast uses its training
            loader, augmentation included).
        num_batches: batches per recomputation (200 in PySlowFast).
        every_n_epochs: period in epochs; `None` only after the last epoch.
        estimator: see :func:`update_bn_stats`.

    Example:
        >>> cb = PreciseBatchNorm(train_ds, num_batches=200)  # doctest: +SKIP
        >>> model.fit(train_ds, epochs=10, callbacks=[cb])  # doctest: +SKIP
    """

    def __init__(
        self,
        dataset: tf.data.Dataset | Iterable[Any],
        num_batches: int = 200,
        every_n_epochs: int | None = None,
        estimator: str = "population",
    ) -> None:
        super().__init__()
        every_n_epochs = check_positive_int("every_n_epochs", every_n_epochs, allow_none=True)
        self.dataset = dataset
        self.num_batches = num_batches
        self.every_n_epochs = every_n_epochs
        self.estimator = estimator
        self._epochs = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._epochs = self.params.get("epochs") if self.params else None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        last = self._epochs is not None and epoch + 1 == self._epochs
        periodic = self.every_n_epochs is not None and (epoch + 1) % self.every_n_epochs == 0
        if last or periodic:
            update_bn_stats(self.model, self.dataset, self.num_batches, estimator=self.estimator)
