"""Classifying a video file with PySlowFast's test protocol.

`views=30` is the published protocol: 10 uniformly spaced temporal clips x 3 spatial
crops of 256x256 (short side resized to 256, crops at the start, centre and end of the
long side); the per-view softmax scores are summed, as PySlowFast does, and divided by
the number of views so that they stay probabilities (the ranking is the same).
`views=1` is a quick single view: the temporally centred clip (PySlowFast's uniform view
1 of 2) and the centre crop.

Decoding and frame sampling are those of :mod:`keras_slowfast.data` (PyAV, PySlowFast's
exact frame indices).
"""

import numpy as np

from keras_slowfast.data.transforms import resize_short_side, uniform_crop_offset
from keras_slowfast.data.video import read_clip, read_test_views
from keras_slowfast.detect import detect_actions
from keras_slowfast.models.variants import VARIANTS, clip_sampling

__all__ = ["SAMPLING", "classify_video", "detect_actions", "sampling_for", "video_views"]

#: `(num_frames, sampling_rate)` of each classifier variant (PySlowFast's DATA settings).
SAMPLING = {
    name: clip_sampling(name) for name, spec in VARIANTS.items() if spec["kind"] == "classifier"
}

_VIEWS = (1, 30)
_TEMPORAL_VIEWS = 10
_SPATIAL_CROPS = 3


def sampling_for(variant):
    """`(num_frames, sampling_rate)` of a classifier variant.

    Example:
        >>> sampling_for("slow_8x8_r50")
        (8, 8)
    """
    if variant not in SAMPLING:
        raise ValueError(
            f"`variant` must be a classifier variant, one of {sorted(SAMPLING)}. "
            f"Received: variant={variant!r}"
        )
    return SAMPLING[variant]


def _crop(frames, size, spatial_index):
    y, x = uniform_crop_offset(frames.shape[-3], frames.shape[-2], size, spatial_index)
    return frames[..., y : y + size, x : x + size, :]


def video_views(video, num_frames, sampling_rate, views=30, size=256):
    """Yields the test views of a video as uint8 arrays `(crops, num_frames, size, size, 3)`.

    With `views=30` there are 10 items (one per temporal clip) of 3 spatial crops each;
    with `views=1`, one item with the centre crop of the centred clip.

    Args:
        video: path of the video file.
        num_frames: frames per clip.
        sampling_rate: frame stride at 30 fps.
        views: `1` or `30`.
        size: short side after resizing, and crop size.

    Example:
        >>> next(video_views("video.mp4", 32, 2)).shape  # doctest: +SKIP
        (3, 32, 256, 256, 3)
    """
    if views not in _VIEWS:
        raise ValueError(f"`views` must be 1 or 30. Received: views={views!r}")
    if views == 1:
        clip = read_clip(video, num_frames, sampling_rate, view_index=1, num_views=2)
        yield _crop(resize_short_side(clip, size), size, 1)[None]
        return
    frames, table = read_test_views(
        video,
        num_frames,
        sampling_rate,
        num_views=_TEMPORAL_VIEWS,
        convert=lambda frame: resize_short_side(frame, size),
    )
    for t in range(_TEMPORAL_VIEWS):
        clip = frames[table[t]]
        yield np.stack([_crop(clip, size, k) for k in range(_SPATIAL_CROPS)])


def classify_video(
    model, video, variant=None, views=30, num_frames=None, sampling_rate=None, batch_size=None
):
    """Scores a video with a classifier: mean softmax probabilities over the test views.

    Args:
        model: a classifier taking uint8 RGB clips (`include_preprocessing=True`) and
            returning probabilities.
        video: path of the video file.
        variant: the model's variant key, which fixes `num_frames` and `sampling_rate`
            (see :data:`SAMPLING`); or give those two.
        views: `30` (10 clips x 3 crops, PySlowFast's protocol) or `1` (centre view).
        num_frames: frames per clip (default: the variant's).
        sampling_rate: frame stride at 30 fps (default: the variant's).
        batch_size: views per model call; `None` (the default) calls the model once per
            temporal clip, i.e. with its 3 spatial crops (1 view for `views=1`). The scores
            do not depend on it; a larger batch trades memory for speed.

    Returns:
        A float32 array `(classes,)`: the per-view probabilities summed over the views and
        divided by their number.

    Example:
        >>> model = keras_slowfast.SlowFastR50(weights="k400")  # doctest: +SKIP
        >>> probs = classify_video(model, "video.mp4", "slowfast_8x8_r50")  # doctest: +SKIP
        >>> keras_slowfast.decode_predictions(probs[None], top=3)  # doctest: +SKIP
    """
    if variant is not None:
        default_frames, default_rate = sampling_for(variant)
        num_frames = num_frames or default_frames
        sampling_rate = sampling_rate or default_rate
    if num_frames is None or sampling_rate is None:
        raise ValueError(
            "Give `variant` or both `num_frames` and `sampling_rate`. "
            f"Received: variant={variant!r}, num_frames={num_frames!r}, "
            f"sampling_rate={sampling_rate!r}"
        )
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(
            f"`batch_size` must be None or a positive integer. Received: batch_size={batch_size!r}"
        )
    total = None
    count = 0
    for batch in _batched(video_views(video, num_frames, sampling_rate, views=views), batch_size):
        probs = np.asarray(model.predict_on_batch(batch), dtype=np.float64)
        total = probs.sum(axis=0) if total is None else total + probs.sum(axis=0)
        count += len(batch)
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
