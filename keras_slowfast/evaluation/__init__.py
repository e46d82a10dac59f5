"""Evaluation: AVA frame-mAP and multi-view (multi-clip, multi-crop) testing."""

from keras_slowfast.evaluation.ava import (
    AVABoxes,
    average_precision,
    detections_from_predictions,
    evaluate_ava,
    make_image_key,
    read_csv,
    read_exclusions,
    read_labelmap,
    write_csv,
)
from keras_slowfast.evaluation.ava import (
    write_detections_csv as write_detections_csv,  # deprecated: use write_csv
)
from keras_slowfast.evaluation.ava_detector import (
    AVADetectorEvaluation,
    default_ava_labelmap,
    evaluate_ava_detector,
)
from keras_slowfast.evaluation.multiview import (
    MultiViewAggregator,
    MultiViewResult,
    topk_accuracy,
)

__all__ = [
    "AVABoxes",
    "AVADetectorEvaluation",
    "MultiViewAggregator",
    "MultiViewResult",
    "average_precision",
    "default_ava_labelmap",
    "detections_from_predictions",
    "evaluate_ava",
    "evaluate_ava_detector",
    "make_image_key",
    "read_csv",
    "read_exclusions",
    "read_labelmap",
    "topk_accuracy",
    "write_csv",
]
