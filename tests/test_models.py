"""Builders: architecture facts, arguments, serialisation and strict checkpoint loading."""

import keras
import numpy as np
import pytest
from helpers import NARROW_ARGS, forward, keras_layout, softmax

import keras_slowfast
from keras_slowfast.weights import transfer as loading

# SPEC.md: parameter counts of the full-size PyTorch models (400 classes, 80 for AVA).
FULL_SIZE_PARAMS = [
    ("SlowFastR50", dict(variant="4x16"), 34_480_216),
    ("SlowFastR50", dict(variant="8x8"), 34_566_488),
    ("SlowFastR50", dict(variant="8x8", nonlocal_blocks=True), 41_838_680),
    ("SlowFastR101", dict(variant="8x8"), 62_826_968),
    ("SlowFastR101", dict(variant="16x8"), 53_774_808),
    ("SlowFastR101", dict(variant="16x8", nonlocal_blocks=True), 60_080_088),
    ("SlowR50", dict(variant="8x8"), 32_454_096),
    ("SlowFastR101AVA", dict(), 59_342_488),
]


def trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("builder,kwargs,expected", FULL_SIZE_PARAMS)
def test_full_size_parameter_counts(builder, kwargs, expected):
    model = getattr(keras_slowfast, builder)(**kwargs)
    assert trainable_params(model) == expected


def random_clip(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def test_layer_names_mirror_pyslowfast(narrow_model):
    model = narrow_model()
    names = {layer.name for layer in model.layers}
    for expected in (
        "s1_pathway0_stem_conv",
        "s1_pathway1_stem_bn",
        "s1_fuse_conv_f2s",
        "s2_pathway0_res0_branch1",
        "s3_pathway0_res2_branch2_b",
        "s5_pathway1_res2_branch2_c_bn",
        "head_projection",
    ):
        assert expected in names


def test_preprocessing_inside_equals_normalised_input(narrow_model):
    with_pre = narrow_model()
    without = narrow_model(include_preprocessing=False)
    without.set_weights(with_pre.get_weights())
    clip = random_clip((2, 8, 64, 64, 3))
    normalised = (clip.astype(np.float32) / 255.0 - 0.45) / 0.225
    a = forward(with_pre, clip)
    b = forward(without, normalised)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)


def test_any_input_size_and_fully_convolutional_head(narrow_model):
    model = narrow_model(input_shape=None, train_crop_size=64, dropout_rate=0.0)
    assert model.input_shape == (None, 8, None, None, 3)
    small = random_clip((1, 8, 64, 64, 3))
    large = random_clip((1, 8, 96, 128, 3), seed=1)
    probs_small = forward(model, small)
    # At 96x128 the res5 map is 3x4; the head classifies the 2x3 windows of 2x2 and averages
    # the per-window probabilities: check it against windows computed here.
    probs_large, logits, *feats = forward(
        keras.Model(
            model.input,
            [
                model.output,
                model.get_layer("head_projection").output,
                model.get_layer("s5_pathway0_res2_relu").output,
                model.get_layer("s5_pathway1_res2_relu").output,
            ],
        ),
        large,
    )
    assert probs_small.shape == probs_large.shape == (1, 5)
    assert logits.shape == (1, 1, 2, 3, 5)
    dense = model.get_layer("head_projection")
    kernel, bias = (np.asarray(w) for w in dense.weights)
    expected = []
    for i in range(2):
        for j in range(3):
            pooled = np.concatenate(
                [f[:, :, i : i + 2, j : j + 2].mean(axis=(1, 2, 3)) for f in feats], -1
            )
            expected.append(softmax(pooled @ kernel + bias))
    np.testing.assert_allclose(probs_large, np.mean(expected, 0), rtol=1e-4, atol=1e-6)


def test_global_pooling_option_and_small_inputs(narrow_model):
    model = narrow_model(input_shape=None, train_crop_size=None)
    out = forward(model, random_clip((1, 8, 96, 128, 3)))
    assert out.shape == (1, 5)


@pytest.mark.parametrize("pooling,shape", [("avg", (1, 288)), ("max", (1, 288))])
def test_include_top_false_pooling(narrow_model, pooling, shape):
    model = narrow_model(include_top=False, pooling=pooling)
    assert forward(model, random_clip((1, 8, 64, 64, 3))).shape == shape


def test_include_top_false_features(narrow_model):
    model = narrow_model(include_top=False)
    slow, fast = forward(model, random_clip((1, 8, 64, 64, 3)))
    assert slow.shape == (1, 2, 2, 2, 256)
    assert fast.shape == (1, 8, 2, 2, 32)
    single = keras_slowfast.SlowR50(
        width_per_group=8, include_top=False, input_shape=(8, 64, 64, 3)
    )
    assert single.output_shape == (None, 8, 2, 2, 256)


@pytest.mark.parametrize(
    "kwargs,arg",
    [
        (dict(depth=34), "depth"),
        (dict(alpha=0), "alpha"),
        (dict(num_frames=2, alpha=4), "num_frames"),
        (dict(pooling="mean"), "pooling"),
        (dict(classes=0), "classes"),
        (dict(dropout_rate=1.5), "dropout_rate"),
        (dict(input_shape=(8, 64, 64)), "input_shape"),
        (dict(input_shape=(16, 64, 64, 3)), "input_shape"),
        (dict(nonlocal_location=[[[9], []], [[], []], [[], []], [[], []]]), "nonlocal_location"),
        (dict(num_block_temp_kernel=[[3, 3], [4, 4], [7, 7], [3, 3]]), "num_block_temp_kernel"),
        (dict(nonlocal_instantiation="gaussian"), "nonlocal_instantiation"),
        (dict(weights="missing_file.weights.h5"), "weights"),
        (dict(width_per_group=4), "width_per_group"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, arg):
    args = dict(width_per_group=8, classes=5, num_frames=8)
    args.update(kwargs)
    with pytest.raises((ValueError, FileNotFoundError), match=arg):
        keras_slowfast.SlowFast(**args)


def test_variant_arguments_are_checked():
    with pytest.raises(ValueError, match="variant"):
        keras_slowfast.SlowFastR50(variant="32x2")
    with pytest.raises(ValueError, match="nonlocal_blocks"):
        keras_slowfast.SlowFastR50(variant="4x16", nonlocal_blocks=True)
    with pytest.raises(ValueError, match="variant"):
        keras_slowfast.SlowR50(variant="2x32")


def test_keras_save_load_round_trip(tmp_path):
    model = keras_slowfast.SlowFastR50(
        nonlocal_blocks=True, width_per_group=8, classes=5, input_shape=(32, 64, 64, 3)
    )
    clip = random_clip((1, 32, 64, 64, 3))
    expected = forward(model, clip)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    np.testing.assert_array_equal(forward(restored, clip), expected)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(forward(clone, clip), expected)


@pytest.mark.large  # over the default suite's time budget
def test_detector_save_load_and_variable_boxes(tmp_path):
    model = keras_slowfast.SlowFastR50AVA(width_per_group=8, classes=6)
    clip = random_clip((2, 32, 64, 96, 3))
    boxes = np.array(
        [
            [[0.1, 0.1, 0.5, 0.9], [0.4, 0.2, 1.0, 1.0], [0, 0, 0, 0]],
            [[0.0, 0.0, 1.0, 1.0], [0, 0, 0, 0], [0, 0, 0, 0]],
        ],
        np.float32,
    )
    out = model.predict({"clip": clip, "boxes": boxes}, verbose=0)
    assert out.shape == (2, 3, 6)
    assert np.all(out[0, 2] == 0) and np.all(out[1, 1:] == 0)
    assert np.all(out[0, :2] > 0)
    # A box's scores do not depend on the other boxes or on the padding.
    single = model.predict({"clip": clip[:1], "boxes": boxes[:1, 1:2]}, verbose=0)
    np.testing.assert_allclose(single[0, 0], out[0, 1], rtol=1e-5, atol=1e-6)
    path = tmp_path / "detector.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(restored.predict({"clip": clip, "boxes": boxes}, verbose=0), out)


def test_config_round_trip_of_custom_layers():
    layers = [
        keras_slowfast.ClipNormalization(mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4)),
        keras_slowfast.TemporalSubsample(alpha=8),
        keras_slowfast.NonLocalAttention("softmax"),
        keras_slowfast.SlidingAveragePooling3D((4, None, 7)),
        keras_slowfast.RoIAlign(output_size=(5, 3), spatial_scale=0.25, aligned=False),
    ]
    for layer in layers:
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config


def test_weights_h5_round_trip(narrow_model, tmp_path):
    model = narrow_model()
    path = tmp_path / "narrow.weights.h5"
    model.save_weights(path)
    clip = random_clip((1, 8, 64, 64, 3))
    restored = keras_slowfast.SlowFast(**dict(NARROW_ARGS, weights=str(path)))
    np.testing.assert_array_equal(forward(restored, clip), forward(model, clip))


class TestStrictLoading:
    @pytest.fixture
    def state(self, golden):
        path = golden / "models" / "slowfast_8x8_r50" / "pyslowfast.pyth"
        state, _ = loading.checkpoint_to_pyslowfast_state(path)
        return state

    @pytest.fixture(scope="class")
    def model(self):
        # Shared by the class: every load below fails, and fails before assigning anything.
        return keras_slowfast.SlowFastR50(width_per_group=8, classes=10)

    def test_unused_tensor_is_listed(self, state, model):
        state = dict(state)
        state["extra.layer.weight"] = np.zeros(3, np.float32)
        with pytest.raises(loading.CheckpointMismatchError, match=r"extra\.layer\.weight"):
            loading.transfer_state(model, state)

    def test_missing_tensor_is_listed(self, state, model):
        state = dict(state)
        del state["s3.pathway1_res2.branch2.b_bn.running_var"]
        with pytest.raises(loading.CheckpointMismatchError) as info:
            loading.transfer_state(model, state)
        assert "s3.pathway1_res2.branch2.b_bn.running_var" in str(info.value)
        assert "s3_pathway1_res2_branch2_b_bn/moving_variance" in str(info.value)

    def test_shape_mismatch_names_both_sides(self, state, model):
        state = dict(state)  # a 7-class head on the 10-class network
        state["head.projection.weight"] = state["head.projection.weight"][:7]
        state["head.projection.bias"] = state["head.projection.bias"][:7]
        with pytest.raises(loading.CheckpointMismatchError) as info:
            loading.transfer_state(model, state)
        message = str(info.value)
        assert "head.projection.weight" in message and "(7, 288)" in message
        assert "head_projection/kernel" in message and "(288, 10)" in message

    def test_failed_load_leaves_model_untouched(self, state, model):
        before = [np.array(w) for w in model.get_weights()]
        state = dict(state)
        state["unexpected"] = np.zeros(1)
        with pytest.raises(loading.CheckpointMismatchError):
            loading.transfer_state(model, state)
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)

    def test_wrong_architecture_is_an_error(self, golden):
        path = golden / "models" / "slowfast_8x8_r50" / "pyslowfast.pyth"
        with pytest.raises(loading.CheckpointMismatchError):
            keras_slowfast.load_pyslowfast(
                path, config="slowfast_4x16_r50", width_per_group=8, classes=10
            )

    def test_caffe2_without_config_is_an_error(self, golden):
        path = golden / "models" / "slowfast_8x8_r50" / "caffe2.pkl"
        with pytest.raises(ValueError, match="config"):
            keras_slowfast.load_pyslowfast(path)

    def test_unknown_caffe2_blob_is_an_error(self):
        with pytest.raises(loading.CheckpointMismatchError, match="conv9_w"):
            loading.caffe2_blobs_to_state({"conv9_w": np.zeros(1), "lr": np.zeros(1)})

    def test_bad_loader_arguments(self, golden, tmp_path):
        path = golden / "models" / "ptv_slowfast_r50" / "pytorchvideo.pyth"
        with pytest.raises(ValueError, match="arch"):
            keras_slowfast.load_pytorchvideo(path, arch="x3d_m")
        with pytest.raises(ValueError, match="path"):
            keras_slowfast.load_pyslowfast(tmp_path / "absent.pyth")
        with pytest.raises(ValueError, match="config"):
            keras_slowfast.load_pyslowfast(
                golden / "models" / "slowfast_8x8_r50" / "caffe2.pkl", config="{not: [yaml"
            )


def test_variant_name_as_config_matches_embedded_config(golden):
    """A variant name as `config` builds the network the embedded config describes: the
    Caffe2 file loaded with the name gives the reference's outputs (test_parity.py loads the
    same weights through the embedded config of the `.pyth`)."""
    folder = golden / "models" / "slowfast_nln_8x8_r50"
    io = np.load(folder / "io.npz")
    model = keras_slowfast.load_pyslowfast(
        folder / "caffe2.pkl",
        config="slowfast_nln_8x8_r50",
        width_per_group=8,
        classes=10,
        train_crop_size=64,
        include_preprocessing=False,
    )
    for crop in ("train_crop", "test_crop"):
        scale = np.abs(io[f"{crop}/logits"]).max()
        got = forward(model, keras_layout(io[f"{crop}/fast"]))
        assert np.abs(got - io[f"{crop}/output"]).max() < 1e-4 * scale, crop
