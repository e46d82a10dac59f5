"""From presets and checkpoints to Keras models: building, converting, downloading, caching.

This layer sits above both :mod:`keras_slowfast.models` (the builders) and
:mod:`keras_slowfast.weights` (readers, name maps, strict transfer), which know nothing of
each other, and reads every variant from :mod:`keras_slowfast.presets`.

Published weights: the first use downloads the preset's checkpoint (a progress bar on
stderr) into a private temporary folder under the cache, checks it
(every member's CRC-32 for `.pyth` zip files; the sha256 where the table records one,
which no upstream publishes today), converts it strictly (every tensor used once, every
Keras weight assigned) and writes `<KERAS_HOME>/models/keras_slowfast/<preset>.weights.h5`
atomically next to a small JSON description recording the sha256 of both files; the raw
download is then deleted. Later loads read the cached file only, after checking its size
and sha256 (a damaged entry is converted again). A download that fails, is truncated,
fails a CRC or does not convert leaves nothing in the cache; a per-preset lock file makes
concurrent first loads from several processes download and convert once, and a
read-only `KERAS_HOME` falls back to `<tmp>/.keras` as Keras does.

`KERAS_SLOWFAST_MIRROR` replaces the base URL `https://dl.fbaipublicfiles.com` (mirrors,
air-gapped sites); the relative paths stay the same. `KERAS_HOME` (default `~/.keras`)
chooses the cache's root. `KERAS_SLOWFAST_LOCK_TIMEOUT` bounds the seconds a first load
waits for another process converting the same weights (default 1800).

Example:
    >>> import keras_slowfast
    >>> model = keras_slowfast.from_preset("slowfast_8x8_r50_kinetics400")  # doctest: +SKIP
    >>> model = from_preset("slow_8x8_r50_kinetics400", load_weights=False,
    ...                     width_per_group=8, classes=10)
    >>> model.output_shape
    (None, 10)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_slowfast import presets as presets_table
from keras_slowfast.atomic import (
    LockTimeout,
    file_lock,
    save_weights_atomically,
    write_text_atomically,
)
from keras_slowfast.models.detection import SlowFastDetector
from keras_slowfast.models.slowfast import STAGE_DEPTHS, SlowFast
from keras_slowfast.progress import ProgressBar
from keras_slowfast.weights import name_maps
from keras_slowfast.weights.pyslowfast_config import builder_kwargs_from_config
from keras_slowfast.weights.transfer import (
    CHECKPOINT_SUFFIXES,
    CheckpointMismatchError,
    checkpoint_head,
    checkpoint_to_pyslowfast_state,
    pytorchvideo_state_to_pyslowfast,
    read_checkpoint_tensors,
    transfer_state,
    transfer_weights,
)

if TYPE_CHECKING:
    import keras

__all__ = [
    "WeightsDownloadError",
    "build",
    "check_weights_file",
    "convert_checkpoint",
    "fetch",
    "from_preset",
    "list_presets",
    "load_pyslowfast",
    "load_pytorchvideo",
]

MIRROR_ENV = "KERAS_SLOWFAST_MIRROR"
# Seconds a first load waits for another process converting the same weights.
LOCK_TIMEOUT_ENV = "KERAS_SLOWFAST_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 1800.0
CACHE_SUBDIR = os.path.join("models", "keras_slowfast")
# Bump when the layer structure of a preset changes: cached files of another version are
# converted again (Keras' `.weights.h5` matches layers by their order).
CACHE_VERSION = 2

#: The builder of each preset kind: the one place a kind becomes a function.
BUILDERS = {presets_table.CLASSIFIER: SlowFast, presets_table.DETECTOR: SlowFastDetector}


class WeightsDownloadError(OSError):
    """A published checkpoint could not be downloaded or did not convert; nothing was cached.

    Attributes:
        url: the checkpoint's URL when the download itself failed, else `None`.
        reason: why the download failed (`"HTTP 404 Not Found"`, `"[Errno 111] Connection
            refused"`, ...), else `None`.
    """

    def __init__(self, message: str, url: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason


def list_presets(kind: str | None = None) -> list[str]:
    """The names of every preset (of one `kind`: `"classifier"` or `"detector"`).

    Each is a row of :data:`keras_slowfast.presets.PRESETS`; see
    :func:`keras_slowfast.presets.get_preset` for its details.

    Example:
        >>> "slowfast_8x8_r50_kinetics400" in list_presets()
        True
    """
    if kind not in (None, *presets_table.KINDS):
        raise ValueError(
            f"`kind` must be None, 'classifier' or 'detector'. Received: kind={kind!r}"
        )
    return presets_table.preset_names(kind)


def _build(preset, kwargs):
    return BUILDERS[preset.kind](**preset.builder_kwargs(**kwargs))


def _match(kwargs, key, expected, weights):
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


def _include_top(preset, kwargs):
    """Whether `preset` built with `kwargs` has its classifier (detectors always do)."""
    if preset.kind == presets_table.DETECTOR:
        return True
    return bool(kwargs.get("include_top", preset.kwargs.get("include_top", True)))


def _build_loaded(preset, kwargs, classes, load):
    """Builds `preset` with `kwargs` and calls `load(model)`; without the top, loads a full
    model and copies its weights by layer name."""
    include_top = _include_top(preset, kwargs)
    if include_top or classes is None:
        # With the top, or a backbone published without one: the file fits as it is.
        model = _build(preset, kwargs)
        load(model)
        return model
    full = _build(preset, dict(kwargs, include_top=True, pooling=None, classes=classes))
    load(full)
    model = _build(preset, kwargs)
    missing = transfer_weights(full, model)
    if missing:
        raise CheckpointMismatchError(
            f"The pretrained model has no layer {missing[0]}, which this model has."
        )
    return model


def _build_from_checkpoint(preset, path, kwargs, weights_arg):
    state, _ = checkpoint_to_pyslowfast_state(path)
    width, classes = checkpoint_head(state)
    kwargs = dict(kwargs)
    _match(kwargs, "width_per_group", width, weights_arg)
    include_top = _include_top(preset, kwargs)
    if classes is None:
        if include_top:
            raise CheckpointMismatchError(
                f"The checkpoint has no classification head: build {preset.name} with "
                f"include_top=False. Received: weights={weights_arg!r}"
            )
        # A published backbone without a head (self-supervised pre-training).
        return transfer_state(_build(preset, kwargs), state)
    if include_top:
        _match(kwargs, "classes", classes, weights_arg)
    return _build_loaded(preset, kwargs, classes, lambda m: transfer_state(m, state))


def from_preset(
    preset: str,
    *,
    load_weights: bool = True,
    checkpoint: str | os.PathLike | None = None,
    **overrides: Any,
) -> keras.Model:
    """Builds a preset's network, with its published weights by default.

    Args:
        preset: a preset name (see :func:`list_presets`), e.g.
            `"slowfast_8x8_r50_kinetics400"`, or an architecture key such as
            `"slowfast_8x8_r50"` (its first row).
        load_weights: download (once), convert and load the published weights. With
            `False` the network starts from its initialisers.
        checkpoint: the path of this preset's checkpoint already on disk (the published
            file, or a fine-tuned one in the same format): converted with the preset's
            conventions instead of downloading. Its width and class count are read from the file.
        **overrides: builder arguments replacing the preset's (`include_top`, `pooling`,
            `input_shape`, `include_preprocessing`, `dtype`, `classifier_activation`, ...).
            With weights, `width_per_group` and `classes` must equal the checkpoint's.

    Returns:
        A `keras.Model` taking RGB clips (uint8 or float in [0, 255] unless
        `include_preprocessing=False`).

    Raises:
        ValueError: for an unknown preset, arguments that contradict the checkpoint, or
            `load_weights=True` on a preset without published weights.
        WeightsDownloadError: when the download fails or does not convert.

    Example:
        >>> model = from_preset("slowfast_8x8_r50_kinetics400")  # doctest: +SKIP
        >>> model = from_preset("ava_slowfast_r50_detection", load_weights=False,
        ...                     width_per_group=8)
        >>> model.output_shape
        (None, None, 80)
    """
    p = presets_table.get_preset(preset)
    if "weights" in overrides:
        raise TypeError(
            "from_preset takes `load_weights` and `checkpoint`, not `weights`. "
            f"Received: weights={overrides['weights']!r}"
        )
    if checkpoint is not None:
        path = _checked_path(checkpoint, "checkpoint")
        return _build_from_checkpoint(p, path, overrides, checkpoint)
    if not load_weights:
        return _build(p, overrides)
    if p.checkpoint is None:
        raise ValueError(
            f"No weights are published for the preset {p.name}: pass load_weights=False, or "
            f"checkpoint= the path of a checkpoint. Received: preset={preset!r}, "
            "load_weights=True"
        )
    return _build_published(p, p.weights, overrides)


def _build_published(preset, weights_arg, kwargs):
    path, info = fetch(preset.name)
    kwargs = dict(kwargs)
    _match(kwargs, "width_per_group", info["width_per_group"], weights_arg)
    include_top = _include_top(preset, kwargs)
    if include_top:
        _match(kwargs, "classes", info["classes"], weights_arg)
    return _build_loaded(preset, kwargs, info["classes"], lambda m: m.load_weights(path))


def _checked_path(value, arg):
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"`{arg}` must be a file path. Received: {arg}={value!r}")
    if not os.path.isfile(value):
        raise ValueError(f"No checkpoint file at this path. Received: {arg}={value!r}")
    return value


def build(
    architecture: str, weights: str | os.PathLike | None = None, **kwargs: Any
) -> keras.Model:
    """Builds an architecture (or preset) by key, with weights given by name or by file.

    This is what the named builders (:func:`keras_slowfast.SlowFastR50`, ...) call.

    Args:
        architecture: an architecture key (`"slowfast_8x8_r50"`) or a preset name.
        weights: `None`; a published weights name of the architecture (`"k400"`, `"ava"`,
            an alias such as `"kinetics400"`, see
            :func:`keras_slowfast.presets.weights_names`); a checkpoint path (`.pyth`,
            `.pkl`, `.pth`, `.pt`), whose width and class count are read from the file;
            or a Keras `.weights.h5` file, which needs the builder arguments it was saved
            with.
        **kwargs: builder arguments replacing the preset's.

    Returns:
        A `keras.Model`.

    Example:
        >>> model = build("slow_8x8_r50", width_per_group=8, classes=10)
        >>> model.output_shape
        (None, 10)
    """
    preset = presets_table.get_preset(architecture)
    if weights is None:
        return _build(preset, kwargs)
    path = os.fspath(weights) if isinstance(weights, os.PathLike) else weights
    if not isinstance(path, str):
        raise TypeError(
            "`weights` must be None, a published weights name or a file path. "
            f"Received: weights={weights!r}"
        )
    if path.endswith(CHECKPOINT_SUFFIXES):
        return _build_from_checkpoint(preset, _checked_path(path, "weights"), kwargs, weights)
    if path.endswith(".weights.h5"):
        try:
            return _build(preset, dict(kwargs, weights=path))
        except ValueError as e:
            if not os.path.isfile(path):
                raise
            first_line = str(e).strip().splitlines()[0]
            raise ValueError(
                f"The weights file does not fit {preset.architecture} built with "
                f"{kwargs or 'its defaults'}: pass the builder arguments it was saved with "
                f"(e.g. `width_per_group`, `classes`). Keras said: {first_line} "
                f"Received: weights={path!r}"
            ) from e
    row = presets_table.find_preset(preset.architecture, path)
    return _build_published(row, weights, kwargs)


# ---------------------------------------------------------------------------------------
# Loading checkpoints by their own description.


def load_pyslowfast(
    path: str | os.PathLike,
    config: str | os.PathLike | dict[str, Any] | None = None,
    **overrides: Any,
) -> keras.Model:
    """Builds the Keras model of a PySlowFast checkpoint and loads all its weights.

    The architecture comes from the checkpoint's embedded config (the `cfg` YAML text that
    PySlowFast writes into `.pyth` files) or from `config`: a PySlowFast YAML file or text,
    a dict, or a preset name / architecture key such as `"slowfast_8x8_r50"` (needed for
    Caffe2 `.pkl` files, which carry no config). Loading is strict: a checkpoint tensor left
    unused or a Keras weight left unassigned is an error listing them. No PyTorch is needed
    and the file is read with restricted unpickling.

    Args:
        path: `.pyth` (PySlowFast output, zip or legacy format) or Caffe2 `.pkl`.
        config: optional config overriding the embedded one.
        **overrides: builder arguments, e.g. `include_preprocessing=False`.

    Returns:
        A `keras.Model` reproducing the reference's outputs (softmax for classifiers,
        sigmoid for AVA detectors, as `MODEL.HEAD_ACT` says).

    Example:
        >>> model = load_pyslowfast("SLOWFAST_8x8_R50.pkl", config="slowfast_8x8_r50")
        ... # doctest: +SKIP
    """
    state, info = checkpoint_to_pyslowfast_state(path)
    if config is None:
        config = info.get("cfg")
        if not config:
            raise ValueError(
                "This checkpoint carries no PySlowFast config (Caffe2 .pkl files never do): "
                "pass `config=` a PySlowFast YAML file or a preset name. "
                f"Received: path={str(path)!r}, config=None"
            )
    if isinstance(config, str) and _is_preset_key(config):
        preset = presets_table.get_preset(config)
        kind, kwargs = preset.kind, dict(preset.kwargs)
    else:
        kind, kwargs = builder_kwargs_from_config(config)
    kwargs.update(overrides)
    model = BUILDERS[kind](**kwargs)
    return transfer_state(model, state)


def _is_preset_key(value):
    try:
        presets_table.get_preset(value)
    except ValueError:
        return False
    return True


def _pytorchvideo_presets():
    out = {}
    for p in presets_table.PRESETS:
        if p.hub_name is not None:
            out.setdefault(p.hub_name, p)
    return out


def infer_pytorchvideo_kwargs(state, arch):
    """Builder arguments of PySlowFast-keyed PyTorchVideo tensors of hub architecture `arch`.

    Widths, the fusion kernel, the temporal kernels and the class count come from the
    tensor shapes; the rest (frames, alpha, depth, the head) from the preset whose
    `hub_name` is `arch`.

    Returns:
        `(preset, kwargs)`.
    """
    table = _pytorchvideo_presets()
    if arch not in table:
        raise ValueError(f"`arch` must be one of {sorted(table)}. Received: arch={arch!r}")
    preset = table[arch]
    kwargs = dict(preset.kwargs)

    def shape(key):
        if key not in state:
            raise CheckpointMismatchError(
                f"The checkpoint lacks {key}, needed for arch={arch!r}; is it a {arch} checkpoint?"
            )
        return np.asarray(state[key]).shape

    single = bool(kwargs.get("single_pathway"))
    pathways = 1 if single else 2
    two_pathways = "s1.pathway1_stem.conv.weight" in state
    if two_pathways == single:
        have, want = ("two", "one") if two_pathways else ("one", "two")
        raise CheckpointMismatchError(
            f"The checkpoint has {have} pathway(s) but arch={arch!r} has {want}: pass the hub "
            "name of the builder that wrote it (`create_resnet` checkpoints are Slow-only, "
            "e.g. 'slow_r50'; `create_slowfast` ones e.g. 'slowfast_r50')."
        )
    blocks = STAGE_DEPTHS[kwargs["depth"]]
    temporal = [[shape(f"s1.pathway{p}_stem.conv.weight")[2] for p in range(pathways)]]
    counts = []
    for s in range(4):
        stage_k, stage_n = [], []
        for p in range(pathways):
            ks = [
                shape(f"s{s + 2}.pathway{p}_res{i}.branch2.a.weight")[2] for i in range(blocks[s])
            ]
            k = ks[0]
            n = sum(1 for v in ks if v == k) if k > 1 else blocks[s]
            if ks != [k] * n + [1] * (blocks[s] - n):
                raise CheckpointMismatchError(
                    f"Unsupported temporal kernel pattern in res{s + 2}: {ks}"
                )
            stage_k.append(k)
            stage_n.append(n)
        temporal.append(stage_k)
        counts.append(stage_n)
    slow_w = shape("s1.pathway0_stem.conv.weight")[0]
    kwargs.update(width_per_group=slow_w, temporal_kernels=temporal, num_block_temp_kernel=counts)
    if not single:
        fast_w = shape("s1.pathway1_stem.conv.weight")[0]
        fuse = shape("s1_fuse.conv_f2s.weight")
        kwargs.update(
            beta_inv=slow_w // fast_w,
            fusion_kernel_size=fuse[2],
            fusion_conv_channel_ratio=fuse[0] // fast_w,
        )
    if "head.projection.weight" in state:
        kwargs["classes"] = shape("head.projection.weight")[0]
    if preset.kind == presets_table.CLASSIFIER:
        # PyTorchVideo's hub classifiers have no final activation: the output is the logits
        # averaged over the head's positions.
        kwargs["classifier_activation"] = None
    return preset, kwargs


def load_pytorchvideo(path: str | os.PathLike, arch: str, **overrides: Any) -> keras.Model:
    """Builds the Keras model of a PyTorchVideo checkpoint and loads its weights.

    Widths, the fusion kernel, temporal kernels and the class count are read from the
    tensor shapes; `arch` (PyTorchVideo's hub name) supplies what shapes cannot tell
    (frames, alpha, depth, head). Keys prefixed with `model.` (PySlowFast-hosted copies) are
    accepted. By default the model reproduces the reference: raw logits for the hub
    classifiers (no softmax), sigmoid scores for the detector; pass
    `classifier_activation="softmax"` to get probabilities.

    Args:
        path: the `.pyth` file (`{"model_state": ...}`).
        arch: a PyTorchVideo hub name: one of the `hub_name` values of the presets, e.g.
            `"slowfast_r50"`, `"slowfast_r101"`, `"slowfast_16x8_r101_50_50"`,
            `"slowfast_r50_detection"` (`create_slowfast*` checkpoints), `"slow_r50"` or
            `"slow_r50_detection"` (`create_resnet*` checkpoints). A table-only checkpoint
            loads with the hub name of its builder and frames (e.g. Slow 4x16 Kinetics:
            `"slow_r50"` with `num_frames=4`), or through :func:`from_preset` with
            `checkpoint=`.
        **overrides: builder arguments, e.g. `include_preprocessing=False`.

    Returns:
        A `keras.Model`.

    Example:
        >>> model = load_pytorchvideo("SLOWFAST_8x8_R50.pyth", arch="slowfast_r50")
        ... # doctest: +SKIP
    """
    table = _pytorchvideo_presets()
    if arch not in table:
        raise ValueError(f"`arch` must be one of {sorted(table)}. Received: arch={arch!r}")
    tensors, info = read_checkpoint_tensors(path)
    if info.get("format") == "caffe2":
        raise ValueError(
            "This is a Caffe2 .pkl file, not a PyTorchVideo checkpoint: use load_pyslowfast. "
            f"Received: path={str(path)!r}"
        )
    state = pytorchvideo_state_to_pyslowfast(name_maps.strip_prefix(tensors, "model."))
    preset, kwargs = infer_pytorchvideo_kwargs(state, arch)
    kwargs.update(overrides)
    model = BUILDERS[preset.kind](**kwargs)
    return transfer_state(model, state)


# ---------------------------------------------------------------------------------------
# Download, conversion and the cache.


def base_url():
    """The download base URL: `$KERAS_SLOWFAST_MIRROR` or `https://dl.fbaipublicfiles.com`."""
    return (os.environ.get(MIRROR_ENV) or presets_table.BASE_URL).rstrip("/")


def url_for(preset):
    """The URL a preset's checkpoint is downloaded from (honouring the mirror)."""
    return f"{base_url()}/{presets_table.get_preset(preset).checkpoint.path}"


def _configured_cache_dir():
    home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return os.path.join(os.path.expanduser(home), CACHE_SUBDIR)


def _fallback_cache_dir():
    return os.path.join(tempfile.gettempdir(), ".keras", CACHE_SUBDIR)


def _writable(folder):
    """Whether `folder` can be written (or created: its nearest existing parent can)."""
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def cache_dir():
    """The folder converted weights are written to: `<KERAS_HOME>/models/keras_slowfast`.

    As :func:`keras.utils.get_file` does, a `KERAS_HOME` (default `~/.keras`) that cannot
    be written falls back to `<tmp>/.keras` (`tempfile.gettempdir()`); weights already
    converted in the read-only folder are still read from there.

    Example:
        >>> cache_dir().endswith(os.path.join("models", "keras_slowfast"))
        True
    """
    folder = _configured_cache_dir()
    return folder if _writable(folder) else _fallback_cache_dir()


def cache_paths(preset):
    """`(weights_path, info_path)` of the converted weights of a preset in :func:`cache_dir`.

    Example:
        >>> os.path.basename(cache_paths("slow_8x8_r50")[0])
        'slow_8x8_r50_kinetics400.weights.h5'
    """
    return _paths_in(cache_dir(), presets_table.get_preset(preset).name)


def _paths_in(folder, name):
    stem = os.path.join(folder, name)
    return f"{stem}.weights.h5", f"{stem}.json"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:  # hashlib.file_digest needs Python 3.11
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lock_timeout():
    value = os.environ.get(LOCK_TIMEOUT_ENV)
    if not value:
        return DEFAULT_LOCK_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ValueError(
            f"{LOCK_TIMEOUT_ENV} must be a number of seconds >= 0. "
            f"Received: {LOCK_TIMEOUT_ENV}={value!r}"
        )
    return seconds


def _cache_problem(weights_path, info_path):
    """`(info, None)` for a valid cache entry, `(None, reason)` for a damaged one, and
    `(None, None)` for a plain miss (nothing there, or another cache version)."""
    if not os.path.isfile(info_path):
        return None, None
    try:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        return None, f"its description {info_path} is unreadable ({e})"
    if not isinstance(info, dict):
        return None, f"its description {info_path} is not a JSON object"
    if info.get("cache_version") != CACHE_VERSION:
        return None, None
    if not os.path.isfile(weights_path):
        return None, f"{weights_path} is missing"
    size, digest = info.get("weights_bytes"), info.get("weights_sha256")
    actual = os.path.getsize(weights_path)
    if size is not None and actual != size:
        return None, f"{weights_path} has {actual} bytes instead of {size} (truncated?)"
    if digest is not None:
        try:
            actual_digest = _sha256(weights_path)
        except OSError as e:
            return None, f"{weights_path} is unreadable ({e})"
        if actual_digest != digest:
            return None, f"the sha256 of {weights_path} is {actual_digest}, not {digest}"
    return info, None


def _read_cache(preset, warn=True):
    """The valid cached `(weights_path, info)` of `preset`, or None.

    Looks in the configured folder, then in the fallback when that one is read-only. A
    damaged entry (unreadable description, truncated or corrupt weights: size and sha256
    are checked when recorded) is a miss, with a warning when `warn`.
    """
    name = presets_table.get_preset(preset).name
    folders = [_configured_cache_dir()]
    if cache_dir() != folders[0]:
        folders.append(cache_dir())
    for folder in folders:
        weights_path, info_path = _paths_in(folder, name)
        info, problem = _cache_problem(weights_path, info_path)
        if info is not None:
            return weights_path, info
        if problem is not None and warn:
            warnings.warn(
                f"The cached weights of {name} are damaged: {problem}. They are converted again.",
                stacklevel=3,
            )
    return None


def _remove_leftovers(folder, name):
    """Removes what an interrupted load of `name` left in `folder` (under its lock)."""
    prefixes = tuple(f".{name}.{kind}" for kind in ("download-", "weights.h5.", "json."))
    for entry in os.listdir(folder):
        if entry.startswith(prefixes):
            path = os.path.join(folder, entry)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)


def verify_zip_members(path):
    """Reads every member of a zip checkpoint and checks its CRC-32 (no-op for non-zips).

    Raises:
        ValueError: naming the first member whose data does not match its CRC, or the
            file when the archive itself is damaged.

    Example:
        >>> verify_zip_members("SLOWFAST_8x8_R101.pyth")  # doctest: +SKIP
    """
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"The zip archive is damaged ({e}). Received: path={path!r}") from e
    if bad is not None:
        raise ValueError(f"The zip member {bad!r} fails its CRC-32 check. Received: path={path!r}")


def convert_checkpoint(
    checkpoint: str | os.PathLike, output: str | os.PathLike, preset: str, **kwargs: Any
) -> tuple[keras.Model, dict[str, Any]]:
    """Converts a PySlowFast / PyTorchVideo / Caffe2 checkpoint to a Keras `.weights.h5`.

    The Keras model of `preset` is built with the width and class count found in the
    checkpoint (unless given in `kwargs`), every tensor is transferred strictly, and the
    weights are written to `output` atomically.

    Args:
        checkpoint: path of a `.pyth` (PySlowFast or PyTorchVideo) or Caffe2 `.pkl` file.
        output: the `.weights.h5` path to write.
        preset: a preset name or architecture key, e.g. `"slowfast_8x8_r50"`.
        **kwargs: further builder arguments (they must match the checkpoint).

    Returns:
        `(model, summary)`: the converted Keras model and a dict with `format`, `preset`,
        `architecture`, `tensors` (checkpoint tensors used), `params` (trainable
        parameters, PyTorch's count), `width_per_group` and `classes`.

    Raises:
        CheckpointMismatchError: when the checkpoint does not match the preset.

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
    p = presets_table.get_preset(preset)
    path = _checked_path(checkpoint, "checkpoint")
    state, info = checkpoint_to_pyslowfast_state(path)
    width, classes = checkpoint_head(state)
    kwargs.pop("weights", None)
    kwargs.setdefault("width_per_group", width)
    if classes is None:
        kwargs["include_top"] = False
    else:
        kwargs.setdefault("classes", classes)
    model = transfer_state(_build(p, kwargs), state)
    save_weights_atomically(model, output)
    used = sum(1 for k in state if not k.endswith(".num_batches_tracked"))
    summary = dict(
        format=info.get("format"),
        preset=p.name,
        architecture=p.architecture,
        tensors=used,
        # PyTorch's convention (and the published counts): BatchNorm statistics excluded.
        params=int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        width_per_group=int(kwargs["width_per_group"]),
        classes=None if classes is None else int(kwargs["classes"]),
    )
    return model, summary


def check_weights_file(
    model: keras.Model, path: str | os.PathLike, preset: str, **kwargs: Any
) -> dict[str, Any]:
    """Plumbing check that a written `.weights.h5` reproduces `model`: reload and compare.

    A fresh model of `preset` (built with `kwargs`) loads `path`; both models score the
    same seeded random uint8 clip (224x224 for classifiers, 64x64 with one box for
    detectors). It proves the file was written and read back, not that the conversion is
    right (the golden-fixture tests do that).

    Returns:
        A dict with `output_shape`, `max_abs_diff` between the two models, and `finite`.

    Example:
        >>> check_weights_file(model, "w.weights.h5", "slowfast_8x8_r50")  # doctest: +SKIP
        {'output_shape': (1, 400), 'max_abs_diff': 0.0, 'finite': True}
    """
    p = presets_table.get_preset(preset)
    kwargs.pop("weights", None)
    reloaded = _build(p, kwargs)
    reloaded.load_weights(path)
    detector = p.kind == presets_table.DETECTOR
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


def fetch(preset: str) -> tuple[str, dict[str, Any]]:
    """Returns the converted published weights of a preset, downloading on first use.

    A cached file is used when its size and sha256 match those recorded in its
    description; a damaged entry is converted again (with a warning). The first load of a
    preset holds the lock `<cache>/<preset>.lock`, so processes loading the same weights at
    once download and convert them once: the others wait (at most
    `$KERAS_SLOWFAST_LOCK_TIMEOUT` seconds, default 1800) and then read the cache. What a
    killed load leaves behind is removed by the next one.

    Args:
        preset: a preset name with a checkpoint (or its architecture key).

    Returns:
        `(weights_path, info)`: the cached `.weights.h5` and its description (`url`,
        `format`, `tensors`, `params`, `width_per_group`, `classes`, `checkpoint_sha256`,
        `weights_sha256`, `weights_bytes`, ...).

    Raises:
        ValueError: for an unknown preset or one without published weights.
        WeightsDownloadError: when the download fails, fails a check (the sha256 where the
            table records one) or does not convert, or when another process holds the lock
            past the timeout; nothing is cached then.

    Example:
        >>> path, info = fetch("slowfast_8x8_r50_kinetics400")  # doctest: +SKIP
        >>> info["classes"]  # doctest: +SKIP
        400
    """
    p = presets_table.get_preset(preset)
    if p.checkpoint is None:
        raise ValueError(f"No weights are published for {p.name}. Received: preset={preset!r}")
    cached = _read_cache(p.name)
    if cached is not None:
        return cached
    folder = cache_dir()
    if folder != _configured_cache_dir():
        warnings.warn(
            f"The cache folder {_configured_cache_dir()} cannot be written: the weights of "
            f"{p.name} are cached in {folder} instead.",
            stacklevel=2,
        )
    os.makedirs(folder, exist_ok=True)
    lock_path = os.path.join(folder, f"{p.name}.lock")
    timeout = _lock_timeout()
    try:
        with file_lock(lock_path, timeout=timeout):
            # Another process may have converted them while this one waited.
            cached = _read_cache(p.name, warn=False)
            if cached is not None:
                return cached
            return _download_and_convert(p, folder)
    except LockTimeout as e:
        raise WeightsDownloadError(
            f"Waited {timeout:g} s for another process to download and convert the weights "
            f"of {p.name} (it holds {lock_path}). Try again later, or raise "
            f"{LOCK_TIMEOUT_ENV}."
        ) from e


def _download(url, path):
    """Downloads `url` to `path`, drawing a progress bar in megabytes on stderr.

    Raises:
        urllib.error.URLError: when the server cannot be reached or answers with an error
            (`HTTPError`), or sends fewer bytes than announced (`ContentTooShortError`).
    """
    bar = None
    done = 0

    def report(blocks, block_size, total_size):
        nonlocal bar, done
        if bar is None:
            total = total_size / 1e6 if total_size > 0 else None
            bar = ProgressBar(total, f"downloading {os.path.basename(path)}", unit="MB")
        now = blocks * block_size
        if total_size > 0:
            now = min(now, total_size)
        bar.update((now - done) / 1e6)
        done = now

    try:
        urllib.request.urlretrieve(url, path, report)
    finally:
        if bar is not None:
            bar.close()


def _download_failure(error):
    """A short reason for a failed download."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError) and not isinstance(
        error, urllib.error.ContentTooShortError
    ):
        return str(error.reason)
    return str(error)


def _download_and_convert(p, folder):
    """Downloads, checks and converts the checkpoint of `p` into `folder` (lock held)."""
    _remove_leftovers(folder, p.name)
    weights_path, info_path = _paths_in(folder, p.name)
    for stale in (info_path, weights_path):  # the description first: never a valid pair
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
    url = url_for(p.name)
    expected = p.checkpoint.sha256
    # A private download folder: a partial file is never seen under the cache's names and
    # is removed whatever happens (or, after a kill, by the next load).
    tmp_dir = tempfile.mkdtemp(prefix=f".{p.name}.download-", dir=folder)
    try:
        raw = os.path.join(tmp_dir, os.path.basename(p.checkpoint.path))
        try:
            _download(url, raw)
        except (OSError, ValueError) as e:
            reason = _download_failure(e)
            raise WeightsDownloadError(
                f"Downloading the {p.weights} weights of {p.architecture} from {url} failed "
                f"({reason}). Check the network or set {MIRROR_ENV} to a mirror, or pass the "
                "path of a downloaded checkpoint as `weights`.",
                url=url,
                reason=reason,
            ) from e
        actual = _sha256(raw)
        if expected is not None and actual != expected:
            raise WeightsDownloadError(
                f"The file downloaded from {url} does not have the sha256 recorded for "
                f"{p.name} ({expected}; it has {actual}): a corrupt or substituted download. "
                "Nothing was cached."
            )
        try:
            checkpoint_sha256 = actual
            verify_zip_members(raw)
            _, summary = convert_checkpoint(raw, weights_path, p.name)
            weights_sha256 = _sha256(weights_path)
            weights_bytes = os.path.getsize(weights_path)
        except Exception as e:
            if os.path.exists(weights_path):
                os.remove(weights_path)
            raise WeightsDownloadError(
                f"The file downloaded from {url} is not a valid {p.checkpoint.format} "
                f"checkpoint of {p.architecture} (truncated or corrupt download?): {e}"
            ) from e
        info = dict(
            summary,
            name=p.weights,
            url=url,
            dataset=p.dataset,
            metric=p.metric,
            value=p.value,
            cache_version=CACHE_VERSION,
            checkpoint_sha256=checkpoint_sha256,
            weights_sha256=weights_sha256,
            weights_bytes=weights_bytes,
        )
        # The JSON is written last: the cache is valid only once both files exist.
        write_text_atomically(info_path, json.dumps(info, indent=1, sort_keys=True))
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return weights_path, info
