"""The custom training loop on the default strategy: same updates as `model.fit`, resume."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_slowfast import training

STEPS, BATCH = 2, 4


def small_model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 8, 8, 3))
    x = keras.layers.Conv3D(6, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


def optimizer_for(model, epochs):
    return training.create_optimizer(
        model,
        epochs=epochs,
        steps_per_epoch=STEPS,
        global_batch_size=BATCH,
        base_lr=3.2,
        warmup_epochs=1,
        weight_decay=1e-3,
    )


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, 4, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 3, STEPS * BATCH).astype(np.int32)
    return x, y


def dataset(data):
    return tf.data.Dataset.from_tensor_slices(data).batch(BATCH)


def weights_of(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_custom_loop_matches_fit(data, tmp_path):
    reference = small_model(0)
    reference.compile(optimizer_for(reference, 3), "sparse_categorical_crossentropy")
    reference.fit(dataset(data).repeat(), epochs=3, steps_per_epoch=STEPS, verbose=0)

    model = small_model(0)
    initial = weights_of(model)
    trainer = training.DistributedTrainer(model, optimizer_for(model, 3), tmp_path / "run")
    history = trainer.fit(dataset(data), epochs=3, steps_per_epoch=STEPS, verbose=0)
    assert history["epoch"] == [0, 1, 2]
    assert trainer.global_step == 3 * STEPS
    assert not np.allclose(weights_of(model)[0], initial[0], atol=1e-3)
    for a, b in zip(weights_of(model), weights_of(reference)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_resume_equals_uninterrupted_run(data, tmp_path):
    uninterrupted = small_model(1)
    trainer = training.DistributedTrainer(
        uninterrupted, optimizer_for(uninterrupted, 3), tmp_path / "a"
    )
    trainer.fit(dataset(data), epochs=3, steps_per_epoch=STEPS, verbose=0)

    first = small_model(1)
    training.DistributedTrainer(first, optimizer_for(first, 3), tmp_path / "b").fit(
        dataset(data), epochs=1, steps_per_epoch=STEPS, verbose=0
    )
    # A new process would build a fresh model: different initial weights, no momentum.
    resumed = small_model(2)
    trainer = training.DistributedTrainer(resumed, optimizer_for(resumed, 3), tmp_path / "b")
    history = trainer.fit(dataset(data), epochs=3, steps_per_epoch=STEPS, verbose=0)
    assert history["epoch"] == [1, 2]
    assert trainer.global_step == 3 * STEPS
    # Each epoch is one pass over the same two batches, so restarting the data at an
    # epoch boundary changes nothing: weights, BN statistics and momentum were restored.
    for a, b in zip(weights_of(resumed), weights_of(uninterrupted)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    checkpoints = tf.train.get_checkpoint_state(str(tmp_path / "b" / "checkpoints"))
    assert checkpoints.model_checkpoint_path.endswith(f"ckpt-{3 * STEPS}")


def test_summaries_and_learning_rate(data, tmp_path):
    model = small_model(3)
    trainer = training.DistributedTrainer(
        model, optimizer_for(model, 2), tmp_path / "run", log_every_n_steps=1
    )
    history = trainer.fit(dataset(data), epochs=2, steps_per_epoch=STEPS, verbose=0)
    scalars = {}
    for path in (tmp_path / "run" / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                scalars.setdefault(v.tag, {})[event.step] = float(tf.make_ndarray(v.tensor))
    assert sorted(scalars["loss"]) == [1, 2, 3, 4]
    assert sorted(scalars["epoch_loss"]) == [2, 4]
    # The rate logged at step s is the one used for the update s (schedule at s - 1).
    schedule = trainer.optimizer._learning_rate
    for step, lr in scalars["learning_rate"].items():
        assert lr == pytest.approx(float(schedule(step - 1)), rel=1e-6)
    assert scalars["epoch_loss"][4] == pytest.approx(history["loss"][1], rel=1e-6)


def test_trainer_rejects_bad_arguments(tmp_path):
    model = small_model(4)
    optimizer = optimizer_for(model, 1)
    with pytest.raises(ValueError, match="reduction"):
        training.DistributedTrainer(
            model, optimizer, tmp_path, loss=keras.losses.SparseCategoricalCrossentropy()
        )
    with pytest.raises(ValueError, match="Received: log_every_n_steps=0"):
        training.DistributedTrainer(model, optimizer, tmp_path, log_every_n_steps=0)
    with pytest.raises(TypeError, match="Received: optimizer="):
        training.DistributedTrainer(model, "sgd", tmp_path)
    trainer = training.DistributedTrainer(model, optimizer, tmp_path)
    with pytest.raises(ValueError, match="Received: epochs=0"):
        trainer.fit([], epochs=0, steps_per_epoch=1)
    with pytest.raises(TypeError, match="Received: dataset=list"):
        trainer.fit([], epochs=1, steps_per_epoch=1)
