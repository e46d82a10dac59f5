"""Export to ONNX, OpenVINO and TensorFlow Lite, run on each runtime against Keras.

The narrow golden checkpoints (real weights of the published architectures, loaded with
`load_pyslowfast`) are exported and fed the golden inputs, normalised as the models built
with `include_preprocessing=False` expect. Each runtime's probabilities are compared with
the Keras model's and with the reference's float64 outputs in the fixtures (the independent
oracle). Every test skips when its runtime's optional package is absent.
"""

import doctest
import os
import sys

import numpy as np
import pytest

import keras_slowfast as ks
from keras_slowfast import cli
from keras_slowfast import export as export_module
from keras_slowfast import hub as registry
from keras_slowfast.inference import video_views

CLASSIFIER = "slowfast_8x8_r50"
DETECTOR = "ava_slowfast_32x2_r101_50_50"
TOL = 1e-4


def _nthwc(x):
    """(N, C, T, H, W) float16 -> (N, T, H, W, C) float32."""
    return np.transpose(np.asarray(x, np.float32), (0, 2, 3, 4, 1))


def _normalise(clips):
    return ((clips.astype(np.float32) / 255.0 - 0.45) / 0.225).astype(np.float32)


@pytest.fixture(scope="module")
def classifier(golden):
    folder = golden / "models" / CLASSIFIER
    model = ks.load_pyslowfast(folder / "pyslowfast.pyth", include_preprocessing=False)
    io = np.load(folder / "io.npz")
    # train_crop is the 64x64 training crop; test_crop is 96x96, i.e. another height and
    # width than the first call: the exported graphs must take both.
    inputs = {crop: _nthwc(io[f"{crop}/fast"]) for crop in ("train_crop", "test_crop")}
    expected = {crop: io[f"{crop}/output"].astype(np.float64) for crop in inputs}
    keras_out = {crop: np.asarray(model.predict_on_batch(x)) for crop, x in inputs.items()}
    return model, inputs, keras_out, expected


def _padded_boxes(rows, batch, height, width):
    """The fixture's `[batch_index, x1, y1, x2, y2]` pixel rows as padded normalised boxes."""
    max_boxes = int(max((rows[:, 0] == b).sum() for b in range(batch))) + 1
    boxes = np.zeros((batch, max_boxes, 4), np.float32)
    slots, filled = [], [0] * batch
    for row in rows:
        b = int(row[0])
        boxes[b, filled[b]] = row[1:] / np.array([width, height, width, height], np.float32)
        slots.append((b, filled[b]))
        filled[b] += 1
    return boxes, slots


@pytest.fixture(scope="module")
def detector(golden):
    folder = golden / "models" / DETECTOR
    model = ks.load_pyslowfast(folder / "pyslowfast.pyth", include_preprocessing=False)
    io = np.load(folder / "io.npz")
    clip = _nthwc(io["train_crop/fast"])
    boxes, slots = _padded_boxes(io["train_crop/boxes"], *clip.shape[:1], *clip.shape[2:4])
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 0.5, (2, 5, 2)).astype(np.float32)
    cases = {
        # The fixture's boxes: 2 and 2 per clip, one padding row each.
        "golden": {"clip": clip, "boxes": boxes},
        # Other batch sizes and box counts than the first call.
        "one_box": {"clip": clip[:1], "boxes": boxes[:1, :1]},
        "five_boxes": {
            "clip": clip,
            "boxes": np.concatenate(
                [corner, corner + rng.uniform(0.2, 0.5, (2, 5, 2))], -1, dtype=np.float32
            ),
        },
    }
    keras_out = {k: np.asarray(model.predict_on_batch(v)) for k, v in cases.items()}
    expected = io["train_crop/output"].astype(np.float64)
    return model, cases, keras_out, expected, slots


def _check_classifier(run, classifier, tol=TOL):
    _, inputs, keras_out, expected = classifier
    for crop, x in inputs.items():
        got = run(x)
        assert got.shape == keras_out[crop].shape
        diff = float(np.max(np.abs(got - keras_out[crop])))
        oracle = float(np.max(np.abs(got - expected[crop])))
        print(f"{crop}: max abs diff {diff:.2e} to Keras, {oracle:.2e} to the reference")
        assert diff <= tol, crop
        assert oracle <= tol, crop
        # Batch 1: a batch size the export was never traced with.
        np.testing.assert_allclose(run(x[:1]), keras_out[crop][:1], rtol=0, atol=tol)


def _check_detector(run, detector, tol):
    _, cases, keras_out, expected, slots = detector
    for name, inputs in cases.items():
        got = run(inputs)
        assert got.shape == keras_out[name].shape, name
        diff = float(np.max(np.abs(got - keras_out[name])))
        print(f"{name}: max abs diff {diff:.2e} to Keras")
        assert diff <= tol, name
    got = run(cases["golden"])
    # Padding rows score exactly zero; real rows match the reference's float64 scores.
    padding = ~cases["golden"]["boxes"].any(-1)
    assert np.all(got[padding] == 0)
    rows = np.stack([got[b, j] for b, j in slots])
    oracle = float(np.max(np.abs(rows - expected)))
    print(f"golden boxes: max abs diff {oracle:.2e} to the reference")
    assert oracle <= tol
    # Not all saturated, so that the check can fail: 3 of the 40 scores are in (0.01, 0.99).
    assert np.sum((rows > 0.01) & (rows < 0.99)) >= 3


# --- ONNX Runtime ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ort():
    pytest.importorskip("tf2onnx")
    return pytest.importorskip("onnxruntime")


def _ort_session(ort, path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_classifier_matches_keras_and_the_reference(ort, classifier, tmp_path):
    path = ks.export_onnx(classifier[0], tmp_path / "classifier.onnx")
    session = _ort_session(ort, path)
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        ("clip", ["batch", 32, "height", "width", 3])
    ]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("probabilities", ["batch", 10])]
    _check_classifier(lambda x: session.run(["probabilities"], {"clip": x})[0], classifier)
    assert os.listdir(tmp_path) == ["classifier.onnx"]  # no temporary file left behind
    _check_onnx_weights(path, classifier[0])


def _check_onnx_weights(path, model):
    """The file stores every weight once, in float32: each convolution's kernel, each batch
    normalisation as one bias per channel (folded into the convolution before it) and the
    dense layer, nothing twice and no other float tensor but scalars."""
    import keras
    import onnx

    weights = [onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer]
    floats = [w for w in weights if w.dtype == np.float32 and w.ndim > 0]
    expected = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv3D):
            expected += int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.BatchNormalization):
            expected += layer.gamma.shape[0]
        elif isinstance(layer, keras.layers.Dense):
            expected += sum(int(np.prod(w.shape)) for w in layer.weights)
    assert sum(w.size for w in floats) == expected
    assert not [w for w in weights if w.dtype == np.float64]
    big = [w.tobytes() for w in floats if w.size >= 64]
    assert len(set(big)) == len(big), "a weight is stored twice"
    # The graph itself is small beside the weights (~5% for this narrow model).
    assert os.path.getsize(path) < 1.1 * sum(w.nbytes for w in weights)


@pytest.mark.large
def test_onnx_export_is_tf2onnx_from_function(ort, classifier, tmp_path):
    """`export_onnx` runs tf2onnx's conversion steps itself (to free memory between them):
    the weights and operators are those of `tf2onnx.convert.from_function` on the same
    function (generated names, the order of interchangeable nodes and some small integer
    constants vary between any two conversions), and ONNX Runtime gives the same outputs
    bit for bit."""
    import collections

    import onnx
    import tf2onnx

    model = classifier[0]
    ours = onnx.load(ks.export_onnx(model, tmp_path / "ours.onnx"))
    specs = export_module._input_specs(model, False)
    function = export_module._inference_function(model, False)
    theirs, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=17)

    def weights(m):  # the float tensors (the small integer ones vary between conversions)
        return collections.Counter(
            (tuple(t.dims), t.raw_data)
            for t in m.graph.initializer
            if t.data_type == onnx.TensorProto.FLOAT
        )

    def operators(m):
        return collections.Counter(node.op_type for node in m.graph.node)

    assert weights(ours) == weights(theirs)
    assert operators(ours) == operators(theirs)
    x = classifier[1]["test_crop"]
    runs = [
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"clip": x}
        )[0]
        for m in (ours, theirs)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_onnx_detector_matches_keras_and_the_reference(ort, detector, tmp_path):
    path = ks.export_onnx(detector[0], tmp_path / "detector.onnx")
    session = _ort_session(ort, path)
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        ("clip", ["batch", 32, "height", "width", 3]),
        ("boxes", ["batch", "boxes", 4]),
    ]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [
        ("probabilities", ["batch", "boxes", 10])
    ]
    _check_detector(lambda inputs: session.run(None, inputs)[0], detector, TOL)


# --- OpenVINO -------------------------------------------------------------------------

# OpenVINO's CPU plugin computes in bfloat16 by default where the CPU has it; these
# checks are of the float32 graph.
_OV_F32 = {"INFERENCE_PRECISION_HINT": "f32"}


@pytest.fixture(scope="module")
def ov():
    return pytest.importorskip("openvino")


def test_openvino_classifier_matches_keras_and_the_reference(ov, classifier, tmp_path):
    path = ks.export_openvino(classifier[0], tmp_path / "classifier.xml")
    assert sorted(os.listdir(tmp_path)) == ["classifier.bin", "classifier.xml"]
    compiled = ov.Core().compile_model(path, "CPU", _OV_F32)
    assert [(i.any_name, str(i.partial_shape)) for i in compiled.inputs] == [
        ("clip", "[?,32,?,?,3]")
    ]
    assert [(o.any_name, str(o.partial_shape)) for o in compiled.outputs] == [
        ("probabilities", "[?,10]")
    ]
    _check_classifier(lambda x: compiled(x)["probabilities"], classifier)


def test_openvino_detector_matches_keras_and_the_reference(ov, detector, tmp_path):
    path = ks.export_openvino(detector[0], tmp_path / "detector.xml")
    compiled = ov.Core().compile_model(path, "CPU", _OV_F32)
    assert [(i.any_name, str(i.partial_shape)) for i in compiled.inputs] == [
        ("clip", "[?,32,?,?,3]"),
        ("boxes", "[?,?,4]"),
    ]
    # This narrow R101 with random weights carries activations of ~2e3 to its head, and
    # float32 rounding in OpenVINO's own convolution kernels moves its logits (up to
    # ~1.1e3) by ~1e-6 of the largest: 1e-3 at a logit of -1.57, i.e. 1.5e-4 in that
    # probability (measured). OpenVINO is as close to the float64 reference as Keras
    # itself (1.2e-4 vs 2.7e-5 in probability, 0.03 vs 0.05 in logits), hence 3e-4 here.
    _check_detector(lambda inputs: compiled(inputs)["probabilities"], detector, 3e-4)


# --- TensorFlow Lite ------------------------------------------------------------------


def _interpreter(path, **kwargs):
    import tensorflow as tf

    interpreter = getattr(tf.lite, "Interpreter", None)
    if interpreter is None:  # TensorFlow's copy is deprecated in favour of LiteRT's
        interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter
    return interpreter(model_path=str(path), **kwargs)


def _tflite_runner(path):
    runner = _interpreter(path, num_threads=2).get_signature_runner("serving_default")
    return lambda x: runner(clip=x)["probabilities"]


def _tflite_ops(path):
    return {op["op_name"] for op in _interpreter(path)._get_ops_details()}


@pytest.fixture(scope="module")
def tflite_float32(classifier, tmp_path_factory):
    return ks.export_tflite(classifier[0], tmp_path_factory.mktemp("tflite") / "float32.tflite")


@pytest.fixture(scope="module")
def tflite_dynamic(classifier, tmp_path_factory):
    path = tmp_path_factory.mktemp("tflite") / "dynamic.tflite"
    return ks.export_tflite(classifier[0], path, quantize="dynamic")


def test_tflite_float32_matches_keras_and_the_reference(classifier, tflite_float32):
    path = tflite_float32
    ops = _tflite_ops(path)
    # Built-in operators only, with the 3D convolutions run as 2D ones (fast kernels).
    assert "CONV_2D" in ops and not ops & {"CONV_3D", "FlexMaxPool3D", "CUSTOM", "VAR_HANDLE"}
    _check_classifier(_tflite_runner(path), classifier)


def test_tflite_dynamic_range_quantised_accuracy(classifier, tflite_dynamic, videos):
    """States the quantised model's accuracy against float32 Keras (measured bounds).

    The figures are those of the narrow golden network (random weights, 10 classes): an
    indication of the quantisation error, not of a published model's accuracy.
    """
    model, inputs, keras_out, _ = classifier
    ops = _tflite_ops(tflite_dynamic)
    # Int8 weights: the hybrid kernels dequantise on the fly, no float copy of the weights.
    assert "CONV_2D" in ops and not ops & {"CONV_3D", "DEQUANTIZE"}
    run = _tflite_runner(tflite_dynamic)
    for crop, x in inputs.items():
        got = run(x)
        diff = float(np.max(np.abs(got - keras_out[crop])))
        print(f"golden {crop}: max abs diff of probabilities {diff:.3f}")
        assert diff <= 0.1  # measured 0.037 (train_crop), 0.025 (test_crop)
        np.testing.assert_array_equal(got.argmax(-1), keras_out[crop].argmax(-1))

    # 30 real views (10 clips x 3 crops, 64x64: the narrow model's training crop) per video.
    top1, in_top5, diffs = [], [], []
    for video in sorted(videos.glob("*.mp4")):
        clips = _normalise(np.concatenate(list(video_views(video, 32, 2, views=30, size=64))))
        expected = np.asarray(model.predict(clips, batch_size=6, verbose=0))
        got = np.concatenate([run(clips[i : i + 6]) for i in range(0, len(clips), 6)])
        diffs.append(float(np.max(np.abs(got - expected))))
        top1 += (got.argmax(-1) == expected.argmax(-1)).tolist()
        top5 = np.argsort(-got, axis=-1)[:, :5]
        in_top5 += [e in t for e, t in zip(expected.argmax(-1), top5)]
    print(
        f"{len(top1)} video clips: max abs diff of probabilities {max(diffs):.3f}, top-1 "
        f"agreement {np.mean(top1):.3f}, Keras' top-1 in the top-5 {np.mean(in_top5):.3f}"
    )
    assert max(diffs) <= 0.15  # measured 0.052
    assert np.mean(top1) >= 0.9  # measured 1.0 (90 of 90)
    assert np.mean(in_top5) == 1.0


def test_tflite_refuses_detectors_and_unknown_quantisation(detector, classifier, tmp_path):
    with pytest.raises(ValueError, match="classifiers only"):
        ks.export_tflite(detector[0], tmp_path / "detector.tflite")
    with pytest.raises(ValueError, match="Received: quantize='int8'"):
        ks.export_tflite(classifier[0], tmp_path / "x.tflite", quantize="int8")


# --- Arguments, files, command line ---------------------------------------------------


def test_bad_paths_and_existing_files(classifier, tmp_path):
    model = classifier[0]
    with pytest.raises(ValueError, match=r"ending in '\.onnx'. Received: path="):
        ks.export_onnx(model, tmp_path / "model.txt")
    with pytest.raises(ValueError, match=r"ending in '\.xml'"):
        ks.export_openvino(model, tmp_path / "model.onnx")
    with pytest.raises(TypeError, match="Received: path=3"):
        ks.export_tflite(model, 3)
    with pytest.raises(TypeError, match="Received: model=str"):
        ks.export_onnx("model", tmp_path / "model.onnx")
    with pytest.raises(ValueError, match="Received: opset=9"):
        ks.export_onnx(model, tmp_path / "model.onnx", opset=9)
    features = ks.SlowR50(width_per_group=8, include_top=False)
    with pytest.raises(ValueError, match="classifier with its top"):
        ks.export_onnx(features, tmp_path / "features.onnx")
    existing = tmp_path / "existing.onnx"
    existing.write_bytes(b"keep")
    with pytest.raises(ValueError, match="overwrite=True"):
        ks.export_onnx(model, existing)
    # OpenVINO writes two files: an existing weights file is not replaced either.
    (tmp_path / "existing.bin").write_bytes(b"keep")
    with pytest.raises(ValueError, match="weights file beside"):
        ks.export_openvino(model, tmp_path / "existing.xml")
    assert existing.read_bytes() == b"keep"
    assert (tmp_path / "existing.bin").read_bytes() == b"keep"


def test_a_missing_optional_package_is_named(classifier, tmp_path, monkeypatch):
    # `None` in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"pip install 'keras-slowfast\[onnx\]'"):
        ks.export_onnx(classifier[0], tmp_path / "model.onnx")
    with pytest.raises(ImportError, match=r"pip install 'keras-slowfast\[openvino\]'"):
        ks.export_openvino(classifier[0], tmp_path / "model.xml")
    assert os.listdir(tmp_path) == []


def test_cli_exports_onnx_with_the_models_preprocessing(ort, golden, tmp_path, capsys):
    checkpoint = golden / "models" / CLASSIFIER / "pyslowfast.pyth"
    out = tmp_path / "slowfast.onnx"
    args = ["export", str(out), "--format", "onnx", "--model", CLASSIFIER]
    assert cli.main([*args, "--weights", str(checkpoint)]) == 0
    printed = capsys.readouterr().out
    assert f"ONNX model written to {out}" in printed
    # The CLI's model includes the preprocessing: it takes RGB in [0, 255].
    model = registry.build(CLASSIFIER, checkpoint)
    clip = np.random.default_rng(1).integers(0, 256, (1, 32, 64, 80, 3)).astype(np.float32)
    got = _ort_session(ort, out).run(None, {"clip": clip})[0]
    np.testing.assert_allclose(got, model.predict_on_batch(clip), rtol=0, atol=TOL)
    assert cli.main([*args, "--weights", str(checkpoint)]) == 2  # exists: not replaced
    assert "overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a usage error, before the model is built
        cli.main([*args, "--weights", str(checkpoint), "--quantize", "dynamic"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--quantize dynamic has no effect without --format tflite" in err
    assert "--format onnx" in err


@pytest.mark.parametrize("fmt,suffix", [("openvino", ".xml"), ("tflite", ".tflite")])
def test_cli_exports_openvino_and_tflite(golden, tmp_path, capsys, fmt, suffix):
    if fmt == "openvino":
        pytest.importorskip("openvino")
    checkpoint = golden / "models" / CLASSIFIER / "pyslowfast.pyth"
    out = tmp_path / f"slowfast{suffix}"
    args = ["export", str(out), "--format", fmt, "--model", CLASSIFIER, "--weights"]
    quantize = ["--quantize", "dynamic"] if fmt == "tflite" else []
    assert cli.main([*args, str(checkpoint), *quantize]) == 0
    assert str(out) in capsys.readouterr().out
    assert out.is_file()


def test_docstring_examples():
    assert doctest.testmod(export_module).failed == 0
