"""Deterministic training of a tiny Slow R50 with `model.fit` and the standard callbacks.

Run as `python soak_train.py MODEL_DIR EPOCHS STEPS_PER_EPOCH [slow_r50|tiny]` (`tiny`: one
Conv3D, BatchNorm, dropout and a classifier, which starts in seconds); rerunning with the same
`MODEL_DIR` resumes from its backup. Ops are deterministic, initialisation and dropout are
seeded, and batch `s` (global step) is a function of `s` alone, generated in memory, so a
run killed and resumed any number of times must end with the same `final.weights.h5` as
an uninterrupted one. `build_model` is imported by the test to load the files written.
"""

import os
import sys

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


def main(model_dir, epochs, steps_per_epoch, kind):
    import keras
    import tensorflow as tf

    from keras_slowfast import training

    tf.config.experimental.enable_op_determinism()
    model = build_model(epochs, steps_per_epoch, kind)
    start = training.resume_epoch(os.path.join(model_dir, "backup"))
    print(f"resuming at epoch {start}", flush=True)
    model.fit(
        batches(start * steps_per_epoch, epochs * steps_per_epoch),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=[
            *training.standard_callbacks(model_dir),
            # Progress for the test to time its kills by.
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
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), (sys.argv[4:] or ["slow_r50"])[0])
