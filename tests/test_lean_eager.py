"""Eager calls of the built models: lean memory, compiled inference, unchanged training.

The reference for every comparison is Keras' own functional model run over the same layers
(`keras.Model(model.input, model.output)` shares the layers and weights): the eager
op-by-op path must give bitwise its outputs and gradients, the compiled eager path its
outputs within float32 fusion round-off. Memory is measured in fresh processes.
"""

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
from keras_slowfast.models import functional as functional_module
from keras_slowfast.models.functional import LeanFunctional

REPO = Path(__file__).resolve().parents[1]

BOXES = np.array(
    [
        [[0.1, 0.1, 0.5, 0.9], [0.4, 0.2, 1.0, 1.0], [0, 0, 0, 0]],
        [[0.0, 0.0, 1.0, 1.0], [0, 0, 0, 0], [0, 0, 0, 0]],
    ],
    np.float32,
)


def random_clip(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def build(kind, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    if kind == "classifier":
        return keras_slowfast.SlowFastR50(
            nonlocal_blocks=True,
            width_per_group=8,
            classes=5,
            input_shape=(32, 64, 64, 3),
            **kwargs,
        )
    return keras_slowfast.SlowFastR50AVA(width_per_group=8, classes=6, **kwargs)


def inputs_for(kind, seed=0):
    clip = random_clip((2, 32, 64, 64, 3), seed)
    return clip if kind == "classifier" else {"clip": clip, "boxes": BOXES}


def plain_functional(model):
    """Keras' own functional model over the same layers (and so the same weights)."""
    plain = keras.Model(model.input, model.output)
    assert type(plain) is not LeanFunctional
    return plain


def test_every_builder_returns_a_lean_model():
    models = [
        build("classifier"),
        build("detector"),
        keras_slowfast.SlowR50(width_per_group=8, classes=3),
        keras_slowfast.SlowFast(width_per_group=8, include_top=False),
        keras_slowfast.SlowFast(width_per_group=8, include_top=False, pooling="avg"),
    ]
    for model in models:
        assert isinstance(model, LeanFunctional)
        assert isinstance(model, keras.Model)


@pytest.mark.parametrize("kind", ["classifier", "detector"])
def test_eager_outputs_equal_keras_functional(kind):
    model = build(kind)
    x = inputs_for(kind)
    reference = keras.ops.convert_to_numpy(plain_functional(model)(x))

    model.compile_eager_inference = False
    op_by_op = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_array_equal(op_by_op, reference)
    assert model.__dict__.get("_lean_forward_cache") is None

    model.compile_eager_inference = True
    compiled = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(compiled, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x), compiled, rtol=1e-5, atol=1e-6)
    # One trace serves repeated calls of the same shape.
    model(x)
    forward = model.__dict__["_lean_forward_cache"].function
    assert forward.experimental_get_tracing_count() == 1


def test_compiled_eager_call_sees_new_weights_and_new_shapes():
    model = keras_slowfast.SlowFast(
        width_per_group=8, classes=5, num_frames=8, alpha=4, train_crop_size=64
    )
    plain = plain_functional(model)
    clip = random_clip((1, 8, 64, 64, 3))
    model(clip)
    rng = np.random.default_rng(1)
    model.set_weights(
        [w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in model.get_weights()]
    )
    np.testing.assert_allclose(model(clip), plain(clip), rtol=1e-5, atol=1e-6)
    other = random_clip((3, 8, 96, 128, 3), seed=2)
    np.testing.assert_allclose(model(other), plain(other), rtol=1e-5, atol=1e-6)


def test_functions_run_eagerly_runs_op_by_op():
    model = build("classifier")
    clip = random_clip((1, 32, 64, 64, 3))
    tf.config.run_functions_eagerly(True)
    try:
        out = model(clip)
    finally:
        tf.config.run_functions_eagerly(False)
    np.testing.assert_array_equal(out, plain_functional(model)(clip))


@pytest.mark.parametrize("kind", ["classifier", "detector"])
@pytest.mark.parametrize("training", [True, False])
def test_gradients_and_training_updates_equal_keras_functional(kind, training):
    """Same weights, same call under a tape: bitwise the same outputs, gradients and updates."""
    model = build(kind)
    plain = plain_functional(model)
    x = inputs_for(kind)
    clip = tf.constant(x if kind == "classifier" else x["clip"], tf.float32)
    boxes = None if kind == "classifier" else tf.constant(x["boxes"])
    # All variables, the dropout seed state and the BN statistics included.
    start = [v.numpy() for v in model.variables]

    def run(m):
        for v, value in zip(m.variables, start):
            v.assign(value)
        with tf.GradientTape() as tape:
            tape.watch(clip)
            inputs = clip if kind == "classifier" else {"clip": clip, "boxes": boxes}
            y = m(inputs, training=training)
            loss = tf.reduce_sum(y * tf.range(1.0, y.shape[-1] + 1.0))
        grads = tape.gradient(loss, [clip] + m.trainable_weights)
        return [y] + grads + [tf.constant(v) for v in m.variables]

    assert functional_module._tape_active() is False
    got, expected = run(model), run(plain)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def small_classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return keras_slowfast.SlowFast(
        width_per_group=8, classes=5, num_frames=8, input_shape=(8, 64, 64, 3)
    )


def test_fit_and_keras_round_trip(tmp_path):
    model = small_classifier()
    twin = plain_functional(small_classifier(seed=1))
    for a, b in zip(twin.variables, model.variables):  # the dropout seed state included
        a.assign(b)
    clip = random_clip((4, 8, 64, 64, 3))
    labels = np.eye(5, dtype=np.float32)[[0, 1, 2, 3]]
    for m in (model, twin):
        # Run eagerly: the train step calls the model op by op under a gradient tape.
        m.compile(
            optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy", run_eagerly=True
        )
        m.fit(clip, labels, batch_size=2, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)

    expected = keras.ops.convert_to_numpy(model(clip))  # an eager call first: cache present
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is LeanFunctional
    assert [layer.name for layer in restored.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(restored(clip), expected, rtol=1e-6, atol=1e-7)


def test_export_after_an_eager_call(tmp_path):
    model = small_classifier()
    clip = random_clip((2, 8, 64, 64, 3))
    expected = keras.ops.convert_to_numpy(model(clip))
    path = keras_slowfast.export_saved_model(model, tmp_path / "serving")
    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    got = serving(clip=tf.constant(clip))
    np.testing.assert_allclose(got["probabilities"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.large
def test_keras_export_ignores_the_cached_forward(tmp_path):
    model = small_classifier()
    clip = random_clip((2, 8, 64, 64, 3))
    expected = keras.ops.convert_to_numpy(model(clip))
    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    assert not hasattr(restored, "_lean_forward_cache")
    got = restored.serve(tf.constant(clip, tf.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


_PEAK_SCRIPT = """
import json, resource, sys
import numpy as np
import keras, keras_slowfast

kind, path = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
clip = rng.integers(0, 256, (1, 32, 128, 128, 3)).astype(np.uint8)
if kind == "classifier":
    model, x = keras_slowfast.SlowFastR50(), clip
else:
    model = keras_slowfast.SlowFastR50AVA()
    x = {"clip": clip, "boxes": np.array([[[0.1, 0.1, 0.6, 0.9], [0.3, 0.2, 0.9, 0.7]]], "float32")}
if path == "keras_functional":
    model = keras.Model(model.input, model.output)
elif path == "op_by_op":
    model.compile_eager_inference = False
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = peak()
if path == "predict_on_batch":
    model.predict_on_batch(x)
else:
    model(x)
print(json.dumps({"mib": peak() - before}))
"""


def _peak_increments(runs):
    """Peak RSS growth (MiB) of one forward call per (kind, path), each in a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    procs = {
        run: subprocess.Popen(
            [sys.executable, "-c", _PEAK_SCRIPT, *run],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run in runs
    }
    results = {}
    for run, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        results[run] = json.loads(out.strip().splitlines()[-1])["mib"]
    return results


@pytest.mark.parametrize(
    "kind",
    ["classifier", pytest.param("detector", marks=pytest.mark.large)],
)
def test_eager_peak_memory_is_that_of_the_compiled_path(kind):
    """Full-width SlowFast 8x8 R50 (or its AVA detector), one 32x128x128 clip.

    Keras' own functional run keeps every activation until the call ends: it adds 0.75 GiB
    (detector: 0.86 GiB) to the peak, against ~0.1 GiB for a compiled call
    (`predict_on_batch`). The eager calls, compiled and op by op, must stay within 1.5x of
    the compiled path (plus 50 MiB of allocator noise).
    """
    paths = ["predict_on_batch", "eager", "op_by_op"]
    mib = _peak_increments([(kind, path) for path in paths])
    limit = 1.5 * mib[(kind, "predict_on_batch")] + 50
    for path in paths[1:]:
        assert mib[(kind, path)] <= limit, mib


def test_module_examples():
    import doctest

    assert doctest.testmod(functional_module).failed == 0
