"""Frame-index arithmetic shared by the models and the data pipeline (NumPy only).

The slow pathway's frames are taken out of the fast pathway's clip with PyTorch's float32
`linspace`; the model (:class:`keras_slowfast.models.layers.TemporalSubsample`) and the
samplers (:mod:`keras_slowfast.data.sampling`) read the same function from here, so
building a model does not import the data pipeline.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "slow_pathway_indices",
    "torch_linspace",
]


def torch_linspace(start: float, end: float, steps: int) -> np.ndarray:
    """Evenly spaced float32 values computed the way `torch.linspace` does on CPU.

    PyTorch evaluates `linspace` in the output dtype and computes the first
    half of the points forward from `start` (`start + step * i`) and the
    second half backward from `end` (`end - step * (steps - 1 - i)`), with
    `step = (end - start) / (steps - 1)` rounded to float32 and each point a
    fused multiply-add rounded once to float32. The last bits of
    the result therefore differ from a float64 `numpy.linspace`, which is
    enough to move `trunc` by one frame (e.g. point 27 of
    `torch_linspace(0, 511, 64)` is 218.99998, not 219).

    Args:
        start: first value (rounded to float32).
        end: last value (rounded to float32).
        steps: number of points, `>= 1`.

    Returns:
        A float32 array of shape `(steps,)`.

    Example:

    >>> torch_linspace(0, 63, 4)
    array([ 0., 21., 42., 63.], dtype=float32)
    """
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1. Received: steps={steps}")
    start32 = np.float32(start)
    end32 = np.float32(end)
    if steps == 1:
        return np.array([start32], dtype=np.float32)
    step = np.float32(end32 - start32) / np.float32(steps - 1)
    i = np.arange(steps)
    # ATen's vectorised kernel evaluates `start + step * i` as one fused multiply-add (one
    # rounding to float32); the float64 product of a float32 and a small integer is exact,
    # so computing in float64 and rounding once reproduces it (checked against torch 2.13).
    step64 = np.float64(step)
    forward = np.float64(start32) + step64 * i
    backward = np.float64(end32) - step64 * (steps - 1 - i)
    return np.where(i < steps // 2, forward, backward).astype(np.float32)


def slow_pathway_indices(num_frames: int, alpha: int) -> np.ndarray:
    """Fast-pathway frame indices that PySlowFast feeds to the slow pathway.

    `trunc(linspace(0, num_frames - 1, num_frames // alpha))` in torch's
    float32 semantics (for 32 frames and alpha 4 this ends at 31, where a
    purely forward float32 linspace would give 30).

    Args:
        num_frames: number of fast-pathway frames.
        alpha: temporal stride ratio between the pathways.

    Returns:
        An int64 array of shape `(num_frames // alpha,)`.

    Example:

    >>> slow_pathway_indices(32, 4).tolist()
    [0, 4, 8, 13, 17, 22, 26, 31]
    """
    if alpha < 1 or num_frames // alpha < 1:
        raise ValueError(
            "`alpha` must be between 1 and `num_frames`. "
            f"Received: alpha={alpha}, num_frames={num_frames}"
        )
    return np.trunc(torch_linspace(0, num_frames - 1, num_frames // alpha)).astype(np.int64)
