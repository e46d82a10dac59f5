"""Dense features of a video: pooled backbone features of every window.

:func:`feature_model` turns a classifier (or a backbone) into a model giving the global
average of each pathway's res5 output; :func:`extract_features` runs it over a video's
windows (those of :func:`keras_slowfast.streaming.timeline`) into a :class:`Features`.
"""

import dataclasses
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_slowfast import presets
from keras_slowfast.streaming._clip_settings import DEFAULT_READ_TIMEOUT_S, resolve_clip
from keras_slowfast.streaming.scoring import timeline

if TYPE_CHECKING:
    import keras

__all__ = ["Features", "extract_features", "feature_model"]


def feature_model(model: "keras.Model") -> "keras.Model":
    """A model giving a classifier's pooled backbone features (no head).

    The features are the global average over time, height and width of each pathway's
    res5 output, concatenated slow first (2048 + 256 = 2304 for SlowFast R50/R101, 2048
    for Slow R50): the features PySlowFast's head pools before its projection (at the
    training crop this is exactly the projection's input; at the 256-pixel test crop the
    head averages 2x2 overlapping windows, whose mean differs slightly from this global
    mean).

    Args:
        model: a classifier of this package (with its head), or a backbone built with
            `include_top=False` and `pooling=None` (res5 maps) or `pooling="avg"` (then
            returned as it is).

    Returns:
        A `keras.Model` from the same input to float32 `(batch, dim)`.

    Example:
        >>> import keras_slowfast
        >>> net = keras_slowfast.SlowFastR50(width_per_group=8, classes=10)
        >>> feature_model(net).output_shape  # slow 8 * 32 + fast 8 * 4 channels
        (None, 288)
    """
    import keras

    names = {layer.name for layer in model.layers}
    if "head_pathway0_avgpool" in names:
        maps = [model.get_layer("head_pathway0_avgpool").input]
        if "head_pathway1_avgpool" in names:
            maps.append(model.get_layer("head_pathway1_avgpool").input)
    else:
        outputs = model.outputs
        if len(outputs) == 1 and len(outputs[0].shape) == 2:
            return model
        maps = list(outputs)
        if not maps or any(len(m.shape) != 5 for m in maps):
            raise ValueError(
                "`model` must be a classifier of this package or a backbone built with "
                "include_top=False (pooling None or 'avg'). "
                f"Received: model with outputs {[tuple(m.shape) for m in outputs]}"
            )
    pooled = [
        keras.layers.GlobalAveragePooling3D(name=f"features_pathway{p}_pool", dtype="float32")(m)
        for p, m in enumerate(maps)
    ]
    out = (
        pooled[0]
        if len(pooled) == 1
        else keras.layers.Concatenate(name="features_concat", dtype="float32")(pooled)
    )
    return keras.Model(model.inputs, out, name=f"{model.name}_features")


@dataclasses.dataclass(frozen=True, eq=False)
class Features:
    """Pooled backbone features of a video's windows (see :func:`extract_features`).

    Attributes:
        features: float32 `(windows, dim)`.
        times: float64 `(windows,)` window centres in seconds.
        starts: float64 `(windows,)` window starts in seconds.
        ends: float64 `(windows,)` window ends in seconds.
        frame_indices: int64 `(windows, num_frames)` stream frame ordinals of each clip.
        fps: the stream's frame rate.
        total_frames: the decoded frame count.
        num_frames: frames per clip.
        sampling_rate: frame stride at `target_fps`.
        target_fps: the frame rate of `sampling_rate`.
        stride: seconds between windows.
        crop_size: the test crop.

    Example:
        >>> f = Features(np.zeros((2, 4), np.float32), np.array([0.5, 1.5]),
        ...              np.array([0.0, 1.0]), np.array([1.0, 2.0]),
        ...              np.zeros((2, 8), np.int64), 30.0, 60, 8, 8, 30, 1.0, 256)
        >>> f.dim, f.as_dict()["fps"]
        (4, 30.0)
    """

    features: np.ndarray
    times: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    frame_indices: np.ndarray
    fps: float
    total_frames: int
    num_frames: int
    sampling_rate: int
    target_fps: int
    stride: float
    crop_size: int

    @property
    def dim(self) -> int:
        """The feature length.

        Example:
            >>> Features(np.zeros((3, 16), np.float32), *[np.zeros(3)] * 3,
            ...          np.zeros((3, 8), np.int64), 25.0, 75, 8, 8, 30, 1.0, 256).dim
            16
        """
        return int(self.features.shape[1])

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict, in field order.

        Example:
            >>> f = Features(np.zeros((1, 4), np.float32), *[np.zeros(1)] * 3,
            ...              np.zeros((1, 8), np.int64), 30.0, 30, 8, 8, 30, 1.0, 256)
            >>> list(f.as_dict())[:3], f.as_dict()["crop_size"]
            (['features', 'times', 'starts'], 256)
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _preset_feature_model(
    preset: str,
    weights: str | bool | None,
    checkpoint: str | os.PathLike | None,
    model_kwargs: dict[str, Any] | None,
) -> "keras.Model":
    """A preset's backbone built with average pooling, with the weights asked for."""
    from keras_slowfast import hub

    kwargs = dict(model_kwargs or {}, include_top=False, pooling="avg")
    if checkpoint is not None:
        return hub.from_preset(preset, checkpoint=checkpoint, **kwargs)
    if weights is None:
        return hub.from_preset(preset, **kwargs)
    if weights is False or weights in ("", "none", "None"):
        return hub.from_preset(preset, load_weights=False, **kwargs)
    return hub.build(presets.get_preset(preset).name, weights, **kwargs)


def extract_features(
    model_or_preset: "str | keras.Model",
    video: str | os.PathLike,
    *,
    preset: str | None = None,
    weights: str | bool | None = None,
    checkpoint: str | os.PathLike | None = None,
    model_kwargs: dict[str, Any] | None = None,
    window_stride_seconds: float = 1.0,
    batch_size: int = 8,
    num_frames: int | None = None,
    sampling_rate: int | None = None,
    progress: bool = False,
    timeout: float | None = None,
    read_timeout: float = DEFAULT_READ_TIMEOUT_S,
    stats: dict | None = None,
) -> Features:
    """Pooled backbone features of every window of a video (dense features).

    The windows and clips are those of :func:`timeline`; each clip's features are the
    global average of each pathway's res5 output, slow then fast (see
    :func:`feature_model`): 2304 numbers for SlowFast R50/R101, 2048 for Slow R50.

    Args:
        model_or_preset: a preset name or architecture key (the backbone is built with
            `include_top=False, pooling="avg"` and `weights`/`checkpoint`), or a Keras
            model (a classifier of this package, or a backbone; see :func:`feature_model`).
        video: path of the video file or a stream URL.
        preset: with a model, its preset (for the clip settings); default: none, so give
            `num_frames` and `sampling_rate`. Ignored for a preset name.
        weights: for a preset name: `None` (its published weights), `"none"` (random), a
            published weights name or a `.weights.h5` / `.pyth` / `.pkl` path.
        checkpoint: for a preset name: a checkpoint file of the preset.
        model_kwargs: for a preset name: builder overrides (e.g. `width_per_group`).
        window_stride_seconds, batch_size, num_frames, sampling_rate, progress, timeout,
            read_timeout, stats: as for :func:`timeline`.

    Returns:
        A :class:`Features`.

    Example:
        >>> feats = extract_features("slowfast_8x8_r50_kinetics400",
        ...                          "video.mp4")  # doctest: +SKIP
        >>> feats.features.shape, feats.times[:2]  # doctest: +SKIP
        ((10, 2304), array([0.5, 1.5]))
    """
    if isinstance(model_or_preset, str):
        preset = model_or_preset
        net = _preset_feature_model(preset, weights, checkpoint, model_kwargs)
    elif hasattr(model_or_preset, "predict_on_batch"):
        net = feature_model(model_or_preset)
    else:
        raise TypeError(
            "`model_or_preset` must be a preset name or a Keras model. "
            f"Received: model_or_preset={model_or_preset!r}"
        )
    num_frames, sampling_rate, target_fps, size = resolve_clip(
        preset, num_frames, sampling_rate, None
    )
    counters = {} if stats is None else stats
    windows = list(
        timeline(
            net,
            video,
            preset,
            window_stride_seconds=window_stride_seconds,
            num_frames=num_frames,
            sampling_rate=sampling_rate,
            batch_size=batch_size,
            progress=progress,
            timeout=timeout,
            read_timeout=read_timeout,
            stats=counters,
        )
    )
    return Features(
        features=np.stack([w.scores for w in windows]).astype(np.float32),
        times=np.array([w.time for w in windows], np.float64),
        starts=np.array([w.start for w in windows], np.float64),
        ends=np.array([w.end for w in windows], np.float64),
        frame_indices=np.stack([w.frame_indices for w in windows]).astype(np.int64),
        fps=float(counters["fps"]),
        total_frames=int(counters["total_frames"]),
        num_frames=num_frames,
        sampling_rate=sampling_rate,
        target_fps=int(target_fps),
        stride=float(window_stride_seconds),
        crop_size=size,
    )
