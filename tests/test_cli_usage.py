"""The `keras-slowfast` command as a new user meets it, each run in a subprocess.

A quiet and quick start (`--help` without TensorFlow, no C++ start-up logs), progress on
stderr and results on stdout, usage errors that name the command line's flags, and every
check that can fail (flags without effect, optional packages, the model's kind, the input
video) done before any model is built. The narrow Slow 8x8 R50 golden checkpoint (width 8,
10 classes) and the narrow AVA detector of the golden AVA data keep the runs short.
"""

import argparse
import csv
import io
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from weights_mirror import make_mirror

from keras_slowfast import cli, presets
from keras_slowfast.cli.common import DEFAULT_DETECTOR
from keras_slowfast.progress import ProgressBar

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data" / "sample.mp4"  # 10 s, 30 fps, 340x256
# A C++ log line of TensorFlow / absl (severity letter, date) and absl's early-logging notice.
CPP_LOG = re.compile(r"^[IWEF]\d{4} ", re.M)
ABSL_NOTICE = "absl::InitializeLog"
ROW = re.compile(r"^\s+\d+\.\d\d\s+\d+\.\d\d  class_\d \d\.\d{3}, class_\d \d\.\d{3}$")
# Runs the command as its console script does, then says whether TensorFlow was imported.
CONSOLE = (
    "import sys\n"
    "sys.argv[0] = 'keras-slowfast'\n"
    "try:\n"
    "    from keras_slowfast.cli import main\n"
    "    status = main()\n"
    "finally:\n"
    "    sys.stderr.write(f\"\\n[tensorflow imported: {'tensorflow' in sys.modules}]\\n\")\n"
    "sys.exit(status)\n"
)
TF_NOT_IMPORTED = "[tensorflow imported: False]"


def _env(**extra):
    """The test's environment without TF_CPP_MIN_LOG_LEVEL (a fresh install's)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def _run(command, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, *map(str, command)],
        cwd=REPO,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _cli(*args, env=None, timeout=300):
    return _run(["-m", "keras_slowfast.cli", *args], env=env, timeout=timeout)


def _console(*args, env=None, timeout=300):
    return _run(["-c", CONSOLE, *args], env=env, timeout=timeout)


def _error_line(result, command):
    lines = [line for line in result.stderr.splitlines() if line.startswith(command)]
    assert lines, result.stderr[-3000:]
    return lines[-1]


@pytest.fixture(scope="module")
def slow_checkpoint(golden):
    return golden / "models" / "slow_8x8_r50" / "pyslowfast.pyth"


@pytest.fixture(scope="module")
def ava_checkpoint(golden):
    path = golden / "ava_data" / "ava_e2e_model.pyth"
    if not path.is_file():
        pytest.skip("golden ava_data/ava_e2e_model.pyth not found")
    return path


def _write_blank_video(path, seconds=2, fps=30, size=(160, 120)):
    """A grey video with PyAV: nobody in it."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        frame = np.full((size[1], size[0], 3), 128, np.uint8)
        for _ in range(seconds * fps):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ---- 1. Errors name the command line's flags ------------------------------------------------


def test_offline_download_error_names_the_weights_flag(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(KERAS_SLOWFAST_MIRROR=f"http://127.0.0.1:{port}", KERAS_HOME=str(tmp_path))
    result = _cli("classify", SAMPLE, "--model", "slow_8x8_r50", "--views", "1", env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    error = _error_line(result, "keras-slowfast classify: error:")
    assert "could not be downloaded" in error and "--weights PATH" in error
    assert "`weights`" not in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""  # no download chatter among the results


@pytest.mark.parametrize(
    "args,flag",
    [
        (["timeline", SAMPLE, "--stride", "0"], "--stride"),
        (["timeline", SAMPLE, "--timeout", "-1"], "--timeout"),
        (["features", SAMPLE, "--output", "out", "--stride", "nan"], "--stride"),
        (["extract-frames", SAMPLE, "--output", "out", "--jpeg-quality", "0"], "--jpeg-quality"),
        (["classify", SAMPLE, "--classes", "0"], "--classes"),
    ],
)
def test_bad_values_are_reported_by_flag(args, flag):
    result = _console(*args)
    assert result.returncode == 2
    assert f"error: argument {flag}:" in result.stderr
    # Not the library's argument names.
    for name in ("window_stride_seconds", "timeout=", "jpeg_quality", "classes="):
        assert name not in result.stderr
    assert TF_NOT_IMPORTED in result.stderr


def test_missing_checkpoint_names_the_weights_flag(tmp_path):
    video = tmp_path / "blank.mp4"
    _write_blank_video(video)
    missing = tmp_path / "missing.pyth"
    result = _console("detect", video, "--csv", tmp_path / "x.csv", "--weights", missing)
    assert result.returncode == 2
    assert f"Received: --weights {missing}" in _error_line(result, "keras-slowfast detect: error:")
    assert TF_NOT_IMPORTED in result.stderr


@pytest.mark.parametrize("suffix", [".pth", ".PT", ".weights.h5"])
def test_every_checkpoint_suffix_of_the_library_is_checked_first(tmp_path, suffix):
    # The suffixes are the library's (`.pth` included), matched whatever their case.
    video = tmp_path / "blank.mp4"
    _write_blank_video(video)
    missing = tmp_path / f"missing{suffix}"
    result = _console("detect", video, "--csv", tmp_path / "x.csv", "--weights", missing)
    assert result.returncode == 2
    error = _error_line(result, "keras-slowfast detect: error:")
    assert f"No checkpoint file at this path. Received: --weights {missing}" in error
    assert TF_NOT_IMPORTED in result.stderr


# ---- 2. A quiet, quick start ------------------------------------------------------------


def _imported_modules(importtime_stderr):
    """Module names of a `python -X importtime` report."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_help_does_not_import_tensorflow():
    # The commands keras-slowfast parses itself; write-tfrecords and data-service hand over
    # to the data and training packages, which import TensorFlow.
    commands = [
        name
        for name in _subparsers(cli.build_parser())
        if name not in ("write-tfrecords", "data-service")
    ]
    assert "classify" in commands and "detect" in commands
    for args in [[], *[[name] for name in commands]]:
        result = _run(["-X", "importtime", "-m", "keras_slowfast.cli", *args, "--help"])
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.startswith(f"usage: {' '.join(['keras-slowfast', *args])} ")
        modules = _imported_modules(result.stderr)
        assert "argparse" in modules  # the report is read
        assert not {"tensorflow", "keras"} & modules, args


def test_a_plain_import_still_loads_the_public_api():
    # Outside the command line the package imports its models at once, as it always has: the
    # custom layers are registered for keras.saving.load_model.
    code = (
        "import sys, keras_slowfast\n"
        "print('keras_slowfast.models.layers' in sys.modules, "
        "'SlowFastR50' in vars(keras_slowfast))\n"
    )
    result = _run(["-c", code])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "True"]


def test_timeline_progress_on_stderr_once_and_plain(slow_checkpoint):
    """Item 2's quiet start and item 3's progress, on one real run with pipes for outputs.

    All 10 windows are one batch: the bar reaches 10/10 at its first update, then closes.
    """
    result = _cli(
        "timeline", SAMPLE, "--model", "slow_8x8_r50", "--weights", slow_checkpoint,
        "--top", "2", "--batch-size", "16",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # No TensorFlow / CUDA start-up logs.
    assert "cuInit" not in result.stderr and ABSL_NOTICE not in result.stderr
    assert not CPP_LOG.search(result.stderr), result.stderr[-3000:]
    # Plain progress on stderr, the final count once.
    for text in (result.stdout, result.stderr):
        assert "\r" not in text and "\x1b" not in text
    progress = [line for line in result.stderr.splitlines() if "windows [" in line]
    assert len([line for line in progress if "10/10 windows" in line]) == 1, progress
    # The results only on stdout.
    lines = result.stdout.splitlines()
    assert len(lines) == 11 and all(ROW.match(line) for line in lines[:10]), lines
    assert lines[10].startswith("sample.mp4: 10 windows every 1 s, slow_8x8_r50_kinetics400")


# ---- 3. Progress and downloads on stderr ------------------------------------------------


def test_download_progress_is_on_stderr_and_plain(golden, tmp_path):
    mirror = make_mirror(golden, tmp_path / "mirror")
    try:
        env = _env(KERAS_SLOWFAST_MIRROR=mirror.url, KERAS_HOME=str(tmp_path / "home"))
        result = _cli(
            "classify", SAMPLE, "--model", "slow_8x8_r50", "--views", "1", "--top", "1", env=env
        )
    finally:
        mirror.close()
    assert result.returncode == 0, result.stderr[-3000:]
    assert mirror.requests == ["/pyslowfast/model_zoo/kinetics400/SLOWONLY_8x8_R50.pkl"]
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("sample.mp4: slow_8x8_r50_kinetics400")
    assert re.match(r"^\s+1\.\s+[0-9.]+\s+class_\d+\s+\(class \d+\)$", lines[1])
    size = (golden / "models" / "slow_8x8_r50" / "caffe2.pkl").stat().st_size / 1e6
    assert f"downloading SLOWONLY_8x8_R50.pkl: {size:.1f}/{size:.1f} MB [" in result.stderr
    for text in (result.stdout, result.stderr):
        assert "\r" not in text and "\x1b" not in text


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream_type", [io.StringIO, _Terminal])
def test_progress_bar_shows_the_final_count_once(stream_type):
    for steps in ([10], [4, 6]):
        out = stream_type()
        with ProgressBar(10, "v", unit="windows", stream=out, interval=0.0) as bar:
            for n in steps:
                bar.update(n)
        text = out.getvalue()
        assert text.count("10/10 windows") == 1, text
        assert text.endswith("\n") and "\x1b" not in text
        assert ("\r" in text) == (stream_type is _Terminal)


# ---- 4. Optional packages are checked before any work -----------------------------------


@pytest.mark.parametrize(
    "module,extra,command",
    [
        ("matplotlib", "plot", ["timeline", SAMPLE, "--plot", "{tmp}/t.png"]),
        ("h5py", "hdf5", ["features", SAMPLE, "--format", "hdf5", "--output", "{tmp}/f"]),
        ("tf2onnx", "onnx", ["export", "{tmp}/m.onnx", "--format", "onnx"]),
        ("openvino", "openvino", ["export", "{tmp}/m.xml", "--format", "openvino"]),
        ("keras_hub", "keras-hub", ["detect", SAMPLE, "--person-detector", "keras-hub"]),
    ],
)
def test_a_missing_extra_fails_first_and_says_what_to_install(
    tmp_path, slow_checkpoint, module, extra, command
):
    # The package is made unimportable: a stub of the same name first on the path.
    stub = tmp_path / "stubs" / module
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(f'raise ImportError("No module named {module!r}")\n')
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path / "stubs"), str(REPO)]))
    command = [str(c).format(tmp=tmp_path) for c in command]
    if command[0] == "detect":
        command += ["--csv", f"{tmp_path}/d.csv"]
    else:
        command += ["--model", "slow_8x8_r50", "--weights", slow_checkpoint]
    if command[0] == "timeline":
        command += ["--csv", f"{tmp_path}/t.csv", "--annotate", f"{tmp_path}/a.mp4"]
    result = _console(*command, env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f'pip install "keras-slowfast[{extra}]"' in result.stderr
    assert f"ImportError: No module named '{module}'" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert TF_NOT_IMPORTED in result.stderr  # nothing built, nothing decoded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stubs"]  # nothing written


# ---- 5. Nobody in the video -------------------------------------------------------------


def test_detect_without_people_warns_with_a_hint_and_writes_the_header(tmp_path, ava_checkpoint):
    video, out = tmp_path / "blank.mp4", tmp_path / "actions.csv"
    _write_blank_video(video)
    result = _cli(
        "detect", video, "--weights", ava_checkpoint, "--test-crop-size", "128",
        "--csv", out, "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "error" not in result.stderr.lower()
    assert warnings[0].startswith("keras-slowfast detect: warning: ")
    assert "--boxes" in warnings[0] and "--person-detector keras-hub" in warnings[0]
    with open(out, newline="") as f:
        assert list(csv.reader(f)) == [["video", "sec", "x1", "y1", "x2", "y2", "action", "score"]]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("blank.mp4: 0 person boxes in 0 of 2 keyframes")
    assert lines[1:] == [f"written: {out}"]


# ---- 6. A flag without effect is a usage error --------------------------------------------


@pytest.mark.parametrize(
    "args,flags",
    [
        (["evaluate-ava", "data", "--full-test-on-val"], ["--full-test-on-val", "--mode val"]),
        (["classify", "v.mp4", "--stride", "2"], ["--stride", "--annotate"]),
        (["classify", "v.mp4", "--gradcam-class", "1"], ["--gradcam-class", "--gradcam"]),
        (["export", "out", "--quantize", "dynamic"], ["--quantize", "--format tflite"]),
        (["export", "m.onnx", "--format", "onnx", "--version", "2"], ["--version", "saved_model"]),
        (["export", "m.tflite", "--format", "tflite", "--top-k", "3"], ["--top-k", "saved_model"]),
        (
            ["detect", "v.mp4", "--csv", "x.csv", "--keras-hub-preset", "p"],
            ["--keras-hub-preset", "--person-detector keras-hub"],
        ),
        (
            ["detect", "v.mp4", "--csv", "x", "--boxes", "b.csv", "--person-detector", "opencv"],
            ["--person-detector", "--boxes"],
        ),
    ],
)
def test_a_flag_without_effect_is_a_usage_error(args, flags):
    result = _console(*args)
    assert result.returncode == 2
    assert f"usage: keras-slowfast {args[0]} " in result.stderr
    error = _error_line(result, f"keras-slowfast {args[0]}: error:")
    assert "has no effect" in error and all(flag in error for flag in flags), error
    assert TF_NOT_IMPORTED in result.stderr


def test_the_flags_with_their_partner_pass_the_usage_check(tmp_path):
    result = _console("evaluate-ava", tmp_path / "nope", "--mode", "val", "--full-test-on-val")
    assert result.returncode == 2
    assert "has no effect" not in result.stderr and "No folder at this path" in result.stderr


def test_fault_tolerant_data_service_needs_a_work_dir():
    result = _cli("data-service", "dispatcher", "--fault-tolerant")
    assert result.returncode == 2
    assert "usage: keras-slowfast data-service " in result.stderr
    assert "--fault-tolerant needs --work-dir" in result.stderr
    assert "fault_tolerant=True" not in result.stderr


# ---- 7. A wrong --model -------------------------------------------------------------------


def _listed(error):
    return error.rsplit(": ", 1)[1].split(", ")


def test_unknown_model_suggests_the_nearest_and_lists_what_classify_takes():
    result = _console("classify", SAMPLE, "--model", "slowfast_8x8_r5")
    assert result.returncode == 2
    error = _error_line(result, "keras-slowfast classify: error:")
    assert "unknown model 'slowfast_8x8_r5'; did you mean 'slowfast_8x8_r50'?" in error
    listed = _listed(error)
    assert len(listed) == len(set(listed))  # each once
    heads = {p.name for p in presets.PRESETS if p.kind == "classifier" and p.include_top}
    others = {p.name for p in presets.PRESETS} - heads
    assert heads <= set(listed) and not others & set(listed)
    assert "slowfast_nln_8x8_r50" in listed and "slowfast_8x8_r50" in listed
    assert len(result.stderr) < 2500
    assert TF_NOT_IMPORTED in result.stderr


def test_unknown_model_of_detect_lists_detectors_only():
    result = _console("detect", SAMPLE, "--csv", "x.csv", "--model", "ava_slowfast_32x2_r10")
    assert result.returncode == 2
    error = _error_line(result, "keras-slowfast detect: error:")
    assert "unknown model 'ava_slowfast_32x2_r10'; did you mean 'ava_slowfast_32x2_r101" in error
    detectors = {p.name for p in presets.PRESETS if p.kind == "detector"}
    detectors |= {p.architecture for p in presets.PRESETS if p.kind == "detector"}
    assert set(_listed(error)) == detectors


def test_a_known_model_of_another_kind_is_rejected_before_the_build():
    result = _console("classify", SAMPLE, "--model", "ava_slowfast_32x2_r101_50_50")
    assert result.returncode == 2
    error = _error_line(result, "keras-slowfast classify: error:")
    assert "needs a classifier preset with a head" in error
    assert "Received: --model ava_slowfast_32x2_r101_50_50" in error
    listed = error.split("one of ", 1)[1].split(". Received")[0].split(", ")
    assert "slowfast_8x8_r50_kinetics400" in listed
    assert not {p.name for p in presets.PRESETS if p.kind == "detector"} & set(listed)
    assert TF_NOT_IMPORTED in result.stderr


def test_the_default_detector_is_a_preset():
    # `detect` without --model uses it: it must be a detector the table knows.
    assert presets.get_preset(DEFAULT_DETECTOR, kind="detector")


# ---- 8. The input video is probed before anything is built --------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["classify", "{video}", "--views", "1"],
        ["timeline", "{video}"],
        ["detect", "{video}", "--csv", "{tmp}/actions.csv", "--weights", "{tmp}/x.pyth"],
    ],
)
def test_a_text_file_named_mp4_fails_fast_naming_it(tmp_path, slow_checkpoint, command):
    video = tmp_path / "x.mp4"
    video.write_text("this is not a video\n")
    (tmp_path / "x.pyth").write_bytes(b"")
    command = [c.format(video=video, tmp=tmp_path) for c in command]
    if command[0] != "detect":
        command += ["--model", "slow_8x8_r50", "--weights", str(slow_checkpoint)]
    start = time.perf_counter()
    result = _console(*command)
    elapsed = time.perf_counter() - start
    assert result.returncode == 2, result.stderr[-3000:]
    error = _error_line(result, f"keras-slowfast {command[0]}: error:")
    assert f"{video} is not a video file" in error
    # Neither TensorFlow nor a model: a full-size build alone takes ~6 s and 1.2 GB.
    assert TF_NOT_IMPORTED in result.stderr
    assert elapsed < 5.0, elapsed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4", "x.pyth"]


def test_features_of_a_single_unreadable_video_fail_before_the_model(tmp_path, slow_checkpoint):
    # `features` reads its input (a video or a list) with the library once TensorFlow is
    # loaded, but still before the model is built.
    video = tmp_path / "x.mp4"
    video.write_text("this is not a video\n")
    result = _console(
        "features", video, "--output", tmp_path / "features",
        "--model", "slow_8x8_r50", "--weights", slow_checkpoint,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    error = _error_line(result, "keras-slowfast features: error:")
    assert f"{video} is not a video file" in error and "Received: videos=" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"]


def test_a_file_without_a_video_stream_is_named(tmp_path, slow_checkpoint):
    av = pytest.importorskip("av")
    sound = tmp_path / "sound.mp4"
    with av.open(str(sound), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    result = _console("classify", sound, "--model", "slow_8x8_r50", "--weights", slow_checkpoint)
    assert result.returncode == 2
    assert f"{sound} has no video stream" in _error_line(result, "keras-slowfast classify: error:")
    assert TF_NOT_IMPORTED in result.stderr


# ---- 9. Help texts and program names ------------------------------------------------------


def _subparsers(parser):
    return {
        name: sub
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, sub in action.choices.items()
    }


def _walk(parser, path):
    """(path, problem) for each command without a description and option without help."""
    problems = []
    if not (parser.description or "").strip():
        problems.append((path, "no description"))
    for action in parser._actions:
        if isinstance(action, (argparse._SubParsersAction, argparse._HelpAction)):
            continue
        if not (action.help or "").strip():
            problems.append((path, action.option_strings or action.dest))
    for name, sub in _subparsers(parser).items():
        problems += _walk(sub, f"{path} {name}")
    return problems


def test_every_option_has_help_and_every_command_a_description():
    from keras_slowfast.data import write_tfrecords_cli
    from keras_slowfast.training import data_service_cli

    problems = _walk(cli.build_parser(), "keras-slowfast")
    problems += _walk(write_tfrecords_cli.build_parser(), "keras-slowfast write-tfrecords")
    problems += _walk(data_service_cli.build_parser(), "keras-slowfast data-service")
    assert problems == []
    assert write_tfrecords_cli.build_parser().prog == "keras-slowfast-write-tfrecords"


@pytest.mark.parametrize(
    "args,prog",
    [
        (["-m", "keras_slowfast.cli", "write-tfrecords"], "keras-slowfast write-tfrecords"),
        (["-m", "keras_slowfast.data.write_tfrecords_cli"], "keras-slowfast-write-tfrecords"),
        (["-m", "keras_slowfast.cli", "data-service"], "keras-slowfast data-service"),
    ],
)
def test_handed_over_commands_show_their_program_name(args, prog):
    result = _run([*args, "--help"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"usage: {prog} ")
    if args[1] == "keras_slowfast.cli":  # through keras-slowfast: a quiet start
        assert ABSL_NOTICE not in result.stderr and not CPP_LOG.search(result.stderr)
