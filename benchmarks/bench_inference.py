"""Inference speed and peak memory of a full-size SlowFast model, per way of calling it.

For each clip configuration (`BATCHxCROP`, e.g. `1x224`) and each path, a fresh process
builds the model (random weights: the speed does not depend on them), calls it once (the
first call, timed on its own: tracing and oneDNN set-up), then `--repeats` more times, and
reports the median seconds per call, clips/s, GFLOP/s, the ratio of that rate to a float32
`tf.matmul` peak measured in the same process (in bfloat16 for `--dtype mixed_bfloat16`),
and the process's peak resident memory.

Paths:

* `eager`: `model(x)` on a NumPy uint8 clip, what a notebook types first;
* `predict_on_batch`: `model.predict_on_batch(x)`;
* `tf_function`: `tf.function(lambda x: model(x, training=False))` (no XLA);
* `keras_functional_eager` (opt-in): `model(x)` on a plain `keras.Model` over the same
  layers, i.e. Keras' own functional run, which holds every activation until the call
  returns. It is the behaviour before :class:`keras_slowfast.models.LeanFunctional`; a
  worker whose memory passes `--max-rss-gib` is stopped and reported as such.

Other runtimes (`--paths`; each needs its optional package, a missing one gives a row with
a note): the same model, with the same random weights, is exported once to a temporary
folder by `keras_slowfast.export` and run from there:

* `onnxruntime`: `export_onnx` on ONNX Runtime's CPU provider;
* `openvino_f32` / `openvino_bf16`: `export_openvino` compiled with
  `{"INFERENCE_PRECISION_HINT": "f32"}`, and with OpenVINO's default (bfloat16 where the
  CPU has it);
* `tflite`: `export_tflite` (float32) on the TensorFlow Lite interpreter, all cores;
* `pytorch`: a minimal PyTorch SlowFast written here (PySlowFast's module names), loaded
  with the same weights, under `torch.inference_mode()` with `torch.set_num_threads(cores)`.
  Its output is checked against the Keras model's on one clip (relative 1e-3) first.
  `pytorch_channels_last`: the same with the model and clip in `torch.channels_last_3d`
  memory format (oneDNN's preferred layout on CPUs).

Each runtime row is printed again as a ratio to PyTorch when that row ran.

`--classify-video VIDEO` also times the 30-view `classify_video` of a real video, end to
end (decoding included), with the full-size model, per `--classify-batch-sizes` (views per
model call; `0` means the default, one temporal clip of 3 crops per call).

`--dtype` builds the model with that dtype policy (`mixed_bfloat16`: the backbone computes in
bfloat16, the head in float32).

Multiply-adds are counted from the built model: convolutions, dense layers and the
non-local matmuls: 65.71 GMAC for SlowFast 8x8 R50 at 256x256, the published figure, and
50.31 at 224x224, where 50.58 is published. One multiply-add is two FLOPs.

Run from the repository root:

    python benchmarks/bench_inference.py
    python benchmarks/bench_inference.py --model slowfast_nln_16x8_r101 --configs 2x256
    python benchmarks/bench_inference.py --paths eager keras_functional_eager --configs 2x256
    python benchmarks/bench_inference.py --dtype mixed_bfloat16 --paths tf_function
    python benchmarks/bench_inference.py --paths tf_function onnxruntime openvino_f32 \
        openvino_bf16 tflite pytorch --repeats 2
    python benchmarks/bench_inference.py --paths --classify-video video.mp4 \
        --classify-batch-sizes 0 6 15
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

MODELS = {
    "slowfast_8x8_r50": dict(builder="SlowFastR50", kwargs=dict(variant="8x8"), frames=32),
    "slowfast_nln_16x8_r101": dict(
        builder="SlowFastR101", kwargs=dict(variant="16x8", nonlocal_blocks=True), frames=64
    ),
}

PATHS = {
    "eager": "Keras eager model(x)",
    "predict_on_batch": "model.predict_on_batch(x)",
    "tf_function": "compiled tf.function forward",
    "keras_functional_eager": "eager on Keras' own Functional (unfixed)",
    "onnxruntime": "ONNX Runtime (export_onnx)",
    "openvino_f32": "OpenVINO, f32 precision hint",
    "openvino_bf16": "OpenVINO, default precision (bf16)",
    "tflite": "TFLite float32 (export_tflite)",
    "pytorch": "PyTorch inference_mode (reference model)",
    "pytorch_channels_last": "PyTorch inference_mode, channels_last_3d",
}

# Paths that run an exported file (or the PyTorch model) rather than the Keras model; the
# artifact each one needs, written once by the export worker.
EXPORTED = {
    "onnxruntime": "onnx",
    "openvino_f32": "openvino",
    "openvino_bf16": "openvino",
    "tflite": "tflite",
    "pytorch": "torch",
    "pytorch_channels_last": "torch",
}

# The package each exported path needs to run.
RUNTIME_PACKAGES = {
    "onnxruntime": "onnxruntime",
    "openvino_f32": "openvino",
    "openvino_bf16": "openvino",
    "tflite": "tensorflow",
    "pytorch": "torch",
    "pytorch_channels_last": "torch",
}

# The package each artifact needs to be written.
EXPORT_PACKAGES = {"onnx": "tf2onnx", "openvino": "openvino", "tflite": "tensorflow", "torch": None}

# Every model here: SlowFast 8x8 R50 (the only model with a PyTorch reference below).
TORCH_MODELS = ("slowfast_8x8_r50",)

DEFAULT_PATHS = ["eager", "predict_on_batch", "tf_function"]

# Backbone dtype policy -> the dtype its convolutions compute in (and the matmul peak's).
COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "bfloat16": "bfloat16"}

# Exit status of a worker stopped by its memory watchdog.
OVER_MEMORY = 3


def count_macs(model):
    """Multiply-adds of one clip: Conv3D, Dense and non-local attention matmuls."""
    import keras
    import numpy as np

    from keras_slowfast.models.layers import NonLocalAttention

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv3D):
            kernel = layer.kernel.shape
            total += int(np.prod(layer.output.shape[1:])) * int(np.prod(kernel[:-1]))
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.input.shape[1:])) * layer.units
        elif isinstance(layer, NonLocalAttention):
            theta, phi, _ = layer.input
            positions = int(np.prod(theta.shape[1:4]))
            pooled = int(np.prod(phi.shape[1:4]))
            total += 2 * positions * pooled * theta.shape[-1]
    return total


def matmul_gflops(n=4096, repeats=5, dtype="float32"):
    """GFLOP/s of an `n x n` matmul in `dtype`, median of `repeats` after one warm-up."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def _peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _watch_memory(limit_gib):
    """Stops this process when its resident memory passes `limit_gib`."""
    page = os.sysconf("SC_PAGE_SIZE")

    def watch():
        while True:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page / 2**30
            if rss > limit_gib:
                print(json.dumps({"over_memory_gib": round(rss, 2)}), flush=True)
                os._exit(OVER_MEMORY)
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()


def _time_calls(call, repeats):
    """`first_s`, `times_s` and `median_s` of a first `call()`, then `repeats` more.

    Each call's result is brought to numpy inside its timing.
    """
    import numpy as np

    start = time.perf_counter()
    np.asarray(call())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(call())
        times.append(time.perf_counter() - start)
    return dict(first_s=first, times_s=times, median_s=statistics.median(times))


def worker(args):
    """Runs one path in this process and prints its figures as one JSON line."""
    _watch_memory(args.max_rss_gib)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, REPO)
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_slowfast

    spec = MODELS[args.model]
    batch, crop = args.worker_config
    frames = spec["frames"]
    model = getattr(keras_slowfast, spec["builder"])(
        input_shape=(frames, crop, crop, 3), dtype=args.dtype, **spec["kwargs"]
    )
    macs = count_macs(model)
    clip = np.random.default_rng(0).integers(0, 256, (batch, frames, crop, crop, 3), np.uint8)
    path = args.worker_path
    if path == "keras_functional_eager":
        model = keras.Model(model.input, model.output)
    if path in ("eager", "keras_functional_eager"):

        def call():
            return model(clip)

    elif path == "predict_on_batch":

        def call():
            return model.predict_on_batch(clip)

    else:
        forward = tf.function(
            lambda x: model(x, training=False), reduce_retracing=True, jit_compile=False
        )
        clip_tensor = tf.constant(clip)

        def call():
            return forward(clip_tensor)

    rss_built = _peak_rss_gib()
    timing = _time_calls(call, args.repeats)
    peak = _peak_rss_gib()
    result = dict(
        **timing,
        macs=macs,
        peak_rss_gib=peak,
        built_rss_gib=rss_built,
        matmul_gflops=matmul_gflops(dtype=COMPUTE_DTYPES[args.dtype]),
    )
    print(json.dumps(result), flush=True)


def _package_missing(name):
    """The module name when `name` cannot be imported, else None."""
    import importlib.util

    return name if name and importlib.util.find_spec(name) is None else None


def _randomise_statistics(model, seed=0):
    """Random BatchNorm scales, offsets and statistics, so that every branch contributes."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.0, n).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.1, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0.0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))


def _pyslowfast_state(model):
    """PySlowFast-named float32 arrays in PyTorch's layouts, from the Keras layers' weights."""
    import keras
    import numpy as np

    from keras_slowfast.weights.name_maps import keras_layer_to_torch_module

    state = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        module = keras_layer_to_torch_module(layer.name)
        if module is None:
            raise ValueError(f"no PySlowFast name for the Keras layer {layer.name!r}")
        if isinstance(layer, keras.layers.Conv3D):
            state[f"{module}.weight"] = np.transpose(np.asarray(layer.kernel), (4, 3, 0, 1, 2))
        elif isinstance(layer, keras.layers.BatchNormalization):
            state[f"{module}.weight"] = np.asarray(layer.gamma)
            state[f"{module}.bias"] = np.asarray(layer.beta)
            state[f"{module}.running_mean"] = np.asarray(layer.moving_mean)
            state[f"{module}.running_var"] = np.asarray(layer.moving_variance)
        elif isinstance(layer, keras.layers.Dense):
            state[f"{module}.weight"] = np.asarray(layer.kernel).T
            state[f"{module}.bias"] = np.asarray(layer.bias)
        else:
            raise ValueError(f"unexpected weights in the Keras layer {layer.name!r}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def export_worker(args):
    """Builds the model once, with random weights, and writes what the runtime paths run.

    Prints one JSON line: the multiply-adds per configuration and, per artifact, its path
    or the reason it was not written.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, REPO)
    import keras
    import numpy as np

    import keras_slowfast
    from keras_slowfast import export

    spec = MODELS[args.model]
    frames = spec["frames"]
    builder = getattr(keras_slowfast, spec["builder"])
    macs = {}
    for crop in sorted({crop for _, crop in args.configs}):
        sized = builder(input_shape=(frames, crop, crop, 3), **spec["kwargs"])
        macs[str(crop)] = count_macs(sized)
        del sized
    keras.utils.set_random_seed(0)
    model = builder(**spec["kwargs"])
    _randomise_statistics(model)
    out = args.worker_export
    artifacts = {}
    seconds = {}
    wanted = sorted({EXPORTED[p] for p in args.paths if p in EXPORTED})
    for kind in wanted:
        missing = _package_missing(EXPORT_PACKAGES[kind])
        if missing:
            artifacts[kind] = {"error": f"{missing} is not installed"}
            continue
        start = time.perf_counter()
        try:
            if kind == "onnx":
                path = export.export_onnx(model, os.path.join(out, "model.onnx"))
            elif kind == "openvino":
                path = export.export_openvino(model, os.path.join(out, "model.xml"))
            elif kind == "tflite":
                path = export.export_tflite(model, os.path.join(out, "model.tflite"))
            else:
                if args.model not in TORCH_MODELS:
                    raise ValueError(f"no PyTorch reference for {args.model}")
                crop = 224
                clip = np.random.default_rng(0).integers(
                    0, 256, (1, frames, crop, crop, 3), np.uint8
                )
                logits_model = keras.Model(model.input, model.get_layer("head_projection").output)
                path = os.path.join(out, "torch_state.npz")
                np.savez(
                    path,
                    clip=clip,
                    keras_logits=np.asarray(logits_model.predict_on_batch(clip)),
                    keras_probabilities=np.asarray(model.predict_on_batch(clip)),
                    **{f"state/{k}": v for k, v in _pyslowfast_state(model).items()},
                )
        except Exception as error:  # reported in the table, not raised
            artifacts[kind] = {"error": f"{type(error).__name__}: {str(error)[:200]}"}
            continue
        artifacts[kind] = {"path": path}
        seconds[kind] = time.perf_counter() - start
    print(json.dumps(dict(macs=macs, artifacts=artifacts, export_s=seconds)), flush=True)


def _torch_slowfast(torch, crop, frames=32, alpha=4, classes=400):
    """A minimal PyTorch SlowFast 8x8 R50 with PySlowFast's module names (inference only).

    Written from the paper's and PySlowFast's published configuration: width 64, fast
    pathway 1/8 of the width at 4x the frame rate, fusion kernel 7 with 2x channels, stem
    temporal kernels 1 (slow) and 5 (fast), bottleneck temporal kernels 1 in res2-res3 of
    the slow pathway and 3 everywhere else, spatial stride 2 on the 3x3 conv of the first
    block of res3-res5; fully convolutional head (average pool with the training window at
    stride 1, linear, softmax per position, mean).
    """
    nn = torch.nn
    functional = torch.nn.functional

    def conv(c_in, c_out, kernel, stride=(1, 1, 1)):
        padding = tuple(k // 2 for k in kernel)
        return nn.Conv3d(c_in, c_out, kernel, stride, padding, bias=False)

    def bn(c):
        return nn.BatchNorm3d(c, eps=1e-5)

    class Stem(nn.Module):
        def __init__(self, c_out, kt):
            super().__init__()
            self.conv = conv(3, c_out, (kt, 7, 7), (1, 2, 2))
            self.bn = bn(c_out)

        def forward(self, x):
            x = functional.relu(self.bn(self.conv(x)))
            return functional.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))

    class Branch2(nn.Module):
        def __init__(self, c_in, inner, c_out, kt, stride):
            super().__init__()
            self.a = conv(c_in, inner, (kt, 1, 1))
            self.a_bn = bn(inner)
            self.b = conv(inner, inner, (1, 3, 3), (1, stride, stride))
            self.b_bn = bn(inner)
            self.c = conv(inner, c_out, (1, 1, 1))
            self.c_bn = bn(c_out)

        def forward(self, x):
            x = functional.relu(self.a_bn(self.a(x)))
            x = functional.relu(self.b_bn(self.b(x)))
            return self.c_bn(self.c(x))

    class Bottleneck(nn.Module):
        def __init__(self, c_in, inner, c_out, kt, stride):
            super().__init__()
            self.projection = c_in != c_out or stride != 1
            if self.projection:
                self.branch1 = conv(c_in, c_out, (1, 1, 1), (1, stride, stride))
                self.branch1_bn = bn(c_out)
            self.branch2 = Branch2(c_in, inner, c_out, kt, stride)

        def forward(self, x):
            shortcut = self.branch1_bn(self.branch1(x)) if self.projection else x
            return functional.relu(shortcut + self.branch2(x))

    class Fuse(nn.Module):
        def __init__(self, c_fast):
            super().__init__()
            self.conv_f2s = nn.Conv3d(
                c_fast, 2 * c_fast, (7, 1, 1), (alpha, 1, 1), (3, 0, 0), bias=False
            )
            self.bn = bn(2 * c_fast)

        def forward(self, slow, fast):
            return torch.cat([slow, functional.relu(self.bn(self.conv_f2s(fast)))], 1)

    class Head(nn.Module):
        def __init__(self, c_in):
            super().__init__()
            self.projection = nn.Linear(c_in, classes)

    width, beta_inv, depths = 64, 8, (3, 4, 6, 3)
    temporal = [(1, 3), (1, 3), (3, 3), (3, 3)]
    slow_index = torch.linspace(0, frames - 1, frames // alpha).long()

    class SlowFast(nn.Module):
        def __init__(self):
            super().__init__()
            self.s1 = nn.Module()
            self.s1.pathway0_stem = Stem(width, 1)
            self.s1.pathway1_stem = Stem(width // beta_inv, 5)
            channels = [width + 2 * width // beta_inv, width // beta_inv]
            self.s1_fuse = Fuse(width // beta_inv)
            for s, depth in enumerate(depths):
                stage = nn.Module()
                for p, divisor in enumerate((1, beta_inv)):
                    inner, c_out = width * 2**s // divisor, 4 * width * 2**s // divisor
                    for i in range(depth):
                        block = Bottleneck(
                            channels[p] if i == 0 else c_out,
                            inner,
                            c_out,
                            temporal[s][p],
                            2 if (i == 0 and s > 0) else 1,
                        )
                        setattr(stage, f"pathway{p}_res{i}", block)
                    channels[p] = c_out
                setattr(self, f"s{s + 2}", stage)
                if s < 3:
                    setattr(self, f"s{s + 2}_fuse", Fuse(channels[1]))
                    channels[0] += 2 * channels[1]
            self.head = Head(sum(channels))

        def forward(self, x):
            x = [x.index_select(2, slow_index), x]
            x = [self.s1.pathway0_stem(x[0]), self.s1.pathway1_stem(x[1])]
            x[0] = self.s1_fuse(x[0], x[1])
            for s, depth in enumerate(depths):
                stage = getattr(self, f"s{s + 2}")
                for p in range(2):
                    for i in range(depth):
                        x[p] = getattr(stage, f"pathway{p}_res{i}")(x[p])
                if s < 3:
                    x[0] = getattr(self, f"s{s + 2}_fuse")(x[0], x[1])
            window = crop // 32
            pooled = [functional.avg_pool3d(f, (f.shape[2], window, window), stride=1) for f in x]
            y = torch.cat(pooled, 1).permute(0, 2, 3, 4, 1)
            logits = self.head.projection(y)
            return logits, torch.softmax(logits, -1).mean((1, 2, 3))

    return SlowFast()


def _torch_input(torch, clip):
    """uint8 NTHWC clip -> the normalised float32 NCTHW tensor (ClipNormalization's)."""
    x = torch.from_numpy(clip).float().permute(0, 4, 1, 2, 3).contiguous()
    return (x / 255.0 - 0.45) / 0.225


def runtime_worker(args):
    """Runs one exported artifact (or the PyTorch model) and prints its figures as JSON."""
    _watch_memory(args.max_rss_gib)
    import numpy as np

    path = args.worker_path
    artifact = args.worker_artifact
    batch, crop = args.worker_config
    frames = MODELS[args.model]["frames"]
    clip = np.random.default_rng(0).integers(0, 256, (batch, frames, crop, crop, 3), np.uint8)
    clip_f32 = clip.astype(np.float32)
    extra = {}
    if path == "onnxruntime":
        import onnxruntime

        session = onnxruntime.InferenceSession(artifact, providers=["CPUExecutionProvider"])

        def call():
            return session.run(["probabilities"], {"clip": clip_f32})[0]

    elif path.startswith("openvino"):
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": "f32"} if path == "openvino_f32" else {}
        compiled = ov.Core().compile_model(artifact, "CPU", config)
        extra["precision"] = str(compiled.get_property("INFERENCE_PRECISION_HINT"))

        def call():
            return compiled(clip_f32)[0]

    elif path == "tflite":
        try:
            import tensorflow as tf

            interpreter_class = tf.lite.Interpreter
        except (ImportError, AttributeError):
            from ai_edge_litert.interpreter import Interpreter as interpreter_class
        interpreter = interpreter_class(artifact, num_threads=os.cpu_count())
        runner = interpreter.get_signature_runner()

        def call():
            return runner(clip=clip_f32)["probabilities"]

    else:
        import torch

        torch.set_num_threads(os.cpu_count())
        data = np.load(artifact)
        state = {
            k[len("state/") :]: torch.from_numpy(data[k])
            for k in data.files
            if k.startswith("state/")
        }
        check = _torch_slowfast(torch, 224, frames)
        missing, unexpected = check.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        check.eval()
        with torch.inference_mode():
            logits, probs = check(_torch_input(torch, data["clip"]))
        reference = data["keras_logits"].reshape(logits.shape)
        logits_diff = float(np.max(np.abs(logits.numpy() - reference)) / np.max(np.abs(reference)))
        reference = data["keras_probabilities"]
        probs_diff = float(np.max(np.abs(probs.numpy() - reference)) / np.max(np.abs(reference)))
        print(
            f"PyTorch vs Keras on one 1x224 clip: max |diff| / max |Keras| = {logits_diff:.2e} "
            f"(logits), {probs_diff:.2e} (probabilities)",
            file=sys.stderr,
        )
        assert logits_diff < 1e-3 and probs_diff < 1e-3, (logits_diff, probs_diff)
        extra.update(logits_rel_diff=logits_diff, probabilities_rel_diff=probs_diff)
        del check
        model = _torch_slowfast(torch, crop, frames)
        model.load_state_dict(state, strict=False)
        model.eval()
        x = _torch_input(torch, clip)
        if path == "pytorch_channels_last":
            model = model.to(memory_format=torch.channels_last_3d)
            x = x.to(memory_format=torch.channels_last_3d)

        def call():
            with torch.inference_mode():
                return model(x)[1].numpy()

    timing = _time_calls(call, args.repeats)
    peak = _peak_rss_gib()
    result = dict(
        **timing,
        peak_rss_gib=peak,
        matmul_gflops=matmul_gflops(dtype="float32"),
        **extra,
    )
    if path == "openvino_bf16":
        result["bf16_matmul_gflops"] = matmul_gflops(dtype="bfloat16")
    print(json.dumps(result), flush=True)


def classify_worker(args):
    """Times `classify_video` (30 views) of a real video end to end, twice."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, REPO)
    import keras_slowfast
    from keras_slowfast.inference import classify_video

    spec = MODELS[args.model]
    variant = args.model
    model = getattr(keras_slowfast, spec["builder"])(**spec["kwargs"])
    batch_size = args.worker_classify_batch or None
    times = []
    for _ in range(2):
        start = time.perf_counter()
        classify_video(model, args.classify_video, variant, views=30, batch_size=batch_size)
        times.append(time.perf_counter() - start)
    print(json.dumps(dict(times_s=times, peak_rss_gib=_peak_rss_gib())), flush=True)


def _run(args, extra, timeout=3600):
    """Runs this script as a worker with `extra` arguments; returns its last JSON line."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--model",
        args.model,
        "--repeats",
        str(args.repeats),
        "--dtype",
        args.dtype,
        "--max-rss-gib",
        str(args.max_rss_gib),
        *extra,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    notes = [line for line in proc.stderr.splitlines() if line.startswith("PyTorch vs Keras")]
    for note in notes:
        print(note, flush=True)
    if proc.returncode == OVER_MEMORY:
        return {"error": f"stopped above {args.max_rss_gib} GiB"}
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def run_worker(args, path, batch, crop, artifact=None):
    extra = ["--worker-path", path, "--worker-config", str(batch), str(crop)]
    if artifact:
        extra += ["--worker-artifact", artifact]
    return _run(args, extra)


def run_exports(args, folder):
    """The export worker's JSON: multiply-adds per crop and the written artifacts."""
    configs = [f"{b}x{c}" for b, c in args.configs]
    return _run(args, ["--worker-export", folder, "--configs", *configs, "--paths", *args.paths])


def parse_config(text):
    try:
        batch, crop = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a configuration is BATCHxCROP, e.g. 2x256. Received: configs={text!r}"
        ) from None
    if batch < 1 or crop < 32:
        raise argparse.ArgumentTypeError(
            f"BATCH must be >= 1 and CROP >= 32. Received: configs={text!r}"
        )
    return batch, crop


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="slowfast_8x8_r50", choices=list(MODELS))
    parser.add_argument(
        "--configs",
        nargs="+",
        type=parse_config,
        default=[(1, 224), (2, 256)],
        help="clip batches as BATCHxCROP (default: 1x224 2x256)",
    )
    parser.add_argument(
        "--paths",
        nargs="*",
        default=DEFAULT_PATHS,
        choices=list(PATHS),
        help="ways of running the model (none: only --classify-video)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the first")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=list(COMPUTE_DTYPES),
        help="the builders' dtype policy; the matmul peak is measured in its compute dtype",
    )
    parser.add_argument(
        "--max-rss-gib", type=float, default=16.0, help="stop a worker above this memory"
    )
    parser.add_argument(
        "--classify-video", help="also time the 30-view classify_video of this video file"
    )
    parser.add_argument(
        "--classify-batch-sizes",
        nargs="+",
        type=int,
        default=[0, 6, 15],
        help="views per model call for --classify-video (0: one temporal clip, 3 crops)",
    )
    parser.add_argument("--worker-path", choices=list(PATHS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-config", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-artifact", help=argparse.SUPPRESS)
    parser.add_argument("--worker-export", help=argparse.SUPPRESS)
    parser.add_argument("--worker-classify-batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1. Received: repeats={args.repeats}")
    if any(b < 0 for b in args.classify_batch_sizes):
        parser.error(
            "--classify-batch-sizes must be >= 0. "
            f"Received: classify_batch_sizes={args.classify_batch_sizes}"
        )
    if args.classify_video and not os.path.isfile(args.classify_video):
        parser.error(f"--classify-video must be a file. Received: {args.classify_video!r}")
    if args.worker_export:
        export_worker(args)
        return
    if args.worker_path in EXPORTED:
        runtime_worker(args)
        return
    if args.worker_path:
        worker(args)
        return
    if args.worker_classify_batch is not None:
        classify_worker(args)
        return
    if any(p in EXPORTED for p in args.paths) and args.dtype != "float32":
        parser.error(
            "The exported runtimes run the float32 export; use --dtype float32 with them. "
            f"Received: dtype={args.dtype!r}"
        )
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as folder:
        run_paths(args, folder)
    if args.classify_video:
        run_classify(args)


def run_paths(args, folder):
    if not args.paths:
        return

    print(
        f"model: {args.model}, dtype policy {args.dtype}; each path in a fresh process; "
        f"{args.repeats} timed calls"
    )
    header = (
        "| clips | path | first call s | s/call (median) | clips/s | GMAC/clip | GFLOP/s "
        "| matmul GFLOP/s | % of matmul | peak RSS GiB |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    exports = {}
    if any(p in EXPORTED for p in args.paths):
        exports = run_exports(args, folder)
        if "error" in exports:
            print(f"export failed: {exports['error']}")
        for kind, seconds in exports.get("export_s", {}).items():
            print(f"exported {kind} in {seconds:.0f} s")
    results = {}
    for batch, crop in args.configs:
        for path in args.paths:
            label = f"{batch}x{crop}"
            if path in EXPORTED:
                artifact = exports.get("artifacts", {}).get(EXPORTED[path], {})
                missing = _package_missing(RUNTIME_PACKAGES[path])
                if missing:
                    r = {"error": f"skipped: {missing} is not installed"}
                elif "path" not in artifact:
                    r = {"error": f"skipped: {artifact.get('error', exports.get('error'))}"}
                else:
                    r = run_worker(args, path, batch, crop, artifact["path"])
                    if "error" not in r:
                        r["macs"] = exports["macs"][str(crop)]
            else:
                r = run_worker(args, path, batch, crop)
            results[(batch, crop, path)] = r
            if "error" in r:
                print(f"| {label} | {PATHS[path]} | {r['error']} |" + " |" * 7, flush=True)
                continue
            rate = batch / r["median_s"]
            gflops = 2 * r["macs"] * rate / 1e9
            print(
                f"| {label} | {PATHS[path]} | {r['first_s']:.2f} | {r['median_s']:.3f} "
                f"| {rate:.2f} | {r['macs'] / 1e9:.2f} | {gflops:.1f} "
                f"| {r['matmul_gflops']:.1f} | {100 * gflops / r['matmul_gflops']:.0f}% "
                f"| {r['peak_rss_gib']:.2f} |",
                flush=True,
            )
    for batch, crop in args.configs:
        base = results.get((batch, crop, "predict_on_batch"))
        if not base or "error" in base:
            continue
        for path in args.paths:
            r = results[(batch, crop, path)]
            if path == "predict_on_batch" or "error" in r:
                continue
            print(
                f"{batch}x{crop} {path} / predict_on_batch: time "
                f"{r['median_s'] / base['median_s']:.2f}x, first call "
                f"{r['first_s'] / base['first_s']:.2f}x, peak RSS "
                f"{r['peak_rss_gib'] / base['peak_rss_gib']:.2f}x"
            )
    for (batch, crop, path), r in results.items():
        if "bf16_matmul_gflops" in r:
            gflops = 2 * r["macs"] * batch / r["median_s"] / 1e9
            print(
                f"{batch}x{crop} {path} (compiled precision {r.get('precision')}): "
                f"{100 * gflops / r['bf16_matmul_gflops']:.0f}% of the same-run bfloat16 "
                f"matmul's {r['bf16_matmul_gflops']:.1f} GFLOP/s"
            )
    for baseline in ("pytorch", "pytorch_channels_last"):
        for batch, crop in args.configs:
            base = results.get((batch, crop, baseline))
            if not base or "error" in base:
                continue
            for path in args.paths:
                r = results[(batch, crop, path)]
                if path == baseline or "error" in r:
                    continue
                print(
                    f"{batch}x{crop} {path} vs {baseline}: "
                    f"{base['median_s'] / r['median_s']:.2f}x the speed, "
                    f"peak RSS {r['peak_rss_gib'] / base['peak_rss_gib']:.2f}x"
                )


def run_classify(args):
    """Prints the wall time of the 30-view classify_video, per views per model call."""
    import av

    with av.open(args.classify_video) as container:
        stream = container.streams.video[0]
        seconds = float(container.duration / av.time_base) if container.duration else None
        described = (
            f"{seconds:.1f} s, {stream.frames} frames at {float(stream.average_rate):.0f} fps, "
            f"{stream.width}x{stream.height}"
        )
    print(
        f"\n30-view classify_video of {os.path.basename(args.classify_video)} ({described}), "
        f"{args.model}, float32, end to end (decode, resize, crops, model), in a fresh process"
    )
    header = "| views per call | first run s | second run s | views/s (second) | peak RSS GiB |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for batch_size in args.classify_batch_sizes:
        r = _run(
            args,
            ["--worker-classify-batch", str(batch_size), "--classify-video", args.classify_video],
        )
        label = "3 (default)" if batch_size == 0 else str(batch_size)
        if "error" in r:
            print(f"| {label} | {r['error']} | | | |", flush=True)
            continue
        first, second = r["times_s"]
        print(
            f"| {label} | {first:.1f} | {second:.1f} | {30 / second:.2f} "
            f"| {r['peak_rss_gib']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
