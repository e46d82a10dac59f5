"""Index math of the PySlowFast sampling: float32 linspace, windows, segments."""

import math
from fractions import Fraction

import numpy as np
import pytest

from keras_slowfast.data import sampling
from keras_slowfast.data.sampling import VideoInfo


def _reference_linspace(start, end, steps):
    """Scalar re-statement of ATen's CPU linspace kernel.

    Each point is a fused multiply-add rounded once to float32: exact rational arithmetic
    (fractions) followed by one rounding, as measured against torch 2.13's CPU build.
    """
    start = np.float32(start)
    end = np.float32(end)
    if steps == 1:
        return [start]
    step = np.float32(np.float32(end - start) / np.float32(steps - 1))
    out = []
    for i in range(steps):
        if i < steps // 2:
            exact = Fraction(float(start)) + Fraction(float(step)) * i
        else:
            exact = Fraction(float(end)) - Fraction(float(step)) * (steps - i - 1)
        out.append(_round_to_float32(exact))
    return out


def _round_to_float32(value):
    """Rounds an exact rational to the nearest float32 (ties to even)."""
    approx = np.float32(float(value))
    # float(value) rounds to float64 first; fix the rare double rounding by comparing the
    # float32 neighbours exactly.
    candidates = [
        np.nextafter(approx, np.float32(-np.inf)),
        approx,
        np.nextafter(approx, np.float32(np.inf)),
    ]
    best = min(
        candidates,
        key=lambda c: (abs(Fraction(float(c)) - value), int(np.float32(c).view(np.int32)) & 1),
    )
    return np.float32(best)


@pytest.mark.parametrize(
    "start,end,steps",
    [
        (0, 63, 32),
        (0, 52.333333333333336, 32),
        (0, 511, 64),
        (3.7, 120.2, 64),
        (0, 31, 8),
        (5, 5, 4),
        (0, 9, 1),
        (0, 1023, 64),
        (12.5, 0.5, 7),
    ],
)
def test_torch_linspace_matches_scalar_reference(start, end, steps):
    got = sampling.torch_linspace(start, end, steps)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array(_reference_linspace(start, end, steps), np.float32))


def test_torch_linspace_against_torch_when_available():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for _ in range(300):
        steps = int(rng.integers(1, 130))
        start = float(rng.uniform(0, 200))
        end = start + float(rng.uniform(0, 600))
        ref = torch.linspace(start, end, steps).numpy()
        np.testing.assert_array_equal(sampling.torch_linspace(start, end, steps), ref)


def test_float32_truncation_differs_from_float64_floor():
    # 64 frames over a 512-frame span (sampling rate 8 at 30 fps): point 27 is
    # exactly 511 * 27 / 63 = 219 in exact arithmetic, but float32 gives
    # 218.99998, so PySlowFast picks frame 218.
    assert Fraction(511 * 27, 63) == 219
    assert math.floor(np.linspace(0, 511, 64)[27]) == 219
    assert float(sampling.torch_linspace(0, 511, 64)[27]) < 219
    idx = sampling.temporal_sample_indices(0, 511, 64, num_frames=10_000)
    assert idx[27] == 218
    float64_floor = np.floor(np.linspace(0, 511, 64)).astype(int)
    assert np.count_nonzero(idx != float64_floor) == 1
    # Same at 1024 frames (sampling rate 16): point 21 -> 340, not 341.
    idx = sampling.temporal_sample_indices(0, 1023, 64, num_frames=10_000)
    assert idx[21] == 340 and math.floor(np.linspace(0, 1023, 64)[21]) == 341


def test_second_half_is_computed_from_the_end():
    # The last point is exactly `end`; a forward-only float32 linspace would
    # give 30.999998 for linspace(0, 31, 8) and truncate to 30.
    forward_only = np.float32(0) + np.float32(np.float32(31) / np.float32(7)) * np.float32(7)
    assert int(forward_only) == 30
    assert sampling.torch_linspace(0, 31, 8)[-1] == np.float32(31)
    assert sampling.slow_pathway_indices(32, 4)[-1] == 31


def test_temporal_sample_indices_clamps_and_repeats_last_frame():
    idx = sampling.temporal_sample_indices(0, 63, 8, num_frames=10)
    assert idx.dtype == np.int64
    assert idx.tolist() == [0, 9, 9, 9, 9, 9, 9, 9]
    with pytest.raises(ValueError, match="num_frames"):
        sampling.temporal_sample_indices(0, 10, 4, num_frames=0)


@pytest.mark.parametrize(
    "variant,alpha",
    [("slowfast_8x8_r50", 4), ("slowfast_4x16_r50", 8), ("slowfast_16x8_r101_50_50", 4)],
)
def test_slow_pathway_indices_match_golden_inputs(golden, variant, alpha):
    io = np.load(golden / "models" / variant / "io.npz")
    fast, slow = io["train_crop/fast"], io["train_crop/slow"]
    num_frames = fast.shape[2]
    expected = []
    for k in range(slow.shape[2]):
        matches = [t for t in range(num_frames) if np.array_equal(fast[:, :, t], slow[:, :, k])]
        assert len(matches) == 1
        expected.append(matches[0])
    assert sampling.slow_pathway_indices(num_frames, alpha).tolist() == expected


def test_slow_pathway_indices_rejects_bad_alpha():
    with pytest.raises(ValueError, match="Received: alpha=64"):
        sampling.slow_pathway_indices(32, 64)


def test_start_end_index_test_views_and_random():
    # Test view t of 10 starts at delta * t / 10.
    for t in range(10):
        start, end = sampling.start_end_index(300, 64.0, t, 10)
        assert start == pytest.approx(236 * t / 10) and end == pytest.approx(start + 63)
    # Short video: delta clamps at 0.
    assert sampling.start_end_index(20, 64.0, 5, 10) == (0.0, 63.0)
    rng = np.random.default_rng(0)
    starts = [sampling.start_end_index(300, 64.0, -1, 10, rng)[0] for _ in range(2000)]
    assert 0 <= min(starts) and max(starts) <= 236
    assert min(starts) < 10 and max(starts) > 226


def test_clip_sizes_follow_pyslowfast_operation_order():
    # The window uses sampling_rate * num_frames / target_fps * fps and the
    # segment num_frames * sampling_rate * fps / target_fps; at 29.97 fps the
    # two differ in the last bit, as in PySlowFast.
    fps = 30000 / 1001
    assert sampling.window_clip_size(32, 2, fps) == 2 * 32 / 30 * fps
    assert sampling.segment_clip_size(32, 2, fps) == 32 * 2 * fps / 30
    assert sampling.window_clip_size(32, 2, 30.0) == 64.0


def test_pts_window_truncates():
    assert sampling.pts_window(70.8, 133.8, duration=153600, header_frames=300) == (
        int(70.8 * 512),
        int(133.8 * 512),
    )
    assert sampling.pts_window(0.0, 52.3333, duration=128000, header_frames=250) == (0, 26794)


def test_select_segment_follows_decode_loop_semantics():
    # Frames before the window are skipped, frames inside kept, the first
    # frame after the window kept, and the rest ignored.
    pts = [0, 512, 1024, 1536, 2048, 2560]
    assert sampling.select_segment(pts, 512, 1024).tolist() == [1, 2, 3]
    assert sampling.select_segment(pts, 600, 1024).tolist() == [2, 3]
    assert sampling.select_segment(pts, 0, math.inf).tolist() == [0, 1, 2, 3, 4, 5]
    assert sampling.select_segment(pts, 5000, 6000).tolist() == []
    # Out-of-order timestamps are sorted, duplicates keep the last frame.
    assert sampling.select_segment([0, 1024, 512, 512, 1536, 2048], 400, 1100).tolist() == [3, 1, 4]


def test_video_info_selective():
    assert VideoInfo(30.0, 300, 153600).selective
    assert not VideoInfo(30.0, 300, None).selective
    assert not VideoInfo(30.0, 0, 153600).selective


def _pts(num_frames, ticks, offset=0):
    return [offset + i * ticks for i in range(num_frames)]


def test_frame_indices_whole_video_path_without_duration():
    # Without a duration PySlowFast decodes everything and places view t at
    # delta * t / num_views among the decoded frames.
    info = VideoInfo(fps=30.0, header_frames=0, duration=None)
    pts = _pts(300, 512)
    for view in range(10):
        start = (300 - 64) * view / 10
        expected = np.trunc(np.clip(sampling.torch_linspace(start, start + 63, 32), 0, 299)).astype(
            int
        )
        got = sampling.frame_indices_from_timestamps(pts, info, 32, 2, view)
        assert got.tolist() == expected.tolist()


def test_frame_indices_at_30_fps_end_at_offset_63():
    # SPEC.md: at 30 fps the net effect is offsets {0, 2, ..., 60, 63} from
    # the first kept frame.
    info = VideoInfo(fps=30.0, header_frames=300, duration=153600)
    got = sampling.frame_indices_from_timestamps(_pts(300, 512), info, 32, 2, 0)
    assert got.tolist() == list(range(0, 61, 2)) + [63]


def test_frame_indices_raise_when_window_is_empty():
    info = VideoInfo(fps=30.0, header_frames=300, duration=153600)
    with pytest.raises(ValueError, match="No decoded frame"):
        sampling.frame_indices_from_timestamps(_pts(50, 512), info, 8, 8, 9)


# --- SSv2 segment sampling -------------------------------------------------------------


def _reference_segments(length, n):
    """The segment rule re-stated with Python's `round` (halves to even, as NumPy's)."""
    seg = float(length - 1) / n
    bounds = [(int(round(seg * i)), int(round(seg * (i + 1)))) for i in range(n)]
    return [(a + b) // 2 for a, b in bounds], bounds


# Written by hand from the rule: seg = (L - 1) / n, bounds round(seg * i), middle (a + b) // 2.
@pytest.mark.parametrize(
    "length, n, expected",
    [
        # seg 12.375: bounds 0 12 25 37 50 62 74 87 99 (49.5 -> 50, a tie to even).
        (100, 8, [6, 18, 31, 43, 56, 68, 80, 93]),
        # seg 0.5: bounds 0 0 1 2 2 (0.5 -> 0 and 1.5 -> 2, ties to even).
        (3, 4, [0, 0, 1, 2]),
        # seg 0.25: bounds 0 0 0 1 1.
        (2, 4, [0, 0, 0, 1]),
        # A single frame: every segment is frame 0.
        (1, 4, [0, 0, 0, 0]),
        (1, 1, [0]),
        # seg 2.25: bounds 0 2 4 7 9 (4.5 -> 4).
        (10, 4, [1, 3, 5, 8]),
        # seg 1.25: bounds 0 1 2 4 5 (2.5 -> 2).
        (6, 4, [0, 1, 3, 4]),
        # seg 1: bounds 0..64, middles 0..63.
        (65, 64, list(range(64))),
        # One segment: the middle of the whole video.
        (5, 1, [2]),
    ],
)
def test_segment_indices_hand_derived(length, n, expected):
    got = sampling.segment_indices(length, n)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert sampling.segment_indices(length, n, mode="val").tolist() == expected
    assert _reference_segments(length, n)[0] == expected


@pytest.mark.parametrize("length", [1, 2, 3, 7, 31, 63, 64, 65, 90, 127, 128, 129, 301, 1000])
@pytest.mark.parametrize("n", [1, 8, 16, 32, 64])
def test_segment_indices_match_an_independent_restatement(length, n):
    expected, _ = _reference_segments(length, n)
    got = sampling.segment_indices(length, n, mode="test")
    assert got.tolist() == expected
    assert 0 <= got.min() and got.max() <= length - 1


@pytest.mark.parametrize("length, n", [(3, 4), (100, 8), (10, 4), (64, 64)])
def test_segment_indices_train_draws_every_frame_of_each_segment_inclusive(length, n):
    _, bounds = _reference_segments(length, n)
    rng = np.random.default_rng(0)
    draws = np.stack([sampling.segment_indices(length, n, "train", rng) for _ in range(600)])
    for i, (a, b) in enumerate(bounds):
        # randint(start, end) includes both ends: every frame of [a, b] is drawn.
        assert set(draws[:, i].tolist()) == set(range(a, b + 1)), (i, a, b)


def test_segment_indices_train_is_repeatable_with_a_seed():
    a = sampling.segment_indices(300, 64, "train", np.random.default_rng(7))
    b = sampling.segment_indices(300, 64, "train", np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(num_video_frames=0, num_segments=8), ValueError, "num_video_frames=0"),
        (dict(num_video_frames=10, num_segments=0), ValueError, "num_segments=0"),
        (dict(num_video_frames=10.0, num_segments=8), TypeError, "num_video_frames=10.0"),
        (dict(num_video_frames=10, num_segments=True), TypeError, "num_segments=True"),
        (dict(num_video_frames=10, num_segments=8, mode="eval"), ValueError, "mode='eval'"),
    ],
)
def test_segment_indices_bad_input(kwargs, error, match):
    with pytest.raises(error, match=f"Received: {match}"):
        sampling.segment_indices(**kwargs)
