import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genrl import GenrlError
from genrl.metrics import precision_recall, roc_auc


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
