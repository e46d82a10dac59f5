"""SavedModel export for TF Serving: signature, both loaders, a client.

The narrow golden checkpoints keep the exports small. Each export is loaded the ways its
consumers load it, in fresh processes that import TensorFlow only (keras_slowfast, which
defines the model's layers, is never imported): TF Serving's session loader (the
MetaGraph's saver restores the variables; `saved_model_cli run` and
`tf.compat.v1.saved_model.load`) and the object-graph loader (`tf.saved_model.load`). Each
answers through the `serving_default` signature as the Keras model does, float32 and
bfloat16, classifier and detector.
"""

import functools
import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import keras_slowfast as ks
from keras_slowfast import hub as registry

REPO = Path(__file__).resolve().parents[1]

# One fresh process that imports TensorFlow only and loads each SavedModel both ways its
# consumers do: the object-graph loader (`tf.saved_model.load`, recording the signature)
# and TF Serving's session loader (`tf.compat.v1.saved_model.load` into a session of its
# own graph: the MetaGraph's saver restores the variables and the signature's tensors are
# run by name). Each answers the saved inputs.
_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    report = {}
    for case in json.loads(sys.argv[1]):
        inputs = dict(np.load(case["inputs"]))
        if "outputs" in case:
            serve = tf.saved_model.load(case["dir"]).signatures["serving_default"]
            outputs = serve(**{k: tf.constant(v) for k, v in inputs.items()})
            np.savez(case["outputs"], **{k: v.numpy() for k, v in outputs.items()})
            report[case["dir"]] = {
                "inputs": {k: [s.dtype.name, s.shape.as_list()]
                           for k, s in serve.structured_input_signature[1].items()},
                "outputs": {k: [s.dtype.name, s.shape.as_list()]
                            for k, s in serve.structured_outputs.items()},
            }
        graph = tf.Graph()
        with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
            meta_graph = tf.compat.v1.saved_model.load(session, ["serve"], case["dir"])
            signature = meta_graph.signature_def["serving_default"]
            feeds = {signature.inputs[k].name: v for k, v in inputs.items()}
            fetches = {k: v.name for k, v in signature.outputs.items()}
            np.savez(case["session_outputs"], **session.run(fetches, feeds))
    # TensorFlow imports Keras itself; the package that defines the model must be absent.
    report["modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "keras_slowfast")
    print(json.dumps(report))
    """
)


def _build_cases(golden, dtype=None):
    """A classifier (with preprocessing) and a detector (without), with uint8 inputs."""
    rng = np.random.default_rng(0)
    extra = {} if dtype is None else {"dtype": dtype}
    classifier = registry.build(
        "slowfast_8x8_r50",
        golden / "models/slowfast_8x8_r50/pyslowfast.pyth",
        train_crop_size=64,
        **extra,
    )
    detector = registry.build(
        "ava_slowfast_r50_detection",
        golden / "models/ptv_slowfast_r50_detection/pytorchvideo.pyth",
        include_preprocessing=False,
        **extra,
    )
    boxes = np.array(
        [
            [[0.1, 0.1, 0.6, 0.9], [0.5, 0.0, 1.0, 0.5], [0, 0, 0, 0]],
            [[0, 0, 1, 1], [0] * 4, [0] * 4],
        ],
        np.float32,
    )
    return {
        "classifier": (
            classifier,
            {"clip": rng.integers(0, 256, (2, 32, 64, 96, 3), dtype=np.uint8)},
        ),
        "detector": (
            detector,
            {"clip": rng.integers(0, 256, (2, 32, 64, 80, 3), dtype=np.uint8), "boxes": boxes},
        ),
    }


@pytest.fixture(scope="module")
def exported(golden, tmp_path_factory):
    """Every kind x precision exported as version 3, with its inputs saved as `.npy`/`.npz`.

    Keys: `classifier`, `detector` (float32) and `classifier_bfloat16`, `detector_bfloat16`
    (Keras `mixed_bfloat16`, the CLI's `--precision bfloat16`).
    """
    root = tmp_path_factory.mktemp("export")
    out = {}
    for suffix, dtype in (("", None), ("_bfloat16", "mixed_bfloat16")):
        for kind, (model, inputs) in _build_cases(golden, dtype).items():
            name = kind + suffix
            path = ks.export_saved_model(model, root / name, version=3, top_k=4)
            np.savez(root / f"{name}_inputs.npz", **inputs)
            for key, value in inputs.items():
                np.save(root / f"{name}_{key}.npy", value)
            out[name] = dict(model=model, inputs=inputs, dir=path)
    return root, out


def _keras_answer(model, inputs):
    clip = inputs["clip"].astype(np.float32)
    if "boxes" not in inputs:
        return np.asarray(model.predict_on_batch(clip))
    if not any(type(layer).__name__ == "ClipNormalization" for layer in model.layers):
        clip = (clip / 255.0 - 0.45) / 0.225
    return np.asarray(model.predict_on_batch({"clip": clip, "boxes": inputs["boxes"]}))


_KINDS = ["classifier", "detector"]
_ALL = [*_KINDS, "classifier_bfloat16", "detector_bfloat16"]


@pytest.fixture(scope="module")
def fresh_process(exported):
    """Runs `_FRESH_PROCESS` once on every export: the object-graph loader on the float32
    ones, the session loader on all four. Returns its JSON report."""
    root, cases = exported
    spec = []
    for name in _ALL:
        case = {
            "dir": cases[name]["dir"],
            "inputs": str(root / f"{name}_inputs.npz"),
            "session_outputs": str(root / f"{name}_session.npz"),
        }
        if name in _KINDS:
            case["outputs"] = str(root / f"{name}_outputs.npz")
        spec.append(case)
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,  # not the repository: keras_slowfast must not be importable by accident
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["modules"] == [], "the fresh process imported keras_slowfast"
    return report


@pytest.mark.parametrize("kind", _KINDS)
def test_fresh_tensorflow_process_answers_like_keras(exported, fresh_process, kind):
    """The object-graph loader (`tf.saved_model.load`) in a TensorFlow-only process."""
    root, cases = exported
    case = cases[kind]
    report = fresh_process
    assert Path(case["dir"]).name == "3"

    served = np.load(root / f"{kind}_outputs.npz")
    expected = _keras_answer(case["model"], case["inputs"])
    rows = expected if kind == "classifier" else expected[case["inputs"]["boxes"].any(-1)]
    assert np.mean((rows > 0.01) & (rows < 0.99)) >= 0.3  # not saturated: the check can fail
    diff = float(np.max(np.abs(served["probabilities"] - expected)))
    print(f"{kind}: max abs diff between the SavedModel and Keras {diff:.2e}")
    # The narrow random detector amplifies float32 rounding: Keras' own eager and graph
    # runs of it differ by up to ~6e-6 on this input; the classifier stays near 1e-6.
    assert diff <= (1e-5 if kind == "classifier" else 2e-5)
    order = np.argsort(-expected, axis=-1, kind="stable")[..., :4]
    np.testing.assert_array_equal(served["top_k_indices"], order)
    np.testing.assert_allclose(
        served["top_k_scores"], np.take_along_axis(expected, order, -1), atol=2e-5
    )

    signature = report[case["dir"]]
    batch = [None] if kind == "classifier" else [None, None]
    expected_inputs = {"clip": ["uint8", [None, 32, None, None, 3]]}
    if kind == "detector":
        expected_inputs["boxes"] = ["float32", [None, None, 4]]
        # Padding rows score zero, as in the Keras model.
        np.testing.assert_array_equal(served["probabilities"][1, 1:], 0)
    assert signature["inputs"] == expected_inputs
    assert signature["outputs"] == {
        "probabilities": ["float32", [*batch, 10]],
        "top_k_scores": ["float32", [*batch, 4]],
        "top_k_indices": ["int32", [*batch, 4]],
    }


def test_saved_model_cli_shows_the_serving_signature(exported):
    _, cases = exported
    result = subprocess.run(
        [*_saved_model_cli(), "show", "--dir", cases["classifier"]["dir"], "--tag_set", "serve",
         "--signature_def", "serving_default"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    text = " ".join(result.stdout.split())
    assert "inputs['clip'] tensor_info: dtype: DT_UINT8 shape: (-1, 32, -1, -1, 3)" in text
    assert "outputs['probabilities'] tensor_info: dtype: DT_FLOAT shape: (-1, 10)" in text
    assert "outputs['top_k_indices'] tensor_info: dtype: DT_INT32 shape: (-1, 4)" in text
    assert "outputs['top_k_scores'] tensor_info: dtype: DT_FLOAT shape: (-1, 4)" in text
    assert "Method name is: tensorflow/serving/predict" in text


def _saved_model_cli():
    command = shutil.which("saved_model_cli")
    module = "tensorflow.python.tools.saved_model_cli"
    return [command] if command else [sys.executable, "-m", module]


def _check_served(name, case, served, bound):
    """Served outputs against Keras' `predict_on_batch` on the same uint8 inputs."""
    expected = _keras_answer(case["model"], case["inputs"])
    diff = float(np.max(np.abs(served["probabilities"] - expected)))
    print(f"{name}: max abs diff between the served SavedModel and Keras {diff:.2e}")
    assert served["probabilities"].shape == expected.shape
    assert diff <= bound, (name, diff)
    order = np.argsort(-expected, axis=-1, kind="stable")[..., :4]
    scores = np.take_along_axis(expected, order, -1)
    np.testing.assert_allclose(served["top_k_scores"], scores, rtol=0, atol=bound)
    # Ranks may swap only between scores closer than the bound.
    swapped = served["top_k_indices"] != order
    assert np.all(np.abs(np.diff(scores, axis=-1))[..., :][swapped[..., 1:]] <= 2 * bound)


# Keras' own graph and eager runs of the narrow random detector differ by up to ~6e-6
# (float32 rounding amplified by its untrained weights); bfloat16 models compute the same
# bfloat16 ops in both runtimes, so they agree to float32 rounding too.
_BOUNDS = {"classifier": 1e-5, "detector": 2e-5}


# The bfloat16 exports go through the same session-loader route in the default suite, in
# `test_session_loader_in_a_fresh_process_answers_like_keras`.
_LARGE = pytest.mark.large


@pytest.mark.parametrize(
    "name",
    [*_KINDS, *(pytest.param(name, marks=_LARGE) for name in _ALL if name not in _KINDS)],
)
def test_saved_model_cli_run_answers_like_keras(exported, name, tmp_path):
    """TF Serving's loader path: `saved_model_cli run` restores through the MetaGraph's saver
    in a session (the C++ `LoadSavedModel` route), not through the object graph."""
    root, cases = exported
    case = cases[name]
    inputs = ";".join(f"{key}={root / f'{name}_{key}.npy'}" for key in case["inputs"])
    result = subprocess.run(
        [*_saved_model_cli(), "run", "--dir", case["dir"], "--tag_set", "serve",
         "--signature_def", "serving_default", "--inputs", inputs, "--outdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    served = {key: np.load(tmp_path / f"{key}.npy") for key in _OUTPUTS}
    _check_served(name, case, served, _BOUNDS[name.split("_")[0]])


_OUTPUTS = ("probabilities", "top_k_scores", "top_k_indices")


def test_session_loader_in_a_fresh_process_answers_like_keras(exported, fresh_process):
    """TF Serving's session loader, in the TensorFlow-only process, on all four exports."""
    root, cases = exported
    for name in _ALL:
        served = dict(np.load(root / f"{name}_session.npz"))
        _check_served(name, cases[name], served, _BOUNDS[name.split("_")[0]])
    # The bfloat16 exports really compute in bfloat16 (else the float32 checks repeat).
    for kind in ("classifier", "detector"):
        full = np.load(root / f"{kind}_session.npz")["probabilities"]
        half = np.load(root / f"{kind}_bfloat16_session.npz")["probabilities"]
        assert np.max(np.abs(full - half)) > 1e-4, kind


def test_each_weight_is_one_variable_in_the_saved_model(exported):
    """Plumbing: the MetaGraph holds one variable per model weight (no shadow copies)."""
    from tensorflow.core.protobuf import saved_model_pb2

    _, cases = exported
    for name in ("classifier", "detector"):
        case = cases[name]
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((Path(case["dir"]) / "saved_model.pb").read_bytes())
        handles = [n for n in proto.meta_graphs[0].graph_def.node if n.op == "VarHandleOp"]
        assert len(handles) == len(case["model"].weights), name


@functools.cache
def _serving_client():
    # Loaded once: the example defines absl flags, which may be defined only once.
    spec = importlib.util.spec_from_file_location(
        "serving_client", REPO / "examples" / "serving_client.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", _KINDS)
def test_a_predict_request_from_the_example_client_feeds_the_signature(exported, kind):
    pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    client = _serving_client()
    case = exported[1][kind]
    request = client.build_predict_request(
        case["inputs"]["clip"], "slowfast", boxes=case["inputs"].get("boxes")
    )
    assert request.model_spec.signature_name == "serving_default"
    outputs = client.predict_offline(request, case["dir"])
    expected = _keras_answer(case["model"], case["inputs"])
    np.testing.assert_allclose(outputs["probabilities"], expected, rtol=0, atol=2e-5)
    if kind != "classifier":
        return  # the client's dtype check is the same for both; the classifier loads faster
    request.inputs["clip"].CopyFrom(
        client.tf.make_tensor_proto(case["inputs"]["clip"].astype(np.float32))
    )
    with pytest.raises(ValueError, match="Input clip must be uint8"):
        client.predict_offline(request, case["dir"])


def test_bad_arguments(exported, tmp_path):
    _, cases = exported
    model = cases["classifier"]["model"]
    with pytest.raises(ValueError, match="Received: version=0"):
        ks.export_saved_model(model, tmp_path, version=0)
    with pytest.raises(ValueError, match="Received: top_k=0"):
        ks.export_saved_model(model, tmp_path, top_k=0)
    with pytest.raises(TypeError, match="Received: model=str"):
        ks.export_saved_model("model", tmp_path)
    existing = Path(cases["classifier"]["dir"])
    with pytest.raises(ValueError, match="version=3"):
        ks.export_saved_model(model, existing.parent, version=3)
    features = ks.SlowR50(width_per_group=8, include_top=False)
    with pytest.raises(ValueError, match="classifier with its top"):
        ks.export_saved_model(features, tmp_path)


def test_a_model_without_preprocessing_still_takes_uint8(golden, tmp_path):
    import tensorflow as tf

    model = registry.build(
        "slow_8x8_r50",
        golden / "models/slow_8x8_r50/pyslowfast.pyth",
        include_preprocessing=False,
        train_crop_size=64,
    )
    path = ks.export_saved_model(model, tmp_path, top_k=20)
    clip = np.random.default_rng(2).integers(0, 256, (1, 8, 64, 64, 3), dtype=np.uint8)
    served = tf.saved_model.load(path).signatures["serving_default"](clip=tf.constant(clip))
    normalised = (clip.astype(np.float32) / 255.0 - 0.45) / 0.225
    expected = model.predict_on_batch(normalised)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, rtol=0, atol=1e-5)
    assert served["top_k_indices"].shape == (1, 10)  # top_k is capped at the class count
