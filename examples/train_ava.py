"""Train or fine-tune a SlowFast AVA action detector with the PySlowFast AVA recipe.

The data is an AVA-layout folder (`frames/`, `frame_lists/`, `annotations/`, PySlowFast's
file names) read by `keras_slowfast.data.ava_dataset`. The recipe is that of
`configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml`: binary cross-entropy over the real boxes, SGD
(momentum 0.9, Nesterov, weight decay 1e-7 except on BatchNorm), 0.1 per 64 clips scaled
linearly with the global batch, 5 warm-up epochs from 0.000125, then 0.1, 0.01 from epoch
10 and 0.001 from epoch 15, 20 epochs (or a warm-up + cosine schedule). The backbone starts
from a Kinetics classifier (`--init_weights`), the RoI head from scratch. One device or
`--strategy mirrored` (with `--sync_bn`). Rerunning with the same `--model_dir` resumes
after the last finished epoch.

AVA v2.2 from Kinetics-400 weights on 8 GPUs (the SHORT recipe; R50 detector):

    python examples/train_ava.py --data_dir ava --arch ava_slowfast_r50_detection \\
        --init_weights k400 --global_batch_size 64 --strategy mirrored --sync_bn \\
        --model_dir runs/ava_r50

The R101_50_50 detector from a Kinetics checkpoint of the same backbone (a PySlowFast
`.pyth` or Caffe2 `.pkl`); the published Kinetics-400 R101_50_50 has no non-local blocks,
so with `--init_weights k400` add `--new_layers nonlocal`:

    python examples/train_ava.py --data_dir ava --arch ava_slowfast_32x2_r101_50_50 \\
        --init_weights SLOWFAST_16x8_R101_50_50.pkl --model_dir runs/ava_r101

Outputs in `--model_dir`: `checkpoints/` (weights per epoch), `backup/` (automatic resume),
`logs/` (TensorBoard: loss, learning rate, val_mAP), `history.csv`, `val/epoch_NNN/`
(`detections.csv`, `metrics.json` of each validation) and `final.weights.h5`.
"""

import os

import keras
import tensorflow as tf
from absl import app, flags, logging

from keras_slowfast import data, hub, presets, training

FLAGS = flags.FLAGS

# Architectures of the presets table.
ARCHS = presets.architecture_names("detector")
CLASSIFIERS = presets.architecture_names("classifier")

# Data.
flags.DEFINE_string("data_dir", None, "AVA-layout folder: frames/, frame_lists/, annotations/.")
flags.DEFINE_string(
    "video_dir", None, "Read the frames from <video_dir>/<video>.mp4 instead of frames/."
)
flags.DEFINE_integer("num_frames", None, "Frames per clip (fast pathway); default: the arch's.")
flags.DEFINE_integer("sampling_rate", None, "Frame stride at 30 fps; default: the arch's.")
flags.DEFINE_integer("train_crop_size", 224, "Training crop side (DATA.TRAIN_CROP_SIZE).")
flags.DEFINE_integer("jitter_min", 256, "Smallest short side of the training scale jitter.")
flags.DEFINE_integer("jitter_max", 320, "Largest short side of the training scale jitter.")
flags.DEFINE_integer("test_crop_size", 256, "Validation short side (DATA.TEST_CROP_SIZE).")
flags.DEFINE_integer(
    "max_boxes", None, "Box slots per keyframe; default: the most boxes of a training keyframe."
)
flags.DEFINE_float(
    "detection_score_thresh", 0.8, "Smallest person-box score kept from predicted-box CSVs."
)
flags.DEFINE_bool("color_augmentation", False, "PySlowFast's training colour (PCA) jitter.")
flags.DEFINE_integer("seed", None, "Seed for data order and augmentation (None: random).")
# Model.
flags.DEFINE_enum("arch", "ava_slowfast_32x2_r101_50_50", ARCHS, "Detector architecture.")
flags.DEFINE_integer("classes", 80, "Action classes of the detector.")
flags.DEFINE_integer("width_per_group", None, "Override the base width (64) for narrow models.")
flags.DEFINE_float("dropout_rate", 0.5, "Dropout before the RoI head's projection.")
flags.DEFINE_string(
    "init_weights",
    None,
    "Initial weights: a Kinetics classifier's (a published name such as k400, a .pyth, "
    ".pkl or classifier .weights.h5) for the backbone, or with --init_detector a detector's.",
)
flags.DEFINE_bool(
    "init_detector",
    False,
    "--init_weights are a whole detector's (e.g. ava, or a .weights.h5 of this script), "
    "RoI head included.",
)
flags.DEFINE_enum(
    "init_classifier",
    None,
    CLASSIFIERS,
    "Classifier variant of --init_weights (names and .weights.h5); default: the arch's match.",
)
flags.DEFINE_integer("init_classes", 400, "Classes of a classifier .weights.h5 --init_weights.")
flags.DEFINE_list(
    "new_layers",
    [],
    "Regular expressions of detector layers to train from scratch besides the RoI head "
    "(e.g. nonlocal when the classifier has no non-local blocks).",
)
flags.DEFINE_bool("sync_bn", False, "Synchronize BatchNorm statistics across replicas.")
# Optimization.
flags.DEFINE_integer("global_batch_size", 64, "Clips per step over all replicas.")
flags.DEFINE_integer("epochs", 20, "Training epochs (SOLVER.MAX_EPOCH).")
flags.DEFINE_integer(
    "steps_per_epoch", None, "Steps per epoch; default: training keyframes // global batch."
)
flags.DEFINE_enum(
    "lr_policy",
    "steps_with_relative_lrs",
    ["steps_with_relative_lrs", "cosine"],
    "Learning-rate policy (SOLVER.LR_POLICY).",
)
flags.DEFINE_float("base_lr", 0.1, "Reference learning rate for --base_batch_size clips.")
flags.DEFINE_integer("base_batch_size", 64, "Batch the learning rates refer to (linear scaling).")
flags.DEFINE_list("lr_steps", ["0", "10", "15", "20"], "Stage start epochs (SOLVER.STEPS).")
flags.DEFINE_list(
    "lr_values", ["1", "0.1", "0.01", "0.001"], "Stage rates relative to --base_lr (SOLVER.LRS)."
)
flags.DEFINE_float("end_lr", 0.0, "Final rate of the cosine policy for --base_batch_size clips.")
flags.DEFINE_float("warmup_epochs", 5.0, "Linear warm-up epochs (0: none).")
flags.DEFINE_float("warmup_start_lr", 0.000125, "Warm-up start rate for --base_batch_size clips.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum (Nesterov).")
flags.DEFINE_float("weight_decay", 1e-7, "L2 weight decay (none on BatchNorm).")
flags.DEFINE_integer(
    "precise_bn_batches", 0, "Batches for precise BN statistics after training (0: skip)."
)
# Distribution and precision.
flags.DEFINE_enum("strategy", "default", ["default", "mirrored"], "Distribution strategy.")
flags.DEFINE_list("devices", None, "Devices for the mirrored strategy (default: all GPUs).")
flags.DEFINE_enum(
    "mixed_precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"], "Dtype policy."
)
# Output and validation.
flags.DEFINE_string("model_dir", None, "Output folder; a run resumes from its checkpoints.")
flags.DEFINE_integer(
    "eval_every_n_epochs",
    5,
    "Frame-mAP on the val split every this many epochs and after the last (0: never).",
)
flags.DEFINE_enum("eval_mode", "val", ["val", "test"], "Split of the validation frame-mAP.")
flags.DEFINE_bool(
    "full_test_on_val", False, "Validate on every keyframe of val, not every fourth second."
)
flags.DEFINE_integer("eval_batch_size", 8, "Keyframes per model call during validation.")
flags.DEFINE_integer("verbose", 2, "Keras verbosity (0, 1: progress bar, 2: one line per epoch).")


def _floats(values, name):
    try:
        return [float(v) for v in values]
    except ValueError:
        raise app.UsageError(f"--{name} must be numbers. Received: {','.join(values)}") from None


def _check_flags():
    if not FLAGS.data_dir:
        raise app.UsageError("--data_dir is required.")
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required.")
    if FLAGS.init_detector and not FLAGS.init_weights:
        raise app.UsageError("--init_detector needs --init_weights.")
    if FLAGS.init_detector and (FLAGS.init_classifier or FLAGS.new_layers):
        raise app.UsageError("--init_classifier and --new_layers apply to classifier weights.")


def _dataset_kwargs(num_frames, sampling_rate):
    return dict(
        video_dir=FLAGS.video_dir,
        num_frames=num_frames,
        sampling_rate=sampling_rate,
        detection_score_thresh=FLAGS.detection_score_thresh,
    )


def train_dataset(num_frames, sampling_rate):
    """The training split: jittered, cropped, flipped clips, repeated."""
    ds = data.ava_dataset(
        FLAGS.data_dir,
        "train",
        batch_size=FLAGS.global_batch_size,
        train_crop_size=FLAGS.train_crop_size,
        train_jitter_scales=(FLAGS.jitter_min, FLAGS.jitter_max),
        color_augmentation=FLAGS.color_augmentation,
        max_boxes=FLAGS.max_boxes,
        seed=FLAGS.seed,
        **_dataset_kwargs(num_frames, sampling_rate),
    )
    return ds, len(ds.annotations.keyframes)


def build_detector(num_frames):
    """The detector, with --init_weights loaded (the backbone only for classifier weights)."""
    kwargs = dict(
        num_frames=num_frames,
        input_shape=(num_frames, None, None, 3),
        classes=FLAGS.classes,
        dropout_rate=FLAGS.dropout_rate,
        sync_bn=FLAGS.sync_bn,
    )
    if FLAGS.width_per_group:
        kwargs["width_per_group"] = FLAGS.width_per_group
    if FLAGS.init_detector:
        return hub.build(FLAGS.arch, weights=FLAGS.init_weights, **kwargs)
    model = hub.build(FLAGS.arch, **kwargs)
    if FLAGS.init_weights:
        report = training.load_classifier_backbone(
            model,
            FLAGS.init_weights,
            classifier=FLAGS.init_classifier,
            classifier_kwargs={"classes": FLAGS.init_classes},
            new_layers=FLAGS.new_layers,
        )
        print(report, flush=True)
    return model


def main(argv):
    del argv
    _check_flags()
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if FLAGS.seed is not None:
        keras.utils.set_random_seed(FLAGS.seed)  # the new layers' initial weights, dropout
    training.set_mixed_precision(FLAGS.mixed_precision)
    strategy = training.get_strategy(FLAGS.strategy, devices=FLAGS.devices)
    replicas = strategy.num_replicas_in_sync
    if FLAGS.global_batch_size % replicas:
        raise app.UsageError(
            f"--global_batch_size ({FLAGS.global_batch_size}) must be divisible by the "
            f"number of replicas ({replicas})."
        )
    protocol = presets.get_preset(FLAGS.arch).protocol
    default_frames, default_rate = protocol.num_frames, protocol.sampling_rate
    num_frames = FLAGS.num_frames or default_frames
    sampling_rate = FLAGS.sampling_rate or default_rate
    train, keyframes = train_dataset(num_frames, sampling_rate)
    steps_per_epoch = FLAGS.steps_per_epoch or max(1, keyframes // FLAGS.global_batch_size)
    schedule = dict(lr_policy=FLAGS.lr_policy)
    if FLAGS.lr_policy == "cosine":
        schedule["end_lr"] = FLAGS.end_lr
    else:
        schedule["steps"] = _floats(FLAGS.lr_steps, "lr_steps")
        schedule["lrs"] = _floats(FLAGS.lr_values, "lr_values")
    tf.io.gfile.makedirs(FLAGS.model_dir)
    with strategy.scope():
        model = build_detector(num_frames)
        optimizer = training.create_ava_optimizer(
            model,
            steps_per_epoch=steps_per_epoch,
            global_batch_size=FLAGS.global_batch_size,
            epochs=FLAGS.epochs,
            base_lr=FLAGS.base_lr,
            base_batch_size=FLAGS.base_batch_size,
            warmup_epochs=FLAGS.warmup_epochs,
            warmup_start_lr=FLAGS.warmup_start_lr,
            momentum=FLAGS.momentum,
            weight_decay=FLAGS.weight_decay,
            **schedule,
        )
        model.compile(optimizer, loss=training.ava_loss())
    peak = FLAGS.base_lr * FLAGS.global_batch_size / FLAGS.base_batch_size
    print(
        f"{FLAGS.arch}: {model.count_params():,} parameters, {replicas} replica(s), "
        f"{keyframes} training keyframes, {steps_per_epoch} steps per epoch, global batch "
        f"{FLAGS.global_batch_size}, learning rate {peak:g} ({FLAGS.lr_policy})",
        flush=True,
    )
    extra = []
    if FLAGS.eval_every_n_epochs:
        extra.append(
            training.AvaFrameMAP(
                FLAGS.data_dir,
                every_n_epochs=FLAGS.eval_every_n_epochs,
                output_dir=os.path.join(FLAGS.model_dir, "val"),
                mode=FLAGS.eval_mode,
                test_crop_size=FLAGS.test_crop_size,
                full_test_on_val=FLAGS.full_test_on_val,
                batch_size=FLAGS.eval_batch_size,
                **_dataset_kwargs(num_frames, sampling_rate),
            )
        )
    model.fit(
        train.repeat(),
        epochs=FLAGS.epochs,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,  # the dataset shuffles itself
        callbacks=training.standard_callbacks(FLAGS.model_dir, extra=extra),
        verbose=FLAGS.verbose,
    )
    if FLAGS.precise_bn_batches:
        used = training.update_bn_stats(
            model, train, min(FLAGS.precise_bn_batches, steps_per_epoch), strategy=strategy
        )
        print(f"Precise BN statistics from {used} batches.", flush=True)
    path = os.path.join(FLAGS.model_dir, "final.weights.h5")
    training.save_weights_atomically(model, path)
    print(f"Saved {path}", flush=True)


if __name__ == "__main__":
    app.run(main)
