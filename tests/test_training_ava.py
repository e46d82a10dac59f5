"""The AVA recipe: BCE over the real boxes, the steps-with-relative-LRs schedule, the optimizer.

The oracles are written out here: torch's `BCELoss(reduction="mean")` as a NumPy formula over
the concatenated real boxes (what PySlowFast's `detection_collate` feeds it), and PySlowFast's
`get_lr_at_epoch` for `LR_POLICY: steps_with_relative_lrs` in plain Python, checked at the
numbers of `configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml`.
"""

import math

import keras
import numpy as np
import pytest

import keras_slowfast
from keras_slowfast import training

# --------------------------------------------------------------------------------------
# Loss


def torch_bce_mean(p, y):
    """torch.nn.BCELoss(reduction="mean"): each log clamped at -100, mean over all values."""
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p.astype(np.float64)), -100.0)
        log_1mp = np.maximum(np.log(1.0 - p.astype(np.float64)), -100.0)
    return float(np.mean(-(y * log_p + (1.0 - y) * log_1mp)))


def _batch(seed=0, batch=3, max_boxes=5, classes=80):
    """A padded AVA batch: scores, multi-hot labels, box weights (padding rows all zero)."""
    rng = np.random.default_rng(seed)
    num_boxes = np.array([2, 5, 1])[:batch]
    weights = (np.arange(max_boxes)[None, :] < num_boxes[:, None]).astype("float32")
    p = rng.uniform(0.0, 1.0, (batch, max_boxes, classes)).astype("float32")
    y = (rng.uniform(size=(batch, max_boxes, classes)) < 0.1).astype("float32")
    # Saturated scores, where the -100 clamp matters: 0 with label 1, 1 with label 0.
    p[0, 0, :3], y[0, 0, :3] = 0.0, 1.0
    p[1, 2, :2], y[1, 2, :2] = 1.0, 0.0
    p *= weights[..., None]  # the detector outputs exactly 0 in padding rows
    y *= weights[..., None]
    return p, y, weights


def test_loss_equals_torch_bce_over_real_boxes():
    p, y, w = _batch()
    real = w.astype(bool)
    expected = torch_bce_mean(p[real], y[real])  # detection_collate: boxes concatenated
    got = float(training.ava_loss()(y, p, sample_weight=w))
    assert got == pytest.approx(expected, rel=1e-6)
    # The saturated entries contribute the clamp value.
    assert expected > 100 * 5 / (real.sum() * 80)


def test_loss_without_weights_counts_every_slot():
    p, y, w = _batch(seed=1)
    per_box_sum = torch_bce_mean(p[w.astype(bool)], y[w.astype(bool)]) * w.sum()
    got = float(training.ava_loss()(y, p))
    assert got == pytest.approx(per_box_sum / w.size, rel=1e-6)


def test_loss_per_box_without_reduction():
    p, y, w = _batch(seed=2)
    per_box = np.asarray(training.AvaBinaryCrossentropy(reduction=None)(y, p))
    assert per_box.shape == w.shape
    for b, i in zip(*np.nonzero(w)):
        assert per_box[b, i] == pytest.approx(torch_bce_mean(p[b, i], y[b, i]), rel=1e-6)
    np.testing.assert_array_equal(per_box[w == 0], 0.0)


def test_loss_ignores_boxes_the_model_did_not_score():
    """A real box clipped to [0, 0, 0, 0] is scored 0 by the detector, like padding: it
    adds nothing to the sum (instead of 100 per label) and still counts in the divisor."""
    p, y, w = _batch(seed=5)
    p[1, 3] = 0.0  # box 3 of clip 1 is real (weight 1) but unscored
    y[1, 3, :4] = 1.0
    keep = w.astype(bool)
    keep[1, 3] = False
    expected = torch_bce_mean(p[keep], y[keep]) * keep.sum() / w.sum()
    assert float(training.ava_loss()(y, p, sample_weight=w)) == pytest.approx(expected, rel=1e-6)


def test_loss_in_model_fit_path_uses_box_weights():
    """`model.evaluate(x, y, sample_weight)` reduces exactly as torch over the real boxes."""
    p, y, w = _batch(seed=3)
    inputs = keras.Input(p.shape[1:])
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    model.compile(loss=training.ava_loss())
    got = model.evaluate(p, y, sample_weight=w, batch_size=len(p), verbose=0)
    real = w.astype(bool)
    assert got == pytest.approx(torch_bce_mean(p[real], y[real]), rel=1e-6)


def test_loss_gradient_is_finite_at_saturated_scores():
    import tensorflow as tf

    p, y, w = _batch(seed=4)
    p = tf.Variable(p)
    with tf.GradientTape() as tape:
        loss = training.ava_loss()(y, p, sample_weight=w)
    grad = tape.gradient(loss, p).numpy()
    assert np.isfinite(grad).all()
    np.testing.assert_array_equal(grad[w == 0], 0.0)
    # Away from saturation it is torch's: (p - y) / (p (1 - p)) / number of values.
    n = w.sum() * p.shape[-1]
    b, i, c = 1, 0, 10
    pv, yv = float(p[b, i, c]), float(y[b, i, c])
    assert grad[b, i, c] == pytest.approx((pv - yv) / (pv * (1 - pv)) / n, rel=1e-4)


def test_loss_serializes():
    loss = training.AvaBinaryCrossentropy()
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, training.AvaBinaryCrossentropy)
    assert again.get_config() == loss.get_config()


# --------------------------------------------------------------------------------------
# Schedule

# configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml (SOLVER section; 64 clips per step).
SHORT = dict(base=0.1, steps=[0, 10, 15, 20], lrs=[1, 0.1, 0.01, 0.001], max_epoch=20,
             warmup=5.0, start=0.000125)  # fmt: skip


def reference_steps_lr(epoch, base, steps, lrs, max_epoch, warmup, start):
    """PySlowFast's get_lr_at_epoch for `steps_with_relative_lrs`, in plain Python."""

    def policy(e):
        boundaries = steps + [max_epoch]
        for ind, step in enumerate(boundaries):  # noqa: B007
            if e < step:
                break
        return lrs[ind - 1] * base

    if epoch < warmup:
        return start + epoch * (policy(warmup) - start) / warmup
    return policy(epoch)


def _short_schedule(steps_per_epoch=100):
    return training.StepsWithRelativeLRs(
        0.1,
        steps=SHORT["steps"],
        lrs=SHORT["lrs"],
        total_epochs=20,
        steps_per_epoch=steps_per_epoch,
        warmup_epochs=5,
        warmup_start_lr=0.000125,
    )


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.000125),  # WARMUP_START_LR
        (250, 0.000125 + 2.5 * (0.1 - 0.000125) / 5),  # half-way up the warm-up
        (499, 0.000125 + 4.99 * (0.1 - 0.000125) / 5),
        (500, 0.1),  # BASE_LR * LRS[0] from epoch 5
        (999, 0.1),
        (1000, 0.01),  # STEPS[1] = 10: LRS[1]
        (1499, 0.01),
        (1500, 0.001),  # STEPS[2] = 15
        (1999, 0.001),
        (2000, 0.0001),  # STEPS[3] = 20 = MAX_EPOCH: LRS[3]
        (10**6, 0.0001),  # past the end: the last stage
    ],
)
def test_steps_schedule_matches_config_numbers(step, expected):
    schedule = _short_schedule()
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(reference_steps_lr(step / 100, **SHORT), rel=1e-12)


def test_steps_schedule_matches_reference_at_every_step():
    schedule = _short_schedule(steps_per_epoch=37)
    steps = np.arange(0, 21 * 37)
    got = np.array([float(schedule(s)) for s in steps])
    want = np.array([reference_steps_lr(s / 37, **SHORT) for s in steps])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_steps_schedule_with_steps_beyond_max_epoch():
    # PySlowFast scans STEPS + [MAX_EPOCH] in order, so stages past MAX_EPOCH never start
    # before it and the last stage holds after it.
    schedule = training.StepsWithRelativeLRs(
        1.0, steps=[0, 3, 30], lrs=[1, 0.5, 0.1], total_epochs=6, steps_per_epoch=10
    )
    ref = dict(base=1.0, steps=[0, 3, 30], lrs=[1, 0.5, 0.1], max_epoch=6, warmup=0, start=0)
    for step in (0, 29, 30, 59, 60, 1000):
        assert float(schedule(step)) == pytest.approx(reference_steps_lr(step / 10, **ref))


def test_steps_schedule_serializes():
    schedule = _short_schedule()
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert again.get_config() == schedule.get_config()
    assert float(again(1000)) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(steps=[1, 10]), "steps"),
        (dict(steps=[0, 10, 5], lrs=[1, 0.1, 0.01]), "steps"),
        (dict(steps=[]), "steps"),
        (dict(lrs=[1]), "lrs"),
        (dict(steps_per_epoch=0), "steps_per_epoch"),
        (dict(warmup_epochs=-1), "warmup_epochs"),
        (dict(base_lr=0), "base_lr"),
    ],
)
def test_steps_schedule_rejects_bad_arguments(kwargs, name):
    args = dict(base_lr=0.1, steps=[0, 10], lrs=[1, 0.1], total_epochs=20, steps_per_epoch=10)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=rf"Received: {name}="):
        training.StepsWithRelativeLRs(**args)


# --------------------------------------------------------------------------------------
# Optimizer


@pytest.fixture(scope="module")
def narrow_detector():
    return keras_slowfast.SlowFastR50AVA(width_per_group=8)


def test_create_ava_optimizer_is_the_short_recipe_scaled(narrow_detector):
    opt = training.create_ava_optimizer(narrow_detector, steps_per_epoch=100, global_batch_size=16)
    assert isinstance(opt, training.TorchSGD)
    assert opt.weight_decay == pytest.approx(1e-7)
    assert opt.momentum == pytest.approx(0.9) and opt.nesterov
    schedule = opt._learning_rate
    assert isinstance(schedule, training.StepsWithRelativeLRs)
    for step in (0, 250, 500, 1000, 1500, 2000):
        expected = reference_steps_lr(step / 100, **SHORT) * 16 / 64
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)
    # BatchNorm gets no weight decay, the convolutions and the RoI head do.
    bn = narrow_detector.get_layer("s1_pathway0_stem_bn").gamma
    assert not opt.decays(bn)
    assert opt.decays(narrow_detector.get_layer("head_projection").kernel)
    assert opt.decays(narrow_detector.get_layer("s1_pathway0_stem_conv").kernel)


def test_create_ava_optimizer_cosine_override(narrow_detector):
    opt = training.create_ava_optimizer(
        narrow_detector, steps_per_epoch=10, global_batch_size=64, lr_policy="cosine",
        epochs=4, warmup_epochs=1, warmup_start_lr=0.01,
    )  # fmt: skip
    schedule = opt._learning_rate
    assert isinstance(schedule, training.WarmupCosineDecay)
    cosine_at_1 = 0.1 * (math.cos(math.pi / 4) + 1) / 2
    assert float(schedule(10)) == pytest.approx(cosine_at_1, rel=1e-6)
    assert opt.weight_decay == pytest.approx(1e-7)


def test_create_optimizer_policy_arguments_are_checked(narrow_detector):
    common = dict(epochs=2, steps_per_epoch=5, global_batch_size=8)
    with pytest.raises(ValueError, match="Received: lr_policy='step'"):
        training.create_optimizer(narrow_detector, lr_policy="step", **common)
    with pytest.raises(ValueError, match="needs `steps` and `lrs`"):
        training.create_optimizer(narrow_detector, lr_policy="steps_with_relative_lrs", **common)
    with pytest.raises(ValueError, match="apply to lr_policy='steps_with_relative_lrs' only"):
        training.create_optimizer(narrow_detector, steps=[0, 1], lrs=[1, 0.1], **common)


@pytest.mark.large  # about 50 s on 2 CPU cores (tracing the training step of a detector)
def test_detector_trains_with_recipe_and_dataset_structure():
    """One `fit` step on `(inputs, labels, box_weights)` batches: the loss it reports is
    the NumPy BCE of the model's own scores over the real boxes (dropout off)."""
    import tensorflow as tf

    model = keras_slowfast.SlowFastR50AVA(width_per_group=8, dropout_rate=0.0)
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (2, 32, 64, 64, 3), dtype=np.uint8)
    boxes = np.zeros((2, 3, 4), "float32")
    boxes[0, :2] = [[0.1, 0.1, 0.6, 0.9], [0.4, 0.2, 0.9, 0.8]]
    boxes[1, :1] = [[0.2, 0.3, 0.7, 0.95]]
    weights = (boxes.sum(-1) > 0).astype("float32")
    labels = np.zeros((2, 3, 80), "float32")
    labels[0, 0, [11, 78]] = 1
    labels[0, 1, 13] = 1
    labels[1, 0, 79] = 1
    ds = tf.data.Dataset.from_tensors(({"clip": clip, "boxes": boxes}, labels, weights))
    model.compile(
        training.create_ava_optimizer(model, steps_per_epoch=1, global_batch_size=2),
        loss=training.ava_loss(),
    )
    # BatchNorm in training mode: the loss of the step is that of the training-mode scores.
    scores = np.asarray(model({"clip": clip, "boxes": boxes}, training=True))
    np.testing.assert_array_equal(scores[weights == 0], 0.0)
    real = weights.astype(bool)
    expected = torch_bce_mean(scores[real], labels[real])
    history = model.fit(ds, epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-4)


def test_callback_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="Received: every_n_epochs=0"):
        training.AvaFrameMAP("ava", every_n_epochs=0)
    with pytest.raises(TypeError, match="Received: every_n_epochs=1.5"):
        training.AvaFrameMAP("ava", every_n_epochs=1.5)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="Received: path="):
        training.save_weights_atomically(model, tmp_path / "w.h5")
    training.save_weights_atomically(model, tmp_path / "w.weights.h5")
    assert [p.name for p in tmp_path.iterdir()] == ["w.weights.h5"]  # no temporary left


@pytest.mark.parametrize("module_name", ["losses", "schedules", "optimizers", "callbacks"])
def test_docstring_examples(module_name):
    import doctest
    import importlib

    module = importlib.import_module(f"keras_slowfast.training.{module_name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
