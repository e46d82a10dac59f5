"""Multi-view testing: combine the scores of several views of each video, then top-k.

The Kinetics protocol takes 10 temporal clips x 3 spatial crops per video. PySlowFast sums
the per-view softmax scores of each video (its default ``ENSEMBLE_METHOD: sum``; ``max`` is
the other choice) and reports top-1 / top-5 accuracy of the combined scores.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from keras_slowfast._checks import check_positive_int

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["MultiViewAggregator", "MultiViewResult", "topk_accuracy"]

_ENSEMBLE_METHODS = ("sum", "max")
_ON_MISMATCH = ("warn", "raise", "ignore")


def _to_numpy(x, name):
    if x is None:
        return None
    if hasattr(x, "numpy") and callable(x.numpy):
        x = x.numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # noqa: BLE001 - any failure means the input is unusable
        raise TypeError(
            f"`{name}` must be array-like (NumPy array, tensor or list). Received: "
            f"{name}={type(x).__name__} ({e})"
        ) from None


def _labels_1d(labels, num_classes, name="labels"):
    """Class ids ``(n,)`` from ids or one-hot ``(n, num_classes)`` labels."""
    if labels.ndim == 2 and (num_classes is None or labels.shape[1] == num_classes):
        labels = np.argmax(labels, axis=-1)
    if labels.ndim != 1:
        raise ValueError(
            f"`{name}` must be class ids (n,) or one-hot (n, num_classes). "
            f"Received: {name} shape={labels.shape}"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        as_int = labels.astype(np.int64)
        if not np.array_equal(as_int, labels):
            raise ValueError(
                f"`{name}` must hold integer class ids. Received: {name}={labels[:8].tolist()}"
            )
        labels = as_int
    labels = labels.astype(np.int64)
    out_of_range = labels.size and (labels.min() < 0 or labels.max() >= (num_classes or 0))
    if num_classes is not None and out_of_range:
        raise ValueError(
            f"`{name}` must lie in [0, {num_classes}). Received: {name} with min "
            f"{labels.min()} and max {labels.max()}"
        )
    return labels


def topk_accuracy(
    scores: npt.ArrayLike, labels: npt.ArrayLike, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Fraction of samples whose label is among the ``k`` highest scores, for each ``k``.

    Ties are broken towards the lower class index (a stable sort of the negated scores), so
    the result does not depend on the platform.

    Args:
        scores: ``(n, num_classes)`` scores (probabilities, summed probabilities or logits).
        labels: ``(n,)`` integer class ids, or ``(n, num_classes)`` one-hot labels.
        ks: The values of ``k`` (each in ``[1, num_classes]``).

    Returns:
        A dict ``{"top1": float, "top5": float, ...}`` of accuracies in ``[0, 1]``.

    Example:
        >>> topk_accuracy([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], [2, 0], ks=(1, 2))
        {'top1': 0.5, 'top2': 1.0}
    """
    s = _to_numpy(scores, "scores")
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(
            "`scores` must have shape (n, num_classes) with n > 0. "
            f"Received: scores shape={s.shape}"
        )
    y = _labels_1d(_to_numpy(labels, "labels"), s.shape[1])
    if y.shape[0] != s.shape[0]:
        raise ValueError(
            f"`labels` must have one entry per row of `scores` ({s.shape[0]}). "
            f"Received: labels shape={y.shape}"
        )
    if isinstance(ks, int | np.integer):
        ks = (ks,)
    ks = tuple(ks)
    for k in ks:
        if not isinstance(k, int | np.integer) or not 1 <= k <= s.shape[1]:
            raise ValueError(
                f"Each k must be an integer in [1, num_classes={s.shape[1]}]. Received: ks={ks}"
            )
    if not ks:
        raise ValueError(f"`ks` must not be empty. Received: ks={ks}")
    order = np.argsort(-s.astype(np.float64), axis=1, kind="stable")
    rank = np.argmax(order == y[:, None], axis=1)
    return {f"top{int(k)}": float(np.mean(rank < k)) for k in ks}


class MultiViewResult(NamedTuple):
    """Aggregated multi-view predictions, one row per video in increasing index order.

    Attributes:
        video_indices: ``(V,)`` the video indices that received views.
        scores: ``(V, num_classes)`` combined scores (float64).
        labels: ``(V,)`` class ids, or None when no labels were given.
        num_views: ``(V,)`` number of views received per video.

    Example:
        >>> agg = MultiViewAggregator(num_views=2)
        >>> agg.update([5, 3, 3, 5], [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]],
        ...            labels=[0, 1, 1, 0])
        >>> result = agg.result()
        >>> result.video_indices, result.labels, result.num_views
        (array([3, 5]), array([1, 0]), array([2, 2]))
        >>> result.scores.round(3)
        array([[0.6, 1.4],
               [1.6, 0.4]])
    """

    video_indices: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None
    num_views: np.ndarray


class MultiViewAggregator:
    """Accumulates per-view scores by video and combines them (sum or max).

    Feed batches of views with `update`; each row of a batch is one view of the video named
    by ``video_indices``. Views of one video may arrive in any order and any batch.

    Args:
        num_views: Expected number of views per video (30 for 10 temporal x 3 spatial), or
            None to only require that all videos received the same number.
        num_videos: Expected number of videos, indexed ``0 .. num_videos - 1``, or None.
        ensemble_method: ``"sum"`` (PySlowFast default) or ``"max"``.
        from_logits: If True, a softmax is applied to each view's scores before combining
            (use this when the model outputs logits; PySlowFast models output softmax at
            test time already).
        on_mismatch: What `result` does when view counts differ from what is expected, or
            videos are missing: ``"warn"``, ``"raise"`` (ValueError) or ``"ignore"``.

    Example:
        >>> agg = MultiViewAggregator(num_views=2)
        >>> agg.update([0, 1, 0, 1], [[0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6]],
        ...            labels=[1, 1, 1, 1])
        >>> agg.result().scores
        array([[0.8, 1.2],
               [0.7, 1.3]])
        >>> agg.topk_accuracy(ks=(1,))
        {'top1': 1.0}
    """

    def __init__(
        self,
        num_views: int | None = None,
        num_videos: int | None = None,
        ensemble_method: str = "sum",
        from_logits: bool = False,
        on_mismatch: str = "warn",
    ) -> None:
        check_positive_int("num_views", num_views, allow_none=True)
        check_positive_int("num_videos", num_videos, allow_none=True)
        if ensemble_method not in _ENSEMBLE_METHODS:
            raise ValueError(
                f"`ensemble_method` must be one of {_ENSEMBLE_METHODS}. "
                f"Received: ensemble_method={ensemble_method!r}"
            )
        if on_mismatch not in _ON_MISMATCH:
            raise ValueError(
                f"`on_mismatch` must be one of {_ON_MISMATCH}. "
                f"Received: on_mismatch={on_mismatch!r}"
            )
        self.num_views = num_views
        self.num_videos = num_videos
        self.ensemble_method = ensemble_method
        self.from_logits = bool(from_logits)
        self.on_mismatch = on_mismatch
        self.reset()

    def reset(self) -> None:
        """Forgets every view received so far."""
        self._scores = {}
        self._counts = {}
        self._labels = {}
        self._num_classes = None
        self._has_labels = None

    def update(
        self,
        video_indices: npt.ArrayLike,
        scores: npt.ArrayLike,
        labels: npt.ArrayLike | None = None,
    ) -> None:
        """Adds a batch of views.

        Args:
            video_indices: ``(n,)`` integer video index of each view.
            scores: ``(n, num_classes)`` per-view scores (softmax probabilities, or logits
                with ``from_logits=True``).
            labels: Optional ``(n,)`` class ids or ``(n, num_classes)`` one-hot labels.
                Every view of a video must carry the same label. Give labels in every
                batch or in none.
        """
        idx = _to_numpy(video_indices, "video_indices")
        s = _to_numpy(scores, "scores")
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise ValueError(
                "`video_indices` must be a one-dimensional array of integers. "
                f"Received: video_indices shape={idx.shape} dtype={idx.dtype}"
            )
        if idx.size and idx.min() < 0:
            raise ValueError(
                f"`video_indices` must be non-negative. Received: video_indices min={idx.min()}"
            )
        if self.num_videos is not None and idx.size and idx.max() >= self.num_videos:
            raise ValueError(
                f"`video_indices` must be below num_videos={self.num_videos}. "
                f"Received: video_indices max={idx.max()}"
            )
        if s.ndim != 2 or s.shape[0] != idx.shape[0] or s.shape[1] == 0:
            raise ValueError(
                f"`scores` must have shape ({idx.shape[0]}, num_classes). "
                f"Received: scores shape={s.shape}"
            )
        if self._num_classes is not None and s.shape[1] != self._num_classes:
            raise ValueError(
                f"`scores` must keep {self._num_classes} classes from batch to batch. "
                f"Received: scores shape={s.shape}"
            )
        s = s.astype(np.float64)
        if not np.isfinite(s).all():
            raise ValueError("`scores` must be finite. Received: scores with nan or inf values")
        if self.from_logits:
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
        has_labels = labels is not None
        if self._has_labels is not None and has_labels != self._has_labels:
            raise ValueError(
                "`labels` must be given with every batch or with none. "
                f"Received: labels={'None' if labels is None else 'an array'} after batches "
                f"{'with' if self._has_labels else 'without'} labels"
            )
        y = None
        if has_labels:
            y = _labels_1d(_to_numpy(labels, "labels"), s.shape[1])
            if y.shape[0] != idx.shape[0]:
                raise ValueError(
                    f"`labels` must have one entry per view ({idx.shape[0]}). "
                    f"Received: labels shape={y.shape}"
                )
        for i, v in enumerate(idx.tolist()):
            if has_labels:
                old = self._labels.get(v)
                if old is not None and old != int(y[i]):
                    raise ValueError(
                        f"All views of a video must have the same label. Received: labels "
                        f"{old} and {int(y[i])} for video_indices={v}"
                    )
            if v in self._scores:
                if self.ensemble_method == "sum":
                    self._scores[v] += s[i]
                else:
                    np.maximum(self._scores[v], s[i], out=self._scores[v])
                self._counts[v] += 1
            else:
                self._scores[v] = s[i].copy()
                self._counts[v] = 1
            if has_labels:
                self._labels[v] = int(y[i])
        self._num_classes = s.shape[1]
        self._has_labels = has_labels

    def _check_counts(self, counts, videos):
        problems = []
        if self.num_videos is not None and len(videos) != self.num_videos:
            missing = sorted(set(range(self.num_videos)) - set(videos.tolist()))
            problems.append(
                f"{len(missing)} of {self.num_videos} videos got no view (e.g. {missing[:10]})"
            )
        expected = self.num_views
        if expected is None:
            values, freq = np.unique(counts, return_counts=True)
            if values.size > 1:
                spread = ", ".join(f"{f} with {v}" for v, f in zip(values, freq))
                problems.append(f"videos got different numbers of views ({spread})")
        elif (counts != expected).any():
            wrong = videos[counts != expected]
            problems.append(
                f"{wrong.size} videos did not get {expected} views (e.g. video "
                f"{int(wrong[0])} got {int(counts[videos == wrong[0]][0])})"
            )
        if problems and self.on_mismatch != "ignore":
            message = "Multi-view testing is incomplete: " + "; ".join(problems) + "."
            if self.on_mismatch == "raise":
                raise ValueError(message + f" Received: num_views={expected}")
            warnings.warn(message, stacklevel=3)

    def result(self) -> MultiViewResult:
        """Returns the combined scores per video.

        Returns:
            A `MultiViewResult` ``(video_indices, scores, labels, num_views)``, rows sorted
            by video index. Warns or raises (see ``on_mismatch``) when view counts differ.
        """
        if not self._scores:
            raise ValueError("No views were added: call `update` first. Received: 0 views")
        videos = np.array(sorted(self._scores), dtype=np.int64)
        counts = np.array([self._counts[v] for v in videos.tolist()], dtype=np.int64)
        self._check_counts(counts, videos)
        scores = np.stack([self._scores[v] for v in videos.tolist()])
        labels = None
        if self._has_labels:
            labels = np.array([self._labels[v] for v in videos.tolist()], dtype=np.int64)
        return MultiViewResult(videos, scores, labels, counts)

    def topk_accuracy(self, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
        """Top-k accuracy of the combined scores (see the module function `topk_accuracy`).

        Args:
            ks: The values of ``k``.

        Returns:
            A dict ``{"top1": float, ...}``.
        """
        res = self.result()
        if res.labels is None:
            raise ValueError(
                "Top-k accuracy needs labels: pass `labels` to `update`. Received: labels=None"
            )
        return topk_accuracy(res.scores, res.labels, ks=ks)
