"""The `keras-slowfast` command and video classification on real videos.

A narrow Slow 8x8 R50 golden checkpoint (width 8, 10 classes) keeps these fast; its class
names are `class_<i>`. The test-view reference is written here from the protocol and the
golden frame indices.
"""

import importlib.util
import json
import math
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from weights_mirror import make_mirror

import keras_slowfast as ks
from keras_slowfast import cli, presets
from keras_slowfast import hub as registry
from keras_slowfast.inference import classify_video

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data" / "sample.mp4"
_LINE = re.compile(r"^\s*(\d+)\.\s+([0-9.]+)\s+(\S+)\s+\(class (\d+)\)$")


@pytest.fixture(scope="module")
def slow_checkpoint(golden):
    return golden / "models" / "slow_8x8_r50" / "pyslowfast.pyth"


@pytest.fixture(scope="module")
def slow_logits_model(slow_checkpoint):
    # Logits show any difference in the chosen pixels; probabilities of this random narrow
    # model are saturated.
    return registry.build("slow_8x8_r50", slow_checkpoint, classifier_activation=None)


@pytest.fixture(scope="module")
def slow_model(slow_checkpoint):
    """The narrow golden model with its softmax, as `classify` builds it; built once."""
    return registry.build("slow_8x8_r50", slow_checkpoint)


@pytest.fixture(scope="module")
def golden_views(golden):
    videos = json.loads((golden / "sampling" / "test_views.json").read_text())["videos"]

    def views(name, setting="views_8x8"):
        value = videos[name][setting]
        return json.loads(value) if isinstance(value, str) else value

    return views


def _reference_views(video, indices, crops=(0, 1, 2)):
    """The protocol, independently: frames in decode order, short side 256, 256 crops."""
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    out = []
    for clip_indices in indices:
        clip = np.stack([frames[i] for i in clip_indices])
        h, w = clip.shape[1:3]
        size = (256, math.floor(w / h * 256)) if h <= w else (math.floor(h / w * 256), 256)
        clip = np.stack([cv2.resize(f, size[::-1], interpolation=cv2.INTER_LINEAR) for f in clip])
        long_side, short_side = max(size), min(size)
        across = math.ceil((short_side - 256) / 2)
        for k in crops:
            along = (0, math.ceil((long_side - 256) / 2), long_side - 256)[k]
            y, x = (across, along) if size[0] <= size[1] else (along, across)
            out.append(clip[:, y : y + 256, x : x + 256])
    return np.stack(out)


@pytest.mark.parametrize("name", ["bikes.mp4", "k00.mp4"])
def test_30_views_follow_the_protocol(videos, golden_views, slow_logits_model, name):
    got = classify_video(slow_logits_model, videos / name, "slow_8x8_r50", views=30)
    clips = _reference_views(videos / name, golden_views(name))
    assert len(clips) == 30
    expected = np.mean(slow_logits_model.predict(clips, batch_size=6, verbose=0), axis=0)
    # Float reductions differ by ~1e-5 here; one frame off moves the logits by ~1.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)


def test_single_view_is_the_centred_clip_and_crop(videos, golden_views, slow_logits_model):
    # The centred clip starts at (N - S) / 2: that is temporal view 5 of the 10-view protocol.
    got = classify_video(slow_logits_model, videos / "bikes.mp4", "slow_8x8_r50", views=1)
    clip = _reference_views(videos / "bikes.mp4", golden_views("bikes.mp4")[5:6], crops=(1,))
    expected = slow_logits_model.predict(clip, verbose=0)[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)


def _parse(output):
    rows = [_LINE.match(line) for line in output.splitlines()]
    return [(int(m[1]), float(m[2]), m[3], int(m[4])) for m in rows if m]


def test_classify_prints_the_top_labels(capsys, slow_checkpoint, slow_model):
    args = ["classify", str(SAMPLE), "--model", "slow_8x8_r50", "--weights", str(slow_checkpoint)]
    assert cli.main([*args, "--views", "1", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("sample.mp4: slow_8x8_r50")
    rows = _parse(out)
    probs = classify_video(slow_model, SAMPLE, "slow_8x8_r50", views=1)
    best = np.argsort(-probs, kind="stable")[:3]
    assert [r[0] for r in rows] == [1, 2, 3]
    assert [r[3] for r in rows] == best.tolist()
    assert [r[2] for r in rows] == [f"class_{i}" for i in best]
    np.testing.assert_allclose([r[1] for r in rows], probs[best], atol=5e-5)


def test_classify_with_named_weights_through_a_mirror(golden, tmp_path, monkeypatch, capsys):
    mirror = make_mirror(golden, tmp_path / "mirror")
    try:
        monkeypatch.setenv(registry.MIRROR_ENV, mirror.url)
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
        # The README's command, with the narrow stand-in for the published weights.
        assert cli.main(["classify", str(SAMPLE), "--model", "slow_8x8_r50", "--views", "1"]) == 0
        assert mirror.requests == ["/pyslowfast/model_zoo/kinetics400/SLOWONLY_8x8_R50.pkl"]
        rows = _parse(capsys.readouterr().out)
        assert len(rows) == 5 and all(r[2].startswith("class_") for r in rows)
    finally:
        mirror.close()


def test_console_command_runs_in_a_fresh_process(slow_checkpoint):
    command = [sys.executable, "-m", "keras_slowfast.cli", "classify", str(SAMPLE)]
    command += ["--model", "slow_8x8_r50", "--weights", str(slow_checkpoint)]
    command += ["--views", "1", "--top", "2", "--cpu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [r[0] for r in _parse(result.stdout)] == [1, 2]


def test_convert_writes_loadable_weights(golden, tmp_path, capsys):
    folder = golden / "models" / "slow_8x8_r50"
    output = tmp_path / "slow.weights.h5"
    assert (
        cli.main(["convert", str(folder / "caffe2.pkl"), str(output), "--model", "slow_8x8_r50"])
        == 0
    )
    out = capsys.readouterr().out
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", out, flags=re.M))
    assert fields["format"] == "caffe2"
    assert fields["parameters"] == f"{json.loads((folder / 'meta.json').read_text())['params']:,}"
    with open(folder / "caffe2.pkl", "rb") as f:  # the project's own fixture: trusted
        blobs = pickle.load(f, encoding="latin1")["blobs"]
    solver = ("_momentum", "lr", "model_iter")
    assert int(fields["tensors"]) == sum(1 for k in blobs if not k.endswith(solver))
    assert fields["check"].endswith("-> OK")
    model = ks.SlowR50(
        width_per_group=8,
        classes=10,
        train_crop_size=64,
        include_preprocessing=False,
        weights=str(output),
    )
    io = np.load(folder / "io.npz")
    clip = np.transpose(io["train_crop/fast"].astype(np.float32), (0, 2, 3, 4, 1))
    np.testing.assert_allclose(model.predict_on_batch(clip), io["train_crop/output"], atol=1e-4)
    with pytest.raises(ValueError, match="does not fit slow_8x8_r50 built with its defaults"):
        registry.build("slow_8x8_r50", output)  # a width-64 model: the file does not fit


def test_user_errors_exit_with_status_2(golden, tmp_path, capsys):
    ava = golden / "models" / "ava_slowfast_32x2_r101_50_50" / "caffe2.pkl"
    out = str(tmp_path / "x.weights.h5")
    assert cli.main(["convert", str(ava), out, "--model", "slow_8x8_r50", "--skip-check"]) == 2
    assert "does not match" in capsys.readouterr().err
    assert not Path(out).exists()
    assert cli.main(["classify", str(SAMPLE), "--model", "ava_slowfast_32x2_r101_50_50"]) == 2
    assert "needs a classifier preset" in capsys.readouterr().err
    assert cli.main(["classify", str(tmp_path / "missing.mp4")]) == 2
    assert "Received: video=" in capsys.readouterr().err


def test_weights_listing(capsys):
    assert cli.main(["weights"]) == 0
    out = capsys.readouterr().out
    for preset in presets.PRESETS:
        assert preset.name in out
        if preset.checkpoint is not None:
            assert preset.checkpoint.path in out


def test_write_tfrecords_is_handed_over(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["write-tfrecords", "--help"])
    assert exit_info.value.code == 0
    assert "--num-shards" in capsys.readouterr().out


def test_conversion_script_from_the_published_name(golden, tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location(
        "convert_checkpoint", REPO / "weights_conversion" / "convert_checkpoint.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    mirror = make_mirror(golden, tmp_path / "mirror")
    try:
        monkeypatch.setenv(registry.MIRROR_ENV, mirror.url)
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
        output = tmp_path / "slow_k400.weights.h5"
        args = ["--model", "slow_8x8_r50", "--weights", "k400", "--output", str(output)]
        assert script.main([*args, "--video", str(SAMPLE)]) == 0
        assert len(mirror.requests) == 1
    finally:
        mirror.close()
    out = capsys.readouterr().out
    assert f"source:     {mirror.url}/pyslowfast/model_zoo/kinetics400/SLOWONLY_8x8_R50.pkl" in out
    assert "check:" in out and out.count("  class_") == 5
    # The copy is the cached conversion, byte for byte.
    cached = registry.cache_paths("slow_8x8_r50_kinetics400")[0]
    assert output.read_bytes() == Path(cached).read_bytes()


def test_classify_in_bfloat16(capsys, slow_checkpoint, slow_model):
    """`--precision bfloat16`: a bfloat16 backbone, float32 probabilities, same top class."""
    args = ["classify", str(SAMPLE), "--model", "slow_8x8_r50", "--weights", str(slow_checkpoint)]
    assert cli.main([*args, "--views", "1", "--top", "3", "--precision", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert "bfloat16" in out.splitlines()[0]
    rows = _parse(out)
    model = slow_model
    assert model.get_layer("s1_pathway0_stem_conv").compute_dtype == "float32"
    bf16 = registry.build("slow_8x8_r50", slow_checkpoint, dtype="mixed_bfloat16")
    assert bf16.get_layer("s1_pathway0_stem_conv").compute_dtype == "bfloat16"
    probs = classify_video(model, SAMPLE, "slow_8x8_r50", views=1)
    assert rows[0][3] == int(np.argmax(probs))
    assert abs(rows[0][1] - probs.max()) < 0.05
