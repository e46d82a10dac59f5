"""Model builders and layers."""

from keras_slowfast.models.detection import SlowFastDetector
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
from keras_slowfast.models.slowfast import SlowFast
from keras_slowfast.models.variants import (
    VARIANTS,
    SlowFastR50,
    SlowFastR50AVA,
    SlowFastR101,
    SlowFastR101AVA,
    SlowR50,
)

__all__ = [
    "VARIANTS",
    "ClipNormalization",
    "LeanFunctional",
    "MaskPaddedBoxes",
    "NonLocalAttention",
    "NormalizedBoxesToPixels",
    "RoIAlign",
    "SlidingAveragePooling3D",
    "SlowFast",
    "SlowFastDetector",
    "SlowFastR50",
    "SlowFastR50AVA",
    "SlowFastR101",
    "SlowFastR101AVA",
    "SlowR50",
    "TemporalMean",
    "TemporalSubsample",
]
