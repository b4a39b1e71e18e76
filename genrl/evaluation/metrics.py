"""Scores in numpy: AUROC, precision and recall of detectors, rank correlation; IQM and
bootstrap intervals of runs.

Written here rather than taken from scikit-learn, scipy or rliable: they are a few lines each,
and genrl's evaluation, anomaly detection and benchmarks should not pull a large dependency for them.
"""

from __future__ import annotations

from collections.abc import Callable

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
    ranks = average_ranks(scores)  # ties count half
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..N of ``values``, tied values sharing the average of their ranks."""
    values = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two samples; NaN when either is constant or too short."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise GenrlError(f"expected two samples of one size, got {x.size} and {y.size} values")
    if x.size < 2:
        return float("nan")
    rx, ry = average_ranks(x) - (x.size + 1) / 2.0, average_ranks(y) - (y.size + 1) / 2.0
    denominator = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def precision_recall(predicted: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Precision and recall of boolean predictions; NaN where undefined (nothing predicted or present)."""
    predicted, labels = np.asarray(predicted, dtype=bool).ravel(), np.asarray(labels, dtype=bool).ravel()
    hits = float((predicted & labels).sum())
    precision = hits / predicted.sum() if predicted.any() else float("nan")
    recall = hits / labels.sum() if labels.any() else float("nan")
    return precision, recall


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle half of the values, as rliable reports runs.

    Drops ``floor(n / 4)`` values at each end (scipy's ``trim_mean(values, 0.25)``), so it is
    robust to one outlying seed yet uses more of the data than the median.
    """
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if values.size == 0:
        raise GenrlError("iqm: expected at least one value, got none")
    cut = values.size // 4
    return float(values[cut : values.size - cut].mean())


def bootstrap_ci(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over runs (each value one seed's result)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise GenrlError("bootstrap_ci: expected at least one value, got none")
    if not 0 < confidence < 1:
        raise GenrlError(f"bootstrap_ci: expected a confidence in (0, 1), got {confidence!r}")
    rng = np.random.default_rng(seed)
    samples = values[rng.integers(0, values.size, size=(resamples, values.size))]
    stats = np.array([statistic(row) for row in samples])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)
