"""Plain functions shared by several test files (the shared fixtures are in conftest.py).

- :func:`softmax`: the NumPy softmax oracle (float64 in, float64 out).
- :func:`keras_layout`: a golden fixture's `(N, C, T, H, W)` array as a Keras clip.
- :func:`golden_detector_inputs`: a golden AVA fixture's box rows as padded Keras boxes.
- :func:`forward`: a model's inference outputs, run op by op without tracing a graph.
- `NARROW_ARGS`: the builder arguments of the narrow test network.
"""

import keras
import numpy as np

__all__ = ["NARROW_ARGS", "forward", "golden_detector_inputs", "keras_layout", "softmax"]

# The narrow network of the builder tests (conftest's `narrow_model`): width 8, 5 classes,
# 8 frames of 64x64.
NARROW_ARGS = dict(width_per_group=8, classes=5, input_shape=(8, 64, 64, 3), num_frames=8)


def softmax(x):
    """Softmax over the last axis, computed in NumPy independently of the package."""
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def keras_layout(x):
    """(N, C, T, H, W) -> (N, T, H, W, C) float32: a golden input as a Keras clip."""
    return np.transpose(np.asarray(x, np.float32), (0, 2, 3, 4, 1))


def golden_detector_inputs(io, extra_slots=0):
    """A golden AVA fixture's inputs as the Keras detector takes them.

    `train_crop/boxes` holds rows `[batch_index, x1, y1, x2, y2]` in pixels of the input;
    the detector takes per-clip slots of normalised boxes, zero rows for padding.

    Args:
        io: the fixture's loaded `io.npz`.
        extra_slots: padding slots added after the busiest clip's boxes.

    Returns:
        `({"clip": ..., "boxes": ...}, slots)`, where `slots[i]` is the `(clip, slot)` of
        the i-th box row, so that `out[slots[i]]` is the row's score.
    """
    clip = keras_layout(io["train_crop/fast"])
    rows = io["train_crop/boxes"]
    batch, height, width = clip.shape[0], clip.shape[2], clip.shape[3]
    counts = [int((rows[:, 0] == b).sum()) for b in range(batch)]
    boxes = np.zeros((batch, max(counts) + extra_slots, 4), np.float32)
    filled = [0] * batch
    slots = []
    for row in rows:
        b = int(row[0])
        boxes[b, filled[b]] = row[1:] / np.array([width, height, width, height], np.float32)
        slots.append((b, filled[b]))
        filled[b] += 1
    return {"clip": clip, "boxes": boxes}, slots


def forward(model, inputs):
    """`model`'s inference outputs (NumPy, same structure), run op by op.

    `predict`, `predict_on_batch` and the package models' compiled eager calls first trace
    a `tf.function` of the whole graph, which for the narrow test models costs several
    times the forward pass itself (and again for every new input shape). Op by op, the same
    layers and weights give the same outputs (to float32 rounding) without any trace. The
    package's models (`LeanFunctional`) run through their own graph runner, with their
    documented `compile_eager_inference` switch off for the call; any other model (a probe
    over some layers' outputs) through Keras' own.
    """
    compiled = getattr(model, "compile_eager_inference", None)
    if compiled is not None:
        model.compile_eager_inference = False
    try:
        outputs = model(inputs, training=False)
    finally:
        if compiled is not None:
            model.compile_eager_inference = compiled
    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)
