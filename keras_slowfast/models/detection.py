"""SlowFast AVA action detector: the backbone with a RoIAlign head, in plain TensorFlow."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_slowfast._checks import check_positive_int
from keras_slowfast.models.functional import LeanFunctional
from keras_slowfast.models.layers import MaskPaddedBoxes, NormalizedBoxesToPixels, TemporalMean
from keras_slowfast.models.roi_align import RoIAlign
from keras_slowfast.models.slowfast import (
    HEAD_DTYPE,
    Backbone,
    backbone_features,
    check_dtype,
    check_head_arguments,
    check_input_shape,
    dtype_policy_scope,
    load_keras_weights,
    pathway_inputs,
)

__all__ = ["DETECTOR_BACKBONE", "SlowFastDetector"]

#: The detector's default backbone: PySlowFast's AVA settings on the 8x8 R50, res5 at
#: spatial stride 1 with dilation 2 (features at stride 16 for the RoI head).
DETECTOR_BACKBONE = Backbone(
    fusion_kernel_size=7, spatial_strides=(1, 2, 2, 1), spatial_dilations=(1, 1, 1, 2)
)


def SlowFastDetector(
    backbone: Backbone | None = None,
    *,
    aligned: bool = True,
    roi_resolution: int = 7,
    spatial_scale_factor: int = 16,
    dtype: str | keras.DTypePolicy | None = None,
    weights: str | os.PathLike | None = None,
    input_shape: Sequence[int | None] | None = None,
    max_boxes: int | None = None,
    classes: int = 80,
    classifier_activation: str | Callable[..., Any] | None = "sigmoid",
    include_preprocessing: bool = True,
    dropout_rate: float = 0.5,
    name: str | None = None,
    **backbone_settings: Any,
) -> keras.Model:
    """Builds a SlowFast action detector (PySlowFast's AVA model) as a Keras model.

    The backbone is :func:`keras_slowfast.SlowFast`'s, usually with res5 at spatial stride 1
    and dilation 2 (features at stride 16). The head, per pathway, averages the features over
    time, pools a `roi_resolution` grid from every box with :class:`RoIAlign`
    (`spatial_scale = 1 / spatial_scale_factor`, adaptive sampling) and max-pools it; the
    pathways are concatenated, dropped out, projected and passed through a sigmoid.

    Inputs are a dict: `"clip"` `(batch, num_frames, H, W, 3)` and `"boxes"`
    `(batch, max_boxes, 4)` as `[x1, y1, x2, y2]` normalised to [0, 1] of the clip's frame;
    all-zero rows are padding. The output `(batch, max_boxes, classes)` holds the scores,
    zero for padding rows.

    Args:
        backbone: a :class:`keras_slowfast.models.Backbone`; `None` takes
            :data:`DETECTOR_BACKBONE` (fusion kernel 7, res5 at stride 1 and dilation 2).
        **backbone_settings: fields of the backbone overriding those of `backbone`, as in
            :func:`keras_slowfast.SlowFast`.
        dtype: the dtype policy of the backbone, as in :func:`keras_slowfast.SlowFast`; the
            head (RoIAlign, pooling, projection, sigmoid) always computes in float32.
        aligned: RoIAlign's pixel model: True shifts boxes by -0.5 px (detectron2
            `aligned=True`); the released Caffe2 AVA model uses False.
        roi_resolution: RoIAlign output size (7).
        spatial_scale_factor: the stride of the res5 features (16).
        weights: `None` or the path of a Keras `.weights.h5` file (checkpoints and published
            weights load through :func:`keras_slowfast.from_preset` and the loaders).
        input_shape: the clip's `(frames, height, width, 3)`; default
            `(num_frames, None, None, 3)`.
        max_boxes: static number of box slots, or `None` (any).
        classes: number of action classes (80 for AVA).
        classifier_activation: `"sigmoid"` (default) or `None` for logits.
        include_preprocessing: the model takes RGB in [0, 255] and normalises it itself.
        dropout_rate: dropout before the projection (training only).
        name: model name.

    Returns:
        A `keras.Model`.

    Example:
        >>> model = SlowFastDetector(width_per_group=8, classes=10)
        >>> sorted(model.input.keys()) if isinstance(model.input, dict) else None
        ['boxes', 'clip']
    """
    spec = Backbone.from_settings(backbone, backbone_settings, default=DETECTOR_BACKBONE)
    cfg = spec.resolved()
    check_head_arguments(classes, dropout_rate)
    roi_resolution = check_positive_int("roi_resolution", roi_resolution)
    spatial_scale_factor = check_positive_int("spatial_scale_factor", spatial_scale_factor)
    max_boxes = check_positive_int("max_boxes", max_boxes, allow_none=True)
    input_shape = check_input_shape(input_shape, spec.num_frames)
    dtype = check_dtype(dtype)

    clip = keras.Input(shape=input_shape, name="clip")
    boxes = keras.Input(shape=(max_boxes, 4), name="boxes")
    with dtype_policy_scope(dtype):
        features = backbone_features(pathway_inputs(clip, cfg, include_preprocessing), cfg)
    pixel_boxes = NormalizedBoxesToPixels(name="head_boxes_to_pixels", dtype=HEAD_DTYPE)(
        [clip, boxes]
    )
    pooled = []
    for p, f in enumerate(features):
        f = TemporalMean(name=f"head_pathway{p}_tpool", dtype=HEAD_DTYPE)(f)
        r = RoIAlign(
            output_size=roi_resolution,
            spatial_scale=1.0 / spatial_scale_factor,
            sampling_ratio=0,
            aligned=aligned,
            name=f"head_pathway{p}_roi",
            dtype=HEAD_DTYPE,
        )(f, pixel_boxes)
        # Max over each box's grid. Not TimeDistributed: in a traced graph with an unknown
        # number of boxes, Keras' TimeDistributed maps over the batch size instead.
        r = keras.layers.MaxPooling3D(
            (1, roi_resolution, roi_resolution), name=f"head_pathway{p}_spool", dtype=HEAD_DTYPE
        )(r)
        pooled.append(
            keras.layers.Reshape(
                (-1, r.shape[-1]), name=f"head_pathway{p}_spool_flat", dtype=HEAD_DTYPE
            )(r)
        )
    x = pooled[0]
    if len(pooled) > 1:
        x = keras.layers.Concatenate(name="head_concat", dtype=HEAD_DTYPE)(pooled)
    if dropout_rate:
        x = keras.layers.Dropout(dropout_rate, name="head_dropout", dtype=HEAD_DTYPE)(x)
    x = keras.layers.Dense(
        classes,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="head_projection",
        dtype=HEAD_DTYPE,
    )(x)
    if classifier_activation is not None:
        x = keras.layers.Activation(classifier_activation, name="head_act", dtype=HEAD_DTYPE)(x)
    outputs = MaskPaddedBoxes(name="head_mask_padding", dtype=HEAD_DTYPE)([x, boxes])
    if name is None:
        name = "slowfast_detector"
    model = LeanFunctional({"clip": clip, "boxes": boxes}, outputs, name=name)
    return load_keras_weights(model, weights)
