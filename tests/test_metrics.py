import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrl import GenrlError
from genrl.evaluation.metrics import bootstrap_ci, iqm, precision_recall, roc_auc


def _pairwise_auc(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


@settings(max_examples=200, derandomize=True)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=40))
def test_roc_auc_equals_the_pairwise_definition(pairs):
    scores = np.array([s for s, _ in pairs], dtype=float)
    labels = np.array([lab for _, lab in pairs])
    if labels.all() or not labels.any():
        assert np.isnan(roc_auc(scores, labels))
    else:
        assert roc_auc(scores, labels) == pytest.approx(_pairwise_auc(scores, labels))


def test_roc_auc_extremes_and_errors():
    labels = np.array([0, 0, 1, 1], dtype=bool)
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(np.ones(4), labels) == 0.5
    with pytest.raises(GenrlError, match="expected one label per score, got 3 labels for 4 scores"):
        roc_auc(np.ones(4), labels[:3])


def test_precision_recall():
    predicted = np.array([1, 1, 0, 0, 1], dtype=bool)
    labels = np.array([1, 0, 1, 0, 1], dtype=bool)
    assert precision_recall(predicted, labels) == pytest.approx((2 / 3, 2 / 3))
    p, r = precision_recall(np.zeros(3, dtype=bool), np.zeros(3, dtype=bool))
    assert np.isnan(p) and np.isnan(r)


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm(np.array([1.0, 2.0, 3.0, 4.0, 100.0])) == pytest.approx(3.0)  # drops 1 and 100
    assert iqm(np.arange(8.0)) == pytest.approx(np.mean([2, 3, 4, 5]))
    assert iqm(np.array([7.0])) == 7.0
    with pytest.raises(GenrlError, match="at least one value"):
        iqm(np.array([]))


@settings(max_examples=50, derandomize=True)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=12))
def test_bootstrap_interval_brackets_the_statistic(values):
    values = np.array(values)
    low, high = bootstrap_ci(values, np.median, resamples=500)
    assert values.min() - 1e-9 <= low <= high <= values.max() + 1e-9
    assert low - 1e-9 <= np.median(values) <= high + 1e-9 or len(values) < 3


def test_bootstrap_interval_is_seeded_and_narrows_with_more_runs():
    rng = np.random.default_rng(0)
    few, many = rng.normal(size=5), rng.normal(size=200)
    assert bootstrap_ci(few) == bootstrap_ci(few)
    (a, b), (c, d) = bootstrap_ci(few), bootstrap_ci(many)
    assert d - c < b - a
    assert bootstrap_ci(np.full(5, 3.0)) == (3.0, 3.0)
    with pytest.raises(GenrlError, match="confidence in"):
        bootstrap_ci(few, confidence=1.5)


def test_rank_correlation_is_spearmans():
    from genrl.evaluation.metrics import rank_correlation

    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert rank_correlation(x, x**3) == pytest.approx(1.0)  # monotone: 1, whatever the scale
    assert rank_correlation(x, -x) == pytest.approx(-1.0)
    # With ties: Pearson's correlation of the average ranks, by hand.
    y = np.array([1.0, 1.0, 2.0, 3.0, 3.0])
    ry = np.array([1.5, 1.5, 3.0, 4.5, 4.5])
    assert rank_correlation(x, y) == pytest.approx(np.corrcoef(np.arange(1, 6), ry)[0, 1])
    assert np.isnan(rank_correlation(x, np.ones(5))) and np.isnan(rank_correlation([1.0], [2.0]))
    with pytest.raises(GenrlError, match="one size"):
        rank_correlation(x, x[:3])
