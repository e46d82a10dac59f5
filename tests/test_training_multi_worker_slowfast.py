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
  arguments) must also move every weight and BatchNorm statistic as the workers' step did,
  element by element to within what float32 promises for the two computations (see
  `TERM_RTOL`): a learning rate off by 0.3% fails it in every run tried.
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
# Weight change of step 1 against the oracle's, element by element (`_check_first_step`).
# Both processes compute the same float32 values in other orders: convolutions of two
# half batches by other kernels, BatchNorm statistics from per-worker sums all-reduced
# (Keras' synchronized BatchNorm takes the variance as E[x^2] - E[x]^2), gradients
# all-reduced from two halves. What float32 promises about that, per gradient element:
#
# * The element is a sum of n terms (a kernel element: input * output gradient over the
#   N*T*H*W output positions; a BatchNorm offset: the output gradient over the positions).
#   Two float32 sums of the same terms, in any orders, differ by at most 2 * gamma_n * S,
#   gamma_n = n * eps / (1 - n * eps), S = the sum of the terms' absolute values (Higham,
#   Accuracy and Stability of Numerical Algorithms, section 4.2). S, not the sum, is the
#   scale: a BatchNorm offset's gradient nearly cancels (3e-2 of S and less seen, its
#   change then as small as 1e-9), so a bound relative to the change itself is
#   ill-conditioned, however loose.
# * The terms' factors (activations, back-propagated gradients) are float32 values of
#   the forward and backward passes, each a dot product of up to K products computed in
#   another order. Two orders differ by about sqrt(K) * eps * sum|w * a| (the
#   probabilistic bound of Higham and Mary, 2019), below 1e-4 of the values' root mean
#   square here (the fast stem: K = 735, sum|w * a| at most 60 times it); measured
#   between the processes: about 1e-5. The difference is set by the magnitudes a value
#   is computed from, not by the value: a small gradient can carry the rounding of its
#   layer's larger ones (seen: a BatchNorm offset whose terms are 1/2400 of its layer's
#   largest, off by 2e-3 of their sum). So each factor is taken within TERM_RTOL times
#   (its magnitude + its tensor's root mean square) of the other process's; 1e-3 covers
#   the estimate ten times (`_FirstStep._add_terms` sums what that makes of each term).
# * ReLU and max pooling have kinks: an input within that difference of 0 (or of its
#   window's maximum) can take the other branch in the workers, which adds or drops its
#   whole contribution, a change of one term or more that no bound relative to S covers
#   (once: one element 1.3e-5 of its root mean square above 0 in one process, under 0 in
#   the other). Each such element adds its contribution's size to the bound
#   (`_FirstStep.kink_allowance`; about 100 elements, a few seconds).
# * The first Nesterov step of `TorchSGD` moves a weight by lr * (1 + momentum) * gradient
#   (plus weight decay, the same float32 operations in both): the gradient bound times
#   lr * (1 + momentum), UPDATE_OPS_EPS float32 epsilons of the change for those
#   operations, and the float32 spacing of the stored results.
TERM_RTOL = 1e-3
UPDATE_OPS_EPS = 8
EPS32 = float(np.finfo(np.float32).eps)
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


def _gamma(n):
    """gamma_n = n * eps / (1 - n * eps) of float32 (Higham's bound of an n-term sum)."""
    return n * EPS32 / (1 - n * EPS32)


def _channels(a):
    """An activation as float64 rows of channels."""
    a = np.asarray(a, np.float64)
    return a.reshape(-1, a.shape[-1])


class _FirstStep:
    """The single process's step 1 on the global batch, with what bounds its float32 error.

    One forward and backward pass in training mode (the tape is kept for `kink_allowance`),
    and for every trainable variable, per element, the number n of terms its gradient sums,
    S (`mass`), the sum of their absolute values, and the bound on the sum of their
    differences between the processes (`spread`), in float64 from the float32 activations
    and gradients; for every BatchNorm layer, the spread of its batch statistics.
    """

    def __init__(self, model, x, y):
        import keras
        import tensorflow as tf

        kinds = (keras.layers.Conv3D, keras.layers.Dense, keras.layers.BatchNormalization)
        layers = [layer for layer in model.layers if isinstance(layer, kinds)]
        self.relus = [layer for layer in model.layers if isinstance(layer, keras.layers.ReLU)]
        self.pools = [
            layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling3D)
        ]
        taps = [layer.input for layer in layers] + [layer.output for layer in layers]
        taps += [layer.input for layer in self.relus] + [layer.output for layer in self.relus]
        taps += [layer.input for layer in self.pools] + [layer.output for layer in self.pools]
        tap = keras.Model(model.input, [model.output, *taps])
        self.variables = model.trainable_variables
        self.tape = tf.GradientTape(persistent=True)
        with self.tape:
            outputs = tap(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, outputs[0]))
            if model.losses:
                loss += tf.add_n(model.losses)
        self.loss = loss
        rest = list(outputs[1:])

        def take(count):
            taken = rest[:count]
            del rest[:count]
            return taken

        inputs, outs = take(len(layers)), take(len(layers))
        self.relu_in, self.relu_out_values = take(len(self.relus)), take(len(self.relus))
        self.pool_in, pool_out = take(len(self.pools)), take(len(self.pools))
        relu_out = self.relu_out_values
        rest = list(self.tape.gradient(loss, [*self.variables, *outs, *relu_out, *pool_out]))
        self.grads = take(len(self.variables))
        output_grads = take(len(layers))
        self.relu_out_grads, self.pool_out_grads = take(len(self.relus)), take(len(self.pools))
        self.mass, self.spread, self.terms, self.bn_inputs = {}, {}, {}, {}
        for layer, a, dy in zip(layers, inputs, output_grads):
            self._add_terms(layer, np.asarray(a, np.float64), np.abs(np.asarray(dy, np.float64)))
        assert sorted(self.mass) == sorted(w.path for w in self.variables)

    def _set(self, variable, terms, mass, spread):
        """Records, per element of `variable`'s gradient: its number of terms, the sum of
        their absolute values and the bound on the sum of their differences."""
        self.terms[variable.path] = terms
        self.mass[variable.path] = np.asarray(mass, np.float64).reshape(variable.shape)
        self.spread[variable.path] = np.asarray(spread, np.float64).reshape(variable.shape)

    def _add_terms(self, layer, a, dy):
        """The terms of `layer`'s weight gradients, from its input `a` and output gradient.

        A term is a product of factors (an input, an output gradient), each within
        TERM_RTOL * (its magnitude + its tensor's root mean square) of the other
        process's: a term differs by at most TERM_RTOL * (2 |a dy| + rms(a) |dy|
        + |a| rms(dy)), summed into the element's `spread`.
        """
        import keras
        import tensorflow as tf

        rho = TERM_RTOL
        rms_a, rms_dy = np.sqrt(np.mean(a**2)), np.sqrt(np.mean(dy**2))
        positions = int(np.prod(dy.shape[:-1]))
        if isinstance(layer, keras.layers.Conv3D):
            assert layer.padding == "valid" and layer.groups == 1, layer.name

            def sums(inputs, grads):
                # Per kernel element, the sum over the output positions of input * gradient.
                return tf.raw_ops.Conv3DBackpropFilterV2(
                    input=inputs,
                    filter_sizes=tuple(layer.kernel.shape),
                    out_backprop=grads,
                    strides=[1, *layer.strides, 1],
                    padding="VALID",
                    dilations=[1, *layer.dilation_rate, 1],
                ).numpy()

            abs_a = np.abs(a)
            mass = sums(abs_a, dy)
            spread = rho * (
                2 * mass
                + rms_a * sums(np.ones_like(a), dy)
                + rms_dy * sums(abs_a, np.ones_like(dy))
            )
            self._set(layer.kernel, positions, mass, spread)
        elif isinstance(layer, keras.layers.Dense):
            rows, grads = np.abs(a).reshape(positions, -1), dy.reshape(positions, -1)
            mass = rows.T @ grads
            spread = rho * (
                2 * mass + rms_a * grads.sum(0)[None, :] + rms_dy * rows.sum(0)[:, None]
            )
            self._set(layer.kernel, positions, mass, spread)
        else:
            assert layer.axis in (-1, a.ndim - 1), layer.name
            x, g = _channels(a), _channels(dy)
            n = len(x)
            mean, var = x.mean(0), x.var(0)
            abs_x, abs_mean = np.abs(x), np.abs(mean)
            mean_abs, mean_square = abs_x.mean(0), (x**2).mean(0)
            # The batch statistics: the same n inputs (each within rho * (|x| + rms)) summed
            # in another order; the workers' variance is E[x^2] - E[x]^2, a two-pass mean
            # here (both within 2 gamma_n E[x^2] of exact), the subtraction rounded.
            mean_spread = 2 * _gamma(n) * mean_abs + rho * (mean_abs + rms_a)
            var_spread = (
                (6 * _gamma(n) + EPS32) * mean_square
                + 2 * rho * (mean_square + rms_a * mean_abs)
                + 2 * abs_mean * mean_spread
            )
            self.bn_inputs[layer.name] = dict(mean=mean_spread, variance=var_spread)
            if layer.center:  # d beta = sum dy
                self._set(layer.beta, n, g.sum(0), rho * (g.sum(0) + n * rms_dy))
            if layer.scale:
                # tf.nn.batch_normalization: y = x * (gamma * r) + (beta - mean * gamma * r),
                # r = rsqrt(var + epsilon): d gamma = r * (sum dy * x - mean * sum dy).
                r = 1 / np.sqrt(var + layer.epsilon)
                mass = r * ((abs_x * g).sum(0) + abs_mean * g.sum(0))
                # The factors dy, x and mean, and r (relatively within half of the
                # variance's spread over var + epsilon).
                spread = r * (
                    rho * ((g + rms_dy) * (abs_x + abs_mean)).sum(0)
                    + rho * (g * (abs_x + rms_a)).sum(0)
                    + g.sum(0) * mean_spread
                ) + mass * var_spread / (2 * (var + layer.epsilon))
                self._set(layer.gamma, 2 * n, mass, spread)
        if getattr(layer, "use_bias", False):
            self._set(
                layer.bias,
                positions,
                dy.reshape(positions, -1).sum(0),
                rho * (dy.reshape(positions, -1).sum(0) + positions * rms_dy),
            )

    def _unit_gradient(self, tensor, index):
        """d tensor[index] / d variables, as |.| float64 arrays by variable path."""
        import tensorflow as tf

        seed = np.zeros(tensor.shape, np.float32)
        seed[index] = 1.0
        grads = self.tape.gradient(tensor, self.variables, output_gradients=tf.constant(seed))
        return {
            w.path: np.abs(np.asarray(g, np.float64))
            for w, g in zip(self.variables, grads)
            if g is not None
        }

    def _open_weights(self):
        """Per ReLU, |d loss / d output| were the output of each element positive.

        The tape's gradient stops at two more places than a kink of the element's own: a
        max pooling sends a window's gradient to one element (a ReLU output of 0 gets none,
        but would if it became the window's maximum), and a residual shortcut whose branch
        is exactly 0 (its BatchNorm's scale is 0 at initialisation) copies the ReLU output
        into the next ReLU, which stops where the copy is 0. Here the first is replaced by
        the sum of the gradients of the windows the element is in, and the second is
        followed through.
        """
        import keras
        import tensorflow as tf

        weights = [np.abs(np.asarray(g, np.float64)) for g in self.relu_out_grads]
        position = {id(relu.output): i for i, relu in enumerate(self.relus)}
        for pool, dy in zip(self.pools, self.pool_out_grads):
            source = pool.input._keras_history.operation
            padding = source if isinstance(source, keras.layers.ZeroPadding3D) else None
            i = position.get(id(padding.input if padding else pool.input))
            assert i is not None, pool.name  # max pooling of a ReLU's output
            relu_output = tf.constant(np.asarray(self.relu_out_values[i]))
            with tf.GradientTape() as tape:
                tape.watch(relu_output)
                u = padding(relu_output) if padding else relu_output
                strides = [1, *pool.strides, 1]
                window = [1, *pool.pool_size, 1]
                total = tf.nn.avg_pool3d(u, window, strides, "VALID") * np.prod(pool.pool_size)
                spread = tf.reduce_sum(total * tf.abs(dy))
            weights[i] += np.asarray(tape.gradient(spread, relu_output), np.float64)
        for j in reversed(range(len(self.relus))):
            source = self.relus[j].input._keras_history.operation
            if not isinstance(source, keras.layers.Add):
                continue
            stopped = np.asarray(self.relu_in[j]) == 0
            for t in source.input:
                i = position.get(id(t))
                if i is not None:
                    weights[i] += np.where(stopped, weights[j], 0.0)
        return weights

    def kink_allowance(self):
        """Per variable, the sum over the elements at a kink of their contribution's size.

        An element is at a kink when its value is within TERM_RTOL times the root mean
        square of its channel or tensor (the larger) of 0 (a ReLU input), or of its
        window's maximum (a max-pooling input): the workers' value may lie on the other
        side. Taking the other side changes the gradients by at most |d loss / d output|
        (`_open_weights`) times |d element / d weights|. A ReLU whose input has no negative
        element has no kink of its own: its input is a shortcut copy of an earlier ReLU's
        output plus an exact 0 (see `_open_weights`).

        Returns:
            `({path: allowance}, number of elements at a kink)`.
        """
        import keras

        allowance = {w.path: np.zeros(w.shape) for w in self.variables}
        count = 0

        def add(weight, tensors):
            for tensor, index in tensors:
                for path, g in self._unit_gradient(tensor, index).items():
                    allowance[path] += weight * g

        def scale(values):
            channels = np.sqrt((_channels(values) ** 2).mean(0))
            return np.maximum(channels, np.sqrt(np.mean(values**2)))

        rho = TERM_RTOL / (1 - TERM_RTOL)
        for relu, v, weights in zip(self.relus, self.relu_in, self._open_weights()):
            values = np.asarray(v, np.float64)
            if not np.any(values < 0):
                assert isinstance(relu.input._keras_history.operation, keras.layers.Add)
                continue
            near = (np.abs(values) <= rho * scale(values)) & (weights > 0)
            for index in zip(*np.nonzero(near)):
                add(weights[index], [(v, index)])
                count += 1
        for layer, u, dy in zip(self.pools, self.pool_in, self.pool_out_grads):
            assert layer.padding == "valid", layer.name
            values, grads = np.asarray(u, np.float64), np.abs(np.asarray(dy, np.float64))
            size, strides = tuple(layer.pool_size), tuple(layer.strides)
            windows = np.lib.stride_tricks.sliding_window_view(values, size, axis=(1, 2, 3))
            windows = windows[:, :: strides[0], :: strides[1], :: strides[2]]
            assert windows.shape[:5] == grads.shape, layer.name
            flat = windows.reshape(*grads.shape, -1)
            top = flat.max(-1, keepdims=True)
            # Both values within rho * (|value| + scale) of the workers'.
            close = top - flat <= 2 * rho * (top + scale(values)[:, None])
            ambiguous = (close.sum(-1) > 1) & (top[..., 0] > 0) & (grads > 0)
            for n, t, h, w, c in zip(*np.nonzero(ambiguous)):
                members = []
                for k in np.nonzero(close[n, t, h, w, c])[0]:
                    dt, dh, dw = np.unravel_index(k, size)
                    index = (n, t * strides[0] + dt, h * strides[1] + dh, w * strides[2] + dw, c)
                    members.append((u, index))
                add(grads[n, t, h, w, c], members)
                count += 1
        return allowance, count


def _check_first_step(step, model, optimizer, workers):
    """Asserts that the workers' weights after step 1 are the single process's, to float32.

    Every element of every weight: |workers - single process| <= the float32 spacing of the
    two stored values + a bound on the difference of the exact results of the two
    computations (see TERM_RTOL: summation, the terms' spread and the elements at a kink;
    for the BatchNorm moving statistics, their batch statistics' spread).

    Args:
        step: the single process's `_FirstStep` of `model`.
        model: the single process's network, with the initial weights (changed here: one
            step).
        optimizer: its optimizer, as `train.py` makes it.
        workers: `{variable path: array}`, the workers' weights after step 1.

    Returns:
        Figures for the log: the largest fraction of its bound (beyond the spacing) an
        element's difference takes, the number of elements at a kink and the largest
        gradient difference relative to its terms' absolute sum.
    """
    import keras

    before = {w.path: np.array(w.numpy(), np.float64) for w in model.weights}
    lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    optimizer.apply_gradients(zip(step.grads, step.variables))
    oracle = {w.path: np.array(w.numpy(), np.float64) for w in model.weights}
    got = {path: np.asarray(value, np.float64) for path, value in workers.items()}
    assert sorted(got) == sorted(oracle)
    # First Nesterov step of TorchSGD: w -= lr * (g + momentum * g).
    assert optimizer.nesterov
    step_scale = lr * (1 + optimizer.momentum)

    bounds = {}  # path: the bound beyond the stored values' spacing
    for path, mass in step.mass.items():
        gradient = 2 * _gamma(step.terms[path]) * mass + step.spread[path]
        change = np.abs(oracle[path] - before[path])
        bounds[path] = step_scale * gradient + UPDATE_OPS_EPS * EPS32 * change
    # BatchNorm moving statistics: (1 - momentum) * (batch statistic - old) added.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            spreads = step.bn_inputs[layer.name]
            for variable, name in (
                (layer.moving_mean, "mean"),
                (layer.moving_variance, "variance"),
            ):
                path = variable.path
                rounding = UPDATE_OPS_EPS * EPS32 * (np.abs(oracle[path]) + np.abs(before[path]))
                bounds[path] = (1 - layer.momentum) * spreads[name] + rounding
    assert sorted(bounds) == sorted(oracle)

    def excess(path):
        """|difference| beyond the spacing of the stored values, over the bound."""
        largest = np.maximum(np.abs(got[path]), np.abs(oracle[path])).astype(np.float32)
        beyond = np.abs(got[path] - oracle[path]) - np.spacing(largest).astype(np.float64)
        beyond, bound = np.maximum(beyond, 0.0), bounds[path]
        # 0 where nothing is beyond the spacing (a bound of 0 included).
        return np.divide(beyond, bound, out=np.zeros_like(beyond), where=beyond > 0)

    allowance, kinks = step.kink_allowance()
    for path, extra in allowance.items():
        bounds[path] = bounds[path] + step_scale * extra
    worst = (0.0, "")
    for path in bounds:
        ratio = excess(path)
        index = np.unravel_index(np.argmax(ratio), ratio.shape)
        assert ratio[index] <= 1, (
            path,
            index,
            f"workers {got[path][index]!r}, single process {oracle[path][index]!r}",
            f"change {oracle[path][index] - before[path][index]:.4g}",
            f"bound {bounds[path][index]:.4g} (beyond the spacing)",
        )
        worst = max(worst, (float(ratio[index]), path))
    # The gradient differences relative to their terms' absolute sum, for the log.
    relative = (0.0, "")
    for path, mass in step.mass.items():
        difference = excess(path) * bounds[path] / np.where(mass > 0, step_scale * mass, np.inf)
        relative = max(relative, (float(np.max(difference, initial=0.0)), path))
    return dict(worst=worst, kinks=kinks, relative=relative)


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

    # The workers' weights after the step, by variable path.
    trained = _narrow_slowfast(sync_bn=False)
    trained.load_weights(str(probe / "trained_worker0.weights.h5"))
    workers = {w.path: np.array(w.numpy()) for w in trained.weights}

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
    step = _FirstStep(model, x, y)
    loss = float(step.loss)
    loss_diff = abs(loss - chief[1])
    print(f"step-1 loss: workers {chief[1]!r}, single process {loss!r}, |diff| {loss_diff}")
    assert loss_diff <= LOSS_ATOL
    # One SGD step of the single process moves every weight as the workers' step did.
    figures = _check_first_step(step, model, optimizer, workers)
    worst, kinks, relative = figures["worst"], figures["kinks"], figures["relative"]
    print(
        f"step-1 weights vs single process: worst difference {worst[0]:.3g} of its bound "
        f"({worst[1]}); {kinks} elements at a kink; worst gradient difference "
        f"{relative[0] / EPS32:.3g} eps of its terms' absolute sum ({relative[1]})"
    )

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
