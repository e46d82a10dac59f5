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
TensorFlow ops. It loads both ways: through the session loader TF Serving uses (the
MetaGraph's saver restores each variable; `saved_model_cli run`,
`tf.compat.v1.saved_model.load`) and through `tf.saved_model.load`.

Other runtimes (optional packages): `export_onnx` (ONNX Runtime and any ONNX consumer, via
`tf2onnx`), `export_openvino` (OpenVINO IR) and `export_tflite` (TensorFlow Lite, float32 or
dynamic-range quantised; classifiers only). These take the Keras model's own inputs,
float32 `clip` (and `boxes` for detectors) with the batch, box count, height and width
left dynamic, and return one output, `probabilities`.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import logging
import os
import shutil

import keras
import tensorflow as tf

from keras_slowfast._checks import check_positive_int
from keras_slowfast.atomic import atomic_path
from keras_slowfast.models.layers import ClipNormalization

__all__ = ["export_onnx", "export_openvino", "export_saved_model", "export_tflite"]

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


def _check_exportable(model):
    """Checks `model` is a classifier or a detector of this package; returns `detector`."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={type(model).__name__}")
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
    return detector


def export_saved_model(
    model: keras.Model,
    export_dir: str | os.PathLike,
    version: int = 1,
    top_k: int = 5,
    overwrite: bool = False,
) -> str:
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
        >>> model = keras_slowfast.SlowR50(width_per_group=8, classes=10)
        >>> path = export_saved_model(model, "serving/slowfast")  # doctest: +SKIP
        >>> import tensorflow as tf  # doctest: +SKIP
        >>> serve = tf.saved_model.load(path).signatures["serving_default"]  # doctest: +SKIP
        >>> out = serve(clip=tf.zeros((1, 8, 224, 224, 3), tf.uint8))  # doctest: +SKIP
        >>> sorted(out)  # doctest: +SKIP
        ['probabilities', 'top_k_indices', 'top_k_scores']
    """
    version = check_positive_int("version", version)
    top_k = check_positive_int("top_k", top_k)
    detector = _check_exportable(model)
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
    concrete = serve.get_concrete_function()
    module = tf.Module()
    module.model_variables = _captured_tf_variables(concrete)
    module.serve = serve
    tf.saved_model.save(module, path, signatures={"serving_default": concrete})
    return path


def _captured_tf_variables(concrete):
    """The TensorFlow variables the traced signature reads, for the SavedModel to track.

    What is tracked must be the `tf.Variable`s the graph captured, not the Keras variables
    that wrap them. A Keras variable saves as a fresh copy of its value (a second variable
    in the exported graph), so the MetaGraph's saver would restore the copies while the
    signature reads the originals: the object-graph loader (`tf.saved_model.load`) rebinds
    them and works, but the session loader TF Serving uses (`LoadSavedModel`, `saved_model_cli
    run`) restores only what the saver names and leaves the signature's variables
    uninitialised. Tracking only the captured variables gives each weight one variable, one
    checkpoint entry and one restore op. (Tracking the Keras model itself would also trace
    every layer's call, which is slow and not needed.)
    """
    variables = list(concrete.variables)
    if not variables:
        raise ValueError("The traced serving function reads no variables; nothing to export.")
    return variables


# ---------------------------------------------------------------------------------------
# Other runtimes: ONNX, OpenVINO, TensorFlow Lite.
# ---------------------------------------------------------------------------------------

_ONNX_OPSET = 17


def _input_specs(model, detector):
    """Float32 specs of the model's own inputs, with a dynamic batch (and box count)."""
    clip_shape = (model.input["clip"] if detector else model.input).shape
    specs = [tf.TensorSpec((None, *clip_shape[1:]), tf.float32, name="clip")]
    if detector:
        specs.append(tf.TensorSpec((None, None, 4), tf.float32, name="boxes"))
    return specs


def _inference_function(model, detector):
    """`tf.function` of the forward pass in inference mode, returning `probabilities`."""
    specs = _input_specs(model, detector)
    if detector:

        def detect(clip, boxes):
            probabilities = model({"clip": clip, "boxes": boxes}, training=False)
            return {"probabilities": tf.cast(probabilities, tf.float32)}

        return tf.function(detect, input_signature=specs)

    def classify(clip):
        return {"probabilities": tf.cast(model(clip, training=False), tf.float32)}

    return tf.function(classify, input_signature=specs)


def _check_target(path, suffix, overwrite, name="path"):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a path. Received: {name}={path!r}")
    path = os.fspath(path)
    if not isinstance(path, str) or not path.endswith(suffix):
        raise ValueError(
            f"`{name}` must be a file name ending in {suffix!r}. Received: {name}={path!r}"
        )
    if os.path.isdir(path):
        raise ValueError(f"`{name}` is a folder; name the file to write. Received: {name}={path!r}")
    if os.path.exists(path) and not overwrite:
        raise ValueError(
            "The file already exists; pass `overwrite=True` to replace it. "
            f"Received: {name}={path!r}"
        )
    return os.path.abspath(path)


def _write_atomically(path, data):
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as f:
            f.write(data)


def _import_optional(module, extra):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"This export needs the optional package `{module.split('.')[0]}`: "
            f"pip install 'keras-slowfast[{extra}]'"
        ) from error


@contextlib.contextmanager
def _quiet_logger(name):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _name_dynamic_dims(onnx_model, detector):
    """Names the dynamic axes of the graph's inputs and outputs (`batch`, `boxes`, ...)."""
    names = {
        "clip": ["batch", None, "height", "width", None],
        "boxes": ["batch", "boxes", None],
        "probabilities": ["batch", "boxes", None] if detector else ["batch", None],
    }
    for value in [*onnx_model.graph.input, *onnx_model.graph.output]:
        for dim, name in zip(value.type.tensor_type.shape.dim, names.get(value.name, [])):
            if name is not None and not dim.HasField("dim_value"):
                dim.dim_param = name


class _CollectingOptimizer:
    """One of tf2onnx's graph optimizers, created after the garbage of the previous is freed.

    tf2onnx optimises a copy of the graph per optimizer (its default, so that one failing
    optimizer is skipped) and writes every node's attributes, weights included, into the
    node's protobuf again after each one; the discarded copies hold reference cycles, so
    without a collection each of the ~24 passes would keep one more copy of the weights
    (3 GiB for SlowFast 8x8 R50).
    """

    def __init__(self, factory):
        gc.collect()
        self._optimizer = factory()

    def optimize(self, graph, iteration):
        return self._optimizer.optimize(graph, iteration)

    @property
    def graph_been_opt(self):
        return self._optimizer.graph_been_opt


def _tf2onnx_convert(function, input_signature, opset):
    """The ONNX `ModelProto` of a `tf.function`, as `tf2onnx.convert.from_function` makes it.

    The same steps (freezing, TensorFlow's graph optimisation, conversion, tf2onnx's
    optimizers), with the intermediate copies of the weights released as soon as the next
    step has its own: the frozen function once it is a `GraphDef`, that `GraphDef` once
    optimised and once imported, the TensorFlow graph once converted, each optimizer's
    discarded graph before the next runs.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tf2onnx import convert, optimizer, tf_loader, tfonnx

    concrete = function.get_concrete_function(*input_signature)
    inputs = [t.name for t in concrete.inputs if t.dtype != tf.resource]
    outputs = [t.name for t in concrete.outputs if t.dtype != tf.resource]
    renames = convert.tensor_names_from_structed(concrete, inputs, outputs)
    name = concrete.name
    with tf.device("/cpu:0"):
        # As `tf2onnx.tf_loader.from_function`, without keeping the frozen function and an
        # imported copy of its graph alive while TensorFlow optimises the GraphDef.
        frozen = convert_variables_to_constants_v2(
            concrete, lower_control_flow=False, aggressive_inlining=True
        )
        del concrete
        graph_def = frozen.graph.as_graph_def(add_shapes=True)
        del frozen
        gc.collect()
        graph_def = tf_loader.fix_freezing_errors_part2(graph_def)
        with tf.Graph().as_default():  # the optimiser runs in graph mode
            frozen = tf_loader.tf_optimize(inputs, outputs, graph_def)
        del graph_def
        with tf.Graph().as_default() as tf_graph:
            tf.import_graph_def(frozen, name="")
            del frozen
            graph = tfonnx.process_tf_graph(
                tf_graph,
                continue_on_error=True,
                opset=opset,
                input_names=inputs,
                output_names=outputs,
                tensors_to_rename=renames,
            )
        del tf_graph
        optimizers = None  # tf2onnx's own, where it does not list them
        defaults = getattr(optimizer, "_get_optimizers", None)
        if defaults is not None:
            optimizers = {
                key: functools.partial(_CollectingOptimizer, factory)
                for key, factory in defaults().items()
            }
        graph = optimizer.optimize_graph(graph, catch_errors=True, optimizers=optimizers)
        gc.collect()
        model = graph.make_model(f"converted from {name}")
    del graph
    gc.collect()
    return model


def export_onnx(
    model: keras.Model, path: str | os.PathLike, opset: int = _ONNX_OPSET, overwrite: bool = False
) -> str:
    """Writes `model` as an ONNX file (through `tf2onnx`), e.g. for ONNX Runtime.

    The graph takes the Keras model's own inputs, float32 `clip` `(batch, frames, height,
    width, 3)` (RGB in [0, 255] for a model with built-in preprocessing, else normalised)
    and, for detectors, `boxes` `(batch, boxes, 4)`; it returns `probabilities`. The
    batch, box count, height and width are dynamic (named `batch`, `boxes`, `height`,
    `width`); the frame count is the model's.

    Args:
        model: a classifier or a detector of this package.
        path: the `.onnx` file to write (atomically: a temporary file, then a rename).
        opset: the ONNX opset.
        overwrite: replace an existing file.

    Returns:
        The absolute path of the written file.

    Example:
        >>> import numpy as np
        >>> import keras_slowfast
        >>> model = keras_slowfast.SlowR50(width_per_group=8, classes=10)
        >>> path = export_onnx(model, "slowfast.onnx")  # doctest: +SKIP
        >>> import onnxruntime  # doctest: +SKIP
        >>> session = onnxruntime.InferenceSession(path)  # doctest: +SKIP
        >>> clip = np.zeros((1, 8, 224, 224, 3), np.float32)  # doctest: +SKIP
        >>> session.run(["probabilities"], {"clip": clip})[0].shape  # doctest: +SKIP
        (1, 10)
    """
    detector = _check_exportable(model)
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 13:
        raise ValueError(f"`opset` must be an integer >= 13. Received: opset={opset!r}")
    path = _check_target(path, ".onnx", overwrite)
    _import_optional("tf2onnx", "onnx")
    function = _inference_function(model, detector)
    with _quiet_logger("tf2onnx"):
        onnx_model = _tf2onnx_convert(function, _input_specs(model, detector), opset)
    del function
    _name_dynamic_dims(onnx_model, detector)
    data = onnx_model.SerializeToString()
    del onnx_model
    _write_atomically(path, data)
    return path


def export_openvino(model: keras.Model, path: str | os.PathLike, overwrite: bool = False) -> str:
    """Writes `model` as OpenVINO IR: `path` (`.xml`, the graph) and its `.bin` weights.

    The IR is converted by OpenVINO from the traced TensorFlow function; weights stay
    float32. Inputs and output are those of `export_onnx`, with the same dynamic axes.
    OpenVINO's CPU plugin runs in bfloat16 by default on CPUs that support it; compile
    with `{"INFERENCE_PRECISION_HINT": "f32"}` for float32 results.

    Args:
        model: a classifier or a detector of this package.
        path: the `.xml` file to write; the weights go to the same name ending in `.bin`.
            Each file is written atomically.
        overwrite: replace existing files.

    Returns:
        The absolute path of the `.xml` file.

    Example:
        >>> import numpy as np
        >>> import keras_slowfast
        >>> model = keras_slowfast.SlowR50(width_per_group=8, classes=10)
        >>> path = export_openvino(model, "slowfast.xml")  # doctest: +SKIP
        >>> import openvino as ov  # doctest: +SKIP
        >>> compiled = ov.compile_model(
        ...     path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})  # doctest: +SKIP
        >>> compiled(np.zeros((1, 8, 224, 224, 3), np.float32))[0].shape  # doctest: +SKIP
        (1, 10)
    """
    detector = _check_exportable(model)
    path = _check_target(path, ".xml", overwrite)
    weights_path = path[: -len(".xml")] + ".bin"
    if os.path.exists(weights_path) and not overwrite:
        raise ValueError(
            "The weights file beside `path` already exists; pass `overwrite=True` to replace "
            f"it. Received: path={path!r}"
        )
    ov = _import_optional("openvino", "openvino")
    ov_model = ov.convert_model(_inference_function(model, detector))
    for output in ov_model.outputs:
        output.get_tensor().set_names({"probabilities"})
    # The .bin is moved into place first; the .xml, renamed last by `atomic_path`, is what
    # makes the pair visible.
    with atomic_path(path, suffix=".xml") as temporary:
        temporary_weights = temporary[: -len(".xml")] + ".bin"
        try:
            ov.save_model(ov_model, temporary, compress_to_fp16=False)
            os.replace(temporary_weights, weights_path)
        finally:
            if os.path.exists(temporary_weights):
                os.remove(temporary_weights)
    return path


def _dims(x, first):
    """The sizes of `x` from axis `first` on: python ints where static, else tensors."""
    dynamic = tf.shape(x)
    return [d if d is not None else dynamic[k] for k, d in enumerate(x.shape) if k >= first]


def _frames(x):
    """`(batch, T, H, W, C)` -> `(batch * T, H, W, C)`, keeping the static sizes."""
    return tf.reshape(x, [-1, *_dims(x, 2)])


def _unframes(y, batch, frames):
    """`(batch * T, H, W, C)` -> `(batch, T, H, W, C)`, keeping the static sizes."""
    return tf.reshape(y, [batch, frames, *_dims(y, 1)])


class _FramewiseMaxPooling(keras.layers.Layer):
    """3D max pooling of temporal window and stride 1, as 2D pooling of every frame.

    A transient stand-in used while tracing for TensorFlow Lite, which has no built-in 3D
    max pooling; the arithmetic is the same.
    """

    def __init__(self, pool_size, strides, padding, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(pool_size)
        self.strides = tuple(strides)
        self.padding = padding

    def call(self, x):
        pooled = tf.nn.max_pool2d(
            _frames(x), self.pool_size[1:], self.strides[1:], self.padding.upper()
        )
        return _unframes(pooled, tf.shape(x)[0], x.shape[1] or tf.shape(x)[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {"pool_size": list(self.pool_size), "strides": list(self.strides),
             "padding": self.padding}
        )  # fmt: skip
        return config


class _FramewiseConvolution(keras.layers.Layer):
    """A `Conv3D` computed as a sum of 2D convolutions of frames, with the same weights.

    Output frame `t` is `sum_i conv2d(input frame t * stride + i * dilation, kernel[i])`
    over the temporal taps `i`. A transient stand-in used while tracing for TensorFlow
    Lite, whose 2D convolutions run on its fast CPU kernels and take dynamic-range
    quantisation (its 3D convolution does neither). It reads the variables of `conv`.
    """

    def __init__(self, conv, **kwargs):
        super().__init__(**kwargs)
        self.conv = conv

    def call(self, x):
        conv = self.conv
        (taps, _, _), (stride, *strides2d), (dilation, *dilations2d) = (
            conv.kernel.shape[:3],
            conv.strides,
            conv.dilation_rate,
        )
        frames = (x.shape[1] - (taps - 1) * dilation - 1) // stride + 1
        batch = tf.shape(x)[0]
        kernel = tf.convert_to_tensor(conv.kernel)
        y = None
        for i in range(taps):
            start = i * dilation
            window = x[:, start : start + stride * (frames - 1) + 1 : stride]
            term = tf.nn.conv2d(
                _frames(window), kernel[i], [1, *strides2d, 1], conv.padding.upper(),
                dilations=[1, *dilations2d, 1],
            )  # fmt: skip
            y = term if y is None else y + term
        if conv.use_bias:
            y = tf.nn.bias_add(y, conv.bias)
        return conv.activation(_unframes(y, batch, frames))

    def get_config(self):
        config = super().get_config()
        config.update({"conv": keras.saving.serialize_keras_object(self.conv)})
        return config


def _framewise_replacement(layer, inputs):
    """The 2D stand-in for `layer` on `inputs`, or `None` to keep `layer`."""
    if getattr(layer, "data_format", None) != "channels_last":
        return None
    if isinstance(layer, keras.layers.MaxPooling3D):
        if layer.pool_size[0] == 1 and layer.strides[0] == 1:
            return _FramewiseMaxPooling(
                layer.pool_size, layer.strides, layer.padding, name=layer.name
            )
        return None
    if (
        isinstance(layer, keras.layers.Conv3D)
        and layer.groups == 1
        and inputs.shape[1] is not None
        and (layer.padding == "valid" or layer.kernel_size[0] == layer.strides[0] == 1)
    ):
        return _FramewiseConvolution(layer, name=layer.name)
    return None


def _tflite_compatible(model):
    """`model` with its 3D convolutions and max poolings run as 2D ones of every frame.

    The layers are shared with `model` (same variables); only the calls change.
    """

    def call(layer, *args, **kwargs):
        replacement = _framewise_replacement(layer, args[0]) if args else None
        return (replacement or layer)(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)


_QUANTIZE = (None, "dynamic")


def export_tflite(
    model: keras.Model,
    path: str | os.PathLike,
    quantize: str | None = None,
    overwrite: bool = False,
) -> str:
    """Writes a classifier as a TensorFlow Lite flatbuffer.

    The model takes float32 `clip` `(batch, frames, height, width, 3)` as the Keras model
    does and returns `probabilities`; batch, height and width are dynamic
    (`Interpreter.resize_tensor_input`). Only TensorFlow Lite built-in operators are used
    (3D max pooling with a temporal window of 1 runs as 2D pooling of every frame), so the
    file runs on the stock interpreter, on a phone as on a server.

    Args:
        model: a classifier of this package (detectors are not supported).
        path: the `.tflite` file to write (atomically).
        quantize: `None` for float32 weights, `"dynamic"` for dynamic-range quantisation
            (int8 weights, float activations; about 4x smaller).
        overwrite: replace an existing file.

    Returns:
        The absolute path of the written file.

    Example:
        >>> import numpy as np
        >>> import keras_slowfast
        >>> model = keras_slowfast.SlowR50(width_per_group=8, classes=10)
        >>> path = export_tflite(model, "slowfast.tflite")  # doctest: +SKIP
        >>> import tensorflow as tf  # doctest: +SKIP
        >>> runner = tf.lite.Interpreter(path).get_signature_runner()  # doctest: +SKIP
        >>> clip = np.zeros((1, 8, 224, 224, 3), np.float32)  # doctest: +SKIP
        >>> runner(clip=clip)["probabilities"].shape  # doctest: +SKIP
        (1, 10)
    """
    if _check_exportable(model):
        raise ValueError(
            "TensorFlow Lite export supports classifiers only; export a detector with "
            "`export_onnx` or `export_openvino`. Received: model with inputs "
            f"{sorted(model.input)}"
        )
    if quantize not in _QUANTIZE:
        raise ValueError(
            f"`quantize` must be one of {list(_QUANTIZE)}. Received: quantize={quantize!r}"
        )
    path = _check_target(path, ".tflite", overwrite)
    function = _inference_function(_tflite_compatible(model), detector=False)
    # The converter freezes the TensorFlow variables it finds tracked; tracking the Keras
    # variables (wrappers) instead would leave uninitialised resource variables in the file.
    module = tf.Module()
    module.tf_variables = [variable.value for variable in model.variables]
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], module
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    _write_atomically(path, converter.convert())
    return path
