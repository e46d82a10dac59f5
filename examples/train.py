"""Train or fine-tune a SlowFast classifier with the PySlowFast recipe.

SGD (momentum 0.9, Nesterov, L2 weight decay 1e-4 except on BatchNorm), the learning rate
0.1 per 64 clips scaled linearly with the global batch, linear warm-up then cosine decay,
cross-entropy, and precise BatchNorm statistics after training. With `--strategy default`
or `mirrored` it trains with `model.fit`; with `multi_worker` (configured by `TF_CONFIG`)
it uses the custom loop of `keras_slowfast.training.DistributedTrainer`. Rerunning with
the same `--model_dir` resumes from the last checkpoint.

Kinetics-400 from scratch on 8 GPUs (PySlowFast's SLOWFAST_8x8_R50 recipe):

    python examples/train.py --train_list k400/train.csv --path_prefix k400/videos \\
        --arch slowfast_8x8_r50 --classes 400 --global_batch_size 64 --epochs 196 \\
        --warmup_epochs 34 --strategy mirrored --sync_bn --model_dir runs/k400

Fine-tuning the Kinetics-400 weights on a new 10-class data set (new head):

    python examples/train.py --train_list mine/train.csv --val_list mine/val.csv \\
        --arch slowfast_8x8_r50 --init_weights k400 --classes 10 --global_batch_size 16 \\
        --base_lr 0.1 --epochs 20 --warmup_epochs 2 --model_dir runs/mine

Input on CPU machines (tf.data service, TFRecords only; see docs/scaling.md):

    keras-slowfast data-service dispatcher --port 5050            # on host "dispatcher"
    keras-slowfast data-service worker --dispatcher dispatcher:5050 --worker-address $(hostname)
    python examples/train.py --train_tfrecords k400/train-* --steps_per_epoch 3750 \
        --data_service_address grpc://dispatcher:5050 --model_dir runs/k400 ...

Only the JPEG-frame TFRecord pipeline (--train_tfrecords) can run on service workers: it is
TensorFlow ops only. The --train_list pipeline decodes videos with PyAV inside a
tf.numpy_function, whose Python code exists only in the trainer's process.

Outputs in `--model_dir`: `checkpoints/` (weights per epoch, or `tf.train` checkpoints of
the custom loop), `backup/` (automatic resume), `logs/` or `train/` (TensorBoard),
`history.csv`, and `final.weights.h5` (after precise BN).
"""

import os

import keras
import tensorflow as tf
from absl import app, flags, logging

from keras_slowfast import data, hub, presets, training

FLAGS = flags.FLAGS

# Classifier architectures of the presets table.
ARCHS = presets.architecture_names("classifier")

# Data.
flags.DEFINE_string("train_list", None, "Training list file (`path label` per line).")
flags.DEFINE_list(
    "train_tfrecords", None, "Training JPEG-frame TFRecord patterns (instead of --train_list)."
)
flags.DEFINE_string("val_list", None, "Validation list file (optional; model.fit only).")
flags.DEFINE_list("val_tfrecords", None, "Validation TFRecord patterns (optional; model.fit only).")
flags.DEFINE_string("path_prefix", "", "Folder prepended to the paths of the list files.")
flags.DEFINE_integer(
    "num_frames", None, "Frames per clip (fast pathway); default: the architecture's."
)
flags.DEFINE_integer(
    "sampling_rate", None, "Frame stride at --target_fps; default: the architecture's."
)
flags.DEFINE_float("target_fps", 30, "Frame rate the sampling rate refers to.")
flags.DEFINE_integer("crop_size", 224, "Training crop side.")
flags.DEFINE_integer("jitter_min", 256, "Smallest short side of the scale jitter.")
flags.DEFINE_integer("jitter_max", 320, "Largest short side of the scale jitter.")
flags.DEFINE_integer("seed", None, "Seed for data order and augmentation (None: random).")
flags.DEFINE_string(
    "data_service_address",
    None,
    "grpc://HOST:PORT of a tf.data service dispatcher: the training TFRecord pipeline runs on "
    "its workers (--train_tfrecords only; see docs/scaling.md).",
)
flags.DEFINE_enum(
    "data_service_mode",
    "distributed_epoch",
    ["distributed_epoch", "parallel_epochs"],
    "distributed_epoch: each clip once per epoch over all workers; parallel_epochs: every "
    "service worker runs the whole data set.",
)
flags.DEFINE_string(
    "data_service_job_name",
    None,
    "Job shared by the trainers of this run (default: derived from --model_dir).",
)
# Model.
flags.DEFINE_enum("arch", "slowfast_8x8_r50", list(ARCHS), "Architecture.")
flags.DEFINE_integer("classes", 400, "Classes of the classifier.")
flags.DEFINE_integer("width_per_group", None, "Override the base width (64) for narrow models.")
flags.DEFINE_float("dropout_rate", 0.5, "Dropout before the classifier.")
flags.DEFINE_string(
    "init_weights", None, "Initial weights: a named set (e.g. k400), .pyth, .pkl or .weights.h5."
)
flags.DEFINE_integer(
    "init_classes",
    400,
    "Classes of --init_weights' head; if different from --classes the head is new.",
)
flags.DEFINE_bool("sync_bn", False, "Synchronize BatchNorm statistics across replicas.")
# Optimization.
flags.DEFINE_integer("global_batch_size", 64, "Clips per step over all replicas.")
flags.DEFINE_integer("epochs", 196, "Training epochs (end of the cosine).")
flags.DEFINE_integer(
    "steps_per_epoch",
    None,
    "Steps per epoch; default: list entries // global batch (required for TFRecords).",
)
flags.DEFINE_float("base_lr", 0.1, "Peak learning rate for --base_batch_size clips.")
flags.DEFINE_integer("base_batch_size", 64, "Batch the learning rates refer to (linear scaling).")
flags.DEFINE_float("warmup_epochs", 34.0, "Linear warm-up epochs (0: none).")
flags.DEFINE_float("warmup_start_lr", 0.01, "Warm-up start rate for --base_batch_size clips.")
flags.DEFINE_float("end_lr", 0.0, "Final cosine rate for --base_batch_size clips.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum (Nesterov).")
flags.DEFINE_float("weight_decay", 1e-4, "L2 weight decay (none on BatchNorm).")
flags.DEFINE_bool("zero_wd_1d_param", False, "No weight decay on any 1-D weight (biases).")
flags.DEFINE_integer("precise_bn_batches", 200, "Batches for precise BN after training (0: skip).")
# Distribution and precision.
flags.DEFINE_enum(
    "strategy", "default", ["default", "mirrored", "multi_worker"], "Distribution strategy."
)
flags.DEFINE_list("devices", None, "Devices for the mirrored strategy (default: all GPUs).")
flags.DEFINE_bool(
    "custom_loop", False, "Use the custom loop also for default/mirrored (always for multi_worker)."
)
flags.DEFINE_bool(
    "jit_compile", False, "XLA-compile the model.fit step (slow to compile on CPU; off by default)."
)
flags.DEFINE_enum(
    "mixed_precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"], "Dtype policy."
)
# Output.
flags.DEFINE_string("model_dir", None, "Output folder; a run resumes from its checkpoints.")
flags.DEFINE_integer("eval_every_n_epochs", 1, "Validation period in epochs.")
flags.DEFINE_integer("verbose", 2, "Keras verbosity (0, 1: progress bar, 2: one line per epoch).")


def _check_flags():
    if bool(FLAGS.train_list) == bool(FLAGS.train_tfrecords):
        raise app.UsageError("Give exactly one of --train_list and --train_tfrecords.")
    if FLAGS.val_list and FLAGS.val_tfrecords:
        raise app.UsageError("Give at most one of --val_list and --val_tfrecords.")
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required.")
    if FLAGS.train_tfrecords and not FLAGS.steps_per_epoch:
        raise app.UsageError("--steps_per_epoch is required with --train_tfrecords.")
    if FLAGS.data_service_address and FLAGS.train_list:
        raise app.UsageError(
            "--data_service_address needs --train_tfrecords: the --train_list pipeline decodes "
            "videos in Python (tf.numpy_function), which tf.data service workers cannot run."
        )


def _data_kwargs(mode, num_frames, sampling_rate):
    kwargs = dict(
        mode=mode,
        num_frames=num_frames,
        sampling_rate=sampling_rate,
        target_fps=FLAGS.target_fps,
        crop_size=FLAGS.crop_size,
        jitter_scales=(FLAGS.jitter_min, FLAGS.jitter_max),
        seed=FLAGS.seed,
    )
    return kwargs


def _dataset(list_file, tfrecords, mode, batch_size, num_frames, sampling_rate):
    kwargs = _data_kwargs(mode, num_frames, sampling_rate)
    if list_file:
        return data.kinetics_dataset(
            list_file, path_prefix=FLAGS.path_prefix, batch_size=batch_size, **kwargs
        )
    return data.frame_tfrecord_dataset(tfrecords, batch_size=batch_size, **kwargs)


def _input_fn(list_file, tfrecords, mode, num_frames, sampling_rate):
    kwargs = _data_kwargs(mode, num_frames, sampling_rate)
    seed = kwargs.pop("seed")
    if list_file:
        return training.kinetics_input_fn(
            list_file, FLAGS.global_batch_size, seed=seed, path_prefix=FLAGS.path_prefix, **kwargs
        )
    if FLAGS.data_service_address and mode == "train":
        kwargs.update(_data_service_kwargs())
    return training.tfrecord_input_fn(tfrecords, FLAGS.global_batch_size, seed=seed, **kwargs)


def _data_service_kwargs():
    """`tfrecord_input_fn` arguments for --data_service_address."""
    job = FLAGS.data_service_job_name
    if not job:
        job = "train_" + os.path.basename(os.path.normpath(FLAGS.model_dir))
    return dict(
        data_service_address=FLAGS.data_service_address,
        processing_mode=FLAGS.data_service_mode,
        job_name=job,
    )


def build_model(num_frames):
    """The classifier, with --init_weights loaded (through a new head if needed)."""

    def builder(**kw):
        return hub.build(FLAGS.arch, **kw)

    kwargs = dict(
        num_frames=num_frames,
        input_shape=(num_frames, FLAGS.crop_size, FLAGS.crop_size, 3),
        train_crop_size=FLAGS.crop_size,
        dropout_rate=FLAGS.dropout_rate,
        sync_bn=FLAGS.sync_bn,
    )
    if FLAGS.width_per_group:
        kwargs["width_per_group"] = FLAGS.width_per_group
    if FLAGS.init_weights and FLAGS.init_classes != FLAGS.classes:
        source = builder(classes=FLAGS.init_classes, weights=FLAGS.init_weights, **kwargs)
        model = builder(classes=FLAGS.classes, **kwargs)
        training.transfer_weights(source, model, skip=("head_projection",))
        del source
        return model
    return builder(classes=FLAGS.classes, weights=FLAGS.init_weights, **kwargs)


def _fit(model, strategy, steps_per_epoch, num_frames, sampling_rate):
    train = _dataset(
        FLAGS.train_list,
        FLAGS.train_tfrecords,
        "train",
        FLAGS.global_batch_size,
        num_frames,
        sampling_rate,
    ).repeat()
    if FLAGS.data_service_address:
        kwargs = _data_service_kwargs()
        train = training.distribute_dataset(
            train,
            kwargs["data_service_address"],
            kwargs["processing_mode"],
            kwargs["job_name"],
        )
    val = None
    if FLAGS.val_list or FLAGS.val_tfrecords:
        val = _dataset(
            FLAGS.val_list,
            FLAGS.val_tfrecords,
            "val",
            FLAGS.global_batch_size,
            num_frames,
            sampling_rate,
        )
    callbacks = training.standard_callbacks(FLAGS.model_dir)
    model.fit(
        train,
        epochs=FLAGS.epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=val,
        validation_freq=FLAGS.eval_every_n_epochs,
        shuffle=False,  # the datasets shuffle themselves
        callbacks=callbacks,
        verbose=FLAGS.verbose,
    )
    return train


def _custom_loop(model, optimizer, strategy, steps_per_epoch, num_frames, sampling_rate):
    trainer = training.DistributedTrainer(model, optimizer, FLAGS.model_dir, strategy)
    input_fn = _input_fn(
        FLAGS.train_list, FLAGS.train_tfrecords, "train", num_frames, sampling_rate
    )
    trainer.fit(input_fn, FLAGS.epochs, steps_per_epoch, verbose=FLAGS.verbose)
    return strategy.distribute_datasets_from_function(input_fn)


def main(argv):
    del argv
    _check_flags()
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
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
    steps_per_epoch = FLAGS.steps_per_epoch
    if not steps_per_epoch:
        entries = len(data.read_video_list(FLAGS.train_list, FLAGS.path_prefix)[0])
        steps_per_epoch = max(1, entries // FLAGS.global_batch_size)
    tf.io.gfile.makedirs(FLAGS.model_dir)
    with strategy.scope():
        model = build_model(num_frames)
        optimizer = training.create_optimizer(
            model,
            epochs=FLAGS.epochs,
            steps_per_epoch=steps_per_epoch,
            global_batch_size=FLAGS.global_batch_size,
            base_lr=FLAGS.base_lr,
            base_batch_size=FLAGS.base_batch_size,
            warmup_epochs=FLAGS.warmup_epochs,
            warmup_start_lr=FLAGS.warmup_start_lr,
            end_lr=FLAGS.end_lr,
            momentum=FLAGS.momentum,
            weight_decay=FLAGS.weight_decay,
            zero_wd_1d_param=FLAGS.zero_wd_1d_param,
        )
        if not (FLAGS.custom_loop or FLAGS.strategy == "multi_worker"):
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
            if FLAGS.classes > 5:
                metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
            model.compile(
                optimizer,
                "sparse_categorical_crossentropy",
                metrics=metrics,
                jit_compile=FLAGS.jit_compile,
            )
    print(
        f"{FLAGS.arch}: {model.count_params():,} parameters, {replicas} replica(s), "
        f"{steps_per_epoch} steps per epoch, global batch {FLAGS.global_batch_size}, "
        f"peak learning rate {FLAGS.base_lr * FLAGS.global_batch_size / FLAGS.base_batch_size:g}",
        flush=True,
    )
    if FLAGS.custom_loop or FLAGS.strategy == "multi_worker":
        bn_data = _custom_loop(
            model, optimizer, strategy, steps_per_epoch, num_frames, sampling_rate
        )
    else:
        bn_data = _fit(model, strategy, steps_per_epoch, num_frames, sampling_rate)
    if FLAGS.precise_bn_batches:
        used = training.update_bn_stats(
            model, bn_data, min(FLAGS.precise_bn_batches, steps_per_epoch), strategy=strategy
        )
        print(f"Precise BN statistics from {used} batches.", flush=True)
    if training.is_chief(strategy):
        path = os.path.join(FLAGS.model_dir, "final.weights.h5")
        training.save_weights_atomically(model, path)
        print(f"Saved {path}", flush=True)


def keras_metric(name):
    if name == "accuracy":
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    return keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")


if __name__ == "__main__":
    app.run(main)
