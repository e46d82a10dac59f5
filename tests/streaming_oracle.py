"""An oracle for the windows of a video, written independently of the package.

Every frame is decoded with PyAV directly (`frame.to_ndarray(format="rgb24")`); the
windows and frame indices follow PySlowFast's test clip rule as a NumPy formula (clip of
`sampling_rate * num_frames / 30 * fps` native frames, `linspace(start, start + clip_size -
1, num_frames)`, clamped to `[0, N - 1]`, truncated), placed by the window centre. The
last step, the short-side resize, calls the package's `resize_short_side` (OpenCV
bilinear); the centre crop offsets are computed here.

Used by the tests of `keras_slowfast.streaming` (windows, scoring, features).
"""

import math

import av
import numpy as np

from keras_slowfast.data.transforms import resize_short_side


def decode_all(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return fps, frames


def expected_windows(n_frames, fps, stride, num_frames, sampling_rate):
    """(k, centre, start, end, indices) of every window, from the rule written here."""
    out = []
    k = 0
    while k == 0 or (k + 0.5) * stride * fps < n_frames:
        centre = (k + 0.5) * stride
        clip_size = sampling_rate * num_frames / 30.0 * fps
        first = centre * fps - clip_size / 2
        values = np.linspace(first, first + clip_size - 1, num_frames)
        indices = np.clip(values, 0, n_frames - 1).astype(np.int64)  # astype truncates
        out.append((k, centre, k * stride, min((k + 1) * stride, n_frames / fps), indices))
        k += 1
    return out


def centre_crop(frames, size):
    frames = resize_short_side(np.stack(frames), size)
    h, w = frames.shape[1:3]
    y, x = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
    return frames[:, y : y + size, x : x + size]
