"""AVA-layout action-detection data: annotations, keyframes and clips, as PySlowFast reads them.

This module assembles the `tf.data` pipeline `ava_dataset`; its parts live in

* `keras_slowfast.data.ava_annotations`: the frame lists and box CSVs of an AVA-layout dataset
  (``frames/``, ``frame_lists/``, ``annotations/``) and the keyframes PySlowFast's ``Ava``
  dataset builds from them (`load_ava_annotations`, `ava_sequence`);
* `keras_slowfast.data.ava_transforms`: PySlowFast's spatial transforms with the OpenCV
  backend (`ava_transform`: bilinear resizing of the decoded frames, crops and flips with the
  boxes following the image, the train colour augmentation);
* the frame sources: JPEG frame folders, or video files resampled to 30 fps.

Together they reproduce PySlowFast's ``Ava`` dataset: the same keyframes in the same order,
the same frame indices around each keyframe and the same transforms. Clips stay uint8 RGB
``(frames, H, W, 3)``; the detector normalises them itself. The names of those modules are
importable from here too.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_slowfast._checks import check_positive_int
from keras_slowfast._deprecation import deprecated_alias
from keras_slowfast.data._ava_frames import FrameSource, open_frame_source
from keras_slowfast.data._loading import (
    DECODE_GATE,
    as_read_error,
    drop_last,
    last_is_ok,
    report_failure,
)
from keras_slowfast.data.ava_annotations import (
    AVA_FPS,
    AVA_NUM_CLASSES,
    DEFAULT_TEST_LISTS,
    DEFAULT_TEST_PREDICT_BOX_LISTS,
    DEFAULT_TRAIN_GT_BOX_LISTS,
    DEFAULT_TRAIN_LISTS,
    DEFAULT_TRAIN_PREDICT_BOX_LISTS,
    AVAAnnotations,
    AVAKeyframe,
    FileNames,
    StrPath,
    ava_sequence,
    load_ava_annotations,
    read_box_csvs,
    read_frame_lists,
    split_video_names,
)

# The former home of these names: they stay importable from here.
from keras_slowfast.data.ava_annotations import AVA_START_SECOND as AVA_START_SECOND
from keras_slowfast.data.ava_annotations import AVA_VALID_SECONDS as AVA_VALID_SECONDS
from keras_slowfast.data.ava_annotations import DEFAULT_EXCLUSION_FILE as DEFAULT_EXCLUSION_FILE
from keras_slowfast.data.ava_annotations import (
    DEFAULT_GROUNDTRUTH_FILE as DEFAULT_GROUNDTRUTH_FILE,
)
from keras_slowfast.data.ava_annotations import DEFAULT_LABEL_MAP_FILE as DEFAULT_LABEL_MAP_FILE
from keras_slowfast.data.ava_transforms import PCA_EIGVAL as PCA_EIGVAL
from keras_slowfast.data.ava_transforms import PCA_EIGVEC as PCA_EIGVEC
from keras_slowfast.data.ava_transforms import ava_transform
from keras_slowfast.data.kinetics import ClipSettings
from keras_slowfast.data.transforms import resize_short_side
from keras_slowfast.data.video import DecodeErrorCounter, VideoReadError

__all__ = [
    "AVA_FPS",
    "AVA_NUM_CLASSES",
    "AVAKeyframe",
    "AVAAnnotations",
    "ava_dataset",
    "ava_sequence",
    "ava_transform",
    "load_ava_annotations",
    "read_box_csvs",
    "read_frame_lists",
]

# Its former name: the same OpenCV bilinear resize of the uint8 frames.
scale_short_side = deprecated_alias(
    resize_short_side, "scale_short_side", "keras_slowfast.data.ava"
)


# ---------------------------------------------------------------------------------------------
# The settings.


@dataclasses.dataclass(frozen=True)
class AVASettings:
    """`ava_dataset`'s arguments, checked once; `clip` is their clip part as a `ClipSettings`.

    The fields are `ava_dataset`'s arguments, with its defaults, as given. `clip` holds the
    checked clip settings, with the defaults resolved for `mode`: `num_frames`,
    `sampling_rate`, `crop_size` (`train_crop_size` in train, else `test_crop_size`),
    `min_scale` and `max_scale` (`train_jitter_scales` in train, else the crop size: val and
    test clips are not jittered), `batch_size`, `shuffle`, `drop_remainder`, `on_error` and
    the per-keyframe seeds (`element_seeds()`; fixed in val when `seed` is None).

    Raises:
        ValueError, TypeError: an argument out of range, naming it and the value received.

    Example:
        >>> s = AVASettings("ava", "val", test_crop_size=128)
        >>> s.clip.crop_size, (s.clip.min_scale, s.clip.max_scale), s.clip.batch_size
        (128, (128, 128), 8)
        >>> s.clip.shuffle, s.clip.drop_remainder, s.clip_dtype.__name__
        (False, False, 'uint8')
        >>> AVASettings("ava", "train", max_boxes=0)
        Traceback (most recent call last):
        ...
        ValueError: `max_boxes` must be a positive integer. Received: max_boxes=0
    """

    data_dir: StrPath | None = None
    mode: str = "train"
    _: dataclasses.KW_ONLY
    frame_dir: StrPath | None = None
    frame_list_dir: StrPath | None = None
    annotation_dir: StrPath | None = None
    video_dir: StrPath | None = None
    train_lists: FileNames = DEFAULT_TRAIN_LISTS
    test_lists: FileNames = DEFAULT_TEST_LISTS
    train_gt_box_lists: FileNames = DEFAULT_TRAIN_GT_BOX_LISTS
    train_predict_box_lists: FileNames = DEFAULT_TRAIN_PREDICT_BOX_LISTS
    test_predict_box_lists: FileNames = DEFAULT_TEST_PREDICT_BOX_LISTS
    detection_score_thresh: float = 0.8
    full_test_on_val: bool = False
    num_frames: int = 32
    sampling_rate: int = 2
    train_crop_size: int = 224
    test_crop_size: int = 256
    train_jitter_scales: tuple[int, int] = (256, 320)
    random_flip: bool = True
    test_force_flip: bool = False
    bgr: bool = False
    color_augmentation: bool = False
    pca_jitter_only: bool = True
    num_classes: int = AVA_NUM_CLASSES
    max_boxes: int | None = None
    batch_size: int | None = None
    shuffle: bool | None = None
    seed: int | None = None
    drop_remainder: bool | None = None
    metadata: bool = False
    num_parallel_calls: int = tf.data.AUTOTUNE
    on_error: str = "skip"
    error_counter: DecodeErrorCounter | None = None
    timeout: float | None = 300.0
    clip: ClipSettings = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # AVA's own arguments, checked under their names; `ClipSettings` checks the rest and
        # then receives a crop size and scales that are valid.
        for name in ("train_crop_size", "test_crop_size"):
            check_positive_int(name, getattr(self, name))
        try:
            low, high = (int(s) for s in self.train_jitter_scales)
        except (TypeError, ValueError):
            raise ValueError(
                "`train_jitter_scales` must be a pair of integers (min, max). "
                f"Received: train_jitter_scales={self.train_jitter_scales!r}"
            ) from None
        if self.mode == "train" and not self.train_crop_size <= low <= high:
            raise ValueError(
                "`train_jitter_scales` must satisfy train_crop_size <= min <= max. "
                f"Received: train_jitter_scales={tuple(self.train_jitter_scales)!r}, "
                f"train_crop_size={self.train_crop_size}"
            )
        object.__setattr__(self, "clip", self._clip_settings(low, high))
        if self.max_boxes is not None:
            check_positive_int("max_boxes", self.max_boxes)

    def _clip_settings(self, low: int, high: int) -> ClipSettings:
        train = self.mode == "train"
        crop = self.train_crop_size if train else self.test_crop_size
        batch_size = self.batch_size
        if batch_size is None:
            batch_size = 1 if self.mode == "test" else 8
        return ClipSettings(
            mode=self.mode,
            num_frames=self.num_frames,
            sampling_rate=self.sampling_rate,
            target_fps=AVA_FPS,
            jitter_scales=(low, high) if train else (crop, crop),
            crop_size=crop,
            num_temporal_views=1,
            num_spatial_crops=1,
            batch_size=batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            deterministic=None,
            drop_remainder=self.drop_remainder,
            random_flip=self.random_flip,
            on_error=self.on_error,
        )

    @property
    def clip_dtype(self) -> type:
        """float32 for colour-augmented train clips (values in [0, 255]), else uint8."""
        return np.float32 if (self.mode == "train" and self.color_augmentation) else np.uint8

    @property
    def map_deterministic(self) -> bool | None:
        """The loading map's `deterministic`: True when seeded or not training; else None,
        which leaves the order to the dataset's options."""
        return True if self.clip.deterministic else None


# ---------------------------------------------------------------------------------------------
# The phases.


def _load_split(settings: AVASettings) -> AVAAnnotations:
    """The split's keyframes (`load_ava_annotations`); with `video_dir`, of the videos that
    `split_video_names` finds."""
    s = settings
    files = dict(
        train_lists=s.train_lists,
        test_lists=s.test_lists,
        train_gt_box_lists=s.train_gt_box_lists,
        train_predict_box_lists=s.train_predict_box_lists,
        test_predict_box_lists=s.test_predict_box_lists,
    )
    folders = dict(frame_list_dir=s.frame_list_dir, annotation_dir=s.annotation_dir)
    videos = None
    if s.video_dir is not None:
        videos = split_video_names(s.data_dir, s.mode, **folders, **files)
    ann = load_ava_annotations(
        s.data_dir,
        s.mode,
        frame_dir=s.frame_dir,
        **folders,
        **files,
        detection_score_thresh=s.detection_score_thresh,
        full_test_on_val=s.full_test_on_val,
        num_classes=s.num_classes,
        videos=videos,
    )
    if not ann.keyframes:
        raise ValueError(
            f"The AVA {s.mode!r} split has no keyframe with boxes. "
            f"Received: data_dir={s.data_dir!r}"
        )
    return ann


def _max_boxes(settings: AVASettings, ann: AVAAnnotations) -> int:
    """The box slots per keyframe: `max_boxes`, or the largest count of the split."""
    most = max(len(k.boxes) for k in ann.keyframes)
    max_boxes = most if settings.max_boxes is None else settings.max_boxes
    if most > max_boxes:
        worst = next(k for k in ann.keyframes if len(k.boxes) > max_boxes)
        raise ValueError(
            f"Keyframe {ann.videos[worst.video_index]!r} second {worst.second} has "
            f"{len(worst.boxes)} boxes, more than `max_boxes`. Received: max_boxes={max_boxes}"
        )
    return max_boxes


def _pad(array: np.ndarray, rows: int, value: float = 0) -> np.ndarray:
    out = np.full((rows,) + array.shape[1:], value, array.dtype)
    out[: len(array)] = array
    return out


class _ClipLoader:
    """Reads, transforms and pads the clips and boxes of keyframes.

    `read_batch` is the Python side (in `tf.numpy_function`), `load` the graph side. An
    element is `(clips, boxes, labels, num_boxes, ori_boxes, video_index, second, ok)` for
    the keyframes of one call; a call whose frames cannot be read is reported (`on_error`)
    and gives no keyframe with `ok` False.
    """

    def __init__(
        self,
        settings: AVASettings,
        keyframes: Sequence[AVAKeyframe],
        source: FrameSource,
        max_boxes: int,
        counter: DecodeErrorCounter,
    ) -> None:
        self.settings = settings
        self.keyframes = keyframes
        self.source = source
        self.max_boxes = max_boxes
        self.counter = counter

    def clip(self, keyframe: AVAKeyframe, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The transformed clip of a keyframe and its boxes, normalised to the clip."""
        s, c = self.settings, self.settings.clip
        rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)
        video_frames = self.source.num_frames(keyframe.video_index)
        seq = ava_sequence(keyframe.center_frame, c.num_frames, c.sampling_rate, video_frames)
        clip, boxes = ava_transform(
            self.source.read(keyframe.video_index, seq),
            keyframe.boxes,
            s.mode,
            crop_size=c.crop_size,
            jitter_scales=(c.min_scale, c.max_scale),
            random_flip=s.random_flip,
            force_flip=s.test_force_flip,
            color_augmentation=s.color_augmentation,
            pca_jitter_only=s.pca_jitter_only,
            rng=rng,
        )
        if s.bgr:
            clip = np.ascontiguousarray(clip[..., ::-1])
        h, w = clip.shape[1:3]
        boxes = boxes / np.array([w, h, w, h], np.float32)
        return clip.astype(s.clip_dtype, copy=False), boxes

    def read_batch(self, indices: np.ndarray, seed: np.int64) -> tuple:
        """The element of keyframes `indices` (-1 = none), keyframe `j` seeded `seed + j`."""
        indices = [int(i) for i in indices if i >= 0]
        decoded = DECODE_GATE.call(self._decode, lambda: None, indices, seed)
        if decoded is None:
            return self._empty()
        clips, boxes = decoded
        if len({c.shape for c in clips}) != 1:
            where = self.source.describe(self.keyframes[indices[0]].video_index)
            error = VideoReadError(where, "the frames of one video differ in size")
            report_failure(where, error, self.settings.on_error, self.counter)
            return self._empty()
        keyframes = [self.keyframes[i] for i in indices]
        m = self.max_boxes
        return (
            np.stack(clips),
            np.stack(boxes),
            np.stack([_pad(k.labels.astype(np.float32), m) for k in keyframes]),
            np.array([len(k.boxes) for k in keyframes], np.int32),
            np.stack([_pad(k.boxes, m) for k in keyframes]),
            np.array([k.video_index for k in keyframes], np.int32),
            np.array([k.second for k in keyframes], np.int32),
            np.bool_(True),
        )

    def _decode(self, indices, seed):
        clips, boxes = [], []
        try:
            for j, i in enumerate(indices):
                clip, b = self.clip(self.keyframes[i], int(seed) + j)
                clips.append(clip)
                boxes.append(_pad(b, self.max_boxes))
        except Exception as e:
            where = self.source.describe(self.keyframes[indices[0]].video_index)
            report_failure(where, as_read_error(where, e), self.settings.on_error, self.counter)
            return None
        return clips, boxes

    def _empty(self):
        c, m = self.settings.clip, self.max_boxes
        return (
            np.zeros((0, c.num_frames, c.crop_size, c.crop_size, 3), self.settings.clip_dtype),
            np.zeros((0, m, 4), np.float32),
            np.zeros((0, m, int(self.settings.num_classes)), np.float32),
            np.zeros((0,), np.int32),
            np.zeros((0, m, 4), np.float32),
            np.zeros((0,), np.int32),
            np.zeros((0,), np.int32),
            np.bool_(False),
        )

    def load(self, indices: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """`read_batch` in the graph, with the element's static shapes."""
        c, m = self.settings.clip, self.max_boxes
        clip_dtype = tf.float32 if self.settings.clip_dtype == np.float32 else tf.uint8
        dtypes = [clip_dtype, tf.float32, tf.float32, tf.int32, tf.float32, tf.int32, tf.int32]
        out = tf.numpy_function(
            self.read_batch, [indices, seed], [*dtypes, tf.bool], name="load_ava_clips"
        )
        hw = [c.crop_size, c.crop_size] if c.mode != "test" else [None, None]
        shapes = [
            [None, c.num_frames, *hw, 3],
            [None, m, 4],
            [None, m, int(self.settings.num_classes)],
            [None],
            [None, m, 4],
            [None],
            [None],
        ]
        return (*(tf.ensure_shape(t, shape) for t, shape in zip(out, shapes)), out[7])


def _keyframe_batches(keyframes: Sequence[AVAKeyframe], clip: ClipSettings) -> np.ndarray:
    """The keyframe indices each loading call reads, one row per call (-1 pads a row).

    Train and val clips have a fixed size and are loaded one per call (then batched); test
    clips keep their video's size, so a test batch is consecutive keyframes of one video,
    loaded in one call.
    """
    if clip.mode == "test":
        groups = []
        for i, k in enumerate(keyframes):
            if (
                groups
                and len(groups[-1]) < clip.batch_size
                and keyframes[groups[-1][-1]].video_index == k.video_index
            ):
                groups[-1].append(i)
            else:
                groups.append([i])
        width = clip.batch_size
    else:
        groups = [[i] for i in range(len(keyframes))]
        width = 1
    table = np.full((len(groups), width), -1, np.int64)
    for g, members in enumerate(groups):
        table[g, : len(members)] = members
    return table


def _keyframe_rows(table: np.ndarray, settings: AVASettings) -> tf.data.Dataset:
    """The rows of `table`, shuffled when asked, each with its seed: `(indices, seed)`."""
    rows = tf.data.Dataset.from_tensor_slices(table)
    if settings.clip.shuffle:
        # The seed as given: unlike the clips' seeds, a val shuffle is not fixed by default.
        rows = rows.shuffle(len(table), seed=settings.seed, reshuffle_each_iteration=True)
    return tf.data.Dataset.zip((rows, settings.clip.element_seeds()))


def _load_clips(
    rows: tf.data.Dataset, loader: _ClipLoader, settings: AVASettings
) -> tf.data.Dataset:
    """The loaded elements of the rows, those that could not be read left out."""
    ds = rows.map(
        loader.load,
        num_parallel_calls=settings.num_parallel_calls,
        deterministic=settings.map_deterministic,
    )
    return ds.filter(last_is_ok).map(drop_last)


def _arrange(clip, boxes, labels, num, ori, vid, sec, *, metadata, max_boxes):
    """`(inputs, labels, box_weights)`, or `(inputs, labels, metadata)` for evaluation."""
    inputs = {"clip": clip, "boxes": boxes}
    if metadata:
        meta = {"video_index": vid, "second": sec, "ori_boxes": ori, "num_boxes": num}
        return inputs, labels, meta
    weights = tf.cast(tf.sequence_mask(num, max_boxes), tf.float32)
    return inputs, labels, weights


def _batched(ds: tf.data.Dataset, settings: AVASettings, max_boxes: int) -> tf.data.Dataset:
    """Batches of `settings.clip.batch_size` (test elements already are), arranged."""
    clip = settings.clip
    if clip.mode != "test":
        ds = ds.unbatch().batch(clip.batch_size, drop_remainder=clip.drop_remainder)
    arrange = functools.partial(_arrange, metadata=settings.metadata, max_boxes=max_boxes)
    return ds.map(arrange).prefetch(tf.data.AUTOTUNE)


def _assemble(settings: AVASettings) -> tf.data.Dataset:
    """`ava_dataset` from its checked settings, phase by phase."""
    ann = _load_split(settings)
    source = open_frame_source(ann, settings.video_dir, settings.timeout)
    max_boxes = _max_boxes(settings, ann)
    counter = settings.error_counter
    if counter is None:
        counter = DecodeErrorCounter()
    loader = _ClipLoader(settings, ann.keyframes, source, max_boxes, counter)
    rows = _keyframe_rows(_keyframe_batches(ann.keyframes, settings.clip), settings)
    ds = _batched(_load_clips(rows, loader, settings), settings, max_boxes)
    ds.annotations = ann
    ds.error_counter = counter
    ds.max_boxes = max_boxes
    return ds


# ---------------------------------------------------------------------------------------------
# The dataset.


def ava_dataset(
    data_dir: StrPath | None = None,
    mode: str = "train",
    *,
    frame_dir: StrPath | None = None,
    frame_list_dir: StrPath | None = None,
    annotation_dir: StrPath | None = None,
    video_dir: StrPath | None = None,
    train_lists: FileNames = DEFAULT_TRAIN_LISTS,
    test_lists: FileNames = DEFAULT_TEST_LISTS,
    train_gt_box_lists: FileNames = DEFAULT_TRAIN_GT_BOX_LISTS,
    train_predict_box_lists: FileNames = DEFAULT_TRAIN_PREDICT_BOX_LISTS,
    test_predict_box_lists: FileNames = DEFAULT_TEST_PREDICT_BOX_LISTS,
    detection_score_thresh: float = 0.8,
    full_test_on_val: bool = False,
    num_frames: int = 32,
    sampling_rate: int = 2,
    train_crop_size: int = 224,
    test_crop_size: int = 256,
    train_jitter_scales: tuple[int, int] = (256, 320),
    random_flip: bool = True,
    test_force_flip: bool = False,
    bgr: bool = False,
    color_augmentation: bool = False,
    pca_jitter_only: bool = True,
    num_classes: int = AVA_NUM_CLASSES,
    max_boxes: int | None = None,
    batch_size: int | None = None,
    shuffle: bool | None = None,
    seed: int | None = None,
    drop_remainder: bool | None = None,
    metadata: bool = False,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    on_error: str = "skip",
    error_counter: DecodeErrorCounter | None = None,
    timeout: float | None = 300.0,
) -> tf.data.Dataset:
    """A batched `tf.data.Dataset` of an AVA-layout dataset for the SlowFast detector.

    It yields what PySlowFast's `Ava` dataset (OpenCV backend) yields, in its order: one
    element per keyframe (see `load_ava_annotations`), the clip of `num_frames` frames every
    `sampling_rate` frames around it (`ava_sequence`), transformed by `ava_transform`.

    Elements are `(inputs, labels, box_weights)`, ready for `model.fit`:

    * `inputs["clip"]`: uint8 `(batch, num_frames, H, W, 3)` RGB (float32 in [0, 255] with
      `color_augmentation`; BGR with `bgr=True`);
    * `inputs["boxes"]`: float32 `(batch, max_boxes, 4)` `[x1, y1, x2, y2]` normalised to the
      clip's frame (its pixel boxes divided by its width and height); zero rows are padding;
    * `labels`: float32 `(batch, max_boxes, num_classes)` multi-hot, zero in padding rows;
    * `box_weights`: float32 `(batch, max_boxes)`, 1 for real boxes, 0 for padding.

    With `metadata=True` the third item is instead a dict for evaluation:
    `video_index` int32 `(batch,)`, `second` int32 `(batch,)`, `ori_boxes` float32
    `(batch, max_boxes, 4)` (the boxes as read, normalised, unclipped) and `num_boxes` int32
    `(batch,)`.

    `"test"` clips keep each video's aspect ratio (short side `test_crop_size`, no crop), so
    a batch holds keyframes of one video only (consecutive in dataset order).

    The frames come from the frame folders (`frames/<video>/...` through the frame lists) or,
    with `video_dir`, from video files `<video_dir>/<video>.mp4` (or .mkv, .avi, .webm, .mov)
    resampled to 30 fps, frame `i` being time `i / 30` of the file (so the file starts at
    AVA second 900, as AVA's 15-minute cuts do).

    Args:
        data_dir: the dataset folder (`frames/`, `frame_lists/`, `annotations/`).
        mode: `"train"`, `"val"` or `"test"`.
        frame_dir, frame_list_dir, annotation_dir: override the sub-folders.
        video_dir: read frames from the video files in this folder instead of frame folders;
            the videos are those of the frame lists if they exist, else those of the boxes.
        train_lists, test_lists, train_gt_box_lists, train_predict_box_lists,
        test_predict_box_lists, detection_score_thresh, full_test_on_val, num_classes:
            as in `load_ava_annotations`.
        num_frames: frames per clip.
        sampling_rate: frame stride at 30 fps.
        train_crop_size: train crop (224).
        test_crop_size: val/test short side and val crop (256).
        train_jitter_scales: `(min, max)` train short side (256, 320).
        random_flip: flip train clips at random.
        test_force_flip: flip every val/test clip.
        bgr: yield BGR clips (PySlowFast's `AVA.BGR`); RGB by default.
        color_augmentation, pca_jitter_only: PySlowFast's train colour augmentation.
        max_boxes: box slots per keyframe; default the largest count in the split. A
            keyframe with more boxes is an error.
        batch_size: defaults to 8 (train, val) or 1 (test).
        shuffle: shuffle keyframes; defaults to True for train.
        seed: seed for shuffling and augmentation (repeatable runs).
        drop_remainder: drop the last partial batch; defaults to True for train.
        metadata: yield evaluation metadata instead of box weights.
        num_parallel_calls: parallel clip loading.
        on_error: `"skip"`: warn, count and leave out a keyframe whose frames cannot be read;
            `"raise"`: stop with an error naming the file.
        error_counter: a `DecodeErrorCounter` (also the dataset's `error_counter`).
        timeout: seconds after which reading one video file is abandoned.

    Returns:
        A `tf.data.Dataset`, with attributes `annotations` (`AVAAnnotations`),
        `error_counter` and `max_boxes`.

    Example:
        >>> ds = ava_dataset("ava", mode="train", batch_size=8)  # doctest: +SKIP
        >>> detector.fit(ds, epochs=1)  # doctest: +SKIP
    """
    settings = AVASettings(
        data_dir,
        mode,
        frame_dir=frame_dir,
        frame_list_dir=frame_list_dir,
        annotation_dir=annotation_dir,
        video_dir=video_dir,
        train_lists=train_lists,
        test_lists=test_lists,
        train_gt_box_lists=train_gt_box_lists,
        train_predict_box_lists=train_predict_box_lists,
        test_predict_box_lists=test_predict_box_lists,
        detection_score_thresh=detection_score_thresh,
        full_test_on_val=full_test_on_val,
        num_frames=num_frames,
        sampling_rate=sampling_rate,
        train_crop_size=train_crop_size,
        test_crop_size=test_crop_size,
        train_jitter_scales=train_jitter_scales,
        random_flip=random_flip,
        test_force_flip=test_force_flip,
        bgr=bgr,
        color_augmentation=color_augmentation,
        pca_jitter_only=pca_jitter_only,
        num_classes=num_classes,
        max_boxes=max_boxes,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_remainder=drop_remainder,
        metadata=metadata,
        num_parallel_calls=num_parallel_calls,
        on_error=on_error,
        error_counter=error_counter,
        timeout=timeout,
    )
    return _assemble(settings)
