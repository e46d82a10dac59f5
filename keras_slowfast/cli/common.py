"""What the `keras-slowfast` commands share: their model arguments and the checks before work.

Each command module (`keras_slowfast.cli.classify`, ...) describes itself with a
:class:`Command`: its arguments, its usage and input checks, the optional packages its
flags need, and its run function. This module holds what several of them use: the
`--model` / `--weights` arguments and the model they build, the window, timeout and run
flags (`--stride`, `--batch-size`, `--timeout`, `--quiet`, `--cpu`), the preset's centre
view of a video, the "unknown model; did you mean" check, value types that name the flag
in their errors, the video probe, and the error and warning lines on stderr.

Example:
    >>> parser = argparse.ArgumentParser(prog="keras-slowfast info")
    >>> _ = parser.add_argument("--top", type=positive)
    >>> parser.parse_args(["--top", "3"]).top
    3
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from keras_slowfast.cli.quiet_start import quiet_tensorflow_start

if TYPE_CHECKING:  # the command line imports Keras only once its checks have passed
    import keras
    import numpy as np

    from keras_slowfast.presets import Preset

__all__ = [
    "DEFAULT_DETECTOR",
    "KERAS_WEIGHTS_SUFFIX",
    "MODEL_KINDS",
    "PRECISIONS",
    "PROG",
    "USER_ERRORS",
    "Command",
    "add_batch_size_arg",
    "add_detector_args",
    "add_model_args",
    "add_run_flags",
    "add_video_timeout_arg",
    "add_window_stride_arg",
    "annotate_windows",
    "any_model",
    "build_detector",
    "build_model",
    "build_preset_model",
    "centre_view_clip",
    "check_detector_inputs",
    "check_extras",
    "check_model_kind",
    "check_video",
    "preset_class_names",
    "classifier",
    "detector",
    "headed_classifier",
    "isatty",
    "model_kwargs",
    "model_name",
    "models",
    "positive",
    "positive_number",
    "print_error",
    "print_warning",
    "setting",
]

PROG = "keras-slowfast"
# The errors `keras-slowfast` reports as one line on stderr with exit status 2 (a traceback
# would only repeat what the message says: a bad argument, file or install).
USER_ERRORS = (ValueError, TypeError, OSError, ImportError)
# A Keras weights file (`.weights.h5`, or any `.h5` path): built with the preset's head.
KERAS_WEIGHTS_SUFFIX = ".h5"
DEFAULT_DETECTOR = "ava_slowfast_32x2_r101_50_50"
# `--precision`: the Keras dtype policy of each choice (None: the default, float32).
PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16"}


@dataclasses.dataclass(frozen=True)
class Command:
    """One command of `keras-slowfast`: its arguments, its checks and its run function.

    `keras_slowfast.cli.main` parses the command line, then calls, in this order and
    before any model is built: `check_usage(args, parser)` (a flag without effect is a
    usage error: `parser.error`, exit 2), :func:`check_extras` with `extras`, and
    `check_inputs(args)` (a `ValueError` naming the argument). Then TensorFlow loads
    quietly and `run(args)` returns the exit status; the errors in `reported_errors` become
    one `keras-slowfast <name>: error: ...` line and exit status 2.

    Attributes:
        name: the command's name on the command line.
        add_parser: adds the command's parser to a `add_subparsers()` object, returns it.
        run: does the work; returns the exit status.
        check_usage: usage errors argparse cannot see, or None.
        check_inputs: model kinds and input files, checked before TensorFlow loads, or None.
        extras: `(flag, value, module, extra)` rows: the flag set (to `value`, or to anything
            when `value` is None) needs `module`, installed by `keras-slowfast[extra]`.
        reported_errors: the exception types reported as usage errors.

    Example:
        >>> hello = Command("hello", lambda sub: sub.add_parser("hello"), lambda args: 0)
        >>> parser = argparse.ArgumentParser(prog="keras-slowfast")
        >>> _ = hello.add_parser(parser.add_subparsers(dest="command"))
        >>> hello.run(parser.parse_args(["hello"]))
        0
    """

    name: str
    add_parser: Callable[[Any], argparse.ArgumentParser]
    run: Callable[[argparse.Namespace], int]
    check_usage: Callable[[argparse.Namespace, argparse.ArgumentParser], None] | None = None
    check_inputs: Callable[[argparse.Namespace], None] | None = None
    extras: Sequence[tuple[str, str | None, str, str]] = ()
    reported_errors: tuple[type[BaseException], ...] = USER_ERRORS


def print_error(command: str, message: object) -> None:
    """Writes `keras-slowfast <command>: error: <message>` to stderr.

    Example:
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as stderr:
        ...     print_error("classify", "no video")
        >>> stderr.getvalue()
        'keras-slowfast classify: error: no video\\n'
    """
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)


def print_warning(command: str, message: object) -> None:
    """Writes `keras-slowfast <command>: warning: <message>` to stderr.

    Example:
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as stderr:
        ...     print_warning("detect", "no person found")
        >>> stderr.getvalue()
        'keras-slowfast detect: warning: no person found\\n'
    """
    print(f"{PROG} {command}: warning: {message}", file=sys.stderr)


def isatty(stream: Any) -> bool:
    """Whether `stream` is a terminal (False for a closed or file-less stream).

    Example:
        >>> import io
        >>> isatty(io.StringIO())
        False
    """
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# Values: argparse types whose errors argparse prefixes with the flag.


def positive(value: str) -> int:
    """An argparse type: a positive integer.

    Example:
        >>> positive("8")
        8
        >>> positive("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be a positive integer, got 0
    """
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def positive_number(value: str) -> float:
    """An argparse type: a positive finite number.

    Example:
        >>> positive_number("0.5")
        0.5
        >>> positive_number("nan")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be a positive number, got nan
    """
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return number


# --------------------------------------------------------------------------------------------
# Model names: each command accepts some kinds of presets.


def any_model(preset: Preset) -> bool:
    """Accepts every preset and architecture (`convert`, `export`, `info`).

    Example:
        >>> from keras_slowfast import presets
        >>> any_model(presets.get_preset("ava_slowfast_32x2_r101_50_50"))
        True
    """
    return True


def classifier(preset: Preset) -> bool:
    """Accepts classifiers and backbones (`features`).

    Example:
        >>> from keras_slowfast import presets
        >>> classifier(presets.get_preset("slowfast_8x8_r50"))
        True
    """
    from keras_slowfast import presets

    return preset.kind == presets.CLASSIFIER


def headed_classifier(preset: Preset) -> bool:
    """Accepts classifiers with a classification head (`classify`, `timeline`).

    Example:
        >>> from keras_slowfast import presets
        >>> headed_classifier(presets.get_preset("slowfast_8x8_r50_kinetics400"))
        True
    """
    return classifier(preset) and preset.include_top


def detector(preset: Preset) -> bool:
    """Accepts AVA detectors (`detect`, `evaluate-ava`).

    Example:
        >>> from keras_slowfast import presets
        >>> detector(presets.get_preset("slowfast_8x8_r50"))
        False
    """
    from keras_slowfast import presets

    return preset.kind == presets.DETECTOR


# What each kind of `--model` is called in messages.
MODEL_KINDS = {
    any_model: "a preset or architecture",
    classifier: "a classifier or backbone preset",
    headed_classifier: "a classifier preset with a head",
    detector: "an AVA detector preset",
}


def models(accepts: Callable[[Preset], bool] = any_model) -> list[str]:
    """Preset names, then architecture keys, that `accepts`, in table order, each once.

    Example:
        >>> "ava_slowfast_32x2_r101_50_50" in models(detector)
        True
    """
    from keras_slowfast import presets

    names = []
    for name in presets.preset_names() + presets.architecture_names():
        if name not in names and accepts(presets.get_preset(name)):
            names.append(name)
    return names


def model_name(accepts: Callable[[Preset], bool]) -> Callable[[str], str]:
    """The argparse `type` of a model argument: a known preset name or architecture key.

    An unknown name is a usage error that suggests the nearest name the command takes and
    lists the names it takes (a known name of another kind is left to the command's own
    check, :func:`check_model_kind`, which says what it needs).

    Example:
        >>> model_name(detector)("slowfast_8x8_r50")
        'slowfast_8x8_r50'
        >>> model_name(any_model)("slowfast_8x8_r5")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: unknown model 'slowfast_8x8_r5'; did you mean ...
    """

    def model_name(value):
        if value in models():
            return value
        choices = models(accepts)
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise argparse.ArgumentTypeError(
            f"unknown model {value!r}{hint} This command takes {MODEL_KINDS[accepts]}: "
            f"{', '.join(choices)}"
        )

    return model_name


def check_model_kind(
    command: str, model: str | None, accepts: Callable[[Preset], bool], why: str = ""
) -> None:
    """Raises a ValueError naming --model unless `model` is of the kind `command` takes.

    Example:
        >>> check_model_kind("detect", "ava_slowfast_32x2_r101_50_50", detector)
        >>> check_model_kind("detect", "slowfast_8x8_r50", detector)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `detect` needs an AVA detector preset: one of ... --model slowfast_8x8_r50
    """
    from keras_slowfast import presets

    if model is None or accepts(presets.get_preset(model)):
        return
    raise ValueError(
        f"`{command}` needs {MODEL_KINDS[accepts]}{why}: one of "
        f"{', '.join(models(accepts))}. Received: --model {model}"
    )


# --------------------------------------------------------------------------------------------
# The model arguments and the model they build.


def add_model_args(
    parser: argparse.ArgumentParser, accepts: Callable[[Preset], bool] = headed_classifier
) -> None:
    """Adds `--model`, `--weights`, the architecture overrides and `--precision`.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_model_args(parser)
        >>> parser.parse_args(["--weights", "none"]).model
        'slowfast_8x8_r50_kinetics400'
    """
    parser.add_argument(
        "--model",
        default="slowfast_8x8_r50_kinetics400",
        type=model_name(accepts),
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
        type=positive,
        default=None,
        help="architecture override for non-published checkpoints (read from .pyth/.pkl)",
    )
    parser.add_argument(
        "--classes",
        type=positive,
        default=None,
        help="class count override for non-published checkpoints (read from .pyth/.pkl)",
    )
    parser.add_argument(
        "--precision",
        choices=sorted(PRECISIONS),
        default="float32",
        help="bfloat16: the backbone computes in bfloat16 (Keras mixed_bfloat16), the head "
        "and probabilities stay float32; faster on CPUs with bfloat16 units "
        "(default: %(default)s)",
    )


def add_window_stride_arg(parser: argparse.ArgumentParser) -> None:
    """Adds `--stride`: seconds between windows, 1 by default.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_window_stride_arg(parser)
        >>> parser.parse_args(["--stride", "0.5"]).stride
        0.5
    """
    parser.add_argument(
        "--stride",
        type=positive_number,
        default=1.0,
        help="seconds between windows (default: 1)",
    )


def add_batch_size_arg(parser: argparse.ArgumentParser) -> None:
    """Adds `--batch-size`: windows per model call, 8 by default.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_batch_size_arg(parser)
        >>> parser.parse_args([]).batch_size
        8
    """
    parser.add_argument("--batch-size", type=positive, default=8, help="windows per model call")


def add_video_timeout_arg(parser: argparse.ArgumentParser) -> None:
    """Adds `--timeout`: seconds allowed per video, 3600 by default.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_video_timeout_arg(parser)
        >>> parser.parse_args([]).timeout
        3600.0
    """
    parser.add_argument(
        "--timeout",
        type=positive_number,
        default=3600.0,
        help="seconds allowed per video (default: 3600)",
    )


def add_run_flags(parser: argparse.ArgumentParser, *, quiet: bool = True, cpu: bool = True) -> None:
    """Adds `--quiet` (no progress bar) and `--cpu` (hide any GPU), each when asked for.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_run_flags(parser, quiet=False)
        >>> parser.parse_args(["--cpu"]).cpu
        True
    """
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
    if cpu:
        parser.add_argument("--cpu", action="store_true", help="hide any GPU and run on the CPU")


def model_kwargs(args: argparse.Namespace) -> dict:
    """Builder arguments of the command line: dtype policy, width and class overrides.

    Example:
        >>> args = argparse.Namespace(precision="bfloat16", width_per_group=8, classes=None)
        >>> model_kwargs(args)
        {'dtype': 'mixed_bfloat16', 'width_per_group': 8}
    """
    kwargs = {}
    dtype = PRECISIONS.get(getattr(args, "precision", None) or "float32")
    if dtype is not None:
        kwargs["dtype"] = dtype
    if args.width_per_group is not None:
        kwargs["width_per_group"] = args.width_per_group
    if args.classes is not None:
        kwargs["classes"] = args.classes
    return kwargs


def build_model(args: argparse.Namespace) -> keras.Model:
    """The Keras model of `--model` with `--weights` (a name, a file, none or the default).

    A checkpoint or Keras weights file is converted with the preset's conventions and head;
    a weights name is one of the preset's architecture. A failed download is an OSError
    that says what to do.

    Example:
        >>> args = argparse.Namespace(model="slow_8x8_r50", weights="none",
        ...                           width_per_group=8, classes=10, precision="float32")
        >>> build_model(args).output_shape  # doctest: +SKIP
        (None, 10)
    """
    from keras_slowfast import hub, presets
    from keras_slowfast.weights.readers import CHECKPOINT_SUFFIXES

    preset = presets.get_preset(args.model)
    weights = args.weights
    kwargs = model_kwargs(args)
    if weights is None and preset.checkpoint is None:
        raise ValueError(
            f"{preset.name} has no published weights: pass --weights PATH or "
            f"--weights none. Received: --model {args.model}"
        )
    if weights in ("", "none", "None"):
        return hub.from_preset(preset.name, load_weights=False, **kwargs)
    if weights is not None and weights.endswith(CHECKPOINT_SUFFIXES + (KERAS_WEIGHTS_SUFFIX,)):
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


def build_preset_model(args: argparse.Namespace) -> tuple[Preset, keras.Model]:
    """The preset of `--model` and its model, as :func:`build_model` builds it.

    Example:
        >>> args = argparse.Namespace(model="slow_8x8_r50", weights="none",
        ...                           width_per_group=8, classes=10, precision="float32")
        >>> preset, model = build_preset_model(args)  # doctest: +SKIP
        >>> preset.name, model.output_shape  # doctest: +SKIP
        ('slow_8x8_r50', (None, 10))
    """
    from keras_slowfast import presets

    preset = presets.get_preset(args.model)
    return preset, build_model(args)


def centre_view_clip(video: str, preset: Preset) -> np.ndarray:
    """The uint8 clip of the preset's centre view of `video` (centred clip, centre crop).

    The one view `classify --views 1` scores, and the one Grad-CAM explains.

    Example:
        >>> from keras_slowfast import presets
        >>> clip = centre_view_clip("video.mp4", presets.get_preset("slow_8x8_r50"))
        ... # doctest: +SKIP
        >>> clip.shape  # doctest: +SKIP
        (8, 256, 256, 3)
    """
    from keras_slowfast.inference import video_views

    proto = preset.protocol
    return next(
        video_views(
            video,
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


def preset_class_names(preset: Preset, classes: int) -> list[str]:
    """The preset's class names when the model has its class count, else `class_<i>`.

    Example:
        >>> from keras_slowfast import presets
        >>> preset_class_names(presets.get_preset("slow_8x8_r50"), 2)
        ['class_0', 'class_1']
    """
    from keras_slowfast.labels import class_names_for

    if preset.labels is not None and classes == preset.classes:
        return class_names_for(classes, preset.labels)
    return class_names_for(classes)


def annotate_windows(
    video: str,
    windows: Sequence[Any],
    names: Sequence[str],
    path: str,
    top_k: int,
    progress: bool,
) -> None:
    """Re-encodes `video` with each window's top classes drawn on the frames it covers.

    `windows` are the `timeline` windows of `keras_slowfast.inference`; prints
    `written: <path>` when the video is written.

    Example:
        >>> from keras_slowfast.inference import timeline
        >>> windows = list(timeline(model, "video.mp4", "slowfast_8x8_r50"))  # doctest: +SKIP
        >>> annotate_windows("video.mp4", windows, names, "out.mp4", 3, True)  # doctest: +SKIP
        written: out.mp4
    """
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


# --------------------------------------------------------------------------------------------
# AVA detectors (`detect`, `evaluate-ava`).


def add_detector_args(parser: argparse.ArgumentParser) -> None:
    """Adds `--model` / `--weights` and the clip settings of the commands that run a detector.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_detector_args(parser)
        >>> parser.parse_args([]).test_crop_size
        256
    """
    parser.add_argument(
        "--model",
        default=None,
        type=model_name(detector),
        metavar="PRESET",
        help=f"the detector preset (default: {DEFAULT_DETECTOR}, or the architecture in a "
        "PySlowFast --weights file)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="a published weights name (ava), a .weights.h5 / .pyth / .pkl path (a PySlowFast "
        ".pyth alone gives the architecture), or none",
    )
    parser.add_argument("--width-per-group", type=positive, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--classes", type=positive, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--test-crop-size",
        type=positive,
        default=256,
        help="short side of the clips (default: %(default)s)",
    )
    parser.add_argument(
        "--sampling-rate",
        type=positive,
        default=None,
        help="frame stride of the clips at 30 fps (default: the variant's or the checkpoint's "
        "config, else 2)",
    )
    parser.add_argument(
        "--bgr", action="store_true", help="feed BGR clips (default: the config's AVA.BGR)"
    )


def check_detector_inputs(command: str, args: argparse.Namespace) -> None:
    """A detector `--model` and, for a checkpoint path, that the file is there.

    Example:
        >>> args = argparse.Namespace(model=None, weights="missing.pyth")
        >>> check_detector_inputs("detect", args)
        Traceback (most recent call last):
        ...
        ValueError: No checkpoint file at this path. Received: --weights missing.pyth
    """
    from keras_slowfast.weights.readers import CHECKPOINT_SUFFIXES

    check_model_kind(command, args.model, detector)
    weights = args.weights
    if weights and weights.lower().endswith(CHECKPOINT_SUFFIXES + (KERAS_WEIGHTS_SUFFIX,)):
        if not os.path.isfile(weights):
            raise ValueError(f"No checkpoint file at this path. Received: --weights {weights}")


def build_detector(args: argparse.Namespace) -> tuple[keras.Model, dict]:
    """The AVA detector of `--model` / `--weights` and clip settings from its config.

    A PySlowFast checkpoint alone gives the architecture and the clip settings (sampling
    rate, BGR input, person-box threshold) from its embedded config. Without `--model`
    and such a checkpoint, `args.model` becomes :data:`DEFAULT_DETECTOR`.

    Example:
        >>> args = argparse.Namespace(model=None, weights="ava.pyth", width_per_group=None,
        ...                           classes=None)
        >>> model, settings = build_detector(args)  # doctest: +SKIP
        >>> settings  # doctest: +SKIP
        {'sampling_rate': 2, 'bgr': False, 'detection_score_thresh': 0.8}
    """
    from keras_slowfast import presets
    from keras_slowfast.weights.readers import CHECKPOINT_SUFFIXES

    weights = args.weights
    if args.model is None and weights and weights.lower().endswith(CHECKPOINT_SUFFIXES):
        from keras_slowfast.hub import load_pyslowfast
        from keras_slowfast.weights.pyslowfast_config import checkpoint_ava_clip_settings

        model = load_pyslowfast(weights, **model_kwargs(args))
        return model, checkpoint_ava_clip_settings(weights)
    args.model = args.model or DEFAULT_DETECTOR
    preset = presets.get_preset(args.model, kind=presets.DETECTOR)
    return build_model(args), {"sampling_rate": preset.protocol.sampling_rate}


def setting(args: argparse.Namespace, settings: Mapping, name: str, default: Any) -> Any:
    """The flag `name` if given, else the checkpoint config's `settings[name]`, else `default`.

    Example:
        >>> setting(argparse.Namespace(sampling_rate=None), {"sampling_rate": 4},
        ...         "sampling_rate", 2)
        4
    """
    value = getattr(args, name)
    if value is not None:
        return value
    return settings.get(name, default)


# --------------------------------------------------------------------------------------------
# Before any work: optional packages and input videos.


def check_extras(
    args: argparse.Namespace, extras: Sequence[tuple[str, str | None, str, str]]
) -> None:
    """Fails before any work when a flag needs an optional package that does not import.

    `extras` rows are `(flag, value, module, extra)`: see :class:`Command`.

    Example:
        >>> args = argparse.Namespace(plot="timeline.png")
        >>> check_extras(args, [("--plot", None, "no_such_plotting_module", "plot")])
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --plot needs the optional package no_such_plotting_module, which ...
    """
    for flag, wanted, module, extra in extras:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is None or (wanted is not None and value != wanted):
            continue
        used = flag if wanted is None else f"{flag} {wanted}"
        try:
            with quiet_tensorflow_start():
                importlib.import_module(module)
        except Exception as e:  # an absent or broken install: either way, what to install
            raise ValueError(
                f"{used} needs the optional package {module.split('.')[0]}, which does not "
                f"import ({type(e).__name__}: {e}). Install it with: pip install "
                f'"keras-slowfast[{extra}]"'
            ) from None


def check_video(path: str, name: str = "video") -> None:
    """Fails unless `path` is a file PyAV opens with a video stream (before any model).

    Example:
        >>> check_video("missing.mp4")
        Traceback (most recent call last):
        ...
        ValueError: No video file at this path. Received: video='missing.mp4'
    """
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
