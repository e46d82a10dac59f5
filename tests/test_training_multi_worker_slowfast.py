"""`examples/train.py --strategy multi_worker`: the two-pathway SlowFast on two workers.

Two worker processes on 127.0.0.1 (TF_CONFIG, `MultiWorkerMirroredStrategy`, ring
collectives, one TensorFlow thread each) train the narrow SlowFast 8x8 R50 (width 8, 8
frames of 32x32) with synchronized BatchNorm through the unchanged `examples/train.py`,
run by `training_scripts/train_probe.py`, which records the initial weights, each worker's
first batch, the loss of every step and the final weights.

Oracles:

* Numerics (`test_first_step_*`): a single process, independent of the distribution
  code, builds the same network with plain BatchNorm, loads the workers' initial weights,
  concatenates the two per-worker batches into the global batch and computes the
  cross-entropy in training mode. With BatchNorm synchronized, step 1's loss of the
  workers must equal it to float32 round-off (`LOSS_ATOL`); the same network fed the two
  halves separately (BatchNorm statistics per worker) differs by far more, so the
  comparison can tell. One SGD step of that process (the package's optimizer, same
  arguments) must also move every weight and BatchNorm statistic as the workers' step did.
* Identity of the workers: their weights are bitwise equal, initial and final.
* Fine-tuning from published weights (`test_fine_tune_*`): the backbone `train.py`
  starts from equals the raw tensors of the PySlowFast checkpoint read with `torch.load`
  (mapped by the package's name map; skipped without PyTorch), downloaded from a mirror
  on 127.0.0.1 serving the narrow golden checkpoint under the published path.

The data source is a parameter of the harness (`multi_worker_harness.data_source_flags`):
TFRecord files read directly by each worker, or through a tf.data service.
"""

import json
import signal
import sys

import numpy as np
import pytest
from multi_worker_harness import (
    NARROW_SLOWFAST_FLAGS,
    REPO,
    TRAIN_PROBE,
    Workers,
    data_source_flags,
    free_ports,
    h5_arrays,
    result_lines,
    start_train_workers,
    step_losses,
)

CLASSES = 3
GLOBAL_BATCH = 4
# Loss of step 1 against the single-process oracle: float32 round-off of a mean of 4
# cross-entropies of about 1.1 after 50 layers reduced in another order.
LOSS_ATOL = 1e-5
# Weight change of step 1 against the oracle's (gradients all-reduced from two halves vs
# one global batch, in float32): per tensor relative to its largest change (a BatchNorm
# offset's gradient is a sum that nearly cancels: about 5e-4 seen), and over all weights
# (L2 norm of the difference / of the change; about 1e-6 seen).
UPDATE_RTOL = 1e-3
UPDATE_OVERALL_RTOL = 1e-5
# Precise-BN statistics against NumPy over the global batch, relative to the layer's
# standard deviation (mean) or largest variance (variance): float32 activations.
PRECISE_BN_RTOL = 1e-4
RUN_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def records(videos, tmp_path_factory):
    """Two JPEG-frame TFRecord shards of the real videos (two clips each), short side 40."""
    from keras_slowfast import data

    out = tmp_path_factory.mktemp("records")
    entries = [
        (str(videos / "bikes.mp4"), 0),
        (str(videos / "k00.mp4"), 1),
        (str(videos / "k03.mp4"), 2),
        (str(videos / "k00.mp4"), 0),
    ]
    data.write_frame_tfrecords(
        entries, out / "clips", num_shards=2, short_side=40, num_workers=2, on_error="raise"
    )
    return str(out / "clips-*")


def _train_flags(model_dir, source, epochs, steps_per_epoch, extra=()):
    return [
        *NARROW_SLOWFAST_FLAGS,
        "--sync_bn",
        f"--classes={CLASSES}",
        f"--global_batch_size={GLOBAL_BATCH}",
        f"--epochs={epochs}",
        f"--steps_per_epoch={steps_per_epoch}",
        f"--model_dir={model_dir}",
        *data_source_flags(source),
        *extra,
    ]


def run_two_workers(
    folder, tag, source, model_dir, epochs, steps_per_epoch, probe_dir=None, extra=()
):
    """Runs two train.py workers to the end; returns their logs."""
    with Workers(folder, tag) as workers:
        start_train_workers(
            workers,
            free_ports(2),
            _train_flags(model_dir, source, epochs, steps_per_epoch, extra),
            probe_dir,
        )
        finished = workers.wait(RUN_TIMEOUT_S)
        assert finished, workers.tails()
    workers.check()
    return [workers.log(0), workers.log(1)]


def _narrow_slowfast(classes=CLASSES, sync_bn=False):
    from keras_slowfast import hub

    return hub.build(
        "slowfast_8x8_r50",
        width_per_group=8,
        classes=classes,
        num_frames=8,
        input_shape=(8, 32, 32, 3),
        train_crop_size=32,
        dropout_rate=0.0,
        sync_bn=sync_bn,
    )


def _assert_same_weights(first, second):
    a, b = h5_arrays(first), h5_arrays(second)
    assert a.keys() == b.keys()
    assert len(a) > 300  # every conv, BatchNorm (4 each) and the head
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _logged_losses(model_dir):
    import tensorflow as tf

    events = sorted((model_dir / "train").glob("events.out.tfevents.*"))
    assert len(events) == 1  # the chief's only
    losses = {}
    for event in tf.compat.v1.train.summary_iterator(str(events[0])):
        for value in event.summary.value:
            if value.tag == "loss":
                losses[event.step] = float(tf.make_ndarray(value.tensor))
    return losses


@pytest.fixture(scope="module")
def one_step(records, tmp_path_factory):
    """Two workers, one step of a global batch of 4 (2 per worker), then precise BN on one
    global batch; TFRecords read directly."""
    folder = tmp_path_factory.mktemp("one_step")
    probe = folder / "probe"
    probe.mkdir()
    model_dir = folder / "run"
    logs = run_two_workers(
        folder,
        "one_step",
        {"tfrecords": records},
        model_dir,
        1,
        1,
        probe,
        extra=["--precise_bn_batches=1"],
    )
    return dict(folder=folder, probe=probe, model_dir=model_dir, logs=logs)


def test_first_step_workers_hold_identical_weights(one_step):
    probe = one_step["probe"]
    _assert_same_weights(probe / "initial_worker0.weights.h5", probe / "initial_worker1.weights.h5")
    _assert_same_weights(probe / "trained_worker0.weights.h5", probe / "trained_worker1.weights.h5")
    _assert_same_weights(probe / "final_worker0.weights.h5", probe / "final_worker1.weights.h5")
    # The chief's final.weights.h5 is what both hold.
    _assert_same_weights(
        probe / "final_worker0.weights.h5", one_step["model_dir"] / "final.weights.h5"
    )
    # One step changed them.
    before, after = (
        h5_arrays(probe / "initial_worker0.weights.h5"),
        h5_arrays(probe / "trained_worker0.weights.h5"),
    )
    assert any(not np.array_equal(before[n], after[n]) for n in before)


def test_first_step_loss_equals_single_process_loss(one_step):
    import keras
    import tensorflow as tf

    from keras_slowfast import training

    probe = one_step["probe"]
    chief, other = (step_losses(log) for log in one_step["logs"])
    assert list(chief) == list(other) == [1]
    assert chief[1] == other[1]  # all-reduced: the same float on both workers
    assert _logged_losses(one_step["model_dir"]) == {1: chief[1]}

    halves = [np.load(probe / f"batch_worker{i}.npz") for i in range(2)]
    for half in halves:
        assert half["x"].shape == (GLOBAL_BATCH // 2, 8, 32, 32, 3)
    x = np.concatenate([h["x"] for h in halves])
    y = np.concatenate([h["y"] for h in halves])

    model = _narrow_slowfast(sync_bn=False)
    model.load_weights(str(probe / "initial_worker0.weights.h5"))
    optimizer = training.create_optimizer(
        model,
        epochs=1,
        steps_per_epoch=1,
        global_batch_size=GLOBAL_BATCH,
        base_lr=0.4,
        base_batch_size=64,
        warmup_epochs=1.0,
        warmup_start_lr=0.01,
        end_lr=0.0,
        momentum=0.9,
        weight_decay=1e-4,
    )
    with tf.GradientTape() as tape:
        probabilities = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probabilities))
        if model.losses:
            loss += tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    loss_diff = abs(float(loss) - chief[1])
    print(f"step-1 loss: workers {chief[1]!r}, single process {float(loss)!r}, |diff| {loss_diff}")
    assert loss_diff <= LOSS_ATOL

    # BatchNorm per worker (not synchronized) gives another loss: the check can tell.
    separate = _narrow_slowfast(sync_bn=False)
    separate.load_weights(str(probe / "initial_worker0.weights.h5"))
    per_half = [
        float(
            tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(
                    h["y"], separate(h["x"], training=True)
                )
            )
        )
        for h in halves
    ]
    print(f"step-1 loss with per-worker BatchNorm statistics: {np.mean(per_half)!r}")
    # The check can fail: per-worker statistics move the loss far more than the synced run
    # differs from the single process (by 6e-5 to 2e-2 against about 1e-7 in the runs seen).
    assert abs(np.mean(per_half) - chief[1]) > 20 * max(loss_diff, 1e-6)

    # One step of the single process moves the weights as the workers' step did.
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    model.save_weights(str(one_step["folder"] / "oracle.weights.h5"))
    before = h5_arrays(probe / "initial_worker0.weights.h5")
    workers = h5_arrays(probe / "trained_worker0.weights.h5")
    oracle = h5_arrays(one_step["folder"] / "oracle.weights.h5")
    assert workers.keys() == oracle.keys()
    worst = (0.0, "")
    difference = change = 0.0
    for name in oracle:
        expected = oracle[name].astype(np.float64) - before[name]
        got = workers[name].astype(np.float64) - before[name]
        scale = float(np.max(np.abs(expected), initial=0.0))
        error = float(np.max(np.abs(got - expected), initial=0.0))
        # Plus the float32 spacing of the stored weights: a change far below a weight's
        # magnitude is only known to within it.
        ulp = 2 * float(np.spacing(np.float32(np.max(np.abs(oracle[name]), initial=0.0))))
        assert error <= UPDATE_RTOL * scale + ulp, (name, error, scale)
        if scale:
            worst = max(worst, (max(error - ulp, 0.0) / scale, name))
        difference += float(np.sum((got - expected) ** 2))
        change += float(np.sum(expected**2))
    overall = (difference / change) ** 0.5
    print(
        f"step-1 weight change vs single process: overall relative error {overall:.3g}, "
        f"worst tensor beyond 2 float32 spacings {worst[0]:.3g} ({worst[1]})"
    )
    assert overall <= UPDATE_OVERALL_RTOL


def test_precise_bn_statistics_are_those_of_the_global_batch(one_step):
    """After training, `train.py` recomputes BatchNorm statistics on one global batch.

    Oracle: a single process with plain BatchNorm, the trained weights and the two
    workers' precise-BN batches concatenated; each BatchNorm's mean and population
    variance of its inputs (NumPy, float64) in training mode.
    """
    import keras

    probe = one_step["probe"]
    halves = [np.load(probe / f"precise_bn_batch_worker{i}.npz") for i in range(2)]
    x = np.concatenate([h["x"] for h in halves])
    model = _narrow_slowfast(sync_bn=False)
    model.load_weights(str(probe / "trained_worker0.weights.h5"))
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) > 50
    moving = {bn.name: bn.moving_mean.numpy() for bn in bns}
    taps = keras.Model(model.input, [bn.input for bn in bns])
    inputs = [np.asarray(a, np.float64) for a in taps(x, training=True)]
    final = _narrow_slowfast(sync_bn=False)
    final.load_weights(str(probe / "final_worker0.weights.h5"))
    worst = 0.0
    for bn, a in zip(bns, inputs):
        axes = tuple(range(a.ndim - 1))
        mean, var = a.mean(axes), a.var(axes)
        layer = final.get_layer(bn.name)
        got_mean, got_var = layer.moving_mean.numpy(), layer.moving_variance.numpy()
        # Errors relative to the layer's spread (mean) and largest variance.
        scale = float(np.sqrt(var.max()))
        mean_error = float(np.abs(got_mean - mean).max()) / scale
        var_error = float(np.abs(got_var - var).max()) / float(var.max())
        worst = max(worst, mean_error, var_error)
        assert mean_error <= PRECISE_BN_RTOL and var_error <= PRECISE_BN_RTOL, (
            bn.name,
            mean_error,
            var_error,
        )
        # Not the moving averages of training.
        assert not np.allclose(got_mean, moving[bn.name]), bn.name
    print(f"precise BN vs single process: {len(bns)} layers, worst relative error {worst:.3g}")


@pytest.mark.large
def test_killed_worker_restarts_from_last_checkpoint_and_finishes(records, tmp_path):
    """SIGKILL of worker 1 in the middle of epoch 2; the job restarts and finishes."""
    import tensorflow as tf

    epochs, steps = 3, 2
    model_dir = tmp_path / "run"
    flags = _train_flags(model_dir, {"tfrecords": records}, epochs, steps)
    with Workers(tmp_path, "killed") as workers:
        start_train_workers(workers, free_ports(2), flags)
        # Step 3 is the first of epoch 2; epoch 1 ended with checkpoint ckpt-2.
        workers.wait_for(
            lambda: 3 in step_losses(workers.log(1)), RUN_TIMEOUT_S, "worker 1's step 3"
        )
        workers.kill(1, signal.SIGKILL)
        assert workers.returncodes()[1] == -signal.SIGKILL
        # The chief cannot go on without its peer: it stops (an error from the collectives
        # or the coordination service), or is stopped here after a bounded wait.
        chief_stopped_itself = workers.wait(180, indices=[0], stop_on_failure=False)
        chief_rc = workers.returncodes()[0]
    latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert latest is not None and latest.endswith("ckpt-2"), latest
    done = step_losses(workers.log(0))
    assert max(done) < epochs * steps, "the run was not interrupted"
    print(
        f"killed after step 3; chief {'exited by itself' if chief_stopped_itself else 'killed'} "
        f"(rc {chief_rc}) after steps {sorted(done)}"
    )

    # The restarted job (both workers, as a cluster manager restarts it) resumes at step 3.
    probe = tmp_path / "probe"
    probe.mkdir()
    logs = run_two_workers(
        tmp_path, "restarted", {"tfrecords": records}, model_dir, epochs, steps, probe
    )
    # It restored the checkpoint (model and optimizer, all or nothing): the step counter
    # continues from 2, so epoch 1 is not redone.
    for log in logs:
        assert sorted(step_losses(log)) == [3, 4, 5, 6]
    assert "Epoch 2/3" in logs[0] and "Epoch 1/3" not in logs[0]
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-6")
    _assert_same_weights(probe / "final_worker0.weights.h5", probe / "final_worker1.weights.h5")
    assert (model_dir / "final.weights.h5").exists()


def _torch_state(path):
    torch = pytest.importorskip("torch")
    checkpoint = torch.load(str(path), map_location="cpu", weights_only=False)
    return {k: v.numpy() for k, v in checkpoint["model_state"].items()}


@pytest.mark.large
def test_fine_tune_from_k400_through_a_local_mirror(records, golden, tmp_path, monkeypatch):
    """`--init_weights k400 --classes 5`: backbone = the checkpoint, new 5-way head trained."""
    from weights_mirror import make_mirror

    from keras_slowfast.weights import name_maps

    meta = json.loads((golden / "models" / "slowfast_8x8_r50" / "meta.json").read_text())
    width, init_classes = meta["width_per_group"], meta["num_classes"]
    mirror = make_mirror(golden, tmp_path / "mirror")
    try:
        probe = tmp_path / "probe"
        probe.mkdir()
        env = {"KERAS_SLOWFAST_MIRROR": mirror.url, "KERAS_HOME": str(tmp_path / "keras_home")}
        flags = [
            *[f for f in NARROW_SLOWFAST_FLAGS if not f.startswith("--width_per_group")],
            f"--width_per_group={width}",
            "--init_weights=k400",
            f"--init_classes={init_classes}",
            "--classes=5",
            # The custom loop (the multi-worker one, on one device here): on CPU its first
            # step compiles in about 2 minutes, `model.fit`'s in many more.
            "--custom_loop",
            "--global_batch_size=2",
            "--epochs=1",
            "--steps_per_epoch=2",
            f"--model_dir={tmp_path / 'run'}",
            f"--probe_dir={probe}",
            *data_source_flags({"tfrecords": records}),
        ]
        with Workers(tmp_path, "fine_tune") as workers:
            workers.start([sys.executable, TRAIN_PROBE, *flags], env)
            assert workers.wait(RUN_TIMEOUT_S), workers.tails()
        workers.check()
        assert any(r.endswith("SLOWFAST_8x8_R50.pkl") for r in mirror.requests), mirror.requests
    finally:
        mirror.close()

    model = _narrow_slowfast(classes=5)
    model.load_weights(str(probe / "initial_single.weights.h5"))
    initial = {w.path: np.array(w.numpy()) for w in model.weights}
    model.load_weights(str(tmp_path / "run" / "final.weights.h5"))
    final = {w.path: np.array(w.numpy()) for w in model.weights}
    head = model.get_layer("head_projection")
    assert tuple(head.kernel.shape)[-1] == 5
    # The new head was trained.
    assert not np.array_equal(initial[head.kernel.path], final[head.kernel.path])

    # Oracle: the raw tensors of the same weights in the PySlowFast checkpoint.
    state = _torch_state(golden / "models" / "slowfast_8x8_r50" / "pyslowfast.pyth")
    bn_names = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean"}
    bn_names["moving_variance"] = "running_var"
    compared = 0
    for layer in model.layers:
        if not layer.weights or layer.name == "head_projection":
            continue
        module = name_maps.keras_layer_to_torch_module(layer.name)
        assert module is not None, layer.name
        for w in layer.weights:
            short = w.path.split("/")[-1]
            if short in bn_names:
                expected = state[f"{module}.{bn_names[short]}"]
            elif short == "kernel":
                expected = np.transpose(state[f"{module}.weight"], (2, 3, 4, 1, 0))
            else:
                expected = state[f"{module}.bias"]
            np.testing.assert_array_equal(initial[w.path], expected, err_msg=w.path)
            compared += 1
    assert compared == len(model.weights) - len(head.weights)
    # The published head had `init_classes` outputs; the new one is not a slice of it.
    old_head = state["head.projection.weight"]
    assert old_head.shape[0] == init_classes
    assert not np.allclose(initial[head.kernel.path], old_head[:5].T)
    print(f"fine-tune: {compared} backbone tensors equal the checkpoint's; head 5-way, trained")


def _data_service_available():
    import importlib.util

    return (
        importlib.util.find_spec("keras_slowfast.training.data_service") is not None
        and "data_service_address" in (REPO / "examples" / "train.py").read_text()
    )


def _listening_address(workers, index, kind):
    """The HOST:PORT a `data-service` process prints once it listens."""
    prefix = f"data-service {kind} listening on "
    workers.wait_for(
        lambda: bool(result_lines(workers.log(index), prefix)), 120, f"the {kind} to listen"
    )
    address = result_lines(workers.log(index), prefix)[0].strip()
    return "127.0.0.1:" + address.rsplit(":", 1)[1]


@pytest.mark.large
def test_two_trainers_fed_by_a_two_worker_data_service(records, tmp_path):
    """Dispatcher, two data-service workers and two trainers, all processes on 127.0.0.1."""
    if not _data_service_available():
        pytest.skip("the tf.data service helpers are not in this checkout")
    cli = [sys.executable, "-m", "keras_slowfast.cli", "data-service"]
    epochs, steps = 2, 2
    model_dir = tmp_path / "run"
    probe = tmp_path / "probe"
    probe.mkdir()
    with Workers(tmp_path, "service") as service, Workers(tmp_path, "trainers") as trainers:
        dispatcher = _listening_address(
            service, service.start([*cli, "dispatcher", "--port=0"]), "dispatcher"
        )
        for _ in range(2):
            index = service.start(
                [*cli, "worker", f"--dispatcher={dispatcher}", "--worker-address=127.0.0.1"]
            )
            _listening_address(service, index, "worker")
        source = {"tfrecords": records, "data_service_address": f"grpc://{dispatcher}"}
        start_train_workers(
            trainers, free_ports(2), _train_flags(model_dir, source, epochs, steps), probe
        )
        finished = trainers.wait(RUN_TIMEOUT_S)
        assert finished, trainers.tails() + service.tails()
        trainers.check()
        # The service processes still run (they end only when stopped).
        assert service.returncodes() == [None, None, None], service.tails()
    chief, other = (step_losses(trainers.log(i)) for i in range(2))
    assert sorted(chief) == sorted(other) == list(range(1, epochs * steps + 1))
    assert chief == other
    assert all(np.isfinite(list(chief.values())))
    _assert_same_weights(probe / "final_worker0.weights.h5", probe / "final_worker1.weights.h5")
    assert (model_dir / "final.weights.h5").exists()
