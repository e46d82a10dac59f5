"""Makes docs/timeline.png: a timeline of a 30 s video made of the three sample clips.

No published weights are downloadable where this figure is made, so a narrow SlowFast
(width 8) is first trained for a few minutes to tell the three source clips apart (classes
`k00`, `bikes`, `k03`), from random clips of each; the figure then shows `timeline` finding
where each source plays in their concatenation. Usage:

    python docs/make_timeline_figure.py VIDEOS_DIR docs/timeline.png
"""

import sys
import tempfile

import av
import keras
import numpy as np

from keras_slowfast import SlowFast
from keras_slowfast.data.transforms import resize_short_side
from keras_slowfast.data.video import read_clip
from keras_slowfast.inference import timeline
from keras_slowfast.visualize import plot_timeline

NAMES = ("k00", "bikes", "k03")
SIZE = 112


def concatenate(videos_dir, path):
    """Writes the three clips one after the other at 30 fps, 340x256 (centre-cropped)."""
    out = av.open(path, "w")
    stream = out.add_stream("h264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 340, 256, "yuv420p"
    for name in NAMES:
        video = f"{videos_dir}/{name}.mp4"
        with av.open(video) as c:
            fps = float(c.streams.video[0].average_rate)
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        for i in range(int(len(frames) / fps * 30)):
            frame = resize_short_side(frames[min(int(i * fps / 30), len(frames) - 1)], 256)
            x = (frame.shape[1] - 340) // 2
            image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:, x : x + 340]))
            out.mux(stream.encode(image))
    out.mux(stream.encode())
    out.close()


def training_clips(videos_dir, per_video=24, seed=0):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label, name in enumerate(NAMES):
        for _ in range(per_video):
            clip = read_clip(f"{videos_dir}/{name}.mp4", 32, 2, rng=rng)
            clip = resize_short_side(clip, int(rng.integers(SIZE, 140)))
            y = int(rng.integers(0, clip.shape[1] - SIZE + 1))
            x = int(rng.integers(0, clip.shape[2] - SIZE + 1))
            xs.append(clip[:, y : y + SIZE, x : x + SIZE])
            ys.append(label)
    return np.stack(xs), np.array(ys)


def main(videos_dir, output):
    keras.utils.set_random_seed(0)
    x, y = training_clips(videos_dir)
    model = SlowFast(
        width_per_group=8, classes=len(NAMES), input_shape=(32, SIZE, SIZE, 3),
        train_crop_size=SIZE, dropout_rate=0.0,
    )  # fmt: skip
    model.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, batch_size=8, epochs=10, shuffle=True, verbose=2)
    with tempfile.TemporaryDirectory() as tmp:
        video = f"{tmp}/concat.mp4"
        concatenate(videos_dir, video)
        windows = list(
            timeline(model, video, "slowfast_8x8_r50", window_stride_seconds=1.0, crop_size=SIZE)
        )
    times = np.array([w.time for w in windows])
    scores = np.stack([w.scores for w in windows])
    for w in windows:
        print(f"{w.start:5.1f}-{w.end:5.1f} s  {NAMES[int(w.scores.argmax())]}")
    plot_timeline(times, scores, list(NAMES), output, top=3, title="timeline of k00 + bikes + k03")


if __name__ == "__main__":
    main(*sys.argv[1:3])
