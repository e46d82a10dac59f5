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
import tensorflow as tf

from keras_slowfast import SlowFast
from keras_slowfast.data.transforms import resize_short_side
from keras_slowfast.data.video import read_clip
from keras_slowfast.inference import timeline
from keras_slowfast.training import update_bn_stats
from keras_slowfast.visualize import plot_timeline

NAMES = ("k00", "bikes", "k03")
SIZE = 112


def normalise(video, path):
    """Writes `video` at 30 fps, 340x256 (short side 256, centre crop), as the figure shows it."""
    with av.open(video) as c:
        fps = float(c.streams.video[0].average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    out = [
        resize_short_side(frames[min(int(i * fps / 30), len(frames) - 1)], 256)
        for i in range(int(len(frames) / fps * 30))
    ]
    write_video([f[:, (f.shape[1] - 340) // 2 :][:, :340] for f in out], path)


def write_video(frames, path):
    out = av.open(path, "w")
    stream = out.add_stream("h264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 340, 256, "yuv420p"
    for frame in frames:
        out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame))))
    out.mux(stream.encode())
    out.close()


def decode(path):
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def training_clips(videos, per_video=32, seed=0):
    """Random clips (32 frames every 2) of each video, short side 112-140, random 112 crop."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label, video in enumerate(videos):
        for _ in range(per_video):
            clip = read_clip(video, 32, 2, rng=rng)
            clip = resize_short_side(clip, int(rng.integers(SIZE, 140)))
            y = int(rng.integers(0, clip.shape[1] - SIZE + 1))
            x = int(rng.integers(0, clip.shape[2] - SIZE + 1))
            xs.append(clip[:, y : y + SIZE, x : x + SIZE])
            ys.append(label)
    return np.stack(xs), np.array(ys)


def main(videos_dir, output):
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        videos = [f"{tmp}/{name}.mp4" for name in NAMES]
        for name, path in zip(NAMES, videos):
            normalise(f"{videos_dir}/{name}.mp4", path)
        x, y = training_clips(videos)
        model = SlowFast(
            width_per_group=8, classes=len(NAMES), input_shape=(32, SIZE, SIZE, 3),
            train_crop_size=SIZE, dropout_rate=0.0,
        )  # fmt: skip
        model.compile(
            keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model.fit(x, y, batch_size=8, epochs=10, shuffle=True, verbose=2)
        # PySlowFast's precise BN: population statistics of the training clips for testing.
        batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        update_bn_stats(model, batches, num_batches=len(x) // 8)
        print("training clips, inference mode:", model.evaluate(x, y, verbose=0))
        video = f"{tmp}/concat.mp4"
        write_video([f for path in videos for f in decode(path)], video)
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
