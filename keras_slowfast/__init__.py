"""SlowFast video networks for Keras 3 / TensorFlow.

Example:
    >>> import keras_slowfast
    >>> model = keras_slowfast.SlowFastR50(width_per_group=8, classes=10)
    >>> model.output_shape
    (None, 10)
"""

__version__ = "0.1.0"

from keras_slowfast.applications import (
    SlowFastR50,
    SlowFastR50AVA,
    SlowFastR101,
    SlowFastR101AVA,
    SlowR50,
    SlowR50AVA,
)
from keras_slowfast.export import (
    export_onnx,
    export_openvino,
    export_saved_model,
    export_tflite,
)
from keras_slowfast.flops import model_flops
from keras_slowfast.hub import from_preset, list_presets, load_pyslowfast, load_pytorchvideo
from keras_slowfast.labels import decode_predictions
from keras_slowfast.models.detection import SlowFastDetector
from keras_slowfast.models.layers import (
    ClipNormalization,
    NonLocalAttention,
    SlidingAveragePooling3D,
    TemporalSubsample,
)
from keras_slowfast.models.roi_align import RoIAlign
from keras_slowfast.models.slowfast import Backbone, SlowFast
from keras_slowfast.presets import get_preset
from keras_slowfast.weights.transfer import CheckpointMismatchError

__all__ = [
    "Backbone",
    "CheckpointMismatchError",
    "ClipNormalization",
    "NonLocalAttention",
    "RoIAlign",
    "SlidingAveragePooling3D",
    "SlowFast",
    "SlowFastDetector",
    "SlowFastR50",
    "SlowFastR50AVA",
    "SlowFastR101",
    "SlowFastR101AVA",
    "SlowR50",
    "SlowR50AVA",
    "TemporalSubsample",
    "decode_predictions",
    "export_onnx",
    "export_openvino",
    "export_saved_model",
    "export_tflite",
    "from_preset",
    "get_preset",
    "list_presets",
    "load_pyslowfast",
    "load_pytorchvideo",
    "model_flops",
]

# Submodules that pull in the data pipeline, TensorFlow training code or plotting load on
# first use (`keras_slowfast.visualize.grad_cam(...)`), so building a model stays light.
_LAZY_SUBMODULES = ("data", "evaluation", "inference", "streaming", "training", "visualize")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"keras_slowfast.{name}")
    raise AttributeError(f"module 'keras_slowfast' has no attribute {name!r}")
