"""Ask a TF Serving model (written by export_serving.py) to classify a video.

The client decodes one centred 256x256 view of the video as uint8 RGB, builds a
`tensorflow_serving.apis.predict_pb2.PredictRequest` for the `serving_default` signature
(input `clip`), sends it over gRPC and prints the top classes:

    python examples/serving_client.py --video examples/data/sample.mp4 \\
        --server localhost:8500 --model_name slowfast

`--saved_model DIR` answers the same request offline, without a server: the SavedModel is
restored into a session as TF Serving restores it, the request's tensors are checked
against the signature and fed to it in this process.

Needs `pip install tensorflow-serving-api` (with `--no-deps` when TensorFlow is installed
as `tensorflow-cpu`, which its requirement on `tensorflow` would otherwise duplicate).
"""

import numpy as np
import tensorflow as tf
from absl import app, flags

FLAGS = flags.FLAGS

flags.DEFINE_string("video", "examples/data/sample.mp4", "The video to classify.")
flags.DEFINE_string("server", "localhost:8500", "TF Serving's gRPC address.")
flags.DEFINE_string("model_name", "slowfast", "The served model's name.")
flags.DEFINE_integer("model_version", None, "A specific model version (default: the latest).")
flags.DEFINE_string("signature_name", "serving_default", "The signature to call.")
flags.DEFINE_string("saved_model", None, "Answer offline with this SavedModel version folder.")
flags.DEFINE_integer("num_frames", 32, "Frames per clip (the model's: 32 for 8x8 and 4x16).")
flags.DEFINE_integer("sampling_rate", 2, "Frame stride at 30 fps.")
flags.DEFINE_integer("top", 5, "How many classes to print.")
flags.DEFINE_float("timeout", 60.0, "gRPC deadline in seconds.")


def load_clip(video, num_frames, sampling_rate):
    """One centred view of `video`: uint8 `(1, num_frames, 256, 256, 3)`."""
    from keras_slowfast.inference import video_views

    return next(video_views(video, num_frames, sampling_rate, views=1))


def build_predict_request(
    clip, model_name, signature_name="serving_default", boxes=None, version=None
):
    """A `PredictRequest` feeding `clip` (uint8) and, for detectors, `boxes` (float32).

    Example:
        >>> request = build_predict_request(np.zeros((1, 32, 256, 256, 3), np.uint8), "sf")
        >>> sorted(request.inputs)
        ['clip']
    """
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs["clip"].CopyFrom(tf.make_tensor_proto(np.asarray(clip, np.uint8)))
    if boxes is not None:
        request.inputs["boxes"].CopyFrom(tf.make_tensor_proto(np.asarray(boxes, np.float32)))
    return request


def predict_grpc(request, server, timeout=60.0):
    """Sends `request` to TF Serving at `server`; returns `{output name: array}`."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def predict_offline(request, saved_model_dir):
    """Answers `request` with a local SavedModel, loaded as TF Serving loads it.

    TF Serving restores a SavedModel into a session (the MetaGraph's saver restores the
    variables) and runs the signature's tensors by name; this does the same with
    `tf.compat.v1.saved_model.load`, so a file this answers is one a server can answer.

    Raises:
        ValueError: if the request's inputs do not match the signature (names, dtypes or
            ranks).
    """
    name = request.model_spec.signature_name or "serving_default"
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.load(session, ["serve"], saved_model_dir)
        if name not in meta_graph.signature_def:
            raise ValueError(
                f"The SavedModel has no signature {name!r}; it has "
                f"{sorted(meta_graph.signature_def)}. Received: signature_name={name!r}"
            )
        signature = meta_graph.signature_def[name]
        if set(signature.inputs) != set(request.inputs):
            raise ValueError(
                f"The request's inputs must be {sorted(signature.inputs)}. "
                f"Received: inputs={sorted(request.inputs)}"
            )
        feeds = {}
        for key, info in signature.inputs.items():
            value = tf.make_ndarray(request.inputs[key])
            dtype = tf.dtypes.as_dtype(info.dtype)
            rank = len(info.tensor_shape.dim)
            if value.dtype != dtype.as_numpy_dtype or value.ndim != rank:
                raise ValueError(
                    f"Input {key} must be {dtype.name} with rank {rank}. "
                    f"Received: {key} {value.dtype} with shape {value.shape}"
                )
            feeds[info.name] = value
        fetches = {key: info.name for key, info in signature.outputs.items()}
        return session.run(fetches, feeds)


def main(argv):
    del argv
    clip = load_clip(FLAGS.video, FLAGS.num_frames, FLAGS.sampling_rate)
    request = build_predict_request(
        clip, FLAGS.model_name, FLAGS.signature_name, version=FLAGS.model_version
    )
    if FLAGS.saved_model:
        outputs = predict_offline(request, FLAGS.saved_model)
    else:
        outputs = predict_grpc(request, FLAGS.server, FLAGS.timeout)
    from keras_slowfast.labels import class_names_for

    probabilities = outputs["probabilities"][0]
    names = class_names_for(probabilities.shape[-1])
    for rank, index in enumerate(np.argsort(-probabilities, kind="stable")[: FLAGS.top]):
        print(f"{rank + 1:>3}. {probabilities[index]:8.4f}  {names[index]}")


if __name__ == "__main__":
    app.run(main)
