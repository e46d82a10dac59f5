"""Classifying a video file with a preset's published test protocol.

The protocol comes from the presets table (:class:`keras_slowfast.presets.Protocol`):

- Kinetics and Charades (`sampling="uniform"`): 10 uniformly spaced temporal clips of
  `num_frames` frames every `sampling_rate` frames at 30 fps (PySlowFast's exact frame
  indices, :mod:`keras_slowfast.data.video`);
- Something-Something v2 (`sampling="segment"`): one clip of `num_frames` frames, the
  middle frame of each of `num_frames` equal segments of the whole video resampled to
  30 fps (:func:`keras_slowfast.data.sampling.segment_indices`, with the frames of
  :func:`keras_slowfast.data.read_frames_at_fps`).

Each clip's short side is resized to the protocol's test crop size and the crops named by
`crop_indices` are taken along the long side (0 start, 1 centre, 2 end): 3 crops for
Kinetics and Charades, the start crop alone for PySlowFast's SSv2 networks. The per-view
scores combine as the preset says: `sum` (divided by the number of views so that they stay
probabilities) or `max` (Charades: the elementwise maximum of the sigmoid scores).
`views=1` is a quick single view: the temporally centred clip (PySlowFast's uniform view
1 of 2; the segment clip for SSv2) and the centre crop; for a protocol of one view
(PySlowFast's SSv2 networks) it is that view.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from keras_slowfast import presets
from keras_slowfast._checks import check_positive_int
from keras_slowfast.data.ava_video import count_frames_at_fps, read_frames_at_fps
from keras_slowfast.data.sampling import segment_indices
from keras_slowfast.data.transforms import resize_short_side, uniform_crop_offset
from keras_slowfast.data.video import VideoReadError, read_clip, read_test_views
from keras_slowfast.detect import detect_actions
from keras_slowfast.streaming import (
    Features,
    Window,
    extract_features,
    feature_model,
    timeline,
    window_clips,
    window_frame_indices,
)

if TYPE_CHECKING:
    import keras

__all__ = [
    "Features",
    "Window",
    "classify_video",
    "describe_protocol",
    "detect_actions",
    "extract_features",
    "feature_model",
    "segment_clip",
    "timeline",
    "video_views",
    "window_clips",
    "window_frame_indices",
]

_SAMPLINGS = ("uniform", "segment")
_CROP_NAMES = {0: "start", 1: "centre", 2: "end"}


def _crop(frames, size, spatial_index):
    y, x = uniform_crop_offset(frames.shape[-3], frames.shape[-2], size, spatial_index)
    return frames[..., y : y + size, x : x + size, :]


def _check_crop_indices(crop_indices, spatial_crops):
    if crop_indices is None:
        if spatial_crops not in (1, 3):
            raise ValueError(
                f"`spatial_crops` must be 1 or 3. Received: spatial_crops={spatial_crops!r}"
            )
        return (1,) if spatial_crops == 1 else (0, 1, 2)
    try:
        crops = tuple(crop_indices)
    except TypeError:
        crops = ()
    if not crops or any(
        isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k not in (0, 1, 2)
        for k in crops
    ):
        raise ValueError(
            "`crop_indices` must be a non-empty sequence of crop indices 0 (start of the long "
            f"side), 1 (centre) or 2 (end). Received: crop_indices={crop_indices!r}"
        )
    return tuple(int(k) for k in crops)


def segment_clip(
    video: str | os.PathLike, num_frames: int, target_fps: float = 30
) -> tuple[np.ndarray, np.ndarray]:
    """The SSv2 test clip of a video: the middle frame of each of `num_frames` segments.

    The video is resampled to `target_fps` (the frame count and frames of
    :func:`keras_slowfast.data.count_frames_at_fps` and
    :func:`keras_slowfast.data.read_frames_at_fps`, FFmpeg's `fps` filter rule, i.e. the
    frames `ffmpeg -r 30` extracts) and the frame indices are
    :func:`keras_slowfast.data.sampling.segment_indices` of its frame count.

    Args:
        video: path of the video file.
        num_frames: frames (segments) per clip.
        target_fps: the frame rate the video is resampled to.

    Returns:
        `(frames, indices)`: uint8 RGB frames `(num_frames, height, width, 3)` at their
        decoded size and the int64 indices into the resampled video.

    Example:
        >>> frames, indices = segment_clip("video.mp4", 64)  # doctest: +SKIP
        >>> frames.shape, indices[:3].tolist()  # doctest: +SKIP
        ((64, 256, 340, 3), [2, 7, 11])
    """
    length = count_frames_at_fps(video, target_fps)
    if length < 1:
        raise VideoReadError(video, f"no frame at {target_fps} fps")
    indices = segment_indices(length, num_frames, mode="test")
    return read_frames_at_fps(video, indices, fps=target_fps), indices


def video_views(
    video: str | os.PathLike,
    num_frames: int,
    sampling_rate: int,
    views: int = 30,
    size: int = 256,
    temporal_views: int = 10,
    spatial_crops: int = 3,
    *,
    crop_indices: Sequence[int] | None = None,
    sampling: str = "uniform",
    target_fps: float = 30,
) -> Iterator[np.ndarray]:
    """Yields the test views of a video as uint8 arrays `(crops, num_frames, size, size, 3)`.

    With `views=temporal_views * len(crops)` there are `temporal_views` items (one per
    temporal clip) of one array per crop. `sampling="uniform"` takes PySlowFast's uniform
    test clips (Kinetics); `"segment"` takes the one SSv2 clip (:func:`segment_clip`),
    repeated for each temporal view as PySlowFast's SSv2 loader does (its test frames do
    not depend on the temporal view). With `views=1`, one item: the centre crop of the
    centred clip (of the segment clip for `"segment"`), unless the protocol itself is one
    view (`temporal_views=1` and one crop index), which `views=1` then means.

    Args:
        video: path of the video file.
        num_frames: frames per clip.
        sampling_rate: frame stride at `target_fps` (unused by `"segment"` sampling).
        views: `1` or `temporal_views * len(crops)`.
        size: short side after resizing, and crop size.
        temporal_views: clips per video.
        spatial_crops: `1` (the centre) or `3` (start, centre and end of the long side)
            crops per clip, when `crop_indices` is not given.
        crop_indices: the crops of each clip along the long side (0 start, 1 centre,
            2 end), e.g. `(0,)` for PySlowFast's SSv2 test crop; overrides `spatial_crops`.
        sampling: `"uniform"` or `"segment"`.
        target_fps: the frame rate `sampling_rate` refers to (uniform) or the video is
            resampled to (segment).

    Example:
        >>> import os
        >>> video = os.path.join(os.path.dirname(__file__), "..", "examples", "data",
        ...                      "sample.mp4")  # the repository's 10 s, 30 fps, 340x256 video
        >>> next(video_views(video, 32, 2)).shape
        (3, 32, 256, 256, 3)
        >>> next(video_views("video.mp4", 64, 1, views=1, temporal_views=1,
        ...                  crop_indices=(0,), sampling="segment")).shape  # doctest: +SKIP
        (1, 64, 256, 256, 3)
    """
    if sampling not in _SAMPLINGS:
        raise ValueError(f"`sampling` must be one of {_SAMPLINGS}. Received: sampling={sampling!r}")
    crops = _check_crop_indices(crop_indices, spatial_crops)
    total = temporal_views * len(crops)
    if views not in (1, total):
        allowed = "1" if total == 1 else f"1 or {total}"
        raise ValueError(
            f"`views` must be {allowed} ({temporal_views} temporal x {len(crops)} spatial). "
            f"Received: views={views!r}"
        )
    # A one-view protocol (PySlowFast's SSv2: the start crop) is its own `views=1`.
    quick = views == 1 and total != 1
    if sampling == "segment":
        frames, _ = segment_clip(video, num_frames, target_fps)
        clip = resize_short_side(frames, size)
        if quick:
            yield _crop(clip, size, 1)[None]
            return
        group = np.stack([_crop(clip, size, k) for k in crops])
        for _ in range(temporal_views):
            yield group
        return
    if quick:
        clip = read_clip(
            video, num_frames, sampling_rate, view_index=1, num_views=2, target_fps=target_fps
        )
        yield _crop(resize_short_side(clip, size), size, 1)[None]
        return
    frames, table = read_test_views(
        video,
        num_frames,
        sampling_rate,
        num_views=temporal_views,
        target_fps=target_fps,
        convert=lambda frame: resize_short_side(frame, size),
    )
    for t in range(temporal_views):
        clip = frames[table[t]]
        yield np.stack([_crop(clip, size, k) for k in crops])


def describe_protocol(preset: str, views: int | None = None) -> str:
    """A one-line description of the test protocol `classify_video` uses for `preset`.

    Example:
        >>> describe_protocol("slowfast_8x8_r50_kinetics400")
        '32 frames every 2, 30 views (10 clips x 3 crops), sum'
        >>> describe_protocol("slowfast_8x8_r50_kinetics400", views=1)
        '32 frames every 2, 1 view (centre clip, centre crop)'
        >>> describe_protocol("slowfast_16x8_r50_ssv2")
        '64 frames by segment sampling at 30 fps, 1 view (1 clip x start crop), sum'
        >>> describe_protocol("slow_8x8_r50_ssv2_ptv", views=1)
        '8 frames by segment sampling at 30 fps, 1 view (segment clip, centre crop)'
        >>> describe_protocol("slowfast_16x8_r50_charades")
        '64 frames every 2, 30 views (10 clips x 3 crops), max'
    """
    proto = presets.get_preset(preset, kind=presets.CLASSIFIER).protocol
    if proto.sampling == "segment":
        head = f"{proto.num_frames} frames by segment sampling at {proto.target_fps} fps"
        clip = "segment clip"
    else:
        head = f"{proto.num_frames} frames every {proto.sampling_rate}"
        clip = "centre clip"
    if views == 1 and proto.views != 1:
        return f"{head}, 1 view ({clip}, centre crop)"
    if proto.spatial_crops == 1:
        crops = f"{_CROP_NAMES[proto.crop_indices[0]]} crop"
    else:
        crops = f"{proto.spatial_crops} crops"
    clips = "clip" if proto.temporal_views == 1 else "clips"
    view_word = "view" if proto.views == 1 else "views"
    return (
        f"{head}, {proto.views} {view_word} ({proto.temporal_views} {clips} x {crops}), "
        f"{proto.ensemble}"
    )


def classify_video(
    model: keras.Model,
    video: str | os.PathLike,
    preset: str | None = None,
    views: int | None = None,
    num_frames: int | None = None,
    sampling_rate: int | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Scores a video with a classifier over its preset's test views.

    Args:
        model: a classifier taking uint8 RGB clips (`include_preprocessing=True`) and
            returning probabilities (softmax, or sigmoid for multi-label presets).
        video: path of the video file.
        preset: the model's preset name or architecture key: fixes the clip (frames,
            sampling rate or segments, fps), the test crop size and crops, the views and
            how their scores combine. Without it give `num_frames` and `sampling_rate`
            (then 10 uniform clips x 3 crops of 256, summed).
        views: `None` (the preset's protocol: 30 for Kinetics and Charades, 1 for
            PySlowFast's SSv2 networks) or `1` (the quick centre view: the centred clip,
            or the segment clip, and the centre crop; a one-view protocol's own view).
        num_frames: frames per clip (default: the preset's).
        sampling_rate: frame stride at 30 fps (default: the preset's; unused by segment
            sampling).
        batch_size: views per model call; `None` (the default) calls the model once per
            temporal clip, i.e. with its spatial crops (1 view for `views=1`). The scores
            do not depend on it; a larger batch trades memory for speed.

    Returns:
        A float32 array `(classes,)`: with the `sum` ensemble, the per-view scores summed
        and divided by the number of views; with `max`, their elementwise maximum.

    Example:
        >>> model = keras_slowfast.SlowFastR50(weights="k400")  # doctest: +SKIP
        >>> probs = classify_video(model, "video.mp4", "slowfast_8x8_r50")  # doctest: +SKIP
        >>> keras_slowfast.decode_predictions(probs[None], top=3)  # doctest: +SKIP
    """
    if preset is not None:
        proto = presets.get_preset(preset, kind=presets.CLASSIFIER).protocol
    else:
        proto = presets.Protocol(num_frames=num_frames or 0, sampling_rate=sampling_rate or 0)
    num_frames = num_frames or proto.num_frames
    sampling_rate = sampling_rate or proto.sampling_rate
    if not num_frames or not sampling_rate:
        raise ValueError(
            "Give `preset` or both `num_frames` and `sampling_rate`. "
            f"Received: preset={preset!r}, num_frames={num_frames!r}, "
            f"sampling_rate={sampling_rate!r}"
        )
    if views is None:
        views = proto.views
    batch_size = check_positive_int("batch_size", batch_size, allow_none=True)
    groups = video_views(
        video,
        num_frames,
        sampling_rate,
        views=views,
        size=proto.test_crop_size,
        temporal_views=proto.temporal_views,
        crop_indices=proto.crop_indices,
        sampling=proto.sampling,
        target_fps=proto.target_fps,
    )
    total = None
    count = 0
    for batch in _batched(groups, batch_size):
        probs = np.asarray(model.predict_on_batch(batch), dtype=np.float64)
        if proto.ensemble == "max":
            top = probs.max(axis=0)
            total = top if total is None else np.maximum(total, top)
        else:
            total = probs.sum(axis=0) if total is None else total + probs.sum(axis=0)
        count += len(batch)
    if proto.ensemble == "max":
        return total.astype(np.float32)
    return (total / count).astype(np.float32)


def _batched(groups, batch_size):
    """Regroups arrays of views into batches of `batch_size` views (`None`: as given)."""
    if batch_size is None:
        yield from groups
        return
    pending = []
    size = 0
    for group in groups:
        pending.append(group)
        size += len(group)
        while size >= batch_size:
            views = np.concatenate(pending)
            yield views[:batch_size]
            rest = views[batch_size:]
            pending = [rest] if len(rest) else []
            size = len(rest)
    if size:
        yield np.concatenate(pending)
