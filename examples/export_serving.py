"""Export a SlowFast model for TensorFlow Serving and check the export.

    python examples/export_serving.py --model slowfast_8x8_r50 --weights k400 \\
        --export_dir serving/slowfast

writes `serving/slowfast/1/` (signature `serving_default`: uint8 `clip`
`(batch, frames, height, width, 3)` -> `probabilities`, `top_k_scores`, `top_k_indices`),
reloads it with TensorFlow alone, compares its answer on a random clip with the Keras
model's and prints how to serve it:

    docker run -p 8500:8500 -p 8501:8501 \\
        --mount type=bind,source=$PWD/serving/slowfast,target=/models/slowfast \\
        -e MODEL_NAME=slowfast tensorflow/serving
"""

import os

import numpy as np
import tensorflow as tf
from absl import app, flags

import keras_slowfast
from keras_slowfast import hub

FLAGS = flags.FLAGS

flags.DEFINE_string("model", "slowfast_8x8_r50", "The variant to export.")
flags.DEFINE_string("weights", "k400", "A published weights name or a weights/checkpoint path.")
flags.DEFINE_string("export_dir", "serving/slowfast", "The model's base folder for TF Serving.")
flags.DEFINE_integer("version", 1, "The version subfolder to write.")
flags.DEFINE_integer("top_k", 5, "How many best classes the signature returns.")
flags.DEFINE_bool("overwrite", False, "Replace an existing version folder.")


def main(argv):
    del argv
    weights = None if FLAGS.weights.lower() == "none" else FLAGS.weights
    model = hub.build(FLAGS.model, weights)
    path = keras_slowfast.export_saved_model(
        model,
        FLAGS.export_dir,
        version=FLAGS.version,
        top_k=FLAGS.top_k,
        overwrite=FLAGS.overwrite,
    )
    print(f"SavedModel written to {path}")

    serve = tf.saved_model.load(path).signatures["serving_default"]
    rng = np.random.default_rng(0)
    detector = isinstance(model.input, dict)
    frames = (model.input["clip"] if detector else model.input).shape[1]
    clip = rng.integers(0, 256, (1, frames, 224, 224, 3), dtype=np.uint8)
    inputs = {"clip": clip}
    if detector:
        inputs["boxes"] = np.array([[[0.2, 0.1, 0.6, 0.9]]], np.float32)
    served = serve(**{k: tf.constant(v) for k, v in inputs.items()})
    keras_inputs = dict(inputs, clip=clip.astype(np.float32))
    expected = model.predict_on_batch(keras_inputs if detector else keras_inputs["clip"])
    diff = np.max(np.abs(served["probabilities"].numpy() - expected))
    print(f"reloaded with TensorFlow: max abs difference to Keras {diff:.2e}")
    name = os.path.basename(os.path.normpath(FLAGS.export_dir))
    print(
        "serve it with:\n  docker run -p 8500:8500 -p 8501:8501 "
        f"--mount type=bind,source={os.path.abspath(FLAGS.export_dir)},target=/models/{name} "
        f"-e MODEL_NAME={name} tensorflow/serving"
    )


if __name__ == "__main__":
    app.run(main)
