"""Model builders and layers (imports nothing of `keras_slowfast.weights` or `data`)."""

from keras_slowfast.models.detection import DETECTOR_BACKBONE, SlowFastDetector
from keras_slowfast.models.functional import LeanFunctional
from keras_slowfast.models.layers import (
    ClipNormalization,
    MaskPaddedBoxes,
    NonLocalAttention,
    NormalizedBoxesToPixels,
    SlidingAveragePooling3D,
    TemporalMean,
    TemporalSubsample,
)
from keras_slowfast.models.roi_align import RoIAlign
from keras_slowfast.models.slowfast import Backbone, SlowFast

__all__ = [
    "DETECTOR_BACKBONE",
    "Backbone",
    "ClipNormalization",
    "LeanFunctional",
    "MaskPaddedBoxes",
    "NonLocalAttention",
    "NormalizedBoxesToPixels",
    "RoIAlign",
    "SlidingAveragePooling3D",
    "SlowFast",
    "SlowFastDetector",
    "TemporalMean",
    "TemporalSubsample",
]
