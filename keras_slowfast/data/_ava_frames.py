"""Where the AVA pipeline's frames come from: frame folders, or video files resampled to 30 fps.

A frame source answers three questions about the videos of a split (by their index in
`AVAAnnotations.videos`): how many frames a video has, the uint8 RGB frames at some indices,
and what to name in an error message. `FrameFolders` decodes the JPEG files the frame lists
name (OpenCV, as PySlowFast's cv2 backend); `VideoFiles` decodes `<video_dir>/<video>.mp4`
(or another of `VIDEO_EXTENSIONS`) at 30 fps with `keras_slowfast.data.ava_video`, frame `i`
being time `i / 30` of the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from keras_slowfast.data.ava_annotations import AVA_FPS, AVAAnnotations
from keras_slowfast.data.ava_video import count_frames_at_fps, read_frames_at_fps
from keras_slowfast.data.video import VideoReadError

__all__ = [
    "VIDEO_EXTENSIONS",
    "FrameFolders",
    "FrameSource",
    "VideoFiles",
    "find_videos",
    "open_frame_source",
]

#: The file endings `find_videos` tries, in order.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".webm", ".mov", ".m4v")


@runtime_checkable
class FrameSource(Protocol):
    """The frames of the videos of a split, by video index (`FrameFolders`, `VideoFiles`).

    Example:
        >>> isinstance(FrameFolders([]), FrameSource), isinstance([], FrameSource)
        (True, False)
    """

    def num_frames(self, video_index: int) -> int:
        """How many frames video `video_index` has."""

    def read(self, video_index: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 RGB `(len(indices), H, W, 3)`: the frames at `indices` (0-based, in range)."""

    def describe(self, video_index: int) -> str:
        """What an error message names for video `video_index` (its file or folder)."""


class FrameFolders:
    """Frames of AVA frame folders (JPEG, BGR on disk), decoded with OpenCV.

    Args:
        frame_paths: per video, the paths of its frame files in order (`read_frame_lists`).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> paths = [os.path.join(folder, f"v_{i:06d}.jpg") for i in (1, 2)]
        >>> _ = [cv2.imwrite(p, np.full((4, 6, 3), 255, np.uint8)) for p in paths]
        >>> source = FrameFolders([paths])
        >>> source.num_frames(0), source.read(0, [1, 1, 0]).shape
        (2, (3, 4, 6, 3))
        >>> source.describe(0) == folder
        True
    """

    def __init__(self, frame_paths: Sequence[Sequence[str]]) -> None:
        self.frame_paths = frame_paths

    def num_frames(self, video_index: int) -> int:
        """How many frame files video `video_index` has."""
        return len(self.frame_paths[video_index])

    def read(self, video_index: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 RGB `(len(indices), H, W, 3)`: the decoded frame files at `indices`.

        Raises:
            VideoReadError: a frame file that cannot be read or decoded, or frames of
                different sizes.
        """
        frames = []
        for i in indices:
            path = self.frame_paths[video_index][int(i)]
            try:
                data = np.fromfile(path, np.uint8)
            except OSError as e:
                raise VideoReadError(path, f"cannot read frame: {e}") from None
            image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
            if image is None:
                raise VideoReadError(path, "not a decodable image")
            frames.append(image)
        if len({f.shape for f in frames}) != 1:
            raise VideoReadError(
                self.frame_paths[video_index][int(indices[0])],
                "the frames of this clip differ in size",
            )
        return np.ascontiguousarray(np.stack(frames)[..., ::-1])  # BGR -> RGB

    def describe(self, video_index: int) -> str:
        """The folder of video `video_index`'s frames."""
        paths = self.frame_paths[video_index]
        return os.path.dirname(paths[0]) if paths else f"video {video_index}"


class VideoFiles:
    """Frames of video files, resampled to 30 fps (frame i is time i / 30 of the file).

    Args:
        paths: per video, the path of its file.
        timeout: seconds after which reading one file is abandoned (`None`: no limit).

    Example:
        >>> video = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data",
        ...                      "sample.mp4")  # the repository's 10 s, 30 fps, 340x256 video
        >>> source = VideoFiles([video], timeout=60.0)
        >>> source.num_frames(0), source.read(0, [0, 299]).shape
        (300, (2, 256, 340, 3))
    """

    def __init__(self, paths: Sequence[str], timeout: float | None) -> None:
        self.paths = paths
        self.timeout = timeout
        self._counts = {}

    def num_frames(self, video_index: int) -> int:
        """How many frames video `video_index` has at 30 fps (counted once)."""
        if video_index not in self._counts:
            self._counts[video_index] = count_frames_at_fps(
                self.paths[video_index], fps=AVA_FPS, timeout=self.timeout
            )
        return self._counts[video_index]

    def read(self, video_index: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 RGB `(len(indices), H, W, 3)`: the frames at `indices` of the 30 fps video."""
        return read_frames_at_fps(
            self.paths[video_index], indices, fps=AVA_FPS, timeout=self.timeout
        )

    def describe(self, video_index: int) -> str:
        """The file of video `video_index`."""
        return self.paths[video_index]


def find_videos(video_dir: str, names: Sequence[str]) -> tuple[list[str | None], list[str]]:
    """The file `<video_dir>/<name><ext>` of each video, trying `VIDEO_EXTENSIONS` in order.

    Returns:
        `(paths, missing)`: per name its path (None when there is none), and the names
        without a file.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> open(os.path.join(folder, "a.mkv"), "w").close()
        >>> paths, missing = find_videos(folder, ["a", "b"])
        >>> os.path.basename(paths[0]), paths[1], missing
        ('a.mkv', None, ['b'])
    """
    paths, missing = [], []
    for name in names:
        found = None
        for ext in VIDEO_EXTENSIONS:
            candidate = os.path.join(video_dir, name + ext)
            if os.path.isfile(candidate):
                found = candidate
                break
        if found is None:
            missing.append(name)
        paths.append(found)
    return paths, missing


def open_frame_source(
    annotations: AVAAnnotations,
    video_dir: str | os.PathLike | None = None,
    timeout: float | None = 300.0,
) -> FrameSource:
    """The frames of a split: its frame folders, or with `video_dir` its video files.

    Raises:
        ValueError: a video of the split without a file in `video_dir`, naming the folder.

    Example:
        >>> ann = AVAAnnotations(["v"], [["frames/v/v_000001.jpg"]], [], 0)
        >>> open_frame_source(ann).describe(0)
        'frames/v'
    """
    if video_dir is None:
        return FrameFolders(annotations.frame_paths)
    paths, missing = find_videos(os.fspath(video_dir), annotations.videos)
    if missing:
        raise ValueError(
            f"No video file for {len(missing)} video(s), e.g. {missing[:3]!r} (looked for "
            f"{', '.join(VIDEO_EXTENSIONS)}). Received: video_dir={os.fspath(video_dir)!r}"
        )
    return VideoFiles(paths, timeout)
