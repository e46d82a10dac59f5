"""AVA-layout annotations: frame lists, box CSVs and the keyframes PySlowFast's `Ava` builds.

An AVA-layout dataset is a folder with

* ``frames/<video>/<video>_%06d.jpg``: every frame of each movie at 30 fps (1-based file
  names); frame ``i`` (0-based) is second ``900 + i / 30`` of the movie;
* ``frame_lists/train.csv``, ``val.csv``: one header line, then
  ``original_vido_id video_id frame_id path labels`` per frame (space separated);
* ``annotations/``: ground-truth boxes ``video,sec,x1,y1,x2,y2,action,person`` (normalised,
  one row per action), a person detector's boxes ``video,sec,x1,y1,x2,y2,,score``, the
  evaluation ground truth and the excluded timestamps.

The keyframes are PySlowFast's: seconds 902 to 1798 that have boxes, boxes de-duplicated by
their coordinate text with all their labels, predicted boxes below the score threshold
dropped, every fourth second in ``val``; the clip of a keyframe is the frames `ava_sequence`
picks around its centre frame.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from keras_slowfast._ava_csv import csv_rows
from keras_slowfast._checks import check_positive_int
from keras_slowfast.data._loading import check_mode

__all__ = [
    "AVA_FPS",
    "AVA_NUM_CLASSES",
    "AVAKeyframe",
    "AVAAnnotations",
    "ava_sequence",
    "load_ava_annotations",
    "read_box_csvs",
    "read_frame_lists",
]

AVA_FPS = 30
AVA_START_SECOND = 900
# Keyframes PySlowFast uses: seconds 902..1798 of each movie.
AVA_VALID_SECONDS = (902, 1798)
AVA_NUM_CLASSES = 80

# PySlowFast's default file names (config AVA.*), relative to the dataset's sub-folders.
DEFAULT_TRAIN_LISTS = ("train.csv",)
DEFAULT_TEST_LISTS = ("val.csv",)
DEFAULT_TRAIN_GT_BOX_LISTS = ("ava_train_v2.2.csv",)
DEFAULT_TRAIN_PREDICT_BOX_LISTS = ()
DEFAULT_TEST_PREDICT_BOX_LISTS = ("ava_val_predicted_boxes.csv",)
DEFAULT_GROUNDTRUTH_FILE = "ava_val_v2.2.csv"
DEFAULT_EXCLUSION_FILE = "ava_val_excluded_timestamps_v2.2.csv"
DEFAULT_LABEL_MAP_FILE = "ava_action_list_v2.2_for_activitynet_2019.pbtxt"

#: A file or folder path.
StrPath = str | os.PathLike
#: One file name or path, or a sequence of them.
FileNames = StrPath | Sequence[StrPath]
#: `boxes[video][second]`: the `(box, labels)` of each distinct box of that second.
BoxesBySecond = dict[str, dict[int, list[tuple[list[float], list[int]]]]]


class AVAKeyframe(NamedTuple):
    """One keyframe of an AVA-layout dataset.

    Attributes:
        video_index: index of the video in `AVAAnnotations.videos`.
        second: the keyframe's second (AVA movie time).
        center_frame: the keyframe's 0-based frame index, `(second - 900) * 30`.
        boxes: float32 `(n, 4)` normalised `[x1, y1, x2, y2]` as read (not clipped).
        labels: uint8 `(n, num_classes)` multi-hot labels (action id `k` is column `k - 1`).

    Example:
        >>> k = AVAKeyframe(0, 902, 60, np.zeros((1, 4), np.float32), np.zeros((1, 80), np.uint8))
        >>> k.center_frame == (k.second - AVA_START_SECOND) * AVA_FPS
        True
    """

    video_index: int
    second: int
    center_frame: int
    boxes: np.ndarray
    labels: np.ndarray


class AVAAnnotations(NamedTuple):
    """The videos, frame files and keyframes of one split.

    Attributes:
        videos: video names, in frame-list order (the video index used everywhere).
        frame_paths: per video, the list of its frame files (None for video-file sources).
        keyframes: the `AVAKeyframe`s in PySlowFast's dataset order.
        num_boxes: total number of boxes over all keyframes.

    Example:
        >>> ann = AVAAnnotations(["v"], None, [], 0)
        >>> ann.videos, ann.num_boxes
        (['v'], 0)
    """

    videos: list
    frame_paths: list | None
    keyframes: list
    num_boxes: int


def _as_list(value, name):
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [value]
    if isinstance(value, Sequence):
        return list(value)
    raise TypeError(f"`{name}` must be a file name or a list of them. Received: {name}={value!r}")


def read_frame_lists(
    list_files: FileNames, frame_dir: StrPath = ""
) -> tuple[list[str], list[list[str]]]:
    """Reads AVA frame lists: which frame files each video has, in order.

    Each file has one header line, then `original_vido_id video_id frame_id path labels` per
    line (space separated). Videos are numbered in order of first appearance over all files;
    a video's frames are listed in file order, and `path` is joined to `frame_dir`.

    Args:
        list_files: a path or a list of paths.
        frame_dir: folder the `path` column is relative to.

    Returns:
        `(videos, frame_paths)`: the video names and, per video, its list of frame paths.

    Raises:
        ValueError: a row without 5 fields, naming the file and line.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "val.csv"
        >>> _ = f.write_text('h\\nv1 0 0 v1/v1_000001.jpg ""\\nv1 0 1 v1/v1_000002.jpg ""\\n')
        >>> videos, paths = read_frame_lists(f, "frames")
        >>> videos, paths[0][1]
        (['v1'], 'frames/v1/v1_000002.jpg')
    """
    videos, frame_paths, index = [], [], {}
    for list_file in _as_list(list_files, "list_files"):
        with open(list_file, encoding="utf-8") as f:
            f.readline()
            for line_number, line in enumerate(f, start=2):
                row = line.split()
                if not row:
                    continue
                if len(row) != 5:
                    raise ValueError(
                        "An AVA frame-list row has 5 space-separated fields "
                        "(original_vido_id video_id frame_id path labels). "
                        f"Received: {os.fspath(list_file)}:{line_number}: {line.rstrip()!r}"
                    )
                name = row[0]
                if name not in index:
                    index[name] = len(videos)
                    videos.append(name)
                    frame_paths.append([])
                frame_paths[index[name]].append(os.path.join(frame_dir, row[3]))
    return videos, frame_paths


def _box_row(row, is_groundtruth, thresh, where):
    """`(video, second, box, label)` of one box row; None for a predicted box scoring below
    `thresh`. An empty action is label -1 (a box without label)."""
    try:
        if not is_groundtruth:
            if len(row) < 8:
                raise ValueError("a predicted-box row has a score in column 8")
            if float(row[7]) < thresh:
                return None
        if len(row) < 6:
            raise ValueError("a box row has at least 6 columns")
        video, second = row[0].strip(), int(row[1])
        box = [float(v) for v in row[2:6]]
        label = -1 if len(row) < 7 or row[6].strip() == "" else int(row[6])
    except ValueError as e:
        raise ValueError(
            f"Cannot parse an AVA box row ({e}). Expected "
            f"`video,sec,x1,y1,x2,y2,action[,person|,score]`. Received: {where}"
        ) from None
    if not all(math.isfinite(v) for v in box) or box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"An AVA box must be finite with x1 <= x2 and y1 <= y2. Received: {where}")
    if label != -1 and label < 1:
        raise ValueError(f"AVA action ids start at 1. Received: {where}")
    return video, second, box, label


def read_box_csvs(
    groundtruth_files: FileNames | None = (),
    predicted_files: FileNames | None = (),
    detection_score_thresh: float = 0.8,
    seconds_every: int = 1,
    valid_seconds: tuple[int, int] = AVA_VALID_SECONDS,
) -> tuple[BoxesBySecond, int]:
    """Reads AVA box CSVs into boxes grouped per video and second, with all their labels.

    Rows are `video,sec,x1,y1,x2,y2[,action[,...]]`; predicted-box files carry the detector's
    score in column 8 and rows scoring below `detection_score_thresh` are dropped. Boxes of a
    second are de-duplicated by their coordinate text (`"x1,y1,x2,y2"` as written), collecting
    every label; an empty action is `-1` (a box without label). Only seconds divisible by
    `seconds_every` are kept (PySlowFast's `val` uses 4). Rows of seconds outside
    `valid_seconds` are counted and left out (PySlowFast cannot read them).

    Args:
        groundtruth_files: path(s) of ground-truth CSVs.
        predicted_files: path(s) of a person detector's CSVs (with scores).
        detection_score_thresh: minimum score of a predicted box.
        seconds_every: keep seconds divisible by this.
        valid_seconds: `(first, last)` keyframe seconds.

    Returns:
        `(boxes, skipped)`: `boxes[video][second]` is a list of `(box, labels)` with `box` a
        list of 4 floats and `labels` a list of ints; `skipped` counts rows outside
        `valid_seconds`.

    Raises:
        ValueError: a row that does not parse, or a box that is not finite or whose
            `x2 < x1` or `y2 < y1`, naming the file and line.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "gt.csv"
        >>> _ = f.write_text("v,0902,0.1,0.2,0.5,0.9,12,0\\nv,0902,0.1,0.2,0.5,0.9,79,0\\n")
        >>> boxes, skipped = read_box_csvs(f)
        >>> boxes["v"][902]
        [([0.1, 0.2, 0.5, 0.9], [12, 79])]
    """
    check_positive_int("seconds_every", seconds_every)
    first, last = (int(s) for s in valid_seconds)
    thresh = float(detection_score_thresh)
    grouped = {}
    skipped = 0
    files = [(f, True) for f in _as_list(groundtruth_files, "groundtruth_files")]
    files += [(f, False) for f in _as_list(predicted_files, "predicted_files")]
    for path, is_groundtruth in files:
        for line_number, row in csv_rows(path):
            where = f"{os.fspath(path)}:{line_number}: {','.join(row)!r}"
            parsed = _box_row(row, is_groundtruth, thresh, where)
            if parsed is None:
                continue
            video, second, box, label = parsed
            if second % seconds_every:
                continue
            if not first <= second <= last:
                skipped += 1
                continue
            per_second = grouped.setdefault(video, {}).setdefault(second, {})
            key = ",".join(row[2:6])
            if key not in per_second:
                per_second[key] = (box, [])
            per_second[key][1].append(label)
    boxes = {
        video: {sec: list(entries.values()) for sec, entries in seconds.items()}
        for video, seconds in grouped.items()
    }
    return boxes, skipped


def _keyframes(videos, boxes, num_classes, start_second, fps, valid_seconds):
    first, last = valid_seconds
    keyframes, total = [], 0
    for video_index, name in enumerate(videos):
        per_second = boxes.get(name, {})
        for second in sorted(per_second):
            if not first <= second <= last or not per_second[second]:
                continue
            entries = per_second[second]
            box_array = np.array([b for b, _ in entries], np.float32).reshape(-1, 4)
            labels = np.zeros((len(entries), num_classes), np.uint8)
            for i, (_, box_labels) in enumerate(entries):
                for label in box_labels:
                    if label == -1:
                        continue
                    if label > num_classes:
                        raise ValueError(
                            f"Action id {label} of video {name!r} second {second} exceeds "
                            f"`num_classes`. Received: num_classes={num_classes}"
                        )
                    labels[i, label - 1] = 1
            center = int(round((second - start_second) * fps))
            keyframes.append(AVAKeyframe(video_index, second, center, box_array, labels))
            total += len(entries)
    return keyframes, total


def ava_sequence(
    center_frame: int, num_frames: int, sampling_rate: int, video_frames: int
) -> np.ndarray:
    """Frame indices of the clip around a keyframe (PySlowFast's `get_sequence`).

    `range(center - num_frames * sampling_rate // 2, center + num_frames * sampling_rate // 2,
    sampling_rate)`, each index clamped to `[0, video_frames - 1]`.

    Args:
        center_frame: the keyframe's 0-based frame index.
        num_frames: frames per clip.
        sampling_rate: frame stride.
        video_frames: number of frames of the video.

    Returns:
        int64 `(num_frames,)` frame indices.

    Example:
        >>> ava_sequence(60, 4, 2, 62).tolist()
        [56, 58, 60, 61]
    """
    half = num_frames * sampling_rate // 2
    seq = np.arange(center_frame - half, center_frame + half, sampling_rate, dtype=np.int64)
    return np.clip(seq, 0, max(int(video_frames) - 1, 0))


def _split_paths(data_dir, mode, frame_dir, frame_list_dir, annotation_dir, files):
    def under(folder, default):
        if folder is not None:
            return os.fspath(folder)
        if data_dir is None:
            raise ValueError(
                f"Give `data_dir` or `{default}_dir` for the AVA {default} folder. "
                f"Received: data_dir=None, {default}_dir=None"
            )
        return os.path.join(
            os.fspath(data_dir), default if default != "frame_list" else "frame_lists"
        )

    list_dir = under(frame_list_dir, "frame_list")
    ann_dir = under(annotation_dir, "annotations")
    frames = under(frame_dir, "frames") if frame_dir is not None or data_dir is not None else ""
    lists = files["train_lists"] if mode == "train" else files["test_lists"]
    gt = files["train_gt_box_lists"] if mode == "train" else ()
    pred = files["train_predict_box_lists"] if mode == "train" else files["test_predict_box_lists"]

    def join(folder, names, name):
        return [os.path.join(folder, os.fspath(n)) for n in _as_list(names, name)]

    return (
        frames,
        join(list_dir, lists, "train_lists" if mode == "train" else "test_lists"),
        join(ann_dir, gt, "train_gt_box_lists"),
        join(
            ann_dir,
            pred,
            "train_predict_box_lists" if mode == "train" else "test_predict_box_lists",
        ),
    )


def _check_files_exist(paths, data_dir):
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"AVA file not found: {path!r}. Received: data_dir={data_dir!r}")


def load_ava_annotations(
    data_dir: StrPath | None = None,
    mode: str = "train",
    *,
    frame_dir: StrPath | None = None,
    frame_list_dir: StrPath | None = None,
    annotation_dir: StrPath | None = None,
    train_lists: FileNames = DEFAULT_TRAIN_LISTS,
    test_lists: FileNames = DEFAULT_TEST_LISTS,
    train_gt_box_lists: FileNames = DEFAULT_TRAIN_GT_BOX_LISTS,
    train_predict_box_lists: FileNames = DEFAULT_TRAIN_PREDICT_BOX_LISTS,
    test_predict_box_lists: FileNames = DEFAULT_TEST_PREDICT_BOX_LISTS,
    detection_score_thresh: float = 0.8,
    full_test_on_val: bool = False,
    num_classes: int = AVA_NUM_CLASSES,
    videos: Sequence[str] | None = None,
) -> AVAAnnotations:
    """Reads the keyframes of one split of an AVA-layout dataset, as PySlowFast's `Ava` does.

    `"train"` reads the frame lists `train_lists` with the ground-truth boxes
    `train_gt_box_lists` (plus `train_predict_box_lists`); `"val"` and `"test"` read
    `test_lists` with the person detector's boxes `test_predict_box_lists` (scores below
    `detection_score_thresh` dropped). `"val"` keeps the seconds divisible by 4 unless
    `full_test_on_val`. A keyframe is a second in 902..1798 with at least one box; its centre
    frame is `(second - 900) * 30`.

    Args:
        data_dir: the dataset folder (with `frames/`, `frame_lists/`, `annotations/`).
        mode: `"train"`, `"val"` or `"test"`.
        frame_dir, frame_list_dir, annotation_dir: override the sub-folders.
        train_lists, test_lists: frame-list file names (in `frame_list_dir`).
        train_gt_box_lists, train_predict_box_lists, test_predict_box_lists: box CSV names
            (in `annotation_dir`).
        detection_score_thresh: minimum score of a predicted box (0.8 in the released AVA
            configs).
        full_test_on_val: in `"val"`, keep every second.
        num_classes: number of action classes.
        videos: instead of frame lists, the list of video names (video-file sources).

    Returns:
        An `AVAAnnotations`.

    Example:
        >>> ann = load_ava_annotations("ava", mode="val")  # doctest: +SKIP
        >>> ann.keyframes[0].second  # doctest: +SKIP
        904
    """
    check_mode(mode)
    check_positive_int("num_classes", num_classes)
    files = dict(
        train_lists=train_lists,
        test_lists=test_lists,
        train_gt_box_lists=train_gt_box_lists,
        train_predict_box_lists=train_predict_box_lists,
        test_predict_box_lists=test_predict_box_lists,
    )
    frames, lists, gt, pred = _split_paths(
        data_dir, mode, frame_dir, frame_list_dir, annotation_dir, files
    )
    _check_files_exist((lists if videos is None else []) + gt + pred, data_dir)
    if videos is None:
        names, frame_paths = read_frame_lists(lists, frames)
    else:
        names, frame_paths = [str(v) for v in videos], None
    every = 4 if mode == "val" and not full_test_on_val else 1
    boxes, skipped = read_box_csvs(gt, pred, detection_score_thresh, seconds_every=every)
    if skipped:
        warnings.warn(
            f"{skipped} box row(s) lie outside the keyframe seconds "
            f"{AVA_VALID_SECONDS[0]}..{AVA_VALID_SECONDS[1]} and were left out.",
            RuntimeWarning,
            stacklevel=2,
        )
    unknown = sorted(set(boxes) - set(names))
    if unknown:
        warnings.warn(
            f"Boxes of {len(unknown)} video(s) not in the frame lists are left out, "
            f"e.g. {unknown[:3]!r}.",
            RuntimeWarning,
            stacklevel=2,
        )
    keyframes, total = _keyframes(
        names, boxes, num_classes, AVA_START_SECOND, AVA_FPS, AVA_VALID_SECONDS
    )
    return AVAAnnotations(names, frame_paths, keyframes, total)


def split_video_names(
    data_dir: StrPath | None = None,
    mode: str = "train",
    *,
    frame_list_dir: StrPath | None = None,
    annotation_dir: StrPath | None = None,
    train_lists: FileNames = DEFAULT_TRAIN_LISTS,
    test_lists: FileNames = DEFAULT_TEST_LISTS,
    train_gt_box_lists: FileNames = DEFAULT_TRAIN_GT_BOX_LISTS,
    train_predict_box_lists: FileNames = DEFAULT_TRAIN_PREDICT_BOX_LISTS,
    test_predict_box_lists: FileNames = DEFAULT_TEST_PREDICT_BOX_LISTS,
) -> list[str]:
    """The videos of a split whose frames come from video files (`load_ava_annotations`'s
    `videos`).

    They are those of the split's frame lists when these all exist, else those its box CSVs
    name, in order of first appearance. The arguments are `load_ava_annotations`'s.

    Args:
        data_dir: the dataset folder.
        mode: `"train"`, `"val"` or `"test"`.
        frame_list_dir, annotation_dir: override the sub-folders.
        train_lists, test_lists: frame-list file names (in `frame_list_dir`).
        train_gt_box_lists, train_predict_box_lists, test_predict_box_lists: box CSV names
            (in `annotation_dir`).

    Returns:
        The video names.

    Raises:
        ValueError: without frame lists, a box CSV that does not exist.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "annotations").mkdir()
        >>> boxes = root / "annotations" / "ava_val_predicted_boxes.csv"
        >>> _ = boxes.write_text("b,0902,0.1,0.2,0.5,0.9,,0.9\\na,0902,0.1,0.2,0.5,0.9,,0.9\\n")
        >>> split_video_names(root, "val")
        ['b', 'a']
    """
    files = dict(
        train_lists=train_lists,
        test_lists=test_lists,
        train_gt_box_lists=train_gt_box_lists,
        train_predict_box_lists=train_predict_box_lists,
        test_predict_box_lists=test_predict_box_lists,
    )
    _, lists, gt, pred = _split_paths(data_dir, mode, None, frame_list_dir, annotation_dir, files)
    if lists and all(os.path.isfile(p) for p in lists):
        return read_frame_lists(lists)[0]
    _check_files_exist(gt + pred, data_dir)
    names = {}
    for path in gt + pred:
        for _, row in csv_rows(path):
            if row[0].strip():
                names.setdefault(row[0].strip(), None)
    return list(names)
