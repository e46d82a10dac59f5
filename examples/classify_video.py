"""Classify a video with a Kinetics-400 SlowFast model (PySlowFast's test protocol).

    python examples/classify_video.py --video examples/data/sample.mp4

downloads the published SlowFast 8x8 R50 weights on first use (cached in `~/.keras`),
scores 10 clips x 3 crops of the video and prints the top classes. `--views 1` scores one
centred view instead; `--weights` also takes a local `.pkl`, `.pyth` or `.weights.h5` file.
"""

import time

from absl import app, flags

import keras_slowfast
from keras_slowfast import hub, presets
from keras_slowfast.inference import classify_video

FLAGS = flags.FLAGS

flags.DEFINE_string("video", "examples/data/sample.mp4", "The video file.")
flags.DEFINE_enum(
    "model",
    "slowfast_8x8_r50",
    presets.architecture_names("classifier"),
    "The classifier architecture.",
)
flags.DEFINE_string("weights", "k400", "A published weights name or a checkpoint path.")
flags.DEFINE_enum("views", None, ["1"], "Default: the preset's protocol; 1: one centred view.")
flags.DEFINE_integer("top", 5, "How many classes to print.")


def main(argv):
    del argv
    model = hub.build(FLAGS.model, FLAGS.weights)
    # The row of the named weights fixes the test protocol and the label set (a checkpoint
    # file takes the architecture's first row).
    try:
        preset = presets.find_preset(FLAGS.model, FLAGS.weights)
    except ValueError:
        preset = presets.get_preset(FLAGS.model)
    start = time.perf_counter()
    probabilities = classify_video(
        model, FLAGS.video, preset.name, views=int(FLAGS.views) if FLAGS.views else None
    )
    print(
        f"{FLAGS.video}: {preset.name}, {FLAGS.views or 'all'} view(s) in "
        f"{time.perf_counter() - start:.1f} s"
    )
    names = preset.labels if model.output_shape[-1] == preset.classes else None
    top = keras_slowfast.decode_predictions(probabilities[None], FLAGS.top, class_names=names)[0]
    for index, name, score in top:
        print(f"{score:8.4f}  {name}  (class {index})")


if __name__ == "__main__":
    app.run(main)
