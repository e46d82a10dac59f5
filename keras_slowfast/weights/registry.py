"""Published weights by name: download, strict conversion and a `.weights.h5` cache.

Every named variant maps to the checkpoint its authors published (PySlowFast's Caffe2
model zoo or PyTorchVideo's hub). The first use downloads it with
:func:`keras.utils.get_file` into a temporary folder under the cache, converts it strictly
(every tensor used once, every Keras weight assigned) and writes the converted weights
atomically as `<KERAS_HOME>/models/keras_slowfast/<variant>_<name>.weights.h5`, next to a
small JSON file describing them; the raw download is then deleted. Later loads read the
cached file only: no request, no conversion. A download that fails, is truncated or does
not convert leaves nothing in the cache.

The environment variable `KERAS_SLOWFAST_MIRROR` replaces the base URL
`https://dl.fbaipublicfiles.com` (mirrors, air-gapped sites); the relative paths stay the
same. `KERAS_HOME` (default `~/.keras`) chooses the cache's root.

The width and the class count of a model built with named weights come from the
checkpoint: `width_per_group` and `classes` may be left out, and when given they must
equal the checkpoint's (with `include_top=False` the class count is not used). Named
classifier weights always give softmax probabilities, including those converted from
PyTorchVideo checkpoints (whose reference models output logits).

Example:
    >>> import keras_slowfast
    >>> model = keras_slowfast.SlowFastR50(weights="k400")  # doctest: +SKIP
    >>> available_weights("slowfast_8x8_r50")
    ['k400', 'kinetics', 'kinetics400']
"""

import dataclasses
import json
import os
import shutil
import tempfile

import keras
import numpy as np

from keras_slowfast.atomic import atomic_path, write_text_atomically
from keras_slowfast.weights.loading import (
    CHECKPOINT_SUFFIXES,
    CheckpointMismatchError,
    checkpoint_to_pyslowfast_state,
    transfer_state,
    transfer_weights,
)

DEFAULT_BASE_URL = "https://dl.fbaipublicfiles.com"
MIRROR_ENV = "KERAS_SLOWFAST_MIRROR"
CACHE_SUBDIR = os.path.join("models", "keras_slowfast")
# Bump when the layer structure of a variant changes: cached files of another version are
# converted again (Keras' `.weights.h5` matches layers by their order).
CACHE_VERSION = 1

_STEM_KEY = "s1.pathway0_stem.conv.weight"
_HEAD_KEY = "head.projection.weight"


@dataclasses.dataclass(frozen=True)
class PublishedWeights:
    """One published checkpoint of a variant.

    Attributes:
        variant: key of :data:`keras_slowfast.models.variants.VARIANTS`.
        name: the weights name (`"k400"`, `"ava"`).
        path: the file's path relative to the base URL.
        format: `"caffe2"` (PySlowFast model zoo `.pkl`) or `"pytorchvideo"` (`.pyth`).
        dataset: what it was trained on.
        classes: the class count of its head.
        metric: the published metric's name.
        value: the published value of `metric`.
        sha256: the file's SHA-256 when known (checked by `get_file`), else `None`; every
            download is verified by strict conversion either way.
    """

    variant: str
    name: str
    path: str
    format: str
    dataset: str
    classes: int
    metric: str
    value: float
    sha256: str | None = None


_K400 = "kinetics400"
_PSF = "pyslowfast/model_zoo/kinetics400"
_PTV = "pytorchvideo/model_zoo"

#: Every published checkpoint, keyed by `(variant, weights name)`.
PUBLISHED = {
    (w.variant, w.name): w
    for w in [
        PublishedWeights(
            "slowfast_4x16_r50", "k400", f"{_PSF}/SLOWFAST_4x16_R50.pkl", "caffe2", _K400, 400,
            "top1", 75.6,
        ),
        PublishedWeights(
            "slowfast_8x8_r50", "k400", f"{_PSF}/SLOWFAST_8x8_R50.pkl", "caffe2", _K400, 400,
            "top1", 77.0,
        ),
        PublishedWeights(
            "slow_8x8_r50", "k400", f"{_PSF}/SLOWONLY_8x8_R50.pkl", "caffe2", _K400, 400,
            "top1", 74.8,
        ),
        PublishedWeights(
            "slow_4x16_r50", "k400", f"{_PSF}/SLOWONLY_4x16_R50.pkl", "caffe2", _K400, 400,
            "top1", 72.7,
        ),
        PublishedWeights(
            "slowfast_8x8_r101", "k400", f"{_PTV}/kinetics/SLOWFAST_8x8_R101.pyth",
            "pytorchvideo", _K400, 400, "top1", 77.9,
        ),
        PublishedWeights(
            "slowfast_16x8_r101_50_50", "k400", f"{_PTV}/kinetics/SLOWFAST_16x8_R101_50_50.pyth",
            "pytorchvideo", _K400, 400, "top1", 78.7,
        ),
        PublishedWeights(
            "ava_slowfast_32x2_r101_50_50", "ava",
            "pyslowfast/model_zoo/ava/SLOWFAST_32x2_R101_50_50.pkl", "caffe2", "ava_v2.2", 80,
            "mAP", 29.1,
        ),
        PublishedWeights(
            "ava_slowfast_r50_detection", "ava", f"{_PTV}/ava/SLOWFAST_8x8_R50_DETECTION.pyth",
            "pytorchvideo", "ava_v2.2", 80, "mAP", 24.67,
        ),
    ]
}  # fmt: skip

#: Other spellings of the weights names.
ALIASES = {"kinetics400": "k400", "kinetics": "k400", "ava_v2.2": "ava"}


class WeightsDownloadError(OSError):
    """A published checkpoint could not be downloaded or did not convert; nothing was cached."""


def available_weights(variant):
    """The weights names (aliases included) that `variant` accepts.

    Example:
        >>> available_weights("ava_slowfast_32x2_r101_50_50")
        ['ava', 'ava_v2.2']
    """
    names = [n for (v, n) in PUBLISHED if v == variant]
    names += [a for a, n in ALIASES.items() if n in names]
    return sorted(names)


def published_weights(variant, weights):
    """The :class:`PublishedWeights` entry of `variant` named `weights` (or an alias).

    Raises:
        ValueError: when the variant has no weights of that name, listing those it has.

    Example:
        >>> published_weights("slowfast_8x8_r50", "kinetics400").path
        'pyslowfast/model_zoo/kinetics400/SLOWFAST_8x8_R50.pkl'
    """
    name = ALIASES.get(weights, weights)
    entry = PUBLISHED.get((variant, name))
    if entry is None:
        names = available_weights(variant)
        choices = f"one of {names}" if names else "None (no weights are published for this variant)"
        raise ValueError(
            f"`weights` for {variant} must be {choices}, or the path of a .weights.h5, .pyth "
            f"or .pkl file. Received: weights={weights!r}"
        )
    return entry


def base_url():
    """The download base URL: `$KERAS_SLOWFAST_MIRROR` or `https://dl.fbaipublicfiles.com`."""
    return (os.environ.get(MIRROR_ENV) or DEFAULT_BASE_URL).rstrip("/")


def url_for(entry):
    """The URL `entry` is downloaded from (honouring the mirror)."""
    return f"{base_url()}/{entry.path}"


def cache_dir():
    """The folder holding converted weights: `<KERAS_HOME>/models/keras_slowfast`."""
    home = os.environ.get("KERAS_HOME")
    if not home:
        # Keras' own default, including its fallback for a read-only home folder.
        home = os.path.expanduser(os.path.join("~", ".keras"))
        parent = os.path.dirname(home)
        if not os.access(home if os.path.isdir(home) else parent, os.W_OK):
            home = os.path.join(tempfile.gettempdir(), ".keras")
    return os.path.join(os.path.expanduser(home), CACHE_SUBDIR)


def cache_paths(entry):
    """`(weights_path, info_path)` of the converted weights of `entry`."""
    stem = os.path.join(cache_dir(), f"{entry.variant}_{entry.name}")
    return f"{stem}.weights.h5", f"{stem}.json"


def _read_cache(entry):
    weights_path, info_path = cache_paths(entry)
    if not (os.path.isfile(weights_path) and os.path.isfile(info_path)):
        return None
    try:
        with open(info_path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    if info.get("cache_version") != CACHE_VERSION:
        return None
    return weights_path, info


def checkpoint_head(state):
    """`(width_per_group, classes)` of PySlowFast-keyed checkpoint tensors.

    Example:
        >>> state = {"s1.pathway0_stem.conv.weight": np.zeros((8, 3, 1, 7, 7)),
        ...          "head.projection.weight": np.zeros((10, 72))}
        >>> checkpoint_head(state)
        (8, 10)
    """
    for key in (_STEM_KEY, _HEAD_KEY):
        if key not in state:
            raise CheckpointMismatchError(
                f"The checkpoint has no tensor {key}: it is not a SlowFast checkpoint."
            )
    return int(np.shape(state[_STEM_KEY])[0]), int(np.shape(state[_HEAD_KEY])[0])


def _variant_spec(variant):
    from keras_slowfast.models.variants import VARIANTS

    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {sorted(VARIANTS)}. Received: {variant=}")
    return VARIANTS[variant]


def _build(variant, **kwargs):
    from keras_slowfast.models.variants import _build_variant

    return _build_variant(variant, **kwargs)


def save_weights_atomically(model, path):
    """Writes `model.save_weights(path)` through a temporary file beside it (see `atomic_path`).

    Example:
        >>> save_weights_atomically(model, "runs/demo/final.weights.h5")  # doctest: +SKIP
    """
    # Keras insists on the `.weights.h5` suffix, so the temporary name keeps it.
    with atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp, overwrite=True)


def _write_json_atomically(data, path):
    write_text_atomically(path, json.dumps(data, indent=1, sort_keys=True))


def convert_checkpoint(checkpoint, output, variant, **kwargs):
    """Converts a PySlowFast / PyTorchVideo / Caffe2 checkpoint to a Keras `.weights.h5`.

    The Keras model of `variant` is built with the width and class count found in the
    checkpoint (unless given in `kwargs`), every tensor is transferred strictly, and the
    weights are written to `output` atomically.

    Args:
        checkpoint: path of a `.pyth` (PySlowFast or PyTorchVideo) or Caffe2 `.pkl` file.
        output: the `.weights.h5` path to write.
        variant: a key of :data:`keras_slowfast.models.variants.VARIANTS`, e.g.
            `"slowfast_8x8_r50"`.
        **kwargs: further builder arguments (they must match the checkpoint).

    Returns:
        `(model, summary)`: the converted Keras model and a dict with `format`, `variant`,
        `tensors` (checkpoint tensors used), `params` (trainable parameters, PyTorch's
        count), `width_per_group` and `classes`.

    Raises:
        CheckpointMismatchError: when the checkpoint does not match the variant.

    Example:
        >>> model, summary = convert_checkpoint(
        ...     "SLOWFAST_8x8_R50.pkl", "slowfast_8x8_r50.weights.h5", "slowfast_8x8_r50"
        ... )  # doctest: +SKIP
        >>> summary["params"]  # doctest: +SKIP
        34566488
    """
    output = os.fspath(output)
    if not output.endswith(".weights.h5"):
        raise ValueError(f"`output` must end with '.weights.h5'. Received: output={output!r}")
    _variant_spec(variant)
    state, info = checkpoint_to_pyslowfast_state(checkpoint)
    width, classes = checkpoint_head(state)
    kwargs.setdefault("width_per_group", width)
    kwargs.setdefault("classes", classes)
    kwargs.pop("weights", None)
    model = _build(variant, **kwargs)
    transfer_state(model, state)
    save_weights_atomically(model, output)
    used = sum(1 for k in state if not k.endswith(".num_batches_tracked"))
    summary = dict(
        format=info.get("format"),
        variant=variant,
        tensors=used,
        # PyTorch's convention (and the published counts): BatchNorm statistics excluded.
        params=int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        width_per_group=int(kwargs["width_per_group"]),
        classes=int(kwargs["classes"]),
    )
    return model, summary


def check_weights_file(model, path, variant, **kwargs):
    """Checks that a written `.weights.h5` reproduces `model`: reload and compare outputs.

    A fresh model of `variant` (built with `kwargs`) loads `path`; both models score the
    same seeded random uint8 clip (224x224 for classifiers, 64x64 with one box for
    detectors).

    Args:
        model: the model whose weights were saved.
        path: the `.weights.h5` file.
        variant: the variant key.
        **kwargs: the builder arguments `model` was built with.

    Returns:
        A dict with `output_shape`, `max_abs_diff` between the two models, and
        `finite` (whether every output is finite).

    Example:
        >>> check_weights_file(model, "w.weights.h5", "slowfast_8x8_r50")  # doctest: +SKIP
        {'output_shape': (1, 400), 'max_abs_diff': 0.0, 'finite': True}
    """
    spec = _variant_spec(variant)
    kwargs.pop("weights", None)
    reloaded = _build(variant, **kwargs)
    reloaded.load_weights(path)
    detector = spec["kind"] == "detector"
    frames = (model.input["clip"] if detector else model.input).shape[1]
    rng = np.random.default_rng(0)
    if detector:
        clip = rng.integers(0, 256, (1, frames, 64, 64, 3)).astype("float32")
        x = {"clip": clip, "boxes": np.array([[[0.1, 0.2, 0.7, 0.9]]], "float32")}
    else:
        x = rng.integers(0, 256, (1, frames, 224, 224, 3)).astype("float32")
    a = np.asarray(model.predict_on_batch(x))
    b = np.asarray(reloaded.predict_on_batch(x))
    return dict(
        output_shape=tuple(a.shape),
        max_abs_diff=float(np.max(np.abs(a - b))),
        finite=bool(np.all(np.isfinite(a))),
    )


def fetch(variant, weights):
    """Returns the converted weights of `variant` named `weights`, downloading on first use.

    Args:
        variant: a key of :data:`keras_slowfast.models.variants.VARIANTS`.
        weights: a weights name such as `"k400"` or `"ava"`.

    Returns:
        `(weights_path, info)`: the cached `.weights.h5` and its description (`url`,
        `format`, `tensors`, `params`, `width_per_group`, `classes`, ...).

    Raises:
        ValueError: for an unknown name.
        WeightsDownloadError: when the download fails or the file does not convert; nothing
            is cached then.

    Example:
        >>> path, info = fetch("slowfast_8x8_r50", "k400")  # doctest: +SKIP
        >>> info["classes"]  # doctest: +SKIP
        400
    """
    _variant_spec(variant)
    entry = published_weights(variant, weights)
    cached = _read_cache(entry)
    if cached is not None:
        return cached
    weights_path, info_path = cache_paths(entry)
    os.makedirs(cache_dir(), exist_ok=True)
    url = url_for(entry)
    # A private download folder: a partial file is never seen under the cache's names and
    # is removed whatever happens.
    tmp_dir = tempfile.mkdtemp(prefix=".download-", dir=cache_dir())
    try:
        try:
            raw = keras.utils.get_file(
                fname=os.path.basename(entry.path),
                origin=url,
                cache_dir=tmp_dir,
                cache_subdir="",
                file_hash=entry.sha256,
            )
        except Exception as e:
            raise WeightsDownloadError(
                f"Downloading the {entry.name} weights of {variant} from {url} failed ({e}). "
                f"Check the network or set {MIRROR_ENV} to a mirror, or pass the path of a "
                "downloaded checkpoint as `weights`."
            ) from e
        try:
            _, summary = convert_checkpoint(raw, weights_path, variant)
        except Exception as e:
            if os.path.exists(weights_path):
                os.remove(weights_path)
            raise WeightsDownloadError(
                f"The file downloaded from {url} is not a valid {entry.format} checkpoint of "
                f"{variant} (truncated or corrupt download?): {e}"
            ) from e
        info = dict(
            summary,
            name=entry.name,
            url=url,
            dataset=entry.dataset,
            metric=entry.metric,
            value=entry.value,
            cache_version=CACHE_VERSION,
        )
        # The JSON is written last: the cache is valid only once both files exist.
        _write_json_atomically(info, info_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return weights_path, info


def _check_matches(kwargs, key, expected, weights):
    value = kwargs.get(key)
    if value is None:
        kwargs[key] = expected
    elif value != expected:
        if key == "classes":
            raise ValueError(
                f"If using `weights={weights!r}` with `include_top=True`, `classes` must be "
                f"{expected} (the classes of its checkpoint). Received: classes={value!r}"
            )
        raise ValueError(
            f"`{key}` must be {expected} (that of the checkpoint of `weights={weights!r}`). "
            f"Received: {key}={value!r}"
        )


def _copy_by_name(source, target):
    """Copies every weighted layer of `target` from the same-named layer of `source`."""
    missing = transfer_weights(source, target)
    if missing:
        raise CheckpointMismatchError(
            f"The pretrained model has no layer {missing[0]}, which this model has."
        )


def build_pretrained(variant, weights, **kwargs):
    """Builds `variant` with its published weights named `weights`.

    This is what the variant builders call for a weights name (e.g.
    `SlowFastR50(weights="k400")`). `width_per_group` and `classes` default to the
    checkpoint's; given values must match it (`classes` only matters with the top).

    Args:
        variant: a key of :data:`keras_slowfast.models.variants.VARIANTS`.
        weights: a weights name (see :func:`available_weights`).
        **kwargs: other builder arguments (`include_top`, `pooling`, `input_shape`,
            `include_preprocessing`, `classifier_activation`, ...).

    Returns:
        A `keras.Model`.

    Example:
        >>> model = build_pretrained("slowfast_8x8_r50", "k400")  # doctest: +SKIP
    """
    spec = _variant_spec(variant)
    path, info = fetch(variant, weights)
    include_top = spec["kind"] == "detector" or kwargs.get("include_top", True)
    _check_matches(kwargs, "width_per_group", info["width_per_group"], weights)
    if include_top:
        _check_matches(kwargs, "classes", info["classes"], weights)
    return _build_loaded(
        variant, kwargs, include_top, info["classes"], lambda m: m.load_weights(path)
    )


def _build_loaded(variant, kwargs, include_top, classes, load):
    """Builds `variant` and calls `load(model)`; without the top, loads a full model and
    copies its weights by layer name."""
    if include_top:
        model = _build(variant, **kwargs)
        load(model)
        return model
    full = _build(variant, **dict(kwargs, include_top=True, pooling=None, classes=classes))
    load(full)
    model = _build(variant, **kwargs)
    _copy_by_name(full, model)
    return model


def build(variant, weights=None, **kwargs):
    """Builds any variant by key, with weights given by name or by file.

    Named weights go through :func:`build_pretrained`. For a `.pyth` / `.pkl` checkpoint
    the width and class count are read from the file (unless given), so fine-tuned or
    narrow checkpoints load without restating them. A `.weights.h5` file needs the builder
    arguments it was saved with.

    Args:
        variant: a key of :data:`keras_slowfast.models.variants.VARIANTS`.
        weights: `None`, a weights name, or a checkpoint / `.weights.h5` path.
        **kwargs: builder arguments.

    Returns:
        A `keras.Model`.

    Example:
        >>> model = build("slow_8x8_r50", width_per_group=8, classes=10)
        >>> model.output_shape
        (None, 10)
    """
    _variant_spec(variant)
    if weights is None:
        return _build(variant, **kwargs)
    path = os.fspath(weights) if isinstance(weights, os.PathLike) else weights
    if isinstance(path, str) and path.endswith(CHECKPOINT_SUFFIXES):
        state, _ = checkpoint_to_pyslowfast_state(path)
        width, classes = checkpoint_head(state)
        kwargs.setdefault("width_per_group", width)
        include_top = kwargs.get("include_top", True)
        if include_top:
            kwargs.setdefault("classes", classes)
        return _build_loaded(
            variant, kwargs, include_top, classes, lambda m: transfer_state(m, state)
        )
    try:
        return _build(variant, weights=weights, **kwargs)
    except ValueError as e:
        if not (isinstance(path, str) and path.endswith(".weights.h5")):
            raise
        first_line = str(e).strip().splitlines()[0]
        raise ValueError(
            f"The weights file does not fit {variant} built with {kwargs or 'its defaults'}: "
            "pass the builder arguments it was saved with (e.g. `width_per_group`, "
            f"`classes`). Keras said: {first_line} Received: weights={path!r}"
        ) from e
