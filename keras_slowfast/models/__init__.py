"""Model builders and layers."""

from keras_slowfast.models.layers import (
    ClipNormalization,
    NonLocalAttention,
    SlidingAveragePooling3D,
    TemporalSubsample,
)
from keras_slowfast.models.slowfast import SlowFast

__all__ = [
    "ClipNormalization",
    "NonLocalAttention",
    "SlidingAveragePooling3D",
    "SlowFast",
    "TemporalSubsample",
]
