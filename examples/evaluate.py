"""Multi-view evaluation of a SlowFast classifier with its preset's published test protocol.

The clip (frames, sampling rate or segments, fps), the test crop size, the views (temporal
clips x spatial crops) and how they combine (sum or max) default to the test protocol of
the preset (`keras_slowfast.presets`): the row of `--arch` and a named `--weights` set, or
the one `--preset` names (e.g. for a `.weights.h5` file fine-tuned with a published
recipe), else the architecture's first row. Every flag overrides its part.

- Kinetics: 10 uniformly spaced clips x 3 crops of 256x256, softmax scores summed;
- Charades: 10 clips x 3 crops, the maximum of the sigmoid scores;
- Something-Something v2: one clip of the middle frames of equal segments of the whole
  video at 30 fps; the start crop (PySlowFast) or 3 crops (PyTorchVideo).

Top-1 / top-5 accuracy is computed on the combined scores (`keras_slowfast.evaluation`).

    python examples/evaluate.py --test_list k400/val.csv --path_prefix k400/videos \\
        --arch slowfast_8x8_r50 --weights k400

    python examples/evaluate.py --test_list ssv2/val.csv --arch slowfast_16x8_r50 \\
        --weights ssv2

    python examples/evaluate.py --test_list mine/test.csv --arch slowfast_8x8_r50 \\
        --classes 10 --weights runs/mine/final.weights.h5 --output_json scores.json
"""

import json
import sys
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from keras_slowfast import data, evaluation, hub, presets
from keras_slowfast.atomic import write_text_atomically
from keras_slowfast.inference import video_views

FLAGS = flags.FLAGS

# Classifier architectures and presets of the presets table.
ARCHS = presets.architecture_names("classifier")
PRESETS = presets.preset_names("classifier")

flags.DEFINE_string("test_list", None, "Test list file (`path label` per line).")
flags.DEFINE_list("test_tfrecords", None, "Test JPEG-frame TFRecord patterns (instead of a list).")
flags.DEFINE_string("path_prefix", "", "Folder prepended to the paths of the list file.")
flags.DEFINE_enum("arch", "slowfast_8x8_r50", list(ARCHS), "Architecture.")
flags.DEFINE_enum(
    "preset",
    None,
    list(PRESETS),
    "Preset whose test protocol gives the defaults below; default: the row of --arch and "
    "a named --weights set, else the first row of --arch.",
)
flags.DEFINE_integer("classes", None, "Classes of the classifier; default: the preset's.")
flags.DEFINE_integer("width_per_group", None, "Base width of narrow models (default 64).")
flags.DEFINE_string(
    "weights", None, "Weights: a named set (e.g. k400), .weights.h5, .pyth or .pkl."
)
flags.DEFINE_integer("num_frames", None, "Frames (or segments) per clip; default: the preset's.")
flags.DEFINE_integer(
    "sampling_rate", None, "Frame stride at --target_fps; default: the preset's."
)
flags.DEFINE_float("target_fps", None, "Frame rate of the sampling; default: the preset's (30).")
flags.DEFINE_enum(
    "sampling",
    None,
    ["uniform", "segment"],
    "Temporal sampling: uniform clips (Kinetics) or one frame per segment of the whole "
    "video (SSv2); default: the preset's.",
)
flags.DEFINE_integer(
    "crop_size", None, "Test crop side (short side is resized to it); default: the preset's."
)
flags.DEFINE_integer(
    "train_crop_size", None, "Crop the model was trained at (head pooling window); default: "
    "the preset's."
)
flags.DEFINE_integer("num_temporal_views", None, "Clips per video; default: the preset's.")
flags.DEFINE_enum(
    "num_spatial_crops",
    None,
    ["1", "3"],
    "Crops per clip: 3 (start, centre, end of the long side) or 1 (the preset's one crop, "
    "else the centre); default: the preset's.",
)
flags.DEFINE_integer("batch_size", 8, "Views per batch.")
flags.DEFINE_enum(
    "ensemble_method",
    None,
    ["sum", "max"],
    "How the views of a video combine; default: the preset's.",
)
flags.DEFINE_string("output_json", None, "Write the metrics and per-video scores here.")


def protocol_preset():
    """The preset whose protocol gives the defaults."""
    if FLAGS.preset:
        return presets.get_preset(FLAGS.preset)
    weights = FLAGS.weights or ""
    if weights and not weights.endswith(hub.CHECKPOINT_SUFFIXES + (".weights.h5",)):
        try:
            return presets.find_preset(FLAGS.arch, weights)
        except ValueError:
            pass  # hub.build reports the unknown name
    return presets.get_preset(FLAGS.arch)


def settings(protocol):
    """The test settings: the protocol's, with the flags given on top."""
    crops = protocol.crop_indices
    if FLAGS.num_spatial_crops is not None and int(FLAGS.num_spatial_crops) != len(crops):
        crops = (1,) if FLAGS.num_spatial_crops == "1" else (0, 1, 2)
    return dict(
        num_frames=FLAGS.num_frames or protocol.num_frames,
        sampling_rate=FLAGS.sampling_rate or protocol.sampling_rate,
        target_fps=FLAGS.target_fps or protocol.target_fps,
        sampling=FLAGS.sampling or protocol.sampling,
        crop_size=FLAGS.crop_size or protocol.test_crop_size,
        num_temporal_views=FLAGS.num_temporal_views or protocol.temporal_views,
        crop_indices=crops,
        ensemble_method=FLAGS.ensemble_method or protocol.ensemble,
    )


def build_model(num_frames):
    kwargs = dict(num_frames=num_frames)
    for name in ("classes", "train_crop_size", "width_per_group"):
        if getattr(FLAGS, name) is not None:
            kwargs[name] = getattr(FLAGS, name)
    return hub.build(FLAGS.arch, FLAGS.weights, **kwargs)


def dataset_batches(s):
    """`(clips, labels, video_index)` batches of the tf.data pipelines (uniform sampling)."""
    kwargs = dict(
        mode="test",
        num_frames=s["num_frames"],
        sampling_rate=s["sampling_rate"],
        target_fps=s["target_fps"],
        crop_size=s["crop_size"],
        num_temporal_views=s["num_temporal_views"],
        num_spatial_crops=len(s["crop_indices"]),
        batch_size=FLAGS.batch_size,
    )
    if FLAGS.test_list:
        dataset = data.kinetics_dataset(FLAGS.test_list, path_prefix=FLAGS.path_prefix, **kwargs)
    else:
        dataset = data.frame_tfrecord_dataset(FLAGS.test_tfrecords, **kwargs)
    for clips, labels, video_index, _ in dataset:
        yield clips, labels.numpy(), video_index.numpy()


def video_batches(s, paths, labels):
    """`(clips, labels, video_index)` batches decoded video by video (any sampling and crops).

    A video that cannot be read is reported and skipped, as the tf.data pipeline does.
    """
    pending = []
    for index, (path, label) in enumerate(zip(paths, labels)):
        views = video_views(
            path,
            s["num_frames"],
            s["sampling_rate"],
            views=s["num_temporal_views"] * len(s["crop_indices"]),
            size=s["crop_size"],
            temporal_views=s["num_temporal_views"],
            crop_indices=s["crop_indices"],
            sampling=s["sampling"],
            target_fps=s["target_fps"],
        )
        try:
            groups = list(views)
        except data.VideoReadError as e:
            print(f"skipped: {e}", file=sys.stderr, flush=True)
            continue
        pending += [(clip, label, index) for group in groups for clip in group]
        while len(pending) >= FLAGS.batch_size:
            yield _stack(pending[: FLAGS.batch_size])
            pending = pending[FLAGS.batch_size :]
    if pending:
        yield _stack(pending)


def _stack(items):
    clips, labels, videos = zip(*items)
    return np.stack(clips), np.array(labels), np.array(videos)


def main(argv):
    del argv
    if bool(FLAGS.test_list) == bool(FLAGS.test_tfrecords):
        raise app.UsageError("Give exactly one of --test_list and --test_tfrecords.")
    if not FLAGS.weights:
        raise app.UsageError("--weights is required.")
    preset = protocol_preset()
    s = settings(preset.protocol)
    by_pipeline = s["sampling"] == "uniform" and s["crop_indices"] in ((1,), (0, 1, 2))
    if not by_pipeline and not FLAGS.test_list:
        raise app.UsageError(
            f"{s['sampling']} sampling with crops {s['crop_indices']} reads videos: give "
            "--test_list."
        )
    num_views = s["num_temporal_views"] * len(s["crop_indices"])
    clip = (
        f"{s['num_frames']} frames by segment sampling"
        if s["sampling"] == "segment"
        else f"{s['num_frames']} frames every {s['sampling_rate']}"
    )
    print(
        f"protocol of {preset.name}: {clip} at {s['target_fps']:g} fps, "
        f"{s['num_temporal_views']} clips x crops {s['crop_indices']} of {s['crop_size']}, "
        f"{s['ensemble_method']}",
        flush=True,
    )
    num_videos = None
    if FLAGS.test_list:
        paths, labels = data.read_video_list(FLAGS.test_list, FLAGS.path_prefix)
        num_videos = len(paths)
    batches = dataset_batches(s) if by_pipeline else video_batches(s, paths, labels)
    model = build_model(s["num_frames"])
    classes = model.output_shape[-1]
    predict = tf.function(lambda clips: model(clips, training=False))
    aggregator = evaluation.MultiViewAggregator(
        num_views=num_views, num_videos=num_videos, ensemble_method=s["ensemble_method"]
    )
    start, seen = time.time(), 0
    for clips, batch_labels, video_index in batches:
        scores = predict(clips).numpy()
        aggregator.update(video_index, scores, labels=batch_labels)
        seen += len(scores)
    result = aggregator.result()
    ks = (1, 5) if classes >= 5 else (1,)
    metrics = evaluation.topk_accuracy(result.scores, result.labels, ks=ks)
    elapsed = time.time() - start
    print(
        f"{len(result.video_indices)} videos, {seen} views ({seen / elapsed:.1f} views/s): "
        + ", ".join(f"{k} {100 * v:.2f}%" for k, v in metrics.items()),
        flush=True,
    )
    if FLAGS.output_json:
        report = dict(
            metrics,
            preset=preset.name,
            num_videos=int(len(result.video_indices)),
            num_views=int(seen),
            video_indices=result.video_indices.tolist(),
            labels=np.asarray(result.labels).tolist(),
            scores=np.asarray(result.scores).tolist(),
        )
        write_text_atomically(FLAGS.output_json, json.dumps(report))


if __name__ == "__main__":
    app.run(main)
