"""Precise BN against statistics computed in NumPy from the BatchNorm inputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_slowfast
from keras_slowfast import training

EPS = 1e-5


def small_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 6, 6, 3))
    x = keras.layers.Conv3D(5, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(epsilon=EPS, name="bn1")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv3D(4, (1, 3, 3), name="conv2")(x)
    x = keras.layers.BatchNormalization(epsilon=EPS, name="bn2")(x)
    x = keras.layers.GlobalAveragePooling3D(name="pool")(x)
    outputs = keras.layers.Dense(2, name="dense")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    for name in ("bn1", "bn2"):
        layer = model.get_layer(name)
        c = layer.gamma.shape[0]
        layer.gamma.assign(rng.uniform(0.5, 2.0, c))
        layer.beta.assign(rng.normal(size=c))
    return model


def numpy_bn_inputs(model, x):
    """BN inputs of a training-mode forward pass: convolutions by the layers, BN in NumPy."""
    a1 = keras.ops.convert_to_numpy(model.get_layer("conv1")(x)).astype(np.float64)
    bn1 = model.get_layer("bn1")
    mean, var = a1.mean(axis=(0, 1, 2, 3)), a1.var(axis=(0, 1, 2, 3))
    gamma = keras.ops.convert_to_numpy(bn1.gamma)
    beta = keras.ops.convert_to_numpy(bn1.beta)
    y1 = np.maximum((a1 - mean) / np.sqrt(var + EPS) * gamma + beta, 0)
    a2 = keras.ops.convert_to_numpy(model.get_layer("conv2")(y1.astype(np.float32)))
    return a1, a2.astype(np.float64)


def test_precise_bn_matches_population_statistics():
    model = small_model()
    rng = np.random.default_rng(1)
    # Batches of different sizes: fvcore weighs each batch by its number of values.
    batches = [rng.normal(2.0, 3.0, (n, 4, 6, 6, 3)).astype(np.float32) for n in (3, 3, 2, 4)]
    labels = [np.zeros(len(b), np.int32) for b in batches]
    ds = tf.data.Dataset.from_generator(
        lambda: iter(zip(batches, labels)),
        output_signature=(
            tf.TensorSpec((None, 4, 6, 6, 3), tf.float32),
            tf.TensorSpec((None,), tf.int32),
        ),
    )
    dense_before = model.get_layer("dense").get_weights()
    used = training.update_bn_stats(model, ds, num_batches=3)
    assert used == 3
    acts = [numpy_bn_inputs(model, b) for b in batches[:3]]
    for i, name in enumerate(("bn1", "bn2")):
        values = np.concatenate([a[i].reshape(-1, a[i].shape[-1]) for a in acts])
        layer = model.get_layer(name)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer.moving_mean), values.mean(0), rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer.moving_variance), values.var(0), rtol=1e-4, atol=1e-5
        )
    for before, after in zip(dense_before, model.get_layer("dense").get_weights()):
        np.testing.assert_array_equal(before, after)


def test_precise_bn_is_not_the_mean_of_batch_variances():
    """The population variance includes the spread of the batch means."""
    model = small_model()
    rng = np.random.default_rng(2)
    batches = [rng.normal(m, 1.0, (2, 4, 6, 6, 3)).astype(np.float32) for m in (-3.0, 3.0)]
    training.update_bn_stats(model, tf.data.Dataset.from_tensor_slices(np.stack(batches)), 2)
    a = [numpy_bn_inputs(model, b)[0].reshape(-1, 5) for b in batches]
    mean_of_vars = np.mean([x.var(0) for x in a], axis=0)
    pooled = np.concatenate(a).var(0)
    got = keras.ops.convert_to_numpy(model.get_layer("bn1").moving_variance)
    np.testing.assert_allclose(got, pooled, rtol=1e-4)
    # Equal batch sizes: population variance = mean of the variances + variance of the means.
    spread = np.var([x.mean(0) for x in a], axis=0)
    assert np.all(spread > 1e-3)
    np.testing.assert_allclose(got, mean_of_vars + spread, rtol=1e-4)


def test_precise_bn_batch_average_estimator():
    """fvcore before 2021: average of batch means and of Bessel-corrected batch variances."""
    model = small_model()
    rng = np.random.default_rng(6)
    batches = [rng.normal(m, 1.0, (2, 4, 6, 6, 3)).astype(np.float32) for m in (-1.0, 2.0, 0.5)]
    ds = tf.data.Dataset.from_tensor_slices(np.stack(batches))
    training.update_bn_stats(model, ds, 3, estimator="batch_average")
    acts = [numpy_bn_inputs(model, b) for b in batches]
    for i, name in enumerate(("bn1", "bn2")):
        per_batch = [a[i].reshape(-1, a[i].shape[-1]) for a in acts]
        layer = model.get_layer(name)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer.moving_mean),
            np.mean([v.mean(0) for v in per_batch], axis=0),
            rtol=1e-4,
            atol=1e-5,
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer.moving_variance),
            np.mean([v.var(0, ddof=1) for v in per_batch], axis=0),
            rtol=1e-4,
            atol=1e-5,
        )


def test_frozen_batchnorm_is_left_alone():
    model = small_model()
    model.get_layer("bn2").trainable = False
    before = keras.ops.convert_to_numpy(model.get_layer("bn2").moving_mean).copy()
    x = np.random.default_rng(3).normal(size=(2, 4, 4, 6, 6, 3)).astype(np.float32)
    training.update_bn_stats(model, tf.data.Dataset.from_tensor_slices(x), 2)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.get_layer("bn2").moving_mean), before
    )
    assert not np.allclose(keras.ops.convert_to_numpy(model.get_layer("bn1").moving_mean), 0)


def test_precise_bn_on_slowfast_makes_inference_match_training_mode():
    """With one batch, the precise statistics are that batch's: both modes agree."""
    model = keras_slowfast.SlowFast(
        depth=50,
        num_frames=8,
        alpha=4,
        width_per_group=8,
        classes=4,
        input_shape=(8, 32, 32, 3),
        train_crop_size=32,
        dropout_rate=0.0,
    )
    # Non-trivial affine parameters, so that each BN's output feeds the next one's input.
    rng = np.random.default_rng(4)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c))
            layer.beta.assign(rng.normal(0, 0.2, c))
    clips = rng.integers(0, 256, (3, 8, 32, 32, 3)).astype(np.uint8)
    training_mode = keras.ops.convert_to_numpy(model(clips, training=True))
    before = keras.ops.convert_to_numpy(model(clips, training=False))
    assert not np.allclose(before, training_mode, atol=1e-3)
    used = training.update_bn_stats(model, tf.data.Dataset.from_tensors((clips, [0, 1, 2])))
    assert used == 1
    after = keras.ops.convert_to_numpy(model(clips, training=False))
    np.testing.assert_allclose(after, training_mode, rtol=1e-3, atol=1e-4)


def test_precise_bn_callback_runs_at_the_end_of_fit():
    model = small_model()
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x = np.random.default_rng(5).normal(4.0, 2.0, (6, 4, 6, 6, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros((6, 2), np.float32))).batch(3)
    callback = training.PreciseBatchNorm(ds, num_batches=2)
    model.fit(ds, epochs=2, callbacks=[callback], verbose=0)
    a1 = np.concatenate([numpy_bn_inputs(model, x[i : i + 3])[0] for i in (0, 3)])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model.get_layer("bn1").moving_mean),
        a1.reshape(-1, 5).mean(0),
        rtol=1e-4,
        atol=1e-5,
    )


def test_precise_bn_rejects_bad_input():
    model = small_model()
    with pytest.raises(ValueError, match="Received: num_batches=0"):
        training.update_bn_stats(model, [], num_batches=0)
    with pytest.raises(ValueError, match="no batch"):
        training.update_bn_stats(model, [], num_batches=2)
    with pytest.raises(TypeError, match="Received: model="):
        training.update_bn_stats("model", [], num_batches=2)
    with pytest.raises(ValueError, match="Received: estimator='median'"):
        training.update_bn_stats(model, [], estimator="median")
    with pytest.raises(ValueError, match="Received: every_n_epochs=0"):
        training.PreciseBatchNorm([], every_n_epochs=0)
