"""Tests of multi-view score aggregation and top-k accuracy on synthetic data."""

import warnings

import numpy as np
import pytest

from keras_slowfast.evaluation import MultiViewAggregator, MultiViewResult, topk_accuracy


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _views(num_videos=7, num_views=30, num_classes=12, seed=0):
    """Per-view probabilities of every video, shuffled, with their video index and label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=num_videos)
    video = np.repeat(np.arange(num_videos), num_views)
    probs = _softmax(rng.normal(size=(video.size, num_classes)))
    order = rng.permutation(video.size)
    return video[order], probs[order], labels[video[order]], labels


def _feed(agg, video, probs, labels=None, batch=16):
    for start in range(0, video.size, batch):
        sl = slice(start, start + batch)
        agg.update(video[sl], probs[sl], None if labels is None else labels[sl])


def test_sum_of_views_per_video():
    video, probs, view_labels, labels = _views()
    agg = MultiViewAggregator(num_views=30, num_videos=7)
    _feed(agg, video, probs, view_labels)
    res = agg.result()
    assert isinstance(res, MultiViewResult)
    expected = np.zeros((7, 12))
    for v, p in zip(video, probs):
        expected[v] += p
    np.testing.assert_array_equal(res.video_indices, np.arange(7))
    np.testing.assert_allclose(res.scores, expected, rtol=1e-12)
    np.testing.assert_array_equal(res.labels, labels)
    np.testing.assert_array_equal(res.num_views, np.full(7, 30))
    # Each video's summed probabilities add up to its number of views.
    np.testing.assert_allclose(res.scores.sum(axis=1), 30.0)


def test_max_ensemble():
    video, probs, _, _ = _views(num_videos=3, num_views=4)
    agg = MultiViewAggregator(ensemble_method="max")
    _feed(agg, video, probs, batch=5)
    expected = np.stack([probs[video == v].max(axis=0) for v in range(3)])
    np.testing.assert_array_equal(agg.result().scores, expected)
    assert agg.result().labels is None


def test_from_logits_applies_softmax_per_view():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 5)) * 3
    video = np.array([0, 1, 0, 1, 0, 1])
    agg = MultiViewAggregator(from_logits=True)
    agg.update(video, logits)
    expected = np.stack([_softmax(logits[video == v]).sum(axis=0) for v in (0, 1)])
    np.testing.assert_allclose(agg.result().scores, expected, rtol=1e-12)


def test_summing_views_fixes_single_view_mistakes():
    # Every view ranks a wrong class first, with varying wrong classes; the sum ranks the
    # true class first, as the protocol intends.
    num_classes, label = 4, 2
    views = []
    for wrong in (0, 1, 3):
        p = np.full(num_classes, 0.1)
        p[wrong], p[label] = 0.45, 0.35
        views.append(p)
    agg = MultiViewAggregator(num_views=3)
    agg.update([5, 5, 5], np.stack(views), [label] * 3)
    assert topk_accuracy(np.stack(views), [label] * 3, ks=(1,)) == {"top1": 0.0}
    assert agg.topk_accuracy(ks=(1, 2)) == {"top1": 1.0, "top2": 1.0}
    np.testing.assert_array_equal(agg.result().video_indices, [5])


def test_topk_accuracy_known_ranks():
    # Video i has its label at rank i (0 = highest score).
    num_classes = 8
    rng = np.random.default_rng(2)
    scores, labels = [], []
    for rank in range(num_classes):
        s = np.sort(rng.random(num_classes))[::-1] + np.arange(num_classes)[::-1]
        order = rng.permutation(num_classes)  # class order[j] gets the j-th highest score
        row = np.empty(num_classes)
        row[order] = s
        scores.append(row)
        labels.append(order[rank])
    acc = topk_accuracy(np.stack(scores), np.array(labels), ks=(1, 3, 5, 8))
    assert acc == {"top1": 1 / 8, "top3": 3 / 8, "top5": 5 / 8, "top8": 1.0}
    one_hot = np.eye(num_classes)[labels]
    assert topk_accuracy(np.stack(scores), one_hot, ks=(1, 3)) == {"top1": 1 / 8, "top3": 3 / 8}
    assert topk_accuracy(np.stack(scores), labels, ks=3) == {"top3": 3 / 8}


def test_topk_ties_prefer_lower_class_index():
    scores = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    assert topk_accuracy(scores, [0, 1], ks=(1, 2)) == {"top1": 0.5, "top2": 1.0}


def test_aggregator_topk_matches_function_on_summed_scores():
    video, probs, view_labels, labels = _views(num_videos=20, num_views=6, num_classes=10, seed=4)
    agg = MultiViewAggregator(num_views=6)
    _feed(agg, video, probs, view_labels, batch=7)
    summed = np.zeros((20, 10))
    np.add.at(summed, video, probs)
    expected = {}
    for k in (1, 5):
        top = np.argsort(-summed, axis=1)[:, :k]
        expected[f"top{k}"] = float(np.mean([labels[i] in top[i] for i in range(20)]))
    assert agg.topk_accuracy() == expected


def test_view_count_mismatch_warn_raise_ignore():
    video = np.array([0, 0, 1, 1, 1])
    probs = np.full((5, 3), 1 / 3)
    agg = MultiViewAggregator()
    agg.update(video, probs)
    with pytest.warns(UserWarning, match=r"different numbers of views \(1 with 2, 1 with 3\)"):
        agg.result()
    agg = MultiViewAggregator(num_views=2, on_mismatch="raise")
    agg.update(video, probs)
    with pytest.raises(ValueError, match="did not get 2 views.*Received: num_views=2"):
        agg.result()
    agg = MultiViewAggregator(num_views=2, on_mismatch="ignore")
    agg.update(video, probs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(agg.result().num_views, [2, 3])


def test_missing_videos_are_reported():
    agg = MultiViewAggregator(num_views=1, num_videos=3, on_mismatch="raise")
    agg.update([0, 2], np.eye(2, 3))
    with pytest.raises(ValueError, match=r"1 of 3 videos got no view \(e.g. \[1\]\)"):
        agg.result()


def test_complete_views_do_not_warn():
    video, probs, view_labels, _ = _views(num_videos=4, num_views=3)
    agg = MultiViewAggregator(num_views=3, num_videos=4)
    _feed(agg, video, probs, view_labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agg.result()


def test_reset_forgets_views():
    agg = MultiViewAggregator()
    agg.update([0], [[0.2, 0.8]], [1])
    agg.reset()
    agg.update([1], [[0.7, 0.3]])
    res = agg.result()
    np.testing.assert_array_equal(res.video_indices, [1])
    assert res.labels is None


def test_tensorflow_tensors_are_accepted():
    tf = pytest.importorskip("tensorflow")
    agg = MultiViewAggregator(num_views=2)
    agg.update(
        tf.constant([0, 1, 0, 1]),
        tf.constant([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]], dtype=tf.float32),
        tf.constant([0, 1, 0, 1]),
    )
    np.testing.assert_allclose(agg.result().scores, [[1.6, 0.4], [0.6, 1.4]], rtol=1e-6)
    assert agg.topk_accuracy(ks=(1,)) == {"top1": 1.0}
    acc = topk_accuracy(tf.constant([[0.1, 0.9]]), tf.constant([1]), ks=(1,))
    assert acc == {"top1": 1.0}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ensemble_method": "mean"}, "Received: ensemble_method='mean'"),
        ({"num_views": 0}, "Received: num_views=0"),
        ({"num_videos": 2.5}, "Received: num_videos=2.5"),
        ({"on_mismatch": "log"}, "Received: on_mismatch='log'"),
    ],
)
def test_constructor_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiViewAggregator(**kwargs)


def test_update_bad_inputs():
    agg = MultiViewAggregator(num_videos=4)
    with pytest.raises(ValueError, match="Received: video_indices shape"):
        agg.update([0.5], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="Received: video_indices min=-1"):
        agg.update([-1], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="Received: video_indices max=4"):
        agg.update([4], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="Received: scores shape=\\(2,\\)"):
        agg.update([0, 1], [1.0, 0.0])
    with pytest.raises(ValueError, match="nan or inf"):
        agg.update([0], [[np.nan, 0.0]])
    with pytest.raises(ValueError, match="Received: labels shape"):
        agg.update([0, 1], [[1.0, 0.0], [0.0, 1.0]], [0])
    with pytest.raises(ValueError, match="must lie in \\[0, 2\\)"):
        agg.update([0], [[1.0, 0.0]], [2])
    agg.update([0], [[1.0, 0.0]], [0])
    with pytest.raises(ValueError, match="keep 2 classes"):
        agg.update([1], [[1.0, 0.0, 0.0]], [0])
    with pytest.raises(ValueError, match="same label.*Received: labels 0 and 1"):
        agg.update([0], [[1.0, 0.0]], [1])
    with pytest.raises(ValueError, match="every batch or with none"):
        agg.update([1], [[1.0, 0.0]])


def test_result_and_topk_need_views_and_labels():
    agg = MultiViewAggregator()
    with pytest.raises(ValueError, match="No views"):
        agg.result()
    agg.update([0], [[0.3, 0.7]])
    with pytest.raises(ValueError, match="Received: labels=None"):
        agg.topk_accuracy()


def test_topk_accuracy_bad_inputs():
    scores = np.eye(3)
    with pytest.raises(ValueError, match="Received: ks=\\(4,\\)"):
        topk_accuracy(scores, [0, 1, 2], ks=(4,))
    with pytest.raises(ValueError, match="Received: ks=\\(0,\\)"):
        topk_accuracy(scores, [0, 1, 2], ks=(0,))
    with pytest.raises(ValueError, match="Received: labels shape"):
        topk_accuracy(scores, [0, 1], ks=(1,))
    with pytest.raises(ValueError, match="Received: scores shape"):
        topk_accuracy(np.zeros(3), [0], ks=(1,))
    with pytest.raises(ValueError, match="integer class ids"):
        topk_accuracy(scores, [0.5, 1, 2], ks=(1,))


def test_docstring_examples():
    import doctest

    import keras_slowfast.evaluation.multiview as module

    assert doctest.testmod(module).failed == 0
