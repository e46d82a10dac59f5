"""The presets table: every row builds and loads its fixture (the layering rules are in
test_architecture.py).

Oracles: the golden fixtures (outputs of PySlowFast / PyTorchVideo themselves), the
full-size PyTorch parameter counts, and the upstream checkpoint paths recorded below from
PySlowFast's MODEL_ZOO.md and PyTorchVideo's model zoo and hub code.
"""

import json
import zipfile

import numpy as np
import pytest
from helpers import forward, golden_detector_inputs, keras_layout, softmax

import keras_slowfast as ks
from keras_slowfast import hub, presets

TOL = 1e-4

# ---------------------------------------------------------------------------------------
# The table.

# Every upstream checkpoint path, as published (PySlowFast MODEL_ZOO.md and its
# projects' READMEs, PyTorchVideo docs/source/model_zoo.md and its hub functions), under
# https://dl.fbaipublicfiles.com/.
UPSTREAM_PATHS = {
    "pyslowfast/model_zoo/kinetics400/SLOWFAST_4x16_R50.pkl",
    "pyslowfast/model_zoo/kinetics400/SLOWFAST_8x8_R50.pkl",
    "pyslowfast/model_zoo/kinetics400/SLOWONLY_4x16_R50.pkl",
    "pyslowfast/model_zoo/kinetics400/SLOWONLY_8x8_R50.pkl",
    "pyslowfast/pyslowfast/model_zoo/multigrid/model_zoo/Kinetics/SLOWFAST_8x8_R50_stepwise.pkl",
    "pyslowfast/pyslowfast/model_zoo/multigrid/model_zoo/Kinetics/"
    "SLOWFAST_8x8_R50_stepwise_multigrid.pkl",
    "pyslowfast/pyslowfast/model_zoo/multigrid/model_zoo/SSv2/SLOWFAST_16x8_R50.pkl",
    "pyslowfast/pyslowfast/model_zoo/multigrid/model_zoo/SSv2/SLOWFAST_16x8_R50_multigrid.pkl",
    "pyslowfast/pyslowfast/model_zoo/multigrid/model_zoo/Charades/SLOWFAST_16x8_R50.pkl",
    "pyslowfast/pyslowfast/model_zoo/multigrid/model_zoo/Charades/SLOWFAST_16x8_R50_multigrid.pkl",
    "pyslowfast/model_zoo/ava/C2D_8x8_R50.pkl",
    "pyslowfast/model_zoo/ava/SLOWFAST_32x2_R101_50_50_v2.1.pkl",
    "pyslowfast/model_zoo/ava/SLOWFAST_32x2_R101_50_50.pkl",
    "pyslowfast/model_zoo/ava/SLOWFAST_64x2_R101_50_50.pkl",
    "pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth",
    "pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R101.pyth",
    "pytorchvideo/model_zoo/kinetics/SLOWFAST_16x8_R101_50_50.pyth",
    "pytorchvideo/model_zoo/kinetics/SLOWFAST_4x16_R50.pyth",
    "pytorchvideo/model_zoo/kinetics/SLOW_8x8_R50.pyth",
    "pytorchvideo/model_zoo/kinetics/SLOW_4x16_R50.pyth",
    "pytorchvideo/model_zoo/ssv2/SLOW_8x8_R50.pyth",
    "pytorchvideo/model_zoo/ssv2/SLOWFAST_8x8_R50.pyth",
    "pytorchvideo/model_zoo/charades/SLOW_8x8_R50.pyth",
    "pytorchvideo/model_zoo/charades/SLOWFAST_8x8_R50.pyth",
    "pytorchvideo/model_zoo/ava/SLOW_4x16_R50_DETECTION.pyth",
    "pytorchvideo/model_zoo/ava/SLOWFAST_8x8_R50_DETECTION.pyth",
    "pyslowfast/videomoco_models/MoCo_SlowR50_8x8_T2_epoch_00200.pyth",
    "pyslowfast/videomoco_models/BYOL_SlowR50_8x8_T2_epoch_00200.pyth",
    "pyslowfast/videomoco_models/SimCLR_SlowR50_8x8_T2_epoch_00200.pyth",
    "pyslowfast/videomoco_models/SwAV_SlowR50_8x8_T2_epoch_00200.pyth",
    "pyslowfast/videomoco_models/MoCo_SlowR50_8x8_T4_epoch_00200.pyth",
    "pyslowfast/videomoco_models/BYOL_SlowR50_8x8_T4_epoch_00200.pyth",
    "pyslowfast/videomoco_models/BYOL_SlowR50_16x4_T4_epoch_00200.pyth",
}


def test_every_checkpoint_path_is_an_upstream_path():
    paths = [p.checkpoint.path for p in presets.PRESETS if p.checkpoint is not None]
    assert len(paths) == len(set(paths))
    assert set(paths) == UPSTREAM_PATHS


def test_list_presets_lists_every_row_and_lookups_agree():
    names = ks.list_presets()
    assert names == [p.name for p in presets.PRESETS] and len(names) == 35
    assert ks.list_presets("detector") == [p.name for p in presets.PRESETS if p.kind == "detector"]
    for p in presets.PRESETS:
        assert ks.get_preset(p.name) is p
        if p.weights is not None:
            assert presets.find_preset(p.architecture, p.weights) is p
        assert p.kwargs["num_frames"] == p.protocol.num_frames
        assert p.classes == p.kwargs.get("classes", 0)
    # Per-dataset names: "kinetics" alone would be ambiguous and is not a name.
    with pytest.raises(ValueError, match="Received: weights='kinetics'"):
        presets.find_preset("slowfast_8x8_r50", "kinetics")


def test_label_sets_and_protocols_of_the_new_datasets():
    from keras_slowfast.labels import class_names

    counts = {"kinetics400": 400, "ava": 80, "ssv2": 174, "charades": 157}
    for p in presets.PRESETS:
        if not p.include_top:  # self-supervised backbones
            assert (p.labels, p.classes, p.kwargs["include_top"]) == (None, 0, False)
            continue
        assert len(class_names(p.labels)) == counts[p.labels]
        if p.labels != "ava":
            assert p.classes == counts[p.labels], p.name
    charades = ks.get_preset("slowfast_16x8_r50_charades")
    assert charades.protocol.ensemble == "max" and charades.protocol.multi_label
    assert charades.kwargs["classifier_activation"] == "sigmoid"
    ssv2 = ks.get_preset("slowfast_16x8_r50_ssv2")
    assert (ssv2.protocol.sampling, ssv2.protocol.views, ssv2.protocol.crop_indices) == (
        "segment",
        1,
        (0,),
    )
    for name in ("slowfast_8x8_r50_kinetics400_multigrid", "slowfast_16x8_r50_ssv2_multigrid"):
        assert ks.get_preset(name).kwargs["train_crop_size"] is None  # global pooling
        assert ks.get_preset(name).protocol.test_crop_size == 224


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


_R101 = ("r101",)


def _preset_params(names):
    out = []
    for name in names:
        marks = [pytest.mark.large] if any(k in name for k in _R101) else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.fixture(scope="module")
def built_count():
    """`built_count(name)`: the trainable parameters of `from_preset(name,
    load_weights=False)`, built once for all presets with the same builder arguments (e.g.
    a checkpoint published by both PySlowFast and PyTorchVideo): the same call builds the
    same network."""
    counts = {}

    def count(name):
        preset = ks.get_preset(name)
        key = (preset.kind, repr(sorted(preset.builder_kwargs().items())))
        if key not in counts:
            counts[key] = _trainable(ks.from_preset(name, load_weights=False))
        return counts[key]

    return count


@pytest.mark.parametrize("name", _preset_params(presets.preset_names()))
def test_every_preset_builds_with_the_pytorch_parameter_count(built_count, name):
    assert built_count(name) == ks.get_preset(name).params


def test_recorded_counts_match_the_fixtures_pytorch_counts(golden):
    # The narrow fixtures' meta.json hold PyTorch's own count; the same builder arguments
    # at width 8 and 10 classes must give it.
    for folder, name in (
        ("slowfast_8x8_r50", "slowfast_8x8_r50_kinetics400"),
        ("ssv2_slowfast_16x8_r50", "slowfast_16x8_r50_ssv2"),
        ("slow_8x8_r50", "slow_8x8_r50_kinetics400"),
        ("ava_slowfast_32x2_r101_50_50", "ava_slowfast_32x2_r101_50_50_v2.2"),
    ):
        meta = json.loads((golden / "models" / folder / "meta.json").read_text())
        model = ks.from_preset(name, load_weights=False, width_per_group=8, classes=10)
        assert _trainable(model) == meta["params"], folder


# ---------------------------------------------------------------------------------------
# Every golden fixture through from_preset(checkpoint=...).

# fixture folder -> (preset, checkpoint file, extra builder arguments)
FIXTURES = {
    "slowfast_4x16_r50": ("slowfast_4x16_r50_kinetics400", "caffe2.pkl", {}),
    "slowfast_8x8_r50": ("slowfast_8x8_r50_kinetics400", "pyslowfast.pyth", {}),
    "slowfast_nln_8x8_r50": ("slowfast_nln_8x8_r50", "caffe2.pkl", {}),
    "slowfast_8x8_r101": ("slowfast_8x8_r101_kinetics400", "pyslowfast.pyth", {}),
    "slowfast_16x8_r101_50_50": ("slowfast_16x8_r101_50_50_kinetics400", "caffe2.pkl", {}),
    "slowfast_nln_16x8_r101_50_50": ("slowfast_nln_16x8_r101_50_50", "pyslowfast.pyth", {}),
    "slow_8x8_r50": ("slow_8x8_r50_kinetics400", "caffe2.pkl", {}),
    "slowfast_8x8_r50_multigrid": (
        "slowfast_8x8_r50_kinetics400_multigrid",
        "pyslowfast.pyth",
        {},
    ),
    "ssv2_slowfast_16x8_r50": ("slowfast_16x8_r50_ssv2", "pyslowfast.pyth", {}),
    "ptv_slowfast_r50": ("slowfast_8x8_r50_kinetics400_ptv", "pytorchvideo.pyth", {}),
    "ptv_slowfast_16x8_r101_50_50": (
        "slowfast_16x8_r101_50_50_kinetics400",
        "pytorchvideo.pyth",
        {},
    ),
    "ava_slowfast_32x2_r101_50_50": ("ava_slowfast_32x2_r101_50_50_v2.2", "caffe2.pkl", {}),
    # PySlowFast's AVA SLOWFAST_32x2_R50_SHORT with DETECTION.ALIGNED True: the R50 AVA
    # architecture with the aligned RoIAlign.
    "ava_slowfast_32x2_r50_aligned": (
        "ava_slowfast_r50_detection_v2.2",
        "pyslowfast.pyth",
        {"aligned": True},
    ),
    "ptv_slowfast_r50_detection": ("ava_slowfast_r50_detection_v2.2", "pytorchvideo.pyth", {}),
}


def test_every_fixture_is_covered(golden):
    folders = sorted(p.name for p in (golden / "models").iterdir() if p.is_dir())
    assert folders == sorted(FIXTURES)


@pytest.fixture(scope="module")
def from_fixture(golden):
    """`from_fixture(name, folder, fname, **kwargs)`: `from_preset(name,
    checkpoint=<golden folder>/<fname>, include_preprocessing=False, **kwargs)`, called once
    per set of arguments in the module (the models are only run, never changed)."""
    built = {}

    def get(name, folder, fname, **kwargs):
        key = (name, folder, fname, repr(sorted(kwargs.items())))
        if key not in built:
            built[key] = ks.from_preset(
                name,
                checkpoint=golden / "models" / folder / fname,
                include_preprocessing=False,
                **kwargs,
            )
        return built[key]

    return get


def _fixture_kwargs(folder):
    """The builder arguments a fixture's preset takes here besides its checkpoint."""
    name, _, extra = FIXTURES[folder]
    preset = ks.get_preset(name)
    kwargs = dict(extra)
    if preset.kind == "classifier" and preset.kwargs["train_crop_size"] is not None:
        kwargs["train_crop_size"] = 64  # the fixtures' training crop
    return kwargs


def _fixture_params():
    # The R101 fixtures also run through the loaders in test_parity.py (default suite);
    # through from_preset they are `large` to keep the default suite short.
    return [
        pytest.param(f, marks=[pytest.mark.large] if "r101" in f else [], id=f)
        for f in sorted(FIXTURES)
    ]


@pytest.mark.parametrize("folder", _fixture_params())
def test_fixture_through_from_preset(golden, from_fixture, folder):
    name, fname, _ = FIXTURES[folder]
    preset = ks.get_preset(name)
    io = np.load(golden / "models" / folder / "io.npz")
    model = from_fixture(name, folder, fname, **_fixture_kwargs(folder))
    if preset.kind == "detector":
        x, slots = golden_detector_inputs(io)
        got = forward(model, x)
        np.testing.assert_allclose([got[slot] for slot in slots], io["train_crop/output"], atol=TOL)
        return
    for crop in ("train_crop", "test_crop"):
        if f"{crop}/fast" not in io.files:
            continue
        expected = io[f"{crop}/output"].astype(np.float64)
        if "ptv_" in folder:
            # PyTorchVideo's hub classifiers output logits; a preset gives probabilities.
            logits = expected
            expected = softmax(expected)
        else:
            logits = io[f"{crop}/logits"].astype(np.float64)
        got = forward(model, keras_layout(io[f"{crop}/fast"]))
        err = np.abs(got - expected).max()
        assert err < TOL * max(1.0, np.abs(logits).max()), f"{folder} {crop}: {err:.2e}"


def test_multigrid_head_pools_globally(golden, from_fixture):
    """The multigrid fixture's 96x96 test crop: one global average, not 2x2 windows."""
    folder = "slowfast_8x8_r50_multigrid"
    io = np.load(golden / "models" / folder / "io.npz")
    assert io["test_crop/logits"].shape[1:4] == (1, 1, 1)
    x = keras_layout(io["test_crop/fast"])
    expected = io["test_crop/output"]
    scale = np.abs(io["test_crop/logits"]).max()
    good = from_fixture("slowfast_8x8_r50_kinetics400_multigrid", folder, "pyslowfast.pyth")
    assert np.abs(forward(good, x) - expected).max() < TOL * scale
    # The Kinetics head (window of the 64 px training crop) is what failed before.
    windowed = from_fixture(
        "slowfast_8x8_r50_kinetics400", folder, "pyslowfast.pyth", train_crop_size=64
    )
    assert np.abs(forward(windowed, x) - expected).max() > 10 * TOL * scale


def test_ssv2_network_sees_the_channels_its_loader_produced(golden, from_fixture):
    """SSv2's `DATA.REVERSE_INPUT_CHANNEL` turns OpenCV's BGR frames into RGB: the fixture's
    `fast` is what the network received, so the converted model takes it unchanged, and
    the reversed clip gives other scores (the check discriminates)."""
    folder = "ssv2_slowfast_16x8_r50"
    io = np.load(golden / "models" / folder / "io.npz")
    model = from_fixture("slowfast_16x8_r50_ssv2", folder, "pyslowfast.pyth", train_crop_size=64)
    x = keras_layout(io["train_crop/fast"])
    scale = np.abs(io["train_crop/logits"]).max()
    expected = io["train_crop/output"]
    assert np.abs(forward(model, x) - expected).max() < TOL * scale
    flipped = forward(model, x[..., ::-1])
    assert np.abs(flipped - expected).max() > 10 * TOL * scale


def test_reversing_opencv_frames_gives_rgb(golden):
    """The fact behind the previous test, with real JPEG frames: OpenCV decodes BGR; its
    channel reversal equals PyAV's RGB decoding of the same file (up to the two JPEG
    decoders' rounding), and the unreversed frame does not."""
    cv2 = pytest.importorskip("cv2")
    av = pytest.importorskip("av")
    frame = sorted((golden / "ava_data/dataset/frames/k00").glob("*.jpg"))[40]
    bgr = cv2.imdecode(np.frombuffer(frame.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    with av.open(str(frame)) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    reversed_diff = np.abs(bgr[..., ::-1].astype(int) - rgb).mean()
    same_diff = np.abs(bgr.astype(int) - rgb).mean()
    assert reversed_diff < 2.0 < 5 * reversed_diff < same_diff


# ---------------------------------------------------------------------------------------
# from_preset's arguments and the download checks.


def test_from_preset_bad_arguments():
    with pytest.raises(ValueError, match="Received: preset='slowfast_9x9'"):
        ks.from_preset("slowfast_9x9")
    with pytest.raises(ValueError, match="No weights are published.*load_weights=True"):
        ks.from_preset("slowfast_nln_8x8_r50")
    with pytest.raises(TypeError, match="Received: weights='k400'"):
        ks.from_preset("slowfast_8x8_r50_kinetics400", weights="k400")
    with pytest.raises(ValueError, match="No checkpoint file.*Received: checkpoint="):
        ks.from_preset("slowfast_8x8_r50_kinetics400", checkpoint="missing.pyth")
    with pytest.raises(ValueError, match="Received: kind='tracker'"):
        ks.list_presets("tracker")


def test_a_zip_member_failing_its_crc_is_named(golden, tmp_path):
    source = golden / "models/ptv_slowfast_r50/pytorchvideo.pyth"
    damaged = tmp_path / "damaged.pyth"
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as z:
        info = z.getinfo("pytorchvideo/data.pkl")
    # A byte in the middle of the (stored, uncompressed) member's data.
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    hub.verify_zip_members(str(source))  # the intact file passes
    with pytest.raises(ValueError, match="'pytorchvideo/data.pkl' fails its CRC-32 check"):
        hub.verify_zip_members(str(damaged))
