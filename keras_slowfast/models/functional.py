"""A functional Keras model whose eager calls are as lean and fast as compiled ones.

Keras runs a functional model called eagerly (`model(clip)`) node by node and keeps every
node's output in one dictionary until the call returns, so the peak memory of an eager call
is the sum of all activations of the network (7 GB for SlowFast 8x8 R50 on two 256x256
clips, against 1.3 GB through `predict_on_batch`). Run op by op, it also misses the graph
optimiser's fusions (convolution + bias + ReLU, padding folded into convolutions) and the
overlap of the two pathways, so it is slower as well.

:class:`LeanFunctional` is an ordinary functional model (same layers, weights, config,
`.keras` format, `fit`, export) with two changes to how it runs:

* every intermediate tensor is released as soon as its last consumer has run, so an op-by-op
  call holds only the live activations; under a `tf.GradientTape` the tape keeps what the
  gradients need, as for any eager computation, and gradients are those of the plain model;
* an eager call in inference mode (`training` None or False, no mask, no gradient tape
  recording) runs one cached `tf.function` of the same graph, as `predict` does: the memory
  and time of the compiled path. Set `model.compile_eager_inference = False` (or
  `tf.config.run_functions_eagerly(True)`) to run such calls op by op, e.g. to debug a layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf
from keras.src import tree
from keras.src.models.functional import Functional

__all__ = ["LeanFunctional"]

try:  # Private TensorFlow API: is any gradient tape recording on this thread?
    from tensorflow.python.eager.record import could_possibly_record as _tape_may_record
except ImportError:  # pragma: no cover - older or newer TensorFlow
    _tape_may_record = None


def _tape_active():
    # Without the query, assume a tape may be recording: the op-by-op path is always exact.
    return True if _tape_may_record is None else bool(_tape_may_record())


class _ForwardCache:
    """Holds the compiled forward out of Keras' and TensorFlow's object tracking.

    A `tf.function` stored directly on the model would be picked up by `tf.saved_model.save`
    as one of the model's functions; this holder is neither a trackable nor a function.
    """

    __slots__ = ("key", "function")

    def __init__(self):
        self.key = None
        self.function = None

    def __deepcopy__(self, memo):
        return _ForwardCache()


@keras.saving.register_keras_serializable(package="keras_slowfast")
class LeanFunctional(Functional):
    """A functional `keras.Model` that frees activations early and compiles eager inference.

    Built like any functional model, `LeanFunctional(inputs, outputs, name=...)`; the
    builders of this package (:func:`keras_slowfast.SlowFast`,
    :func:`keras_slowfast.SlowFastDetector` and the named variants) return one. It saves to and
    loads from the `.keras` format as itself, trains with `fit`, and exports like any
    functional model.

    Attributes:
        compile_eager_inference: when True (the default), an eager call in inference mode
            (`training` None or False, no `mask`, no gradient tape recording) runs a cached
            `tf.function` of the graph (no XLA), whose memory and speed are those of
            `predict_on_batch`. When False, such calls run op by op, each intermediate freed
            after its last use.

    Example:
        >>> import numpy as np
        >>> inputs = keras.Input((4,))
        >>> hidden = keras.layers.Dense(8, activation="relu")(inputs)
        >>> model = LeanFunctional(inputs, keras.layers.Dense(2)(hidden))
        >>> tuple(model(np.ones((3, 4), "float32")).shape)
        (3, 2)
    """

    compile_eager_inference = True

    def call(
        self,
        inputs: tf.Tensor | Sequence[tf.Tensor] | Mapping[str, tf.Tensor],
        training: bool | None = None,
        mask: tf.Tensor | Sequence[tf.Tensor | None] | None = None,
        **kwargs: Any,
    ) -> tf.Tensor | Sequence[tf.Tensor] | Mapping[str, tf.Tensor]:
        if self._runs_compiled(training, mask, kwargs):
            flat = tuple(self._standardize_inputs(inputs))
            # `None` and `False` both mean inference: one trace serves both.
            return self._compiled_forward()(flat)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def _runs_compiled(self, training, mask, kwargs):
        return (
            self.compile_eager_inference
            and (training is None or training is False)
            and mask is None
            and not kwargs
            and keras.backend.backend() == "tensorflow"
            and tf.executing_eagerly()
            and not _tape_active()
        )

    def _compiled_forward(self):
        cache = self.__dict__.get("_lean_forward_cache")
        if cache is None:
            cache = _ForwardCache()
            # Plain attribute, bypassing Keras' tracking (see `_ForwardCache`).
            object.__setattr__(self, "_lean_forward_cache", cache)
        # Rebuild when variables were replaced (e.g. by quantisation), as a traced function
        # holds the variables it saw.
        key = tuple(id(v) for v in self.weights)
        if cache.function is None or cache.key != key:
            parent_call = super().call

            def forward(flat_inputs):
                inputs = tree.pack_sequence_as(self._inputs_struct, list(flat_inputs))
                return parent_call(inputs, training=False)

            # As `predict`: no AutoGraph (the graph run is plain Python), no XLA.
            cache.function = tf.function(
                forward, autograph=False, reduce_retracing=True, jit_compile=False
            )
            cache.key = key
        return cache.function

    def _run_through_graph(self, inputs, operation_fn=lambda op: op, call_fn=None):
        """Runs the graph like `keras.Function`, dropping each tensor after its last use.

        Same node order, same skipping of nodes that are not computable and same outputs as
        Keras' own graph run; only the references to intermediate results are released as
        soon as no node still to run needs them, so that they can be freed.
        """
        tensor_dict = {id(x): y for x, y in zip(self.inputs, tree.flatten(inputs))}
        nodes = []
        for depth in sorted(self._nodes_by_depth, reverse=True):
            for node in self._nodes_by_depth[depth]:
                if node.operation and not node.is_input:
                    nodes.append(node)
        last_use = {}
        for i, node in enumerate(nodes):
            for x in node.input_tensors:
                last_use[id(x)] = i
        for x in self.outputs:
            last_use.pop(id(x), None)
        release = {}
        for key, i in last_use.items():
            release.setdefault(i, []).append(key)
        get_operation = getattr(self, "_get_operation_for_node", lambda node: node.operation)

        for i, node in enumerate(nodes):
            if all(id(x) in tensor_dict for x in node.input_tensors):
                args, kwargs = node.arguments.fill_in(tensor_dict)
                if call_fn is not None:
                    outputs = call_fn(operation_fn(node.operation), *args, **kwargs)
                else:
                    outputs = operation_fn(get_operation(node))(*args, **kwargs)
                del args, kwargs
                for x, y in zip(node.outputs, tree.flatten(outputs)):
                    tensor_dict[id(x)] = y
                del outputs
            # Nodes that cannot run still release their inputs: no later node needs them.
            for key in release.get(i, ()):
                tensor_dict.pop(key, None)

        output_tensors = []
        for i, x in enumerate(self.outputs):
            if id(x) not in tensor_dict:
                path = tree.flatten_with_path(self._outputs_struct)[i][0]
                path = ".".join(str(p) for p in path)
                raise ValueError(f"Output with path `{path}` is not connected to `inputs`")
            output_tensors.append(tensor_dict[id(x)])
        return tree.pack_sequence_as(self._outputs_struct, output_tensors)
