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
import importlib
import importlib.util
import math
import os
import sys
import time
import warnings

_TFRECORDS_CLI = "keras_slowfast.data.write_tfrecords_cli"
_DATA_SERVICE_CLI = "keras_slowfast.training.data_service_cli"


def _models(kind=None):
    from keras_slowfast import presets

    return presets.preset_names(kind) + presets.architecture_names(kind)


def _add_model_args(parser):
    parser.add_argument(
        "--model",
        default="slowfast_8x8_r50_kinetics400",
        choices=_models(),
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
        type=int,
        default=None,
        help="architecture override for non-published checkpoints (read from .pyth/.pkl)",
    )
    parser.add_argument(
        "--classes",
        type=int,
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
    if weights is None:
        if preset.checkpoint is None:
            raise ValueError(
                f"{preset.name} has no published weights: pass --weights PATH or "
                f"--weights none. Received: model={args.model!r}"
            )
        return hub.from_preset(preset.name, **kwargs)
    if weights in ("", "none", "None"):
        return hub.from_preset(preset.name, load_weights=False, **kwargs)
    if weights.endswith((".pyth", ".pkl", ".pth", ".pt", ".h5")):
        # A file: converted with this preset's conventions and head.
        return hub.build(preset.name, weights, **kwargs)
    return hub.build(preset.architecture, weights, **kwargs)


def _classify(args):
    from keras_slowfast import presets
    from keras_slowfast.inference import classify_video, describe_protocol
    from keras_slowfast.labels import decode_predictions

    preset = presets.get_preset(args.model)
    if preset.kind != presets.CLASSIFIER or not preset.include_top:
        raise ValueError(
            "`classify` needs a classifier preset with a head (AVA detectors also need person "
            f"boxes; self-supervised backbones have no classes). Received: model={args.model!r}"
        )
    if not os.path.isfile(args.video):
        raise ValueError(f"No video file at this path. Received: video={args.video!r}")
    if args.gradcam_class is not None and args.gradcam is None:
        raise ValueError(
            f"--gradcam-class needs --gradcam OUT.mp4. Received: gradcam_class={args.gradcam_class}"
        )
    model = _build_model(args)
    classes = model.output_shape[-1]
    if args.gradcam_class is not None and not 0 <= args.gradcam_class < classes:
        raise ValueError(
            f"--gradcam-class must be a class index in [0, {classes}). "
            f"Received: gradcam_class={args.gradcam_class}"
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
    if preset.kind != presets.CLASSIFIER or not preset.include_top:
        raise ValueError(
            f"`timeline` needs a classifier preset with a head. Received: model={args.model!r}"
        )
    model = _build_model(args)
    names = _class_names(preset, model.output_shape[-1])
    top = min(args.top, len(names))
    start = time.perf_counter()
    windows = []
    for w in timeline(
        model,
        args.video,
        preset.name,
        window_stride_seconds=args.stride,
        batch_size=args.batch_size,
        progress=not args.quiet,
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
    if preset.kind != presets.CLASSIFIER:
        raise ValueError(
            f"`features` needs a classifier or backbone preset. Received: model={args.model!r}"
        )
    video_list(args.videos, args.path_prefix)  # a bad list fails before the model is built
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

    if args.quantize != "none" and args.format != "tflite":
        raise ValueError(
            "`--quantize` applies to `--format tflite` only. "
            f"Received: format={args.format!r}, quantize={args.quantize!r}"
        )
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
_DEFAULT_DETECTOR = "ava_slowfast_32x2_r101_50_50_ava"


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

        if not os.path.isfile(weights):
            raise ValueError(f"No checkpoint file at this path. Received: weights={weights!r}")
        model = load_pyslowfast(weights, **_model_kwargs(args))
        return model, _pyslowfast_data_settings(weights)
    args.model = args.model or _DEFAULT_DETECTOR
    try:
        preset = presets.get_preset(args.model, kind=presets.DETECTOR)
    except ValueError:
        raise ValueError(
            "This command needs an AVA detector preset, one of "
            f"{presets.preset_names(presets.DETECTOR)} or an architecture of "
            f"{presets.architecture_names(presets.DETECTOR)}. Received: model={args.model!r}"
        ) from None
    return _build_model(args), {"sampling_rate": preset.protocol.sampling_rate}


def _setting(args, settings, name, default):
    value = getattr(args, name)
    if value is not None:
        return value
    return settings.get(name, default)


def _evaluate_ava(args):
    from keras_slowfast.evaluation.ava_detector import evaluate_ava_detector

    if not os.path.isdir(args.data_dir):
        raise ValueError(f"No folder at this path. Received: data_dir={args.data_dir!r}")
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
    from keras_slowfast.detect import KerasHubPersonDetector, OpenCVPersonDetector, detect_actions

    if not os.path.isfile(args.video):
        raise ValueError(f"No video file at this path. Received: video={args.video!r}")
    if args.output is None and args.csv is None:
        raise ValueError("Give --output VIDEO and/or --csv FILE. Received: neither")
    if args.boxes is not None and args.person_detector is not None:
        raise ValueError(
            "Give either --boxes or --person-detector. "
            f"Received: boxes={args.boxes!r}, person_detector={args.person_detector!r}"
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
            output_csv=args.csv,
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
    for w in caught:
        print(f"keras-slowfast detect: {w.message}", file=sys.stderr)
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
    return importlib.util.find_spec(_TFRECORDS_CLI) is not None


def _positive(value):
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _add_detector_args(parser):
    """`--model` / `--weights` of the commands that run an AVA detector."""
    parser.add_argument(
        "--model",
        default=None,
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
    parser.add_argument("--width-per-group", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--classes", type=int, default=None, help=argparse.SUPPRESS)
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

    p = sub.add_parser("classify", help="print the top classes of a video")
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
        type=float,
        default=1.0,
        help="--annotate: seconds between window centres (default: %(default)s)",
    )
    p.add_argument("--cpu", action="store_true", help="hide any GPU and run on the CPU")
    p.set_defaults(func=_classify)

    p = sub.add_parser("convert", help="convert a .pyth/.pkl checkpoint to .weights.h5")
    p.add_argument("checkpoint", help="PySlowFast / PyTorchVideo .pyth or Caffe2 .pkl file")
    p.add_argument("output", help="the .weights.h5 file to write")
    p.add_argument(
        "--model",
        default="slowfast_8x8_r50",
        choices=_models(),
        metavar="PRESET",
        help="the preset or architecture the checkpoint belongs to (default: %(default)s)",
    )
    p.add_argument("--width-per-group", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--classes", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--skip-check", action="store_true", help="skip reloading the file and comparing outputs"
    )
    p.set_defaults(func=_convert)

    p = sub.add_parser(
        "export",
        help="write a TF Serving SavedModel (export_dir/<version>/), or an ONNX, OpenVINO "
        "or TensorFlow Lite file",
    )
    p.add_argument(
        "export_dir",
        help="the model's base folder for TF Serving; with another --format, the file to "
        "write (.onnx, .xml, .tflite)",
    )
    _add_model_args(p)
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
        help="tflite only: dynamic-range quantisation (int8 weights)",
    )
    p.add_argument("--version", type=_positive, default=1)
    p.add_argument("--top-k", type=_positive, default=5)
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
        help="with --mode val, every second instead of every fourth",
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
    p.add_argument("--batch-size", type=_positive, default=8)
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
    p.add_argument("--fps", type=float, default=30.0, help="frame rate (default: 30)")
    p.add_argument("--jpeg-quality", type=int, default=95, help="OpenCV JPEG quality (default: 95)")
    p.add_argument(
        "--on-error",
        choices=("skip", "raise"),
        default="skip",
        help="skip unreadable videos with a message (default) or stop at the first one",
    )
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds allowed per video (default: 3600)"
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
    p.add_argument("--csv", default=None, help="the detections CSV to write")
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
        default="retinanet_resnet50_fpn_coco",
        help="the keras-hub preset of --person-detector keras-hub (default: %(default)s)",
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
    p.add_argument("--stride", type=float, default=1.0, help="seconds between windows (default: 1)")
    p.add_argument("--top", type=_positive, default=5, help="classes printed per window")
    p.add_argument("--batch-size", type=_positive, default=8, help="windows per model call")
    p.add_argument(
        "--timeout", type=float, default=None, help="seconds allowed (default: no limit)"
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
    p.add_argument("--format", choices=("npy", "hdf5"), default="npy")
    _add_model_args(p)
    p.add_argument("--stride", type=float, default=1.0, help="seconds between windows (default: 1)")
    p.add_argument("--batch-size", type=_positive, default=8, help="windows per model call")
    p.add_argument("--path-prefix", default=None, help="folder of the list's relative paths")
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds allowed per video (default: 3600)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--cpu", action="store_true", help="hide any GPU and run on the CPU")
    p.set_defaults(func=_features)

    p = sub.add_parser("weights", help="list every preset, its checkpoint and the cache folder")
    p.set_defaults(func=_list_weights)

    p = sub.add_parser(
        "info",
        help="print a variant's parameters, GMACs, clip sampling and published accuracy",
        description="Builds the variant (no weights, no forward pass) and prints its parameter "
        "count, its multiply-accumulates per clip at 224x224 and 256x256 (counted as fvcore "
        "counts, see keras_slowfast.model_flops), its clip sampling and its published metric.",
    )
    p.add_argument("variant", choices=_models(), metavar="PRESET", help="a preset or architecture")
    p.set_defaults(func=_info)

    if _has_tfrecords_cli():
        # Listed for --help; main() hands its arguments to the data package's command.
        sub.add_parser("write-tfrecords", help="write JPEG-frame TFRecords of a video list")
    # Listed for --help; main() hands its arguments to the training package's command.
    sub.add_parser(
        "data-service", help="run a tf.data service dispatcher or worker (input on CPU hosts)"
    )
    return parser


def main(argv=None):
    """Runs the command line; returns the exit status.

    Example:
        >>> main(["classify", "video.mp4", "--views", "1"])  # doctest: +SKIP
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["write-tfrecords"] and _has_tfrecords_cli():
        return importlib.import_module(_TFRECORDS_CLI).main(argv[1:])
    if argv[:1] == ["data-service"]:
        return importlib.import_module(_DATA_SERVICE_CLI).main(argv[1:])
    args = build_parser().parse_args(argv)
    if getattr(args, "cpu", False):
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as e:
        print(f"keras-slowfast {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
