"""Binary classification metrics for CTR models, pure numpy: exact, tie-aware ROC AUC and log loss.

Definitions (``y`` in {0, 1}, ``p`` a predicted probability of ``y = 1``; docs/scoring.md):

* ``auc``: the probability that a random positive is scored above a random negative, ties
  counting one half (the Mann-Whitney U statistic / (P * N)). Exact: computed from the counts
  of positives and negatives at each distinct score, no thresholds or bins, so it equals the
  area under the ROC curve with tied scores joined by a straight segment (what
  ``sklearn.metrics.roc_auc_score`` returns). Undefined (NaN) when one class is absent.
* ``logloss``: ``mean(-(y log p + (1 - y) log(1 - p)))`` with ``p`` clipped to
  ``[EPS, 1 - EPS]`` so a confident wrong answer costs ``-log(EPS)`` instead of infinity.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

EPS = 1e-15


def _check(labels, scores) -> Tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length ({y.size} vs {s.size})")
    if y.size and not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y, s


def score_counts(labels, scores) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(distinct scores ascending, positives at each, negatives at each)``: all AUC needs, and
    small enough to merge across partitions when scores repeat."""
    y, s = _check(labels, scores)
    distinct, inverse = np.unique(s, return_inverse=True)
    positives = np.bincount(inverse, weights=y, minlength=distinct.size).astype(np.int64)
    totals = np.bincount(inverse, minlength=distinct.size).astype(np.int64)
    return distinct, positives, totals - positives


def auc_from_counts(positives: np.ndarray, negatives: np.ndarray) -> float:
    """AUC from per-score counts given in ascending score order (see :func:`score_counts`)."""
    positives = np.asarray(positives, dtype=np.float64)
    negatives = np.asarray(negatives, dtype=np.float64)
    total_pos, total_neg = positives.sum(), negatives.sum()
    if total_pos == 0 or total_neg == 0:
        return float("nan")
    negatives_below = np.cumsum(negatives) - negatives
    # Each positive beats every negative scored strictly lower and ties half of those at its score.
    wins = np.sum(positives * (negatives_below + 0.5 * negatives))
    return float(wins / (total_pos * total_neg))


def roc_auc(labels, scores) -> float:
    """Exact, tie-aware ROC AUC; NaN when ``labels`` hold a single class."""
    _, positives, negatives = score_counts(labels, scores)
    return auc_from_counts(positives, negatives)


def log_loss(labels, probabilities, eps: float = EPS) -> float:
    """Mean binary cross-entropy (natural log) with probabilities clipped to ``[eps, 1 - eps]``;
    NaN for no examples."""
    y, p = _check(labels, probabilities)
    if not y.size:
        return float("nan")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def binary_metrics(labels, probabilities) -> Dict[str, float]:
    """``{"auc", "logloss", "num_examples", "positive_rate"}`` of one model on one split."""
    y, p = _check(labels, probabilities)
    return {
        "auc": roc_auc(y, p),
        "logloss": log_loss(y, p),
        "num_examples": int(y.size),
        "positive_rate": float(y.mean()) if y.size else float("nan"),
    }
