"""Multiply-accumulate counts of Keras models, counted the way fvcore counts PyTorch models.

:func:`model_flops` walks the graph of a functional (or Sequential) Keras model at a static
input shape, without running it, and counts multiply-accumulates (MACs, "FLOPs" in fvcore's
and the SlowFast papers' sense: one fused multiply-add is one operation) layer by layer:

* convolutions: output positions x kernel volume x input channels / groups x filters per
  sample (transposed convolutions: input positions instead of output positions); the bias
  is not counted;
* `Dense`: input positions x input features x units; `EinsumDense`: the product of the
  sizes of all the equation's indices, as fvcore counts a two-operand `einsum`;
* :class:`keras_slowfast.NonLocalAttention`: its two batched matmuls, `theta^T phi` and
  `affinity x g`, `T x P x C'` each for `T` query positions, `P` pooled positions and `C'`
  channels;
* `BatchNormalization`, only when asked (`batchnorm=`): per element, 2 (`"inference"`, fvcore's
  count for an inference-mode `batch_norm` since June 2021) or 5 (`"training"`, its count
  for a training-mode one, and for every `batch_norm` from March to June 2021); 1 and 4 when
  the layer has neither scale nor offset;
* everything else counts zero: activations, additions, concatenation, padding, pooling,
  softmax, dropout, and :class:`keras_slowfast.RoIAlign` (fvcore has no handler for
  torchvision's `roi_align` and skips it as an unsupported operator).

These are the rules of fvcore's `FlopCountAnalysis` (its handlers for `aten::_convolution`,
`aten::linear`/`aten::addmm`/`aten::matmul`, `aten::bmm`, `aten::einsum` and
`aten::batch_norm`), with which the PySlowFast and PyTorchVideo figures were counted. Three
conventions appear in what was published, and `batchnorm` chooses between them:

* `batchnorm=None` (the default): convolutions and matmuls only, the SlowFast paper's and
  fvcore's count until March 2021, e.g. 65.71 GMACs for SlowFast 8x8 R50 and 54.52 for Slow
  8x8 R50 at 256x256 in PyTorchVideo's Kinetics-400 model zoo;
* `batchnorm="training"`: PyTorchVideo's other Kinetics-400 figures (SlowFast 4x16 R50 36.69,
  8x8 R101 127.20, 16x8 R101_50_50 215.61, Slow 4x16 R50 27.55 at 256x256);
* `batchnorm="inference"`: fvcore today on a PySlowFast model in eval mode (SlowFast 8x8 R50:
  50.58 at 224x224, 66.07 at 256x256).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import numbers
import warnings
from collections.abc import Mapping, Sequence

import keras

from keras_slowfast._checks import argument_error, check_positive_int
from keras_slowfast.models.layers import NonLocalAttention

__all__ = ["FlopCount", "model_flops"]


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """The multiply-accumulate count of a model at one input shape.

    Attributes:
        macs: total multiply-accumulates for `batch_size` samples.
        per_layer: `{layer name: MACs}` for every counted layer, in graph order (layers of
            nested models are named `outer/inner`; a layer called several times is summed).
        skipped: `{layer class name: calls}` of the layers counted as zero.
        input_shapes: the static input shapes counted at, batch dimension included.

    Example:
        >>> inputs = keras.Input((8,))
        >>> model = keras.Model(inputs, keras.layers.Dense(4, name="fc")(inputs))
        >>> count = model_flops(model)
        >>> count.macs, count.per_layer
        (32, {'fc': 32})
    """

    macs: int
    per_layer: dict
    skipped: dict
    input_shapes: tuple

    @property
    def gmacs(self) -> float:
        """`macs / 1e9`: giga multiply-accumulates (fvcore's and the papers' "GFLOPs")."""
        return self.macs / 1e9

    def summary(self, top: int | None = None) -> str:
        """A text table of the counted layers, largest first.

        Args:
            top: show only the `top` largest layers (`None`: all).

        Returns:
            The table, one layer a line, ending with the total.

        Example:
            >>> inputs = keras.Input((8,))
            >>> model = keras.Model(inputs, keras.layers.Dense(4, name="fc")(inputs))
            >>> print(model_flops(model).summary())
            fc     32 MACs  100.0%
            total  32 MACs  (0.000 GMACs)
        """
        rows = sorted(self.per_layer.items(), key=lambda kv: -kv[1])
        if top is not None:
            rows = rows[:top]
        width = max([len(name) for name, _ in rows] + [5])
        digits = len(f"{self.macs:,}")
        lines = []
        for name, macs in rows:
            share = 100.0 * macs / self.macs if self.macs else 0.0
            lines.append(f"{name:<{width}}  {macs:>{digits},} MACs  {share:5.1f}%")
        lines.append(f"{'total':<{width}}  {self.macs:>{digits},} MACs  ({self.gmacs:.3f} GMACs)")
        return "\n".join(lines)


def _shape(x):
    return tuple(x.shape)


def _static(shape, layer):
    if any(d is None for d in shape):
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has a dynamic dimension at the "
            "given input shape; pass a fully static `input_shape`. "
            f"Received: shape={shape}"
        )
    return shape


_TRANSPOSED_TYPES = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)


def _conv_macs(layer, inputs, outputs):
    x = _static(_shape(inputs[0]), layer)
    y = _static(_shape(outputs[0]), layer)
    channels_last = layer.data_format == "channels_last"
    in_ch = x[-1] if channels_last else x[1]
    spatial_in = x[1:-1] if channels_last else x[2:]
    spatial_out = y[1:-1] if channels_last else y[2:]
    kernel = math.prod(layer.kernel_size)
    batch = x[0]
    if isinstance(layer, keras.layers.DepthwiseConv1D | keras.layers.DepthwiseConv2D):
        return batch * math.prod(spatial_out) * kernel * in_ch * layer.depth_multiplier
    if isinstance(layer, keras.layers.SeparableConv1D | keras.layers.SeparableConv2D):
        depthwise = math.prod(spatial_out) * kernel * in_ch * layer.depth_multiplier
        pointwise = math.prod(spatial_out) * in_ch * layer.depth_multiplier * layer.filters
        return batch * (depthwise + pointwise)
    groups = getattr(layer, "groups", 1) or 1
    if isinstance(layer, _TRANSPOSED_TYPES):
        # fvcore: input positions x kernel volume x in x out / groups.
        return batch * math.prod(spatial_in) * kernel * in_ch * layer.filters // groups
    return batch * math.prod(spatial_out) * kernel * (in_ch // groups) * layer.filters


def _dense_macs(layer, inputs, outputs):
    x = _static(_shape(inputs[0]), layer)
    return math.prod(x) * layer.units


def _einsum_dense_macs(layer, inputs, outputs):
    # A two-operand einsum costs the product of the sizes of all its indices (fvcore's count).
    x = _static(_shape(inputs[0]), layer)
    kernel = tuple(layer.kernel.shape)
    lhs, rest = layer.equation.replace(" ", "").split(",")
    rhs = rest.split("->")[0]
    broadcast = 1
    if lhs.startswith("..."):
        lhs = lhs[3:]
        broadcast = math.prod(x[: len(x) - len(lhs)])
        x = x[len(x) - len(lhs) :]
    sizes = {}
    for letters, dims in ((lhs, x), (rhs, kernel)):
        for letter, dim in zip(letters, dims):
            sizes[letter] = dim
    return broadcast * math.prod(sizes.values())


def _nonlocal_macs(layer, inputs, outputs):
    theta, phi = (_static(_shape(t), layer) for t in inputs[:2])
    batch, channels = theta[0], theta[-1]
    queries = math.prod(theta[1:-1])
    keys = math.prod(phi[1:-1])
    # theta^T phi, then affinity x g: T x P x C' multiply-adds each.
    return 2 * batch * queries * keys * channels


# Per-element MACs of BatchNormalization: (with scale or offset, without).
_BATCHNORM_COUNTS = {"inference": (2, 1), "training": (5, 4)}


def _batchnorm_handler(mode):
    def count(layer, inputs, outputs):
        x = _static(_shape(inputs[0]), layer)
        affine, plain = _BATCHNORM_COUNTS[mode]
        return math.prod(x) * (affine if (layer.scale or layer.center) else plain)

    return count


_CONV_TYPES = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    *_TRANSPOSED_TYPES,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


def _handler(layer, batchnorm):
    """The MAC count function of `layer`, or None when it counts zero."""
    if isinstance(layer, _CONV_TYPES):
        return _conv_macs
    if isinstance(layer, keras.layers.Dense):
        return _dense_macs
    if isinstance(layer, keras.layers.EinsumDense):
        return _einsum_dense_macs
    if isinstance(layer, NonLocalAttention):
        return _nonlocal_macs
    if batchnorm is not None and isinstance(layer, keras.layers.BatchNormalization):
        return _batchnorm_handler(batchnorm)
    return None


def _graph_of(model):
    """The Functional graph behind `model` (itself, or a built Sequential's)."""
    from keras.src.models.functional import Functional

    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise argument_error(
                "A Sequential model must be built with an input shape to be counted.",
                model=model.name,
            )
        return graph
    if isinstance(model, Functional):
        return model
    return None


class _Tally:
    """What a walk over a graph has counted so far."""

    def __init__(self, batchnorm):
        self.batchnorm = batchnorm
        self.per_layer = {}
        self.skipped = collections.Counter()
        self.unknown = set()

    def count(self, layer, name, inputs, outputs):
        handler = _handler(layer, self.batchnorm)
        if handler is None:
            self.skipped[type(layer).__name__] += 1
            if layer.weights and not isinstance(layer, keras.layers.BatchNormalization):
                self.unknown.add(type(layer).__name__)
            return
        macs = int(handler(layer, inputs, outputs))
        self.per_layer[name] = self.per_layer.get(name, 0) + macs


def _tensors(structure):
    return [t for t in keras.tree.flatten(structure) if isinstance(t, keras.KerasTensor)]


def _walk(graph, input_specs, prefix, tally):
    """Propagates static KerasTensors through `graph` node by node, counting each layer."""
    specs = {id(x): y for x, y in zip(graph.inputs, input_specs)}
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            if any(id(x) not in specs for x in node.input_tensors):
                continue  # Not reachable from the inputs (as Keras' own graph run skips it).
            op = node.operation
            args, kwargs = node.arguments.fill_in(specs)
            inner = _graph_of(op) if isinstance(op, keras.Model) else None
            if inner is not None:
                outputs = _walk(inner, _tensors((args, kwargs)), f"{prefix}{op.name}/", tally)
            else:
                outputs = keras.tree.flatten(op.compute_output_spec(*args, **kwargs))
                tally.count(op, f"{prefix}{op.name}", _tensors((args, kwargs)), outputs)
            for x, y in zip(node.outputs, outputs):
                specs[id(x)] = y
    return [specs[id(x)] for x in graph.outputs]


def _input_specs(graph, input_shape, batch_size):
    names = [x.name for x in graph.inputs]
    declared = [tuple(x.shape[1:]) for x in graph.inputs]
    if input_shape is None:
        shapes = declared
    elif isinstance(input_shape, dict):
        unknown = sorted(set(input_shape) - set(names))
        if unknown:
            raise argument_error(
                f"`input_shape` keys must be among the model's inputs {names}.",
                input_shape=input_shape,
            )
        shapes = [tuple(input_shape.get(n, d)) for n, d in zip(names, declared)]
    else:
        input_shape = tuple(input_shape)
        nested = bool(input_shape) and all(isinstance(s, (list, tuple)) for s in input_shape)
        if len(names) == 1 and not nested:
            shapes = [input_shape]
        elif nested and len(input_shape) == len(names):
            shapes = [tuple(s) for s in input_shape]
        else:
            raise argument_error(
                f"`input_shape` must be one shape per input of the model ({names}), without "
                "the batch dimension, as a tuple for one input or a dict keyed by input name.",
                input_shape=input_shape,
            )
    specs = []
    for name, shape, want, tensor in zip(names, shapes, declared, graph.inputs):
        ok = len(shape) == len(want) and all(
            isinstance(d, numbers.Integral) and d > 0 and (w is None or w == d)
            for d, w in zip(shape, want)
        )
        if not ok:
            raise argument_error(
                f"The shape of input {name!r} must be static (positive integers), without the "
                f"batch dimension, and compatible with the model's {want}.",
                input_shape=input_shape,
            )
        shape = (batch_size,) + tuple(int(d) for d in shape)
        specs.append(keras.KerasTensor(shape, dtype=tensor.dtype))
    return specs


def model_flops(
    model: keras.Model,
    input_shape: Sequence[int]
    | Mapping[str, Sequence[int]]
    | Sequence[Sequence[int]]
    | None = None,
    batch_size: int = 1,
    batchnorm: str | None = None,
) -> FlopCount:
    """Counts the multiply-accumulates (GMACs) of a Keras model at a static input shape.

    The model's graph is walked with static shapes only (no weights are touched and nothing
    is run), so counting a full-size network takes a fraction of a second. What is counted
    follows fvcore (see the module documentation): convolutions, dense and einsum layers and
    the non-local blocks' batched matmuls; BatchNormalization only when asked; RoIAlign,
    pooling, activations and element-wise layers count zero.

    Args:
        model: a functional `keras.Model` (such as those built by this package) or a built
            `keras.Sequential`.
        input_shape: the shape of one sample, without the batch dimension, e.g.
            `(32, 256, 256, 3)` for a SlowFast clip; for a model with several inputs a dict
            keyed by input name (inputs left out keep their declared shape) or a list in
            input order. Default: the model's own input shape, which must then be static.
        batch_size: samples per call; MACs scale linearly with it (published figures are
            for one clip).
        batchnorm: `None` (BatchNormalization not counted, the paper's convention),
            `"inference"` (2 per element, fvcore's default since June 2021 for a model in
            eval mode) or `"training"` (5 per element). See the module documentation for
            which published figures use which.

    Returns:
        A :class:`FlopCount`: `.gmacs`, `.macs`, `.per_layer`, `.skipped`.

    Raises:
        TypeError: `model` is not a functional or Sequential Keras model.
        ValueError: a shape is not static or does not fit the model's inputs.

    Example:
        >>> inputs = keras.Input((4, 16, 16, 3))
        >>> x = keras.layers.Conv3D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
        >>> model = keras.Model(inputs, x)
        >>> model_flops(model).per_layer["conv"] == 4 * 16 * 16 * 27 * 3 * 8
        True
    """
    graph = _graph_of(model) if isinstance(model, keras.Model) else None
    if graph is None:
        raise TypeError(
            "`model` must be a functional or Sequential keras.Model. "
            f"Received: model={type(model).__name__}"
        )
    batch_size = check_positive_int("batch_size", batch_size)
    if batchnorm is not None and batchnorm not in _BATCHNORM_COUNTS:
        raise argument_error(
            f"`batchnorm` must be None or one of {sorted(_BATCHNORM_COUNTS)}.", batchnorm=batchnorm
        )
    specs = _input_specs(graph, input_shape, batch_size)
    tally = _Tally(batchnorm)
    _walk(graph, specs, "", tally)
    if tally.unknown:
        warnings.warn(
            "model_flops counted these layers with weights as zero (no rule for them): "
            f"{sorted(tally.unknown)}",
            stacklevel=2,
        )
    return FlopCount(
        macs=sum(tally.per_layer.values()),
        per_layer=tally.per_layer,
        skipped=dict(tally.skipped),
        input_shapes=tuple(tuple(s.shape) for s in specs),
    )
