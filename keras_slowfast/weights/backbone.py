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

import dataclasses
import os
import re

import keras
import numpy as np

from keras_slowfast.weights.loading import (
    CHECKPOINT_SUFFIXES,
    CheckpointMismatchError,
    _weight_specs,
    checkpoint_to_pyslowfast_state,
    convert_state,
)

__all__ = ["DETECTOR_BACKBONES", "BackboneLoadReport", "load_classifier_backbone"]

#: Classifier variants whose backbone fits each detector variant, preferred first. The
#: R101_50_50 detector has non-local blocks after res4 blocks 6, 13, 20 like the NLN
#: classifier (their pooling differs but has no weights); the published Kinetics-400
#: R101_50_50 classifier has none, so its detector needs `new_layers=("nonlocal",)`.
DETECTOR_BACKBONES = {
    "ava_slowfast_32x2_r101_50_50": ("slowfast_nln_16x8_r101_50_50", "slowfast_16x8_r101_50_50"),
    "ava_slowfast_r50_detection": ("slowfast_8x8_r50",),
}

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


def _state_of_model(model):
    """PySlowFast-keyed tensors of a Keras SlowFast model (the inverse of loading)."""
    state = {}
    for weight, key, transform in _weight_specs(model):
        value = keras.ops.convert_to_numpy(weight.value)
        if transform is not None:
            value = np.transpose(value, np.argsort(transform))
        state[key] = value
    return state


def _detector_width(detector):
    try:
        return int(detector.get_layer("s1_pathway0_stem_conv").kernel.shape[-1])
    except ValueError:
        return None


def _classifier_for(detector, classifier, weights):
    if classifier is not None:
        from keras_slowfast.models.variants import VARIANTS

        if VARIANTS.get(classifier, {}).get("kind") != "classifier":
            names = sorted(k for k, v in VARIANTS.items() if v["kind"] == "classifier")
            raise ValueError(
                f"`classifier` must be one of {names}. Received: classifier={classifier!r}"
            )
        return [classifier]
    candidates = DETECTOR_BACKBONES.get(detector.name)
    if candidates is None:
        raise ValueError(
            "Give `classifier` (the classifier variant of the weights) for a detector named "
            f"{detector.name!r}: its backbone classifier is known only for "
            f"{sorted(DETECTOR_BACKBONES)}. Received: weights={weights!r}, classifier=None"
        )
    return list(candidates)


def _read_state(detector, weights, classifier, classifier_kwargs):
    """`(state, description)` of `weights`: PySlowFast keys -> NumPy arrays."""
    from keras_slowfast.weights import registry

    if isinstance(weights, keras.Model):
        return _state_of_model(weights), f"model {weights.name!r}"
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
        model = registry.build(variant, weights=weights, **kwargs)
        return _state_of_model(model), f"{weights} ({variant})"
    candidates = _classifier_for(detector, classifier, weights)
    for variant in candidates:
        if weights in registry.available_weights(variant):
            # Published weights fix the width and the class count.
            model = registry.build(variant, weights=weights)
            return _state_of_model(model), f"{variant} {weights!r} weights"
    names = sorted({n for v in candidates for n in registry.available_weights(v)})
    raise ValueError(
        f"`weights` must be a checkpoint path or one of the published names of "
        f"{candidates} ({names}). Received: weights={weights!r}"
    )


def _layer_of(weight):
    parts = weight.path.split("/")
    return parts[-2] if len(parts) > 1 else parts[0]


def load_classifier_backbone(
    detector, weights, *, classifier=None, classifier_kwargs=None, new_layers=()
):
    """Loads a classifier's backbone into a detector; the detector's RoI head stays new.

    Args:
        detector: a detector built by :func:`keras_slowfast.SlowFastDetector` or a
            detector variant (e.g. `keras_slowfast.SlowFastR101AVA`).
        weights: the classifier's weights: a PySlowFast `.pyth` (any PyTorch `.pth`/`.pt`),
            a Caffe2 `.pkl`, a PyTorchVideo `.pyth`, a Keras `.weights.h5` of a classifier
            variant, a published name such as `"k400"`, or a Keras classifier model.
        classifier: the classifier variant (a key of
            `keras_slowfast.models.VARIANTS`) for `.weights.h5` files and published names;
            default: the first of `DETECTOR_BACKBONES[detector.name]` that has the weights.
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

    specs = _weight_specs(detector)
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
