"""Custom Keras layers used by the SlowFast builders.

Every layer here is small, stateless (no weights) and serialisable, so that a model built by
:func:`keras_slowfast.SlowFast` saves to and loads from the `.keras` format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import ops

from keras_slowfast.frame_indices import slow_pathway_indices

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "ClipNormalization",
    "MaskPaddedBoxes",
    "NonLocalAttention",
    "NormalizedBoxesToPixels",
    "SlidingAveragePooling3D",
    "TemporalMean",
    "TemporalSubsample",
]

_PACKAGE = "keras_slowfast"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ClipNormalization(keras.layers.Layer):
    """Scales RGB clips from [0, 255] to [0, 1] and normalises them per channel.

    Accepts uint8 or float input and returns `(x / 255 - mean) / std` in the compute dtype.

    Args:
        mean: per-channel mean after scaling to [0, 1].
        std: per-channel standard deviation after scaling to [0, 1].

    Example:
        >>> layer = ClipNormalization()
        >>> tuple(layer(np.full((1, 2, 4, 4, 3), 255, np.uint8)).shape)
        (1, 2, 4, 4, 3)
    """

    def __init__(
        self,
        mean: Sequence[float] = (0.45, 0.45, 0.45),
        std: Sequence[float] = (0.225, 0.225, 0.225),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != len(self.std):
            raise ValueError(
                "`mean` and `std` must have the same length. "
                f"Received: mean={self.mean}, std={self.std}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"`std` values must be positive. Received: std={self.std}")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        x = ops.cast(inputs, "float32") / 255.0
        mean = ops.convert_to_tensor(np.asarray(self.mean, np.float32))
        std = ops.convert_to_tensor(np.asarray(self.std, np.float32))
        x = (x - mean) / std
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"mean": list(self.mean), "std": list(self.std)})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TemporalSubsample(keras.layers.Layer):
    """Takes the slow-pathway frames out of a fast-pathway clip.

    Gathers frames `trunc(linspace(0, T - 1, T // alpha))` (float32 linspace, PyTorch
    rounding) along the time axis (axis 1) of a `(batch, T, H, W, C)` tensor.

    Args:
        alpha: the frame-rate ratio between the fast and the slow pathway.

    Example:
        >>> layer = TemporalSubsample(alpha=4)
        >>> tuple(layer(np.zeros((1, 32, 8, 8, 3), "float32")).shape)
        (1, 8, 8, 8, 3)
    """

    def __init__(self, alpha: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(alpha) != alpha or alpha < 1:
            raise ValueError(f"`alpha` must be a positive integer. Received: alpha={alpha}")
        self.alpha = int(alpha)

    def _indices(self, num_frames):
        if num_frames is None:
            raise ValueError(
                "TemporalSubsample needs a static number of frames. "
                f"Received: input time dimension={num_frames}"
            )
        if num_frames < self.alpha:
            raise ValueError(
                "The clip must have at least `alpha` frames. "
                f"Received: frames={num_frames}, alpha={self.alpha}"
            )
        return slow_pathway_indices(num_frames, self.alpha)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        idx = self._indices(inputs.shape[1])
        return ops.take(inputs, ops.convert_to_tensor(idx.astype("int32")), axis=1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        n = len(self._indices(input_shape[1]))
        return (input_shape[0], n) + tuple(input_shape[2:])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"alpha": self.alpha})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NonLocalAttention(keras.layers.Layer):
    """The parameter-free core of a non-local block (Wang et al., 2018).

    Given the embeddings `theta` `(N, T, H, W, C')`, and `phi`, `g` `(N, T', H', W', C')`
    (usually pooled), computes the affinity `theta . phi^T` over all space-time positions
    and returns `affinity . g` reshaped like `theta`.

    Args:
        instantiation: `"dot_product"` (affinity divided by the number of `phi`
            positions, PySlowFast's default for SlowFast) or `"softmax"` (scaled by
            `C' ** -0.5` and normalised with a softmax).

    Example:
        >>> theta = np.ones((1, 2, 4, 4, 8), "float32")
        >>> phi = g = np.ones((1, 2, 2, 2, 8), "float32")
        >>> tuple(NonLocalAttention()([theta, phi, g]).shape)
        (1, 2, 4, 4, 8)
    """

    def __init__(self, instantiation: str = "dot_product", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if instantiation not in ("dot_product", "softmax"):
            raise ValueError(
                "`instantiation` must be 'dot_product' or 'softmax'. "
                f"Received: instantiation={instantiation!r}"
            )
        self.instantiation = instantiation

    def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
        theta, phi, g = inputs
        shape = ops.shape(theta)
        n, c = shape[0], shape[-1]
        theta_f = ops.reshape(theta, (n, -1, c))
        phi_f = ops.reshape(phi, (n, -1, c))
        g_f = ops.reshape(g, (n, -1, c))
        affinity = ops.einsum("ntc,npc->ntp", theta_f, phi_f)
        if self.instantiation == "softmax":
            affinity = affinity * ops.cast(ops.rsqrt(ops.cast(c, "float32")), affinity.dtype)
            affinity = ops.softmax(affinity, axis=-1)
        else:
            positions = ops.cast(ops.shape(phi_f)[1], affinity.dtype)
            affinity = affinity / positions
        out = ops.einsum("ntp,npc->ntc", affinity, g_f)
        return ops.reshape(out, shape)

    def compute_output_shape(
        self, input_shape: Sequence[tuple[int | None, ...]]
    ) -> tuple[int | None, ...]:
        return input_shape[0]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"instantiation": self.instantiation})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SlidingAveragePooling3D(keras.layers.Layer):
    """Stride-1 average pooling whose window shrinks to fit small inputs.

    PySlowFast's classification head average-pools the last feature map with a window fixed
    by the training crop (`T`, `crop // 32`, `crop // 32`) at stride 1. On a larger test
    input this leaves several positions, each classified separately (fully-convolutional
    testing). This layer does the same for inputs of any size: along each axis the window is
    `min(pool_size, size)`, so an input no larger than the training crop is pooled globally.
    Sums are formed with cumulative sums, so the window can be chosen at run time.

    Args:
        pool_size: the window `(t, h, w)`; `None` for an axis means the whole axis.

    Example:
        >>> layer = SlidingAveragePooling3D((8, 7, 7))
        >>> tuple(layer(np.ones((1, 8, 8, 8, 16), "float32")).shape)
        (1, 1, 2, 2, 16)
    """

    def __init__(self, pool_size: Sequence[int | None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pool_size = tuple(pool_size)
        if len(pool_size) != 3 or any(p is not None and int(p) < 1 for p in pool_size):
            raise ValueError(
                "`pool_size` must be three positive integers (or None). "
                f"Received: pool_size={pool_size}"
            )
        self.pool_size = tuple(None if p is None else int(p) for p in pool_size)

    @staticmethod
    def _window_mean(x, axis, window):
        size = ops.shape(x)[axis]
        if window is None:
            return ops.mean(x, axis=axis, keepdims=True)
        k = ops.minimum(size, window)
        csum = ops.cumsum(x, axis=axis)
        pad = [[0, 0]] * len(x.shape)
        pad[axis] = [1, 0]
        csum = ops.pad(csum, pad)
        n_out = size - k + 1
        upper = ops.take(csum, ops.arange(n_out) + k, axis=axis)
        lower = ops.take(csum, ops.arange(n_out), axis=axis)
        return (upper - lower) / ops.cast(k, x.dtype)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        x = ops.cast(inputs, "float32")
        for axis, window in zip((1, 2, 3), self.pool_size):
            if window is not None and x.shape[axis] is not None and x.shape[axis] <= window:
                x = ops.mean(x, axis=axis, keepdims=True)
            else:
                x = self._window_mean(x, axis, window)
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        out = [input_shape[0]]
        for dim, window in zip(input_shape[1:4], self.pool_size):
            if window is None:
                out.append(1)
            elif dim is None:
                out.append(None)
            else:
                out.append(dim - min(dim, window) + 1)
        return tuple(out) + (input_shape[4],)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"pool_size": list(self.pool_size)})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TemporalMean(keras.layers.Layer):
    """Averages a `(batch, T, H, W, C)` tensor over time, giving `(batch, H, W, C)`.

    The AVA head's per-pathway average pooling over all remaining frames.

    Example:
        >>> tuple(TemporalMean()(np.ones((1, 8, 4, 4, 16), "float32")).shape)
        (1, 4, 4, 16)
    """

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return ops.mean(inputs, axis=1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0],) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NormalizedBoxesToPixels(keras.layers.Layer):
    """Scales `[x1, y1, x2, y2]` boxes from [0, 1] to pixels of the clip's frames.

    Called as `layer([clip, boxes])` with `clip` `(batch, T, H, W, C)` and `boxes`
    `(batch, max_boxes, 4)`.

    Example:
        >>> clip = np.zeros((1, 4, 64, 32, 3), "float32")
        >>> pixels = NormalizedBoxesToPixels()([clip, np.array([[[0.5, 0.5, 1.0, 1.0]]])])
        >>> ops.convert_to_numpy(pixels).tolist()
        [[[16.0, 32.0, 32.0, 64.0]]]
    """

    def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
        clip, boxes = inputs
        shape = ops.shape(clip)
        height = ops.cast(shape[2], "float32")
        width = ops.cast(shape[3], "float32")
        scale = ops.stack([width, height, width, height])
        return ops.cast(boxes, "float32") * scale

    def compute_output_shape(
        self, input_shapes: Sequence[tuple[int | None, ...]]
    ) -> tuple[int | None, ...]:
        return input_shapes[1]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskPaddedBoxes(keras.layers.Layer):
    """Zeroes the scores of padding boxes (all-zero rows).

    Called as `layer([scores, boxes])` with `scores` `(batch, max_boxes, classes)` and
    `boxes` `(batch, max_boxes, 4)`.

    Example:
        >>> scores = np.ones((1, 2, 3), "float32")
        >>> boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0, 0, 0, 0]]], "float32")
        >>> ops.convert_to_numpy(MaskPaddedBoxes()([scores, boxes])).tolist()
        [[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]
    """

    def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
        scores, boxes = inputs
        valid = ops.any(ops.not_equal(boxes, 0), axis=-1, keepdims=True)
        return scores * ops.cast(valid, scores.dtype)

    def compute_output_shape(
        self, input_shapes: Sequence[tuple[int | None, ...]]
    ) -> tuple[int | None, ...]:
        return input_shapes[0]
