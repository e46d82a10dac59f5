"""Spatial transforms: short-side size, bilinear resize, crops, flip (NumPy and TF)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_slowfast.data import transforms


def _bilinear_reference(image, out_h, out_w):
    """float64 bilinear resize, half-pixel centres, no antialiasing (torch's rule)."""
    in_h, in_w = image.shape[:2]

    def taps(out_size, in_size):
        scale = in_size / out_size
        src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, in_size - 1)
        return lo, hi, src - lo

    y0, y1, wy = taps(out_h, in_h)
    x0, x1, wx = taps(out_w, in_w)
    img = image.astype(np.float64)
    top = img[y0][:, x0] * (1 - wx)[None, :, None] + img[y0][:, x1] * wx[None, :, None]
    bottom = img[y1][:, x0] * (1 - wx)[None, :, None] + img[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]


def test_short_side_scale_size():
    assert transforms.short_side_scale_size(272, 640, 256) == (256, math.floor(640 / 272 * 256))
    assert transforms.short_side_scale_size(640, 272, 256) == (602, 256)
    assert transforms.short_side_scale_size(256, 340, 256) == (256, 340)  # already right
    assert transforms.short_side_scale_size(256, 256, 300) == (300, 300)
    # float64 ratio: 1080p to 320 gives 568 (568.888...), float32 would agree here,
    # but the rule is floor of the float64 product.
    assert transforms.short_side_scale_size(1080, 1920, 320) == (320, 568)


@pytest.mark.parametrize("size", [(17, 23), (48, 64), (64, 48)])
@pytest.mark.parametrize("target", [11, 30, 80])
def test_resize_short_side_matches_bilinear_reference(size, target):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, *size, 3), dtype=np.uint8)
    out_h, out_w = transforms.short_side_scale_size(*size, target)
    ref = np.stack([_bilinear_reference(f, out_h, out_w) for f in frames])
    exact = transforms.resize_short_side(frames, target, exact=True)
    fast = transforms.resize_short_side(frames, target)
    tf_out = transforms.resize_short_side_tf(tf.constant(frames), target).numpy()
    for out in (exact, fast, tf_out):
        assert out.dtype == np.uint8 and out.shape == (2, out_h, out_w, 3)
    # Rounded float results are within half a level (plus float32 noise);
    # OpenCV's fixed-point uint8 path within one level.
    assert np.abs(exact - ref).max() <= 0.5 + 1e-3
    assert np.abs(tf_out - ref).max() <= 0.5 + 1e-3
    assert np.abs(fast.astype(float) - ref).max() <= 1.0 + 1e-3
    single = transforms.resize_short_side(frames[0], target, exact=True)
    np.testing.assert_array_equal(single, exact[0])


def test_uniform_crop_offsets():
    # Along the long side: 0, ceil((L - size) / 2), L - size.
    assert [transforms.uniform_crop_offset(256, 341, 256, k) for k in range(3)] == [
        (0, 0),
        (0, 43),
        (0, 85),
    ]
    assert [transforms.uniform_crop_offset(341, 256, 256, k) for k in range(3)] == [
        (0, 0),
        (43, 0),
        (85, 0),
    ]
    # The short side is centred with ceil as well.
    assert transforms.uniform_crop_offset(259, 300, 256, 0) == (2, 0)
    with pytest.raises(ValueError, match="Received: spatial_index=3"):
        transforms.uniform_crop_offset(256, 340, 256, 3)


@pytest.mark.parametrize("shape", [(20, 31), (31, 20), (24, 24), (25, 24)])
def test_uniform_crop_tf_matches_numpy(shape):
    frames = np.arange(2 * shape[0] * shape[1] * 3, dtype=np.int64).reshape(2, *shape, 3)
    frames = (frames % 251).astype(np.uint8)
    for k in range(3):
        y, x = transforms.uniform_crop_offset(*shape, 16, k)
        got = transforms.uniform_crop_tf(tf.constant(frames), 16, k).numpy()
        np.testing.assert_array_equal(got, frames[:, y : y + 16, x : x + 16])


def test_random_crop_offset_is_exclusive_of_the_last_position():
    rng = np.random.default_rng(0)
    offsets = {transforms.random_crop_offset(20, 26, 16, rng) for _ in range(3000)}
    ys = {o[0] for o in offsets}
    xs = {o[1] for o in offsets}
    assert ys == set(range(4)) and xs == set(range(10))  # never 4 or 10
    assert transforms.random_crop_offset(16, 16, 16, rng) == (0, 0)


def _find_crop(source, out, size):
    """Offsets (and flip) such that `out` is a crop of `source`, or None."""
    for flip in (False, True):
        candidate = out[:, :, ::-1] if flip else out
        for y in range(source.shape[1] - size + 1):
            for x in range(source.shape[2] - size + 1):
                if np.array_equal(source[:, y : y + size, x : x + size], candidate):
                    return y, x, flip
    return None


def test_random_scale_crop_flip_numpy():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(3, 20, 26, 3), dtype=np.uint8)
    flips, ys = [], []
    for seed in range(60):
        out = transforms.random_scale_crop_flip(frames, 20, 20, 16, np.random.default_rng(seed))
        assert out.shape == (3, 16, 16, 3) and out.dtype == np.uint8
        y, x, flip = _find_crop(frames, out, 16)
        flips.append(flip)
        ys.append(y)
        # Same draws without flipping give the unflipped crop.
        plain = transforms.random_scale_crop_flip(
            frames, 20, 20, 16, np.random.default_rng(seed), flip=False
        )
        np.testing.assert_array_equal(plain[:, :, ::-1] if flip else plain, out)
    assert 15 < sum(flips) < 45
    assert max(ys) <= 3
    # With jitter the short side lands in [min, max].
    out = transforms.random_scale_crop_flip(frames, 18, 24, 16, np.random.default_rng(0))
    assert out.shape == (3, 16, 16, 3)


def test_random_scale_crop_flip_tf():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, size=(3, 20, 26, 3), dtype=np.uint8)
    flips = []
    for seed in range(30):
        out = transforms.random_scale_crop_flip_tf(
            tf.constant(frames), 20, 20, 16, tf.constant([seed, 1], tf.int64)
        ).numpy()
        found = _find_crop(frames, out, 16)
        assert found is not None
        assert found[0] <= 3 and found[1] <= 9
        flips.append(found[2])
        again = transforms.random_scale_crop_flip_tf(
            tf.constant(frames), 20, 20, 16, tf.constant([seed, 1], tf.int64)
        ).numpy()
        np.testing.assert_array_equal(out, again)
    assert 5 < sum(flips) < 25
    out = transforms.random_scale_crop_flip_tf(
        tf.constant(frames), 18, 24, 16, tf.constant([0, 0], tf.int64)
    )
    assert out.shape == (3, 16, 16, 3) and out.dtype == tf.uint8


def test_short_side_scale_size_tf_matches_numpy():
    for h, w, s in [
        (272, 640, 256),
        (640, 272, 256),
        (256, 340, 256),
        (1080, 1920, 320),
        (256, 256, 300),
        (719, 1280, 289),
    ]:
        got = tuple(int(v) for v in transforms.short_side_scale_size_tf(h, w, s))
        assert got == transforms.short_side_scale_size(h, w, s)


def test_normalize():
    x = np.array([[[[0, 115, 255]]]], np.uint8)
    expected = (np.array([0, 115, 255]) / 255.0 - 0.45) / 0.225
    np.testing.assert_allclose(transforms.normalize(x)[0, 0, 0], expected, rtol=0, atol=1e-6)
