"""Running an AVA detector over an AVA-layout dataset and scoring it (frame-mAP).

This is PySlowFast's AVA test loop: every keyframe of the split is scored with its person
boxes, each box gives one detection per evaluated class with the box as read from the CSV,
and the official evaluator compares them with the ground truth.
"""

from __future__ import annotations

import io
import json
import math
import os
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import tensorflow as tf

from keras_slowfast.atomic import write_text_atomically
from keras_slowfast.evaluation import ava as ava_eval
from keras_slowfast.models.functional import LeanFunctional
from keras_slowfast.progress import ProgressBar

if TYPE_CHECKING:
    import keras

__all__ = ["AVADetectorEvaluation", "default_ava_labelmap", "evaluate_ava_detector"]

DEFAULT_LABELMAP_RESOURCE = "ava_action_list_v2.1_for_activitynet_2018.pbtxt"


class AVADetectorEvaluation(NamedTuple):
    """What `evaluate_ava_detector` returns.

    Attributes:
        metrics: the evaluator's dict (`"PascalBoxes_Precision/mAP@0.5IOU"` and per class).
        detections: the detection rows `(video, second, x1, y1, x2, y2, action_id, score)`
            of the evaluated classes.
        scores: float32 `(num_boxes, num_classes)`, one row per box in dataset order.
        videos: the video name of each box.
        seconds: int `(num_boxes,)`, the keyframe second of each box.
        boxes: float32 `(num_boxes, 4)`, each box as read (normalised).

    Example:
        >>> result = AVADetectorEvaluation(
        ...     metrics={"PascalBoxes_Precision/mAP@0.5IOU": 0.25},
        ...     detections=[("v", 902, 0.1, 0.2, 0.5, 0.9, 12, 0.75)],
        ...     scores=np.full((1, 60), 0.75, "float32"),
        ...     videos=["v"],
        ...     seconds=np.array([902]),
        ...     boxes=np.array([[0.1, 0.2, 0.5, 0.9]], "float32"),
        ... )
        >>> result.mean_ap
        0.25
    """

    metrics: dict
    detections: list
    scores: np.ndarray
    videos: list
    seconds: np.ndarray
    boxes: np.ndarray

    @property
    def mean_ap(self) -> float:
        """The frame-mAP at IoU 0.5."""
        return self.metrics["PascalBoxes_Precision/mAP@0.5IOU"]


def default_ava_labelmap() -> str:
    """The text of the 60-class AVA evaluation label map shipped with the package.

    Example:
        >>> text = default_ava_labelmap()
        >>> len(ava_eval.read_labelmap(text)[1])
        60
    """
    path = resources.files("keras_slowfast") / "resources" / DEFAULT_LABELMAP_RESOURCE
    return path.read_text("utf-8")


def _json_safe(metrics):
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def _resolve(path, folder, default, name):
    if path is not None:
        if not os.path.isfile(path):
            raise ValueError(f"No file at `{name}`. Received: {name}={os.fspath(path)!r}")
        return os.fspath(path)
    candidate = os.path.join(folder, default)
    return candidate if os.path.isfile(candidate) else None


def evaluate_ava_detector(
    model: keras.Model,
    data_dir: str | os.PathLike | None = None,
    *,
    mode: str = "test",
    annotation_dir: str | os.PathLike | None = None,
    groundtruth: str | os.PathLike | None = None,
    exclusions: str | os.PathLike | None = None,
    labelmap: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
    num_frames: int | None = None,
    sampling_rate: int = 2,
    test_crop_size: int = 256,
    full_test_on_val: bool = False,
    detection_score_thresh: float = 0.8,
    batch_size: int = 8,
    progress: bool = True,
    **dataset_kwargs: Any,
) -> AVADetectorEvaluation:
    """Scores an AVA detector on an AVA-layout dataset: PySlowFast's test loop and evaluator.

    Every keyframe of the split (`keras_slowfast.data.ava_dataset` with `metadata=True`) is
    run through `model`; each person box gives one detection per class of the label map, with
    the box as read from the boxes CSV, and the official AVA evaluator scores them against
    the ground truth, leaving out the excluded timestamps. As in PySlowFast, the `"test"`
    split and `"val"` with `full_test_on_val` are scored against the whole ground truth,
    `"val"` otherwise against its seconds divisible by 4.

    Args:
        model: an AVA detector taking `{"clip", "boxes"}` (for example
            `keras_slowfast.SlowFastR101AVA`).
        data_dir: the dataset folder (`frames/`, `frame_lists/`, `annotations/`).
        mode: `"test"` (every keyframe, short side `test_crop_size`, no crop) or `"val"`.
        annotation_dir: overrides `data_dir/annotations`.
        groundtruth: ground-truth CSV; default `ava_val_v2.2.csv` in the annotations.
        exclusions: excluded timestamps CSV; default `ava_val_excluded_timestamps_v2.2.csv`
            in the annotations when present.
        labelmap: the evaluated classes (`.pbtxt`); default
            `ava_action_list_v2.2_for_activitynet_2019.pbtxt` in the annotations when present,
            else the 60-class AVA list shipped with the package.
        output_dir: if given, `detections.csv` (the official format) and `metrics.json` are
            written there atomically.
        num_frames: clip length; default the model's input length.
        sampling_rate: frame stride (2 for the 32x2 models).
        test_crop_size: short side of the clips (256 in the published protocol).
        full_test_on_val: with `"val"`, every second instead of every fourth.
        detection_score_thresh: minimum person-box score.
        batch_size: keyframes per model call (of one video).
        progress: draw a progress bar on stderr.
        **dataset_kwargs: more `ava_dataset` arguments (for example `video_dir`, `bgr`,
            `test_predict_box_lists`, `on_error`).

    Returns:
        An `AVADetectorEvaluation`.

    Example:
        >>> detector = keras_slowfast.SlowFastR101AVA(weights="ava")  # doctest: +SKIP
        >>> result = evaluate_ava_detector(detector, "ava", output_dir="out")  # doctest: +SKIP
        >>> print(f"{result.mean_ap:.4f}")  # doctest: +SKIP
    """
    from keras_slowfast.data import ava as ava_data

    if mode not in ("test", "val"):
        raise ValueError(f"`mode` must be 'test' or 'val'. Received: mode={mode!r}")
    if not hasattr(model, "predict_on_batch"):
        raise TypeError(f"`model` must be a Keras model. Received: model={model!r}")
    inputs = model.input
    if not isinstance(inputs, dict) or "boxes" not in inputs or "clip" not in inputs:
        raise ValueError(
            "`model` must be an AVA detector taking {'clip', 'boxes'}. "
            f"Received: model inputs={getattr(model, 'input_names', None) or inputs!r}"
        )
    if num_frames is None:
        num_frames = inputs["clip"].shape[1]
        if num_frames is None:
            raise ValueError("Pass `num_frames`: the model's clip length is not fixed.")
    ann_dir = annotation_dir or (
        os.path.join(os.fspath(data_dir), "annotations") if data_dir is not None else None
    )
    if ann_dir is None:
        raise ValueError("Give `data_dir` or `annotation_dir`. Received: data_dir=None")
    gt_path = _resolve(groundtruth, ann_dir, ava_data.DEFAULT_GROUNDTRUTH_FILE, "groundtruth")
    if gt_path is None:
        raise ValueError(
            f"No ground truth: pass `groundtruth` or put {ava_data.DEFAULT_GROUNDTRUTH_FILE} in "
            f"the annotations folder. Received: annotation_dir={ann_dir!r}"
        )
    excl_path = _resolve(exclusions, ann_dir, ava_data.DEFAULT_EXCLUSION_FILE, "exclusions")
    lm_path = _resolve(labelmap, ann_dir, ava_data.DEFAULT_LABEL_MAP_FILE, "labelmap")
    categories, class_ids = ava_eval.read_labelmap(
        lm_path if lm_path is not None else default_ava_labelmap()
    )

    ds = ava_data.ava_dataset(
        data_dir,
        mode,
        annotation_dir=annotation_dir,
        num_frames=num_frames,
        sampling_rate=sampling_rate,
        test_crop_size=test_crop_size,
        full_test_on_val=full_test_on_val,
        detection_score_thresh=detection_score_thresh,
        batch_size=batch_size,
        metadata=True,
        **dataset_kwargs,
    )
    ann = ds.annotations
    bar = ProgressBar(len(ann.keyframes), "evaluating", unit="keyframes", enabled=progress)
    if isinstance(model, LeanFunctional):
        # Its eager inference call is one cached, shape-relaxed tf.function: no trace per
        # batch or frame size, as `predict_on_batch` would make.
        forward = model
    else:
        forward = tf.function(model, autograph=False, reduce_retracing=True, jit_compile=False)
    scores, videos, seconds, boxes = [], [], [], []
    for batch_inputs, _, meta in ds:
        out = np.asarray(forward(batch_inputs, training=False), np.float32)
        num = meta["num_boxes"].numpy()
        ori = meta["ori_boxes"].numpy()
        for b in range(len(num)):
            n = int(num[b])
            scores.append(out[b, :n])
            boxes.append(ori[b, :n])
            videos += [ann.videos[int(meta["video_index"][b])]] * n
            seconds += [int(meta["second"][b])] * n
        bar.update(len(num))
    bar.close()
    if not scores:
        raise ValueError(
            "No keyframe could be scored (every clip failed to load). "
            f"Received: data_dir={data_dir!r}, mode={mode!r}"
        )
    scores = np.concatenate(scores)
    boxes = np.concatenate(boxes)
    seconds = np.asarray(seconds, np.int64)
    num_classes = scores.shape[1]
    keep = sorted(c for c in class_ids if c <= num_classes)
    rows = ava_eval.detections_from_predictions(videos, seconds, boxes, scores, keep)

    gt = ava_eval.read_csv(gt_path, class_whitelist=class_ids)
    if mode == "val" and not full_test_on_val:
        gt = ava_eval.AVABoxes(
            *({k: v for k, v in field.items() if int(k.rsplit(",", 1)[1]) % 4 == 0} for field in gt)
        )
    excluded = ava_eval.read_exclusions(excl_path) if excl_path is not None else None
    metrics = ava_eval.evaluate_ava(
        (gt.boxes, gt.labels), rows, (categories, class_ids), excluded_timestamps=excluded
    )
    if output_dir is not None:
        text = io.StringIO()
        ava_eval.write_csv(rows, text)
        write_text_atomically(os.path.join(output_dir, "detections.csv"), text.getvalue())
        write_text_atomically(
            os.path.join(output_dir, "metrics.json"), json.dumps(_json_safe(metrics), indent=2)
        )
    return AVADetectorEvaluation(metrics, rows, scores, videos, seconds, boxes)
