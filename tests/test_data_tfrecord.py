"""JPEG-frame TFRecords: writer, command line, TF index math and the TF-only reader."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_slowfast import data
from keras_slowfast.data import sampling, tfrecord, transforms, video
from keras_slowfast.data import write_tfrecords_cli as cli

NAMES = ["bikes.mp4", "k00.mp4", "k03.mp4"]


@pytest.fixture(scope="module")
def golden_views(golden):
    with open(golden / "sampling" / "test_views.json") as f:
        return json.load(f)["videos"]


@pytest.fixture(scope="module")
def records(tmp_path_factory, videos):
    out = tmp_path_factory.mktemp("tfr")
    entries = [(str(videos / n), 20 + i) for i, n in enumerate(NAMES)]
    shards = data.write_frame_tfrecords(entries, out / "clips", num_shards=2, num_workers=2)
    return shards


_INDEX_FNS = {}


def _tf_indices(pts, fps, header, duration, num_frames, rate, view, seed=(0, 0)):
    """`frame_indices_from_timestamps_tf` traced once per (num_frames, rate)."""
    key = (num_frames, rate)
    if key not in _INDEX_FNS:
        spec = [
            tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([], tf.float64),
            tf.TensorSpec([], tf.int64),
            tf.TensorSpec([], tf.int64),
            tf.TensorSpec([], tf.int64),
            tf.TensorSpec([2], tf.int64),
        ]
        _INDEX_FNS[key] = tf.function(
            lambda p, f, h, d, v, s: tfrecord.frame_indices_from_timestamps_tf(
                p, f, h, d, num_frames, rate, v, seed=s
            ),
            input_signature=spec,
        )
    args = (pts, fps, header, -1 if duration is None else duration, view, seed)
    dtypes = (tf.int64, tf.float64, tf.int64, tf.int64, tf.int64, tf.int64)
    return _INDEX_FNS[key](*(tf.constant(a, t) for a, t in zip(args, dtypes))).numpy()


def _examples(shards):
    out = {}
    for shard in shards:
        for raw in tf.data.TFRecordDataset(shard):
            ex = tf.train.SequenceExample.FromString(raw.numpy())
            ctx = ex.context.feature
            index = ctx[tfrecord.VIDEO_INDEX_KEY].int64_list.value[0]
            out[index] = ex
    return out


def test_writer_layout(records, videos):
    assert [r.rsplit("/", 1)[1] for r in records] == [
        "clips-00000-of-00002.tfrecord",
        "clips-00001-of-00002.tfrecord",
    ]
    examples = _examples(records)
    assert sorted(examples) == [0, 1, 2]
    for index, name in enumerate(NAMES):
        ex = examples[index]
        ctx = ex.context.feature
        info, pts = video.decode_timestamps(videos / name)
        frames = ex.feature_lists.feature_list[tfrecord.IMAGE_KEY].feature
        stored_pts = [
            f.int64_list.value[0] for f in ex.feature_lists.feature_list["image/pts"].feature
        ]
        assert stored_pts == pts and len(frames) == len(pts)
        assert ctx[tfrecord.LABEL_KEY].int64_list.value[0] == 20 + index
        assert ctx[tfrecord.HEADER_FRAMES_KEY].int64_list.value[0] == info.header_frames
        assert ctx[tfrecord.DURATION_KEY].int64_list.value[0] == info.duration
        rate = (
            ctx[tfrecord.FRAME_RATE_NUM_KEY].int64_list.value[0]
            / ctx[tfrecord.FRAME_RATE_DEN_KEY].int64_list.value[0]
        )
        assert rate == info.fps
        assert ctx[tfrecord.FRAME_RATE_KEY].float_list.value[0] == pytest.approx(info.fps)
        first = tf.io.decode_jpeg(frames[0].bytes_list.value[0]).numpy()
        assert first.shape == (info.height, info.width, 3)
        assert ctx[tfrecord.HEIGHT_KEY].int64_list.value[0] == info.height


def test_tf_indices_equal_golden(videos, golden_views):
    for name in NAMES:
        info, pts = video.decode_timestamps(videos / name)
        for key, (nf, rate) in {
            "views_32x2": (32, 2),
            "views_64x2": (64, 2),
            "views_8x8": (8, 8),
        }.items():
            for view in range(10):
                got = _tf_indices(pts, info.fps, info.header_frames, info.duration, nf, rate, view)
                assert got.tolist() == golden_views[name][key][view], (name, key, view)


@pytest.mark.parametrize(
    "fps,n,header,duration,ticks,shuffle_pts",
    [
        (30000 / 1001, 290, 290, 290 * 1001, 1001, False),
        (24.0, 150, 150, 150 * 512, 512, False),
        (60.0, 600, 600, 600 * 256, 256, False),
        (25.0, 40, 40, 40 * 512, 512, False),  # shorter than the clip
        (25.0, 200, 0, None, 40, False),  # no duration: whole-video path
        (30.0, 120, 120, 120 * 512, 512, True),  # B-frame-like output order
        (15.0, 90, 100, 100 * 1000, 1000, False),  # header count disagrees
    ],
)
def test_tf_index_math_matches_numpy(fps, n, header, duration, ticks, shuffle_pts):
    pts = [i * ticks for i in range(n)]
    if shuffle_pts:
        rng = np.random.default_rng(0)
        for i in range(0, n - 3, 4):  # swap pairs, as decoders may emit them
            if rng.uniform() < 0.5:
                pts[i + 1], pts[i + 2] = pts[i + 2], pts[i + 1]
        pts[10] = pts[9]  # a duplicate timestamp
    info = sampling.VideoInfo(fps=fps, header_frames=header, duration=duration)
    for nf, rate in ((32, 2), (8, 8), (16, 4)):
        for view in range(10):
            try:
                expected = sampling.frame_indices_from_timestamps(pts, info, nf, rate, view)
            except ValueError:
                with pytest.raises(tf.errors.InvalidArgumentError):
                    _tf_indices(pts, fps, header, duration, nf, rate, view)
                continue
            got = _tf_indices(pts, fps, header, duration, nf, rate, view)
            assert got.tolist() == expected.tolist(), (nf, rate, view)


def test_tf_random_clip_is_a_window():
    # A random selective clip is sampled from the start of its window, so its
    # offsets from the first frame match view 0 whenever it is not clamped.
    pts = [i * 512 for i in range(300)]
    view0 = _tf_indices(pts, 30.0, 300, 153600, 8, 8, 0)
    starts = set()
    for s in range(20):
        idx = _tf_indices(pts, 30.0, 300, 153600, 8, 8, -1, seed=(s, 0))
        np.testing.assert_array_equal(idx - idx[0], view0 - view0[0])
        assert 0 <= idx[0] <= 300 - 64
        starts.add(int(idx[0]))
    assert len(starts) > 10


def _graph_ops(ds):
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(ds._as_serialized_graph().numpy())
    ops = {node.op for node in graph.node}
    for f in graph.library.function:
        ops |= {node.op for node in f.node_def}
    return ops


@pytest.mark.parametrize("mode", ["train", "test"])
def test_reader_graph_is_tensorflow_only(records, mode):
    ds = data.frame_tfrecord_dataset(
        records, mode, num_frames=4, sampling_rate=4, crop_size=64, jitter_scales=(64, 80)
    )
    ops = _graph_ops(ds)
    assert "DecodeJpeg" in ops
    assert not {op for op in ops if "PyFunc" in op}
    # The PyAV pipeline, by contrast, does call Python.
    entries = [("a.mp4", 0)]
    assert any("PyFunc" in op for op in _graph_ops(data.kinetics_dataset(entries, mode)))


def test_reader_test_mode_frames(records, golden_views):
    ds = data.frame_tfrecord_dataset(
        records, "test", num_frames=8, sampling_rate=8, crop_size=128, batch_size=30
    )
    examples = _examples(records)
    seen = []
    for clips, labels, vids, views in ds:
        clips, labels, vids, views = clips.numpy(), labels.numpy(), vids.numpy(), views.numpy()
        assert clips.shape == (30, 8, 128, 128, 3) and clips.dtype == np.uint8
        assert views.tolist() == list(range(30)) and len(set(vids.tolist())) == 1
        vid = int(vids[0])
        assert labels.tolist() == [20 + vid] * 30
        seen.append(vid)
        name = NAMES[vid]
        encoded = examples[vid].feature_lists.feature_list[tfrecord.IMAGE_KEY].feature
        for k in (0, 4, 17, 29):
            temporal, spatial = divmod(k, 3)
            idx = golden_views[name]["views_8x8"][temporal]
            frames = np.stack(
                [
                    tf.io.decode_jpeg(
                        encoded[i].bytes_list.value[0], dct_method="INTEGER_ACCURATE"
                    ).numpy()
                    for i in idx
                ]
            )
            frames = transforms.resize_short_side(frames, 128, exact=True)
            y, x = transforms.uniform_crop_offset(*frames.shape[1:3], 128, spatial)
            expected = frames[:, y : y + 128, x : x + 128].astype(int)
            # TF and OpenCV bilinear agree to float rounding: at most one level.
            assert np.abs(clips[k].astype(int) - expected).max() <= 1
    assert sorted(seen) == [0, 1, 2]


def test_reader_train_mode(records):
    kwargs = dict(num_frames=4, sampling_rate=4, crop_size=64, jitter_scales=(64, 80), batch_size=3)
    ds = data.frame_tfrecord_dataset(records, "train", seed=1, **kwargs)
    assert ds.element_spec[0].shape.as_list() == [3, 4, 64, 64, 3]
    a = [(c.numpy(), lab.numpy()) for c, lab in ds]
    b = [
        (c.numpy(), lab.numpy())
        for c, lab in data.frame_tfrecord_dataset(records, "train", seed=1, **kwargs)
    ]
    assert len(a) == 1 and sorted(a[0][1].tolist()) == [20, 21, 22]
    np.testing.assert_array_equal(a[0][0], b[0][0])
    c = data.frame_tfrecord_dataset(records, "val", **kwargs)
    labels = np.concatenate([lab.numpy() for _, lab in c])
    assert sorted(labels.tolist()) == [20, 21, 22]


def test_writer_resizes_and_skips(tmp_path, videos):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    counter = data.DecodeErrorCounter()
    with pytest.warns(RuntimeWarning, match="bad.mp4"):
        shards = data.write_frame_tfrecords(
            [(str(videos / "bikes.mp4"), 1), (str(bad), 2)],
            tmp_path / "out" / "small",
            short_side=64,
            error_counter=counter,
        )
    assert counter.count == 1
    examples = _examples(shards)
    assert list(examples) == [0]
    ctx = examples[0].context.feature
    expected = transforms.short_side_scale_size(272, 640, 64)
    assert (
        ctx[tfrecord.HEIGHT_KEY].int64_list.value[0],
        ctx[tfrecord.WIDTH_KEY].int64_list.value[0],
    ) == expected
    with pytest.raises(video.VideoReadError, match="bad.mp4"):
        data.write_frame_tfrecords([(str(bad), 2)], tmp_path / "x", on_error="raise")
    with pytest.raises(ValueError, match="Received: jpeg_quality=0"):
        data.write_frame_tfrecords([(str(bad), 2)], tmp_path / "x", jpeg_quality=0)


def test_command_line(tmp_path, videos, capsys):
    listing = tmp_path / "list.csv"
    listing.write_text("k00.mp4 5\nmissing.mp4 6\n")
    with pytest.warns(RuntimeWarning, match="missing.mp4"):
        status = cli.main(
            [
                str(listing),
                str(tmp_path / "cli" / "part"),
                "--path-prefix",
                str(videos),
                "--num-shards",
                "2",
                "--short-side",
                "32",
                "--jpeg-quality",
                "80",
            ]
        )
    captured = capsys.readouterr()
    assert status == 0
    assert "wrote 2 shard(s)" in captured.out and "skipped 1 video(s)" in captured.out
    assert "missing.mp4" in captured.err
    files = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert files == [
        "part-00000-of-00002.tfrecord",
        "part-00001-of-00002.tfrecord",
        "part.manifest",
        "part.manifest.json",
    ]
    status = cli.main(
        [
            str(listing),
            str(tmp_path / "cli2" / "p"),
            "--path-prefix",
            str(videos),
            "--on-error",
            "raise",
        ]
    )
    assert status == 2
    with pytest.raises(SystemExit):
        cli.main(["--num-shards"])


def test_reader_argument_errors(records, tmp_path):
    with pytest.raises(ValueError, match="No TFRecord file"):
        data.frame_tfrecord_dataset(str(tmp_path / "none-*"), "train")
    with pytest.raises(ValueError, match="Received: mode='predict'"):
        data.frame_tfrecord_dataset(records, "predict")


def test_a_list_of_patterns_is_globbed_entry_by_entry(records, tmp_path):
    # `examples/train.py --train_tfrecords` passes a list of patterns: each is expanded (a
    # literal list entry once read as a file name gave an empty dataset, which `.repeat()`
    # then spun on forever).
    folder = os.path.dirname(records[0])
    pattern = os.path.join(folder, "clips-*")
    kw = dict(mode="test", num_frames=4, sampling_rate=2, crop_size=32)
    kw.update(num_temporal_views=1, num_spatial_crops=1)
    from_list = data.frame_tfrecord_dataset([pattern], **kw)
    from_files = data.frame_tfrecord_dataset(records, **kw)

    def labels(ds):
        return sorted(np.concatenate([np.ravel(e[1]) for e in ds.as_numpy_iterator()]).tolist())

    assert labels(from_list) == labels(from_files) == [20 + i for i in range(len(NAMES))]
    with pytest.raises(ValueError, match="No TFRecord file matches .*none-"):
        data.frame_tfrecord_dataset([pattern, str(tmp_path / "none-*")], "train")
