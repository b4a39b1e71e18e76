"""Scores of binary detectors and classifiers, in numpy: AUROC, precision and recall.

Written here rather than taken from scikit-learn: they are a few lines each, and genrl's
evaluation and anomaly detection should not pull a large dependency for them.
"""

from __future__ import annotations

import numpy as np

from genrl.errors import GenrlError


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive outscores a random negative.

    Ties count half (the Mann-Whitney statistic with average ranks). NaN when a class is missing.
    """
    scores, labels = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels, dtype=bool).ravel()
    if scores.shape != labels.shape:
        raise GenrlError(f"expected one label per score, got {labels.size} labels for {scores.size} scores")
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    # Average ranks over runs of tied scores, so that ties count half.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def precision_recall(predicted: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Precision and recall of boolean predictions; NaN where undefined (nothing predicted or present)."""
    predicted, labels = np.asarray(predicted, dtype=bool).ravel(), np.asarray(labels, dtype=bool).ravel()
    hits = float((predicted & labels).sum())
    precision = hits / predicted.sum() if predicted.any() else float("nan")
    recall = hits / labels.sum() if labels.any() else float("nan")
    return precision, recall
