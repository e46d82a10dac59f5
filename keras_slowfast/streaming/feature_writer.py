"""Writing the window features of many videos to a folder, resumably.

:func:`save_features` extracts each video's features (:func:`extract_features`) and
writes them with their sidecar; a video whose outputs exist and were written with the
same settings is skipped, so an interrupted run resumes where it stopped.
"""

import dataclasses
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_slowfast._checks import check_positive_number
from keras_slowfast.data._loading import VIDEO_LIST_SUFFIXES, read_video_list_entries
from keras_slowfast.progress import ProgressBar
from keras_slowfast.streaming._clip_settings import DEFAULT_READ_TIMEOUT_S, resolve_clip
from keras_slowfast.streaming.features import Features, extract_features, feature_model

if TYPE_CHECKING:
    import keras

__all__ = ["SaveSummary", "save_features", "video_list"]

_FORMATS = ("npy", "hdf5")
# The file of `output_dir` listing the videos that failed, with the reasons (tab-separated).
FAILURES_FILE = "failures.txt"


@dataclasses.dataclass(frozen=True)
class SaveSummary:
    """What :func:`save_features` did.

    Attributes:
        extracted: `(video, output name)` of the videos written by this call.
        existing: `(video, output name)` of the videos already complete (skipped).
        failed: `(video, reason)` of the videos that could not be read.
        failures_file: the file listing `failed` (tab-separated), or `None` when none
            failed.

    Example:
        >>> SaveSummary([("a.mp4", "a")], [], [], None).extracted
        [('a.mp4', 'a')]
    """

    extracted: list[tuple[str, str]]
    existing: list[tuple[str, str]]
    failed: list[tuple[str, str]]
    failures_file: str | None


def video_list(
    videos: str | os.PathLike, path_prefix: str | os.PathLike | None = None
) -> list[tuple[str, str]]:
    """`(path, output name)` of each video: a video file, or a list file of video paths.

    A list file (`.txt`, `.csv`, `.lst`, `.list`) has one video path per line (its first
    comma- or whitespace-separated field; blank lines and `#` comments ignored). Relative
    paths are taken under `path_prefix` if given, else under the list's folder. The output
    name is the path relative to that folder without its extension (`a/b/clip.mp4` ->
    `a/b/clip`), so equal file names in different folders stay apart; an absolute path
    outside it keeps its whole path (without the root). A single video is named after its
    file.

    Raises:
        ValueError: for a missing list, an empty list, or two videos with one output name.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with open(os.path.join(tmp, "list.txt"), "w") as f:
        ...         _ = f.write("a/clip.mp4\\n# comment\\nb/clip.mp4 label\\n")
        ...     [name for _, name in video_list(os.path.join(tmp, "list.txt"))]
        ['a/clip', 'b/clip']
        >>> video_list("videos/k00.mp4")
        [('videos/k00.mp4', 'k00')]
    """
    source = os.fspath(videos)
    if not source.lower().endswith(VIDEO_LIST_SUFFIXES):
        if path_prefix is not None and not os.path.isabs(source) and not os.path.exists(source):
            source = os.path.join(path_prefix, source)
        stem = os.path.splitext(os.path.basename(source.rstrip("/")))[0]
        if not stem:
            raise ValueError(f"The video path has no file name. Received: videos={videos!r}")
        return [(source, stem)]
    if not os.path.isfile(source):
        raise ValueError(f"No video list file at this path. Received: videos={videos!r}")
    base = os.path.abspath(
        path_prefix if path_prefix is not None else os.path.dirname(os.path.abspath(source))
    )
    out = []
    owners = {}
    for entry in read_video_list_entries(source):
        path = entry if os.path.isabs(entry) else os.path.join(base, entry)
        rel = os.path.relpath(os.path.abspath(path), base)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            rel = os.path.splitdrive(os.path.abspath(path))[1].lstrip(os.sep)
        name = os.path.splitext(os.path.normpath(rel))[0].replace(os.sep, "/")
        if name in owners and owners[name] != path:
            raise ValueError(
                "Two videos of the list would write the same output name "
                f"{name!r}. Received: videos={[owners[name], path]!r}"
            )
        if name not in owners:
            owners[name] = path
            out.append((path, name))
    if not out:
        raise ValueError(f"The video list names no video. Received: videos={videos!r}")
    return out


def _settings(
    video: str,
    preset: str,
    weights: str | None,
    stride: float,
    num_frames: int,
    sampling_rate: int,
    fmt: str,
) -> dict[str, Any]:
    """The settings a video's outputs record, and must match to count as complete."""
    return {
        "video": str(video),
        "preset": preset,
        "weights": weights,
        "stride": float(stride),
        "num_frames": int(num_frames),
        "sampling_rate": int(sampling_rate),
        "format": fmt,
    }


def _complete(folder: str, name: str, settings: dict[str, Any]) -> bool:
    """Whether `name`'s outputs exist, are whole and were written with `settings`."""
    import json

    base = os.path.join(folder, name)
    try:
        if settings["format"] == "npy":
            with open(base + ".json", encoding="utf-8") as f:
                meta = json.load(f)
            shape = np.load(base + ".npy", mmap_mode="r").shape
        else:
            import h5py

            with h5py.File(base + ".h5", "r") as f:
                meta = json.loads(f.attrs["metadata"])
                shape = f["features"].shape
    except Exception:  # missing, partial or unreadable: extract again
        return False
    if any(meta.get(k) != v for k, v in settings.items()):
        return False
    return tuple(shape) == (len(meta.get("times", ())), meta.get("dim"))


def _package_version() -> str:
    """The installed package's version (the package root is not imported from here)."""
    from importlib import metadata

    try:
        return metadata.version("keras-slowfast")
    except metadata.PackageNotFoundError:
        return "unknown"


def _write(folder: str, name: str, feats: Features, settings: dict[str, Any]) -> None:
    """Writes `name`'s features and sidecar (or `.h5`) atomically, the sidecar last."""
    import json

    from keras_slowfast.atomic import atomic_path

    base = os.path.join(folder, name)
    os.makedirs(os.path.dirname(base), exist_ok=True)
    meta = dict(
        settings,
        dim=feats.dim,
        fps=feats.fps,
        total_frames=feats.total_frames,
        target_fps=feats.target_fps,
        crop_size=feats.crop_size,
        times=feats.times.tolist(),
        starts=feats.starts.tolist(),
        ends=feats.ends.tolist(),
        frame_indices=feats.frame_indices.tolist(),
        keras_slowfast_version=_package_version(),
    )
    if settings["format"] == "npy":
        with atomic_path(base + ".npy", suffix=".npy") as tmp:
            np.save(tmp, feats.features)
        meta["features_file"] = os.path.basename(base) + ".npy"
        # Written last: its presence marks the video as complete.
        with atomic_path(base + ".json") as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps(meta, indent=1) + "\n")
        return
    import h5py

    with atomic_path(base + ".h5", suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=feats.features)
            f.create_dataset("times", data=feats.times)
            f.create_dataset("starts", data=feats.starts)
            f.create_dataset("ends", data=feats.ends)
            f.create_dataset("frame_indices", data=feats.frame_indices)
            f.attrs["metadata"] = json.dumps(meta)


def _check_format(format: str) -> None:
    """Raises unless `format` is one of `_FORMATS` and its library is installed."""
    if format not in _FORMATS:
        raise ValueError(f"`format` must be one of {_FORMATS}. Received: format={format!r}")
    if format == "hdf5":
        try:
            import h5py  # noqa: F401
        except ImportError as e:
            raise ImportError(
                "`format='hdf5'` needs h5py: pip install 'keras-slowfast[hdf5]'"
            ) from e


def _record_failures(failures_path: str, failed: list[tuple[str, str]]) -> None:
    """Writes `failed` as `path<TAB>reason` lines (each reason on one line), atomically."""
    from keras_slowfast.atomic import write_text_atomically

    text = "".join(f"{p}\t{' '.join(str(r).split())}\n" for p, r in failed)
    write_text_atomically(failures_path, text)


def _extract_and_write(
    model: "keras.Model",
    path: str,
    name: str,
    output_dir: str,
    settings: dict[str, Any],
    options: dict[str, Any],
) -> str | None:
    """Extracts and writes one video's features: `None`, or why the video was skipped."""
    try:
        feats = extract_features(model, path, **options)
    except Exception as e:  # any unreadable video is skipped and reported
        return str(e)
    _write(output_dir, name, feats, settings)
    return None


def save_features(
    model: "keras.Model",
    videos: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    preset: str,
    weights: str | None = None,
    format: str = "npy",
    window_stride_seconds: float = 1.0,
    batch_size: int = 8,
    num_frames: int | None = None,
    sampling_rate: int | None = None,
    path_prefix: str | os.PathLike | None = None,
    timeout: float | None = 3600.0,
    read_timeout: float = DEFAULT_READ_TIMEOUT_S,
    progress: bool = False,
    on_video: Callable[[str, str, str], Any] | None = None,
) -> SaveSummary:
    """Writes the window features of a video or a list of videos to a folder, resumably.

    Per video (named by :func:`video_list`): `<name>.npy` (float32 `(windows, dim)`) and a
    `<name>.json` sidecar (the video, preset, weights, dim, fps, frame count, window
    times, starts, ends and frame indices, clip settings, stride and package version), or
    with `format="hdf5"` one `<name>.h5` holding the same (datasets `features`, `times`,
    `starts`, `ends`, `frame_indices`; the sidecar as JSON in the `metadata` attribute).
    Every file is written to a temporary name and renamed; the sidecar (or the `.h5`)
    comes last, so it marks a complete video: a video whose outputs exist and match these
    settings is skipped, and an interrupted run leaves no partial file. A video that
    cannot be read (or takes longer than `timeout`) is skipped and listed, with the
    reason, in `output_dir/failures.txt`.

    Args:
        model: the feature model (see :func:`feature_model`) taking uint8 clips.
        videos: a video path or a list file.
        output_dir: the folder to write to.
        preset: the model's preset (clip settings and crop).
        weights: the weights' description, recorded in the sidecar and compared on resume.
        format: `"npy"` or `"hdf5"` (needs the optional `h5py`).
        window_stride_seconds, batch_size, num_frames, sampling_rate, timeout,
            read_timeout, progress: as for :func:`extract_features` (`timeout` is per video).
        path_prefix: folder of the list's relative paths (default: the list's folder).
        on_video: optional `fn(path, name, status)` called per video with status
            `"extracted"`, `"existing"` or the failure reason.

    Returns:
        A :class:`SaveSummary`.

    Example:
        >>> net = feature_model(keras_slowfast.SlowFastR50(weights="k400"))  # doctest: +SKIP
        >>> save_features(net, "videos.txt", "features",
        ...               preset="slowfast_8x8_r50")  # doctest: +SKIP
    """
    _check_format(format)
    stride = check_positive_number("window_stride_seconds", window_stride_seconds)
    num_frames, sampling_rate, _, _ = resolve_clip(preset, num_frames, sampling_rate, None)
    entries = video_list(videos, path_prefix)
    model = feature_model(model)  # once: each new model would be traced again
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    failures_path = os.path.join(output_dir, FAILURES_FILE)
    options = dict(
        preset=preset,
        window_stride_seconds=stride,
        batch_size=batch_size,
        num_frames=num_frames,
        sampling_rate=sampling_rate,
        timeout=timeout,
        read_timeout=read_timeout,
    )
    extracted, existing, failed = [], [], []
    bar = ProgressBar(len(entries), "features", unit="videos", enabled=bool(progress))
    with bar:
        for path, name in entries:
            settings = _settings(path, preset, weights, stride, num_frames, sampling_rate, format)
            if _complete(output_dir, name, settings):
                existing.append((path, name))
                status = "existing"
            else:
                reason = _extract_and_write(model, path, name, output_dir, settings, options)
                if reason is None:
                    extracted.append((path, name))
                    status = "extracted"
                else:
                    failed.append((path, reason))
                    _record_failures(failures_path, failed)
                    status = reason
            if on_video is not None:
                on_video(path, name, status)
            bar.update()
    if not failed and os.path.exists(failures_path):
        os.remove(failures_path)  # from an earlier run whose failures are now resolved
    return SaveSummary(extracted, existing, failed, failures_path if failed else None)
