"""The PySlowFast recipe: learning-rate schedule, torch's SGD rule, weight-decay exclusions."""

import math

import keras
import numpy as np
import pytest

import keras_slowfast
from keras_slowfast import training


def reference_lr(epoch, base, total, warmup, start, end=0.0, after_warmup=False):
    """PySlowFast's `get_lr_at_epoch` for `LR_POLICY: cosine`, written out in plain Python."""

    def cosine(e):
        offset = warmup if after_warmup else 0.0
        return end + (base - end) * (math.cos(math.pi * (e - offset) / (total - offset)) + 1) / 2

    if epoch < warmup:
        return start + epoch * (cosine(warmup) - start) / warmup
    return cosine(epoch)


# The Kinetics-400 SlowFast recipe at 100 steps per epoch.
K400 = dict(base=0.1, total=196, warmup=34, start=0.01)


@pytest.mark.parametrize(
    "step",
    [0, 1, 50, 1700, 3399, 3400, 3401, 5000, 9800, 15000, 19599, 19600],
)
def test_schedule_matches_pyslowfast(step):
    schedule = training.WarmupCosineDecay(
        0.1, total_epochs=196, steps_per_epoch=100, warmup_epochs=34, warmup_start_lr=0.01
    )
    expected = reference_lr(step / 100, **K400)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-8)


def test_schedule_warmup_boundary_and_end():
    schedule = training.WarmupCosineDecay(
        0.1, total_epochs=196, steps_per_epoch=100, warmup_epochs=34, warmup_start_lr=0.01
    )
    # The warm-up climbs to the cosine's value at epoch 34 (0.0928), not to the base rate.
    at_boundary = reference_lr(34, **K400)
    assert at_boundary == pytest.approx(0.1 * (math.cos(math.pi * 34 / 196) + 1) / 2)
    assert float(schedule(3400)) == pytest.approx(at_boundary, rel=1e-6)
    assert float(schedule(3399)) < at_boundary
    assert float(schedule(3399)) == pytest.approx(at_boundary, rel=1e-3)
    assert float(schedule(19600)) == pytest.approx(0.0, abs=1e-7)
    # Past the end the rate stays at end_lr instead of rising along the cosine.
    assert float(schedule(25000)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("step", [0, 7, 15, 16, 40, 79])
def test_schedule_fractional_warmup_cosine_after_warmup(step):
    schedule = training.WarmupCosineDecay(
        0.4,
        total_epochs=10,
        steps_per_epoch=8,
        warmup_epochs=2.5,
        warmup_start_lr=0.02,
        end_lr=0.001,
        cosine_after_warmup=True,
    )
    expected = reference_lr(
        step / 8, base=0.4, total=10, warmup=2.5, start=0.02, end=0.001, after_warmup=True
    )
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_schedule_serializes():
    schedule = training.WarmupCosineDecay(0.2, 30, 10, warmup_epochs=3, warmup_start_lr=0.02)
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert isinstance(restored, training.WarmupCosineDecay)
    for step in (0, 15, 30, 200, 300):
        assert float(restored(step)) == float(schedule(step))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(steps_per_epoch=0), "steps_per_epoch"),
        (dict(end_lr=0.5), "end_lr"),
        (dict(warmup_epochs=-1), "warmup_epochs"),
        (dict(base_lr=0), "base_lr"),
    ],
)
def test_schedule_rejects_bad_arguments(kwargs, name):
    args = dict(base_lr=0.1, total_epochs=10, steps_per_epoch=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"Received: {name}="):
        training.WarmupCosineDecay(**args)


def test_scale_learning_rate():
    assert training.scale_learning_rate(0.1, 64) == pytest.approx(0.1)
    assert training.scale_learning_rate(0.1, 16) == pytest.approx(0.025)
    assert training.scale_learning_rate(0.1, 256) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="Received: global_batch_size=0"):
        training.scale_learning_rate(0.1, 0)


def torch_sgd_reference(params, grads_per_step, lrs, momentum, nesterov, weight_decay, decays):
    """NumPy transcription of `torch.optim.SGD.step` (dampening 0) over several steps."""
    params = [p.astype(np.float64).copy() for p in params]
    bufs = [None] * len(params)
    for grads, lr in zip(grads_per_step, lrs):
        for i, (p, g) in enumerate(zip(params, grads)):
            d_p = g.astype(np.float64)
            if decays[i]:
                d_p = d_p + weight_decay * p
            if momentum:
                bufs[i] = d_p.copy() if bufs[i] is None else momentum * bufs[i] + d_p
                d_p = d_p + momentum * bufs[i] if nesterov else bufs[i]
            params[i] = p - lr * d_p
    return params


@pytest.mark.parametrize("nesterov", [True, False])
def test_torch_sgd_matches_torch_update_rule(nesterov):
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(3, 4)), rng.normal(size=(4,)), rng.normal(size=(4,))]
    variables = [
        keras.Variable(init[0], name="kernel"),
        keras.Variable(init[1], name="bias"),
        keras.Variable(init[2], name="gamma"),
    ]
    grads = [[rng.normal(size=v.shape) for v in init] for _ in range(4)]
    # A schedule that changes the rate at every step: torch's momentum buffer is in
    # gradient units, so the result differs from Keras' `SGD` here.
    schedule = training.WarmupCosineDecay(
        0.5, total_epochs=4, steps_per_epoch=1, warmup_epochs=2, warmup_start_lr=0.05
    )
    optimizer = training.TorchSGD(
        schedule,
        momentum=0.9,
        nesterov=nesterov,
        weight_decay=0.01,
        exclude_from_weight_decay=["^gamma$"],
    )
    for step_grads in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g, "float32") for g in step_grads], variables)
    lrs = [reference_lr(s, base=0.5, total=4, warmup=2, start=0.05) for s in range(4)]
    expected = torch_sgd_reference(init, grads, lrs, 0.9, nesterov, 0.01, [True, True, False])
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(v), e, rtol=1e-5, atol=1e-6)


def test_keras_sgd_weight_decay_is_not_torch_rule():
    """Guards the reason `TorchSGD` exists: Keras' decoupled decay gives other weights."""
    init = np.array([1.0, -2.0, 3.0])
    grad = np.array([0.5, 0.5, -0.5])
    keras_var = keras.Variable(init, name="w")
    sgd = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.1)
    for _ in range(2):
        sgd.apply([keras.ops.convert_to_tensor(grad, "float32")], [keras_var])
    expected = torch_sgd_reference([init], [[grad], [grad]], [0.1, 0.1], 0.9, True, 0.1, [True])
    assert not np.allclose(keras.ops.convert_to_numpy(keras_var), expected[0], atol=1e-4)


@pytest.fixture(scope="module")
def narrow_slowfast():
    return keras_slowfast.SlowFast(
        depth=50,
        num_frames=8,
        alpha=4,
        width_per_group=8,
        classes=5,
        input_shape=(8, 32, 32, 3),
        train_crop_size=32,
        nonlocal_location=[[[], []], [[1], []], [[], []], [[], []]],
    )


def test_no_weight_decay_variables_are_exactly_batchnorm(narrow_slowfast):
    model = narrow_slowfast
    excluded = training.no_weight_decay_variables(model)
    bn_layers = [
        layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(bn_layers) > 50
    expected = {f"{layer.name}/{w}" for layer in bn_layers for w in ("gamma", "beta")}
    assert {v.path for v in excluded} == expected
    with_1d = {v.path for v in training.no_weight_decay_variables(model, one_dimensional=True)}
    assert "head_projection/bias" in with_1d
    assert "s3_pathway0_nonlocal1_conv_theta/bias" in with_1d
    assert "head_projection/bias" not in expected


@pytest.mark.parametrize("zero_wd_1d_param", [False, True])
def test_weight_decay_exclusions_numerically(narrow_slowfast, zero_wd_1d_param):
    """One step with zero gradients moves exactly the decayed weights, by torch's rule."""
    model = narrow_slowfast
    optimizer = training.create_optimizer(
        model,
        epochs=10,
        steps_per_epoch=10,
        global_batch_size=16,
        warmup_epochs=2,
        weight_decay=0.1,  # large, so that the decay is far above float32 rounding
        zero_wd_1d_param=zero_wd_1d_param,
    )
    lr = 0.01 * 16 / 64  # the warm-up start rate, scaled to the batch
    assert float(optimizer.learning_rate) == pytest.approx(lr)
    before = {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables}
    zeros = [keras.ops.zeros(v.shape) for v in model.trainable_variables]
    optimizer.apply(zeros, model.trainable_variables)
    for v in model.trainable_variables:
        after = keras.ops.convert_to_numpy(v)
        layer = model.get_layer(v.path.split("/")[0])
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        decayed = not is_bn and not (zero_wd_1d_param and len(v.shape) == 1)
        # First step: buf = wd * w, Nesterov step = wd * w * (1 + momentum).
        expected = before[v.path] * (1 - lr * 0.1 * 1.9) if decayed else before[v.path]
        np.testing.assert_allclose(after, expected, rtol=1e-6, atol=1e-12, err_msg=v.path)
    # Restore the shared model's weights for the other parametrization.
    for v in model.trainable_variables:
        v.assign(before[v.path])


def test_create_optimizer_scales_rates():
    model = keras_slowfast.SlowR50(width_per_group=8, classes=3)
    optimizer = training.create_optimizer(
        model, epochs=20, steps_per_epoch=10, global_batch_size=256, warmup_epochs=2, end_lr=0.01
    )
    schedule = optimizer._learning_rate
    assert isinstance(schedule, training.WarmupCosineDecay)
    assert schedule.base_lr == pytest.approx(0.4)
    assert schedule.warmup_start_lr == pytest.approx(0.04)
    assert schedule.end_lr == pytest.approx(0.04)
    assert optimizer.momentum == 0.9 and optimizer.nesterov
    assert optimizer.weight_decay == 1e-4


def test_optimizer_survives_model_save(tmp_path):
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="dense")(inputs)
    x = keras.layers.BatchNormalization(name="norm")(x)
    model = keras.Model(inputs, x)
    optimizer = training.create_optimizer(
        model, epochs=5, steps_per_epoch=2, global_batch_size=8, warmup_epochs=1
    )
    model.compile(optimizer, "mse")
    model.fit(np.ones((8, 4)), np.zeros((8, 3)), batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    opt = loaded.optimizer
    assert isinstance(opt, training.TorchSGD)
    assert isinstance(opt._learning_rate, training.WarmupCosineDecay)
    assert opt.get_config()["exclude_from_weight_decay"] == [r"^norm/gamma$", r"^norm/beta$"]
    assert [opt.decays(v) for v in loaded.trainable_variables] == [True, True, False, False]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(momentum=1.5), "Received: momentum=1.5"),
        (dict(momentum=0.0, nesterov=True), "Received: momentum=0.0"),
        (dict(weight_decay=-1.0), "Received: weight_decay=-1.0"),
        (dict(exclude_from_weight_decay=[3]), "Received: exclude_from_weight_decay="),
    ],
)
def test_torch_sgd_rejects_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        training.TorchSGD(0.1, **kwargs)


@pytest.mark.parametrize(
    "module_name", ["schedules", "optimizers", "strategy", "precise_bn", "loop", "__init__"]
)
def test_docstring_examples(module_name):
    import doctest
    import importlib

    name = "keras_slowfast.training" + ("" if module_name == "__init__" else f".{module_name}")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0 or module_name == "loop"  # its examples need a cluster
