"""JPEG-frame TFRecords: a writer, and a reader whose graph is TensorFlow ops only.

Each video becomes one `tf.train.SequenceExample` in the layout of TF Model
Garden / DMVR video datasets (`image/encoded` frames as a feature list, the
label in `clip/label/index`), plus what the PySlowFast sampling needs: every
frame's timestamp, the header frame count, the stream duration and the exact
frame rate. The reader reproduces the frame choice of the PyAV pipeline
with TensorFlow ops and decodes only the sampled JPEG frames, so it can run
on tf.data service workers.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from keras_slowfast import atomic
from keras_slowfast._checks import check_positive_int
from keras_slowfast.data import kinetics, sampling, transforms
from keras_slowfast.data import video as video_lib
from keras_slowfast.data._loading import as_read_error, check_on_error, report_failure

__all__ = [
    "frame_indices_from_timestamps_tf",
    "frame_tfrecord_dataset",
    "torch_linspace_tf",
    "write_frame_tfrecords",
]

# Context features.
PATH_KEY = "clip/data_path"
LABEL_KEY = "clip/label/index"
VIDEO_INDEX_KEY = "clip/video_index"
FRAME_RATE_KEY = "image/frame_rate"
FRAME_RATE_NUM_KEY = "video/frame_rate/numerator"
FRAME_RATE_DEN_KEY = "video/frame_rate/denominator"
HEADER_FRAMES_KEY = "video/header_frames"
DURATION_KEY = "video/duration"
HEIGHT_KEY = "image/height"
WIDTH_KEY = "image/width"
FORMAT_KEY = "image/format"
# Feature lists (one entry per frame, decoder output order).
IMAGE_KEY = "image/encoded"
PTS_KEY = "image/pts"

_INT64_MAX = np.iinfo(np.int64).max


def _int64(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _float(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def encode_video_example(path, label, video_index, info, pts, jpeg_frames, height, width):
    """Builds the `SequenceExample` of one video (see the module docstring).

    Args:
        path: the video path as listed (stored for reference).
        label: class index.
        video_index: position of the video in its list.
        info: the video's `VideoInfo`.
        pts: frame timestamps in decoder output order.
        jpeg_frames: JPEG bytes of the frames, same order.
        height: stored frame height.
        width: stored frame width.

    Returns:
        A `tf.train.SequenceExample`.
    """
    rate = info.frame_rate
    if rate is None:
        raise ValueError(f"`info.frame_rate` is required. Received: info={info!r}")
    context = {
        PATH_KEY: _bytes([os.fsencode(path)]),
        LABEL_KEY: _int64([label]),
        VIDEO_INDEX_KEY: _int64([video_index]),
        FRAME_RATE_KEY: _float([float(rate)]),
        FRAME_RATE_NUM_KEY: _int64([rate.numerator]),
        FRAME_RATE_DEN_KEY: _int64([rate.denominator]),
        HEADER_FRAMES_KEY: _int64([info.header_frames]),
        DURATION_KEY: _int64([-1 if info.duration is None else info.duration]),
        HEIGHT_KEY: _int64([height]),
        WIDTH_KEY: _int64([width]),
        FORMAT_KEY: _bytes([b"JPEG"]),
    }
    feature_lists = {
        IMAGE_KEY: tf.train.FeatureList(feature=[_bytes([f]) for f in jpeg_frames]),
        PTS_KEY: tf.train.FeatureList(feature=[_int64([int(p)]) for p in pts]),
    }
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list=feature_lists),
    )


def _encode_video(path, label, index, short_side, jpeg_quality, timeout):
    import cv2

    def convert(rgb):
        if short_side:
            h, w = rgb.shape[:2]
            nh, nw = transforms.short_side_scale_size(h, w, short_side)
            if (nh, nw) != (h, w):
                # Area averaging when shrinking (no aliasing), bilinear when enlarging.
                interp = cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR
                rgb = cv2.resize(rgb, (nw, nh), interpolation=interp)
        ok, buf = cv2.imencode(
            ".jpg", rgb[:, :, ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)]
        )
        if not ok:
            raise ValueError("JPEG encoding failed")
        return buf.tobytes(), rgb.shape[0], rgb.shape[1]

    info, pts, encoded = video_lib.decode_all_frames(path, convert=convert, timeout=timeout)
    height, width = encoded[0][1], encoded[0][2]
    example = encode_video_example(
        path, label, index, info, pts, [e[0] for e in encoded], height, width
    )
    return example.SerializeToString()


MANIFEST_VERSION = 1


def _settings_record(paths, labels, short_side, jpeg_quality, num_shards):
    digest = hashlib.sha256()
    for path, label in zip(paths, labels):
        digest.update(f"{path}\t{label}\n".encode("utf-8", "surrogateescape"))
    return {
        "version": MANIFEST_VERSION,
        "list_sha256": digest.hexdigest(),
        "num_videos": len(paths),
        "num_shards": num_shards,
        "short_side": short_side,
        "jpeg_quality": jpeg_quality,
    }


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_frame_tfrecords(
    list_file: str | os.PathLike | Iterable[tuple[str | os.PathLike, int | str]],
    output_prefix: str | os.PathLike,
    *,
    path_prefix: str | os.PathLike = "",
    num_shards: int = 1,
    short_side: int | None = None,
    jpeg_quality: int = 90,
    num_workers: int = 1,
    on_error: str = "skip",
    error_counter: video_lib.DecodeErrorCounter | None = None,
    timeout: float = 300.0,
    task_index: int = 0,
    num_tasks: int = 1,
) -> list[str]:
    """Writes videos as sharded TFRecords of JPEG-frame `SequenceExample`s; resumable.

    Video `i` of the list goes to shard `i % num_shards`; shards are named
    `{output_prefix}-{k:05d}-of-{num_shards:05d}.tfrecord`. Every decoded
    frame is stored (decoder output order) with its timestamp, so that the
    reader picks the same frames as the PyAV pipeline.

    Resumable and splittable: shards are written one after the other, each to a hidden
    temporary file (`.NAME.partial`) renamed onto its name once complete, then recorded in
    `{output_prefix}.manifest/` (one JSON file per shard: the videos written, those
    skipped, the settings). A rerun keeps the recorded shards and redoes the others, so a
    killed conversion restarts where it stopped. `task_index`/`num_tasks` split the shards
    among machines (task `t` writes shards `k` with `k % num_tasks == t`); the task that
    finds every shard recorded also writes `{output_prefix}.manifest.json`. None of these
    extra names matches the pattern `{output_prefix}-*`.

    Args:
        list_file: PySlowFast list file (`path label` per line) or a sequence
            of `(path, label)` pairs.
        output_prefix: path prefix of the shards (folders are created; local or mounted
            file system).
        path_prefix: folder prepended to the listed paths.
        num_shards: number of output files.
        short_side: if set, frames are resized so that their short side has
            this length (area interpolation when shrinking) before encoding.
        jpeg_quality: JPEG quality, 1 to 100.
        num_workers: videos decoded and encoded in parallel (threads).
        on_error: `"skip"` (warn, count, leave the video out) or `"raise"`.
        error_counter: a `DecodeErrorCounter` for videos skipped by this call.
        timeout: seconds after which decoding one video is abandoned.
        task_index: this task's index in `[0, num_tasks)`.
        num_tasks: tasks (machines or processes) sharing the conversion.

    Returns:
        The paths of this task's shards (all shards when `num_tasks=1`), complete.

    Raises:
        ValueError: bad arguments, or shards recorded under the same prefix with other
            settings (another list, size, quality or shard count).

    Example:

    >>> write_frame_tfrecords("train.csv", "tfrecords/train", num_shards=64, short_side=320)
    ... # doctest: +SKIP
    >>> # Machine 3 of 8, same command on each with its own --task-index:
    >>> write_frame_tfrecords("train.csv", "/shared/k400/train", num_shards=1024,
    ...                       short_side=320, task_index=3, num_tasks=8)  # doctest: +SKIP
    """
    paths, labels = kinetics.read_video_list(list_file, path_prefix)
    _check_writer_args(num_shards, num_workers, num_tasks, task_index, short_side, jpeg_quality)
    check_on_error(on_error)
    counter = error_counter if error_counter is not None else video_lib.DecodeErrorCounter()
    prefix = os.fspath(output_prefix)
    shards = _ShardFiles(prefix, num_shards)
    settings = _settings_record(paths, labels, short_side, jpeg_quality, num_shards)
    mine = range(task_index, num_shards, num_tasks)
    pending = [k for k in mine if not shards.recorded(k, settings)]
    # The videos to encode, in writing order (shard after shard).
    jobs = [(k, i) for k in pending for i in range(k, len(paths), num_shards)]

    def work(i):
        try:
            return _encode_video(paths[i], labels[i], i, short_side, jpeg_quality, timeout)
        except Exception as e:
            report_failure(paths[i], as_read_error(paths[i], e), on_error, counter)
            return None

    _write_shards(shards, settings, jobs, pending, work, num_workers, paths)
    shards.write_manifest(settings)
    return [shards.shard_paths[k] for k in mine]


def _check_writer_args(num_shards, num_workers, num_tasks, task_index, short_side, jpeg_quality):
    """The shard, worker and task counts, `short_side` and `jpeg_quality` of the writer."""
    check_positive_int("num_shards", num_shards)
    check_positive_int("num_workers", num_workers)
    check_positive_int("num_tasks", num_tasks)
    if (
        isinstance(task_index, bool)
        or not isinstance(task_index, (int, np.integer))
        or not 0 <= task_index < num_tasks
    ):
        raise ValueError(
            f"`task_index` must be an int in [0, num_tasks={num_tasks}). "
            f"Received: task_index={task_index!r}"
        )
    if short_side is not None:
        check_positive_int("short_side", short_side)
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int):
        raise ValueError(f"`jpeg_quality` must be an int. Received: jpeg_quality={jpeg_quality!r}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(
            f"`jpeg_quality` must be in [1, 100]. Received: jpeg_quality={jpeg_quality}"
        )


class _ShardFiles:
    """The shard and manifest names of `prefix` (its folders are created)."""

    def __init__(self, prefix, num_shards):
        self.prefix = prefix
        self.folder = os.path.dirname(prefix)
        if self.folder:
            os.makedirs(self.folder, exist_ok=True)
        manifest_dir = f"{prefix}.manifest"
        os.makedirs(manifest_dir, exist_ok=True)
        base = os.path.basename(prefix)
        self.names = [f"{base}-{k:05d}-of-{num_shards:05d}" for k in range(num_shards)]
        self.shard_paths = [os.path.join(self.folder, f"{n}.tfrecord") for n in self.names]
        self.entry_paths = [os.path.join(manifest_dir, f"{n}.json") for n in self.names]

    def partial(self, k):
        return os.path.join(self.folder, f".{self.names[k]}.tfrecord.partial")

    def recorded(self, k, settings):
        """Whether shard `k` is complete; a record with other settings is an error."""
        entry = _read_json(self.entry_paths[k])
        if entry is None:
            return False
        if entry.get("settings") != settings:
            raise ValueError(
                f"{self.entry_paths[k]} records shard {k} written with other settings "
                f"({entry.get('settings')}, now {settings}): use another prefix or delete "
                f"the old shards. Received: output_prefix={self.prefix!r}"
            )
        return os.path.exists(self.shard_paths[k])

    def write_manifest(self, settings):
        """`{prefix}.manifest.json`, once every shard is recorded (by any task)."""
        if not (
            all(os.path.exists(p) for p in self.shard_paths)
            and all(os.path.exists(p) for p in self.entry_paths)
        ):
            return
        entries = [_read_json(p) for p in self.entry_paths]
        manifest = {
            "settings": settings,
            "shards": [e["shard"] for e in entries],
            "num_written": sum(len(e["videos"]) for e in entries),
            "skipped": sorted(x for e in entries for x in e["skipped"]),
        }
        atomic.write_text_atomically(f"{self.prefix}.manifest.json", json.dumps(manifest, indent=1))


def _write_shards(files, settings, jobs, pending, work, num_workers, paths):
    """Encodes `jobs` (`(shard, video)`) with `work` in threads, writing shard after shard."""
    state = {"shard": None, "writer": None, "written": [], "skipped": []}

    def finish_shard():
        k = state["shard"]
        state["writer"].close()
        state["writer"] = None
        os.replace(files.partial(k), files.shard_paths[k])
        entry = {
            "shard": os.path.basename(files.shard_paths[k]),
            "videos": state["written"],
            "skipped": state["skipped"],
            "settings": settings,
        }
        atomic.write_text_atomically(files.entry_paths[k], json.dumps(entry, indent=1) + "\n")

    def start_shard(k):
        state.update(shard=k, written=[], skipped=[])
        state["writer"] = tf.io.TFRecordWriter(files.partial(k))

    try:
        # Shards with no video (more shards than videos) are written empty.
        with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
            # A bounded window of videos in flight, written in order: a slow video never
            # lets the encoded ones behind it pile up in memory.
            window = collections.deque()
            todo = iter(jobs)
            shards = iter(pending)
            for k, i in itertools.chain(todo, [(None, None)]):
                if k is not None:
                    window.append((k, i, pool.submit(work, i)))
                while window and (k is None or len(window) >= 2 * num_workers):
                    wk, wi, future = window.popleft()
                    while state["shard"] != wk:
                        if state["writer"] is not None:
                            finish_shard()
                        start_shard(next(shards))
                    record = future.result()
                    if record is None:
                        state["skipped"].append([wi, paths[wi]])
                    else:
                        state["writer"].write(record)
                        state["written"].append(wi)
            if state["writer"] is not None:
                finish_shard()
            for k in shards:  # the remaining (empty) shards
                start_shard(k)
                finish_shard()
    finally:
        if state["writer"] is not None:
            state["writer"].close()


# Reader ---------------------------------------------------------------------


def torch_linspace_tf(start: tf.Tensor | float, end: tf.Tensor | float, steps: int) -> tf.Tensor:
    """TensorFlow version of `sampling.torch_linspace` (float32, torch's halves).

    Example:

    >>> torch_linspace_tf(0.0, 63.0, 4).numpy().tolist()
    [0.0, 21.0, 42.0, 63.0]
    """
    start = tf.cast(start, tf.float32)
    end = tf.cast(end, tf.float32)
    if steps == 1:
        return tf.reshape(start, [1])
    step = tf.cast((end - start) / tf.constant(steps - 1, tf.float32), tf.float64)
    i = tf.range(steps)
    # One rounding per point, like torch's fused multiply-add (see `sampling.torch_linspace`).
    forward = tf.cast(start, tf.float64) + step * tf.cast(i, tf.float64)
    backward = tf.cast(end, tf.float64) - step * tf.cast(steps - 1 - i, tf.float64)
    return tf.cast(tf.where(i < steps // 2, forward, backward), tf.float32)


def _select_segment_tf(pts, start_pts, end_pts):
    """TensorFlow version of `sampling.select_segment`."""
    n = tf.shape(pts, out_type=tf.int64)[0]
    position = tf.range(n)
    at_or_after = pts >= start_pts
    past_end = tf.logical_and(at_or_after, pts > end_pts)
    first_past = tf.reduce_min(tf.where(past_end, position, n))
    kept = tf.logical_and(at_or_after, position <= first_past)
    kept_pos = tf.boolean_mask(position, kept)
    kept_pts = tf.boolean_mask(pts, kept)
    order = tf.argsort(kept_pts, stable=True)
    sorted_pts = tf.gather(kept_pts, order)
    sorted_pos = tf.gather(kept_pos, order)
    # Of frames sharing a timestamp the last decoded one wins.
    is_last = tf.concat([tf.not_equal(sorted_pts[1:], sorted_pts[:-1]), [True]], axis=0)
    is_last = is_last[: tf.size(sorted_pts)]
    return tf.boolean_mask(sorted_pos, is_last)


def frame_indices_from_timestamps_tf(
    pts: tf.Tensor | Sequence[int],
    fps: tf.Tensor | float,
    header_frames: tf.Tensor | int,
    duration: tf.Tensor | int,
    num_frames: int,
    sampling_rate: int,
    view_index: tf.Tensor | int,
    num_views: int = 10,
    target_fps: float = 30,
    seed: tf.Tensor | Sequence[int] | None = None,
) -> tf.Tensor:
    """TensorFlow version of `sampling.frame_indices_from_timestamps`.

    Args:
        pts: int64 timestamps of all frames, decoder output order.
        fps: float64 frame rate.
        header_frames: int64 header frame count (0 when unknown).
        duration: int64 stream duration in ticks (<= 0 when unknown).
        num_frames: frames per clip (Python int).
        sampling_rate: frame stride at `target_fps` (Python int).
        view_index: int tensor, `-1` for a random clip.
        num_views: number of test views (Python int).
        target_fps: frame rate the sampling rate refers to (Python number).
        seed: stateless seed, shape `(2,)`, for random clips.

    Returns:
        int64 `(num_frames,)` indices into `pts`.

    Example:
        >>> pts = tf.range(300, dtype=tf.int64) * 512  # 10 s at 30 fps, time base 1/15360
        >>> indices = frame_indices_from_timestamps_tf(pts, 30.0, 300, 153600, 8, 8, 9)
        >>> indices.numpy().tolist()  # as `sampling.frame_indices_from_timestamps`
        [213, 222, 231, 240, 249, 258, 267, 276]
    """
    pts = tf.cast(pts, tf.int64)
    fps = tf.cast(fps, tf.float64)
    header_frames = tf.cast(header_frames, tf.int64)
    duration = tf.cast(duration, tf.int64)
    view_index = tf.cast(view_index, tf.int64)
    if seed is None:
        seed = tf.constant([0, 0], tf.int64)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    f64 = tf.float64

    def start_index(size, clip, draw_seed):
        delta = tf.maximum(size - clip, tf.constant(0.0, f64))
        uniform = tf.random.stateless_uniform([], draw_seed, minval=0.0, maxval=1.0, dtype=f64)
        random_start = uniform * delta
        view_start = delta * tf.cast(view_index, f64) / float(num_views)
        return tf.where(view_index < 0, random_start, view_start)

    selective = tf.logical_and(duration > 0, header_frames > 0)
    header_f = tf.cast(header_frames, f64)
    # The NumPy functions applied to a float64 tensor: the same operation order.
    window_clip = sampling.window_clip_size(num_frames, sampling_rate, fps, target_fps)
    start = start_index(header_f, window_clip, seeds[0])
    end = start + window_clip - 1.0
    ticks_per_frame = tf.cast(duration, f64) / tf.maximum(header_f, 1.0)
    start_pts = tf.where(selective, tf.cast(start * ticks_per_frame, tf.int64), 0)
    end_pts = tf.where(selective, tf.cast(end * ticks_per_frame, tf.int64), _INT64_MAX)
    segment = _select_segment_tf(pts, start_pts, end_pts)
    length = tf.size(segment, out_type=tf.int64)
    tf.debugging.assert_positive(length, message="no frame in the clip's timestamp window")
    length_f = tf.cast(length, f64)
    segment_clip = sampling.segment_clip_size(num_frames, sampling_rate, fps, target_fps)
    seg_start = tf.where(
        selective, tf.constant(0.0, f64), start_index(length_f, segment_clip, seeds[1])
    )
    seg_end = seg_start + segment_clip - 1.0
    values = torch_linspace_tf(seg_start, seg_end, num_frames)
    values = tf.clip_by_value(values, 0.0, tf.cast(length - 1, tf.float32))
    positions = tf.cast(values, tf.int64)  # truncation toward zero
    return tf.gather(segment, positions)


def _parse(serialized):
    context, sequence = tf.io.parse_single_sequence_example(
        serialized,
        context_features={
            LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
            VIDEO_INDEX_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
            FRAME_RATE_NUM_KEY: tf.io.FixedLenFeature([], tf.int64),
            FRAME_RATE_DEN_KEY: tf.io.FixedLenFeature([], tf.int64),
            HEADER_FRAMES_KEY: tf.io.FixedLenFeature([], tf.int64),
            DURATION_KEY: tf.io.FixedLenFeature([], tf.int64),
        },
        sequence_features={
            IMAGE_KEY: tf.io.FixedLenSequenceFeature([], tf.string),
            PTS_KEY: tf.io.FixedLenSequenceFeature([], tf.int64),
        },
    )
    fps = tf.cast(context[FRAME_RATE_NUM_KEY], tf.float64) / tf.cast(
        context[FRAME_RATE_DEN_KEY], tf.float64
    )
    return {
        "encoded": sequence[IMAGE_KEY],
        "pts": sequence[PTS_KEY],
        "fps": fps,
        "header_frames": context[HEADER_FRAMES_KEY],
        "duration": context[DURATION_KEY],
        "label": tf.cast(context[LABEL_KEY], tf.int32),
        "video_index": tf.cast(context[VIDEO_INDEX_KEY], tf.int32),
    }


def _decode_jpegs(encoded):
    return tf.map_fn(
        lambda b: tf.io.decode_jpeg(b, channels=3, dct_method="INTEGER_ACCURATE"),
        encoded,
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
        parallel_iterations=16,
    )


def _match_files(file_pattern):
    """The files of a pattern, a path, or a list of them; each entry must match a file."""
    entries = [file_pattern] if isinstance(file_pattern, (str, os.PathLike)) else file_pattern
    files = []
    for entry in entries:
        matched = sorted(tf.io.gfile.glob(os.fspath(entry)))
        if not matched:
            raise ValueError(
                f"No TFRecord file matches {os.fspath(entry)!r}. "
                f"Received: file_pattern={file_pattern!r}"
            )
        files.extend(matched)
    if not files:
        raise ValueError(f"No TFRecord file matches. Received: file_pattern={file_pattern!r}")
    return files


def frame_tfrecord_dataset(
    file_pattern: str | os.PathLike | Sequence[str | os.PathLike],
    mode: str = "train",
    *,
    num_frames: int = 8,
    sampling_rate: int = 8,
    target_fps: float = 30,
    jitter_scales: Sequence[int] = (256, 320),
    crop_size: int | None = None,
    num_temporal_views: int = 10,
    num_spatial_crops: int = 3,
    batch_size: int | None = None,
    shuffle: bool | None = None,
    shuffle_buffer: int = 256,
    seed: int | None = None,
    num_parallel_reads: int = tf.data.AUTOTUNE,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    deterministic: bool | None = None,
    drop_remainder: bool | None = None,
    random_flip: bool = True,
    on_error: str = "skip",
) -> tf.data.Dataset:
    """Kinetics-style dataset over JPEG-frame TFRecords (TensorFlow ops only).

    Same modes, arguments and outputs as `kinetics_dataset`: the sampled
    frame indices are those of the PyAV pipeline (computed from the stored
    timestamps and header fields), only the sampled JPEG frames are decoded
    (in test mode, the union of all views' frames, once), then resized and
    cropped as in PySlowFast. Pixels differ from the video pipeline by the
    JPEG compression (and by any `short_side` resize at writing time).

    Args:
        file_pattern: glob pattern, file path or list of TFRecord files.
        mode: `"train"`, `"val"` or `"test"`.
        num_frames: frames per clip.
        sampling_rate: frame stride at `target_fps`.
        target_fps: frame rate the sampling rate refers to.
        jitter_scales: `(min, max)` short side for train/val.
        crop_size: crop side; defaults to 224 (train/val) or 256 (test).
        num_temporal_views: test views per video.
        num_spatial_crops: test crops per view (3, or 1 for the centre crop).
        batch_size: defaults to 64 (train/val) or 8 (test).
        shuffle: shuffle files and records; defaults to True for train only.
        shuffle_buffer: record shuffle buffer (videos).
        seed: seed for shuffling and augmentation.
        num_parallel_reads: files read in parallel.
        num_parallel_calls: parallel decoding calls.
        deterministic: keep element order; defaults to True except for
            unseeded training.
        drop_remainder: drop the last partial batch; defaults to True for train.
        random_flip: flip train/val clips at random.
        on_error: `"skip"`: drop records that fail to decode (with a logged
            warning); `"raise"`: stop with the error.

    Returns:
        A batched `tf.data.Dataset` (`(clips, labels)`, or in test mode
        `(clips, labels, video_index, view_index)`).

    Example:

    >>> ds = frame_tfrecord_dataset("tfrecords/train-*", "train", num_frames=32,
    ...                             sampling_rate=2)  # doctest: +SKIP
    """
    s = kinetics.ClipSettings(
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
    check_positive_int("shuffle_buffer", shuffle_buffer)
    files = _match_files(file_pattern)
    ds = _records(files, s, shuffle_buffer, num_parallel_reads)
    if mode == "test":
        ds = ds.map(
            _test_views_decoder(s),
            num_parallel_calls=num_parallel_calls,
            deterministic=s.deterministic,
        )
        if on_error == "skip":
            ds = ds.ignore_errors(log_warning=True)
        ds = ds.flat_map(
            lambda frames, table, lab, vid: kinetics.cut_test_views(frames, table, lab, vid, s)
        )
    else:
        ds = tf.data.Dataset.zip((ds, s.element_seeds()))
        ds = ds.map(
            _clip_decoder(s), num_parallel_calls=num_parallel_calls, deterministic=s.deterministic
        )
        if on_error == "skip":
            ds = ds.ignore_errors(log_warning=True)
    return kinetics.finish(ds, s)


def _records(files, s, shuffle_buffer, num_parallel_reads):
    """The serialized records of `files`, interleaved (and shuffled when `s.shuffle`)."""
    files_ds = tf.data.Dataset.from_tensor_slices(files)
    if s.shuffle:
        files_ds = files_ds.shuffle(len(files), seed=s.seed, reshuffle_each_iteration=True)
    ds = files_ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 16),
        num_parallel_calls=num_parallel_reads,
        deterministic=s.deterministic,
    )
    if s.shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=s.seed, reshuffle_each_iteration=True)
    return ds


def _test_views_decoder(s):
    """`decode_views(serialized) -> (frames, table, label, video_index)` of test mode."""
    T, C = s.num_frames, s.crop_size

    def decode_views(serialized):
        x = _parse(serialized)
        table = tf.stack(
            [
                frame_indices_from_timestamps_tf(
                    x["pts"],
                    x["fps"],
                    x["header_frames"],
                    x["duration"],
                    T,
                    s.sampling_rate,
                    view,
                    s.num_temporal_views,
                    s.target_fps,
                )
                for view in range(s.num_temporal_views)
            ]
        )
        unique, positions = tf.unique(tf.reshape(table, [-1]), out_idx=tf.int32)
        frames = _decode_jpegs(tf.gather(x["encoded"], unique))
        frames = transforms.resize_short_side_tf(frames, C)
        table = tf.reshape(positions, [s.num_temporal_views, T])
        return frames, table, x["label"], x["video_index"]

    return decode_views


def _clip_decoder(s):
    """`decode_clip(serialized, seed) -> (clip, label)` of train/val mode."""
    T, C = s.num_frames, s.crop_size

    def decode_clip(serialized, seed_value):
        x = _parse(serialized)
        seed = tf.stack([seed_value, tf.constant(0x5EED, tf.int64)])
        seeds = tf.random.experimental.stateless_split(seed, num=2)
        indices = frame_indices_from_timestamps_tf(
            x["pts"],
            x["fps"],
            x["header_frames"],
            x["duration"],
            T,
            s.sampling_rate,
            -1,
            s.num_temporal_views,
            s.target_fps,
            seeds[0],
        )
        frames = _decode_jpegs(tf.gather(x["encoded"], indices))
        frames = tf.ensure_shape(frames, [T, None, None, 3])
        clip = transforms.random_scale_crop_flip_tf(
            frames, s.min_scale, s.max_scale, C, seeds[1], flip=s.random_flip
        )
        return clip, x["label"]

    return decode_clip
