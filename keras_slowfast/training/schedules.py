"""PySlowFast's learning-rate policies as Keras schedules.

PySlowFast sets the learning rate before every iteration from the fractional epoch
`e = epoch + iteration / iterations_per_epoch`:

* `SOLVER.LR_POLICY: cosine`:
  `end + (base - end) * (cos(pi * (e - offset) / (max_epochs - offset)) + 1) / 2`,
  where `offset` is the warm-up length if `SOLVER.COSINE_AFTER_WARMUP` is set, else 0
  (:class:`WarmupCosineDecay`, the Kinetics recipes);
* `SOLVER.LR_POLICY: steps_with_relative_lrs`: `base * lrs[i]` where `i` is the last index
  with `steps[i] <= e` (:class:`StepsWithRelativeLRs`, the AVA recipes);
* warm-up (`e < warmup_epochs`), for either policy: a straight line from `warmup_start_lr`
  at epoch 0 to the policy's value at `warmup_epochs` (not to `base`, unless the policy
  has reached it by then).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
from keras import ops

if TYPE_CHECKING:
    import tensorflow as tf

from keras_slowfast._checks import check_positive_int

__all__ = ["StepsWithRelativeLRs", "WarmupCosineDecay", "scale_learning_rate"]

# PySlowFast's reference batch for its published learning rates (8 GPUs x 8 clips).
REFERENCE_BATCH_SIZE = 64


def _check_number(name, value, minimum=None, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"`{name}` must be a finite number. Received: {name}={value!r}")
    if positive and value <= 0:
        raise ValueError(f"`{name}` must be positive. Received: {name}={value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}. Received: {name}={value!r}")
    return float(value)


def _linear_warmup(epoch, lr, warmup_epochs, start_lr, end_lr):
    """PySlowFast's warm-up: `start_lr` rising linearly to the policy's `end_lr`, then `lr`."""
    slope = (end_lr - start_lr) / warmup_epochs
    return ops.where(epoch < warmup_epochs, start_lr + epoch * slope, lr)


def scale_learning_rate(
    learning_rate: float, global_batch_size: int, base_batch_size: int = REFERENCE_BATCH_SIZE
) -> float:
    """Scales a learning rate linearly with the global batch (the linear scaling rule).

    PySlowFast's recipes give the learning rate for 64 clips per iteration; a run with
    another global batch multiplies it (and the warm-up start and cosine end rates) by
    `global_batch_size / base_batch_size`.

    Args:
        learning_rate: the rate for `base_batch_size` clips.
        global_batch_size: clips per iteration summed over all replicas.
        base_batch_size: the batch `learning_rate` refers to (64 in PySlowFast).

    Returns:
        The scaled learning rate (float).

    Example:
        >>> scale_learning_rate(0.1, global_batch_size=16)
        0.025
    """
    learning_rate = _check_number("learning_rate", learning_rate, minimum=0)
    global_batch_size = check_positive_int("global_batch_size", global_batch_size)
    base_batch_size = check_positive_int("base_batch_size", base_batch_size)
    return learning_rate * global_batch_size / base_batch_size


@keras.saving.register_keras_serializable(package="keras_slowfast")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up followed by cosine decay, exactly as PySlowFast's `cosine` policy.

    The schedule is evaluated at the optimizer's step (`optimizer.iterations`, 0 for the
    first update), with the fractional epoch `step / steps_per_epoch`. The Kinetics-400
    SlowFast recipe is `base_lr=0.1` (for 64 clips), `warmup_start_lr=0.01`,
    `warmup_epochs=34`, `total_epochs=196`, `end_lr=0`.

    Args:
        base_lr: peak rate of the cosine (`SOLVER.BASE_LR`).
        total_epochs: epochs at which the cosine reaches `end_lr` (`SOLVER.MAX_EPOCH`).
        steps_per_epoch: optimizer steps per epoch.
        warmup_epochs: length of the linear warm-up in epochs, may be fractional
            (`SOLVER.WARMUP_EPOCHS`); 0 disables it.
        warmup_start_lr: rate at step 0 when warming up (`SOLVER.WARMUP_START_LR`).
        end_lr: final rate of the cosine (`SOLVER.COSINE_END_LR`); must be below `base_lr`.
        cosine_after_warmup: start the cosine at the end of the warm-up instead of at
            epoch 0 (`SOLVER.COSINE_AFTER_WARMUP`).
        name: name of the schedule.

    Past `total_epochs` the rate stays at `end_lr`.

    Example:
        >>> schedule = WarmupCosineDecay(0.1, total_epochs=196, steps_per_epoch=100,
        ...                              warmup_epochs=34, warmup_start_lr=0.01)
        >>> round(float(schedule(0)), 6)
        0.01
        >>> round(float(schedule(196 * 100)), 6)
        0.0
    """

    def __init__(
        self,
        base_lr: float,
        total_epochs: float,
        steps_per_epoch: int,
        warmup_epochs: float = 0.0,
        warmup_start_lr: float = 0.01,
        end_lr: float = 0.0,
        cosine_after_warmup: bool = False,
        name: str = "WarmupCosineDecay",
    ) -> None:
        super().__init__()
        self.base_lr = _check_number("base_lr", base_lr, positive=True)
        self.total_epochs = _check_number("total_epochs", total_epochs, positive=True)
        self.steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
        self.warmup_epochs = _check_number("warmup_epochs", warmup_epochs, minimum=0)
        self.warmup_start_lr = _check_number("warmup_start_lr", warmup_start_lr, minimum=0)
        self.end_lr = _check_number("end_lr", end_lr, minimum=0)
        if self.end_lr >= self.base_lr:
            raise ValueError(
                f"`end_lr` must be smaller than `base_lr` ({self.base_lr}). "
                f"Received: end_lr={end_lr!r}"
            )
        self.cosine_after_warmup = bool(cosine_after_warmup)
        if self.cosine_after_warmup and self.warmup_epochs >= self.total_epochs:
            raise ValueError(
                "With `cosine_after_warmup`, `warmup_epochs` must be shorter than "
                f"`total_epochs` ({self.total_epochs}). Received: warmup_epochs={warmup_epochs!r}"
            )
        self.name = name

    def _cosine(self, epoch, cos=ops.cos):
        offset = self.warmup_epochs if self.cosine_after_warmup else 0.0
        phase = math.pi * (epoch - offset) / (self.total_epochs - offset)
        return self.end_lr + (self.base_lr - self.end_lr) * (cos(phase) + 1.0) * 0.5

    def __call__(self, step: int | tf.Tensor) -> tf.Tensor:
        epoch = ops.cast(step, "float32") / float(self.steps_per_epoch)
        # PySlowFast never runs past `total_epochs`; hold `end_lr` there instead of letting
        # the cosine rise again.
        epoch = ops.minimum(epoch, self.total_epochs)
        lr = self._cosine(epoch)
        if self.warmup_epochs > 0:
            warmup_end = self._cosine(self.warmup_epochs, cos=math.cos)
            lr = _linear_warmup(epoch, lr, self.warmup_epochs, self.warmup_start_lr, warmup_end)
        return lr

    def get_config(self) -> dict[str, Any]:
        return {
            "base_lr": self.base_lr,
            "total_epochs": self.total_epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "warmup_epochs": self.warmup_epochs,
            "warmup_start_lr": self.warmup_start_lr,
            "end_lr": self.end_lr,
            "cosine_after_warmup": self.cosine_after_warmup,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="keras_slowfast")
class StepsWithRelativeLRs(keras.optimizers.schedules.LearningRateSchedule):
    """PySlowFast's `steps_with_relative_lrs` policy: piecewise-constant rates, warm-up.

    At the fractional epoch `e = step / steps_per_epoch` the rate is
    `base_lr * lrs[i]`, where `i` is the last index with `steps[i] <= e` (`SOLVER.STEPS`
    start at 0). During the warm-up (`e < warmup_epochs`) it is the straight line from
    `warmup_start_lr` at epoch 0 to the policy's rate at `warmup_epochs`. Past
    `total_epochs` (`SOLVER.MAX_EPOCH`) the last rate is kept.

    The AVA recipe (`configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml`, 64 clips per step) is
    `base_lr=0.1`, `steps=(0, 10, 15, 20)`, `lrs=(1, 0.1, 0.01, 0.001)`,
    `total_epochs=20`, `warmup_epochs=5`, `warmup_start_lr=0.000125`.

    Args:
        base_lr: the reference rate (`SOLVER.BASE_LR`).
        steps: epochs at which each stage starts (`SOLVER.STEPS`), non-decreasing, the
            first 0.
        lrs: the rate of each stage relative to `base_lr` (`SOLVER.LRS`), one per step.
        total_epochs: length of training in epochs (`SOLVER.MAX_EPOCH`).
        steps_per_epoch: optimizer steps per epoch.
        warmup_epochs: linear warm-up length in epochs (`SOLVER.WARMUP_EPOCHS`); 0 for none.
        warmup_start_lr: rate at step 0 when warming up (`SOLVER.WARMUP_START_LR`).
        name: name of the schedule.

    Example:
        >>> schedule = StepsWithRelativeLRs(0.1, steps=(0, 10, 15, 20),
        ...                                 lrs=(1, 0.1, 0.01, 0.001), total_epochs=20,
        ...                                 steps_per_epoch=100, warmup_epochs=5,
        ...                                 warmup_start_lr=0.000125)
        >>> [round(float(schedule(s)), 6) for s in (0, 500, 1000, 1500, 2000)]
        [0.000125, 0.1, 0.01, 0.001, 0.0001]
    """

    def __init__(
        self,
        base_lr: float,
        steps: Sequence[float],
        lrs: Sequence[float],
        total_epochs: float,
        steps_per_epoch: int,
        warmup_epochs: float = 0.0,
        warmup_start_lr: float = 0.0,
        name: str = "StepsWithRelativeLRs",
    ) -> None:
        super().__init__()
        self.base_lr = _check_number("base_lr", base_lr, positive=True)
        if isinstance(steps, (str, bytes)) or not hasattr(steps, "__len__") or not len(steps):
            raise ValueError(
                f"`steps` must be a non-empty list of epochs. Received: steps={steps!r}"
            )
        if isinstance(lrs, (str, bytes)) or not hasattr(lrs, "__len__"):
            raise ValueError(f"`lrs` must be a list of numbers. Received: lrs={lrs!r}")
        self.steps = [_check_number("steps", s, minimum=0) for s in steps]
        self.lrs = [_check_number("lrs", v, minimum=0) for v in lrs]
        if self.steps[0] != 0:
            raise ValueError(f"`steps` must start at epoch 0. Received: steps={steps!r}")
        if any(b < a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError(f"`steps` must be non-decreasing. Received: steps={steps!r}")
        if len(self.lrs) != len(self.steps):
            raise ValueError(
                f"`lrs` must have one rate per step ({len(self.steps)}). Received: lrs={lrs!r}"
            )
        self.total_epochs = _check_number("total_epochs", total_epochs, positive=True)
        self.steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
        self.warmup_epochs = _check_number("warmup_epochs", warmup_epochs, minimum=0)
        self.warmup_start_lr = _check_number("warmup_start_lr", warmup_start_lr, minimum=0)
        self.name = name

    def _index(self, epoch):
        # PySlowFast appends MAX_EPOCH to the steps and takes the index before the first
        # entry above `epoch` (scanning in order); past them all it stays on the last stage.
        boundaries = self.steps + [self.total_epochs]
        first_above = ops.convert_to_tensor(len(boundaries), "int32")
        for i in reversed(range(len(boundaries))):
            first_above = ops.where(epoch < boundaries[i], i, first_above)
        return ops.minimum(first_above - 1, len(self.lrs) - 1)

    def _policy_at(self, epoch):
        """The policy's rate at a Python epoch (no warm-up)."""
        boundaries = self.steps + [self.total_epochs]
        index = next((i for i, b in enumerate(boundaries) if epoch < b), len(boundaries)) - 1
        return self.base_lr * self.lrs[min(index, len(self.lrs) - 1)]

    def __call__(self, step: int | tf.Tensor) -> tf.Tensor:
        epoch = ops.cast(step, "float32") / float(self.steps_per_epoch)
        rates = ops.convert_to_tensor([self.base_lr * v for v in self.lrs], "float32")
        lr = ops.take(rates, self._index(epoch))
        if self.warmup_epochs > 0:
            warmup_end = self._policy_at(self.warmup_epochs)
            lr = _linear_warmup(epoch, lr, self.warmup_epochs, self.warmup_start_lr, warmup_end)
        return lr

    def get_config(self) -> dict[str, Any]:
        return {
            "base_lr": self.base_lr,
            "steps": list(self.steps),
            "lrs": list(self.lrs),
            "total_epochs": self.total_epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "warmup_epochs": self.warmup_epochs,
            "warmup_start_lr": self.warmup_start_lr,
            "name": self.name,
        }
