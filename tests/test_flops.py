"""Multiply-accumulate counts (`model_flops`) and the `keras-slowfast info` command.

Oracles: a tiny model counted by hand here; fvcore itself on the same tiny network written in
PyTorch (when torch and fvcore are installed); and the figures published with fvcore for the
PySlowFast / PyTorchVideo models. Three counting conventions appear in those figures (see
`keras_slowfast.flops`): convolutions and matmuls only (SlowFast 8x8 R50 65.71 and Slow 8x8
R50 54.52 GMACs at 256x256), plus BatchNorm at 5 MACs per element (the other PyTorchVideo
Kinetics-400 figures: 4x16 R50 36.69, 8x8 R101 127.20, 16x8 R101_50_50 215.61, Slow 4x16 R50
27.55), and plus BatchNorm at 2 per element (fvcore today on PySlowFast in eval mode: 50.58 at
224x224 and 66.07 at 256x256 for SlowFast 8x8 R50).
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_slowfast as ks
from keras_slowfast import cli
from keras_slowfast import hub as registry
from keras_slowfast.flops import FlopCount, model_flops
from keras_slowfast.models.functional import LeanFunctional
from keras_slowfast.models.layers import NonLocalAttention

REPO = Path(__file__).resolve().parents[1]


def _tiny_keras():
    """A small network with every counted kind of layer, input (4, 16, 16, 3)."""
    x_in = keras.Input((4, 16, 16, 3), name="clip")
    x = keras.layers.Conv3D(8, 3, strides=(1, 2, 2), name="conv_a")(x_in)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.ReLU(name="relu_a")(x)
    x = keras.layers.Conv3D(
        8, (1, 3, 3), padding="same", dilation_rate=(1, 2, 2), groups=2, name="conv_g"
    )(x)
    theta = keras.layers.Conv3D(4, 1, name="theta")(x)
    pooled = keras.layers.MaxPooling3D((1, 2, 2), name="pool")(x)
    phi = keras.layers.Conv3D(4, 1, name="phi")(pooled)
    g = keras.layers.Conv3D(4, 1, name="g")(pooled)
    y = NonLocalAttention(name="attention")([theta, phi, g])
    y = keras.layers.Conv3D(8, 1, name="conv_out")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Dense(6, name="dense_pos")(x)
    x = keras.layers.GlobalAveragePooling3D(name="gap")(x)
    out = keras.layers.Dense(5, name="fc")(x)
    return keras.Model(x_in, out, name="tiny")


# By hand, batch 1. conv_a: output (2, 7, 7) = 98 positions x 27 taps x 3 in x 8 out.
# conv_g: 98 positions x 9 taps x (8 / 2 groups) in x 8 out. theta, conv_out: 98 x 8 x 4.
# pool: (2, 3, 3) = 18 positions; phi, g: 18 x 8 x 4. attention: 2 matmuls of
# 98 queries x 18 keys x 4 channels. dense_pos: 98 positions x 8 x 6. fc: 6 x 5.
HAND = {
    "conv_a": 63_504,
    "conv_g": 28_224,
    "theta": 3_136,
    "phi": 576,
    "g": 576,
    "attention": 14_112,
    "conv_out": 3_136,
    "dense_pos": 4_704,
    "fc": 30,
}
# bn_a normalises (2, 7, 7, 8) = 784 elements.
BN_ELEMENTS = 784


def test_tiny_model_matches_hand_count():
    count = model_flops(_tiny_keras())
    assert isinstance(count, FlopCount)
    assert count.per_layer == HAND
    assert count.macs == sum(HAND.values()) == 117_998
    assert count.gmacs == pytest.approx(117_998e-9)
    assert count.input_shapes == ((1, 4, 16, 16, 3),)
    assert count.skipped == {
        "BatchNormalization": 1,
        "ReLU": 1,
        "MaxPooling3D": 1,
        "Add": 1,
        "GlobalAveragePooling3D": 1,
    }
    assert "conv_a" in count.summary() and count.summary(top=2).count("\n") == 2


def test_batchnorm_conventions_and_batch_size():
    model = _tiny_keras()
    base = sum(HAND.values())
    assert model_flops(model, batchnorm="inference").macs == base + 2 * BN_ELEMENTS
    assert model_flops(model, batchnorm="training").macs == base + 5 * BN_ELEMENTS
    assert model_flops(model, batch_size=3, batchnorm="inference").macs == 3 * (
        base + 2 * BN_ELEMENTS
    )
    # Neither scale nor offset: 1 and 4 per element (fvcore's non-affine counts).
    x_in = keras.Input((5, 7))
    plain = keras.Model(x_in, keras.layers.BatchNormalization(center=False, scale=False)(x_in))
    assert model_flops(plain, batchnorm="inference").macs == 35
    assert model_flops(plain, batchnorm="training").macs == 140


def test_other_layer_kinds_by_hand():
    x_in = keras.Input((10, 10, 4))
    a = keras.layers.Conv2DTranspose(6, 3, strides=2, name="up")(x_in)
    b = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x_in)
    c = keras.layers.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")(x_in)
    d = keras.layers.EinsumDense("...c,cd->...d", output_shape=7, name="ein")(x_in)
    e = keras.layers.Conv1D(3, 5, name="c1")(keras.layers.Reshape((100, 4))(x_in))
    model = keras.Model(x_in, [a, b, c, d, e])
    got = model_flops(model).per_layer
    assert got == {
        "up": 100 * 9 * 4 * 6,  # transposed: input positions x taps x in x out
        "dw": 64 * 9 * 4 * 2,
        "sep": 64 * 9 * 4 * 2 + 64 * 8 * 5,
        "ein": 100 * 4 * 7,
        "c1": 96 * 5 * 4 * 3,
    }


def test_nested_and_sequential_models():
    tiny = _tiny_keras()
    x_in = keras.Input((4, 16, 16, 3))
    outer = keras.Model(x_in, tiny(x_in))
    count = model_flops(outer)
    assert count.per_layer == {f"tiny/{k}": v for k, v in HAND.items()}
    seq = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, name="d")])
    assert model_flops(seq).per_layer == {"d": 30}


def test_bad_input():
    with pytest.raises(TypeError, match="Received: model=str"):
        model_flops("model")

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="functional or Sequential"):
        model_flops(Sub())
    with pytest.raises(ValueError, match="Sequential model must be built"):
        model_flops(keras.Sequential([keras.layers.Dense(3)]))
    x_in = keras.Input((None, 3))
    dynamic = keras.Model(x_in, keras.layers.Dense(2)(x_in))
    with pytest.raises(ValueError, match=r"must be static.*Received: input_shape=None"):
        model_flops(dynamic)
    with pytest.raises(ValueError, match=r"compatible.*Received: input_shape=\(4, 4\)"):
        model_flops(dynamic, (4, 4))
    with pytest.raises(ValueError, match=r"one shape per input.*Received: input_shape="):
        model_flops(dynamic, [(4, 3), (4, 3)])
    with pytest.raises(ValueError, match=r"keys must be among.*Received: input_shape="):
        model_flops(dynamic, {"nope": (4, 3)})
    with pytest.raises(ValueError, match="Received: batchnorm='eval'"):
        model_flops(dynamic, (4, 3), batchnorm="eval")
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        model_flops(dynamic, (4, 3), batch_size=0)
    assert model_flops(dynamic, (4, 3)).macs == 24


def test_layers_without_a_rule_warn():
    x_in = keras.Input((4, 8))
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(x_in, x_in)
    with pytest.warns(UserWarning, match="MultiHeadAttention"):
        count = model_flops(keras.Model(x_in, x))
    assert count.macs == 0


def test_detector_counts_the_head_per_box_and_not_roialign():
    model = ks.SlowFastR50AVA(width_per_group=8, classes=10)
    clip = (32, 64, 64, 3)
    one = model_flops(model, {"clip": clip, "boxes": (1, 4)})
    three = model_flops(model, {"clip": clip, "boxes": (3, 4)})
    # Head input: 8 * 32 slow + 8 * 32 / 8 fast = 288 features, 10 classes, per box.
    assert three.macs - one.macs == 2 * 288 * 10
    assert three.per_layer["head_projection"] == 3 * 288 * 10
    assert one.skipped["RoIAlign"] == 2
    with pytest.raises(ValueError, match="'boxes' must be static"):
        model_flops(model, {"clip": clip})


@pytest.fixture(scope="module")
def slowfast_8x8_r50():
    return registry.build("slowfast_8x8_r50", None)


def _close(value, published, rel=0.005):
    assert value == pytest.approx(published, rel=rel), (value, published)


def test_slowfast_8x8_r50_published_figures(slowfast_8x8_r50):
    model = slowfast_8x8_r50
    assert isinstance(model, LeanFunctional)  # What the builders return.
    # fvcore on PySlowFast today (BatchNorm in eval mode, 2 per element).
    _close(model_flops(model, (32, 224, 224, 3), batchnorm="inference").gmacs, 50.58)
    _close(model_flops(model, (32, 256, 256, 3), batchnorm="inference").gmacs, 66.07)
    # The SlowFast paper's / PyTorchVideo model zoo's count: no BatchNorm.
    count = model_flops(model, (32, 256, 256, 3))
    _close(count.gmacs, 65.71)
    # The head classifies the 2 x 2 positions of the 7 x 7 sliding pool at 256x256.
    assert count.per_layer["head_projection"] == 4 * 2304 * 400
    # With BatchNorm counted as in training mode the figure would be 66.60 (PyTorchVideo's
    # SSv2 / Charades convention), not the published Kinetics-400 65.71.
    assert model_flops(model, (32, 256, 256, 3), batchnorm="training").gmacs > 66.5


def test_slow_4x16_r50_published_figure():
    model = registry.build("slow_4x16_r50", None)
    _close(model_flops(model, (4, 256, 256, 3), batchnorm="training").gmacs, 27.55)


# (variant, frames, batchnorm convention, published GMACs at 256x256)
PUBLISHED_256 = [
    ("slowfast_4x16_r50", 32, "training", 36.69),
    ("slowfast_8x8_r50", 32, None, 65.71),
    ("slowfast_8x8_r101", 32, "training", 127.20),
    ("slowfast_16x8_r101_50_50", 64, "training", 215.61),
    ("slow_8x8_r50", 8, None, 54.52),
    ("slow_4x16_r50", 4, "training", 27.55),
]


@pytest.mark.large
@pytest.mark.parametrize("variant, frames, batchnorm, published", PUBLISHED_256)
def test_zoo_published_figures(variant, frames, batchnorm, published):
    model = registry.build(variant, None)
    _close(model_flops(model, (frames, 256, 256, 3), batchnorm=batchnorm).gmacs, published)


@pytest.mark.large
@pytest.mark.parametrize("variant", ks.presets.architecture_names())
def test_zoo_counts_every_variant(variant):
    spec = ks.presets.get_preset(variant)
    model = registry.build(variant, None)
    shape = (spec.protocol.num_frames, 224, 224, 3)
    if spec.kind == "detector":
        shape = {"clip": shape, "boxes": (1, 4)}
    count = model_flops(model, shape)
    assert count.macs > 0 and not any(v <= 0 for v in count.per_layer.values())
    # Every convolution and dense layer of the model is counted.
    kinds = (keras.layers.Conv3D, keras.layers.Dense, NonLocalAttention)
    assert len(count.per_layer) == sum(isinstance(layer, kinds) for layer in model.layers)


def _subprocess_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_info_command():
    result = subprocess.run(
        [sys.executable, "-m", "keras_slowfast.cli", "info", "slowfast_8x8_r50"],
        cwd=REPO,
        env=_subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = {}
    for line in result.stdout.splitlines()[1:]:
        label, _, text = line.strip().partition(":")
        lines[label] = text.strip()
    assert result.stdout.startswith(
        "slowfast_8x8_r50_kinetics400: SlowFast R50 classifier, 400 classes"
    )
    # SPEC's PyTorch parameter count, exactly.
    assert lines["parameters"].startswith("34,566,488 ")
    assert lines["clip"].startswith("32 frames, sampling rate 2; Slow pathway 8 frames")
    g224 = [float(v) for v in lines["GMACs 224x224"].replace("(", " ").split()[:2]]
    g256 = [float(v) for v in lines["GMACs 256x256"].replace("(", " ").split()[:2]]
    _close(g224[1], 50.58)
    _close(g256[0], 65.71)
    _close(g256[1], 66.07)
    assert lines["published"] == "k400 weights: kinetics400 top1 77.0"


def test_info_rejects_unknown_variant(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["info", "resnet50"])
    assert exit_info.value.code == 2
    assert "unknown model 'resnet50'" in capsys.readouterr().err


# --- fvcore itself on the tiny network, in PyTorch (optional) ------------------------------


def _fvcore_counts():
    torch = pytest.importorskip("torch")
    flop_count = pytest.importorskip("fvcore.nn.flop_count")
    nn = torch.nn

    class NonLocal(nn.Module):
        # PySlowFast's dot-product non-local core, with its einsum equations.
        def __init__(self):
            super().__init__()
            self.theta = nn.Conv3d(8, 4, 1)
            self.pool = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
            self.phi = nn.Conv3d(8, 4, 1)
            self.g = nn.Conv3d(8, 4, 1)
            self.out = nn.Conv3d(4, 8, 1)

        def forward(self, x):
            n, c, t, h, w = x.shape
            theta = self.theta(x).view(n, 4, -1)
            pooled = self.pool(x)
            phi = self.phi(pooled).view(n, 4, -1)
            g = self.g(pooled).view(n, 4, -1)
            affinity = torch.einsum("nct,ncp->ntp", (theta, phi)) / phi.shape[2]
            y = torch.einsum("ntg,ncg->nct", (affinity, g)).view(n, 4, t, h, w)
            return x + self.out(y)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_a = nn.Conv3d(3, 8, 3, stride=(1, 2, 2))
            self.bn_a = nn.BatchNorm3d(8)
            self.conv_g = nn.Conv3d(
                8, 8, (1, 3, 3), padding=(0, 2, 2), dilation=(1, 2, 2), groups=2
            )
            self.nonlocal_block = NonLocal()
            self.dense_pos = nn.Linear(8, 6)
            self.fc = nn.Linear(6, 5)

        def forward(self, x):
            x = self.conv_g(torch.relu(self.bn_a(self.conv_a(x))))
            x = self.nonlocal_block(x)
            x = self.dense_pos(x.permute(0, 2, 3, 4, 1))
            return self.fc(x.mean(dim=(1, 2, 3)))

    model = Tiny()
    clip = torch.zeros(1, 3, 4, 16, 16)

    def by_operator(training):
        model.train(training)
        analysis = flop_count.FlopCountAnalysis(model, (clip,))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analysis.by_operator()

    inference, training = by_operator(False), by_operator(True)
    # The operators fvcore counted here: no pooling, ReLU, add, mean or division.
    assert set(inference) == {"conv", "batch_norm", "einsum", "linear"}
    return {
        None: sum(inference.values()) - inference["batch_norm"],
        "inference": sum(inference.values()),
        "training": sum(training.values()),
    }


def test_fvcore_counts_the_same_network_alike():
    reference = _fvcore_counts()
    model = _tiny_keras()
    for batchnorm, macs in reference.items():
        assert model_flops(model, batchnorm=batchnorm).macs == macs, batchnorm


def test_export():
    assert ks.model_flops is model_flops and "model_flops" in ks.__all__
    assert np.isclose(model_flops(_tiny_keras()).gmacs, 1.17998e-4)


@pytest.mark.large
def test_fvcore_on_pytorchvideo_slowfast_r50_counts_the_same():
    # The whole network: fvcore on PyTorchVideo's SlowFast 8x8 R50 (its fusion kernel 7, as
    # the Kinetics checkpoint), counted to the multiply-add.
    torch = pytest.importorskip("torch")
    flop_count = pytest.importorskip("fvcore.nn.flop_count")
    slowfast = pytest.importorskip("pytorchvideo.models.slowfast")
    reference = slowfast.create_slowfast(
        model_depth=50, model_num_class=400, slowfast_fusion_conv_kernel_size=(7, 1, 1)
    )
    assert sum(p.numel() for p in reference.parameters()) == 34_566_488
    model = registry.build("slowfast_8x8_r50", None)
    for size in (224, 256):
        clip = [torch.zeros(1, 3, 8, size, size), torch.zeros(1, 3, 32, size, size)]
        counts = {}
        for training in (False, True):
            reference.train(training)
            analysis = flop_count.FlopCountAnalysis(reference, (clip,))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            counts[training] = analysis.by_operator()
        expected = {
            None: counts[False]["conv"] + counts[False]["linear"],
            "inference": sum(counts[False].values()),
            "training": sum(counts[True].values()),
        }
        for batchnorm, macs in expected.items():
            got = model_flops(model, (32, size, size, 3), batchnorm=batchnorm).macs
            assert got == macs, (size, batchnorm)
