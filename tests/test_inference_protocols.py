"""`classify_video` follows each preset's test protocol: SSv2 segment clips and crops, the
Charades max ensemble, the Kinetics 30-view mean.

The references are written here independently of `keras_slowfast.inference`: the segment
indices by the rule re-stated with Python's `round`, the frames decoded at 30 fps by
`read_frames_at_fps`, the resize by OpenCV and the crops by slicing; the uniform views come
from the golden frame indices (`test_cli._reference_views`). Models are narrow
(`width_per_group=8`, 5 classes) and randomly initialised: the checks are on which pixels
reach the model and how the scores combine, not on accuracy.
"""

import json
import math

import numpy as np
import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

import keras_slowfast  # noqa: E402
from keras_slowfast import presets  # noqa: E402
from keras_slowfast.data import count_frames_at_fps, read_frames_at_fps  # noqa: E402
from keras_slowfast.inference import (  # noqa: E402
    classify_video,
    describe_protocol,
    segment_clip,
    video_views,
)

SSV2 = "slowfast_16x8_r50_ssv2"  # 64 segments, 1 clip x the start crop, 256
SSV2_PTV = "slow_8x8_r50_ssv2_ptv"  # 8 segments, 1 clip x 3 crops
CHARADES = "slow_8x8_r50_charades_ptv"  # 8 frames every 8, 10 clips x 3 crops, max, sigmoid
KINETICS = "slow_8x8_r50_kinetics400"  # 8 frames every 8, 10 clips x 3 crops, sum


def _narrow(name):
    return keras_slowfast.from_preset(name, load_weights=False, width_per_group=8, classes=5)


def _rule_indices(length, n):
    """SSv2 test indices, re-stated: middles of n segments of (L - 1) / n, NumPy rounding."""
    seg = float(length - 1) / n
    return [(int(round(seg * i)) + int(round(seg * (i + 1)))) // 2 for i in range(n)]


def _resize_short(frames, size):
    h, w = frames.shape[1:3]
    if h <= w:
        new_h, new_w = size, math.floor(w / h * size)
    else:
        new_h, new_w = math.floor(h / w * size), size
    if (new_h, new_w) == (h, w):
        return frames
    return np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for f in frames])


def _reference_segment_crops(video, n, size, crops):
    """The SSv2 test views of a video, built here from the rule."""
    length = count_frames_at_fps(video, 30)
    frames = read_frames_at_fps(video, _rule_indices(length, n), fps=30)
    clip = _resize_short(frames, size)
    h, w = clip.shape[1:3]
    out = []
    for k in crops:
        if h <= w:  # crops along the width; the height centred
            y, x = math.ceil((h - size) / 2), (0, math.ceil((w - size) / 2), w - size)[k]
        else:
            y, x = (0, math.ceil((h - size) / 2), h - size)[k], math.ceil((w - size) / 2)
        out.append(clip[:, y : y + size, x : x + size])
    return np.stack(out)


@pytest.fixture(scope="module")
def golden_views_8x8(golden):
    table = json.loads((golden / "sampling" / "test_views.json").read_text())["videos"]

    def views(name):
        indices = table[name]["views_8x8"]
        return json.loads(indices) if isinstance(indices, str) else indices

    return views


def test_the_presets_under_test_have_the_published_protocols():
    ssv2 = presets.get_preset(SSV2).protocol
    assert (ssv2.sampling, ssv2.num_frames, ssv2.temporal_views, ssv2.crop_indices) == (
        "segment",
        64,
        1,
        (0,),
    )
    ptv = presets.get_preset(SSV2_PTV).protocol
    assert (ptv.sampling, ptv.num_frames, ptv.views, ptv.crop_indices) == (
        "segment",
        8,
        3,
        (0, 1, 2),
    )
    charades = presets.get_preset(CHARADES)
    assert (charades.protocol.ensemble, charades.protocol.views) == ("max", 30)
    assert charades.protocol.multi_label and charades.kwargs["classifier_activation"] == "sigmoid"


# --- segment sampling: which frames ----------------------------------------------------


@pytest.mark.parametrize("name", ["k00.mp4", "bikes.mp4"])  # 30 fps, and 25 fps resampled
def test_segment_clip_is_the_rule_frames_at_30_fps(videos, name):
    video = videos / name
    frames, indices = segment_clip(video, 64)
    length = count_frames_at_fps(video, 30)
    assert length == 300  # 10 s at 30 fps, whatever the source rate
    assert indices.tolist() == _rule_indices(length, 64)
    np.testing.assert_array_equal(frames, read_frames_at_fps(video, _rule_indices(length, 64)))
    # The comparison can tell neighbouring frames apart.
    shifted = read_frames_at_fps(video, [i + 1 for i in _rule_indices(length, 64)])
    assert not np.array_equal(frames, shifted)


@pytest.mark.parametrize("name", ["k00.mp4", "bikes.mp4"])
def test_ssv2_view_is_the_segment_clip_start_crop(videos, name):
    video = videos / name
    proto = presets.get_preset(SSV2).protocol
    groups = list(
        video_views(
            video,
            proto.num_frames,
            proto.sampling_rate,
            views=proto.views,
            size=proto.test_crop_size,
            temporal_views=proto.temporal_views,
            crop_indices=proto.crop_indices,
            sampling=proto.sampling,
        )
    )
    assert len(groups) == 1 and groups[0].shape == (1, 64, 256, 256, 3)
    expected = _reference_segment_crops(video, 64, 256, (0,))
    np.testing.assert_array_equal(groups[0], expected)
    # Crop 0 is the left crop: not the centre one (both videos are wider than tall).
    centre = _reference_segment_crops(video, 64, 256, (1,))
    assert not np.array_equal(groups[0], centre)


def test_segment_views_repeat_the_one_clip_per_temporal_view(videos):
    groups = list(
        video_views(videos / "k03.mp4", 8, 1, views=6, size=64, temporal_views=2,
                    sampling="segment")
    )  # fmt: skip
    assert len(groups) == 2
    np.testing.assert_array_equal(groups[0], groups[1])
    np.testing.assert_array_equal(
        groups[0], _reference_segment_crops(videos / "k03.mp4", 8, 64, (0, 1, 2))
    )


def test_crop_index_0_is_the_top_crop_of_a_tall_video(tmp_path):
    """A portrait video written here with PyAV: crop 0 starts at the top, 2 ends at the bottom."""
    path = tmp_path / "tall.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 48, 96, "yuv420p"
        for _ in range(12):
            image = rng.integers(0, 256, (96, 48, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    groups = list(video_views(path, 4, 1, views=3, size=32, temporal_views=1,
                              sampling="segment"))  # fmt: skip
    (group,) = groups
    length = count_frames_at_fps(path, 30)
    frames = _resize_short(read_frames_at_fps(path, _rule_indices(length, 4)), 32)
    assert frames.shape[1:3] == (64, 32)
    np.testing.assert_array_equal(group[0], frames[:, 0:32])  # top
    np.testing.assert_array_equal(group[1], frames[:, 16:48])  # centre
    np.testing.assert_array_equal(group[2], frames[:, 32:64])  # bottom
    # views=1 is the quick centre view of a 3-crop protocol ...
    quick = next(video_views(path, 4, 1, views=1, size=32, temporal_views=1,
                             sampling="segment"))  # fmt: skip
    np.testing.assert_array_equal(quick, frames[None, :, 16:48])
    # ... and the one view of a one-view protocol (PySlowFast's SSv2: the start crop).
    only_top = next(video_views(path, 4, 1, views=1, size=32, temporal_views=1,
                                crop_indices=(0,), sampling="segment"))  # fmt: skip
    np.testing.assert_array_equal(only_top, frames[None, :, 0:32])


# --- classify_video end to end -----------------------------------------------------------


@pytest.fixture(scope="module")
def ssv2_model():
    return _narrow(SSV2)


def test_classify_ssv2_scores_the_segment_clip_start_crop(videos, ssv2_model):
    video = videos / "bikes.mp4"
    got = classify_video(ssv2_model, video, SSV2)
    clip = _reference_segment_crops(video, 64, 256, (0,))
    expected = np.asarray(ssv2_model.predict_on_batch(clip))[0]
    assert got.shape == (5,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_classify_ssv2_ptv_averages_three_crops_of_the_segment_clip(videos):
    model = _narrow(SSV2_PTV)
    video = videos / "k00.mp4"
    got = classify_video(model, video, SSV2_PTV, batch_size=2)
    clips = _reference_segment_crops(video, 8, 256, (0, 1, 2))
    per_view = np.asarray(model.predict_on_batch(clips), np.float64)
    np.testing.assert_allclose(got, per_view.mean(axis=0), rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def k00_view_logits(videos, golden_views_8x8):
    """Per-view logits of the 30 Kinetics-protocol views of k00.mp4, and the weights used.

    One narrow Slow 8x8 network without a final activation scores the 30 views built
    independently (golden frame indices, OpenCV resize, slicing); the tests below load its
    weights into the softmax (Kinetics) and sigmoid (Charades) presets and apply the
    activations here in NumPy.
    """
    from test_cli import _reference_views

    model = keras_slowfast.from_preset(
        KINETICS, load_weights=False, width_per_group=8, classes=5, classifier_activation=None
    )
    clips = _reference_views(videos / "k00.mp4", golden_views_8x8("k00.mp4"))
    assert len(clips) == 30
    return np.asarray(model.predict_on_batch(clips), np.float64), model.get_weights()


def test_classify_charades_is_the_max_of_the_sigmoid_views(videos, k00_view_logits):
    logits, weights = k00_view_logits
    model = _narrow(CHARADES)
    model.set_weights(weights)
    per_view = 1 / (1 + np.exp(-logits))
    # The views differ, so the maximum is not any single view.
    expected = per_view.max(axis=0)
    assert not any(np.allclose(v, expected, atol=1e-6) for v in per_view)
    # Batches of 7 views straddle the temporal clips: the maximum runs across batches.
    got = classify_video(model, videos / "k00.mp4", CHARADES, batch_size=7)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    # Sigmoid scores, not a distribution.
    assert not np.isclose(got.sum(), 1.0, atol=1e-2)


def test_classify_kinetics_is_the_mean_of_30_views(videos, k00_view_logits):
    logits, weights = k00_view_logits
    model = _narrow(KINETICS)
    model.set_weights(weights)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    per_view = exp / exp.sum(axis=1, keepdims=True)
    got = classify_video(model, videos / "k00.mp4", KINETICS)
    np.testing.assert_allclose(got, per_view.sum(axis=0) / 30, rtol=0, atol=1e-4)
    assert got.sum() == pytest.approx(1.0, abs=1e-4)


# --- descriptions and bad input ----------------------------------------------------------


def test_describe_protocol_names_the_sampling():
    assert describe_protocol(SSV2) == (
        "64 frames by segment sampling at 30 fps, 1 view (1 clip x start crop), sum"
    )
    assert describe_protocol(SSV2_PTV) == (
        "8 frames by segment sampling at 30 fps, 3 views (1 clip x 3 crops), sum"
    )
    assert describe_protocol(SSV2, views=1) == describe_protocol(SSV2)
    assert describe_protocol(CHARADES) == "8 frames every 8, 30 views (10 clips x 3 crops), max"


def test_inference_doctests():
    import doctest

    from keras_slowfast import inference

    assert doctest.testmod(inference).failed == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(crop_indices=(3,)), r"crop_indices.*0 \(start.*Received: crop_indices=\(3,\)"),
        (dict(crop_indices=()), r"Received: crop_indices=\(\)"),
        (dict(crop_indices=(True,)), r"Received: crop_indices=\(True,\)"),
        (dict(sampling="random"), r"'uniform', 'segment'.*Received: sampling='random'"),
        (dict(spatial_crops=2), r"1 or 3. Received: spatial_crops=2"),
        (dict(views=3, crop_indices=(0,)), r"1 or 10 \(10 temporal x 1 spatial\).*views=3"),
    ],
)
def test_video_views_bad_input(videos, kwargs, match):
    with pytest.raises(ValueError, match=match):
        next(video_views(videos / "k00.mp4", 8, 8, **kwargs))


def test_classify_video_views_must_fit_the_protocol(videos, ssv2_model):
    with pytest.raises(ValueError, match=r"be 1 \(1 temporal x 1 spatial\). Received: views=30"):
        classify_video(ssv2_model, videos / "k00.mp4", SSV2, views=30)


# --- examples/evaluate.py takes the preset's protocol ------------------------------------


def test_evaluate_example_defaults_to_the_segment_protocol(videos, tmp_path):
    """`evaluate.py --preset slow_8x8_r50_ssv2_ptv`: 1 segment clip x 3 crops, summed.

    Only the crop size is overridden (64, to keep it fast); the frames, the sampling and
    the views come from the preset. The reference scores the views built here.
    """
    import os
    import pathlib
    import subprocess
    import sys

    repo = pathlib.Path(__file__).resolve().parents[1]
    kwargs = dict(width_per_group=8, classes=3, train_crop_size=64)
    model = keras_slowfast.from_preset(SSV2_PTV, load_weights=False, **kwargs)
    weights = tmp_path / "narrow.weights.h5"
    model.save_weights(str(weights))
    names = ("bikes.mp4",)
    test_list = tmp_path / "test.csv"
    test_list.write_text("".join(f"{videos / n} {i}\n" for i, n in enumerate(names)))
    out = tmp_path / "scores.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")])
    args = [
        sys.executable,
        str(repo / "examples" / "evaluate.py"),
        f"--test_list={test_list}",
        "--arch=slow_8x8_r50",
        f"--preset={SSV2_PTV}",
        f"--weights={weights}",
        "--width_per_group=8",
        "--classes=3",
        "--train_crop_size=64",
        "--crop_size=64",
        "--batch_size=4",
        f"--output_json={out}",
    ]
    result = subprocess.run(args, env=env, cwd=repo, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "8 frames by segment sampling at 30 fps, 1 clips x crops (0, 1, 2) of 64, sum" in (
        result.stdout
    )
    report = json.loads(out.read_text())
    assert report["preset"] == SSV2_PTV and report["num_views"] == 3
    assert report["labels"] == [0]
    expected = [
        np.asarray(model.predict_on_batch(_reference_segment_crops(videos / n, 8, 64, (0, 1, 2))))
        .sum(axis=0)
        for n in names
    ]  # fmt: skip
    np.testing.assert_allclose(report["scores"], expected, rtol=1e-4, atol=1e-5)
