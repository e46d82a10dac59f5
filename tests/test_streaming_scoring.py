"""Scoring a video window by window (`keras_slowfast.streaming.timeline`).

The scores are checked against the model called on the oracle's clips
(`streaming_oracle`: frames decoded with PyAV directly, PySlowFast's test clip rule
written with NumPy); memory is traced over videos of growing length; the `timeline` and
`classify --annotate` commands are checked against the API.
"""

import csv
import os
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import av  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from streaming_oracle import centre_crop, decode_all, expected_windows  # noqa: E402

from keras_slowfast import hub  # noqa: E402
from keras_slowfast.streaming import timeline  # noqa: E402

SLOWFAST = "slowfast_8x8_r50"  # 32 frames every 2 at 30 fps, 256 crop


@pytest.fixture(scope="module")
def narrow():
    # A narrow Slow 8x8 (8 frames every 8): the same window rule as SlowFast's clip, cheaper.
    keras.utils.set_random_seed(1)
    return hub.from_preset("slow_8x8_r50", load_weights=False, width_per_group=8, classes=7)


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(window_stride_seconds=0), "window_stride_seconds"),
        (dict(window_stride_seconds=float("nan")), "window_stride_seconds"),
        (dict(batch_size=0), "batch_size"),
        (dict(num_frames=0), "num_frames"),
        (dict(timeout=-1), "timeout"),
    ],
)
def test_bad_arguments_name_the_argument(narrow, videos, kwargs, name):
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}="):
        timeline(narrow, str(videos / "k00.mp4"), SLOWFAST, **kwargs)


def test_without_preset_needs_clip_settings(narrow, videos):
    with pytest.raises(ValueError, match="num_frames"):
        timeline(narrow, str(videos / "k00.mp4"))


# --------------------------------------------------------------------------- scores


def test_scores_equal_clips_scored_one_by_one(narrow, videos):
    # A 128 crop (the model is fully convolutional) keeps this quick; 3 windows in
    # batches of 2 and 1.
    fps, frames = decode_all(videos / "k03.mp4")
    want = expected_windows(len(frames), fps, 3.3, 8, 8)
    got = list(timeline(narrow, str(videos / "k03.mp4"), "slow_8x8_r50",
                        window_stride_seconds=3.3, batch_size=2, crop_size=128))  # fmt: skip
    assert [w.index for w in got] == [0, 1, 2]
    for w, (_, centre, start, end, indices) in zip(got, want):
        clip = centre_crop([frames[i] for i in indices], 128)
        probs = np.asarray(narrow.predict_on_batch(clip[None]))[0]
        assert w.scores.dtype == np.float32 and w.scores.shape == (7,)
        np.testing.assert_allclose(w.scores, probs, rtol=0, atol=1e-5)
        assert (w.time, w.start, w.end) == (centre, start, end)


# --------------------------------------------------------------------------- memory


def make_video(path, seconds, fps=30, width=64, height=48):
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "250"}
        for i in range(int(seconds * fps)):
            img = np.stack(
                [(xx + 3 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (5 * i) % 256)], -1
            ).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _tiny_model(size, frames):
    inputs = keras.Input((frames, size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))


def _traced_peak(model, path, **kwargs):
    stats = {}
    tracemalloc.start()
    try:
        count = sum(1 for _ in timeline(model, str(path), stats=stats, **kwargs))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, count, stats


def _memory_check(tmp_path, minutes, **kwargs):
    model = _tiny_model(kwargs["crop_size"], kwargs["num_frames"])
    model.predict_on_batch(np.zeros((8, kwargs["num_frames"], *(kwargs["crop_size"],) * 2, 3)))
    peaks = []
    for m in minutes:
        path = tmp_path / f"{m}min.mp4"
        make_video(path, 60 * m, **kwargs.pop("video", {}))
        peak, count, stats = _traced_peak(model, path, **kwargs)
        assert count == 60 * m
        # Frames decoded per window: the stride (30 frames), not the 64-frame window.
        assert stats["decoded_frames"] / count == 30
        peaks.append(peak)
        print(f"{m} min: {count} windows, traced peak {peak / 2**20:.2f} MiB, stats {stats}")
    return peaks


def test_memory_does_not_grow_with_length(tmp_path):
    # 1 and 4 minutes at 64x48: the traced peak (NumPy frames, clips, batches) is the same.
    kw = dict(num_frames=32, sampling_rate=2, crop_size=64, batch_size=8)
    short, long = _memory_check(tmp_path, (1, 4), **kw)
    assert long <= short * 1.05 + 256 * 1024


@pytest.mark.large
def test_memory_does_not_grow_with_length_2_and_10_minutes(tmp_path):
    # 320x240, the preset's 256 crop: as the benchmark, with a tiny model.
    kw = dict(num_frames=32, sampling_rate=2, crop_size=256, batch_size=8)
    short, long = _memory_check(tmp_path, (2, 10), video=dict(width=320, height=240), **kw)
    assert long <= short * 1.05 + 1024 * 1024


# --------------------------------------------------------------------------- CLI


def test_cli_timeline_csv_matches_the_api(narrow, tmp_path, videos, capsys):
    from keras_slowfast import cli

    model = narrow
    weights = tmp_path / "narrow.weights.h5"
    model.save_weights(weights)
    out = tmp_path / "timeline.csv"
    video = str(videos / "bikes.mp4")
    status = cli.main(
        [
            "timeline",
            video,
            "--model",
            "slow_8x8_r50",
            "--weights",
            str(weights),
            "--width-per-group",
            "8",
            "--classes",
            "7",
            "--stride",
            "4",
            "--top",
            "2",
            "--csv",
            str(out),
            "--quiet",
        ]  # fmt: skip
    )
    assert status == 0
    printed = capsys.readouterr().out
    api = list(timeline(model, video, "slow_8x8_r50", window_stride_seconds=4.0))
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    names = [f"class_{i}" for i in range(7)]
    assert rows[0] == ["window", "start", "end", "time", "top_class", "top_score", *names]
    assert len(rows) - 1 == len(api) == 2  # centres 2 and 6 s of 10 s
    for row, w in zip(rows[1:], api):
        assert int(row[0]) == w.index
        np.testing.assert_allclose([float(v) for v in row[1:4]], [w.start, w.end, w.time])
        assert row[4] == names[int(w.scores.argmax())]
        np.testing.assert_allclose([float(v) for v in row[6:]], w.scores, rtol=1e-5)
    assert len([line for line in printed.splitlines() if "class_" in line]) == 2
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_cli_timeline_plot_and_annotated_video(narrow, tmp_path, videos):
    pytest.importorskip("matplotlib")
    import av
    import cv2

    from keras_slowfast import cli

    weights = tmp_path / "narrow.weights.h5"
    narrow.save_weights(weights)
    plot, annotated = tmp_path / "timeline.png", tmp_path / "annotated.mp4"
    video = str(videos / "k00.mp4")
    args = ["timeline", video, "--model", "slow_8x8_r50", "--weights", str(weights),
            "--width-per-group", "8", "--classes", "7", "--stride", "5", "--quiet",
            "--plot", str(plot), "--annotate", str(annotated)]  # fmt: skip
    assert cli.main(args) == 0
    image = cv2.imread(str(plot))
    assert image is not None and image.ndim == 3 and image.std() > 0
    with av.open(video) as src, av.open(str(annotated)) as out:
        a = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
        b = [f.to_ndarray(format="rgb24") for f in out.decode(video=0)]
    assert len(b) == len(a) == 300 and b[0].shape == a[0].shape
    # The labels are drawn at the top left of every frame; the rest is the re-encoded input.
    diff = np.abs(np.stack(a[::50]).astype(int) - np.stack(b[::50]).astype(int)).mean(-1)
    assert diff[:, :40, :100].mean() > 10 * diff[:, 120:, 200:].mean()
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_cli_classify_annotate_draws_the_timeline_windows(narrow, tmp_path, videos, capsys):
    import av

    from keras_slowfast import cli

    weights = tmp_path / "narrow.weights.h5"
    narrow.save_weights(weights)
    annotated = tmp_path / "annotated.mp4"
    video = str(videos / "k03.mp4")
    args = ["classify", video, "--model", "slow_8x8_r50", "--weights", str(weights),
            "--width-per-group", "8", "--classes", "7", "--views", "1", "--stride", "5",
            "--annotate", str(annotated)]  # fmt: skip
    assert cli.main(args) == 0
    assert f"written: {annotated}" in capsys.readouterr().out
    with av.open(str(annotated)) as out:
        stream = out.streams.video[0]
        frames = sum(1 for _ in out.decode(video=0))
        assert (stream.width, stream.height, stream.average_rate) == (340, 256, 30)
    assert frames == 300
