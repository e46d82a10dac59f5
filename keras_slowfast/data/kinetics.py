"""Kinetics-style `tf.data` pipelines over video files (PyAV decoding).

Train and val clips are sampled at random (temporal position, short-side
jitter, crop, flip) as in PySlowFast; test mode yields every
`num_temporal_views x num_spatial_crops` view of every video, decoding each
video once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from keras_slowfast._checks import check_positive_int
from keras_slowfast.data import transforms
from keras_slowfast.data import video as video_lib
from keras_slowfast.data._loading import (
    DECODE_GATE,
    as_read_error,
    check_mode,
    check_on_error,
    drop_last,
    last_is_ok,
    report_failure,
)

__all__ = [
    "kinetics_dataset",
    "read_video_list",
]


# Seed used for validation clips when none is given, so that every
# evaluation sees the same clips.
_DEFAULT_VAL_SEED = 0


def read_video_list(
    list_file: str | os.PathLike | Iterable[tuple[str | os.PathLike, int | str]],
    path_prefix: str | os.PathLike = "",
) -> tuple[list[str], list[int]]:
    """Reads a PySlowFast list file: one `path label` per line.

    The label is the last whitespace-separated field (a 0-based class index);
    everything before it is the path, joined to `path_prefix`. Blank lines are
    ignored.

    Args:
        list_file: path of the list file, or a sequence of `(path, label)` pairs.
        path_prefix: folder prepended to every relative path.

    Returns:
        `(paths, labels)`: a list of str and a list of int.

    Example:

    >>> read_video_list([("a.mp4", 3), ("b.mp4", 0)], path_prefix="videos")
    (['videos/a.mp4', 'videos/b.mp4'], [3, 0])
    """
    if isinstance(list_file, (str, os.PathLike)):
        list_path = os.fspath(list_file)
        if not os.path.isfile(list_path):
            raise ValueError(f"List file not found. Received: list_file={list_path!r}")
        entries = []
        with open(list_path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                line = line.strip()
                if not line:
                    continue
                fields = line.rsplit(maxsplit=1)
                if len(fields) != 2:
                    raise ValueError(
                        f"Line {number} of {list_path!r} is not `path label`. "
                        f"Received: line={line!r}"
                    )
                entries.append((fields[0], fields[1]))
    else:
        entries = list(list_file)
    paths, labels = [], []
    for path, label in entries:
        try:
            label = int(label)
        except (TypeError, ValueError):
            raise ValueError(
                f"Labels must be integer class indices. Received: label={label!r} for {path!r}"
            ) from None
        if label < 0:
            raise ValueError(f"Labels must be >= 0. Received: label={label} for {path!r}")
        paths.append(os.path.join(path_prefix, os.fspath(path)) if path_prefix else os.fspath(path))
        labels.append(label)
    if not paths:
        raise ValueError(f"The video list is empty. Received: list_file={list_file!r}")
    return paths, labels


class ClipSettings:
    """Validated sampling settings shared by the video and TFRecord pipelines (keyword-only)."""

    def __init__(
        self,
        *,
        mode,
        num_frames,
        sampling_rate,
        target_fps,
        jitter_scales,
        crop_size,
        num_temporal_views,
        num_spatial_crops,
        batch_size,
        shuffle,
        seed,
        deterministic,
        drop_remainder,
        random_flip,
        on_error,
    ):
        check_mode(mode)
        for name, value in (
            ("num_frames", num_frames),
            ("sampling_rate", sampling_rate),
            ("num_temporal_views", num_temporal_views),
        ):
            check_positive_int(name, value)
        if num_spatial_crops not in (1, 3):
            raise ValueError(
                "`num_spatial_crops` must be 1 or 3. "
                f"Received: num_spatial_crops={num_spatial_crops!r}"
            )
        if (
            isinstance(target_fps, bool)
            or not isinstance(target_fps, (int, float))
            or target_fps <= 0
        ):
            raise ValueError(f"`target_fps` must be positive. Received: target_fps={target_fps!r}")
        if crop_size is None:
            crop_size = 256 if mode == "test" else 224
        check_positive_int("crop_size", crop_size)
        try:
            min_scale, max_scale = (int(s) for s in jitter_scales)
        except (TypeError, ValueError):
            raise ValueError(
                "`jitter_scales` must be a pair of integers (min, max). "
                f"Received: jitter_scales={jitter_scales!r}"
            ) from None
        if mode != "test" and not crop_size <= min_scale <= max_scale:
            raise ValueError(
                "`jitter_scales` must satisfy crop_size <= min <= max. "
                f"Received: jitter_scales={tuple(jitter_scales)!r}, crop_size={crop_size}"
            )
        if batch_size is None:
            batch_size = 8 if mode == "test" else 64
        check_positive_int("batch_size", batch_size)
        check_on_error(on_error)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"`seed` must be an int or None. Received: seed={seed!r}")
        self.mode = mode
        self.num_frames = int(num_frames)
        self.sampling_rate = int(sampling_rate)
        self.target_fps = target_fps
        self.min_scale, self.max_scale = min_scale, max_scale
        self.crop_size = int(crop_size)
        self.num_temporal_views = int(num_temporal_views)
        self.num_spatial_crops = int(num_spatial_crops)
        self.batch_size = int(batch_size)
        self.shuffle = (mode == "train") if shuffle is None else bool(shuffle)
        self.random_flip = bool(random_flip)
        self.on_error = on_error
        # Validation clips are random as in PySlowFast, but repeatable by default.
        if seed is None and mode == "val":
            seed = _DEFAULT_VAL_SEED
        self.seed = None if seed is None else int(seed)
        self.rerandomize = mode == "train"
        if deterministic is None:
            deterministic = mode != "train" or seed is not None
        self.deterministic = bool(deterministic)
        self.drop_remainder = (mode == "train") if drop_remainder is None else bool(drop_remainder)

    @property
    def num_views(self):
        return self.num_temporal_views * self.num_spatial_crops

    def spatial_index(self, view):
        """Spatial crop of a test view (`view = temporal * crops + spatial`)."""
        if self.num_spatial_crops == 1:
            return tf.constant(1, tf.int64)  # the centre crop
        return view % self.num_spatial_crops

    def element_seeds(self):
        """A dataset of per-element int64 seeds (deterministic when `seed` is set)."""
        return tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=self.rerandomize)

    def shuffle_seed(self):
        return self.seed


def cut_test_views(frames, table, label, video_index, settings):
    """Dataset of the test views of one video: `(clip, label, video_index, view_index)`.

    `frames` are the video's unique frames (short side already resized),
    `table[t]` the frames of temporal view `t`.
    """
    num_views = settings.num_views

    def cut(view):
        temporal = view // settings.num_spatial_crops
        clip = tf.gather(frames, tf.gather(table, temporal))
        clip = transforms.uniform_crop_tf(clip, settings.crop_size, settings.spatial_index(view))
        clip = tf.ensure_shape(
            clip, [settings.num_frames, settings.crop_size, settings.crop_size, 3]
        )
        return clip, label, video_index, tf.cast(view, tf.int32)

    return tf.data.Dataset.range(num_views).map(cut)


def finish(ds, settings):
    ds = ds.batch(settings.batch_size, drop_remainder=settings.drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def kinetics_dataset(
    list_file: str | os.PathLike | Iterable[tuple[str | os.PathLike, int | str]],
    mode: str = "train",
    *,
    path_prefix: str | os.PathLike = "",
    num_frames: int = 8,
    sampling_rate: int = 8,
    target_fps: float = 30,
    jitter_scales: Sequence[int] = (256, 320),
    crop_size: int | None = None,
    num_temporal_views: int = 10,
    num_spatial_crops: int = 3,
    batch_size: int | None = None,
    shuffle: bool | None = None,
    seed: int | None = None,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    deterministic: bool | None = None,
    drop_remainder: bool | None = None,
    random_flip: bool = True,
    decode_threads: int = 1,
    on_error: str = "skip",
    error_counter: video_lib.DecodeErrorCounter | None = None,
    timeout: float = 300.0,
) -> tf.data.Dataset:
    """Kinetics-style dataset of uint8 clips decoded from video files with PyAV.

    The frames are those PySlowFast's model-zoo PyAV path picks: the clip
    spans `sampling_rate * num_frames * fps / target_fps` source frames,
    located by timestamps, sampled with a float32 linspace. Clips stay uint8
    `(num_frames, H, W, 3)` (the model normalises and extracts the slow
    pathway itself).

    * `"train"`: random temporal position, short side resized to
      `round(uniform(*jitter_scales))`, random `crop_size` crop, random flip;
      shuffled; yields `(clips, labels)`; drops the last partial batch.
    * `"val"`: sampled like train (as PySlowFast does), not shuffled, with a
      fixed seed by default so that every evaluation sees the same clips.
    * `"test"`: for each video, `num_temporal_views` uniform temporal views
      times `num_spatial_crops` crops (short side resized to `crop_size`,
      crops along the long side); the video is decoded once; yields
      `(clips, labels, video_index, view_index)` with
      `view_index = temporal * num_spatial_crops + spatial`.

    Args:
        list_file: PySlowFast list file (`path label` per line) or a sequence
            of `(path, label)` pairs.
        mode: `"train"`, `"val"` or `"test"`.
        path_prefix: folder prepended to the listed paths.
        num_frames: frames per clip (fast pathway).
        sampling_rate: frame stride at `target_fps`.
        target_fps: frame rate the sampling rate refers to.
        jitter_scales: `(min, max)` short side for train/val.
        crop_size: crop side; defaults to 224 (train/val) or 256 (test).
        num_temporal_views: test views per video.
        num_spatial_crops: test crops per view (3, or 1 for the centre crop).
        batch_size: defaults to 64 (train/val) or 8 (test).
        shuffle: shuffle the videos; defaults to True for train only.
        seed: seed for shuffling and augmentation; None for non-repeatable runs.
        num_parallel_calls: parallel decoding calls (default autotuned).
        deterministic: keep element order under parallel decoding; defaults
            to True except for unseeded training.
        drop_remainder: drop the last partial batch; defaults to True for train.
        random_flip: flip train/val clips at random.
        decode_threads: FFmpeg threads per video (1 is the most efficient
            when many videos decode in parallel).
        on_error: `"skip"`: warn, count in `error_counter` and leave the video
            out; `"raise"`: stop with an error naming the file (a
            `VideoReadError`, a `ValueError`; inside a running `tf.data`
            pipeline TensorFlow reports it as `InvalidArgumentError` with the
            same message; missing files are reported when the dataset is built).
        error_counter: a `DecodeErrorCounter`; a new one by default. Also
            available as the `error_counter` attribute of the dataset.
        timeout: seconds after which decoding one video is abandoned.

    Returns:
        A batched `tf.data.Dataset`.

    Example:

    >>> ds = kinetics_dataset("train.csv", "train", num_frames=32, sampling_rate=2)
    ... # doctest: +SKIP
    >>> model.fit(ds, epochs=1)  # doctest: +SKIP
    """
    settings = ClipSettings(
        mode=mode,
        num_frames=num_frames,
        sampling_rate=sampling_rate,
        target_fps=target_fps,
        jitter_scales=jitter_scales,
        crop_size=crop_size,
        num_temporal_views=num_temporal_views,
        num_spatial_crops=num_spatial_crops,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        deterministic=deterministic,
        drop_remainder=drop_remainder,
        random_flip=random_flip,
        on_error=on_error,
    )
    _check_decode_threads(decode_threads)
    paths, labels = _listed_videos(list_file, path_prefix, on_error)
    counter = error_counter if error_counter is not None else video_lib.DecodeErrorCounter()
    s = settings
    index = tf.range(len(paths), dtype=tf.int32)
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths), tf.constant(labels, tf.int32), index)
    )
    if s.shuffle:
        ds = ds.shuffle(len(paths), seed=s.shuffle_seed(), reshuffle_each_iteration=True)
    if mode == "test":
        load_views = _test_views_loader(s, decode_threads, timeout, counter)
        ds = _decoded_test_views(ds, load_views, s, num_parallel_calls)
    else:
        load_clip = _clip_loader(s, decode_threads, timeout, counter)
        ds = _decoded_clips(ds, load_clip, s, num_parallel_calls)
    ds = finish(ds, s)
    ds.error_counter = counter
    return ds


def _check_decode_threads(decode_threads):
    """`decode_threads` is an int >= 0 (0: automatic)."""
    if (
        isinstance(decode_threads, bool)
        or not isinstance(decode_threads, int)
        or decode_threads < 0
    ):
        raise ValueError(
            f"`decode_threads` must be an int >= 0 (0: automatic). "
            f"Received: decode_threads={decode_threads!r}"
        )


def _listed_videos(list_file, path_prefix, on_error):
    """The list's `(paths, labels)`; with `on_error="raise"`, every local file must exist."""
    paths, labels = read_video_list(list_file, path_prefix)
    if on_error == "raise":
        missing = [p for p in paths if not video_lib.is_stream_url(p) and not os.path.exists(p)]
        if missing:
            raise ValueError(
                f"{len(missing)} listed video file(s) not found, e.g. {missing[:3]!r}. "
                f"Received: list_file={list_file!r}"
            )
    return paths, labels


def _clip_loader(s, decode_threads, timeout, counter):
    """`load_clip(path, seed) -> (clip, ok)`: one random train/val clip, for `numpy_function`."""
    T, C = s.num_frames, s.crop_size

    def load_clip(path, seed_value):
        def placeholder():
            return np.zeros((T, C, C, 3), np.uint8), np.bool_(True)

        return DECODE_GATE.call(_load_clip, placeholder, path, seed_value)

    def _load_clip(path, seed_value):
        path = os.fsdecode(path)
        rng = np.random.default_rng(int(seed_value) & 0xFFFFFFFFFFFFFFFF)
        try:
            frames = video_lib.read_clip(
                path,
                T,
                s.sampling_rate,
                view_index=-1,
                target_fps=s.target_fps,
                rng=rng,
                decode_threads=decode_threads,
                timeout=timeout,
            )
            clip = transforms.random_scale_crop_flip(
                frames, s.min_scale, s.max_scale, C, rng, flip=s.random_flip
            )
            return clip, np.bool_(True)
        except Exception as e:
            report_failure(path, as_read_error(path, e), s.on_error, counter)
            return np.zeros((T, C, C, 3), np.uint8), np.bool_(False)

    return load_clip


def _test_views_loader(s, decode_threads, timeout, counter):
    """`load_views(path) -> (frames, table, ok)`: a video's test-view frames, decoded once."""
    T, C = s.num_frames, s.crop_size

    def load_views(path):
        def placeholder():
            return (
                np.zeros((1, C, C, 3), np.uint8),
                np.zeros((s.num_temporal_views, T), np.int32),
                np.bool_(True),
            )

        return DECODE_GATE.call(_load_views, placeholder, path)

    def _load_views(path):
        path = os.fsdecode(path)
        try:
            frames, table = video_lib.read_test_views(
                path,
                T,
                s.sampling_rate,
                num_views=s.num_temporal_views,
                target_fps=s.target_fps,
                convert=lambda f: transforms.resize_short_side(f, C, exact=True),
                decode_threads=decode_threads,
                timeout=timeout,
            )
            if min(frames.shape[1:3]) < C:
                raise video_lib.VideoReadError(path, f"frames are smaller than crop_size={C}")
            return frames, table, np.bool_(True)
        except Exception as e:
            report_failure(path, as_read_error(path, e), s.on_error, counter)
            return (
                np.zeros((1, C, C, 3), np.uint8),
                np.zeros((s.num_temporal_views, T), np.int32),
                np.bool_(False),
            )

    return load_views


def _decoded_test_views(ds, load_views, s, num_parallel_calls):
    """`(path, label, index)` elements to the test views of each video that decodes."""

    def decode(path, label, video_index):
        frames, table, ok = tf.numpy_function(
            load_views, [path], [tf.uint8, tf.int32, tf.bool], name="decode_test_views"
        )
        frames = tf.ensure_shape(frames, [None, None, None, 3])
        table = tf.ensure_shape(table, [s.num_temporal_views, s.num_frames])
        return frames, table, label, video_index, ok

    ds = ds.map(decode, num_parallel_calls=num_parallel_calls, deterministic=s.deterministic)
    ds = ds.filter(last_is_ok)
    return ds.flat_map(
        lambda frames, table, lab, vid, ok: cut_test_views(frames, table, lab, vid, s)
    )


def _decoded_clips(ds, load_clip, s, num_parallel_calls):
    """`(path, label, index)` elements to `(clip, label)` of each video that decodes."""
    T, C = s.num_frames, s.crop_size

    def decode(element, seed_value):
        path, label, _ = element
        clip, ok = tf.numpy_function(
            load_clip, [path, seed_value], [tf.uint8, tf.bool], name="decode_clip"
        )
        return tf.ensure_shape(clip, [T, C, C, 3]), label, ok

    ds = tf.data.Dataset.zip((ds, s.element_seeds()))
    ds = ds.map(decode, num_parallel_calls=num_parallel_calls, deterministic=s.deterministic)
    return ds.filter(last_is_ok).map(drop_last)
