"""The PySlowFast optimizer: SGD with torch's update rule and weight decay without BatchNorm.

PySlowFast trains with `torch.optim.SGD(momentum=0.9, nesterov=True, weight_decay=1e-4)`
and puts the BatchNorm parameters in a group with `BN.WEIGHT_DECAY = 0`. Keras' `SGD`
differs in two ways that matter for reproducing it:

* torch's weight decay is an L2 term added to the gradient *before* momentum
  (`g + wd * w`), while `keras.optimizers.SGD(weight_decay=...)` shrinks the weights
  after the update (`w -= lr * wd * w`), outside the momentum;
* torch's momentum buffer accumulates gradients and is multiplied by the current learning
  rate, while Keras' velocity accumulates `lr * g`; the two differ whenever the learning
  rate changes, i.e. at every step of the warm-up and cosine schedule.

:class:`TorchSGD` implements torch's rule; :func:`create_optimizer` builds it with the
recipe's schedule, the linear scaling rule and the BatchNorm exclusions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import keras
from keras import ops

from keras_slowfast.training.schedules import (
    REFERENCE_BATCH_SIZE,
    StepsWithRelativeLRs,
    WarmupCosineDecay,
    scale_learning_rate,
)

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["TorchSGD", "create_ava_optimizer", "create_optimizer", "no_weight_decay_variables"]

LR_POLICIES = ("cosine", "steps_with_relative_lrs")


@keras.saving.register_keras_serializable(package="keras_slowfast")
class TorchSGD(keras.optimizers.Optimizer):
    """Stochastic gradient descent with the update rule of `torch.optim.SGD`.

    For every variable `w` with gradient `g`, at learning rate `lr`:

    ```
    g = g + weight_decay * w          # unless w is excluded from weight decay
    buf = momentum * buf + g          # buf starts at 0, so the first buf is g
    step = g + momentum * buf if nesterov else buf
    w = w - lr * step
    ```

    Weight decay is the coupled L2 form (it passes through the momentum), not Keras'
    decoupled form. Variables are excluded from it with `exclude_from_weight_decay`
    (regular expressions searched in the variable's `path`, kept in the config) or
    `exclude_from_weight_decay()` (variables or patterns, before the first update).

    Args:
        learning_rate: a float or a `LearningRateSchedule` (see `WarmupCosineDecay`).
        momentum: momentum factor in [0, 1).
        nesterov: use Nesterov momentum.
        weight_decay: L2 factor added to the gradient (`SOLVER.WEIGHT_DECAY`).
        exclude_from_weight_decay: regular expressions; a variable whose `path` matches one
            of them gets no weight decay.
        name: optimizer name.
        **kwargs: other `keras.optimizers.Optimizer` arguments (`clipnorm`,
            `global_clipnorm`, `loss_scale_factor`, ...).

    Example:
        >>> import keras
        >>> opt = TorchSGD(0.1, weight_decay=1e-4, exclude_from_weight_decay=["_bn/"])
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> model.compile(opt, "mse")
    """

    def __init__(
        self,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 0.1,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float | None = 0.0,
        exclude_from_weight_decay: Iterable[str] | None = None,
        name: str = "TorchSGD",
        **kwargs: Any,
    ) -> None:
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
            raise TypeError(f"`momentum` must be a float. Received: momentum={momentum!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum!r}")
        if nesterov and momentum == 0:
            raise ValueError(
                f"Nesterov momentum needs `momentum` > 0. Received: momentum={momentum!r}, "
                "nesterov=True"
            )
        if weight_decay is None:
            weight_decay = 0.0
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
            raise TypeError(
                f"`weight_decay` must be a float. Received: weight_decay={weight_decay!r}"
            )
        if weight_decay < 0:
            raise ValueError(
                f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay!r}"
            )
        patterns = list(exclude_from_weight_decay or [])
        for p in patterns:
            if not isinstance(p, str):
                raise TypeError(
                    "`exclude_from_weight_decay` must be a list of regular expressions. "
                    f"Received: exclude_from_weight_decay={exclude_from_weight_decay!r}"
                )
        super().__init__(
            learning_rate=learning_rate, weight_decay=float(weight_decay), name=name, **kwargs
        )
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self._no_decay_patterns = patterns
        self._no_decay_regex = (
            re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        )
        self._no_decay_keys = set()

    def exclude_from_weight_decay(
        self,
        var_list: Iterable[keras.Variable] | None = None,
        var_names: Iterable[str] | None = None,
    ) -> None:
        """Excludes variables from weight decay (call before the first update).

        Args:
            var_list: variables to exclude.
            var_names: regular expressions searched in each variable's `path`.
        """
        if self.built:
            raise ValueError(
                "`exclude_from_weight_decay()` must be called before the optimizer is built. "
                f"Received: optimizer={self.name!r} (already built)"
            )
        self._no_decay_keys = {self._var_key(v) for v in (var_list or [])}
        if var_names:
            self._no_decay_patterns = self._no_decay_patterns + list(var_names)
            self._no_decay_regex = re.compile("|".join(f"(?:{p})" for p in self._no_decay_patterns))

    def decays(self, variable: keras.Variable) -> bool:
        """Whether `variable` receives weight decay."""
        if not self.weight_decay:
            return False
        if self._var_key(variable) in self._no_decay_keys:
            return False
        path = getattr(variable, "path", None) or getattr(variable, "name", "")
        return self._no_decay_regex is None or self._no_decay_regex.search(path) is None

    def build(self, variables: Sequence[keras.Variable]) -> None:
        if self.built:
            return
        super().build(variables)
        self._decay_flags = [self.decays(v) for v in variables]
        self.momentums = []
        if self.momentum:
            self.momentums = self.add_optimizer_variables(variables, "momentum")

    def _apply_weight_decay(self, variables):
        # The decay is coupled (added to the gradient in `update_step`), not decoupled.
        return

    def update_step(
        self, gradient: tf.Tensor, variable: keras.Variable, learning_rate: float | tf.Tensor
    ) -> None:
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self._decay_flags[index]:
            g = ops.add(g, ops.multiply(ops.cast(self.weight_decay, variable.dtype), variable))
        if self.momentum:
            momentum = ops.cast(self.momentum, variable.dtype)
            buf = self.momentums[index]
            new_buf = ops.add(ops.multiply(buf, momentum), g)
            self.assign(buf, new_buf)
            g = ops.add(g, ops.multiply(new_buf, momentum)) if self.nesterov else new_buf
        self.assign_sub(variable, ops.multiply(g, lr))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "nesterov": self.nesterov,
                "exclude_from_weight_decay": list(self._no_decay_patterns),
            }
        )
        return config


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def no_weight_decay_variables(
    model: keras.Model, batchnorm: bool = True, one_dimensional: bool = False
) -> list[keras.Variable]:
    """The trainable variables PySlowFast trains without weight decay.

    Args:
        model: a Keras model.
        batchnorm: include the BatchNormalization parameters (gamma and beta), which
            PySlowFast decays with `BN.WEIGHT_DECAY = 0`.
        one_dimensional: include every 1-D variable (biases, norms' scales), as PySlowFast
            does with `SOLVER.ZERO_WD_1D_PARAM` (off in the Kinetics recipes).

    Returns:
        A list of variables, in model order.

    Example:
        >>> import keras_slowfast
        >>> model = keras_slowfast.SlowR50(width_per_group=8, classes=5)
        >>> sorted({v.name for v in no_weight_decay_variables(model)})
        ['beta', 'gamma']
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={type(model).__name__}")
    chosen = {}
    if batchnorm:
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                for v in layer.trainable_weights:
                    chosen[id(v)] = v
    if one_dimensional:
        for v in model.trainable_weights:
            if len(v.shape) == 1:
                chosen[id(v)] = v
    return [v for v in model.trainable_weights if id(v) in chosen]


def create_optimizer(
    model: keras.Model,
    *,
    epochs: float,
    steps_per_epoch: int,
    global_batch_size: int,
    base_lr: float = 0.1,
    base_batch_size: int = REFERENCE_BATCH_SIZE,
    warmup_epochs: float = 34.0,
    warmup_start_lr: float = 0.01,
    end_lr: float = 0.0,
    cosine_after_warmup: bool = False,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 1e-4,
    zero_wd_1d_param: bool = False,
    lr_policy: str = "cosine",
    steps: Sequence[float] | None = None,
    lrs: Sequence[float] | None = None,
    **kwargs: Any,
) -> TorchSGD:
    """Builds PySlowFast's optimizer: `TorchSGD` on a warm-up + cosine (or steps) schedule.

    The rates (`base_lr`, `warmup_start_lr`, `end_lr`) are given for `base_batch_size`
    clips and scaled by `global_batch_size / base_batch_size`. With
    `lr_policy="steps_with_relative_lrs"` the schedule is :class:`StepsWithRelativeLRs`
    (`base_lr * lrs[i]` from epoch `steps[i]`) instead of the cosine. BatchNorm
    gamma and beta get no weight decay (PySlowFast's `BN.WEIGHT_DECAY: 0`); other
    variables, biases included, get `weight_decay` unless `zero_wd_1d_param` is set. The
    defaults are the Kinetics-400 recipe except `epochs` (196 there).

    Exclusions are stored as the variables' paths, so they survive `model.save()`.
    Build the optimizer in the same distribution scope as the model.

    Args:
        model: the model to train (its variables decide the exclusions).
        epochs: total training epochs (end of the cosine).
        steps_per_epoch: optimizer steps per epoch.
        global_batch_size: clips per step over all replicas.
        base_lr: peak learning rate for `base_batch_size` clips.
        base_batch_size: batch the rates refer to (64).
        warmup_epochs: linear warm-up length in epochs (0 for none).
        warmup_start_lr: warm-up start rate for `base_batch_size` clips.
        end_lr: final cosine rate for `base_batch_size` clips.
        cosine_after_warmup: start the cosine after the warm-up.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 weight decay (1e-4 for Kinetics, 1e-7 for AVA fine-tuning).
        zero_wd_1d_param: no weight decay on any 1-D variable.
        lr_policy: `"cosine"` (`WarmupCosineDecay`) or `"steps_with_relative_lrs"`
            (`StepsWithRelativeLRs`), PySlowFast's `SOLVER.LR_POLICY`.
        steps: stage start epochs of the steps policy (`SOLVER.STEPS`, the first 0).
        lrs: stage rates relative to `base_lr` (`SOLVER.LRS`), one per step.
        **kwargs: passed to `TorchSGD` (`clipnorm`, `name`, ...).

    Returns:
        A `TorchSGD` optimizer.

    Example:
        >>> import keras_slowfast
        >>> model = keras_slowfast.SlowR50(width_per_group=8, classes=5)
        >>> opt = create_optimizer(model, epochs=10, steps_per_epoch=100,
        ...                        global_batch_size=16, warmup_epochs=1)
        >>> round(float(opt.learning_rate), 6)  # 0.01 * 16 / 64 at step 0
        0.0025
    """
    if lr_policy not in LR_POLICIES:
        raise ValueError(
            f"`lr_policy` must be one of {LR_POLICIES}. Received: lr_policy={lr_policy!r}"
        )
    if lr_policy == "cosine" and (steps is not None or lrs is not None):
        raise ValueError(
            "`steps` and `lrs` apply to lr_policy='steps_with_relative_lrs' only. "
            f"Received: lr_policy={lr_policy!r}, steps={steps!r}, lrs={lrs!r}"
        )
    if lr_policy != "cosine" and (steps is None or lrs is None):
        raise ValueError(
            f"lr_policy={lr_policy!r} needs `steps` and `lrs`. Received: steps={steps!r}, "
            f"lrs={lrs!r}"
        )
    scale = scale_learning_rate(1.0, global_batch_size, base_batch_size)
    if lr_policy == "cosine":
        schedule = WarmupCosineDecay(
            base_lr=base_lr * scale,
            total_epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            warmup_epochs=warmup_epochs,
            warmup_start_lr=warmup_start_lr * scale,
            end_lr=end_lr * scale,
            cosine_after_warmup=cosine_after_warmup,
        )
    else:
        schedule = StepsWithRelativeLRs(
            base_lr=base_lr * scale,
            steps=steps,
            lrs=lrs,
            total_epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            warmup_epochs=warmup_epochs,
            warmup_start_lr=warmup_start_lr * scale,
        )
    excluded = no_weight_decay_variables(model, batchnorm=True, one_dimensional=zero_wd_1d_param)
    patterns = [f"^{re.escape(v.path)}$" for v in excluded]
    return TorchSGD(
        learning_rate=schedule,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        exclude_from_weight_decay=patterns,
        **kwargs,
    )


# PySlowFast's AVA recipe (configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml), for 64 clips per step.
AVA_RECIPE = dict(
    epochs=20,
    base_lr=0.1,
    warmup_epochs=5.0,
    warmup_start_lr=0.000125,
    lr_policy="steps_with_relative_lrs",
    steps=(0, 10, 15, 20),
    lrs=(1.0, 0.1, 0.01, 0.001),
    momentum=0.9,
    nesterov=True,
    weight_decay=1e-7,
)


def create_ava_optimizer(
    model: keras.Model, *, steps_per_epoch: int, global_batch_size: int, **overrides: Any
) -> TorchSGD:
    """Builds PySlowFast's AVA detector optimizer (the `SLOWFAST_32x2_R50_SHORT` recipe).

    `TorchSGD` (momentum 0.9, Nesterov, weight decay 1e-7 except on BatchNorm) on the
    `steps_with_relative_lrs` policy: 5 warm-up epochs from 0.000125 to 0.1, then 0.1,
    0.01 from epoch 10, 0.001 from epoch 15, 20 epochs in all. The rates are those of 64
    clips per step and scale linearly with `global_batch_size`. Any argument of
    :func:`create_optimizer` overrides the recipe, e.g. `lr_policy="cosine"` (then give
    `end_lr` if wanted; `steps`/`lrs` are dropped) or `epochs=6, steps=(0, 4), lrs=(1, 0.1)`.

    Args:
        model: the detector to train.
        steps_per_epoch: optimizer steps per epoch.
        global_batch_size: clips per step over all replicas.
        **overrides: other :func:`create_optimizer` arguments.

    Returns:
        A `TorchSGD` optimizer.

    Example:
        >>> import keras_slowfast
        >>> model = keras_slowfast.SlowFastR50AVA(width_per_group=8)
        >>> opt = create_ava_optimizer(model, steps_per_epoch=100, global_batch_size=16)
        >>> round(float(opt.learning_rate), 8)  # 0.000125 * 16 / 64 at step 0
        3.125e-05
        >>> opt.weight_decay
        1e-07
    """
    kwargs = dict(AVA_RECIPE)
    if overrides.get("lr_policy") == "cosine":
        kwargs.pop("steps")
        kwargs.pop("lrs")
    kwargs.update(overrides)
    return create_optimizer(
        model, steps_per_epoch=steps_per_epoch, global_batch_size=global_batch_size, **kwargs
    )
