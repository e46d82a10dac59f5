"""Classifying a video file with a preset's published test protocol.

The protocol comes from the presets table: for Kinetics, 10 uniformly spaced temporal
clips x 3 spatial crops of 256x256 (short side resized to 256, crops at the start, centre
and end of the long side); the per-view scores are combined as the preset says (`sum`,
divided by the number of views so that they stay probabilities, or `max`).
`views=1` is a quick single view: the temporally centred clip (PySlowFast's uniform view
1 of 2) and the centre crop.

Decoding and frame sampling are those of :mod:`keras_slowfast.data` (PyAV, PySlowFast's
exact frame indices).
"""

import numpy as np

from keras_slowfast import presets
from keras_slowfast.data.transforms import resize_short_side, uniform_crop_offset
from keras_slowfast.data.video import read_clip, read_test_views
from keras_slowfast.detect import detect_actions

__all__ = ["classify_video", "describe_protocol", "detect_actions", "video_views"]


def _crop(frames, size, spatial_index):
    y, x = uniform_crop_offset(frames.shape[-3], frames.shape[-2], size, spatial_index)
    return frames[..., y : y + size, x : x + size, :]


def video_views(
    video, num_frames, sampling_rate, views=30, size=256, temporal_views=10, spatial_crops=3
):
    """Yields the test views of a video as uint8 arrays `(crops, num_frames, size, size, 3)`.

    With `views=temporal_views * spatial_crops` there are `temporal_views` items (one per
    temporal clip, PySlowFast's uniform test clips) of `spatial_crops` crops each (3: start,
    centre and end of the long side; 1: the centre); with `views=1`, one item with the
    centre crop of the centred clip.

    Args:
        video: path of the video file.
        num_frames: frames per clip.
        sampling_rate: frame stride at 30 fps.
        views: `1` or `temporal_views * spatial_crops`.
        size: short side after resizing, and crop size.
        temporal_views: clips per video.
        spatial_crops: `1` or `3` crops per clip.

    Example:
        >>> import os
        >>> video = os.path.join(os.path.dirname(__file__), "..", "examples", "data",
        ...                      "sample.mp4")  # the repository's 10 s, 30 fps, 340x256 video
        >>> next(video_views(video, 32, 2)).shape
        (3, 32, 256, 256, 3)
    """
    if spatial_crops not in (1, 3):
        raise ValueError(
            f"`spatial_crops` must be 1 or 3. Received: spatial_crops={spatial_crops!r}"
        )
    if views not in (1, temporal_views * spatial_crops):
        raise ValueError(
            f"`views` must be 1 or {temporal_views * spatial_crops} "
            f"({temporal_views} clips x {spatial_crops} crops). Received: views={views!r}"
        )
    if views == 1:
        clip = read_clip(video, num_frames, sampling_rate, view_index=1, num_views=2)
        yield _crop(resize_short_side(clip, size), size, 1)[None]
        return
    frames, table = read_test_views(
        video,
        num_frames,
        sampling_rate,
        num_views=temporal_views,
        convert=lambda frame: resize_short_side(frame, size),
    )
    crops = (1,) if spatial_crops == 1 else (0, 1, 2)
    for t in range(temporal_views):
        clip = frames[table[t]]
        yield np.stack([_crop(clip, size, k) for k in crops])


def describe_protocol(preset, views=None):
    """A one-line description of the test protocol `classify_video` uses for `preset`.

    Example:
        >>> describe_protocol("slowfast_8x8_r50_kinetics400")
        '32 frames every 2, 30 views (10 clips x 3 crops), sum'
        >>> describe_protocol("slowfast_8x8_r50_kinetics400", views=1)
        '32 frames every 2, 1 view (centre clip, centre crop)'
    """
    proto = presets.get_preset(preset, kind=presets.CLASSIFIER).protocol
    head = f"{proto.num_frames} frames every {proto.sampling_rate}"
    if views == 1:
        return f"{head}, 1 view (centre clip, centre crop)"
    return (
        f"{head}, {proto.views} views ({proto.temporal_views} clips x {proto.spatial_crops} "
        f"crops), {proto.ensemble}"
    )


def classify_video(
    model, video, preset=None, views=None, num_frames=None, sampling_rate=None, batch_size=None
):
    """Scores a video with a classifier over its preset's test views.

    Args:
        model: a classifier taking uint8 RGB clips (`include_preprocessing=True`) and
            returning probabilities.
        video: path of the video file.
        preset: the model's preset name or architecture key: fixes the clip (frames,
            sampling rate), the views and how their scores combine. Without it give
            `num_frames` and `sampling_rate` (then 10 clips x 3 crops, summed).
        views: `None` (the preset's protocol: 30 for Kinetics) or `1` (centre view).
        num_frames: frames per clip (default: the preset's).
        sampling_rate: frame stride at 30 fps (default: the preset's).
        batch_size: views per model call; `None` (the default) calls the model once per
            temporal clip, i.e. with its spatial crops (1 view for `views=1`). The scores
            do not depend on it; a larger batch trades memory for speed.

    Returns:
        A float32 array `(classes,)`: with the `sum` ensemble, the per-view scores summed
        and divided by the number of views; with `max`, their maximum.

    Example:
        >>> model = keras_slowfast.SlowFastR50(weights="k400")  # doctest: +SKIP
        >>> probs = classify_video(model, "video.mp4", "slowfast_8x8_r50")  # doctest: +SKIP
        >>> keras_slowfast.decode_predictions(probs[None], top=3)  # doctest: +SKIP
    """
    if preset is not None:
        proto = presets.get_preset(preset, kind=presets.CLASSIFIER).protocol
    else:
        proto = None
    if proto is not None and proto.sampling != "uniform":
        raise ValueError(
            f"classify_video samples uniform clips; the preset {preset!r} uses "
            f"{proto.sampling!r} sampling. Received: preset={preset!r}"
        )
    num_frames = num_frames or (proto.num_frames if proto else None)
    sampling_rate = sampling_rate or (proto.sampling_rate if proto else None)
    if num_frames is None or sampling_rate is None:
        raise ValueError(
            "Give `preset` or both `num_frames` and `sampling_rate`. "
            f"Received: preset={preset!r}, num_frames={num_frames!r}, "
            f"sampling_rate={sampling_rate!r}"
        )
    temporal, crops = (proto.temporal_views, proto.spatial_crops) if proto else (10, 3)
    ensemble = proto.ensemble if proto else "sum"
    size = proto.test_crop_size if proto else 256
    if views is None:
        views = temporal * crops
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(
            f"`batch_size` must be None or a positive integer. Received: batch_size={batch_size!r}"
        )
    groups = video_views(
        video,
        num_frames,
        sampling_rate,
        views=views,
        size=size,
        temporal_views=temporal,
        spatial_crops=crops,
    )
    total = None
    count = 0
    for batch in _batched(groups, batch_size):
        probs = np.asarray(model.predict_on_batch(batch), dtype=np.float64)
        if ensemble == "max":
            top = probs.max(axis=0)
            total = top if total is None else np.maximum(total, top)
        else:
            total = probs.sum(axis=0) if total is None else total + probs.sum(axis=0)
        count += len(batch)
    if ensemble == "max":
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
