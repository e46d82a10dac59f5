"""Strategy helpers, synchronized BatchNorm, weight transfer, mixed precision, and precise BN
under MirroredStrategy (in a subprocess with two virtual CPUs)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_slowfast
from keras_slowfast import training

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "training_scripts"


def narrow(**kwargs):
    args = dict(
        width_per_group=8, num_frames=8, classes=3, input_shape=(8, 32, 32, 3), train_crop_size=32
    )
    args.update(kwargs)
    return keras_slowfast.SlowR50(**args)


def test_get_strategy_default():
    strategy = training.get_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert training.is_chief(strategy)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="tpu"), "Received: name='tpu'"),
        (dict(name="default", devices=["/cpu:0"]), "Received: devices="),
        (dict(name="multi_worker", communication="mpi"), "Received: communication='mpi'"),
    ],
)
def test_get_strategy_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.get_strategy(**kwargs)


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        training.get_strategy("multi_worker")


def test_convert_sync_batchnorm_keeps_weights_and_outputs():
    model = keras_slowfast.SlowFast(
        depth=50,
        num_frames=8,
        alpha=4,
        width_per_group=8,
        classes=3,
        input_shape=(8, 32, 32, 3),
        train_crop_size=32,
    )
    synced = training.convert_sync_batchnorm(model)
    bns = [lay for lay in synced.layers if isinstance(lay, keras.layers.BatchNormalization)]
    assert bns and all(lay.synchronized for lay in bns)
    assert not any(
        lay.synchronized for lay in model.layers if isinstance(lay, keras.layers.BatchNormalization)
    )
    for a, b in zip(model.get_weights(), synced.get_weights()):
        np.testing.assert_array_equal(a, b)
    clips = np.random.default_rng(0).integers(0, 256, (2, 8, 32, 32, 3)).astype(np.uint8)
    np.testing.assert_allclose(
        synced.predict_on_batch(clips), model.predict_on_batch(clips), rtol=1e-5, atol=1e-6
    )
    back = training.convert_sync_batchnorm(synced, synchronized=False)
    assert not back.get_layer("s1_pathway0_stem_bn").synchronized
    with pytest.raises(TypeError, match="Received: model="):
        training.convert_sync_batchnorm("model")


def test_transfer_weights_new_head():
    source = narrow(classes=7)
    target = narrow(classes=3)
    untouched = training.transfer_weights(source, target, skip=("head_projection",))
    assert untouched == ["head_projection"]
    for layer in target.layers:
        if layer.weights and layer.name != "head_projection":
            for a, b in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="head_projection"):
        training.transfer_weights(source, target)


def test_set_mixed_precision_rejects_unknown_policy():
    with pytest.raises(ValueError, match="Received: policy='float8'"):
        training.set_mixed_precision("float8")


@pytest.fixture
def policy():
    previous = keras.mixed_precision.global_policy().name
    yield training.set_mixed_precision
    keras.mixed_precision.set_global_policy(previous)


def _train_steps(model, steps=3):
    optimizer = training.create_optimizer(
        model, epochs=2, steps_per_epoch=2, global_batch_size=2, base_lr=0.4, warmup_epochs=0
    )
    model.compile(optimizer, "sparse_categorical_crossentropy")
    clips = np.random.default_rng(0).integers(0, 256, (2, 8, 32, 32, 3)).astype(np.uint8)
    return [float(model.train_on_batch(clips, np.array([0, 1]))) for _ in range(steps)]


def test_mixed_bfloat16_trains_on_cpu(policy):
    policy("mixed_bfloat16")
    model = narrow(dropout_rate=0.0)
    conv = model.get_layer("s1_pathway0_stem_conv")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    assert model.get_layer("s1_pathway0_stem_bn").moving_mean.dtype == "float32"
    assert model.output.dtype == "float32"
    kernel_before = keras.ops.convert_to_numpy(conv.kernel).copy()
    losses = _train_steps(model)
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert not np.allclose(keras.ops.convert_to_numpy(conv.kernel), kernel_before)


def test_mixed_float16_builds_and_steps(policy):
    policy("mixed_float16")
    model = narrow(dropout_rate=0.0)
    assert model.get_layer("s1_pathway0_stem_conv").compute_dtype == "float16"
    try:
        losses = _train_steps(model, steps=1)
    except tf.errors.InvalidArgumentError as e:
        if "No OpKernel" in str(e) and not tf.config.list_physical_devices("GPU"):
            pytest.skip("float16 kernels (MaxPool3D) are not registered on CPU; GPU only")
        raise
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(losses[0])


def test_precise_bn_under_mirrored_strategy(tmp_path):
    """Per-replica statistics are all-reduced into those of the global batches."""
    rng = np.random.default_rng(0)
    batches = rng.normal(1.0, 2.0, (3, 4, 4, 6, 6, 3)).astype(np.float32)
    np.save(tmp_path / "batches.npy", batches)
    out = tmp_path / "stats.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "precise_bn_mirrored.py"), str(tmp_path), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.loads(out.read_text())
    weights = [np.asarray(w, np.float32) for w in stats["conv1"]]
    # NumPy reference: BN inputs of a non-synchronized BN are normalised per replica
    # (two halves of each global batch); the statistics pool all values.
    values = []
    for batch in batches:
        for half in (batch[:2], batch[2:]):
            a = conv3d_same(half.astype(np.float64), weights[0], weights[1])
            values.append(a.reshape(-1, a.shape[-1]))
    values = np.concatenate(values)
    np.testing.assert_allclose(stats["bn1_mean"], values.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["bn1_var"], values.var(0), rtol=1e-4, atol=1e-5)
    # Every replica holds the same statistics.
    assert stats["replicas_equal"]


def conv3d_same(x, kernel, bias):
    """3x3x3 'same' convolution, stride 1, in NumPy."""
    k = kernel.shape[0] // 2
    padded = np.pad(x, ((0, 0), (k, k), (k, k), (k, k), (0, 0)))
    n, t, h, w, _ = x.shape
    out = np.zeros((n, t, h, w, kernel.shape[-1]))
    for dt in range(kernel.shape[0]):
        for dh in range(kernel.shape[1]):
            for dw in range(kernel.shape[2]):
                patch = padded[:, dt : dt + t, dh : dh + h, dw : dw + w, :]
                out += patch @ kernel[dt, dh, dw]
    return out + bias
