"""Grad-CAM, timeline plots and annotated videos (keras_slowfast.visualize, classify --gradcam).

Grad-CAM is checked against an oracle written here: the class score's gradient with respect
to the target layers' activations by central finite differences through the layers above
them, the map formed in NumPy (float64) and upsampled by an interpolation matrix built in
this file (itself checked against OpenCV's bilinear resize).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import weakref  # noqa: E402

import av  # noqa: E402
import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_slowfast import visualize  # noqa: E402
from keras_slowfast.models import SlowFast  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data" / "sample.mp4"  # 10 s, 30 fps, 340x256
LAYERS = ["s5_pathway0_res2_relu", "s5_pathway1_res2_relu"]


# ---------------------------------------------------------------------------------------------
# The oracle's own pieces.


def _interp_matrix(n_in, n_out):
    """`(n_out, n_in)` linear interpolation with pixel centres aligned, ends clamped."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        x = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)
        j = int(np.floor(x))
        f = x - j
        m[i, j] += 1 - f
        if f > 0:
            m[i, j + 1] += f
    return m


def _upsample(cam, size):
    mt, mh, mw = (_interp_matrix(n, s) for n, s in zip(cam.shape, size))
    return np.einsum("at,bh,cw,thw->abc", mt, mh, mw, cam)


def _normalise(cam):
    return (cam - cam.min()) / (cam.max() - cam.min())


def test_interp_matrix_is_opencv_bilinear():
    # The oracle's upsampling agrees with an independent implementation (OpenCV's).
    x = np.random.default_rng(0).random((3, 5)).astype(np.float32)
    ours = _interp_matrix(3, 17) @ x @ _interp_matrix(5, 23).T
    theirs = cv2.resize(x, (23, 17), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def _finite_difference_gradients(head, activations, cls, eps):
    """d score / d activation of every element, by central differences, in float64."""
    flats = [a.reshape(-1) for a in activations]
    sizes = [f.size for f in flats]
    total = sum(sizes)
    grads = np.zeros(total)
    chunk = 1024
    for lo in range(0, total, chunk):
        idx = np.arange(lo, min(total, lo + chunk))
        # Two batches (+eps, -eps) of len(idx) copies of the activations, each with one
        # element moved.
        inputs = []
        offset = 0
        for a, f, size in zip(activations, flats, sizes):
            copies = np.repeat(f[None], 2 * len(idx), axis=0).astype(np.float64)
            own = (idx >= offset) & (idx < offset + size)
            rows = np.nonzero(own)[0]
            copies[rows, idx[own] - offset] += eps
            copies[len(idx) + rows, idx[own] - offset] -= eps
            inputs.append(copies.reshape((2 * len(idx),) + a.shape))
            offset += size
        scores = np.asarray(head.predict_on_batch(inputs), np.float64)[:, cls]
        grads[idx] = (scores[: len(idx)] - scores[len(idx) :]) / (2 * eps)
    out, offset = [], 0
    for a, size in zip(activations, sizes):
        out.append(grads[offset : offset + size].reshape(a.shape))
        offset += size
    return out


@pytest.fixture(scope="module")
def tiny():
    """A narrow SlowFast whose head gives spatially varying gradients: res5 is 2x3, the
    head's window 1x1 (train crop 32 on a 64x96 input), softmax per position then averaged.
    The clip is not square, so a transposed map would not match."""
    keras.utils.set_random_seed(3)
    model = SlowFast(
        depth=50,
        width_per_group=8,
        num_frames=8,
        alpha=4,
        classes=3,
        input_shape=(8, 64, 96, 3),
        train_crop_size=32,
    )
    # Larger class weights than the init's 0.01 (gradients well above float32 noise), not
    # so large that the softmax saturates.
    proj = model.get_layer("head_projection")
    rng = np.random.default_rng(0)
    kernel, bias = proj.get_weights()
    proj.set_weights([rng.normal(0, 0.3, kernel.shape).astype(np.float32), bias])
    clip = rng.integers(0, 256, (8, 64, 96, 3), dtype=np.uint8)
    return model, clip


def _oracle_cam(activations, gradients, size, weight_axes):
    axes = (1, 2) if weight_axes == "hw" else (0, 1, 2)
    weights = gradients.mean(axis=axes, keepdims=True)
    cam = np.maximum((weights * activations).sum(axis=-1), 0.0)
    assert cam.max() > 0, "the oracle's map is empty: choose another seed"
    return _normalise(_upsample(cam, size))


def test_grad_cam_matches_finite_difference_oracle(tiny):
    """The default targets (res5 outputs) feed the head only (pooling, projection, softmax,
    mean: smooth), so central differences are exact up to float32 rounding. The head
    pools all frames at once, so each channel's gradient is the same in every frame and
    `weight_axes` "hw" and "thw" coincide here (they differ below, on other gradients)."""
    model, clip = tiny
    assert visualize._default_layers(model) == LAYERS
    heatmaps, cls = visualize.grad_cam(model, clip)
    probs = np.asarray(model.predict_on_batch(clip[None]))[0]
    assert cls == int(np.argmax(probs))

    features = keras.Model(model.inputs, [model.get_layer(n).output for n in LAYERS])
    activations = [np.asarray(a, np.float64)[0] for a in features.predict_on_batch(clip[None])]
    head = keras.Model([model.get_layer(n).output for n in LAYERS], model.outputs)
    # The split is exact: the layers above the targets give the model's output.
    np.testing.assert_allclose(
        head.predict_on_batch([a[None].astype(np.float32) for a in activations])[0],
        probs,
        atol=1e-6,
    )
    grads = _finite_difference_gradients(head, activations, cls, eps=0.1)
    assert max(np.abs(g).max() for g in grads) > 1e-3  # a real signal above float32 noise
    errors = []
    for a, g, ours in zip(activations, grads, heatmaps):
        expected = _oracle_cam(a, g, clip.shape[:3], "hw")
        assert ours.shape == clip.shape[:3] and ours.dtype == np.float32
        errors.append(np.abs(ours - expected).max())
    print(f"grad_cam vs finite-difference oracle: max abs error {max(errors):.2e}")
    # Float32 central differences (eps 0.1 on activations ~0.3, score ~0.7): the maps agree
    # to ~1e-4 of their range.
    assert max(errors) < 1e-3


@pytest.mark.parametrize("weight_axes", ["hw", "thw"])
def test_cam_formation_matches_numpy_oracle(weight_axes):
    # Activations and gradients that vary over time (as below res5): "hw" weighs each
    # frame's channels by that frame's gradient means, "thw" by the clip's.
    rng = np.random.default_rng(7)
    a = rng.random((3, 4, 5, 6))
    g = 0.3 * rng.normal(size=(3, 4, 5, 6)) + np.linspace(-0.5, 1.5, 3)[:, None, None, None]
    ours = visualize._cam(a, g, (12, 16, 20), weight_axes)
    expected = _oracle_cam(a, g, (12, 16, 20), weight_axes)
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    other = _oracle_cam(a, g, (12, 16, 20), "thw" if weight_axes == "hw" else "hw")
    assert np.abs(ours - other).max() > 0.05


def _check_maps(heatmaps, shape):
    for m in heatmaps:
        assert m.shape == shape and m.dtype == np.float32
        assert m.min() >= 0.0 and m.max() <= 1.0
        total = float(m.sum())
        assert np.isfinite(total) and total > 0


def test_grad_cam_slowfast_and_slow_maps(tiny):
    model, clip = tiny
    heatmaps, cls = visualize.grad_cam(model, clip[None])  # a batch of one works too
    assert len(heatmaps) == 2
    _check_maps(heatmaps, (8, 64, 96))
    assert max(m.max() for m in heatmaps) == 1.0
    # An explicit class is the one explained.
    other = (cls + 1) % 3
    _, used = visualize.grad_cam(model, clip, class_index=other)
    assert used == other

    keras.utils.set_random_seed(1)
    slow = SlowFast(
        depth=50,
        single_pathway=True,
        width_per_group=8,
        num_frames=4,
        classes=3,
        input_shape=(4, 64, 64, 3),
        train_crop_size=64,
    )
    slow_clip = np.random.default_rng(1).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    slow_maps, _ = visualize.grad_cam(slow, slow_clip)
    assert len(slow_maps) == 1
    _check_maps(slow_maps, (4, 64, 64))


class _Record:
    """Weak references to the probe's eager outputs, and which were alive at each check."""

    def __init__(self):
        self.refs, self.alive = [], []


class _Probe(keras.layers.Layer):
    """Identity keeping a weak reference to each eager tensor it returns."""

    def __init__(self, record, **kwargs):
        super().__init__(**kwargs)
        self.record = record

    def call(self, x):
        y = tf.identity(x)
        if tf.executing_eagerly():
            self.record.refs.append(weakref.ref(y))
        return y


class _Check(keras.layers.Layer):
    """Identity recording, on each eager call, which of the probe's tensors are alive."""

    def __init__(self, record, **kwargs):
        super().__init__(**kwargs)
        self.record = record

    def call(self, x):
        if tf.executing_eagerly():
            self.record.alive.append([ref() is not None for ref in self.record.refs])
        return tf.identity(x)


def test_grad_cam_frees_the_activations_below_the_targets():
    """While the layers above the target run, no activation below it is held: the tape
    records only what follows the target (not the weights' uses), and the forward pass
    drops each activation after its last use, so the peak memory is an inference pass's.
    A tape recording the whole network (e.g. watching the weights) or a forward pass
    keeping every output would keep the probe's tensor alive."""
    record = _Record()
    keras.utils.set_random_seed(5)
    inputs = keras.Input((4, 8, 10, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv3D(6, 3, padding="same", activation="relu", name="below")(x)
    x = _Probe(record)(x)
    x = keras.layers.Conv3D(8, 3, padding="same", activation="relu", name="target")(x)
    x = _Check(record)(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    clip = np.random.default_rng(5).integers(0, 256, (4, 8, 10, 3), dtype=np.uint8)
    record.refs.clear(), record.alive.clear()

    (heatmap,), cls = visualize.grad_cam(model, clip, layers=["target"])

    assert len(record.refs) == 1 and record.alive == [[False]]
    # The map is still the gradient's: against a plain tape over the layers above.
    features = keras.Model(inputs, model.get_layer("target").output)
    head = keras.Model(model.get_layer("target").output, outputs)
    a = tf.convert_to_tensor(features(clip[None].astype(np.float32)))
    with tf.GradientTape() as tape:
        tape.watch(a)
        score = head(a)[0, cls]
    g = tape.gradient(score, a)
    expected = _oracle_cam(np.asarray(a, np.float64)[0], np.asarray(g, np.float64)[0],
                           clip.shape[:3], "hw")  # fmt: skip
    np.testing.assert_allclose(heatmap, expected, atol=1e-5)


def test_grad_cam_bad_arguments(tiny):
    model, clip = tiny
    with pytest.raises(ValueError, match=r"class_index.*Received: class_index=3"):
        visualize.grad_cam(model, clip, class_index=3)
    with pytest.raises(ValueError, match="class_index=True"):
        visualize.grad_cam(model, clip, class_index=True)
    with pytest.raises(TypeError, match="uint8"):
        visualize.grad_cam(model, clip.astype(np.float32))
    with pytest.raises(ValueError, match="clip_shape"):
        visualize.grad_cam(model, clip[..., :2])
    with pytest.raises(ValueError, match="frames of `clip`"):
        visualize.grad_cam(model, clip[:4])
    with pytest.raises(ValueError, match="layers='nope'"):
        visualize.grad_cam(model, clip, layers=["nope"])
    with pytest.raises(ValueError, match="weight_axes"):
        visualize.grad_cam(model, clip, weight_axes="t")


# ---------------------------------------------------------------------------------------------
# Videos.


def _read(path):
    with av.open(os.fspath(path)) as f:
        stream = f.streams.video[0]
        rate = stream.average_rate
        frames = np.stack([fr.to_ndarray(format="rgb24") for fr in f.decode(stream)])
    return frames, rate


def test_write_gradcam_video(tiny, tmp_path):
    model, clip = tiny
    heatmaps, _ = visualize.grad_cam(model, clip)
    out = visualize.write_gradcam_video(
        clip, heatmaps, tmp_path / "cam.mp4", fps=15, title="class 0"
    )
    frames, rate = _read(out)
    assert frames.shape == (8, 64, 3 * 96, 3)
    assert rate == 15
    assert os.listdir(tmp_path) == ["cam.mp4"]  # no temporary file left
    # The first panel is the clip (codec noise aside), away from its title.
    np.testing.assert_allclose(
        frames[:, 30:, :96].astype(float).mean(), clip[:, 30:].astype(float).mean(), atol=3
    )
    with pytest.raises(ValueError, match="heatmaps"):
        visualize.write_gradcam_video(clip, [heatmaps[0][:4]], tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="alpha"):
        visualize.write_gradcam_video(clip, heatmaps, tmp_path / "x.mp4", alpha=2)


def test_window_assignment_rules():
    times = np.array([1.0, 3.0, 5.0])
    # Nearest centre: boundaries half way, the ends take the first / last window.
    assert [visualize._window_of(t, times, None, None) for t in (0.0, 1.9, 2.0, 2.1, 9)] == [
        0,
        0,
        0,
        1,
        2,
    ]
    lo, hi = visualize._windows(times, 1.0, None, None)
    assert [visualize._window_of(t, times, lo, hi) for t in (0.4, 0.5, 1.49, 1.5, 3.2)] == [
        None,
        0,
        0,
        None,
        1,
    ]
    # Overlapping windows: the nearest centre wins.
    lo, hi = np.array([0.0, 1.0, 2.0]), np.array([4.0, 5.0, 6.0])
    assert [visualize._window_of(t, times, lo, hi) for t in (0.5, 2.5, 5.5)] == [0, 1, 2]
    with pytest.raises(ValueError, match="both `starts` and `ends`"):
        visualize._windows(times, None, lo, None)


def test_annotate_video(tmp_path):
    times = np.array([1.0, 3.0, 5.0])
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    out = visualize.annotate_video(
        SAMPLE,
        times,
        scores,
        tmp_path / "annotated.mp4",
        ["alpha", "beta", "gamma"],
        top_k=2,
        starts=times - 1,
        ends=times + 1,  # labelled until 6 s, then nothing
    )
    original, rate_in = _read(SAMPLE)
    annotated, rate_out = _read(out)
    assert annotated.shape == original.shape and rate_out == rate_in
    assert os.listdir(tmp_path) == ["annotated.mp4"]
    diff = np.abs(annotated.astype(np.int16) - original.astype(np.int16))
    seconds = np.arange(len(original)) / float(rate_in)
    labelled = seconds < 6.0
    # The label box (top left) differs from the input; elsewhere only codec noise.
    assert diff[labelled, :20, :60].mean() > 20
    assert diff[~labelled, :20, :60].mean() < 4
    assert diff[:, 100:, 150:].mean() < 4
    # Different windows, different text.
    first, second = annotated[int(1.0 * 30), :40, :100], annotated[int(3.0 * 30), :40, :100]
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 2
    with pytest.raises(ValueError, match="class_names"):
        visualize.annotate_video(SAMPLE, times, scores, tmp_path / "x.mp4", ["a"])
    with pytest.raises(ValueError, match="must not be the input video"):
        visualize.annotate_video(SAMPLE, times, scores, SAMPLE, None)


# ---------------------------------------------------------------------------------------------
# Timeline plots.


@pytest.mark.parametrize("kind", ["heatmap", "lines"])
def test_plot_timeline_png(tmp_path, kind):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    times = np.arange(20) * 0.5 + 1.0
    scores = rng.dirichlet(np.ones(8) * 0.3, size=20)
    names = [f"action {i}" for i in range(8)]
    path = visualize.plot_timeline(times, scores, names, tmp_path / "t.png", top=4, kind=kind)
    image = cv2.imread(os.fspath(path))
    assert image is not None and image.shape[1] == 1000  # 10 in x 100 dpi
    expected_height = round((1.6 + 0.42 * 4) * 100) if kind == "heatmap" else 400
    assert image.shape[0] == expected_height
    assert image.std() > 10  # not blank
    assert os.listdir(tmp_path) == ["t.png"]


def test_plot_timeline_bad_arguments(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="kind"):
        visualize.plot_timeline([1.0], [[0.5, 0.5]], None, tmp_path / "t.png", kind="bars")
    with pytest.raises(ValueError, match="scores"):
        visualize.plot_timeline([1.0, 2.0], [[0.5, 0.5]], None, tmp_path / "t.png")
    with pytest.raises(ValueError, match="top"):
        visualize.plot_timeline([1.0], [[0.5, 0.5]], None, tmp_path / "t.png", top=0)


def test_plot_timeline_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    # An absent package: Python's import system raises ImportError for a `None` entry.
    for name in ("matplotlib", "matplotlib.backends.backend_agg", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install keras-slowfast\[plot\]"):
        visualize.plot_timeline([1.0], [[1.0]], None, tmp_path / "t.png")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# The command line.


def _cli(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "keras_slowfast.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


@pytest.mark.large
def test_cli_classify_gradcam_slow(videos, tmp_path):
    video = os.path.join(videos, "k00.mp4")
    out = tmp_path / "cam.mp4"
    args = ["--model", "slow_8x8_r50", "--weights", "none", "--width-per-group", "8"]
    result = _cli("classify", video, *args, "--views", "1", "--gradcam", os.fspath(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Grad-CAM of class" in result.stdout
    frames, rate = _read(out)
    assert frames.shape == (8, 256, 2 * 256, 3)  # 8 frames, [frame | slow]
    assert rate == 30 / 8
    bad = _cli(
        "classify", video, *args, "--views", "1", "--gradcam", "x.mp4", "--gradcam-class", "400"
    )
    assert bad.returncode == 2 and "--gradcam-class" in bad.stderr


@pytest.mark.large
def test_cli_classify_gradcam_slowfast(videos, tmp_path):
    video = os.path.join(videos, "k03.mp4")
    out = tmp_path / "cam.mp4"
    result = _cli(
        "classify",
        video,
        "--model",
        "slowfast_8x8_r50",
        "--weights",
        "none",
        "--width-per-group",
        "8",
        "--views",
        "1",
        "--gradcam",
        os.fspath(out),
        "--gradcam-class",
        "5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Grad-CAM of class 5" in result.stdout
    frames, rate = _read(out)
    assert frames.shape == (32, 256, 3 * 256, 3)
    assert rate == 15


def test_the_issue_spelling_works_after_a_plain_import():
    import keras_slowfast
    from keras_slowfast import inference, visualize

    assert keras_slowfast.visualize.grad_cam is visualize.grad_cam
    assert keras_slowfast.inference.timeline is inference.timeline
    with pytest.raises(AttributeError, match="no attribute 'visualise'"):
        keras_slowfast.visualise  # noqa: B018
