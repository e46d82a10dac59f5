"""The AVA dataset against what PySlowFast's own `Ava` dataset yields (golden `ava_data/`)."""

import json
import shutil

import numpy as np
import pytest

from keras_slowfast.data import ava

# The golden clips are PySlowFast's normalised fast-pathway frames stored as float16: values
# up to ~2.4 have a float16 spacing of 0.002, so an exact uint8 pipeline agrees within half
# of it (~0.001). Both sides decode the JPEG frames with OpenCV (libjpeg-turbo) and resize
# with OpenCV's INTER_LINEAR, so no decoder difference is expected; one uint8 level would be
# 1 / 255 / 0.225 = 0.017, which this tolerance rejects.
PIXEL_TOL = 0.002
# Boxes: float32 normalised coordinates scaled back to pixels.
BOX_TOL_PX = 0.01
GOLDEN_SETTINGS = dict(test_crop_size=128, train_crop_size=112, train_jitter_scales=(128, 160))


@pytest.fixture(scope="module")
def ava_golden(golden):
    root = golden / "ava_data"
    if not (root / "dataset").is_dir():
        pytest.skip("golden ava_data/ not found")
    meta = json.loads((root / "ava_data.json").read_text())
    return root, meta, np.load(root / "ava_data.npz")


def _split_kwargs(split):
    # The golden `test` split is PySlowFast's test split with AVA.FULL_TEST_ON_VAL True.
    return {"full_test_on_val": True} if split == "test" else {}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_keyframes_indices_labels_and_boxes_exact(ava_golden, split):
    root, meta, arrays = ava_golden
    ann = ava.load_ava_annotations(root / "dataset", split, **_split_kwargs(split))
    expected = meta["splits"][split]
    assert len(ann.keyframes) == len(expected)
    assert ann.num_boxes == sum(e["num_boxes"] for e in expected)
    for i, (k, e) in enumerate(zip(ann.keyframes, expected)):
        assert (ann.videos[k.video_index], k.second, k.center_frame) == (
            e["video"],
            e["sec"],
            e["center_frame"],
        )
        seq = ava.ava_sequence(
            k.center_frame, meta["num_frames"], meta["sampling_rate"], meta["frames"][e["video"]]
        )
        assert seq.tolist() == e["frame_indices"]
        np.testing.assert_array_equal(k.labels, arrays[f"{split}/{i}/labels"])
        np.testing.assert_array_equal(k.boxes, arrays[f"{split}/{i}/ori_boxes"])


@pytest.mark.parametrize("split", ["val", "test"])
def test_eval_clips_and_boxes_match_pyslowfast(ava_golden, split):
    root, meta, arrays = ava_golden
    ds = ava.ava_dataset(
        root / "dataset",
        split,
        metadata=True,
        batch_size=4,
        **GOLDEN_SETTINGS,
        **_split_kwargs(split),
    )
    expected = meta["splits"][split]
    i = 0
    worst_px = worst_box = 0.0
    for inputs, labels, info in ds:
        clips, boxes = inputs["clip"].numpy(), inputs["boxes"].numpy()
        assert clips.dtype == np.uint8
        for b in range(len(clips)):
            e = expected[i]
            clip, n = clips[b], int(info["num_boxes"][b])
            assert [3, *clip.shape[:3]] == e["shape"]
            assert (info["second"][b], ann_video(ds, info, b)) == (e["sec"], e["video"])
            h, w = clip.shape[1:3]
            px = boxes[b, :n] * np.array([w, h, w, h], np.float32)
            worst_box = max(worst_box, np.abs(px - arrays[f"{split}/{i}/boxes"]).max())
            assert not boxes[b, n:].any()
            np.testing.assert_array_equal(labels[b, :n], arrays[f"{split}/{i}/labels"])
            np.testing.assert_array_equal(
                info["ori_boxes"][b, :n], arrays[f"{split}/{i}/ori_boxes"]
            )
            ours = (clip[[0, 11, 21, 31]].astype(np.float32) / 255 - 0.45) / 0.225
            ref = arrays[f"{split}/{i}/fast_frames_0_11_21_31"].astype(np.float32)
            worst_px = max(worst_px, np.abs(ours.transpose(3, 0, 1, 2) - ref).max())
            i += 1
    assert i == len(expected)
    assert worst_box < BOX_TOL_PX
    assert worst_px < PIXEL_TOL


def ann_video(ds, info, b):
    return ds.annotations.videos[int(info["video_index"][b])]


def test_train_split_properties(ava_golden):
    root, meta, arrays = ava_golden
    expected = {(e["video"], e["sec"]): i for i, e in enumerate(meta["splits"]["train"])}
    ds = ava.ava_dataset(
        root / "dataset", "train", batch_size=4, seed=3, metadata=True, **GOLDEN_SETTINGS
    )
    seen = 0
    for inputs, labels, info in ds:
        clips, boxes = inputs["clip"].numpy(), inputs["boxes"].numpy()
        assert clips.shape[1:] == (32, 112, 112, 3)
        for b in range(len(clips)):
            n = int(info["num_boxes"][b])
            key = (ann_video(ds, info, b), int(info["second"][b]))
            i = expected[key]
            np.testing.assert_array_equal(labels[b, :n], arrays[f"train/{i}/labels"])
            np.testing.assert_array_equal(info["ori_boxes"][b, :n], arrays[f"train/{i}/ori_boxes"])
            px = boxes[b, :n] * 112
            assert (px >= 0).all() and (px <= 111 + 1e-4).all()
            assert (px[:, 2] >= px[:, 0]).all() and (px[:, 3] >= px[:, 1]).all()
            seen += 1
    # 14 keyframes, batches of 4, the last partial batch dropped.
    assert seen == 12


def test_train_is_repeatable_with_a_seed(ava_golden):
    root = ava_golden[0] / "dataset"

    def first_batch(seed):
        ds = ava.ava_dataset(root, "train", batch_size=2, seed=seed, **GOLDEN_SETTINGS)
        inputs, _, _ = next(iter(ds))
        return inputs["clip"].numpy(), inputs["boxes"].numpy()

    a, b, c = first_batch(5), first_batch(5), first_batch(6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not (np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1]))


def test_train_flip_moves_boxes_with_the_image():
    rng_frames = np.random.default_rng(0)
    frames = rng_frames.integers(0, 256, (2, 150, 200, 3), dtype=np.uint8)
    boxes = np.array([[0.1, 0.2, 0.4, 0.9], [0.5, 0.0, 1.0, 0.5]])
    for seed in range(20):
        kwargs = dict(crop_size=112, jitter_scales=(128, 160))
        plain, pb = ava.ava_transform(
            frames, boxes, "train", random_flip=False, rng=np.random.default_rng(seed), **kwargs
        )
        maybe, mb = ava.ava_transform(
            frames, boxes, "train", random_flip=True, rng=np.random.default_rng(seed), **kwargs
        )
        if np.array_equal(plain, maybe):
            np.testing.assert_array_equal(pb, mb)
            continue
        np.testing.assert_array_equal(maybe, plain[:, :, ::-1])
        np.testing.assert_allclose(mb[:, 0], 112 - pb[:, 2] - 1, atol=1e-4)
        np.testing.assert_allclose(mb[:, 2], 112 - pb[:, 0] - 1, atol=1e-4)
        np.testing.assert_array_equal(mb[:, [1, 3]], pb[:, [1, 3]])


def test_force_flip_and_bgr(ava_golden):
    root = ava_golden[0] / "dataset"
    kw = dict(batch_size=1, **GOLDEN_SETTINGS)
    plain = next(iter(ava.ava_dataset(root, "val", **kw)))[0]
    flipped = next(iter(ava.ava_dataset(root, "val", test_force_flip=True, **kw)))[0]
    bgr = next(iter(ava.ava_dataset(root, "val", bgr=True, **kw)))[0]
    np.testing.assert_array_equal(flipped["clip"].numpy(), plain["clip"].numpy()[:, :, :, ::-1])
    np.testing.assert_array_equal(bgr["clip"].numpy(), plain["clip"].numpy()[..., ::-1])
    pb, fb = plain["boxes"].numpy()[0, 0] * 128, flipped["boxes"].numpy()[0, 0] * 128
    np.testing.assert_allclose([fb[0], fb[2]], [127 - pb[2], 127 - pb[0]], atol=1e-3)


def test_color_augmentation_gives_float_clips(ava_golden):
    root = ava_golden[0] / "dataset"
    ds = ava.ava_dataset(
        root,
        "train",
        batch_size=2,
        seed=0,
        color_augmentation=True,
        pca_jitter_only=False,
        **GOLDEN_SETTINGS,
    )
    clip = next(iter(ds))[0]["clip"].numpy()
    assert clip.dtype == np.float32 and clip.shape[1:] == (32, 112, 112, 3)
    assert np.isfinite(clip).all() and not np.array_equal(clip, np.round(clip))


def test_box_weights_mark_real_boxes(ava_golden):
    root = ava_golden[0] / "dataset"
    ds = ava.ava_dataset(
        root, "test", full_test_on_val=True, batch_size=8, max_boxes=4, **GOLDEN_SETTINGS
    )
    inputs, labels, weights = next(iter(ds))
    assert inputs["boxes"].shape[1:] == (4, 4) and labels.shape[1:] == (4, 80)
    real = np.any(inputs["boxes"].numpy() != 0, axis=-1)
    np.testing.assert_array_equal(weights.numpy(), real.astype(np.float32))


def _copy_dataset(ava_golden, tmp_path):
    dst = tmp_path / "ava"
    shutil.copytree(ava_golden[0] / "dataset", dst)
    return dst


def test_bad_frame_list_row_names_file_and_line(ava_golden, tmp_path):
    root = _copy_dataset(ava_golden, tmp_path)
    lst = root / "frame_lists" / "val.csv"
    lines = lst.read_text().splitlines()
    lines[3] = "k00 0 2"
    lst.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"val\.csv:4"):
        ava.ava_dataset(root, "val")


def test_bad_box_rows_name_file_and_line(ava_golden, tmp_path):
    root = _copy_dataset(ava_golden, tmp_path)
    gt = root / "annotations" / "ava_train_v2.2.csv"
    good = gt.read_text()
    gt.write_text(good + "k00,0905,0.1,abc,0.5,0.9,12,0\n")
    n = len(good.splitlines()) + 1
    with pytest.raises(ValueError, match=rf"ava_train_v2\.2\.csv:{n}"):
        ava.ava_dataset(root, "train")
    gt.write_text(good + "k00,0905,0.6,0.2,0.5,0.9,12,0\n")
    with pytest.raises(ValueError, match="x1 <= x2"):
        ava.ava_dataset(root, "train")
    gt.write_text(good + "k00,1799,0.1,0.2,0.5,0.9,12,0\n")
    with pytest.warns(RuntimeWarning, match="outside the keyframe seconds"):
        ds = ava.ava_dataset(root, "train")
    assert len(ds.annotations.keyframes) == 14


def test_missing_frame_is_skipped_or_raised(ava_golden, tmp_path):
    root = _copy_dataset(ava_golden, tmp_path)
    # Frame 100 (0-based; file 101) is in the clips of k00's seconds 903 and 904 only.
    (root / "frames" / "k00" / "k00_000101.jpg").unlink()
    ds = ava.ava_dataset(root, "test", full_test_on_val=True, **GOLDEN_SETTINGS)
    with pytest.warns(RuntimeWarning, match="k00_000101"):
        count = sum(1 for _ in ds)
    assert count == 13 - 2
    assert ds.error_counter.count == 2
    assert "k00" in ds.error_counter.failures[0][0]
    ds = ava.ava_dataset(root, "test", full_test_on_val=True, on_error="raise", **GOLDEN_SETTINGS)
    with pytest.raises(Exception, match="k00_000101"):
        for _ in ds:
            pass


def test_corrupt_frame_is_reported(ava_golden, tmp_path):
    root = _copy_dataset(ava_golden, tmp_path)
    (root / "frames" / "k00" / "k00_000101.jpg").write_bytes(b"not a jpeg")
    ds = ava.ava_dataset(root, "test", full_test_on_val=True, on_error="raise", **GOLDEN_SETTINGS)
    with pytest.raises(Exception, match="not a decodable image"):
        for _ in ds:
            pass


def test_argument_errors(ava_golden, tmp_path):
    root = ava_golden[0] / "dataset"
    with pytest.raises(ValueError, match="Received: mode='dev'"):
        ava.ava_dataset(root, "dev")
    with pytest.raises(ValueError, match="max_boxes"):
        ava.ava_dataset(root, "train", max_boxes=1)
    with pytest.raises(ValueError, match="on_error"):
        ava.ava_dataset(root, "train", on_error="ignore")
    with pytest.raises(ValueError, match="AVA file not found"):
        ava.ava_dataset(tmp_path, "train")
    with pytest.raises(ValueError, match="data_dir"):
        ava.ava_dataset(None, "train")


def test_docstring_examples():
    import doctest

    import keras_slowfast.evaluation.ava_detector as runner

    assert doctest.testmod(ava).failed == 0
    assert doctest.testmod(runner).failed == 0


def test_video_files_give_the_frame_folders_clips(ava_golden, videos, tmp_path):
    """Frames from `k00.mp4` (30 fps) equal the golden JPEG frames of k00 up to JPEG loss."""
    root = ava_golden[0] / "dataset"
    video_dir = tmp_path / "videos"
    video_dir.mkdir()
    (video_dir / "k00.mp4").symlink_to(videos / "k00.mp4")
    # Only k00's frames are JPEGs of k00.mp4 at its native 30 fps; keep that video.
    lists = tmp_path / "frame_lists"
    lists.mkdir()
    rows = (root / "frame_lists" / "val.csv").read_text().splitlines()
    (lists / "val.csv").write_text("\n".join(r for r in rows if not r.startswith("bikes")) + "\n")
    kw = dict(test_crop_size=128, full_test_on_val=True, metadata=True, frame_list_dir=lists,
              annotation_dir=root / "annotations", frame_dir=root / "frames")  # fmt: skip
    with pytest.warns(RuntimeWarning, match="not in the frame lists"):
        from_frames = ava.ava_dataset(None, "test", **kw)
    with pytest.warns(RuntimeWarning, match="not in the frame lists"):
        from_video = ava.ava_dataset(None, "test", video_dir=video_dir, **kw)
    count = 0
    for (a, la, ma), (b, lb, mb) in zip(from_frames, from_video):
        diff = np.abs(a["clip"].numpy().astype(int) - b["clip"].numpy().astype(int))
        # JPEG (OpenCV default quality 95) costs about one level on average.
        assert diff.mean() < 1.5, diff.mean()
        np.testing.assert_array_equal(a["boxes"].numpy(), b["boxes"].numpy())
        np.testing.assert_array_equal(la.numpy(), lb.numpy())
        np.testing.assert_array_equal(ma["second"].numpy(), mb["second"].numpy())
        count += 1
    assert count == 7


def test_video_files_missing_video_is_named(ava_golden, tmp_path):
    root = ava_golden[0] / "dataset"
    with pytest.raises(ValueError, match=r"No video file for 2 video\(s\).*'k00'"):
        ava.ava_dataset(root, "val", video_dir=tmp_path)


def test_scale_short_side_is_the_deprecated_name_of_resize_short_side():
    import cv2

    from keras_slowfast import data

    frames = np.random.default_rng(0).integers(0, 256, (2, 90, 160, 3), dtype=np.uint8)
    # OpenCV's bilinear resize of each uint8 frame, long side floor(160 / 90 * 64) = 113.
    expected = np.stack([cv2.resize(f, (113, 64), interpolation=cv2.INTER_LINEAR) for f in frames])
    np.testing.assert_array_equal(data.resize_short_side(frames, 64), expected)
    with pytest.warns(DeprecationWarning, match=r"scale_short_side .*resize_short_side"):
        old = data.scale_short_side(frames, 64)
    np.testing.assert_array_equal(old, expected)
    assert "scale_short_side" not in data.__all__
