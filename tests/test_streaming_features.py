"""Dense features of a video's windows (`keras_slowfast.streaming.features`).

The pooled features are checked against an oracle written here: the res5 maps of the
model (the inputs of its head's pooling layers) on independently decoded clips, averaged
over time, height and width with NumPy.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from streaming_oracle import centre_crop, decode_all, expected_windows  # noqa: E402

from keras_slowfast import hub  # noqa: E402
from keras_slowfast.streaming import extract_features, feature_model  # noqa: E402


@pytest.fixture(scope="module")
def slow_narrow():
    keras.utils.set_random_seed(3)
    return hub.from_preset("slow_8x8_r50", load_weights=False, width_per_group=8, classes=5)


@pytest.fixture(scope="module")
def slow_features(slow_narrow):
    return feature_model(slow_narrow)  # one feature model for the module: traced once


def test_feature_dims_are_slow_plus_fast_res5_channels():
    # res5 has 32 * width channels in the slow pathway, 32 * width / beta_inv (8) in the
    # fast one: 2048 + 256 = 2304 at width 64; 256 + 32 at width 8.
    width = 8
    net = hub.from_preset("slowfast_8x8_r50", load_weights=False, width_per_group=width)
    assert feature_model(net).output_shape == (None, 32 * width + 4 * width)


@pytest.mark.large
def test_full_size_feature_dims():
    full = hub.from_preset("slowfast_8x8_r50", load_weights=False)
    assert feature_model(full).output_shape == (None, 2304)
    slow = hub.from_preset("slow_8x8_r50", load_weights=False)
    assert feature_model(slow).output_shape == (None, 2048)
    backbone = hub.from_preset("slowfast_8x8_r50", load_weights=False, include_top=False)
    assert feature_model(backbone).output_shape == (None, 2304)


def test_features_are_pooled_res5_maps_of_each_window(slow_narrow, slow_features, videos):
    video = str(videos / "k03.mp4")
    assert slow_features.output_shape == (None, 256)
    feats = extract_features(
        slow_features, video, preset="slow_8x8_r50", window_stride_seconds=3.0, batch_size=2
    )
    fps, frames = decode_all(video)
    want = expected_windows(len(frames), fps, 3.0, 8, 8)
    assert feats.features.shape == (len(want), 256) and feats.features.dtype == np.float32
    np.testing.assert_array_equal(feats.times, [w[1] for w in want])
    np.testing.assert_array_equal(feats.starts, [w[2] for w in want])
    np.testing.assert_array_equal(feats.ends, [w[3] for w in want])
    np.testing.assert_array_equal(feats.frame_indices, np.stack([w[4] for w in want]))
    assert (feats.fps, feats.total_frames, feats.num_frames, feats.sampling_rate) == (
        30.0, 300, 8, 8,
    )  # fmt: skip
    res5 = keras.Model(slow_narrow.input, slow_narrow.get_layer("head_pathway0_avgpool").input)
    for row, (_, _, _, _, indices) in zip(feats.features, want):
        clip = centre_crop([frames[i] for i in indices], 256)
        maps = np.asarray(res5.predict_on_batch(clip[None]), np.float64)[0]
        np.testing.assert_allclose(row, maps.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)


def test_extract_features_from_a_preset_name(videos):
    feats = extract_features(
        "slow_8x8_r50",
        str(videos / "k00.mp4"),
        weights="none",
        model_kwargs={"width_per_group": 8},
        window_stride_seconds=5.0,
        batch_size=2,
    )
    assert feats.features.shape == (2, 256)
    assert feats.times.tolist() == [2.5, 7.5] and feats.ends.tolist() == [5.0, 10.0]
    assert feats.frame_indices.shape == (2, 8)


def test_bad_arguments(videos):
    with pytest.raises(TypeError, match="model_or_preset"):
        extract_features(3, str(videos / "k00.mp4"))
