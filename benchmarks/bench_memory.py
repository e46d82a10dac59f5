"""Peak memory of the command-line paths that hold a full-size model: Grad-CAM and export.

Each path runs in a fresh process, one after another (never two at once, so that they do
not compete for memory or cores), and is reported with its peak resident set size (the
`ru_maxrss` of the finished process, what `/usr/bin/time -v` prints as "Maximum resident
set size"), its wall time and the size of what it wrote. The model is built from the preset
with random weights (`--weights none`): neither the memory nor the files depend on them.

Paths:

* `classify`: `keras-slowfast classify VIDEO --views 1`, the inference footprint the others
  are measured against;
* `classify_gradcam`: the same with `--gradcam cam.mp4` (Grad-CAM of the centre view);
* `gradcam_lower_bound`: the same steps in Python, but the Grad-CAM gradients come from one
  compiled `tf.function` holding a plain `tf.GradientTape` of the class probability with
  respect to the two res5 outputs (graph mode: TensorFlow keeps only what the backward pass
  needs and frees the rest as it goes), i.e. what a backward pass to the res5 outputs costs
  at least;
* `export_saved_model`, `export_onnx`, `export_openvino`, `export_tflite`,
  `export_tflite_int8`: `keras-slowfast export` in each format (`--quantize dynamic` for the
  last). A format whose optional package is absent is reported as failed.

Figures (SlowFast 8x8 R50 full width, 256x256 test crop, 32 frames, `examples/data/
sample.mp4`; a shared 2-core CPU, TensorFlow 2.21, tf2onnx 1.17, OpenVINO 2026.4; sizes in
MB of 10^6 bytes; "before": the same script on the code before the memory fixes):

    path                  peak RSS GiB   before   output MB
    classify                      1.20                   -
    classify_gradcam              1.39     4.86        0.3  (the video)
    gradcam_lower_bound           1.35                   -
    export_saved_model            1.12               141.7  (graph 3.0 + variables 138.6)
    export_onnx                   2.78     6.99      138.2
    export_openvino               1.16               138.3  (.bin 138.0 + .xml 0.3)
    export_tflite                 2.49               138.6
    export_tflite_int8            2.33                35.6

The model alone, built, takes 0.95 GiB (TensorFlow's runtime and the weights); the
inference pass adds about 0.25 GiB. Grad-CAM is within 0.04 GiB of the compiled tape: the
gradients with respect to the res5 outputs need only the head's activations, so a backward
pass to them costs hardly more than inference. Before, the tape watched every weight and so
recorded every op and held every activation of the network until the gradient. The float32
files hold the 34.5 M parameters left once batch normalisation is folded into the
convolutions, at 4 bytes each (the SavedModel all 34.6 M); dynamic-range int8 keeps one byte
per weight. The ONNX export's remaining peak is TensorFlow's optimisation of the frozen graph
inside tf2onnx (before, each of tf2onnx's ~24 optimizer passes also kept one more copy of
the weights); TensorFlow Lite's is its converter's own.

Run from the repository root:

    python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --paths classify classify_gradcam gradcam_lower_bound
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIDEO = os.path.join(REPO, "examples", "data", "sample.mp4")

EXPORTS = {
    # path: (format, file name, extra arguments)
    "export_saved_model": ("saved_model", "saved_model", []),
    "export_onnx": ("onnx", "model.onnx", []),
    "export_openvino": ("openvino", "model.xml", []),
    "export_tflite": ("tflite", "model.tflite", []),
    "export_tflite_int8": ("tflite", "model_int8.tflite", ["--quantize", "dynamic"]),
}
PATHS = ["classify", "classify_gradcam", "gradcam_lower_bound", *EXPORTS]


def _size(path):
    """Bytes under `path` (a file, a folder, or an OpenVINO .xml and its .bin)."""
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(path)
            for name in names
        )
    total = os.path.getsize(path) if os.path.exists(path) else 0
    if path.endswith(".xml") and os.path.exists(path[:-4] + ".bin"):
        total += os.path.getsize(path[:-4] + ".bin")
    return total


def _command(path, args, out):
    """The argv of `path` and the file it writes (or None)."""
    cli = [sys.executable, "-m", "keras_slowfast.cli"]
    model = ["--model", args.model, "--weights", "none"]
    if path == "classify":
        return [*cli, "classify", args.video, *model, "--views", "1"], None
    if path == "classify_gradcam":
        cam = os.path.join(out, "cam.mp4")
        return [*cli, "classify", args.video, *model, "--views", "1", "--gradcam", cam], cam
    if path == "gradcam_lower_bound":
        worker = [sys.executable, os.path.abspath(__file__), "--worker", path]
        return [*worker, "--model", args.model, "--video", args.video], None
    fmt, name, extra = EXPORTS[path]
    target = os.path.join(out, name)
    written = os.path.join(target, "1") if fmt == "saved_model" else target
    return [*cli, "export", target, "--format", fmt, *model, *extra], written


def _run(command):
    """Runs `command` to completion: (exit status, peak RSS in GiB, seconds, stderr tail)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
    return process.returncode, usage.ru_maxrss / 2**20, seconds, tail


def _gradcam_lower_bound(model_name, video):
    """`classify --views 1 --gradcam`'s steps with the gradients from one compiled tape."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_slowfast import hub, presets
    from keras_slowfast.cli.common import centre_view_clip
    from keras_slowfast.inference import classify_video
    from keras_slowfast.visualize import _cam, _default_layers

    preset = presets.get_preset(model_name)
    model = hub.from_preset(preset.name, load_weights=False)
    classify_video(model, video, preset=preset.name, views=1)
    clip = centre_view_clip(video, preset)
    targets = [model.get_layer(name).output for name in _default_layers(model)]
    cam_model = keras.Model(model.inputs, [*targets, model.output])

    @tf.function(autograph=False)
    def gradients(x):
        with tf.GradientTape() as tape:
            *activations, probs = cam_model(x, training=False)
            score = probs[0, tf.argmax(probs[0])]
        return activations, tape.gradient(score, activations)

    activations, grads = gradients(tf.convert_to_tensor(clip[None]))
    for a, g in zip(activations, grads):
        _cam(np.asarray(a)[0], np.asarray(g)[0], clip.shape[:3], "hw")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=PATHS)
    parser.add_argument("--model", default="slowfast_8x8_r50_kinetics400")
    parser.add_argument("--video", default=VIDEO, help="the video of the classify paths")
    parser.add_argument("--worker", choices=["gradcam_lower_bound"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _gradcam_lower_bound(args.model, args.video)
        return 0
    print(f"{args.model}, random weights; video {os.path.basename(args.video)}")
    print(f"{'path':<22}{'peak RSS GiB':>13}{'seconds':>9}{'output MB':>11}")
    failed = 0
    with tempfile.TemporaryDirectory() as out:
        for path in args.paths:
            command, written = _command(path, args, out)
            status, peak, seconds, tail = _run(command)
            size = f"{_size(written) / 1e6:.1f}" if written and status == 0 else "-"
            print(f"{path:<22}{peak:>13.2f}{seconds:>9.1f}{size:>11}", flush=True)
            if status != 0:
                failed += 1
                print(f"  failed (exit status {status}): " + " | ".join(tail), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
