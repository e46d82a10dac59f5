"""Extracting AVA's frame layout from videos: against the golden AVA folder and the video."""

import os
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from keras_slowfast.data import ava_extract, extract_ava_frames
from keras_slowfast.data.video import DecodeErrorCounter, VideoReadError

_REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def golden_ava(golden):
    d = golden / "ava_data" / "dataset"
    if not (d / "frames").is_dir():
        pytest.skip("golden ava_data/dataset not found")
    return d


def _files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_layout_and_bytes_equal_golden(tmp_path, videos, golden_ava):
    # The golden folder holds k00 (30 fps) and the 250 frames of the 25 fps bikes video
    # taken as 30 fps frames: extract bikes at its own rate, then both into one list.
    out = tmp_path / "ava"
    r1 = extract_ava_frames(videos / "k00.mp4", out, progress=False)
    r2 = extract_ava_frames([videos / "bikes.mp4"], out, fps=25, progress=False)
    assert r1.extracted == ["k00"] and r1.frames == {"k00": 300}
    assert r2.extracted == ["bikes"] and r2.frames == {"bikes": 250}
    # Resuming: both folders are complete, nothing is decoded, the list names both.
    r3 = extract_ava_frames([videos / "k00.mp4", videos / "bikes.mp4"], out, progress=False)
    assert r3.extracted == [] and r3.existing == ["k00", "bikes"]
    assert r3.frames == {"k00": 300, "bikes": 250}
    assert r3.frame_list == str(out / "frame_lists" / "train.csv")
    golden_list = (golden_ava / "frame_lists" / "train.csv").read_bytes()
    assert (out / "frame_lists" / "train.csv").read_bytes() == golden_list
    assert _files(out) == ["frame_lists", "frames"]
    assert _files(out / "frames") == _files(golden_ava / "frames") == ["bikes", "k00"]
    for video in ("k00", "bikes"):
        names = _files(out / "frames" / video)
        assert names == _files(golden_ava / "frames" / video)
        # The golden JPEGs were written by OpenCV (quality 95) from the same decoded frames.
        for name in names:
            got = (out / "frames" / video / name).read_bytes()
            assert got == (golden_ava / "frames" / video / name).read_bytes(), name


def _plain_frames(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_jpegs_decode_to_the_video_frames(tmp_path, videos):
    # bikes.mp4 is 25 fps: at 30 fps frame j shows decoded frame 5 * (j // 6) + [0,1,2,2,3,4].
    out = tmp_path / "ava"
    result = extract_ava_frames(videos / "bikes.mp4", out, split="val", progress=False)
    assert result.frames == {"bikes": 300}
    lines = (out / "frame_lists" / "val.csv").read_text().splitlines()
    assert lines[0] == "original_vido_id video_id frame_id path labels"
    assert lines[1] == 'bikes 0 0 bikes/bikes_000001.jpg ""'
    assert lines[-1] == 'bikes 0 299 bikes/bikes_000300.jpg ""' and len(lines) == 301
    decoded = _plain_frames(videos / "bikes.mp4")
    for j in list(range(12)) + list(range(12, 300, 23)):
        source = 5 * (j // 6) + [0, 1, 2, 2, 3, 4][j % 6]
        bgr = cv2.imread(str(out / "frames" / "bikes" / f"bikes_{j + 1:06d}.jpg"))
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float64)
        diff = rgb - decoded[source]
        # JPEG quality 95 with 4:2:0 chroma: small on average; single pixels at sharp
        # colour edges can be off by a few tens of levels.
        assert np.abs(diff).mean() < 2.0, j
        assert 10 * np.log10(255**2 / np.mean(diff**2)) > 38.0, j
    # The repeated frames are the same file content.
    frame = out / "frames" / "bikes"
    assert (frame / "bikes_000003.jpg").read_bytes() == (frame / "bikes_000004.jpg").read_bytes()


def _truncated_video(src, dst):
    """`src` remuxed with its index first, then cut: the decoder fails half way."""
    full = dst.with_name("faststart.mp4")
    with av.open(str(src)) as i, av.open(str(full), "w", options={"movflags": "faststart"}) as o:
        stream = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            o.mux(packet)
    dst.write_bytes(full.read_bytes()[:200_000])


def test_bad_videos_are_skipped_and_nothing_is_half_written(tmp_path, videos):
    out = tmp_path / "ava"
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    truncated = tmp_path / "cut.mp4"
    _truncated_video(videos / "k00.mp4", truncated)
    (out / "frames").mkdir(parents=True)
    stale = out / "frames" / ".k03.partial-0123"
    stale.mkdir()
    (stale / "k03_000001.jpg").write_bytes(b"left by an interrupted run")
    counter = DecodeErrorCounter()
    with pytest.warns(RuntimeWarning, match="Skipping video"):
        result = extract_ava_frames(
            [garbage, truncated, videos / "k03.mp4"], out, progress=False, error_counter=counter
        )
    assert result.frames == {"k03": 300} and result.extracted == ["k03"]
    assert [p for p, _ in result.failed] == [str(garbage), str(truncated)]
    assert "decoding failed" in result.failed[1][1]
    assert counter.count == 2
    # No partial folder of the failed videos, the stale temporary folder is gone.
    assert _files(out / "frames") == ["k03"]
    lines = (out / "frame_lists" / "train.csv").read_text().splitlines()
    assert len(lines) == 301 and lines[1].startswith("k03 0 0 ")

    with pytest.raises(VideoReadError, match="decoding failed") as e:
        extract_ava_frames([truncated], tmp_path / "other", on_error="raise", progress=False)
    assert e.value.path == str(truncated)
    assert _files(tmp_path / "other" / "frames") == []
    assert _files(tmp_path / "other" / "frame_lists") == []
    with pytest.raises(ValueError, match="No video could be extracted"):
        with pytest.warns(RuntimeWarning):
            extract_ava_frames([garbage], tmp_path / "other", progress=False)


def test_complete_folder_is_not_rewritten(tmp_path, videos):
    out = tmp_path / "ava"
    extract_ava_frames(videos / "k00.mp4", out, progress=False)
    first = out / "frames" / "k00" / "k00_000001.jpg"
    os.utime(first, (1, 1))
    result = extract_ava_frames(videos / "k00.mp4", out, split="test", progress=False)
    assert result.existing == ["k00"] and first.stat().st_mtime == 1
    assert (out / "frame_lists" / "test.csv").is_file()


def test_bad_arguments(tmp_path, videos):
    k00 = videos / "k00.mp4"
    for kwargs, match in (
        ({"jpeg_quality": 0}, "Received: jpeg_quality=0"),
        ({"split": "a/b"}, "Received: split='a/b'"),
        ({"on_error": "ignore"}, "Received: on_error='ignore'"),
        ({"fps": -1}, "Received: fps=-1"),
    ):
        with pytest.raises(ValueError, match=match):
            extract_ava_frames(k00, tmp_path / "x", progress=False, **kwargs)
    other = tmp_path / "elsewhere" / "k00.mp4"
    with pytest.raises(ValueError, match="same name"):
        extract_ava_frames([k00, other], tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="No video list file"):
        extract_ava_frames(tmp_path / "missing.txt", tmp_path / "x", progress=False)
    with pytest.raises(TypeError, match="videos"):
        extract_ava_frames(3, tmp_path / "x", progress=False)


def test_read_video_paths(tmp_path):
    (tmp_path / "list.txt").write_text("# videos\na.mp4\n\n/abs/b.mkv 3\nsub/c.mp4,x\n")
    assert ava_extract.read_video_paths(tmp_path / "list.txt") == [
        str(tmp_path / "a.mp4"),
        "/abs/b.mkv",
        str(tmp_path / "sub" / "c.mp4"),
    ]


def test_command_line(tmp_path, videos, capsys):
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{videos / 'k00.mp4'}\n{tmp_path / 'missing.mp4'}\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "keras_slowfast.cli", "extract-frames"]
    run = subprocess.run(
        command + [str(listing), "--output", str(tmp_path / "ava"), "--split", "val"],
        cwd=_REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "1 video(s), 300 frames at 30 fps" in run.stdout
    assert "300/300 frames" in run.stderr  # the progress bar's last line
    assert f"skipped {tmp_path / 'missing.mp4'}: file not found" in run.stderr
    assert (tmp_path / "ava" / "frame_lists" / "val.csv").is_file()
    # The error path, in process.
    from keras_slowfast import cli

    status = cli.main(
        ["extract-frames", str(tmp_path / "missing.mp4"), "--output", str(tmp_path / "b")]
    )
    assert status == 2
    assert "No video could be extracted" in capsys.readouterr().err


def test_docstring_examples():
    import doctest

    from keras_slowfast import progress
    from keras_slowfast.data import ava_video

    for module in (ava_extract, ava_video, progress):
        assert doctest.testmod(module).failed == 0, module.__name__
