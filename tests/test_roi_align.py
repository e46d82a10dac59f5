"""RoIAlign against a slow, independent NumPy implementation of the detectron2 rules."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_slowfast.models.roi_align import RoIAlign, roi_align


def _taps(y, x, height, width, t):
    """Bilinear taps `(row, col, weight)` of one sample, following the reference rules."""
    # NaN fails every comparison and therefore lands here too.
    if not (y >= -1.0 and y <= height and x >= -1.0 and x <= width):
        return []
    y = t(0) if y <= 0 else y
    x = t(0) if x <= 0 else x
    y0 = int(y)
    x0 = int(x)
    if y0 >= height - 1:
        y0 = y1 = height - 1
        y = t(y0)
    else:
        y1 = y0 + 1
    if x0 >= width - 1:
        x0 = x1 = width - 1
        x = t(x0)
    else:
        x1 = x0 + 1
    ly = y - t(y0)
    lx = x - t(x0)
    hy = t(1) - ly
    hx = t(1) - lx
    return [(y0, x0, hy * hx), (y0, x1, hy * lx), (y1, x0, ly * hx), (y1, x1, ly * lx)]


def reference_roi_align(
    features, rois, output_size, spatial_scale, sampling_ratio, aligned, grad_output=None
):
    """Loops over boxes, bins and samples; arithmetic on coordinates in the features' dtype.

    Args:
        features: `(B, H, W, C)` array.
        rois: `(K, 5)` rows `[batch_index, x1, y1, x2, y2]`.
        grad_output: optional `(K, out_h, out_w, C)`; if given, also returns the gradient of
            `sum(output * grad_output)` with respect to the features.
    """
    t = features.dtype.type
    out_h, out_w = output_size
    _, height, width, channels = features.shape
    out = np.zeros((len(rois), out_h, out_w, channels), np.float64)
    grad = np.zeros(features.shape, np.float64)
    for k, roi in enumerate(np.asarray(rois, features.dtype)):
        image = int(roi[0])
        shift = t(0.5) if aligned else t(0)
        x_start = roi[1] * t(spatial_scale) - shift
        y_start = roi[2] * t(spatial_scale) - shift
        x_end = roi[3] * t(spatial_scale) - shift
        y_end = roi[4] * t(spatial_scale) - shift
        roi_w = x_end - x_start
        roi_h = y_end - y_start
        if not aligned:
            roi_w = max(roi_w, t(1))
            roi_h = max(roi_h, t(1))
        bin_h = roi_h / t(out_h)
        bin_w = roi_w / t(out_w)
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / t(out_h))
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / t(out_w))
        count = max(grid_h * grid_w, 1)
        for ph in range(out_h):
            for pw in range(out_w):
                total = np.zeros(channels, np.float64)
                for iy in range(grid_h):
                    y = y_start + t(ph) * bin_h + t(iy + 0.5) * bin_h / t(grid_h)
                    for ix in range(grid_w):
                        x = x_start + t(pw) * bin_w + t(ix + 0.5) * bin_w / t(grid_w)
                        for r, c, w in _taps(y, x, height, width, t):
                            total += float(w) * features[image, r, c]
                            if grad_output is not None:
                                grad[image, r, c] += float(w) * grad_output[k, ph, pw] / count
                out[k, ph, pw] = total / count
    if grad_output is not None:
        return out, grad
    return out


def _random_rois(rng, num, batch, height, width, stride, spread=0.3):
    """Boxes in input pixels, many crossing the border, some inverted or degenerate."""
    img_h, img_w = height * stride, width * stride
    cx = rng.uniform(-spread * img_w, (1 + spread) * img_w, num)
    cy = rng.uniform(-spread * img_h, (1 + spread) * img_h, num)
    bw = rng.uniform(0, 1.2 * img_w, num) * (rng.uniform(size=num) < 0.9)
    bh = rng.uniform(0, 1.2 * img_h, num) * (rng.uniform(size=num) < 0.9)
    rois = np.stack(
        [rng.integers(0, batch, num), cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1
    )
    return rois


def _edge_rois(height, width, stride, batch):
    img_h, img_w = height * stride, width * stride
    rows = [
        [0, 0, 0, img_w, img_h],  # exactly the whole image
        [0, 0, 0, 0, 0],  # all-zero (padding) row
        [0, -5 * img_w, -5 * img_h, 5 * img_w, 5 * img_h],  # much larger than the image
        [0, -stride, -stride, 0.5 * stride, 0.5 * stride],  # crossing the top-left corner
        [0, img_w - stride, img_h - stride, img_w + 2 * stride, img_h + stride],  # bottom-right
        [0, img_w + 2.5 * stride, 0, img_w + 9 * stride, img_h],  # right of the image
        [0, 0, -9 * stride, img_w, -2.5 * stride],  # above the image
        [0, -9 * stride, -9 * stride, -3 * stride, -3 * stride],  # outside, top-left
        [0, 3.3 * stride, 2.1 * stride, 3.3 * stride, 6.4 * stride],  # zero width
        [0, 1.7 * stride, 2.2 * stride, 5.1 * stride, 2.2 * stride],  # zero height
        [0, 2.0 * stride, 2.0 * stride, 2.0 * stride + 0.1, 2.0 * stride + 0.2],  # tiny
        [0, 4.2 * stride, 3.1 * stride, 1.0 * stride, 1.5 * stride],  # inverted
        [0, 0, 0, stride, stride],  # exactly one feature pixel
        [0, -0.5 * stride, -0.5 * stride, img_w + 0.5 * stride, img_h + 0.5 * stride],
        [0, -stride, 0, img_w + stride, img_h],  # samples right at -1 and W
        [0, 0, 0, img_w, 14 * stride],  # exact integer grid
    ]
    rois = np.array(rows, np.float64)
    rois[:, 0] = np.arange(len(rows)) % batch
    return rois


def _close(actual, expected, dtype):
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    tol = 1e-10 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("output_size", [7, (3, 5), 1])
def test_random_and_edge_boxes_float64(aligned, sampling_ratio, output_size):
    rng = np.random.default_rng(100 * aligned + 10 * sampling_ratio + len(str(output_size)))
    batch, height, width, channels, stride = 3, 9, 12, 4, 8
    features = rng.normal(size=(batch, height, width, channels))
    rois = np.concatenate(
        [_random_rois(rng, 25, batch, height, width, stride), _edge_rois(height, width, stride, 3)]
    )
    out = roi_align(
        features,
        rois,
        output_size=output_size,
        spatial_scale=1.0 / stride,
        sampling_ratio=sampling_ratio,
        aligned=aligned,
    )
    size = (output_size, output_size) if isinstance(output_size, int) else output_size
    expected = reference_roi_align(features, rois, size, 1.0 / stride, sampling_ratio, aligned)
    assert out.dtype == tf.float64
    assert out.shape == expected.shape
    _close(out.numpy(), expected, np.float64)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 3])
def test_float32_matches_reference(aligned, sampling_ratio):
    rng = np.random.default_rng(7 + sampling_ratio + 10 * aligned)
    batch, height, width, channels, stride = 2, 16, 21, 5, 16
    features = rng.normal(size=(batch, height, width, channels)).astype(np.float32)
    rois = np.concatenate(
        [_random_rois(rng, 30, batch, height, width, stride), _edge_rois(height, width, stride, 2)]
    ).astype(np.float32)
    out = roi_align(
        features, rois, spatial_scale=1 / 16, sampling_ratio=sampling_ratio, aligned=aligned
    )
    expected = reference_roi_align(features, rois, (7, 7), 1 / 16, sampling_ratio, aligned)
    assert out.dtype == tf.float32
    _close(out.numpy(), expected, np.float32)


def test_edge_cases_have_the_expected_zeros():
    # Independent of the reference: boxes whose samples all fall outside [-1, size] give 0,
    # and aligned zero-size boxes with adaptive sampling have no samples at all.
    features = np.ones((1, 8, 8, 2))
    rois = np.array(
        [
            [0, 200, 0, 300, 128],  # x in feature units [12.5, 18.75]: right of the map
            [0, 0, -300, 128, -40],  # above
            [0, 3, 3, 3, 90],  # zero width
            [0, 3, 3, 90, 3],  # zero height
        ]
    )
    out = roi_align(features, rois, output_size=4, spatial_scale=1 / 16, aligned=True)
    np.testing.assert_array_equal(out.numpy(), 0.0)
    # With aligned=False the same zero-size boxes become 1x1 and read constant features.
    out = roi_align(features, rois[2:], output_size=4, spatial_scale=1 / 16, aligned=False)
    np.testing.assert_allclose(out.numpy(), 1.0, atol=1e-12)
    # One sample per box (aligned=False, scale 1, 1x1 output): a sample exactly at -1 or at
    # the size is still read (from the first / last row), one just beyond reads nothing.
    rows = [
        [0, 2, -2.0, 4, 0.0],  # y = -1
        [0, 2, -2.25, 4, -0.25],  # y = -1.25
        [0, 2, 7.0, 4, 9.0],  # y = 8 = height
        [0, 2, 7.25, 4, 9.25],  # y = 8.25
        [0, -2.0, 2, 0.0, 4],  # x = -1
        [0, 7.25, 2, 9.25, 4],  # x = 8.25
    ]
    ramp = np.tile(np.arange(1.0, 9.0)[None, :, None, None], (1, 1, 8, 1))  # row r holds r + 1
    out = roi_align(ramp, rows, output_size=1, spatial_scale=1.0, sampling_ratio=1, aligned=False)
    np.testing.assert_allclose(out.numpy().ravel(), [1.0, 0.0, 8.0, 0.0, 4.0, 0.0], atol=1e-12)
    # A box well inside a constant map averages to that constant.
    out = roi_align(features, [[0, 16, 16, 100, 80]], output_size=7, spatial_scale=1 / 16)
    np.testing.assert_allclose(out.numpy(), 1.0, atol=1e-12)


@pytest.mark.parametrize("aligned", [True, False])
def test_huge_boxes_with_adaptive_sampling(aligned):
    # Hundreds of samples per bin along y, of which only a window can fall on the map.
    rng = np.random.default_rng(4)
    features = rng.normal(size=(1, 6, 5, 2))
    rois = np.array(
        [
            [0, 0.5, -300.0, 4.0, 300.0],
            [0, 1.0, -1000.3, 4.5, 3.2],
            [0, 0.0, 2.7, 5.0, 911.1],
            [0, 0.2, -5000.0, 3.0, -4.0],
        ]
    )
    out = roi_align(features, rois, output_size=2, spatial_scale=1.0, aligned=aligned)
    expected = reference_roi_align(features, rois, (2, 2), 1.0, 0, aligned)
    _close(out.numpy(), expected, np.float64)
    assert np.abs(expected[:3]).max() > 0


def test_batched_layout_and_image_routing():
    rng = np.random.default_rng(3)
    batch, height, width, channels, stride = 4, 10, 7, 3, 16
    features = rng.normal(size=(batch, height, width, channels)).astype(np.float32)
    boxes = np.stack(
        [_random_rois(rng, 6, 1, height, width, stride)[:, 1:] for _ in range(batch)]
    ).astype(np.float32)
    out = roi_align(features, boxes, output_size=(7, 4), spatial_scale=1 / 16)
    assert out.shape == (batch, 6, 7, 4, channels)
    for b in range(batch):
        rois = np.concatenate([np.full((6, 1), b, np.float32), boxes[b]], 1)
        expected = reference_roi_align(features, rois, (7, 4), 1 / 16, 0, True)
        _close(out.numpy()[b], expected, np.float32)

    # Flat layouts: unsorted, unbalanced image indices, one image without boxes.
    indices = np.array([2, 0, 2, 3, 2, 0, 2], np.int64)
    flat = rng.uniform(0, 150, size=(7, 4)).astype(np.float32)
    flat[:, 2:] += flat[:, :2]
    rois = np.concatenate([indices[:, None].astype(np.float32), flat], 1)
    expected = reference_roi_align(features, rois, (7, 7), 1 / 16, 0, True)
    _close(roi_align(features, flat, indices).numpy(), expected, np.float32)
    _close(roi_align(features, rois).numpy(), expected, np.float32)


@pytest.mark.parametrize("aligned", [True, False])
def test_gradient_matches_reference_backward(aligned):
    rng = np.random.default_rng(11)
    batch, height, width, channels, stride = 2, 6, 9, 3, 4
    features = rng.normal(size=(batch, height, width, channels))
    rois = np.concatenate(
        [_random_rois(rng, 8, batch, height, width, stride), _edge_rois(height, width, stride, 2)]
    )
    upstream = rng.normal(size=(len(rois), 5, 5, channels))
    _, expected = reference_roi_align(
        features, rois, (5, 5), 1 / stride, 0, aligned, grad_output=upstream
    )
    x = tf.constant(features)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = roi_align(x, rois, output_size=5, spatial_scale=1 / stride, aligned=aligned)
        loss = tf.reduce_sum(out * upstream)
    grad = tape.gradient(loss, x)
    np.testing.assert_allclose(grad.numpy(), expected, atol=1e-10)


def test_gradient_sum_and_support():
    # A box strictly inside the map: every bin's weights sum to 1, so with an all-ones
    # upstream gradient the features' gradient sums to out_h * out_w per channel, and it is
    # zero away from the box.
    features = tf.constant(np.random.default_rng(0).normal(size=(2, 16, 21, 3)), tf.float32)
    rois = tf.constant([[0.0, 40.0, 60.0, 200.0, 180.0]])
    with tf.GradientTape() as tape:
        tape.watch(features)
        out = RoIAlign(output_size=7, spatial_scale=1 / 16)(features, rois)
    grad = tape.gradient(out, features).numpy()
    np.testing.assert_allclose(grad[0].sum(axis=(0, 1)), 49.0, rtol=1e-5)
    assert np.all(grad[1] == 0)
    # Feature rows/cols touched: x in [40/16-0.5, 200/16-0.5] = [2, 12], y in [3.25, 10.75].
    assert np.all(grad[0, :3] == 0) and np.all(grad[0, 12:] == 0)
    assert np.all(grad[0, :, :2] == 0) and np.all(grad[0, :, 13:] == 0)
    assert np.all(grad[0, 4:10, 3:12] > 0)


def test_graph_mode_dynamic_shapes():
    fn = tf.function(
        lambda f, b: roi_align(f, b, output_size=(4, 3), spatial_scale=0.25, sampling_ratio=0),
        input_signature=[
            tf.TensorSpec([None, None, None, None], tf.float32),
            tf.TensorSpec([None, None, 4], tf.float32),
        ],
    )
    rng = np.random.default_rng(5)
    for batch, height, width, channels, num in [(1, 5, 7, 2, 3), (3, 11, 4, 6, 0), (2, 8, 8, 1, 9)]:
        features = rng.normal(size=(batch, height, width, channels)).astype(np.float32)
        boxes = np.stack(
            [_random_rois(rng, num, 1, height, width, 4)[:, 1:] for _ in range(batch)]
        ).astype(np.float32)
        out = fn(features, boxes).numpy()
        assert out.shape == (batch, num, 4, 3, channels)
        for b in range(batch):
            rois = np.concatenate([np.full((num, 1), b, np.float32), boxes[b]], 1)
            expected = reference_roi_align(features, rois, (4, 3), 0.25, 0, True)
            _close(out[b], expected, np.float32)
    assert len(fn._list_all_concrete_functions()) == 1

    flat_fn = tf.function(
        lambda f, b: roi_align(f, b, aligned=False),
        input_signature=[
            tf.TensorSpec([None, None, None, 2], tf.float32),
            tf.TensorSpec([None, 5], tf.float32),
        ],
    )
    features = rng.normal(size=(3, 6, 5, 2)).astype(np.float32)
    for num in (0, 1, 13):
        rois = _random_rois(rng, num, 3, 6, 5, 16).astype(np.float32)
        expected = reference_roi_align(features, rois, (7, 7), 1 / 16, 0, False)
        _close(flat_fn(features, rois).numpy(), expected, np.float32)


def test_bad_box_index_raises():
    with pytest.raises(tf.errors.InvalidArgumentError, match="box_indices"):
        roi_align(tf.zeros((2, 4, 4, 1)), [[2.0, 0, 0, 10, 10]])


def test_keras_model_and_serialization(tmp_path):
    features_in = keras.Input((None, None, 6))
    boxes_in = keras.Input((None, 4))
    layer = RoIAlign(output_size=(5, 6), spatial_scale=1 / 8, sampling_ratio=2, aligned=False)
    model = keras.Model([features_in, boxes_in], layer(features_in, boxes_in))
    assert model.output_shape == (None, None, 5, 6, 6)

    rng = np.random.default_rng(2)
    for batch, height, width, num in [(2, 9, 11, 4), (1, 5, 5, 1)]:
        features = rng.normal(size=(batch, height, width, 6)).astype(np.float32)
        boxes = np.stack(
            [_random_rois(rng, num, 1, height, width, 8)[:, 1:] for _ in range(batch)]
        ).astype(np.float32)
        out = model.predict([features, boxes], verbose=0)
        for b in range(batch):
            rois = np.concatenate([np.full((num, 1), b, np.float32), boxes[b]], 1)
            expected = reference_roi_align(features, rois, (5, 6), 1 / 8, 2, False)
            _close(out[b], expected, np.float32)

    config = layer.get_config()
    assert config["output_size"] == [5, 6]
    assert config["spatial_scale"] == 1 / 8
    assert config["sampling_ratio"] == 2 and config["aligned"] is False
    clone = RoIAlign.from_config(config)
    assert clone.get_config() == config

    path = tmp_path / "roi.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    # Not bit-exact: the reloaded graph may pick other matmul kernels.
    np.testing.assert_allclose(
        loaded.predict([features, boxes], verbose=0),
        model.predict([features, boxes], verbose=0),
        atol=1e-6,
    )


def test_flat_layout_in_keras_model():
    features_in = keras.Input((None, None, 3))
    rois_in = keras.Input((5,))
    layer = RoIAlign(output_size=2)
    model = keras.Model([features_in, rois_in], layer(features_in, rois_in))
    assert model.output_shape == (None, 2, 2, 3)
    assert not layer.supports_jit
    rng = np.random.default_rng(8)
    features = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    rois = _random_rois(rng, 5, 2, 5, 6, 16).astype(np.float32)
    expected = reference_roi_align(features, rois, (2, 2), 1 / 16, 0, True)
    _close(model([features, rois]).numpy(), expected, np.float32)


def test_batched_layout_compiles_with_xla():
    # Keras' jit_compile="auto" uses XLA on accelerators; the batched layout must support it.
    rng = np.random.default_rng(12)
    features = rng.normal(size=(2, 9, 12, 3)).astype(np.float32)
    boxes = rng.uniform(-100, 250, size=(2, 6, 4)).astype(np.float32)
    # Off-integer: XLA may reorder float ops, which moves samples lying exactly on -1 or W.
    boxes[0, 0] = [-5000.3, -3000.7, 4000.1, 9000.9]
    layer = RoIAlign(output_size=3, spatial_scale=1 / 8)
    fn = tf.function(layer, jit_compile=True)
    out = fn(features, boxes).numpy()
    assert layer.supports_jit
    for b in range(2):
        rois = np.concatenate([np.full((6, 1), b, np.float32), boxes[b]], 1)
        _close(out[b], reference_roi_align(features, rois, (3, 3), 1 / 8, 0, True), np.float32)


def test_mixed_precision_keeps_boxes_in_float32():
    # Features that equal x - 299: the pooled value reveals where the sample landed. In
    # float16, 300.1 rounds to 300.0; the layer must not round the boxes.
    width = 400
    columns = np.arange(width, dtype=np.float32) - 299.0
    features = np.tile(columns[None, None, :, None], (1, 2, 1, 1))
    boxes = np.array([[[300.1, 0.0, 300.1, 2.0]]], np.float32)
    layer = RoIAlign(output_size=1, spatial_scale=1.0, sampling_ratio=1, dtype="mixed_float16")
    out = layer(features, boxes)
    assert out.dtype == tf.float16
    rois = np.array([[0, 300.1, 0.0, 300.1, 2.0]], np.float32)
    expected = reference_roi_align(features, rois, (1, 1), 1.0, 1, True)
    assert abs(float(expected.ravel()[0]) - 0.6) < 1e-4
    np.testing.assert_allclose(out.numpy()[0].astype(np.float64), expected, atol=1e-3)


def test_float64_layer():
    rng = np.random.default_rng(9)
    features = rng.normal(size=(1, 7, 7, 2))
    boxes = rng.uniform(0, 100, size=(1, 5, 4))
    boxes[..., 2:] += boxes[..., :2]
    out = RoIAlign(dtype="float64")(features, boxes)
    assert out.dtype == tf.float64
    rois = np.concatenate([np.zeros((5, 1)), boxes[0]], 1)
    _close(out.numpy()[0], reference_roi_align(features, rois, (7, 7), 1 / 16, 0, True), np.float64)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"output_size": 0}, "output_size"),
        ({"output_size": (7, 7, 7)}, "output_size"),
        ({"output_size": True}, "output_size"),
        ({"spatial_scale": 0.0}, "spatial_scale"),
        ({"spatial_scale": float("inf")}, "spatial_scale"),
        ({"sampling_ratio": -1}, "sampling_ratio"),
        ({"sampling_ratio": 1.5}, "sampling_ratio"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=rf"Received: {name}="):
        RoIAlign(**kwargs)
    with pytest.raises(ValueError, match=rf"Received: {name}="):
        roi_align(tf.zeros((1, 4, 4, 1)), tf.zeros((1, 1, 4)), **kwargs)


def test_bad_inputs():
    with pytest.raises(TypeError, match="Received: aligned="):
        RoIAlign(aligned="yes")
    with pytest.raises(ValueError, match=r"Received: features.shape="):
        roi_align(tf.zeros((4, 4, 1)), tf.zeros((1, 1, 4)))
    with pytest.raises(TypeError, match=r"Received: features.dtype="):
        roi_align(tf.zeros((1, 4, 4, 1), tf.int32), tf.zeros((1, 1, 4)))
    with pytest.raises(ValueError, match=r"Received: boxes.shape="):
        roi_align(tf.zeros((1, 4, 4, 1)), tf.zeros((1, 1, 5)))
    with pytest.raises(ValueError, match=r"Received: boxes.shape="):
        roi_align(tf.zeros((1, 4, 4, 1)), tf.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"Received: box_indices="):
        roi_align(tf.zeros((1, 4, 4, 1)), tf.zeros((1, 1, 4)), box_indices=[0])
    with pytest.raises(TypeError, match=r"Received: box_indices.dtype="):
        roi_align(tf.zeros((1, 4, 4, 1)), tf.zeros((1, 4)), box_indices=[0.0])


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_matches_torchvision(aligned, sampling_ratio):
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(21)
    batch, height, width, channels, stride = 2, 16, 21, 4, 16
    features = rng.normal(size=(batch, height, width, channels))
    rois = np.concatenate(
        [_random_rois(rng, 40, batch, height, width, stride), _edge_rois(height, width, stride, 2)]
    )
    expected = ops.roi_align(
        torch.from_numpy(features.transpose(0, 3, 1, 2).copy()),
        torch.from_numpy(rois),
        output_size=(7, 7),
        spatial_scale=1 / stride,
        sampling_ratio=sampling_ratio,
        aligned=aligned,
    ).numpy()
    out = roi_align(
        features, rois, spatial_scale=1 / stride, sampling_ratio=sampling_ratio, aligned=aligned
    )
    _close(out.numpy(), expected.transpose(0, 2, 3, 1), np.float64)
