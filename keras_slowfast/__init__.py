"""SlowFast video networks for Keras 3 / TensorFlow.

Example:
    >>> import keras_slowfast
    >>> model = keras_slowfast.SlowFastR50(width_per_group=8, classes=10)
    >>> model.output_shape
    (None, 10)
"""

__version__ = "0.1.0"

from keras_slowfast.export import (
    export_onnx,
    export_openvino,
    export_saved_model,
    export_tflite,
)
from keras_slowfast.flops import model_flops
from keras_slowfast.labels import decode_predictions
from keras_slowfast.models.detection import SlowFastDetector
from keras_slowfast.models.layers import (
    ClipNormalization,
    NonLocalAttention,
    SlidingAveragePooling3D,
    TemporalSubsample,
)
from keras_slowfast.models.roi_align import RoIAlign
from keras_slowfast.models.slowfast import SlowFast
from keras_slowfast.models.variants import (
    SlowFastR50,
    SlowFastR50AVA,
    SlowFastR101,
    SlowFastR101AVA,
    SlowR50,
)
from keras_slowfast.weights.loading import (
    CheckpointMismatchError,
    load_pyslowfast,
    load_pytorchvideo,
)

__all__ = [
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
    "TemporalSubsample",
    "decode_predictions",
    "export_onnx",
    "export_openvino",
    "export_saved_model",
    "export_tflite",
    "load_pyslowfast",
    "load_pytorchvideo",
    "model_flops",
]
