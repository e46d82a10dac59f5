"""Parity with PyTorchVideo's Slow-only builders (`create_resnet`, `create_resnet_with_roi_head`).

The oracle is PyTorchVideo itself: narrow copies of the hub networks `slow_r50` and
`slow_r50_detection` (stem width 8, random weights and BatchNorm statistics, eval mode,
float64) are saved as PyTorchVideo checkpoints (`{"model_state": state_dict}`) and loaded
back through `load_pytorchvideo` and `from_preset(checkpoint=...)`; both sides score the same
random clip. Skipped when PyTorch or PyTorchVideo is not installed.

PyTorchVideo's RoI head takes `torchvision.ops.RoIAlign`. A CUDA build of torchvision over a
CPU-only PyTorch cannot load its compiled operators and fails at import while registering
their meta kernels; `_import_torchvision_ops` then imports it without those registrations, and
`roi_align` runs torchvision's own pure-PyTorch implementation (its documented fallback when
the compiled operators are absent).
"""

import sys
import types

import keras
import numpy as np
import pytest

import keras_slowfast
from keras_slowfast.weights import name_maps
from keras_slowfast.weights.transfer import (
    CheckpointMismatchError,
    pytorchvideo_state_to_pyslowfast,
)

torch = pytest.importorskip("torch")

TOL = 1e-4
WIDTH = 8


def _import_torchvision_ops():
    try:
        import torchvision.ops  # noqa: F401
    except ImportError:
        pytest.skip(
            "torchvision (needed by pytorchvideo.models.head) is not installed",
            allow_module_level=True,
        )
    except (RuntimeError, OSError):
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules[name] = types.ModuleType(name)
        import torchvision.ops  # noqa: F401


_import_torchvision_ops()
ptv_resnet = pytest.importorskip("pytorchvideo.models.resnet")


def _randomize(model, seed):
    """Random weights and BatchNorm statistics of moderate scale, float64, eval mode."""
    g = torch.Generator().manual_seed(seed)
    model = model.double()
    # Small scales on each residual branch's last BatchNorm (`norm_c`) keep the activations
    # of the 16 blocks from growing, so the logits stay moderate and softmax / sigmoid
    # outputs are not saturated.
    last_norms = {id(m.norm_c) for m in model.modules() if hasattr(m, "norm_c")}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv3d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=g, dtype=torch.float64)
                    * (2.0 / fan_in) ** 0.5
                )
            elif isinstance(module, torch.nn.BatchNorm3d):
                n = module.num_features
                low, high = (0.05, 0.3) if id(module) in last_norms else (0.5, 1.5)
                module.weight.copy_(
                    low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)
                )
                module.bias.copy_(0.1 * torch.randn(n, generator=g, dtype=torch.float64))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=g, dtype=torch.float64))
                module.running_var.copy_(0.5 + torch.rand(n, generator=g, dtype=torch.float64))
                module.num_batches_tracked.fill_(7)
            elif isinstance(module, torch.nn.Linear):
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=g, dtype=torch.float64)
                    * module.in_features**-0.5
                )
                module.bias.copy_(
                    0.1 * torch.randn(module.bias.shape, generator=g, dtype=torch.float64)
                )
    return model.eval()


def _save(model, path):
    # As the published files: float32 tensors under "model_state".
    state = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"model_state": state}, path)
    return path


def _to_float32_reference(model):
    """The float64 reference with the float32-rounded weights that the checkpoint holds."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.float().double())
    return model


def _max_rel_error(got, expected, scale):
    return float(np.max(np.abs(np.asarray(got, np.float64) - expected)) / scale)


@pytest.fixture(scope="module")
def slow_r50(tmp_path_factory):
    # The hub's slow_r50 arguments, narrowed.
    model = ptv_resnet.create_resnet(
        stem_conv_kernel_size=(1, 7, 7),
        head_pool_kernel_size=(8, 7, 7),
        model_depth=50,
        stem_dim_out=WIDTH,
        model_num_class=10,
    )
    model = _to_float32_reference(_randomize(model, 0))
    path = _save(model, tmp_path_factory.mktemp("ptv") / "SLOW_8x8_R50.pyth")
    # One 224 crop of 8 frames: the head's (8, 7, 7) pool covers the whole feature map.
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 224, 224))
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    return path, x, logits


@pytest.fixture(scope="module")
def slow_r50_detection(tmp_path_factory):
    model = ptv_resnet.create_resnet_with_roi_head(stem_dim_out=WIDTH, model_num_class=10)
    model = _to_float32_reference(_randomize(model, 2))
    path = _save(model, tmp_path_factory.mktemp("ptv") / "SLOW_4x16_R50_DETECTION.pyth")
    height, width = 96, 128
    x = np.random.default_rng(3).normal(size=(2, 3, 4, height, width))
    # PyTorchVideo's boxes: (batch index, x1, y1, x2, y2) in input pixels.
    rows = np.array(
        [
            [0, 8.0, 4.0, 100.0, 90.0],
            [0, 40.5, 20.25, 70.0, 60.0],
            [1, 0.0, 0.0, 127.0, 95.0],
        ]
    )
    with torch.no_grad():
        scores = model(torch.from_numpy(x), torch.from_numpy(rows)).numpy()
        # The same network without its final sigmoid gives the logits.
        activation = model.detection_head.activation
        model.detection_head.activation = None
        logits = model(torch.from_numpy(x), torch.from_numpy(rows)).numpy()
        model.detection_head.activation = activation
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), scores, rtol=1e-12)
    return path, x, rows, scores, logits


def _keras_clip(x):
    return np.transpose(x, (0, 2, 3, 4, 1)).astype(np.float32)


def test_state_dict_keys_all_map(slow_r50, slow_r50_detection):
    for path in (slow_r50[0], slow_r50_detection[0]):
        state = torch.load(path, map_location="cpu")["model_state"]
        assert name_maps.pytorchvideo_builder(state) == "create_resnet"
        out = pytorchvideo_state_to_pyslowfast(state)
        assert len(out) == len(state)
        assert "s5.pathway0_res2.branch2.c_bn.running_var" in out
        assert "head.projection.weight" in out


def test_unknown_key_is_reported(slow_r50):
    state = torch.load(slow_r50[0], map_location="cpu")["model_state"]
    state = dict(state, **{"blocks.6.proj.weight": state["blocks.5.proj.weight"]})
    with pytest.raises(CheckpointMismatchError, match="blocks.6.proj.weight"):
        pytorchvideo_state_to_pyslowfast(state)


def test_slow_r50_load_pytorchvideo_matches_logits(slow_r50):
    path, x, logits = slow_r50
    model = keras_slowfast.load_pytorchvideo(path, "slow_r50", include_preprocessing=False)
    assert model.output_shape == (None, 10)
    got = model.predict(_keras_clip(x), verbose=0)
    scale = np.abs(logits).max()
    err = _max_rel_error(got, logits, scale)
    print(f"slow_r50 load_pytorchvideo: max error {err:.2e} of the largest |logit| ({scale:.3g})")
    assert err < TOL


def test_slow_r50_from_preset_matches_softmax(slow_r50):
    path, x, logits = slow_r50
    model = keras_slowfast.from_preset(
        "slow_8x8_r50_kinetics400_ptv", checkpoint=path, include_preprocessing=False
    )
    got = model.predict(_keras_clip(x), verbose=0)
    # One head position at a 224 crop: the preset's softmax of the logits.
    expected = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    err = float(np.max(np.abs(got - expected)))
    print(f"slow_8x8_r50_kinetics400_ptv from_preset: max probability error {err:.2e}")
    assert err < TOL
    assert np.argmax(got, 1).tolist() == np.argmax(logits, 1).tolist()


def test_slow_r50_detection_matches(slow_r50_detection):
    path, x, rows, scores, logits = slow_r50_detection
    clip = _keras_clip(x)
    height, width = clip.shape[2:4]
    # Keras boxes: (x1, y1, x2, y2) as fractions of the frame, zero rows for padding.
    boxes = np.zeros((2, 2, 4), np.float32)
    slots, filled = [], [0, 0]
    for row in rows:
        b = int(row[0])
        boxes[b, filled[b]] = row[1:] / np.array([width, height, width, height])
        slots.append((b, filled[b]))
        filled[b] += 1
    scale = np.abs(logits).max()
    for model in (
        keras_slowfast.load_pytorchvideo(path, "slow_r50_detection", include_preprocessing=False),
        keras_slowfast.from_preset(
            "ava_slow_4x16_r50_v2.2_ptv", checkpoint=path, include_preprocessing=False
        ),
    ):
        probe = keras.Model(
            model.input, [model.output, model.get_layer("head_projection").output]
        )
        out, out_logits = probe.predict({"clip": clip, "boxes": boxes}, verbose=0)
        got = np.stack([out[b, j] for b, j in slots])
        got_logits = np.stack([out_logits[b, j] for b, j in slots])
        err_logits = _max_rel_error(got_logits, logits, scale)
        err = float(np.max(np.abs(got - scores)))
        print(
            f"{model.name}: max logit error {err_logits:.2e} of the largest |logit| "
            f"({scale:.3g}), max score error {err:.2e}"
        )
        assert err_logits < TOL
        assert err < TOL
        assert np.all(out[1, 1:] == 0)


def test_wrong_pathway_count_is_reported(slow_r50):
    with pytest.raises(CheckpointMismatchError, match="one pathway"):
        keras_slowfast.load_pytorchvideo(slow_r50[0], "slowfast_r50")
