"""Extracting AVA's frame layout from video files.

Writes what AVA's own preparation (`ffmpeg -i VIDEO -r 30 -q:v 1
frames/VIDEO/VIDEO_%06d.jpg`) and PySlowFast's frame lists give:

    DATA_DIR/frames/<video>/<video>_000001.jpg ...   (30 fps, 1-based, JPEG)
    DATA_DIR/frame_lists/<split>.csv

Frames are the video's frames resampled to `fps` as
:mod:`keras_slowfast.data.ava_video` defines it, encoded by OpenCV (so the
files hold BGR-ordered JPEG data, as OpenCV writes it, and decode to the same
colours with any reader). The frame list has a header line
`original_vido_id video_id frame_id path labels` and one space-separated row
per frame: the video name, its 0-based index in the list, the 0-based frame
index, the path under `frames/` and `""` (no labels).
"""

from __future__ import annotations

import dataclasses
import fractions
import os
import shutil
import uuid
import warnings
from collections.abc import Sequence

import cv2
import numpy as np

from keras_slowfast.data import ava_video
from keras_slowfast.data._loading import (
    VIDEO_LIST_SUFFIXES,
    check_on_error,
    read_video_list_entries,
)
from keras_slowfast.data._video_io import check_fps, check_timeout
from keras_slowfast.data.video import DecodeErrorCounter, VideoReadError

__all__ = ["ExtractionResult", "extract_ava_frames", "read_video_paths"]

FRAME_LIST_HEADER = "original_vido_id video_id frame_id path labels"
_TEMP_MARK = ".partial-"


@dataclasses.dataclass
class ExtractionResult:
    """What `extract_ava_frames` did.

    Attributes:
        frame_list: path of the frame list written.
        frames: `{video name: number of frames}` of the videos in the list,
            in list order.
        extracted: names of the videos whose frames were written now.
        existing: names of the videos whose complete folder was already
            there (not decoded again).
        failed: `(path, reason)` of the videos skipped because they could not
            be decoded.

    Example:

    >>> ExtractionResult("frame_lists/train.csv", {"k00": 300}, ["k00"], [], []).frames
    {'k00': 300}
    """

    frame_list: str
    frames: dict
    extracted: list
    existing: list
    failed: list


def frame_name(video, index):
    """The file name of 0-based frame `index` of `video` (AVA numbers frames from 1).

    Example:

    >>> frame_name("k00", 0)
    'k00_000001.jpg'
    """
    return f"{video}_{index + 1:06d}.jpg"


def read_video_paths(list_file: str | os.PathLike) -> list[str]:
    """The video paths of a list file: one per line, relative to the list's folder.

    Blank lines and lines starting with `#` are ignored; a line's first
    whitespace- or comma-separated field is the path (so a CSV with the path
    first works too).

    Args:
        list_file: path of the text file.

    Returns:
        A list of paths.

    Raises:
        ValueError: if the file is missing or lists no video.

    Example:

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     list_file = os.path.join(tmp, "videos.txt")
    ...     with open(list_file, "w") as f:
    ...         _ = f.write("# AVA videos\\nk00.mp4\\n\\nclips/bikes.mp4,train\\n")
    ...     paths = read_video_paths(list_file)
    ...     [os.path.relpath(p, tmp) for p in paths]
    ['k00.mp4', 'clips/bikes.mp4']
    """
    list_file = os.fspath(list_file)
    if not os.path.isfile(list_file):
        raise ValueError(f"No video list file at this path. Received: list_file={list_file!r}")
    base = os.path.dirname(os.path.abspath(list_file))
    paths = [
        path if os.path.isabs(path) else os.path.join(base, path)
        for path in read_video_list_entries(list_file)
    ]
    if not paths:
        raise ValueError(f"The video list names no video. Received: list_file={list_file!r}")
    return paths


def _video_paths(videos):
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    try:
        videos = list(videos)
    except TypeError:
        raise TypeError(
            f"`videos` must be a path or a list of paths. Received: videos={videos!r}"
        ) from None
    paths = []
    for v in videos:
        if not isinstance(v, (str, os.PathLike)):
            raise TypeError(
                f"`videos` must be a path or a list of paths. Received: videos={videos!r}"
            )
        v = os.fspath(v)
        if v.lower().endswith(VIDEO_LIST_SUFFIXES):
            paths.extend(read_video_paths(v))
        else:
            paths.append(v)
    if not paths:
        raise ValueError(f"`videos` names no video. Received: videos={videos!r}")
    names = {}
    for p in paths:
        name = os.path.splitext(os.path.basename(p))[0]
        if not name:
            raise ValueError(f"A video path has no file name. Received: video={p!r}")
        if name in names and names[name] != p:
            raise ValueError(
                "Two videos have the same name, and the frame folders are named after the "
                f"videos. Received: videos={[names[name], p]!r}"
            )
        if any(c.isspace() for c in name):
            raise ValueError(
                "Video file names must not contain whitespace: frame lists are space "
                f"separated. Received: video={p!r}"
            )
        names[name] = p
    return list(names.items())


def _count_existing(folder, name):
    """Frames `<name>_000001.jpg ...` present without a gap in a complete folder."""
    present = set(os.listdir(folder))
    count = 0
    while frame_name(name, count) in present:
        count += 1
    return count


def _atomic_write_text(path, text):
    tmp = f"{path}{_TEMP_MARK}{uuid.uuid4().hex}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _remove_stale(frames_dir, name):
    prefix = f".{name}{_TEMP_MARK}"
    for entry in os.listdir(frames_dir):
        if entry.startswith(prefix):
            shutil.rmtree(os.path.join(frames_dir, entry), ignore_errors=True)


def _extract_one(path, name, frames_dir, fps, jpeg_quality, timeout, bar):
    """Writes the frames of one video into a temporary folder, then renames it."""
    _remove_stale(frames_dir, name)
    tmp = os.path.join(frames_dir, f".{name}{_TEMP_MARK}{uuid.uuid4().hex}")
    os.makedirs(tmp)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]

    def encode(rgb):
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise ValueError("OpenCV could not encode the frame as JPEG")
        return data.tobytes()

    count = 0
    try:
        frames = ava_video.iter_frames_at_fps(path, fps=fps, timeout=timeout, convert=encode)
        for index, data in frames:
            with open(os.path.join(tmp, frame_name(name, index)), "wb") as f:
                f.write(data)
            count = index + 1
            bar.update()
        os.rename(tmp, os.path.join(frames_dir, name))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


def extract_ava_frames(
    videos: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    fps: float | fractions.Fraction = 30,
    split: str = "train",
    jpeg_quality: int = 95,
    on_error: str = "skip",
    timeout: float | None = 3600.0,
    progress: bool = True,
    error_counter: DecodeErrorCounter | None = None,
) -> ExtractionResult:
    """Extracts AVA's frame layout (`frames/`, `frame_lists/`) from video files.

    For each video, its frames at `fps` (see
    :mod:`keras_slowfast.data.ava_video`) are written as
    `output_dir/frames/<video>/<video>_%06d.jpg` (numbered from 1, JPEG by
    OpenCV), where `<video>` is the file name without its extension. Then
    `output_dir/frame_lists/<split>.csv` lists the frames of all the given
    videos that are available, in the order given.

    Each video is written to a temporary folder that is renamed when it is
    complete, so an interrupted run leaves no partial folder and running
    again resumes: a video whose folder exists is not decoded again (its
    frames are counted from the files). The frame list is written to a
    temporary file and renamed.

    Args:
        videos: a video path, a list file (`.txt`, `.csv`, `.lst`, `.list`:
            one path per line, relative to the list's folder), or a sequence
            of these.
        output_dir: the dataset folder (created if needed).
        fps: frames per second of the extracted frames (30 for AVA).
        split: name of the frame list (`train` -> `frame_lists/train.csv`).
        jpeg_quality: OpenCV JPEG quality, 1 to 100 (95, OpenCV's default).
        on_error: `"skip"` (a video that cannot be decoded is reported, warned
            about and left out of the list) or `"raise"`.
        timeout: seconds allowed for decoding one video (`None`: no limit).
        progress: draw a progress bar on stderr.
        error_counter: optional `DecodeErrorCounter` that counts the skipped
            videos.

    Returns:
        An `ExtractionResult`.

    Raises:
        VideoReadError: (a `ValueError`) for a bad video with
            `on_error="raise"`.
        ValueError: for bad arguments, two videos with the same name, or when
            no video could be extracted.
        OSError: when writing fails.

    Example:

    >>> result = extract_ava_frames(["k00.mp4"], "ava_data")  # doctest: +SKIP
    >>> result.frames, result.frame_list  # doctest: +SKIP
    ({'k00': 300}, 'ava_data/frame_lists/train.csv')
    """
    from keras_slowfast.progress import ProgressBar

    check_on_error(on_error)
    if (
        isinstance(jpeg_quality, bool)
        or not isinstance(jpeg_quality, (int, np.integer))
        or not 1 <= jpeg_quality <= 100
    ):
        raise ValueError(
            "`jpeg_quality` must be an integer in [1, 100]. "
            f"Received: jpeg_quality={jpeg_quality!r}"
        )
    if (
        not isinstance(split, str)
        or not split
        or os.sep in split
        or split.startswith(".")
        or (os.altsep and os.altsep in split)
    ):
        raise ValueError(
            f"`split` must be a plain file name such as 'train'. Received: split={split!r}"
        )
    check_fps(fps)
    check_timeout(timeout)
    entries = _video_paths(videos)
    output_dir = os.fspath(output_dir)
    frames_dir = os.path.join(output_dir, "frames")
    lists_dir = os.path.join(output_dir, "frame_lists")
    os.makedirs(frames_dir, exist_ok=True)
    os.makedirs(lists_dir, exist_ok=True)
    counter = error_counter if error_counter is not None else DecodeErrorCounter()

    frames, extracted, existing, failed = {}, [], [], []

    def skip(path, error):
        if on_error == "raise":
            raise error
        counter.record(path, error.reason)
        failed.append((path, error.reason))
        warnings.warn(f"Skipping video {path!r}: {error.reason}", RuntimeWarning, stacklevel=3)

    # Complete folders are kept; the other videos are counted first, so that the
    # progress bar knows the total.
    todo = {}
    for name, path in entries:
        folder = os.path.join(frames_dir, name)
        if os.path.isdir(folder):
            count = _count_existing(folder, name)
            if count:
                frames[name] = count
                existing.append(name)
                continue
            if os.listdir(folder):
                raise ValueError(
                    f"The frame folder of {name!r} exists but holds no {name}_%06d.jpg frame; "
                    f"move it away or remove it. Received: folder={folder!r}"
                )
        try:
            todo[name] = (path, ava_video.count_frames_at_fps(path, fps=fps, timeout=timeout))
        except VideoReadError as e:
            skip(path, e)
    total = sum(count for _, count in todo.values())
    with ProgressBar(total, "extracting", unit="frames", enabled=progress) as bar:
        for number, (name, (path, _)) in enumerate(todo.items()):
            bar.set_description(f"video {number + 1}/{len(todo)} {name}")
            try:
                frames[name] = _extract_one(path, name, frames_dir, fps, jpeg_quality, timeout, bar)
                extracted.append(name)
            except VideoReadError as e:
                skip(path, e)
                continue
            if frames[name] != todo[name][1]:
                warnings.warn(
                    f"Video {path!r}: {frames[name]} frames decoded, the container's timestamps "
                    f"announced {todo[name][1]}",
                    RuntimeWarning,
                    stacklevel=2,
                )
    frames = {name: frames[name] for name, _ in entries if name in frames}  # list order
    if not frames:
        raise ValueError(
            f"No video could be extracted. Received: videos={[p for _, p in entries]!r}"
        )
    rows = [FRAME_LIST_HEADER]
    for video_id, (name, count) in enumerate(frames.items()):
        rows.extend(f'{name} {video_id} {i} {name}/{frame_name(name, i)} ""' for i in range(count))
    frame_list = os.path.join(lists_dir, f"{split}.csv")
    _atomic_write_text(frame_list, "\n".join(rows) + "\n")
    return ExtractionResult(frame_list, frames, extracted, existing, failed)
