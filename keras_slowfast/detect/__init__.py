"""Actions of the people in any video: an AVA detector scoring person boxes every second.

Every whole second of the video is a keyframe, as in AVA; its person boxes come from a CSV
in AVA's format or from a person detector run on the keyframe, and the detector model
scores them on the AVA test-mode clip around it. The outputs are a CSV in AVA's format and
the video re-encoded with each second's boxes and top actions drawn.

- :mod:`~keras_slowfast.detect.person_boxes`: the boxes (:func:`read_box_csv`,
  :class:`OpenCVPersonDetector`, :class:`KerasHubPersonDetector`).
- :mod:`~keras_slowfast.detect.scoring`: the pipeline (:func:`detect_actions`).
- :mod:`~keras_slowfast.detect.action_detections`: its result (:class:`ActionDetections`)
  and the detections CSV (:func:`write_detections_csv`).
- :mod:`~keras_slowfast.detect.drawing`: the annotated frames and video
  (:func:`draw_detections`, :func:`write_annotated_video`).

How it differs from its neighbours: :mod:`keras_slowfast.models.detection` builds the
detector model itself (a clip and its boxes in, per-box action scores out; it reads no
video and finds no person), which this package runs.
:mod:`keras_slowfast.evaluation.ava_detector` runs the model over an AVA-layout dataset,
with the dataset's boxes, and scores it against the ground truth (frame-mAP); this package
runs it on any video file, with no ground truth, and writes what it finds.
"""

from keras_slowfast.detect.action_detections import ActionDetections, write_detections_csv
from keras_slowfast.detect.drawing import draw_detections, write_annotated_video
from keras_slowfast.detect.person_boxes import (
    KerasHubPersonDetector,
    OpenCVPersonDetector,
    read_box_csv,
)
from keras_slowfast.detect.scoring import detect_actions

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
