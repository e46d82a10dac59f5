"""SlowFast video networks for Keras 3 / TensorFlow.

Example:
    >>> import keras_slowfast
    >>> model = keras_slowfast.SlowFastR50(width_per_group=8, classes=10)
    >>> model.output_shape
    (None, 10)
"""

__version__ = "0.1.0"

import importlib as _importlib
import os as _os
import sys as _sys

# Each public name and the module that defines it.
_PUBLIC = {
    "Backbone": "keras_slowfast.models.slowfast",
    "CheckpointMismatchError": "keras_slowfast.weights.transfer",
    "ClipNormalization": "keras_slowfast.models.layers",
    "NonLocalAttention": "keras_slowfast.models.layers",
    "RoIAlign": "keras_slowfast.models.roi_align",
    "SlidingAveragePooling3D": "keras_slowfast.models.layers",
    "SlowFast": "keras_slowfast.models.slowfast",
    "SlowFastDetector": "keras_slowfast.models.detection",
    "SlowFastR50": "keras_slowfast.applications",
    "SlowFastR50AVA": "keras_slowfast.applications",
    "SlowFastR101": "keras_slowfast.applications",
    "SlowFastR101AVA": "keras_slowfast.applications",
    "SlowR50": "keras_slowfast.applications",
    "SlowR50AVA": "keras_slowfast.applications",
    "TemporalSubsample": "keras_slowfast.models.layers",
    "decode_predictions": "keras_slowfast.labels",
    "export_onnx": "keras_slowfast.export",
    "export_openvino": "keras_slowfast.export",
    "export_saved_model": "keras_slowfast.export",
    "export_tflite": "keras_slowfast.export",
    "from_preset": "keras_slowfast.hub",
    "get_preset": "keras_slowfast.presets",
    "list_presets": "keras_slowfast.hub",
    "load_pyslowfast": "keras_slowfast.hub",
    "load_pytorchvideo": "keras_slowfast.hub",
    "model_flops": "keras_slowfast.flops",
}

__all__ = list(_PUBLIC)

# Submodules that pull in the data pipeline, TensorFlow training code or plotting load on
# first use (`keras_slowfast.visualize.grad_cam(...)`), so building a model stays light.
_LAZY_SUBMODULES = ("data", "evaluation", "inference", "streaming", "training", "visualize")


def __getattr__(name):
    module = _PUBLIC.get(name)
    if module is not None:
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value
        return value
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f"keras_slowfast.{name}")
    raise AttributeError(f"module 'keras_slowfast' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC) | set(_LAZY_SUBMODULES))


def _started_as_command():
    """Whether this process runs the package's command line (`keras-slowfast ...`).

    The console scripts (`keras-slowfast`, `keras-slowfast-write-tfrecords`) and `python -m
    keras_slowfast...` import this package before the command reads its arguments; while
    `-m` imports the parent packages of its module, `sys.argv[0]` is `"-m"`.
    """
    argv = getattr(_sys, "argv", None) or [""]
    return argv[0] == "-m" or _os.path.basename(argv[0]).startswith("keras-slowfast")


# A plain `import keras_slowfast` loads the public API at once, and with it the custom layers
# `keras.saving.load_model` needs registered. A command loads what it uses when it runs, so
# that `keras-slowfast --help` answers without importing Keras and TensorFlow.
if not _started_as_command():
    for _module in sorted(set(_PUBLIC.values())):  # the order of the former imports
        _importlib.import_module(_module)
    for _name in _PUBLIC:
        __getattr__(_name)
    del _module, _name
