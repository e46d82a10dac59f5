"""The AVA detector's loss: multi-label binary cross-entropy over the real boxes.

PySlowFast trains its AVA detectors with `torch.nn.BCELoss(reduction="mean")` on the sigmoid
scores of every box of the batch (`MODEL.LOSS_FUNC: bce`): its data loader concatenates
the boxes of all clips (`detection_collate`), so the loss is the mean of
`-(y log p + (1 - y) log(1 - p))` over all real boxes and all classes, each log clamped at
-100 as torch does. The Keras detectors instead take a fixed number of box slots per clip,
all-zero rows being padding; :class:`AvaBinaryCrossentropy` reproduces the torch value by
averaging over the real boxes only, which it learns from the sample weights (`1` for a
real box, `0` for padding) that `keras_slowfast.data.ava_dataset` yields as the third
element of each batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
from keras import ops

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["AvaBinaryCrossentropy", "ava_loss"]

# torch.nn.BCELoss clamps each log term at this value.
_LOG_CLAMP = -100.0


def _clamped_log(x):
    """`max(log(x), -100)`, with a zero gradient (not NaN) where `x == 0`."""
    positive = x > 0
    safe = ops.where(positive, x, ops.ones_like(x))
    return ops.where(positive, ops.maximum(ops.log(safe), _LOG_CLAMP), _LOG_CLAMP)


@keras.saving.register_keras_serializable(package="keras_slowfast")
class AvaBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy on probabilities, averaged over the real boxes and classes.

    For scores `p` and multi-hot labels `y` of shape `(batch, max_boxes, classes)`, each
    box's loss is the mean over classes of `-(y max(log p, -100) + (1 - y) max(log(1 - p),
    -100))` (torch's `BCELoss` terms). With the default reduction
    `"mean_with_sample_weight"` and the box weights as `sample_weight` (1 for real boxes,
    0 for padding), the batch loss is `sum(w * box_loss) / sum(w)`: exactly
    `torch.nn.BCELoss(reduction="mean")` on the real boxes concatenated, as PySlowFast
    computes it. Without `sample_weight` every box slot counts in the mean (padding rows,
    scored 0 with labels 0, add nothing to the sum but enlarge the divisor). A box whose
    scores are all exactly 0 (the detector's mark of a padding row, also given to a real box
    that clipping reduced to `[0, 0, 0, 0]`) adds 0 to the sum.

    Under a `MirroredStrategy`, each replica averages over its own boxes and the gradients
    are averaged over replicas, as with PySlowFast's DistributedDataParallel.

    Args:
        reduction: a Keras reduction; `"mean_with_sample_weight"` (default) is the
            mean over weighted boxes described above; `None` returns the per-box losses
            `(batch, max_boxes)`.
        name: name of the loss.
        dtype: dtype of the computation (default float32, also under mixed precision).

    Example:
        >>> import numpy as np
        >>> loss = AvaBinaryCrossentropy()
        >>> y_true = np.array([[[1.0, 0.0], [0.0, 0.0]]])   # one real box, one padding
        >>> y_pred = np.array([[[0.5, 0.5], [0.0, 0.0]]])
        >>> round(float(loss(y_true, y_pred, sample_weight=np.array([[1.0, 0.0]]))), 6)
        0.693147
    """

    def __init__(
        self,
        reduction: str | None = "mean_with_sample_weight",
        name: str = "ava_binary_crossentropy",
        dtype: str | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_pred = ops.cast(y_pred, self.dtype)
        y_true = ops.cast(y_true, self.dtype)
        terms = y_true * _clamped_log(y_pred) + (1.0 - y_true) * _clamped_log(1.0 - y_pred)
        per_box = -ops.mean(terms, axis=-1)
        # The detector scores padding rows (all-zero boxes) exactly 0. A real box that
        # cropping and clipping reduced to all zeros is masked the same way; it adds nothing
        # rather than the -100 clamp of each of its labels.
        scored = ops.any(ops.not_equal(y_pred, 0), axis=-1)
        return ops.where(scored, per_box, ops.zeros_like(per_box))

    def get_config(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "name": self.name, "dtype": self.dtype}


def ava_loss(reduction: str | None = "mean_with_sample_weight") -> AvaBinaryCrossentropy:
    """PySlowFast's AVA loss (`MODEL.LOSS_FUNC: bce`) for `model.compile`.

    Pass the AVA dataset's box weights as sample weights (the datasets of
    `keras_slowfast.data.ava_dataset` are `(inputs, labels, box_weights)` batches) so
    that the mean runs over the real boxes only; see :class:`AvaBinaryCrossentropy`.

    Args:
        reduction: see :class:`AvaBinaryCrossentropy`.

    Returns:
        An :class:`AvaBinaryCrossentropy`.

    Example:
        >>> import keras_slowfast
        >>> model = keras_slowfast.SlowFastR50AVA(width_per_group=8)
        >>> model.compile("sgd", loss=ava_loss())
    """
    return AvaBinaryCrossentropy(reduction=reduction)
