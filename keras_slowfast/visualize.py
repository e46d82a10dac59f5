"""Pictures of what a classifier sees: Grad-CAM maps, score timelines and annotated videos.

- :func:`grad_cam`: Grad-CAM (Selvaraju et al., 2017) of a SlowFast or Slow classifier on
  one clip, one map per pathway, in the manner of PySlowFast's visualisation tools: the
  target layers are the res5 outputs of the pathways, the differentiated score is the
  model's output probability of the class, each channel's weight is the mean of its
  gradient over the positions, the weighted channel sum goes through a ReLU, is upsampled
  to the clip's size with trilinear interpolation and min-max normalised to [0, 1].
- :func:`write_gradcam_video`: the clip with each pathway's map blended on it, side by side.
- :func:`plot_timeline`: a PNG of the top classes' scores over the windows of a video
  (matplotlib, the optional `plot` extra).
- :func:`annotate_video`: the video re-encoded with the top classes of the window covering
  each frame drawn on it.

The functions take plain arrays (times in seconds, `(windows, classes)` scores), so they
draw the output of any sliding-window scorer.
"""

from __future__ import annotations

import fractions
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from keras_slowfast._checks import argument_error, check_positive_int, is_int
from keras_slowfast._video_writer import add_video_stream, reencode_video
from keras_slowfast.atomic import atomic_path
from keras_slowfast.data._video_io import check_timeout
from keras_slowfast.models.functional import LeanFunctional

if TYPE_CHECKING:
    import keras
    import numpy.typing as npt

__all__ = [
    "annotate_video",
    "grad_cam",
    "plot_timeline",
    "write_gradcam_video",
]

_WEIGHT_AXES = ("hw", "thw")
_KINDS = ("heatmap", "lines")


# ---------------------------------------------------------------------------------------------
# Grad-CAM.


def _check_clip(clip, model):
    """The clip as a uint8 batch of one `(1, T, H, W, 3)` fitting the model's input."""
    array = np.asarray(clip)
    if array.dtype != np.uint8:
        raise TypeError(
            "`clip` must be a uint8 RGB clip (T, H, W, 3) or a batch of one (1, T, H, W, 3), "
            f"as models with include_preprocessing=True take it. Received: clip.dtype={array.dtype}"
        )
    if array.ndim == 5 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 4 or array.shape[-1] != 3 or min(array.shape) < 1:
        raise argument_error(
            "`clip` must have the shape (T, H, W, 3) or (1, T, H, W, 3).", clip_shape=array.shape
        )
    expected = tuple(model.input_shape[1:4])
    for got, want, axis in zip(array.shape[:3], expected, ("frames", "height", "width")):
        if want is not None and got != want:
            raise argument_error(
                f"The {axis} of `clip` must match the model's input shape "
                f"{tuple(model.input_shape)}.",
                clip_shape=array.shape,
            )
    return array[None]


def _default_layers(model):
    """The last res5 layer of each pathway (`s5_pathway{p}_...`, slow first)."""
    last = {}
    for layer in model.layers:  # in topological order: the pathway's output comes last
        name = layer.name
        if name.startswith("s5_pathway"):
            pathway = name[len("s5_pathway") :].split("_", 1)[0]
            if pathway.isdigit():
                last[int(pathway)] = name
    if not last:
        raise argument_error(
            "The model has no res5 layers named `s5_pathway{p}_...`; pass `layers`.",
            model=getattr(model, "name", model),
        )
    return [last[p] for p in sorted(last)]


def _target_layers(model, layers):
    if layers is None:
        return _default_layers(model)
    if isinstance(layers, str):
        layers = [layers]
    try:
        names = list(layers)
    except TypeError:
        names = None
    if not names or not all(isinstance(n, str) for n in names):
        raise argument_error(
            "`layers` must be None or a non-empty list of layer names.", layers=layers
        )
    known = {layer.name for layer in model.layers}
    for name in names:
        if name not in known:
            raise argument_error(
                f"`layers` names a layer that {getattr(model, 'name', 'the model')} does not "
                "have (its res5 outputs are `s5_pathway{p}_res{i}_relu`).",
                layers=name,
            )
    return names


def _resize_linear(x, size, axis):
    """Linear interpolation along `axis` to `size` samples, pixel centres aligned.

    Output sample `i` reads the input at `(i + 0.5) * n / size - 0.5`, clamped to the ends
    (PyTorch's `interpolate(..., align_corners=False)`, OpenCV's `INTER_LINEAR`).
    """
    n = x.shape[axis]
    if n == size:
        return x
    source = np.maximum((np.arange(size) + 0.5) * (n / size) - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), n - 1)
    high = np.minimum(low + 1, n - 1)
    frac = source - low
    shape = [1] * x.ndim
    shape[axis] = size
    frac = frac.reshape(shape)
    return np.take(x, low, axis=axis) * (1 - frac) + np.take(x, high, axis=axis) * frac


def _cam(activations, gradients, size, weight_axes):
    """One Grad-CAM map `(T, H, W)` in [0, 1] from `(t, h, w, c)` activations and gradients."""
    a = np.asarray(activations, np.float64)
    g = np.asarray(gradients, np.float64)
    axes = (1, 2) if weight_axes == "hw" else (0, 1, 2)
    weights = g.mean(axis=axes, keepdims=True)
    cam = np.maximum((weights * a).sum(axis=-1), 0.0)
    for axis, n in enumerate(size):
        cam = _resize_linear(cam, n, axis)
    low, high = cam.min(), cam.max()
    if high > low:
        cam = (cam - low) / (high - low)
    else:  # no position raises the score: nothing to show
        cam = np.zeros_like(cam)
    return cam.astype(np.float32)


class _ObservedFunctional(LeanFunctional):
    """A transient functional model run op by op, calling `on_output(layer, outputs)` after
    each layer (when set); activations are released after their last use, as in an
    inference run."""

    compile_eager_inference = False
    on_output = None

    def _run_through_graph(self, inputs, operation_fn=lambda op: op, call_fn=None):
        on_output = self.on_output
        if on_output is None:
            return super()._run_through_graph(inputs, operation_fn, call_fn)

        def observed_fn(operation):
            run = operation_fn(operation)

            def observed(*args, **kwargs):
                outputs = run(*args, **kwargs)
                on_output(operation, outputs)
                return outputs

            return observed

        return super()._run_through_graph(inputs, operation_fn=observed_fn, call_fn=call_fn)


def grad_cam(
    model: keras.Model,
    clip: np.ndarray,
    class_index: int | None = None,
    layers: Sequence[str] | None = None,
    *,
    weight_axes: str = "hw",
) -> tuple[list[np.ndarray], int]:
    """Grad-CAM maps of a SlowFast / Slow classifier on one clip, one per pathway.

    The model's output probability of `class_index` is differentiated with respect to the
    output of each target layer (by default the last res5 block of each pathway). Each
    channel's weight is the mean of its gradient over the spatial positions of each frame
    (`weight_axes="hw"`, as PySlowFast's `GradCAM`) or over all positions of the clip
    (`"thw"`, the original Grad-CAM's global average); the weighted sum of the channels goes
    through a ReLU, is upsampled to the clip's `(T, H, W)` by trilinear interpolation with
    pixel centres aligned (PyTorch's `align_corners=False`) and min-max normalised to [0, 1]
    (all zeros when the map is constant). PySlowFast upsamples each pathway's map to its
    own input, `T // alpha` frames for the slow pathway; here the slow map is interpolated
    directly to the clip's `T` frames, so that every map lines up with the clip's frames.
    The interpolation treats the slow frames as evenly spaced over the clip; the model takes
    them at `trunc(linspace(0, T - 1, T // alpha))`, within one fast frame of that.

    Args:
        model: a classifier taking uint8 RGB clips (`include_preprocessing=True`), such as
            :func:`keras_slowfast.SlowFast` or a preset built by
            :func:`keras_slowfast.from_preset`; the pathways are formed inside the model.
        clip: uint8 RGB `(T, H, W, 3)` or a batch of one `(1, T, H, W, 3)`.
        class_index: the class whose score is explained (default: the top predicted class).
        layers: the target layer names (default: the last res5 layer of each pathway,
            `s5_pathway{p}_res{i}_relu`, slow first); one map per layer. Each must output a
            `(batch, t, h, w, channels)` tensor.
        weight_axes: `"hw"` or `"thw"` (see above).

    Returns:
        `(heatmaps, class_index)`: a list of float32 `(T, H, W)` maps in [0, 1], one per
        target layer (slow pathway first), and the class index explained.

    Raises:
        ValueError: for a clip of the wrong shape, an unknown layer or a class index out of
            range; TypeError for a clip that is not uint8.

    Example:
        >>> from keras_slowfast.models import SlowFast
        >>> model = SlowFast(depth=50, width_per_group=8, num_frames=8, alpha=4, classes=3,
        ...                  input_shape=(8, 64, 64, 3), train_crop_size=64)
        >>> clip = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
        >>> heatmaps, index = grad_cam(model, clip)
        >>> [m.shape for m in heatmaps], 0 <= index < 3
        ([(8, 64, 64), (8, 64, 64)], True)
        >>> bool(min(m.min() for m in heatmaps) >= 0 and max(m.max() for m in heatmaps) <= 1)
        True
    """
    import keras
    import tensorflow as tf

    if weight_axes not in _WEIGHT_AXES:
        raise argument_error(
            f"`weight_axes` must be one of {_WEIGHT_AXES}.", weight_axes=weight_axes
        )
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r}")
    x = _check_clip(clip, model)
    classes = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    if classes is None or len(model.outputs) != 1:
        raise argument_error(
            "`model` must be a classifier with one output (batch, classes).",
            output_shape=model.output_shape,
        )
    if class_index is not None and (not is_int(class_index) or not 0 <= class_index < classes):
        raise argument_error(
            f"`class_index` must be None or an integer in [0, {classes}).",
            class_index=class_index,
        )
    names = _target_layers(model, layers)
    targets = []
    for name in names:
        output = model.get_layer(name).output
        if isinstance(output, (list, tuple)) or len(output.shape) != 5:
            raise argument_error(
                "A target layer must output one (batch, t, h, w, channels) tensor.",
                layers=name,
                output_shape=getattr(output, "shape", None),
            )
        targets.append(output)
    cam_model = _ObservedFunctional(model.inputs, targets + list(model.outputs))
    target_layers = {id(model.get_layer(name)) for name in names}
    # Each target is watched as its layer returns, so the tape records only the layers
    # above the targets (the head, for the res5 outputs): those below run as in inference
    # and free their activations, and no use of a weight is recorded. Watching the weights
    # (the tape's default) would keep every activation of the network until `gradient`.
    with tf.GradientTape(watch_accessed_variables=False) as tape:

        def watch_targets(layer, outputs):
            if id(layer) in target_layers:
                tape.watch(outputs)

        cam_model.on_output = watch_targets
        try:
            *activations, probs = cam_model(tf.convert_to_tensor(x), training=False)
        finally:
            cam_model.on_output = None
        if class_index is None:
            class_index = int(np.argmax(np.asarray(probs)[0]))
        score = tf.cast(probs[0, int(class_index)], tf.float32)
    gradients = tape.gradient(score, activations)
    size = x.shape[1:4]
    heatmaps = []
    for a, g in zip(activations, gradients):
        a = np.asarray(tf.cast(a, tf.float32))[0]
        g = np.zeros_like(a) if g is None else np.asarray(tf.cast(g, tf.float32))[0]
        heatmaps.append(_cam(a, g, size, weight_axes))
    return heatmaps, int(class_index)


# ---------------------------------------------------------------------------------------------
# Drawing helpers.


def _text_block(frame, lines, left=0, top=0, scale=None):
    """Draws `lines` in white on a dark box at `(left, top)` of an RGB frame, in place."""
    if not lines:
        return frame
    height, width = frame.shape[:2]
    if scale is None:
        scale = max(0.35, min(height, width) / 500)
    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = 1 if scale < 0.8 else 2
    sizes = [cv2.getTextSize(line, font, scale, thickness) for line in lines]
    line_height = max(s[0][1] + s[1] for s in sizes) + 4
    block_width = min(width - left, max(s[0][0] for s in sizes) + 8)
    block_height = min(height - top, line_height * len(lines) + 4)
    region = frame[top : top + block_height, left : left + block_width]
    region[...] = (region.astype(np.uint16) * 2 // 7).astype(np.uint8)  # darkened backdrop
    for j, line in enumerate(lines):
        y = top + (j + 1) * line_height - 2
        cv2.putText(
            frame, line, (left + 4, y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA
        )
    return frame


def _colourize(heatmap, colormap):
    """A `(..., H, W)` map in [0, 1] as uint8 RGB through an OpenCV colormap."""
    values = np.clip(np.rint(np.asarray(heatmap, np.float32) * 255), 0, 255).astype(np.uint8)
    flat = values.reshape(-1, values.shape[-1])
    bgr = cv2.applyColorMap(flat, colormap)
    return bgr[..., ::-1].reshape(values.shape + (3,))


def _write_frames(frames, path, fps):
    """Encodes uint8 RGB frames `(N, H, W, 3)` at `fps` to `path` atomically."""
    import av

    rate = fractions.Fraction(fps).limit_denominator(1001)
    path = os.fspath(path)
    with atomic_path(path, suffix=os.path.splitext(path)[1]) as tmp:
        with av.open(tmp, "w") as out:
            stream = add_video_stream(out, rate, 1 / rate, frames.shape[2], frames.shape[1])
            for i, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts, frame.time_base = i, 1 / rate
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    return path


def write_gradcam_video(
    clip: np.ndarray,
    heatmaps: Sequence[np.ndarray],
    path: str | os.PathLike,
    fps: float = 15.0,
    alpha: float = 0.5,
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    colormap: int | None = None,
) -> str:
    """Writes the clip and its Grad-CAM maps side by side as a video, atomically.

    Each output frame is `[frame | map 1 | map 2 ...]`: the clip's frame, then for each
    heatmap the frame blended with the map through an OpenCV colormap,
    `(1 - alpha) * frame + alpha * colour`. Each panel carries its label at the top left.
    The video is H.264 (MPEG-4 Part 2 when PyAV has no H.264 encoder).

    Args:
        clip: uint8 RGB `(T, H, W, 3)` (or a batch of one).
        heatmaps: a list of `(T, H, W)` maps in [0, 1], as :func:`grad_cam` returns.
        path: the output file (its extension picks the container, e.g. `.mp4`).
        fps: frame rate of the output (e.g. 30 / the clip's sampling rate, for real time).
        alpha: weight of the colour map in the blend, in [0, 1].
        labels: one label per heatmap (default: `"slow"`, `"fast"` for two maps,
            `"slow"` for one, else `"map {i}"`).
        title: text drawn on the frame panel (e.g. the explained class).
        colormap: an OpenCV colormap (default `cv2.COLORMAP_JET`).

    Returns:
        `path`.

    Example:
        >>> import tempfile, av
        >>> clip = np.zeros((4, 64, 80, 3), np.uint8)
        >>> maps = [np.linspace(0, 1, 4 * 64 * 80, dtype=np.float32).reshape(4, 64, 80)] * 2
        >>> path = os.path.join(tempfile.mkdtemp(), "cam.mp4")
        >>> _ = write_gradcam_video(clip, maps, path, fps=8)
        >>> with av.open(path) as f:
        ...     s = f.streams.video[0]
        ...     (s.frames, s.width, s.height, s.average_rate)
        (4, 240, 64, Fraction(8, 1))
    """
    frames = np.asarray(clip)
    if frames.ndim == 5 and frames.shape[0] == 1:
        frames = frames[0]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise argument_error(
            "`clip` must be a uint8 RGB clip (T, H, W, 3).",
            clip_shape=frames.shape,
            clip_dtype=str(frames.dtype),
        )
    if isinstance(heatmaps, np.ndarray) and heatmaps.ndim == 3:
        heatmaps = [heatmaps]
    maps = [np.asarray(m, np.float32) for m in heatmaps]
    if not maps or any(m.shape != frames.shape[:3] for m in maps):
        raise argument_error(
            f"`heatmaps` must be a non-empty list of maps of the clip's shape {frames.shape[:3]}.",
            heatmaps_shapes=[m.shape for m in maps],
        )
    if any(not np.isfinite(m).all() for m in maps):
        raise argument_error("`heatmaps` must be finite.", heatmaps="non-finite values")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise argument_error("`alpha` must be a number in [0, 1].", alpha=alpha)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000:
        raise argument_error("`fps` must be a number in (0, 1000].", fps=fps)
    if labels is None:
        labels = (
            ["slow", "fast"]
            if len(maps) == 2
            else (["slow"] if len(maps) == 1 else [f"map {i}" for i in range(len(maps))])
        )
    labels = [str(label) for label in labels]
    if len(labels) != len(maps):
        raise argument_error("`labels` must give one label per heatmap.", labels=labels)
    colormap = cv2.COLORMAP_JET if colormap is None else colormap
    heading = [title] if title else []
    colours = [_colourize(m, colormap) for m in maps]  # uint8, as small as the clip
    del maps
    height, width = frames.shape[1:3]
    # Blended one frame at a time: float copies of one frame, not of the whole clip.
    out = np.empty((len(frames), height, width * (1 + len(colours)), 3), np.uint8)
    for t, frame in enumerate(frames):
        out[t, :, :width] = frame
        _text_block(out[t, :, :width], heading)
        base = frame.astype(np.float32)
        for k, (colour, label) in enumerate(zip(colours, labels), start=1):
            panel = out[t, :, k * width : (k + 1) * width]
            panel[...] = np.rint((1 - alpha) * base + alpha * colour[t].astype(np.float32))
            _text_block(panel, [label])
    return _write_frames(out, path, fps)


# ---------------------------------------------------------------------------------------------
# Timelines.


def _check_timeline(times, scores, class_names):
    t = np.asarray(times, np.float64)
    if t.ndim != 1 or len(t) == 0 or not np.isfinite(t).all():
        raise argument_error(
            "`times` must be a non-empty 1-D array of finite seconds.",
            times_shape=np.shape(times),
        )
    s = np.asarray(scores, np.float64)
    if s.ndim != 2 or s.shape[0] != len(t) or s.shape[1] < 1 or not np.isfinite(s).all():
        raise argument_error(
            "`scores` must be a finite (windows, classes) array with one row per time.",
            scores_shape=np.shape(scores),
            times_shape=t.shape,
        )
    if class_names is None:
        names = [f"class {i}" for i in range(s.shape[1])]
    else:
        names = [str(n) for n in class_names]
        if len(names) != s.shape[1]:
            raise argument_error(
                f"`class_names` must name the {s.shape[1]} classes of `scores`.",
                class_names_len=len(names),
            )
    return t, s, names


def _top_classes(scores, top):
    """The `top` classes by peak score over the windows (then by mean), best first."""
    peak, mean = scores.max(axis=0), scores.mean(axis=0)
    order = np.lexsort((np.arange(scores.shape[1]), -mean, -peak))
    return order[: min(top, scores.shape[1])]


def plot_timeline(
    times: npt.ArrayLike,
    scores: npt.ArrayLike,
    class_names: Sequence[str] | None,
    path: str | os.PathLike,
    *,
    top: int = 5,
    kind: str = "heatmap",
    title: str | None = None,
) -> str:
    """Plots the top classes' scores over a video's windows as a PNG, atomically.

    The `top` classes are those with the highest peak score over the windows (ties broken
    by the mean score). `kind="heatmap"` draws a classes x windows image (one labelled row
    per class, best first, colour = score, a colour bar) over the time axis; `"lines"`
    draws one line per class. Needs matplotlib (`pip install keras-slowfast[plot]`); it
    draws on its own Agg canvas, leaving pyplot and the global backend untouched.

    Args:
        times: `(windows,)` window centre times in seconds.
        scores: `(windows, classes)` scores (e.g. probabilities).
        class_names: the `classes` names, or `None` (`"class {i}"`).
        path: the PNG file to write.
        top: how many classes to show.
        kind: `"heatmap"` or `"lines"`.
        title: the figure title (default none).

    Returns:
        `path`.

    Raises:
        ImportError: when matplotlib is absent.

    Example:
        >>> times = np.arange(10) * 1.0 + 0.5
        >>> scores = np.random.default_rng(0).dirichlet(np.ones(4), size=10)
        >>> plot_timeline(times, scores, ["a", "b", "c", "d"], "timeline.png",
        ...               top=3)  # doctest: +SKIP
        'timeline.png'
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "plot_timeline needs matplotlib: `pip install keras-slowfast[plot]`."
        ) from e
    t, s, names = _check_timeline(times, scores, class_names)
    top = check_positive_int("top", top)
    if kind not in _KINDS:
        raise argument_error(f"`kind` must be one of {_KINDS}.", kind=kind)
    chosen = _top_classes(s, top)
    rows = [names[c] for c in chosen]
    values = s[:, chosen].T  # (top, windows)
    height = 1.6 + 0.42 * len(chosen) if kind == "heatmap" else 4.0
    figure = Figure(figsize=(10, height), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if len(t) > 1:
        step = np.diff(t)
        edges = np.concatenate([[t[0] - step[0] / 2], t[:-1] + step / 2, [t[-1] + step[-1] / 2]])
    else:
        edges = np.array([t[0] - 0.5, t[0] + 0.5])
    if kind == "heatmap":
        mesh = axes.pcolormesh(
            edges,
            np.arange(len(chosen) + 1),
            values,
            cmap="viridis",
            vmin=min(0.0, float(values.min())),
            vmax=max(1.0, float(values.max())),
        )
        axes.set_yticks(np.arange(len(chosen)) + 0.5, labels=rows)
        axes.set_ylim(len(chosen), 0)  # best class on top
        figure.colorbar(mesh, ax=axes, label="score", pad=0.01)
    else:
        for row, name in zip(values, rows):
            axes.plot(t, row, marker="o" if len(t) < 40 else None, markersize=3, label=name)
        axes.set_ylabel("score")
        axes.set_xlim(edges[0], edges[-1])
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    axes.set_xlabel("time (s)")
    if title:
        axes.set_title(str(title))
    figure.tight_layout()
    path = os.fspath(path)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    return path


def _windows(times, window_seconds, starts, ends):
    """`(starts, ends)` of the windows, or `(None, None)` for nearest-centre assignment."""
    if (starts is None) != (ends is None):
        raise argument_error("Give both `starts` and `ends` or neither.", starts=starts, ends=ends)
    if starts is not None:
        if window_seconds is not None:
            raise argument_error(
                "Give `starts`/`ends` or `window_seconds`, not both.",
                window_seconds=window_seconds,
            )
        lo, hi = np.asarray(starts, np.float64), np.asarray(ends, np.float64)
        if lo.shape != times.shape or hi.shape != times.shape or not (hi > lo).all():
            raise argument_error(
                "`starts` and `ends` must have one finite entry per time with ends > starts.",
                starts_shape=lo.shape,
                ends_shape=hi.shape,
                times_shape=times.shape,
            )
        return lo, hi
    if window_seconds is None:
        return None, None
    if (
        isinstance(window_seconds, bool)
        or not isinstance(window_seconds, (int, float))
        or not 0 < window_seconds < float("inf")
    ):
        raise argument_error(
            "`window_seconds` must be a positive number.", window_seconds=window_seconds
        )
    return times - window_seconds / 2, times + window_seconds / 2


def _window_of(t, times, starts, ends):
    """The window of a frame at `t` seconds, or None (see :func:`annotate_video`)."""
    distance = np.abs(times - t)
    if starts is not None:
        covering = (starts <= t) & (t < ends)
        if not covering.any():
            return None
        distance = np.where(covering, distance, np.inf)
    return int(np.argmin(distance))


def annotate_video(
    video: str | os.PathLike,
    times: npt.ArrayLike,
    scores: npt.ArrayLike,
    path: str | os.PathLike,
    class_names: Sequence[str] | None,
    *,
    top_k: int = 3,
    window_seconds: float | None = None,
    starts: npt.ArrayLike | None = None,
    ends: npt.ArrayLike | None = None,
    progress: bool = False,
    timeout: float | None = None,
) -> str:
    """Re-encodes a video with the top classes of its windows drawn on the frames, atomically.

    A frame's time is its presentation time from the start of the video, in seconds (the
    time axis of :func:`keras_slowfast.data.read_frames_at_fps`). The frame shows the
    `top_k` classes and scores of its window, in a box at the top left:

    - with `starts` and `ends`, window `i` covers `[starts[i], ends[i])`;
    - else with `window_seconds`, it covers `[times[i] - w / 2, times[i] + w / 2)`;
    - else every frame takes the window whose centre is nearest (the boundaries are half
      way between consecutive centres; frames before the first or after the last centre
      take the first or last window).

    When windows overlap, the one whose centre is nearest the frame wins (ties: the
    earlier); a frame covered by no window is left as it is. The output has the input's
    frames (same count, size and frame rate), in H.264 (MPEG-4 Part 2 when PyAV has no
    H.264 encoder); audio is not copied.

    Args:
        video: the input video file.
        times: `(windows,)` window centre times in seconds.
        scores: `(windows, classes)` scores.
        path: the output file (its extension picks the container, e.g. `.mp4`).
        class_names: the `classes` names, or `None` (`"class {i}"`).
        top_k: classes drawn per frame.
        window_seconds: the windows' length in seconds (see above).
        starts: `(windows,)` window start times in seconds (with `ends`).
        ends: `(windows,)` window end times in seconds (exclusive).
        progress: draw a progress bar on stderr.
        timeout: seconds allowed (`None`: no limit).

    Returns:
        `path`.

    Example:
        >>> annotate_video("video.mp4", [1.0, 3.0], [[0.9, 0.1], [0.2, 0.8]],
        ...                "annotated.mp4", ["run", "walk"], top_k=1)  # doctest: +SKIP
        'annotated.mp4'
    """
    t, s, names = _check_timeline(times, scores, class_names)
    top_k = min(check_positive_int("top_k", top_k), s.shape[1])
    lo, hi = _windows(t, window_seconds, starts, ends)
    check_timeout(timeout)
    video = os.fspath(video)
    if not os.path.isfile(video):
        raise argument_error("No video file at this path.", video=video)
    if os.path.abspath(os.fspath(path)) == os.path.abspath(video):
        raise argument_error("`path` must not be the input video.", path=path)
    order = np.argsort(-s, axis=1, kind="stable")[:, :top_k]
    lines = [[f"{names[c]} {s[i, c]:.2f}" for c in order[i]] for i in range(len(t))]

    def start(container, stream):
        time_base = fractions.Fraction(stream.time_base)
        offset = fractions.Fraction(container.start_time or 0, 10**6)

        def draw(rgb, pts):
            window = _window_of(float(pts * time_base - offset), t, lo, hi)
            if window is None:
                return rgb
            rgb = np.ascontiguousarray(rgb)
            return _text_block(rgb, lines[window])

        return draw

    name = os.path.splitext(os.path.basename(video))[0]
    return reencode_video(
        video, path, start, f"{name}: writing", progress=progress, timeout=timeout
    )
