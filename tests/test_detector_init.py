"""A detector initialised from a Kinetics classifier: backbone loaded strictly, RoI head new.

The narrow golden classifiers stand in for the Kinetics-400 checkpoints. The oracle is the
checkpoint read independently: the Caffe2 `.pkl` is opened here with plain `pickle` (it is
our own fixture) and every loaded backbone weight, put back in PyTorch layout, must be one
of its blobs, each blob used once, with the blob's kind (`_w`, `_s`, `_b`, `_rm`, `_riv`)
and pathway (`t_` prefix) matching the Keras weight.
"""

import pickle
import re

import keras
import numpy as np
import pytest

from keras_slowfast import hub as registry
from keras_slowfast import training
from keras_slowfast.hub import load_pyslowfast
from keras_slowfast.weights.transfer import CheckpointMismatchError

R101_DETECTOR = "ava_slowfast_32x2_r101_50_50"
R50_DETECTOR = "ava_slowfast_r50_detection"
# The narrow classifier whose backbone has the R101 detector's shapes: non-local blocks
# after res4 blocks 6, 13, 20, temporal kernels in the first 6 res4 blocks, fusion kernel 5.
NLN_CLASSIFIER = "slowfast_nln_16x8_r101_50_50"

_KIND = {"kernel": "w", "gamma": "s", "beta": "b", "moving_mean": "rm", "moving_variance": "riv"}


def _detector(variant=R101_DETECTOR, **kwargs):
    return registry.build(variant, width_per_group=8, classes=80, **kwargs)


def _blobs(golden, folder):
    with open(golden / "models" / folder / "caffe2.pkl", "rb") as f:
        blobs = pickle.load(f, encoding="latin1")["blobs"]
    return {
        k: np.asarray(v)
        for k, v in blobs.items()
        if not re.fullmatch(r"lr|model_iter|.*_momentum", k)
    }


def _torch_layout(weight):
    value = keras.ops.convert_to_numpy(weight.value)
    return np.transpose(value, (4, 3, 0, 1, 2)) if value.ndim == 5 else value


def _weights(model):
    return {w.path: keras.ops.convert_to_numpy(w.value).copy() for w in model.weights}


def _head_paths(model):
    return {w.path for w in model.get_layer("head_projection").weights}


def _assert_backbone_is_blobs(detector, blobs):
    """Every non-head weight equals exactly one blob of the right kind and pathway."""
    by_value = {}
    for name, value in blobs.items():
        if name.startswith("pred_"):
            continue
        by_value.setdefault((value.shape, value.tobytes()), []).append(name)
    used = set()
    for w in detector.weights:
        if w.path in _head_paths(detector):
            continue
        names = by_value.get((_torch_layout(w).shape, _torch_layout(w).tobytes()), [])
        assert len(names) == 1, (w.path, names)
        name = names[0]
        layer, short = w.path.split("/")[-2:]
        kind = "b" if short == "bias" else _KIND[short]
        assert name.endswith(f"_{kind}"), (w.path, name)
        fast = "pathway1" in layer or "_fuse_" in layer
        assert name.startswith("t_") == fast, (w.path, name)
        assert name not in used, name
        used.add(name)
    head_blobs = {n for n in blobs if n.startswith("pred_")}
    assert used | head_blobs == set(blobs), sorted(set(blobs) - used - head_blobs)[:5]


@pytest.fixture(scope="module")
def nln_blobs(golden):
    return _blobs(golden, NLN_CLASSIFIER)


@pytest.fixture(scope="module")
def fresh_detector():
    """`fresh_detector(variant)`: the module's narrow detector of `variant`, built once, with
    every weight first set to new random values (no checkpoint's, and not those an earlier
    test loaded into it)."""
    built = {}
    rng = np.random.default_rng(0)

    def get(variant=R101_DETECTOR):
        if variant not in built:
            built[variant] = _detector(variant)
        model = built[variant]
        for weight in model.weights:
            weight.assign(rng.normal(size=weight.shape).astype(weight.dtype))
        return model

    return get


def test_classifier_backbone_from_caffe2_is_the_checkpoint(golden, nln_blobs, fresh_detector):
    detector = fresh_detector()
    before = _weights(detector)
    report = training.load_classifier_backbone(
        detector, golden / "models" / NLN_CLASSIFIER / "caffe2.pkl"
    )
    _assert_backbone_is_blobs(detector, nln_blobs)
    # A few pairs named by hand (Caffe2 blob -> Keras weight).
    pairs = {
        "conv1_w": "s1_pathway0_stem_conv/kernel",
        "t_pool1_subsample_w": "s1_fuse_conv_f2s/kernel",
        "nonlocal_conv4_13_theta_w": "s4_pathway0_nonlocal13_conv_theta/kernel",
        "nonlocal_conv4_20_out_b": "s4_pathway0_nonlocal20_conv_out/bias",
        "res4_22_branch2b_bn_rm": "s4_pathway0_res22_branch2_b_bn/moving_mean",
        "t_res5_2_branch2c_bn_riv": "s5_pathway1_res2_branch2_c_bn/moving_variance",
    }
    weights = {w.path: w for w in detector.weights}
    for blob, path in pairs.items():
        np.testing.assert_array_equal(_torch_layout(weights[path]), nln_blobs[blob])
    # The RoI head is untouched; the classifier's head is reported as skipped.
    for path in _head_paths(detector):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weights[path].value), before[path])
    assert sorted(report.new) == sorted(_head_paths(detector))
    assert report.skipped == ["head.projection.bias", "head.projection.weight"]
    assert len(report.loaded) == len(detector.weights) - 2
    assert "skipped checkpoint tensors: head.projection.bias" in str(report)


def test_pyslowfast_pyth_loads_the_same_backbone(golden, nln_blobs, fresh_detector):
    detector = fresh_detector()
    training.load_classifier_backbone(
        detector, golden / "models" / NLN_CLASSIFIER / "pyslowfast.pyth"
    )
    _assert_backbone_is_blobs(detector, nln_blobs)


def test_keras_classifier_weights_file_and_model(golden, tmp_path, fresh_detector):
    r50_blobs = _blobs(golden, "slowfast_8x8_r50")
    classifier = load_pyslowfast(golden / "models" / "slowfast_8x8_r50" / "pyslowfast.pyth")
    path = str(tmp_path / "classifier.weights.h5")
    classifier.save_weights(path)
    detector = fresh_detector(R50_DETECTOR)
    report = training.load_classifier_backbone(detector, path, classifier_kwargs={"classes": 10})
    _assert_backbone_is_blobs(detector, r50_blobs)
    assert report.source == f"{path} (slowfast_8x8_r50_kinetics400)"
    other = fresh_detector(R50_DETECTOR)
    training.load_classifier_backbone(other, classifier)
    _assert_backbone_is_blobs(other, r50_blobs)


def test_r50_detector_from_r50_classifiers(golden, fresh_detector):
    detector = fresh_detector(R50_DETECTOR)
    training.load_classifier_backbone(
        detector, golden / "models" / "slowfast_8x8_r50" / "caffe2.pkl"
    )
    _assert_backbone_is_blobs(detector, _blobs(golden, "slowfast_8x8_r50"))
    # A PyTorchVideo hub checkpoint of the same architecture loads strictly too.
    report = training.load_classifier_backbone(
        detector, golden / "models" / "ptv_slowfast_r50" / "pytorchvideo.pyth"
    )
    assert report.skipped == ["head.projection.bias", "head.projection.weight"]


def test_classifier_without_nonlocal_blocks(golden, fresh_detector):
    """The plain R101_50_50 classifier lacks the detector's non-local blocks: an error that
    lists them, unless they are declared new."""
    path = golden / "models" / "slowfast_16x8_r101_50_50" / "caffe2.pkl"
    detector = fresh_detector()
    before = _weights(detector)
    with pytest.raises(CheckpointMismatchError) as info:
        training.load_classifier_backbone(detector, path)
    message = str(info.value)
    assert "36 Keras weights found no checkpoint tensor" in message
    assert "s4.pathway0_nonlocal6.conv_theta.weight" in message
    assert "new_layers=('nonlocal',)" in message
    after = _weights(detector)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # nothing assigned

    report = training.load_classifier_backbone(detector, path, new_layers=("nonlocal",))
    nonlocal_paths = [w.path for w in detector.weights if "nonlocal" in w.path]
    assert len(nonlocal_paths) == 36
    assert sorted(report.new) == sorted(nonlocal_paths + list(_head_paths(detector)))
    after = _weights(detector)
    for p in nonlocal_paths:
        np.testing.assert_array_equal(after[p], before[p])
    blobs = _blobs(golden, "slowfast_16x8_r101_50_50")
    np.testing.assert_array_equal(
        _torch_layout(detector.get_layer("s4_pathway0_res5_branch2_a").kernel),
        blobs["res4_5_branch2a_w"],
    )


def test_shape_mismatch_names_both_sides(golden, fresh_detector):
    # SLOWFAST_8x8_R101 has temporal kernels in all 23 res4 blocks, the detector in 6.
    detector = fresh_detector()
    before = _weights(detector)
    with pytest.raises(CheckpointMismatchError) as info:
        training.load_classifier_backbone(
            detector, golden / "models" / "slowfast_8x8_r101" / "pyslowfast.pyth"
        )
    message = str(info.value)
    assert (
        "checkpoint s4.pathway0_res6.branch2.a.weight has shape (32, 128, 3, 1, 1) "
        "(as Keras: (3, 1, 1, 128, 32)), Keras s4_pathway0_res6_branch2_a/kernel has shape "
        "(1, 1, 1, 128, 32)"
    ) in message
    assert "does not match the detector 'ava_slowfast_32x2_r101_50_50'" in message
    after = _weights(detector)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_published_name_through_the_registry(golden, served, fresh_detector):
    """`"k400"` resolves to the classifier that fits the detector (served locally)."""
    detector = fresh_detector(R50_DETECTOR)
    report = training.load_classifier_backbone(detector, "k400")
    assert report.source == "slowfast_8x8_r50 'k400' weights"
    _assert_backbone_is_blobs(detector, _blobs(golden, "slowfast_8x8_r50"))


@pytest.mark.large  # over the default suite's time budget
def test_published_r101_name_needs_new_nonlocal_blocks(golden, served):
    # The published R101_50_50 classifier has no non-local blocks.
    detector = _detector()
    with pytest.raises(CheckpointMismatchError, match="new_layers"):
        training.load_classifier_backbone(detector, "kinetics400")
    report = training.load_classifier_backbone(detector, "k400", new_layers="nonlocal")
    assert report.source == "slowfast_16x8_r101_50_50 'k400' weights"
    assert len(report.new) == 38


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(weights=3), TypeError, "Received: weights=3"),
        (dict(weights="missing.pyth"), ValueError, "Received: weights='missing.pyth'"),
        (dict(weights="missing.weights.h5"), ValueError, "No weights file"),
        (dict(weights="imagenet"), ValueError, r"published names of .*Received: weights="),
        (dict(weights="k400", classifier="ava"), ValueError, "Received: classifier='ava'"),
        (dict(weights="k400", new_layers=["("]), ValueError, "Received: new_layers="),
    ],
)
def test_bad_arguments(kwargs, error, match, fresh_detector):
    detector = fresh_detector(R50_DETECTOR)
    with pytest.raises(error, match=match):
        training.load_classifier_backbone(detector, **kwargs)


def test_a_classifier_is_not_a_detector():
    classifier = registry.build("slowfast_8x8_r50", width_per_group=8, classes=10)
    with pytest.raises(ValueError, match="Received: detector='slowfast_8x8_r50'"):
        training.load_classifier_backbone(classifier, classifier)


# Covered by test_doctests.py::test_docstring_examples[keras_slowfast.training.backbone], which
# runs the same examples (and test_public_name_has_example, that they exist) by default.
@pytest.mark.large
def test_docstring_examples():
    import doctest

    from keras_slowfast.training import backbone

    result = doctest.testmod(backbone, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
