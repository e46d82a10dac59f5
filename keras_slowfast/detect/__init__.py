"""Actions of the people in any video: an AVA detector scoring person boxes every second."""

from keras_slowfast.detect.person_boxes import (
    ActionDetections,
    KerasHubPersonDetector,
    OpenCVPersonDetector,
    detect_actions,
    draw_detections,
    read_box_csv,
    write_annotated_video,
    write_detections_csv,
)

__all__ = [
    "ActionDetections",
    "KerasHubPersonDetector",
    "OpenCVPersonDetector",
    "detect_actions",
    "draw_detections",
    "read_box_csv",
    "write_annotated_video",
    "write_detections_csv",
]
