"""The `keras-slowfast` command: classify a video, convert checkpoints, export for serving.

Examples::

    keras-slowfast classify video.mp4                      # SlowFast 8x8 R50, Kinetics-400
    keras-slowfast classify video.mp4 --views 1 --top 3    # one centred view, quicker
    keras-slowfast classify video.mp4 --model slowfast_16x8_r101_50_50
    keras-slowfast classify video.mp4 --weights SLOWFAST_8x8_R50.pkl
    keras-slowfast classify video.mp4 --views 1 --gradcam cam.mp4   # Grad-CAM overlay video
    keras-slowfast convert SLOWFAST_8x8_R50.pkl slowfast_8x8_r50.weights.h5
    keras-slowfast export serving/slowfast --model slowfast_8x8_r50 --weights k400
    keras-slowfast export slowfast.onnx --format onnx      # also openvino (.xml), tflite
    keras-slowfast weights                                 # the published weights
    keras-slowfast info slowfast_8x8_r50                   # params, GMACs, sampling, accuracy
    keras-slowfast data-service dispatcher --port 5050     # tf.data service (docs/scaling.md)
    keras-slowfast timeline long.mp4 --csv timeline.csv    # top classes every second
    keras-slowfast features videos.txt --output feats/     # pooled features every second
"""

import argparse
import contextlib
import difflib
import importlib
import math
import os
import re
import sys
import threading
import time
import warnings

_TFRECORDS_CLI = "keras_slowfast.data.write_tfrecords_cli"
_DATA_SERVICE_CLI = "keras_slowfast.training.data_service_cli"


# --------------------------------------------------------------------------------------------
# Model names: each command accepts some kinds of presets.


def _any_model(preset):
    return True


def _classifier(preset):
    from keras_slowfast import presets

    return preset.kind == presets.CLASSIFIER


def _headed_classifier(preset):
    return _classifier(preset) and preset.include_top


def _detector(preset):
    from keras_slowfast import presets

    return preset.kind == presets.DETECTOR


# What each kind of `--model` is called in messages.
_MODEL_KINDS = {
    _any_model: "a preset or architecture",
    _classifier: "a classifier or backbone preset",
    _headed_classifier: "a classifier preset with a head",
    _detector: "an AVA detector preset",
}


def _models(accepts=_any_model):
    """Preset names, then architecture keys, that `accepts`, in table order, each once."""
    from keras_slowfast import presets

    names = []
    for name in presets.preset_names() + presets.architecture_names():
        if name not in names and accepts(presets.get_preset(name)):
            names.append(name)
    return names


def _model_name(accepts):
    """The argparse `type` of a model argument: a known preset name or architecture key.

    An unknown name is a usage error that suggests the nearest name the command takes and
    lists the names it takes (a known name of another kind is left to the command's own
    check, which says what it needs).
    """

    def model_name(value):
        if value in _models():
            return value
        choices = _models(accepts)
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise argparse.ArgumentTypeError(
            f"unknown model {value!r}{hint} This command takes {_MODEL_KINDS[accepts]}: "
            f"{', '.join(choices)}"
        )

    return model_name


def _check_model_kind(command, model, accepts, why=""):
    """Raises a ValueError naming --model unless `model` is of the kind `command` takes."""
    from keras_slowfast import presets

    if model is None or accepts(presets.get_preset(model)):
        return
    raise ValueError(
        f"`{command}` needs {_MODEL_KINDS[accepts]}{why}: one of "
        f"{', '.join(_models(accepts))}. Received: --model {model}"
    )


def _add_model_args(parser, accepts=_headed_classifier):
    parser.add_argument(
        "--model",
        default="slowfast_8x8_r50_kinetics400",
        type=_model_name(accepts),
        metavar="PRESET",
        help="a preset name or architecture key, see `keras-slowfast weights` "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="a published weights name of the architecture (k400, ava, ...), a .weights.h5 / "
        ".pyth / .pkl path, or none (default: the preset's published weights)",
    )
    parser.add_argument(
        "--width-per-group",
        type=_positive,
        default=None,
        help="architecture override for non-published checkpoints (read from .pyth/.pkl)",
    )
    parser.add_argument(
        "--classes",
        type=_positive,
        default=None,
        help="class count override for non-published checkpoints (read from .pyth/.pkl)",
    )
    parser.add_argument(
        "--precision",
        choices=sorted(_PRECISIONS),
        default="float32",
        help="bfloat16: the backbone computes in bfloat16 (Keras mixed_bfloat16), the head "
        "and probabilities stay float32; faster on CPUs with bfloat16 units "
        "(default: %(default)s)",
    )


_PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16"}


def _model_kwargs(args):
    kwargs = {}
    dtype = _PRECISIONS.get(getattr(args, "precision", None) or "float32")
    if dtype is not None:
        kwargs["dtype"] = dtype
    if args.width_per_group is not None:
        kwargs["width_per_group"] = args.width_per_group
    if args.classes is not None:
        kwargs["classes"] = args.classes
    return kwargs


def _build_model(args):
    from keras_slowfast import hub, presets

    preset = presets.get_preset(args.model)
    weights = args.weights
    kwargs = _model_kwargs(args)
    if weights is None and preset.checkpoint is None:
        raise ValueError(
            f"{preset.name} has no published weights: pass --weights PATH or "
            f"--weights none. Received: --model {args.model}"
        )
    if weights in ("", "none", "None"):
        return hub.from_preset(preset.name, load_weights=False, **kwargs)
    if weights is not None and weights.endswith((".pyth", ".pkl", ".pth", ".pt", ".h5")):
        # A file: converted with this preset's conventions and head.
        return hub.build(preset.name, weights, **kwargs)
    try:
        if weights is None:
            return hub.from_preset(preset.name, **kwargs)
        return hub.build(preset.architecture, weights, **kwargs)
    except hub.WeightsDownloadError as e:
        if e.reason is None:  # downloaded, but not usable: the library's message says why
            raise
        raise OSError(
            f"The {weights or preset.weights} weights of {preset.architecture} are not in the "
            f"cache ({hub.cache_dir()}) and could not be downloaded from {e.url} ({e.reason}). "
            f"Check the network, set {hub.MIRROR_ENV} to a mirror, or give a downloaded "
            "checkpoint with --weights PATH (.pkl, .pyth or .weights.h5)."
        ) from None


def _classify(args):
    from keras_slowfast import presets
    from keras_slowfast.inference import classify_video, describe_protocol
    from keras_slowfast.labels import decode_predictions

    preset = presets.get_preset(args.model)
    model = _build_model(args)
    classes = model.output_shape[-1]
    if args.gradcam_class is not None and not 0 <= args.gradcam_class < classes:
        raise ValueError(
            f"--gradcam-class must be a class index in [0, {classes}). "
            f"Received: --gradcam-class {args.gradcam_class}"
        )
    start = time.perf_counter()
    probs = classify_video(model, args.video, preset=preset.name, views=args.views)
    elapsed = time.perf_counter() - start
    print(
        f"{os.path.basename(args.video)}: {preset.name}, weights {args.weights or preset.weights}, "
        f"{describe_protocol(preset.name, args.views)}, {args.precision}, {elapsed:.1f} s"
    )
    names = preset.labels if model.output_shape[-1] == preset.classes else None
    top = decode_predictions(probs[None], args.top, class_names=names)[0]
    for rank, (index, name, score) in enumerate(top):
        print(f"{rank + 1:>3}. {score:8.4f}  {name}  (class {index})")
    if args.gradcam is not None:
        _classify_gradcam(args, model, preset, names)
    if args.annotate is not None:
        _classify_annotate(args, model, preset)
    return 0


def _classify_gradcam(args, model, preset, names):
    """`classify --gradcam`: Grad-CAM of the quick centre view, written as a video."""
    from keras_slowfast.inference import video_views
    from keras_slowfast.labels import class_names_for
    from keras_slowfast.visualize import grad_cam, write_gradcam_video

    proto = preset.protocol
    clip = next(
        video_views(
            args.video,
            proto.num_frames,
            proto.sampling_rate,
            views=1,
            size=proto.test_crop_size,
            temporal_views=proto.temporal_views,
            crop_indices=proto.crop_indices,
            sampling=proto.sampling,
            target_fps=proto.target_fps,
        )
    )[0]
    heatmaps, index = grad_cam(model, clip, class_index=args.gradcam_class)
    name = class_names_for(model.output_shape[-1], names)[index]
    score = float(model.predict_on_batch(clip[None])[0, index])
    # Uniform clips play in real time; a segment clip spans the video, shown at 8 fps.
    fps = proto.target_fps / proto.sampling_rate if proto.sampling == "uniform" else 8
    write_gradcam_video(clip, heatmaps, args.gradcam, fps=fps, title=f"{name} {score:.2f}")
    print(f"Grad-CAM of class {index} ({name}, {score:.4f} on the centre view): {args.gradcam}")


def _annotate(video, windows, names, path, top_k, progress):
    """Re-encodes `video` with each window's top classes drawn on the frames it covers."""
    import numpy as np

    from keras_slowfast.visualize import annotate_video

    annotate_video(
        video,
        np.array([w.time for w in windows]),
        np.stack([w.scores for w in windows]),
        path,
        names,
        top_k=top_k,
        starts=np.array([w.start for w in windows]),
        ends=np.array([w.end for w in windows]),
        progress=progress,
    )
    print(f"written: {path}")


def _classify_annotate(args, model, preset):
    """`classify --annotate`: one window every `--stride` seconds, labels drawn per window."""
    from keras_slowfast.inference import timeline

    names = _class_names(preset, model.output_shape[-1])
    windows = list(
        timeline(model, args.video, preset.name, window_stride_seconds=args.stride, progress=True)
    )
    _annotate(args.video, windows, names, args.annotate, min(args.top, 3, len(names)), True)


def _class_names(preset, classes):
    from keras_slowfast.labels import class_names_for

    if preset.labels is not None and classes == preset.classes:
        return class_names_for(classes, preset.labels)
    return class_names_for(classes)


def _plot_timeline(times, scores, class_names, path, top):
    from keras_slowfast.visualize import plot_timeline

    return plot_timeline(times, scores, class_names, path, top=top)


def _timeline_csv(path, windows, names):
    """Writes one row per window: window,start,end,time,top_class,top_score,<each class>."""
    import csv
    import io

    from keras_slowfast.atomic import write_text_atomically

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["window", "start", "end", "time", "top_class", "top_score", *names])
    for w in windows:
        best = int(w.scores.argmax())
        writer.writerow(
            [
                w.index,
                f"{w.start:.6g}",
                f"{w.end:.6g}",
                f"{w.time:.6g}",
                names[best],
                f"{float(w.scores[best]):.6g}",
                *(f"{float(s):.6g}" for s in w.scores),
            ]
        )
    write_text_atomically(path, buffer.getvalue())


def _timeline(args):
    import numpy as np

    from keras_slowfast import presets
    from keras_slowfast.inference import timeline

    preset = presets.get_preset(args.model)
    model = _build_model(args)
    names = _class_names(preset, model.output_shape[-1])
    top = min(args.top, len(names))
    start = time.perf_counter()
    windows = []
    # Each window's line is progress enough where it shows on the terminal the bar would use.
    rows_on_terminal = _isatty(sys.stdout) and _isatty(sys.stderr)
    for w in timeline(
        model,
        args.video,
        preset.name,
        window_stride_seconds=args.stride,
        batch_size=args.batch_size,
        progress=not args.quiet and not rows_on_terminal,
        timeout=args.timeout,
    ):
        windows.append(w)
        best = np.argsort(-w.scores, kind="stable")[:top]
        labels = ", ".join(f"{names[i]} {w.scores[i]:.3f}" for i in best)
        print(f"{w.start:8.2f} {w.end:8.2f}  {labels}", flush=True)
    elapsed = time.perf_counter() - start
    print(
        f"{os.path.basename(args.video)}: {len(windows)} windows every {args.stride:g} s, "
        f"{preset.name}, {elapsed:.1f} s"
    )
    if args.csv:
        _timeline_csv(args.csv, windows, names)
        print(f"written: {args.csv}")
    if args.plot:
        _plot_timeline(
            np.array([w.time for w in windows]),
            np.stack([w.scores for w in windows]),
            names,
            args.plot,
            top=top,
        )
        print(f"written: {args.plot}")
    if args.annotate:
        _annotate(args.video, windows, names, args.annotate, min(top, 3), not args.quiet)
    return 0


def _features(args):
    from keras_slowfast import presets
    from keras_slowfast.inference import feature_model
    from keras_slowfast.streaming import save_features, video_list

    preset = presets.get_preset(args.model)
    # A bad list, or a single video that does not open, fails before the model is built (a
    # list's videos are read one by one: the unreadable ones are skipped and listed).
    entries = video_list(args.videos, args.path_prefix)
    single = os.path.join(args.path_prefix or "", args.videos)
    if len(entries) == 1 and entries[0][0] in (args.videos, single):
        _check_video(entries[0][0], "videos")
    model = feature_model(_build_model(args))
    start = time.perf_counter()

    def report(path, name, status):
        if status not in ("extracted", "existing"):
            print(f"skipped {path}: {status}", file=sys.stderr, flush=True)

    summary = save_features(
        model,
        args.videos,
        args.output,
        preset=preset.name,
        weights=args.weights or preset.weights,
        format=args.format,
        window_stride_seconds=args.stride,
        batch_size=args.batch_size,
        path_prefix=args.path_prefix,
        timeout=args.timeout,
        progress=not args.quiet,
        on_video=report,
    )
    elapsed = time.perf_counter() - start
    total = len(summary.extracted) + len(summary.existing) + len(summary.failed)
    print(
        f"{total} video(s): {len(summary.extracted)} extracted, {len(summary.existing)} "
        f"already complete, {len(summary.failed)} failed; {model.output_shape[-1]}-d "
        f"features of {preset.name} every {args.stride:g} s in {args.output}, {elapsed:.1f} s"
    )
    if summary.failures_file:
        print(f"failures: {summary.failures_file}")
        return 1
    return 0


def _convert(args):
    from keras_slowfast import hub

    kwargs = _model_kwargs(args)
    model, summary = hub.convert_checkpoint(args.checkpoint, args.output, args.model, **kwargs)
    print(f"checkpoint: {args.checkpoint}")
    print(f"format:     {summary['format']}")
    print(f"preset:     {summary['preset']}")
    print(f"tensors:    {summary['tensors']}")
    print(f"parameters: {summary['params']:,}")
    print(f"width:      {summary['width_per_group']}, classes: {summary['classes']}")
    print(f"written:    {args.output}")
    if not args.skip_check:
        check = hub.check_weights_file(
            model,
            args.output,
            args.model,
            width_per_group=summary["width_per_group"],
            classes=summary["classes"],
        )
        ok = check["finite"] and check["max_abs_diff"] == 0.0
        print(
            f"check:      reloaded output {check['output_shape']}, max abs diff "
            f"{check['max_abs_diff']:.3g}, finite {check['finite']} -> "
            f"{'OK' if ok else 'FAILED'}"
        )
        if not ok:
            return 1
    return 0


_EXPORT_FORMATS = {
    # format: (exporter, what it writes)
    "onnx": ("export_onnx", "ONNX model"),
    "openvino": ("export_openvino", "OpenVINO IR (.xml + .bin)"),
    "tflite": ("export_tflite", "TensorFlow Lite model"),
}


def _export_other(args):
    from keras_slowfast import export

    function, label = _EXPORT_FORMATS[args.format]
    model = _build_model(args)
    kwargs = {"quantize": "dynamic"} if args.quantize == "dynamic" else {}
    try:
        path = getattr(export, function)(model, args.export_dir, overwrite=args.overwrite, **kwargs)
    except ImportError as e:
        print(f"keras-slowfast export: error: {e}", file=sys.stderr)
        return 2
    print(f"{label} written to {path}")
    print(
        "inputs: clip float32 (batch, frames, height, width, 3)"
        + (", boxes float32 (batch, boxes, 4)" if isinstance(model.input, dict) else "")
        + " -> probabilities"
    )
    return 0


def _export(args):
    from keras_slowfast.export import export_saved_model

    if args.format != "saved_model":
        return _export_other(args)
    model = _build_model(args)
    path = export_saved_model(
        model, args.export_dir, version=args.version, top_k=args.top_k, overwrite=args.overwrite
    )
    print(f"SavedModel for TF Serving written to {path}")
    print(
        "signature serving_default: clip uint8 (batch, frames, height, width, 3)"
        + (", boxes float32 (batch, max_boxes, 4)" if isinstance(model.input, dict) else "")
        + " -> probabilities, top_k_scores, top_k_indices"
    )
    return 0


def _list_weights(args):
    from keras_slowfast import hub, presets

    print(f"base URL: {hub.base_url()}  (set ${hub.MIRROR_ENV} to use a mirror)")
    print(f"cache:    {hub.cache_dir()}")
    header = ("preset", "weights", "format", "dataset", "metric", "protocol", "checkpoint")
    rows = [header]
    for p in presets.PRESETS:
        proto = p.protocol
        views = f"{proto.temporal_views}x{proto.spatial_crops}"
        rows.append(
            (
                p.name,
                p.weights or "-",
                p.checkpoint.format if p.checkpoint else "-",
                p.dataset or "-",
                f"{p.metric} {p.value}" if p.value is not None else "-",
                f"{proto.num_frames}x{proto.sampling_rate} {views} {proto.ensemble}"
                + (" bgr" if proto.channel_order == "bgr" else "")
                + (" segment" if proto.sampling == "segment" else ""),
                p.checkpoint.path if p.checkpoint else "(architecture only)",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


def _info(args):
    from keras_slowfast import hub, presets
    from keras_slowfast.flops import model_flops

    preset = presets.get_preset(args.variant)
    kw = preset.kwargs
    frames, rate = preset.protocol.num_frames, preset.protocol.sampling_rate
    detector = preset.kind == presets.DETECTOR
    model = hub.from_preset(preset.name, load_weights=False)
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    statistics = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    if kw.get("single_pathway"):
        arch, pathways = "Slow", "one pathway"
    else:
        arch, alpha = "SlowFast", kw["alpha"]
        pathways = f"Slow pathway {frames // alpha} frames, Fast {frames} (alpha {alpha})"
    rows = [("parameters", f"{trainable:,} (+ {statistics:,} BatchNorm statistics)")]
    if preset.config:
        rows.insert(0, ("config", f"{preset.source} {preset.config}"))
    rows.append(("clip", f"{frames} frames, sampling rate {rate}; {pathways}"))
    for size in (224, 256):
        shape = (frames, size, size, 3)
        if detector:
            shape = {"clip": shape, "boxes": (1, 4)}
        macs = model_flops(model, shape).gmacs
        with_bn = model_flops(model, shape, batchnorm="inference").gmacs
        text = f"{macs:.2f} ({with_bn:.2f} with BatchNorm, as fvcore counts it today)"
        rows.append((f"GMACs {size}x{size}", text))
    if detector:
        rows.append(("", "for one person box; RoIAlign not counted (as fvcore)"))
    if preset.checkpoint is not None:
        rows.append(
            (
                "published",
                f"{preset.weights} weights: {preset.dataset} {preset.metric} {preset.value}",
            )
        )
        rows.append(("checkpoint", f"{preset.checkpoint.format} {preset.checkpoint.path}"))
    else:
        rows.append(("published", "no weights"))
    print(f"{preset.name}: {arch} R{kw['depth']} {preset.kind}, {preset.classes} classes")
    for label, text in rows:
        print(f"  {label + ':' if label else '':<15}{text}")
    return 0


_PYSLOWFAST_SUFFIXES = (".pyth", ".pkl", ".pt")
_DEFAULT_DETECTOR = "ava_slowfast_32x2_r101_50_50"
_KERAS_HUB_PRESET = "retinanet_resnet50_fpn_coco"


def _pyslowfast_data_settings(path):
    """Clip settings from a PySlowFast checkpoint's embedded config ({} if it has none)."""
    from keras_slowfast.weights.pyslowfast_config import read_pyslowfast_config
    from keras_slowfast.weights.transfer import checkpoint_to_pyslowfast_state

    _, info = checkpoint_to_pyslowfast_state(path)
    if not info.get("cfg"):
        return {}
    cfg = read_pyslowfast_config(info["cfg"])
    return {
        "sampling_rate": int(cfg["DATA"]["SAMPLING_RATE"]),
        "bgr": bool(cfg["AVA"]["BGR"]),
        "detection_score_thresh": float(cfg["AVA"]["DETECTION_SCORE_THRESH"]),
    }


def _build_detector(args):
    """The AVA detector of `--model` / `--weights` and clip settings from its config.

    A PySlowFast checkpoint alone gives the architecture and the clip settings (sampling
    rate, BGR input, person-box threshold) from its embedded config.
    """
    from keras_slowfast import presets

    weights = args.weights
    if args.model is None and weights and weights.lower().endswith(_PYSLOWFAST_SUFFIXES):
        from keras_slowfast.hub import load_pyslowfast

        model = load_pyslowfast(weights, **_model_kwargs(args))
        return model, _pyslowfast_data_settings(weights)
    args.model = args.model or _DEFAULT_DETECTOR
    preset = presets.get_preset(args.model, kind=presets.DETECTOR)
    return _build_model(args), {"sampling_rate": preset.protocol.sampling_rate}


def _setting(args, settings, name, default):
    value = getattr(args, name)
    if value is not None:
        return value
    return settings.get(name, default)


def _evaluate_ava(args):
    from keras_slowfast.evaluation.ava_detector import evaluate_ava_detector

    model, settings = _build_detector(args)
    start = time.perf_counter()
    result = evaluate_ava_detector(
        model,
        args.data_dir,
        mode=args.mode,
        labelmap=args.labelmap,
        groundtruth=args.groundtruth,
        exclusions=args.exclusions,
        output_dir=args.output_dir,
        sampling_rate=_setting(args, settings, "sampling_rate", 2),
        test_crop_size=args.test_crop_size,
        full_test_on_val=args.full_test_on_val,
        detection_score_thresh=_setting(args, settings, "detection_score_thresh", 0.8),
        bgr=args.bgr or settings.get("bgr", False),
        batch_size=args.batch_size,
        video_dir=args.video_dir,
        progress=not args.quiet,
    )
    elapsed = time.perf_counter() - start
    keyframes = len(set(zip(result.videos, result.seconds.tolist())))
    print(
        f"{keyframes} keyframes, {len(result.scores)} boxes in {elapsed:.1f} s "
        f"({keyframes / max(elapsed, 1e-9):.2f} keyframes/s)"
    )
    if args.output_dir:
        print(
            f"written: {os.path.join(args.output_dir, 'detections.csv')}, "
            f"{os.path.join(args.output_dir, 'metrics.json')}"
        )
    print(f"frame-mAP@0.5IOU: {result.mean_ap:.6f}")
    return 0


def _extract_frames(args):
    from keras_slowfast.data.ava_extract import extract_ava_frames
    from keras_slowfast.data.video import DecodeErrorCounter

    counter = DecodeErrorCounter()
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Skipped videos are listed once at the end instead.
        warnings.filterwarnings("ignore", message="Skipping video", category=RuntimeWarning)
        result = extract_ava_frames(
            args.videos,
            args.output,
            fps=args.fps,
            split=args.split,
            jpeg_quality=args.jpeg_quality,
            on_error=args.on_error,
            timeout=args.timeout,
            progress=not args.quiet,
            error_counter=counter,
        )
    elapsed = time.perf_counter() - start
    print(
        f"{len(result.frames)} video(s), {sum(result.frames.values())} frames at {args.fps:g} fps "
        f"in {os.path.join(args.output, 'frames')} ({len(result.extracted)} extracted, "
        f"{len(result.existing)} already complete, {len(result.failed)} skipped), "
        f"{elapsed:.1f} s"
    )
    print(f"frame list: {result.frame_list}")
    for path, reason in result.failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return 0


def _detect(args):
    from keras_slowfast.detect import (
        KerasHubPersonDetector,
        OpenCVPersonDetector,
        detect_actions,
        write_detections_csv,
    )

    if args.boxes is None:
        kind = args.person_detector or "opencv"
        thresh = {} if args.person_thresh is None else {"score_thresh": args.person_thresh}
        if kind == "opencv":
            detector = OpenCVPersonDetector(**thresh)
        else:
            detector = KerasHubPersonDetector(args.keras_hub_preset, **thresh)
    model, settings = _build_detector(args)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        found = detect_actions(
            model,
            args.video,
            args.boxes,
            person_detector=None if args.boxes is not None else detector,
            output_video=args.output,
            sampling_rate=_setting(args, settings, "sampling_rate", 2),
            test_crop_size=args.test_crop_size,
            top_k=args.top_k,
            score_thresh=args.score_thresh,
            box_score_thresh=(
                _setting(args, {}, "person_thresh", settings.get("detection_score_thresh"))
                if args.boxes is not None
                else None
            ),
            bgr=args.bgr or settings.get("bgr", False),
            progress=not args.quiet,
        )
    if args.csv is not None:
        write_detections_csv(found, args.csv, header=True)
    nobody = len(found.seconds) == 0
    for w in caught:
        if not (nobody and str(w.message).startswith("No person")):  # said below, with a hint
            print(f"keras-slowfast detect: warning: {w.message}", file=sys.stderr)
    if nobody:
        if args.boxes is not None:
            stem = os.path.splitext(os.path.basename(args.video))[0]
            hint = (
                f"check that its `video` column is {stem!r} (the file name without extension) "
                "and --person-thresh"
            )
            source = f"no person box of this video in --boxes {args.boxes}"
        else:
            source = f"the {args.person_detector or 'opencv'} person detector found no one"
            hint = "give person boxes with --boxes FILE" + (
                ", or try --person-detector keras-hub"
                if args.person_detector != "keras-hub"
                else ", or lower --person-thresh"
            )
        print(
            f"keras-slowfast detect: warning: {source} in {args.video}, so no action was "
            f"scored" + (" (the CSV has its header only)" if args.csv else "") + f"; {hint}.",
            file=sys.stderr,
        )
    elapsed = time.perf_counter() - start
    seconds = len(set(found.seconds.tolist()))
    print(
        f"{os.path.basename(args.video)}: {len(found.seconds)} person boxes in {seconds} of "
        f"{found.keyframes} keyframes, {elapsed:.1f} s"
    )
    for path in (args.output, args.csv):
        if path is not None:
            print(f"written: {path}")
    return 0


def _has_tfrecords_cli():
    # Looked up as a file: finding the module's spec would import the data package (and
    # TensorFlow with it) just to list the command.
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    return os.path.isfile(os.path.join(folder, "write_tfrecords_cli.py"))


def _positive(value):
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _positive_number(value):
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return number


def _jpeg_quality(value):
    number = _positive(value)
    if number > 100:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to 100, got {value}")
    return number


def _add_detector_args(parser):
    """`--model` / `--weights` of the commands that run an AVA detector."""
    parser.add_argument(
        "--model",
        default=None,
        type=_model_name(_detector),
        metavar="PRESET",
        help=f"the detector preset (default: {_DEFAULT_DETECTOR}, or the architecture in a "
        "PySlowFast --weights file)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="a published weights name (ava), a .weights.h5 / .pyth / .pkl path (a PySlowFast "
        ".pyth alone gives the architecture), or none",
    )
    parser.add_argument("--width-per-group", type=_positive, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--classes", type=_positive, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--test-crop-size",
        type=_positive,
        default=256,
        help="short side of the clips (default: %(default)s)",
    )
    parser.add_argument(
        "--sampling-rate",
        type=_positive,
        default=None,
        help="frame stride of the clips at 30 fps (default: the variant's or the checkpoint's "
        "config, else 2)",
    )
    parser.add_argument(
        "--bgr", action="store_true", help="feed BGR clips (default: the config's AVA.BGR)"
    )


def build_parser():
    """The `argparse` parser of the `keras-slowfast` command."""
    parser = argparse.ArgumentParser(
        prog="keras-slowfast",
        description="SlowFast video networks for Keras: classify, convert, export.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "classify",
        help="print the top classes of a video",
        description="Classifies a video with a Kinetics (or SSv2, Charades) classifier as its "
        "preset was tested (by default its full multi-view protocol, e.g. 10 clips x 3 crops) "
        "and prints the top classes; optionally writes a Grad-CAM video of the centre view "
        "(--gradcam) or the video with the top classes of each window drawn on it "
        "(--annotate).",
    )
    p.add_argument("video", help="the video file")
    _add_model_args(p)
    p.add_argument(
        "--views",
        type=int,
        choices=(1, 30),
        default=None,
        help="default: the preset's published protocol (10 clips x 3 crops for Kinetics); "
        "1: one centred view",
    )
    p.add_argument("--top", type=_positive, default=5, help="how many classes to print")
    p.add_argument(
        "--gradcam",
        metavar="OUT.mp4",
        default=None,
        help="also write the Grad-CAM maps of the centre view (centred clip, centre crop) "
        "as a video: [frame | slow | fast]",
    )
    p.add_argument(
        "--gradcam-class",
        type=int,
        default=None,
        metavar="N",
        help="the class index Grad-CAM explains (default: the centre view's top class)",
    )
    p.add_argument(
        "--annotate",
        metavar="OUT.mp4",
        default=None,
        help="also write the video with the top classes (up to 3) of a window every "
        "--stride seconds drawn on the frames it covers",
    )
    p.add_argument(
        "--stride",
        type=_positive_number,
        default=None,
        help="with --annotate: seconds between window centres (default: 1)",
    )
    p.add_argument("--cpu", action="store_true", help="hide any GPU and run on the CPU")
    p.set_defaults(func=_classify)

    p = sub.add_parser(
        "convert",
        help="convert a .pyth/.pkl checkpoint to .weights.h5",
        description="Converts a PySlowFast or PyTorchVideo .pyth, or a Caffe2 .pkl, checkpoint "
        "of the given architecture to a Keras .weights.h5 file (every tensor used once, every "
        "weight assigned), then reloads the file and compares the outputs.",
    )
    p.add_argument("checkpoint", help="PySlowFast / PyTorchVideo .pyth or Caffe2 .pkl file")
    p.add_argument("output", help="the .weights.h5 file to write")
    p.add_argument(
        "--model",
        default="slowfast_8x8_r50",
        type=_model_name(_any_model),
        metavar="PRESET",
        help="the preset or architecture the checkpoint belongs to (default: %(default)s)",
    )
    p.add_argument("--width-per-group", type=_positive, default=None, help=argparse.SUPPRESS)
    p.add_argument("--classes", type=_positive, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--skip-check", action="store_true", help="skip reloading the file and comparing outputs"
    )
    p.set_defaults(func=_convert)

    p = sub.add_parser(
        "export",
        help="write a TF Serving SavedModel (export_dir/<version>/), or an ONNX, OpenVINO "
        "or TensorFlow Lite file",
        description="Exports a classifier or detector with its preprocessing: a SavedModel "
        "for TF Serving (export_dir/<version>/, signature serving_default with top-k "
        "outputs), or an ONNX, OpenVINO IR or TensorFlow Lite file.",
    )
    p.add_argument(
        "export_dir",
        help="the model's base folder for TF Serving; with another --format, the file to "
        "write (.onnx, .xml, .tflite)",
    )
    _add_model_args(p, accepts=_any_model)
    p.add_argument(
        "--format",
        choices=("saved_model", *_EXPORT_FORMATS),
        default="saved_model",
        help="saved_model (default), onnx, openvino or tflite (classifiers only); onnx and "
        "openvino need the optional packages: pip install 'keras-slowfast[onnx]' or "
        "'keras-slowfast[openvino]'",
    )
    p.add_argument(
        "--quantize",
        choices=("none", "dynamic"),
        default="none",
        help="with --format tflite: dynamic-range quantisation (int8 weights)",
    )
    p.add_argument(
        "--version",
        type=_positive,
        default=None,
        help="with --format saved_model: the model version, written to export_dir/<version>/ "
        "(default: 1)",
    )
    p.add_argument(
        "--top-k",
        type=_positive,
        default=None,
        help="with --format saved_model: classes in the signature's top_k_scores and "
        "top_k_indices outputs (default: 5)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing version/file")
    p.add_argument("--cpu", action="store_true", help="hide any GPU and run on the CPU")
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "evaluate-ava",
        help="score an AVA detector on an AVA-layout dataset (frame-mAP)",
        description="Runs an AVA detector on every keyframe of an AVA-layout folder "
        "(frames/, frame_lists/, annotations/ with PySlowFast's default file names), writes "
        "detections.csv and metrics.json, and prints the frame-mAP.",
    )
    p.add_argument("data_dir", help="the AVA-layout dataset folder")
    _add_detector_args(p)
    p.add_argument(
        "--mode",
        choices=("test", "val"),
        default="test",
        help="test: every keyframe, no crop (default); val: centre crops",
    )
    p.add_argument(
        "--full-test-on-val",
        action="store_true",
        help="with --mode val: every second instead of every fourth",
    )
    p.add_argument(
        "--detection-score-thresh",
        type=float,
        default=None,
        help="minimum person-box score (default: the config's, or 0.8)",
    )
    p.add_argument(
        "--labelmap", default=None, help="evaluated classes .pbtxt (default: the 60-class AVA list)"
    )
    p.add_argument(
        "--groundtruth",
        default=None,
        help="ground-truth CSV (default: annotations/ava_val_v2.2.csv)",
    )
    p.add_argument(
        "--exclusions",
        default=None,
        help="excluded timestamps CSV (default: the one in annotations/)",
    )
    p.add_argument(
        "--video-dir",
        default=None,
        help="read frames from <video>.mp4 files here instead of frames/",
    )
    p.add_argument(
        "--batch-size", type=_positive, default=8, help="keyframes per model call (default: 8)"
    )
    p.add_argument("--output-dir", default=None, help="write detections.csv and metrics.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--cpu", action="store_true", help="hide any GPU and run on the CPU")
    p.set_defaults(func=_evaluate_ava)

    p = sub.add_parser(
        "extract-frames",
        help="write AVA's frame layout (frames/, frame_lists/) from video files",
        description="Write every video's frames at 30 fps as DATA_DIR/frames/<video>/"
        "<video>_%06d.jpg and list them in DATA_DIR/frame_lists/<split>.csv, as AVA's "
        "frame extraction and PySlowFast's frame lists do. Resumable: complete folders "
        "are kept.",
    )
    p.add_argument(
        "videos",
        nargs="+",
        metavar="VIDEO_OR_LIST",
        help="video files, or list files (.txt/.csv/.lst/.list, one video path per line)",
    )
    p.add_argument("--output", required=True, metavar="DATA_DIR", help="the dataset folder")
    p.add_argument("--split", default="train", help="frame list name (default: %(default)s)")
    p.add_argument("--fps", type=_positive_number, default=30.0, help="frame rate (default: 30)")
    p.add_argument(
        "--jpeg-quality",
        type=_jpeg_quality,
        default=95,
        help="OpenCV JPEG quality, 1 to 100 (default: 95)",
    )
    p.add_argument(
        "--on-error",
        choices=("skip", "raise"),
        default="skip",
        help="skip unreadable videos with a message (default) or stop at the first one",
    )
    p.add_argument(
        "--timeout",
        type=_positive_number,
        default=3600.0,
        help="seconds allowed per video (default: 3600)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_extract_frames)

    p = sub.add_parser(
        "detect",
        help="detect people's actions in a video with an AVA detector",
        description="Every second of the video is a keyframe: person boxes (from --boxes, or "
        "a person detector) are scored by an AVA detector; writes the video with the boxes "
        "and top actions drawn, and/or a CSV video,sec,x1,y1,x2,y2,action,score.",
    )
    p.add_argument("video", help="the video file")
    p.add_argument("--output", default=None, help="the annotated video to write (e.g. .mp4)")
    p.add_argument(
        "--csv",
        default=None,
        help="the detections CSV to write: a header row video,sec,x1,y1,x2,y2,action,score, "
        "then the top actions of each box (boxes normalised, action = AVA's 1-based id)",
    )
    _add_detector_args(p)
    p.add_argument(
        "--boxes",
        default=None,
        help="person boxes, CSV video,sec,x1,y1,x2,y2[,action[,score]] (normalised; video = "
        "the file name without extension, sec = second from the start)",
    )
    p.add_argument(
        "--person-detector",
        choices=("opencv", "keras-hub"),
        default=None,
        help="find people when --boxes is not given: opencv (HOG, offline; the default) or "
        "keras-hub (a keras-hub detector preset, downloaded on first use)",
    )
    p.add_argument(
        "--keras-hub-preset",
        default=None,
        help=f"with --person-detector keras-hub: the keras-hub detector preset (default: "
        f"{_KERAS_HUB_PRESET})",
    )
    p.add_argument(
        "--person-thresh",
        type=float,
        default=None,
        help="minimum person score (opencv default 1.0, keras-hub 0.5; with --boxes, drops rows "
        "scored below it, default: a PySlowFast checkpoint's AVA.DETECTION_SCORE_THRESH)",
    )
    p.add_argument(
        "--score-thresh",
        type=float,
        default=0.0,
        help="minimum action score to keep (default: %(default)s)",
    )
    p.add_argument("--top-k", type=_positive, default=3, help="actions per box (default: 3)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--cpu", action="store_true", help="hide any GPU and run on the CPU")
    p.set_defaults(func=_detect)

    p = sub.add_parser(
        "timeline",
        help="score a long video (or a stream) every --stride seconds",
        description="Scores one centred clip per window (centres at (k + 0.5) * stride "
        "seconds) with the preset's clip and test crop, decoding the video once; prints "
        "each window's top classes and writes a CSV with one row per window: window, "
        "start, end, time, top_class, top_score, then one column of scores per class.",
    )
    p.add_argument("video", help="the video file or a stream URL")
    _add_model_args(p)
    p.add_argument("--csv", default=None, help="the CSV file to write")
    p.add_argument(
        "--plot",
        default=None,
        help="a PNG of the top classes over time to write (needs matplotlib: "
        "pip install 'keras-slowfast[plot]')",
    )
    p.add_argument(
        "--annotate",
        metavar="OUT.mp4",
        default=None,
        help="a copy of the video with each window's top classes (up to 3) drawn on it",
    )
    p.add_argument(
        "--stride",
        type=_positive_number,
        default=1.0,
        help="seconds between windows (default: 1)",
    )
    p.add_argument("--top", type=_positive, default=5, help="classes printed per window")
    p.add_argument("--batch-size", type=_positive, default=8, help="windows per model call")
    p.add_argument(
        "--timeout",
        type=_positive_number,
        default=None,
        help="seconds allowed (default: no limit)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--cpu", action="store_true", help="hide any GPU and run on the CPU")
    p.set_defaults(func=_timeline)

    p = sub.add_parser(
        "features",
        help="write pooled backbone features every --stride seconds of videos",
        description="For each video writes OUTPUT/<name>.npy (windows x dim float32) and "
        "OUTPUT/<name>.json (times, frame indices, settings), or OUTPUT/<name>.h5; <name> "
        "is the video's path relative to the list's folder (or --path-prefix) without its "
        "extension. Resumable: complete videos are skipped. Unreadable videos are skipped "
        "and listed in OUTPUT/failures.txt; the exit status is 1 when any failed.",
    )
    p.add_argument(
        "videos",
        metavar="VIDEO_OR_LIST",
        help="a video file, or a list file (.txt/.csv/.lst/.list, one video path per line)",
    )
    p.add_argument("--output", required=True, metavar="DIR", help="the output folder")
    p.add_argument(
        "--format",
        choices=("npy", "hdf5"),
        default="npy",
        help="npy: OUTPUT/<name>.npy and .json (default); hdf5: OUTPUT/<name>.h5 (needs "
        'h5py: pip install "keras-slowfast[hdf5]")',
    )
    _add_model_args(p, accepts=_classifier)
    p.add_argument(
        "--stride",
        type=_positive_number,
        default=1.0,
        help="seconds between windows (default: 1)",
    )
    p.add_argument("--batch-size", type=_positive, default=8, help="windows per model call")
    p.add_argument("--path-prefix", default=None, help="folder of the list's relative paths")
    p.add_argument(
        "--timeout",
        type=_positive_number,
        default=3600.0,
        help="seconds allowed per video (default: 3600)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--cpu", action="store_true", help="hide any GPU and run on the CPU")
    p.set_defaults(func=_features)

    p = sub.add_parser(
        "weights",
        help="list every preset, its checkpoint and the cache folder",
        description="Lists every preset (published weights, checkpoint format, dataset, "
        "published metric, test protocol and checkpoint path), the download base URL and the "
        "cache folder.",
    )
    p.set_defaults(func=_list_weights)

    p = sub.add_parser(
        "info",
        help="print a variant's parameters, GMACs, clip sampling and published accuracy",
        description="Builds the variant (no weights, no forward pass) and prints its parameter "
        "count, its multiply-accumulates per clip at 224x224 and 256x256 (counted as fvcore "
        "counts, see keras_slowfast.model_flops), its clip sampling and its published metric.",
    )
    p.add_argument(
        "variant",
        type=_model_name(_any_model),
        metavar="PRESET",
        help="a preset or architecture",
    )
    p.set_defaults(func=_info)

    if _has_tfrecords_cli():
        # Listed for --help; main() hands its arguments to the data package's command.
        sub.add_parser(
            "write-tfrecords",
            help="write JPEG-frame TFRecords of a video list",
            description="Decodes every video of a PySlowFast list file and stores its frames "
            "as JPEG-frame TFRecords (see `keras-slowfast write-tfrecords --help`).",
        )
    # Listed for --help; main() hands its arguments to the training package's command.
    sub.add_parser(
        "data-service",
        help="run a tf.data service dispatcher or worker (input on CPU hosts)",
        description="Runs a tf.data service dispatcher or worker (see `keras-slowfast "
        "data-service --help`).",
    )
    for p in sub.choices.values():
        p.set_defaults(command_parser=p)
    return parser


# --------------------------------------------------------------------------------------------
# Before any work: flags that do nothing, optional packages, model kinds, input videos.


def _check_usage(args):
    """Usage errors argparse cannot see, such as a flag that would have no effect (exit 2).

    Also fills in the defaults of the flags checked here.
    """
    error = args.command_parser.error
    command = args.command
    if command == "classify":
        if args.gradcam_class is not None and args.gradcam is None:
            error("--gradcam-class has no effect without --gradcam OUT.mp4")
        if args.stride is not None and args.annotate is None:
            error("--stride has no effect without --annotate OUT.mp4")
        args.stride = 1.0 if args.stride is None else args.stride
    elif command == "export":
        if args.quantize != "none" and args.format != "tflite":
            error(f"--quantize {args.quantize} has no effect without --format tflite "
                  f"(received --format {args.format})")  # fmt: skip
        for flag, value in (("--version", args.version), ("--top-k", args.top_k)):
            if value is not None and args.format != "saved_model":
                error(f"{flag} has no effect without --format saved_model "
                      f"(received --format {args.format})")  # fmt: skip
        args.version = 1 if args.version is None else args.version
        args.top_k = 5 if args.top_k is None else args.top_k
    elif command == "evaluate-ava":
        if args.full_test_on_val and args.mode != "val":
            error("--full-test-on-val has no effect without --mode val")
    elif command == "detect":
        if args.boxes is not None and args.person_detector is not None:
            error("--person-detector has no effect with --boxes (give one of them)")
        if args.keras_hub_preset is not None and args.person_detector != "keras-hub":
            error("--keras-hub-preset has no effect without --person-detector keras-hub")
        args.keras_hub_preset = args.keras_hub_preset or _KERAS_HUB_PRESET


# (flag, value the flag must have, module to import, extra that installs it)
_EXTRAS = {
    "timeline": [("--plot", None, "matplotlib.figure", "plot")],
    "features": [("--format", "hdf5", "h5py", "hdf5")],
    "export": [
        ("--format", "onnx", "tf2onnx", "onnx"),
        ("--format", "openvino", "openvino", "openvino"),
    ],
    "detect": [("--person-detector", "keras-hub", "keras_hub", "keras-hub")],
}


def _check_extras(args):
    """Fails before any work when a flag needs an optional package that does not import."""
    for flag, wanted, module, extra in _EXTRAS.get(args.command, ()):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is None or (wanted is not None and value != wanted):
            continue
        used = flag if wanted is None else f"{flag} {wanted}"
        try:
            with _quiet_tensorflow_start():
                importlib.import_module(module)
        except Exception as e:  # an absent or broken install: either way, what to install
            raise ValueError(
                f"{used} needs the optional package {module.split('.')[0]}, which does not "
                f"import ({type(e).__name__}: {e}). Install it with: pip install "
                f'"keras-slowfast[{extra}]"'
            ) from None


def _check_video(path, name="video"):
    """Fails unless `path` is a file PyAV opens with a video stream (before any model)."""
    import av

    if not os.path.isfile(path):
        raise ValueError(f"No video file at this path. Received: {name}={path!r}")
    try:
        with av.open(path) as container:
            has_video = bool(container.streams.video)
    except Exception as e:  # PyAV's errors: not a media file, unsupported, unreadable
        reason = getattr(e, "strerror", None) or str(e)
        raise ValueError(
            f"{path} is not a video file PyAV can read ({reason}). Received: {name}={path!r}"
        ) from None
    if not has_video:
        raise ValueError(f"{path} has no video stream. Received: {name}={path!r}")


def _check_inputs(args):
    """Model kinds and input files, checked before TensorFlow loads (a ValueError: exit 2)."""
    command = args.command
    if command == "classify":
        _check_model_kind(
            command,
            args.model,
            _headed_classifier,
            " (AVA detectors also need person boxes; self-supervised backbones have no classes)",
        )
        _check_video(args.video)
    elif command == "timeline":
        _check_model_kind(command, args.model, _headed_classifier)
        if os.path.isfile(args.video):  # else a stream URL or a device, opened when it runs
            _check_video(args.video)
    elif command == "features":
        _check_model_kind(command, args.model, _classifier)  # its video: see _features
    elif command in ("detect", "evaluate-ava"):
        _check_model_kind(command, args.model, _detector)
        weights = args.weights
        if weights and weights.lower().endswith(_PYSLOWFAST_SUFFIXES + (".h5",)):
            if not os.path.isfile(weights):
                raise ValueError(f"No checkpoint file at this path. Received: --weights {weights}")
        if command == "detect":
            _check_video(args.video)
            if args.output is None and args.csv is None:
                raise ValueError("Give --output VIDEO and/or --csv FILE. Received: neither")
        elif not os.path.isdir(args.data_dir):
            raise ValueError(f"No folder at this path. Received: data_dir={args.data_dir!r}")


# --------------------------------------------------------------------------------------------
# A quiet start: TensorFlow's C++ start-up logs stay off stderr unless asked for.

_TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
# absl's notice that it logs to stderr before it is set up, and a C++ log line (severity
# letter I, W, E or F, then the date).
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"
_CPP_LOG_LINE = re.compile(r"^([IWEF])\d{4} ")
_SEVERITIES = "IWEF"


def _gpu_driver_present():
    """Whether an NVIDIA driver is installed (Linux or WSL): TensorFlow may find a GPU."""
    devices = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg")
    return sys.platform.startswith("linux") and any(os.path.exists(d) for d in devices)


@contextlib.contextmanager
def _quiet_tensorflow_start():
    """Keeps TensorFlow's C++ start-up logs off stderr while the block imports it.

    Unless `TF_CPP_MIN_LOG_LEVEL` is set (then nothing changes), it is set to 2 (errors
    only), or to 3 where no NVIDIA driver is installed: there TensorFlow's GPU probe can only
    fail ("failed call to cuInit"), and says so at the error level. Some start-up lines are
    written before TensorFlow reads the variable (absl's logging is not set up yet): while
    the block runs, the lines on file descriptor 2 below that level are dropped and every
    other line is passed on as it comes.
    """
    if os.environ.get(_TF_LOG_LEVEL) is not None or "tensorflow" in sys.modules:
        yield
        return
    level = 2 if _gpu_driver_present() else 3
    os.environ[_TF_LOG_LEVEL] = str(level)

    def keep(line):
        if line.startswith(_ABSL_NOTICE):
            return False
        match = _CPP_LOG_LINE.match(line)
        return match is None or _SEVERITIES.index(match[1]) >= level

    with _filtered_stderr(keep):
        yield


@contextlib.contextmanager
def _filtered_stderr(keep):
    """Passes each line written to file descriptor 2 in the block through `keep(line)`."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no real stderr: nothing to filter
        yield
        return
    read_end, write_end = os.pipe()

    def forward():
        with open(read_end, "rb") as pipe:
            for line in pipe:
                if keep(line.decode("utf-8", "replace")):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the thread reads to its end
        thread.join(timeout=5.0)
        os.close(saved)


def _import_tensorflow():
    with _quiet_tensorflow_start():
        import tensorflow as tf
    return tf


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _hand_over(module, argv, **kwargs):
    """Runs the `main` of another command module (importing it quietly)."""
    with _quiet_tensorflow_start():
        command = importlib.import_module(module)
    return command.main(argv, **kwargs)


def main(argv=None):
    """Runs the command line; returns the exit status.

    Usage errors (argparse's, and flags that would have no effect) exit with status 2
    before anything else runs; so do a missing optional package, a model of the wrong kind
    and an input that is not a readable video. Progress goes to stderr, results to stdout.

    Example:
        >>> main(["classify", "video.mp4", "--views", "1"])  # doctest: +SKIP
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["write-tfrecords"] and _has_tfrecords_cli():
        return _hand_over(_TFRECORDS_CLI, argv[1:], prog="keras-slowfast write-tfrecords")
    if argv[:1] == ["data-service"]:
        return _hand_over(_DATA_SERVICE_CLI, argv[1:])
    args = build_parser().parse_args(argv)
    _check_usage(args)
    try:
        _check_extras(args)
        _check_inputs(args)
        tf = _import_tensorflow()
        if getattr(args, "cpu", False):
            tf.config.set_visible_devices([], "GPU")
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError) as e:
        print(f"keras-slowfast {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
