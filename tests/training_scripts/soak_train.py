"""Deterministic training of a tiny Slow R50 with `model.fit` and the standard callbacks.

Run as `python soak_train.py MODEL_DIR EPOCHS STEPS_PER_EPOCH [slow_r50|tiny [PAUSE]]`
(`tiny`: one Conv3D, BatchNorm, dropout and a classifier, which starts in seconds);
rerunning with the same `MODEL_DIR` resumes from its backup. Ops are deterministic,
initialisation and dropout are seeded, and batch `s` (global step) is a function of `s`
alone, generated in memory, so a run killed and resumed any number of times must end with
the same `final.weights.h5` as an uninterrupted one. `build_model` is imported by the test
to load the files written.

`PAUSE` (JSON) is where the test kills the run: there the process prints `PAUSED <PAUSE>`
and waits, never to go on, for its SIGKILL. So a kill lands where it was meant to,
whatever the machine's speed. `{"epoch": E, "step": S}`: after step S (0-based) of epoch
E (0-based, counted from the first run). `{"epoch": E, "file": F, "phase": P}`: in epoch
E's save of F (`checkpoint`, the epoch's weights; `backup`, the backup's weights;
`metadata`, the backup's JSON), when its temporary file has just been `created`, is
`partial` (one HDF5 dataset written) or is `written` (complete, not yet renamed onto its
name). Nothing else changes what the run computes or writes.
"""

import contextlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SEED, BATCH, FRAMES, CROP, CLASSES = 0, 4, 4, 32, 3


def _tiny(dropout_rate):
    import keras

    inputs = keras.Input((FRAMES, CROP, CROP, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv3D(4, 3, strides=2, use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="tiny")


def build_model(epochs, steps_per_epoch, kind="slow_r50", dropout_rate=0.5):
    """The compiled model with its optimizer built (seeded; same in every process)."""
    import keras

    import keras_slowfast
    from keras_slowfast import training

    keras.utils.set_random_seed(SEED)
    if kind == "tiny":
        model = _tiny(dropout_rate)
    else:
        model = keras_slowfast.from_preset(
            "slow_8x8_r50_kinetics400",
            load_weights=False,
            width_per_group=8,
            classes=CLASSES,
            num_frames=FRAMES,
            input_shape=(FRAMES, CROP, CROP, 3),
            train_crop_size=CROP,
            dropout_rate=dropout_rate,
        )
    optimizer = training.create_optimizer(
        model,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        global_batch_size=BATCH,
        base_lr=0.4,
        warmup_epochs=1.0,
    )
    model.compile(
        optimizer,
        "sparse_categorical_crossentropy",
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=False,
    )
    optimizer.build(model.trainable_variables)
    return model


def batches(first_step, last_step):
    """Batches `first_step` .. `last_step - 1`; batch `s` depends on `s` only."""
    import tensorflow as tf

    def make(step):
        seed = tf.stack([tf.constant(SEED, tf.int64), step])
        labels = tf.random.stateless_uniform([BATCH], seed, 0, CLASSES, tf.int32)
        noise = tf.random.stateless_uniform([BATCH, FRAMES, CROP, CROP, 3], seed + 1, 0, 128)
        # A learnable signal: the brightness of a clip encodes its class.
        clips = noise + 60.0 * tf.cast(labels, tf.float32)[:, None, None, None, None]
        return clips, labels

    return tf.data.Dataset.range(first_step, last_step).map(make)


def _pause(plan):
    print(f"PAUSED {json.dumps(plan, sort_keys=True)}", flush=True)
    while True:
        time.sleep(3600)


def _pause_callback(plan):
    """A callback that tracks the epoch and pauses after the planned step."""
    import keras

    class Pause(keras.callbacks.Callback):
        epoch = None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if plan.get("step") == batch and plan["epoch"] == self.epoch:
                _pause(plan)

    return Pause()


def _pause_in_saves(plan, current_epoch):
    """Makes the atomic writes of the package pause at the planned phase of a save."""
    import h5py

    from keras_slowfast import atomic
    from keras_slowfast.training import callbacks

    name = {
        "checkpoint": f"epoch_{plan['epoch'] + 1:03d}.weights.h5",
        "backup": "latest.weights.h5",
        "metadata": "training_metadata.json",
    }[plan["file"]]
    assert plan["phase"] in ("created", "written") or name.endswith(".h5"), plan
    original = atomic.atomic_path
    create_dataset = h5py.Group.create_dataset
    armed = []

    @contextlib.contextmanager
    def atomic_path(path, suffix=""):
        with original(path, suffix) as tmp:
            target = current_epoch() == plan["epoch"] and os.path.basename(path) == name
            if target and plan["phase"] == "created":
                _pause(plan)
            if target and plan["phase"] == "partial":
                armed.append(True)
            yield tmp
            if target and plan["phase"] == "written":
                _pause(plan)

    def pausing_create_dataset(self, *args, **kwargs):
        dataset = create_dataset(self, *args, **kwargs)
        if armed:
            _pause(plan)
        return dataset

    atomic.atomic_path = callbacks.atomic_path = atomic_path
    h5py.Group.create_dataset = pausing_create_dataset


def main(model_dir, epochs, steps_per_epoch, kind, plan=None):
    import keras
    import tensorflow as tf

    from keras_slowfast import training

    tf.config.experimental.enable_op_determinism()
    model = build_model(epochs, steps_per_epoch, kind)
    start = training.resume_epoch(os.path.join(model_dir, "backup"))
    print(f"resuming at epoch {start}", flush=True)
    extra = []
    if plan is not None:
        pause = _pause_callback(plan)
        extra.append(pause)
        if "file" in plan:
            _pause_in_saves(plan, lambda: pause.epoch)
    model.fit(
        batches(start * steps_per_epoch, epochs * steps_per_epoch),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=[
            *extra,
            *training.standard_callbacks(model_dir),
            # Progress, for the logs.
            keras.callbacks.LambdaCallback(
                on_train_batch_end=lambda batch, logs: print(f"batch end {batch}", flush=True)
            ),
        ],
        verbose=2,
    )
    path = os.path.join(model_dir, "final.weights.h5")
    training.save_weights_atomically(model, path)
    print(f"Saved {path}", flush=True)


if __name__ == "__main__":
    main(
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        (sys.argv[4:] or ["slow_r50"])[0],
        json.loads(sys.argv[5]) if len(sys.argv) > 5 else None,
    )
