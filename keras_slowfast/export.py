"""Export for TensorFlow Serving: a SavedModel with a named uint8 `serving_default`.

The layout is the one TF Serving watches: `export_dir/<version>/saved_model.pb` plus
`variables/`. The signature `serving_default` (tag `serve`) takes

* `clip`: uint8 RGB `(batch, frames, height, width, 3)` in [0, 255], any height/width;
* `boxes` (detectors only): float32 `(batch, max_boxes, 4)`, `[x1, y1, x2, y2]`
  normalised to [0, 1], all-zero rows are padding;

and returns

* `probabilities`: float32 `(batch, classes)` for classifiers (softmax), `(batch,
  max_boxes, classes)` sigmoid scores for detectors;
* `top_k_scores` (float32) and `top_k_indices` (int32): the `top_k` best classes per
  clip (per box for detectors), best first.

The SavedModel needs nothing but TensorFlow to load: every layer is traced into plain
TensorFlow ops.
"""

import os
import shutil

import keras
import tensorflow as tf

from keras_slowfast.models.layers import ClipNormalization

__all__ = ["export_saved_model"]

_MEAN = 0.45
_STD = 0.225


def _has_preprocessing(model):
    return any(isinstance(layer, ClipNormalization) for layer in model.layers)


def _serving_function(model, top_k, detector):
    """The `tf.function` answering the signature; the model is captured, not tracked."""
    normalise = not _has_preprocessing(model)

    def prepare(clip):
        x = tf.cast(clip, tf.float32)
        if normalise:
            # A model built with include_preprocessing=False expects normalised input.
            x = (x / 255.0 - _MEAN) / _STD
        return x

    def outputs(probabilities):
        probabilities = tf.cast(probabilities, tf.float32)
        scores, indices = tf.math.top_k(probabilities, k=top_k)
        return {
            "probabilities": probabilities,
            "top_k_scores": scores,
            "top_k_indices": tf.cast(indices, tf.int32),
        }

    clip_shape = (model.input["clip"] if detector else model.input).shape
    clip_spec = tf.TensorSpec((None, *clip_shape[1:4], 3), tf.uint8, name="clip")
    if detector:

        def detect(clip, boxes):
            inputs = {"clip": prepare(clip), "boxes": tf.cast(boxes, tf.float32)}
            return outputs(model(inputs, training=False))

        boxes_spec = tf.TensorSpec((None, None, 4), tf.float32, name="boxes")
        return tf.function(detect, input_signature=[clip_spec, boxes_spec])

    def classify(clip):
        return outputs(model(prepare(clip), training=False))

    return tf.function(classify, input_signature=[clip_spec])


def _is_detector(model):
    return isinstance(model.input, dict) and set(model.input) == {"clip", "boxes"}


def export_saved_model(model, export_dir, version=1, top_k=5, overwrite=False):
    """Writes `model` as a TF Serving SavedModel to `export_dir/<version>/`.

    Args:
        model: a classifier (one `clip` input, `(batch, classes)` output) or a detector
            (`{"clip", "boxes"}` inputs) from this package, with or without built-in
            preprocessing: the exported signature always takes uint8 RGB.
        export_dir: the model's base folder (what TF Serving's `--model_base_path` names).
        version: positive integer version; the SavedModel goes to `export_dir/<version>`.
        top_k: how many best classes the signature returns (capped at the class count).
        overwrite: replace an existing `export_dir/<version>`.

    Returns:
        The path of the written version folder.

    Example:
        >>> import keras_slowfast
        >>> model = keras_slowfast.SlowFastR50(width_per_group=8, classes=10)
        >>> path = export_saved_model(model, "serving/slowfast")  # doctest: +SKIP
        >>> import tensorflow as tf  # doctest: +SKIP
        >>> serve = tf.saved_model.load(path).signatures["serving_default"]  # doctest: +SKIP
        >>> out = serve(clip=tf.zeros((1, 32, 224, 224, 3), tf.uint8))  # doctest: +SKIP
        >>> sorted(out)  # doctest: +SKIP
        ['probabilities', 'top_k_indices', 'top_k_scores']
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={type(model).__name__}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer. Received: version={version!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive integer. Received: top_k={top_k!r}")
    detector = _is_detector(model)
    clip_shape = (model.input["clip"] if detector else model.input).shape
    single_output = not isinstance(model.output, (list, tuple, dict))
    if (
        not single_output
        or len(clip_shape) != 5
        or len(model.output.shape) != (3 if detector else 2)
    ):
        raise ValueError(
            "`model` must be a classifier with its top or a detector (one output). "
            f"Received: model with input {model.input} and output {model.output}"
        )
    path = os.path.join(os.fspath(export_dir), str(version))
    if os.path.exists(path) and os.listdir(path) and not overwrite:
        raise ValueError(
            "The version folder already exists; choose another `version` or pass "
            f"`overwrite=True`. Received: export_dir={os.fspath(export_dir)!r}, "
            f"version={version}"
        )
    if os.path.exists(path):
        shutil.rmtree(path)
    serve = _serving_function(model, min(top_k, int(model.output.shape[-1])), detector)
    # Only the variables are tracked (as Keras' own export does): saving the Keras model
    # object itself would also trace every layer's call, which is slow and not needed.
    module = tf.Module()
    module.model_variables = list(model.variables)
    module.serve = serve
    tf.saved_model.save(module, path, signatures={"serving_default": serve.get_concrete_function()})
    return path
