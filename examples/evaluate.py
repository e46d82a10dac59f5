"""Multi-view evaluation of a SlowFast classifier (PySlowFast's Kinetics test protocol).

Every video is cut into `--num_temporal_views` uniformly spaced clips times
`--num_spatial_crops` crops of `--crop_size` (10 x 3 of 256x256 in the published results);
the softmax scores of a video's views are summed (or max-pooled) and top-1 / top-5
accuracy is computed on the combined scores (`keras_slowfast.evaluation`).

    python examples/evaluate.py --test_list k400/val.csv --path_prefix k400/videos \\
        --arch slowfast_8x8_r50 --weights k400

    python examples/evaluate.py --test_list mine/test.csv --arch slowfast_8x8_r50 \\
        --classes 10 --weights runs/mine/final.weights.h5 --output_json scores.json
"""

import json
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from keras_slowfast import data, evaluation, hub, presets

FLAGS = flags.FLAGS

# Classifier architectures of the presets table.
ARCHS = presets.architecture_names("classifier")

flags.DEFINE_string("test_list", None, "Test list file (`path label` per line).")
flags.DEFINE_list("test_tfrecords", None, "Test JPEG-frame TFRecord patterns (instead of a list).")
flags.DEFINE_string("path_prefix", "", "Folder prepended to the paths of the list file.")
flags.DEFINE_enum("arch", "slowfast_8x8_r50", list(ARCHS), "Architecture.")
flags.DEFINE_integer("classes", 400, "Classes of the classifier.")
flags.DEFINE_integer("width_per_group", None, "Base width of narrow models (default 64).")
flags.DEFINE_string(
    "weights", None, "Weights: a named set (e.g. k400), .weights.h5, .pyth or .pkl."
)
flags.DEFINE_integer("num_frames", None, "Frames per clip; default: the architecture's.")
flags.DEFINE_integer(
    "sampling_rate", None, "Frame stride at --target_fps; default: the architecture's."
)
flags.DEFINE_float("target_fps", 30, "Frame rate the sampling rate refers to.")
flags.DEFINE_integer("crop_size", 256, "Test crop side (short side is resized to it).")
flags.DEFINE_integer("train_crop_size", 224, "Crop the model was trained at (head pooling window).")
flags.DEFINE_integer("num_temporal_views", 10, "Clips per video.")
flags.DEFINE_enum("num_spatial_crops", "3", ["1", "3"], "Crops per clip (3, or 1 centre crop).")
flags.DEFINE_integer("batch_size", 8, "Views per batch.")
flags.DEFINE_enum("ensemble_method", "sum", ["sum", "max"], "How the views of a video combine.")
flags.DEFINE_string("output_json", None, "Write the metrics and per-video scores here.")


def build_model(num_frames):
    kwargs = dict(
        num_frames=num_frames,
        classes=FLAGS.classes,
        train_crop_size=FLAGS.train_crop_size,
    )
    if FLAGS.width_per_group:
        kwargs["width_per_group"] = FLAGS.width_per_group
    return hub.build(FLAGS.arch, FLAGS.weights, **kwargs)


def main(argv):
    del argv
    if bool(FLAGS.test_list) == bool(FLAGS.test_tfrecords):
        raise app.UsageError("Give exactly one of --test_list and --test_tfrecords.")
    if not FLAGS.weights:
        raise app.UsageError("--weights is required.")
    protocol = presets.get_preset(FLAGS.arch).protocol
    default_frames, default_rate = protocol.num_frames, protocol.sampling_rate
    num_frames = FLAGS.num_frames or default_frames
    kwargs = dict(
        mode="test",
        num_frames=num_frames,
        sampling_rate=FLAGS.sampling_rate or default_rate,
        target_fps=FLAGS.target_fps,
        crop_size=FLAGS.crop_size,
        num_temporal_views=FLAGS.num_temporal_views,
        num_spatial_crops=int(FLAGS.num_spatial_crops),
        batch_size=FLAGS.batch_size,
    )
    num_videos = None
    if FLAGS.test_list:
        num_videos = len(data.read_video_list(FLAGS.test_list, FLAGS.path_prefix)[0])
        dataset = data.kinetics_dataset(FLAGS.test_list, path_prefix=FLAGS.path_prefix, **kwargs)
    else:
        dataset = data.frame_tfrecord_dataset(FLAGS.test_tfrecords, **kwargs)
    model = build_model(num_frames)
    predict = tf.function(lambda clips: model(clips, training=False))
    num_views = FLAGS.num_temporal_views * int(FLAGS.num_spatial_crops)
    aggregator = evaluation.MultiViewAggregator(
        num_views=num_views, num_videos=num_videos, ensemble_method=FLAGS.ensemble_method
    )
    start, seen = time.time(), 0
    for clips, labels, video_index, _ in dataset:
        scores = predict(clips).numpy()
        aggregator.update(video_index.numpy(), scores, labels=labels.numpy())
        seen += len(scores)
    result = aggregator.result()
    ks = (1, 5) if FLAGS.classes >= 5 else (1,)
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
            num_videos=int(len(result.video_indices)),
            num_views=int(seen),
            video_indices=result.video_indices.tolist(),
            labels=np.asarray(result.labels).tolist(),
            scores=np.asarray(result.scores).tolist(),
        )
        with open(FLAGS.output_json, "w", encoding="utf-8") as f:
            json.dump(report, f)


if __name__ == "__main__":
    app.run(main)
