"""AVA-layout action-detection data: clips of the keyframes, as PySlowFast's `Ava` reads them.

The frame lists, box CSVs and keyframes of an AVA-layout dataset are read by
`keras_slowfast.data.ava_annotations` (its names are importable from here too). This module
reproduces PySlowFast's ``Ava`` dataset with its OpenCV backend on those keyframes: the same
frame indices around each keyframe and the same spatial transforms, those of
`keras_slowfast.data.ava_transforms` (OpenCV bilinear resizing of the decoded JPEG frames,
crops and flips with the boxes following the image). The frames come from the frame
folders or from video files resampled to 30 fps. Clips stay uint8 RGB ``(frames, H, W, 3)``;
the detector normalises them itself.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_slowfast._checks import check_positive_int
from keras_slowfast._deprecation import deprecated_alias
from keras_slowfast.data import video as video_lib
from keras_slowfast.data._ava_frames import open_frame_source
from keras_slowfast.data._loading import (
    DECODE_GATE,
    as_read_error,
    check_on_error,
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
from keras_slowfast.data.transforms import resize_short_side

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
# The dataset.


def _pad(array, rows, value=0):
    out = np.full((rows,) + array.shape[1:], value, array.dtype)
    out[: len(array)] = array
    return out


def ava_dataset(
    data_dir=None,
    mode="train",
    *,
    frame_dir=None,
    frame_list_dir=None,
    annotation_dir=None,
    video_dir=None,
    train_lists=DEFAULT_TRAIN_LISTS,
    test_lists=DEFAULT_TEST_LISTS,
    train_gt_box_lists=DEFAULT_TRAIN_GT_BOX_LISTS,
    train_predict_box_lists=DEFAULT_TRAIN_PREDICT_BOX_LISTS,
    test_predict_box_lists=DEFAULT_TEST_PREDICT_BOX_LISTS,
    detection_score_thresh=0.8,
    full_test_on_val=False,
    num_frames=32,
    sampling_rate=2,
    train_crop_size=224,
    test_crop_size=256,
    train_jitter_scales=(256, 320),
    random_flip=True,
    test_force_flip=False,
    bgr=False,
    color_augmentation=False,
    pca_jitter_only=True,
    num_classes=AVA_NUM_CLASSES,
    max_boxes=None,
    batch_size=None,
    shuffle=None,
    seed=None,
    drop_remainder=None,
    metadata=False,
    num_parallel_calls=tf.data.AUTOTUNE,
    on_error="skip",
    error_counter=None,
    timeout=300.0,
):
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
    check_on_error(on_error)
    for name, value in (
        ("num_frames", num_frames),
        ("sampling_rate", sampling_rate),
        ("train_crop_size", train_crop_size),
        ("test_crop_size", test_crop_size),
    ):
        check_positive_int(name, value)
    try:
        low, high = (int(s) for s in train_jitter_scales)
    except (TypeError, ValueError):
        raise ValueError(
            "`train_jitter_scales` must be a pair of integers (min, max). "
            f"Received: train_jitter_scales={train_jitter_scales!r}"
        ) from None
    if mode == "train" and not train_crop_size <= low <= high:
        raise ValueError(
            "`train_jitter_scales` must satisfy train_crop_size <= min <= max. "
            f"Received: train_jitter_scales={tuple(train_jitter_scales)!r}, "
            f"train_crop_size={train_crop_size}"
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"`seed` must be an int or None. Received: seed={seed!r}")
    if batch_size is None:
        batch_size = 1 if mode == "test" else 8
    check_positive_int("batch_size", batch_size)

    video_names = None
    if video_dir is not None:
        video_names = split_video_names(
            data_dir,
            mode,
            frame_list_dir=frame_list_dir,
            annotation_dir=annotation_dir,
            train_lists=train_lists,
            test_lists=test_lists,
            train_gt_box_lists=train_gt_box_lists,
            train_predict_box_lists=train_predict_box_lists,
            test_predict_box_lists=test_predict_box_lists,
        )
    ann = load_ava_annotations(
        data_dir,
        mode,
        frame_dir=frame_dir,
        frame_list_dir=frame_list_dir,
        annotation_dir=annotation_dir,
        train_lists=train_lists,
        test_lists=test_lists,
        train_gt_box_lists=train_gt_box_lists,
        train_predict_box_lists=train_predict_box_lists,
        test_predict_box_lists=test_predict_box_lists,
        detection_score_thresh=detection_score_thresh,
        full_test_on_val=full_test_on_val,
        num_classes=num_classes,
        videos=video_names,
    )
    if not ann.keyframes:
        raise ValueError(
            f"The AVA {mode!r} split has no keyframe with boxes. Received: data_dir={data_dir!r}"
        )
    source = open_frame_source(ann, video_dir, timeout)

    most = max(len(k.boxes) for k in ann.keyframes)
    if max_boxes is None:
        max_boxes = most
    check_positive_int("max_boxes", max_boxes)
    if most > max_boxes:
        worst = next(k for k in ann.keyframes if len(k.boxes) > max_boxes)
        raise ValueError(
            f"Keyframe {ann.videos[worst.video_index]!r} second {worst.second} has "
            f"{len(worst.boxes)} boxes, more than `max_boxes`. Received: max_boxes={max_boxes}"
        )

    counter = error_counter if error_counter is not None else video_lib.DecodeErrorCounter()
    T, n_cls = int(num_frames), int(num_classes)
    crop = train_crop_size if mode == "train" else test_crop_size
    clip_dtype = np.float32 if (mode == "train" and color_augmentation) else np.uint8
    tf_clip_dtype = tf.float32 if clip_dtype == np.float32 else tf.uint8
    if shuffle is None:
        shuffle = mode == "train"
    if drop_remainder is None:
        drop_remainder = mode == "train"
    keyframes = ann.keyframes

    def load_one(index, seed_value):
        k = keyframes[index]
        rng = np.random.default_rng(int(seed_value) & 0xFFFFFFFFFFFFFFFF)
        seq = ava_sequence(k.center_frame, T, int(sampling_rate), source.num_frames(k.video_index))
        frames = source.read(k.video_index, seq)
        clip, boxes = ava_transform(
            frames,
            k.boxes,
            mode,
            crop_size=crop,
            jitter_scales=(low, high),
            random_flip=random_flip,
            force_flip=test_force_flip,
            color_augmentation=color_augmentation,
            pca_jitter_only=pca_jitter_only,
            rng=rng,
        )
        if bgr:
            clip = np.ascontiguousarray(clip[..., ::-1])
        h, w = clip.shape[1:3]
        boxes = boxes / np.array([w, h, w, h], np.float32)
        return clip.astype(clip_dtype, copy=False), boxes

    def load_batch(indices, seed_value):
        """Loads keyframes `indices` (-1 = none); returns stacked arrays and an ok flag."""
        indices = [int(i) for i in indices if i >= 0]

        def decode():
            clips, boxes = [], []
            try:
                for j, i in enumerate(indices):
                    clip, b = load_one(i, int(seed_value) + j)
                    clips.append(clip)
                    boxes.append(_pad(b, max_boxes))
            except Exception as e:
                k = keyframes[indices[0]]
                where = source.describe(k.video_index)
                report_failure(where, as_read_error(where, e), on_error, counter)
                return None
            return clips, boxes

        decoded = DECODE_GATE.call(decode, lambda: None)
        if decoded is None:
            return _empty(len(indices))
        clips, boxes = decoded
        ok = np.bool_(True)
        if len({c.shape for c in clips}) != 1:
            where = source.describe(keyframes[indices[0]].video_index)
            error = video_lib.VideoReadError(where, "the frames of one video differ in size")
            report_failure(where, error, on_error, counter)
            return _empty(len(indices))
        labels = np.stack(
            [_pad(keyframes[i].labels.astype(np.float32), max_boxes) for i in indices]
        )
        num = np.array([len(keyframes[i].boxes) for i in indices], np.int32)
        ori = np.stack([_pad(keyframes[i].boxes, max_boxes) for i in indices])
        vid = np.array([keyframes[i].video_index for i in indices], np.int32)
        sec = np.array([keyframes[i].second for i in indices], np.int32)
        return np.stack(clips), np.stack(boxes), labels, num, ori, vid, sec, ok

    def _empty(n):
        return (
            np.zeros((0, T, crop, crop, 3), clip_dtype),
            np.zeros((0, max_boxes, 4), np.float32),
            np.zeros((0, max_boxes, n_cls), np.float32),
            np.zeros((0,), np.int32),
            np.zeros((0, max_boxes, 4), np.float32),
            np.zeros((0,), np.int32),
            np.zeros((0,), np.int32),
            np.bool_(False),
        )

    # Group keyframe indices into the batches to load. Train/val clips have a fixed size and
    # are loaded one per call (then batched); test clips keep their video's size, so a test
    # batch is consecutive keyframes of one video, loaded in one call.
    order = np.arange(len(keyframes))
    if mode == "test":
        groups = []
        for i in order:
            if (
                groups
                and len(groups[-1]) < batch_size
                and keyframes[groups[-1][-1]].video_index == keyframes[i].video_index
            ):
                groups[-1].append(int(i))
            else:
                groups.append([int(i)])
        width = batch_size
    else:
        groups = [[int(i)] for i in order]
        width = 1
    table = np.full((len(groups), width), -1, np.int64)
    for g, members in enumerate(groups):
        table[g, : len(members)] = members

    ds = tf.data.Dataset.from_tensor_slices(table)
    if shuffle:
        ds = ds.shuffle(len(groups), seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=mode == "train")
    if mode == "val" and seed is None:
        seeds = tf.data.Dataset.random(seed=0)

    hw = [crop, crop] if mode != "test" else [None, None]

    def load(indices, seed_value):
        out = tf.numpy_function(
            load_batch,
            [indices, seed_value],
            [
                tf_clip_dtype,
                tf.float32,
                tf.float32,
                tf.int32,
                tf.float32,
                tf.int32,
                tf.int32,
                tf.bool,
            ],
            name="load_ava_clips",
        )
        clip = tf.ensure_shape(out[0], [None, T, *hw, 3])
        boxes = tf.ensure_shape(out[1], [None, max_boxes, 4])
        labels = tf.ensure_shape(out[2], [None, max_boxes, n_cls])
        num = tf.ensure_shape(out[3], [None])
        ori = tf.ensure_shape(out[4], [None, max_boxes, 4])
        vid = tf.ensure_shape(out[5], [None])
        sec = tf.ensure_shape(out[6], [None])
        return clip, boxes, labels, num, ori, vid, sec, out[7]

    ds = tf.data.Dataset.zip((ds, seeds)).map(
        load,
        num_parallel_calls=num_parallel_calls,
        deterministic=True if (seed is not None or mode != "train") else None,
    )
    ds = ds.filter(last_is_ok).map(drop_last)

    def arrange(clip, boxes, labels, num, ori, vid, sec):
        inputs = {"clip": clip, "boxes": boxes}
        if metadata:
            meta = {"video_index": vid, "second": sec, "ori_boxes": ori, "num_boxes": num}
            return inputs, labels, meta
        weights = tf.cast(tf.sequence_mask(num, max_boxes), tf.float32)
        return inputs, labels, weights

    if mode == "test":
        ds = ds.map(arrange)
    else:
        ds = ds.unbatch().batch(batch_size, drop_remainder=drop_remainder).map(arrange)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.annotations = ann
    ds.error_counter = counter
    ds.max_boxes = max_boxes
    return ds
