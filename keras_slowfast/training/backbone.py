"""Initialising an action detector from a Kinetics classifier: the backbone only, strictly.

PySlowFast trains its AVA detectors from Kinetics classifier checkpoints
(`TRAIN.CHECKPOINT_FILE_PATH`): the SlowFast backbone of the detector (stem, res2..res5,
lateral connections, non-local blocks) takes the classifier's tensors and the RoI head
starts from its initialiser. :func:`load_classifier_backbone` does the same with strict
accounting: every backbone weight of the detector receives a checkpoint tensor of the same
shape, every backbone tensor of the checkpoint is used, and only the classifier's head
(`head.projection.*`) is left out, reported as skipped. A shape mismatch is an error that
names the checkpoint tensor and the Keras weight with both shapes.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import keras

from keras_slowfast import hub, presets
from keras_slowfast.weights.transfer import (
    CHECKPOINT_SUFFIXES,
    CheckpointMismatchError,
    checkpoint_to_pyslowfast_state,
    convert_state,
    model_state,
    weight_specs,
)

__all__ = ["BackboneLoadReport", "load_classifier_backbone"]

_HEAD_PREFIX = "head."


@dataclasses.dataclass
class BackboneLoadReport:
    """What :func:`load_classifier_backbone` did.

    Attributes:
        source: a description of the weights read.
        loaded: paths of the detector weights that received a checkpoint tensor.
        new: paths of the detector weights left as initialised (the RoI head, and layers
            matched by `new_layers`).
        skipped: checkpoint tensors not used (the classifier's head, and the tensors of
            `new_layers`).

    Example:
        >>> report = BackboneLoadReport(
        ...     "a classifier", ["s1_pathway0_stem_conv/kernel"], ["head_projection/kernel"],
        ...     ["head.projection.weight"])
        >>> print(report)  # doctest: +NORMALIZE_WHITESPACE
        Loaded 1 backbone weights from a classifier; new: head_projection/kernel;
        skipped checkpoint tensors: head.projection.weight
    """

    source: str
    loaded: list
    new: list
    skipped: list

    def __str__(self):
        return (
            f"Loaded {len(self.loaded)} backbone weights from {self.source}; "
            f"new: {', '.join(self.new) or 'none'}; "
            f"skipped checkpoint tensors: {', '.join(self.skipped) or 'none'}"
        )


def _detector_width(detector):
    try:
        return int(detector.get_layer("s1_pathway0_stem_conv").kernel.shape[-1])
    except ValueError:
        return None


def _classifier_for(detector, classifier, weights):
    """The classifier presets whose backbone may fit `detector`, preferred first."""
    if classifier is not None:
        try:
            return [presets.get_preset(classifier, kind=presets.CLASSIFIER).name]
        except ValueError:
            raise ValueError(
                "`classifier` must be a classifier preset or architecture, one of "
                f"{presets.architecture_names(presets.CLASSIFIER)} or their presets. "
                f"Received: classifier={classifier!r}"
            ) from None
    try:
        # Detectors built from a preset are named after its architecture.
        candidates = presets.get_preset(detector.name, kind=presets.DETECTOR).backbone_of
    except ValueError:
        candidates = ()
    if not candidates:
        raise ValueError(
            "Give `classifier` (the classifier preset of the weights) for a detector named "
            f"{detector.name!r}: its backbone classifier is known only for the detector "
            f"presets {presets.preset_names(presets.DETECTOR)}. Received: "
            f"weights={weights!r}, classifier=None"
        )
    return list(candidates)


def _read_state(detector, weights, classifier, classifier_kwargs):
    """`(state, description)` of `weights`: PySlowFast keys -> NumPy arrays."""
    if isinstance(weights, keras.Model):
        return model_state(weights), f"model {weights.name!r}"
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str) or not weights:
        raise TypeError(
            "`weights` must be a checkpoint path (.pyth, .pkl, .pth, .pt, .weights.h5), a "
            f"published weights name such as 'k400', or a keras.Model. Received: "
            f"weights={weights!r}"
        )
    if weights.endswith(CHECKPOINT_SUFFIXES):
        if not os.path.isfile(weights):
            raise ValueError(f"No checkpoint file at this path. Received: weights={weights!r}")
        state, _ = checkpoint_to_pyslowfast_state(weights)
        return state, weights
    if weights.endswith(".weights.h5"):
        kwargs = dict(classifier_kwargs or {})
        kwargs.pop("weights", None)
        if not os.path.isfile(weights):
            raise ValueError(f"No weights file at this path. Received: weights={weights!r}")
        variant = _classifier_for(detector, classifier, weights)[0]
        width = _detector_width(detector)
        if width is not None:
            kwargs.setdefault("width_per_group", width)
        kwargs.setdefault("classes", 400)
        model = hub.build(variant, weights=weights, **kwargs)
        return model_state(model), f"{weights} ({variant})"
    candidates = _classifier_for(detector, classifier, weights)
    for name in candidates:
        architecture = presets.get_preset(name).architecture
        if weights in presets.weights_names(architecture):
            # Published weights fix the width and the class count.
            model = hub.build(architecture, weights=weights)
            return model_state(model), f"{architecture} {weights!r} weights"
    names = sorted(
        {n for c in candidates for n in presets.weights_names(presets.get_preset(c).architecture)}
    )
    raise ValueError(
        f"`weights` must be a checkpoint path or one of the published names of "
        f"{candidates} ({names}). Received: weights={weights!r}"
    )


def _layer_of(weight):
    parts = weight.path.split("/")
    return parts[-2] if len(parts) > 1 else parts[0]


def load_classifier_backbone(
    detector: keras.Model,
    weights: str | os.PathLike | keras.Model,
    *,
    classifier: str | None = None,
    classifier_kwargs: Mapping[str, Any] | None = None,
    new_layers: Iterable[str] = (),
) -> BackboneLoadReport:
    """Loads a classifier's backbone into a detector; the detector's RoI head stays new.

    Args:
        detector: a detector built by :func:`keras_slowfast.SlowFastDetector` or a
            detector variant (e.g. `keras_slowfast.SlowFastR101AVA`).
        weights: the classifier's weights: a PySlowFast `.pyth` (any PyTorch `.pth`/`.pt`),
            a Caffe2 `.pkl`, a PyTorchVideo `.pyth`, a Keras `.weights.h5` of a classifier
            variant, a published name such as `"k400"`, or a Keras classifier model.
        classifier: the classifier preset or architecture (see
            :func:`keras_slowfast.list_presets`) for `.weights.h5` files and published
            names; default: the first of the detector preset's `backbone_of` rows that has
            the weights.
        classifier_kwargs: builder arguments of that classifier for a `.weights.h5` file
            (default: the detector's `width_per_group` and 400 classes); not used otherwise
            (checkpoints and published weights carry their width and class count).
        new_layers: regular expressions searched in the detector's layer names; matching
            layers keep their initial weights too (e.g. `("nonlocal",)` when the
            classifier has no non-local blocks), and their checkpoint tensors, if any, are
            skipped.

    Returns:
        A :class:`BackboneLoadReport`.

    Raises:
        CheckpointMismatchError: when a backbone weight finds no tensor, a backbone tensor
            is left unused, or shapes differ (both sides are named). Nothing is assigned
            then.

    Example:
        >>> import keras_slowfast
        >>> classifier = keras_slowfast.SlowFastR50(width_per_group=8, classes=10)
        >>> detector = keras_slowfast.SlowFastR50AVA(width_per_group=8)
        >>> report = load_classifier_backbone(detector, classifier)
        >>> report.new, report.skipped
        (['head_projection/kernel', 'head_projection/bias'], ['head.projection.bias', \
'head.projection.weight'])
    """
    if not isinstance(detector, keras.Model):
        raise TypeError(
            f"`detector` must be a keras.Model. Received: detector={type(detector).__name__}"
        )
    if not isinstance(detector.input, dict) or "boxes" not in detector.input:
        raise ValueError(
            "`detector` must be a detector taking {'clip', 'boxes'}. Received: "
            f"detector={detector.name!r}"
        )
    if isinstance(new_layers, str):
        new_layers = (new_layers,)
    try:
        new_regex = re.compile("|".join(f"(?:{p})" for p in new_layers)) if new_layers else None
    except (TypeError, re.error) as e:
        raise ValueError(
            f"`new_layers` must be regular expressions ({e}). Received: new_layers={new_layers!r}"
        ) from None
    state, source = _read_state(detector, weights, classifier, classifier_kwargs)

    specs = weight_specs(detector)
    backbone, new, new_modules = [], [], set()
    for spec in specs:
        weight, key, _ = spec
        if key.startswith(_HEAD_PREFIX) or (
            new_regex is not None and new_regex.search(_layer_of(weight))
        ):
            new.append(weight.path)
            new_modules.add(key.rsplit(".", 1)[0])
        else:
            backbone.append(spec)
    skipped = sorted(
        k for k in state if k.startswith(_HEAD_PREFIX) or k.rsplit(".", 1)[0] in new_modules
    )
    skipped_set = set(skipped)
    backbone_state = {k: v for k, v in state.items() if k not in skipped_set}
    try:
        pairs = convert_state(backbone_state, backbone)
    except CheckpointMismatchError as e:
        hint = ""
        if "nonlocal" in str(e) and not new_layers:
            hint = (
                "\nIf the classifier has no non-local blocks, pass new_layers=('nonlocal',) "
                "to train the detector's from scratch."
            )
        raise CheckpointMismatchError(
            f"The backbone of {source} does not match the detector {detector.name!r}.\n{e}{hint}"
        ) from None
    for weight, value in pairs:
        weight.assign(value)
    return BackboneLoadReport(
        source=source,
        loaded=[w.path for w, _ in pairs],
        new=new,
        skipped=[k for k in skipped if not k.endswith(".num_batches_tracked")],
    )
