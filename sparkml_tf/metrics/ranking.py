"""Top-k ranking metrics, pure numpy: shared by the trainer's validation and the Evaluate job.

Definitions (binary relevance; ``T`` is a user's set of held-out target items, ``R_k`` the
first ``k`` items the model ranks for that user, fold-in items already removed):

* ``recall@k`` (Mult-VAE, Liang et al. 2018): ``|R_k ∩ T| / min(k, |T|)``. It reaches 1 when
  the top k is as full of targets as it can be, so users with many targets are not punished
  for a small k. This is the number papers on MovieLens/Netflix report.
* ``recall_spark@k`` (Spark's ``RankingMetrics.recallAt``): ``|R_k ∩ T| / |T|``.
* ``ndcg@k``: ``DCG@k / IDCG@k`` with ``DCG@k = sum_{i<k} rel_i / log2(i + 2)`` (rank ``i`` from
  0) and ``IDCG@k`` the DCG of a ranking with all ``min(k, |T|)`` first slots relevant.

Users with no targets have undefined metrics (NaN); :func:`mean_metrics` leaves them out.
Item ids are non-negative integers; ``-1`` pads ragged arrays.
"""

from __future__ import annotations

from typing import Dict, Iterable, Sequence

import numpy as np

PAD = -1


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def recall_at_k(ranked_ids: Sequence[int], targets: Iterable[int], k: int) -> float:
    """Mult-VAE recall of one user: hits in the top ``k`` / ``min(k, |targets|)``."""
    targets = set(int(t) for t in targets)
    if not targets:
        return float("nan")
    hits = sum(1 for i in list(ranked_ids)[:k] if int(i) in targets)
    return hits / min(k, len(targets))


def recall_at_k_spark(ranked_ids: Sequence[int], targets: Iterable[int], k: int) -> float:
    """Spark's recall of one user: hits in the top ``k`` / ``|targets|``."""
    targets = set(int(t) for t in targets)
    if not targets:
        return float("nan")
    hits = sum(1 for i in list(ranked_ids)[:k] if int(i) in targets)
    return hits / len(targets)


def ndcg_at_k(ranked_ids: Sequence[int], targets: Iterable[int], k: int) -> float:
    """NDCG of one user with binary relevance, normalized over ``min(k, |targets|)`` ideal hits."""
    targets = set(int(t) for t in targets)
    if not targets:
        return float("nan")
    top = list(ranked_ids)[:k]
    disc = _discounts(k)
    dcg = sum(disc[i] for i, item in enumerate(top) if int(item) in targets)
    return float(dcg / disc[: min(k, len(targets))].sum())


# ---- vectorized batch versions -------------------------------------------------------------


def pad_lists(lists: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    """Ragged integer lists to an int64 matrix padded with -1."""
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    width = int(lengths.max(initial=0)) if width is None else width
    out = np.full((len(lists), max(width, 0)), PAD, dtype=np.int64)
    for row, values in enumerate(lists):
        n = min(len(values), width)
        out[row, :n] = np.asarray(values, dtype=np.int64)[:n]
    return out


def hits_matrix(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``hits[u, i]``: whether ``ranked[u, i]`` is one of user u's targets (both -1 padded)."""
    ranked = np.asarray(ranked, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    if ranked.size == 0 or targets.shape[1] == 0:
        return np.zeros(ranked.shape, dtype=bool)
    # Sorted targets + one searchsorted: O(n·k·log(n·t)) with no [n, k, t] temporary.
    sorted_t = np.sort(targets, axis=1)
    # Shift each row's values into a disjoint band so one flat searchsorted serves all rows.
    span = int(max(ranked.max(initial=0), sorted_t.max(initial=0))) + 2
    band = (np.arange(ranked.shape[0], dtype=np.int64) * span)[:, None]
    flat_t = (sorted_t + 1 + band).ravel()
    query = ranked + 1 + band
    pos = np.searchsorted(flat_t, query)
    pos = np.minimum(pos, flat_t.size - 1)
    found = flat_t[pos] == query
    return found & (ranked != PAD)


def batch_metrics(ranked: np.ndarray, targets: np.ndarray, ks: Sequence[int]) -> Dict[str, np.ndarray]:
    """Per-user ``recall@k``, ``recall_spark@k`` and ``ndcg@k`` for each k (NaN without targets).

    ``ranked``: [n, K] item ids best first (K ≥ max(ks), -1 padded); ``targets``: [n, T] -1 padded.
    """
    hits = hits_matrix(ranked, targets).astype(np.float64)
    num_targets = (np.asarray(targets) != PAD).sum(axis=1).astype(np.float64)
    valid = num_targets > 0
    safe = np.where(valid, num_targets, 1.0)
    kmax = max(ks)
    if hits.shape[1] < kmax:
        hits = np.pad(hits, ((0, 0), (0, kmax - hits.shape[1])))
    cum_hits = np.cumsum(hits, axis=1)
    disc = _discounts(kmax)
    cum_dcg = np.cumsum(hits[:, :kmax] * disc, axis=1)
    cum_disc = np.cumsum(disc)
    out: Dict[str, np.ndarray] = {}
    for k in ks:
        h = cum_hits[:, k - 1]
        ideal = np.minimum(k, safe)
        out[f"recall@{k}"] = np.where(valid, h / ideal, np.nan)
        out[f"recall_spark@{k}"] = np.where(valid, h / safe, np.nan)
        idcg = cum_disc[ideal.astype(np.int64) - 1]
        out[f"ndcg@{k}"] = np.where(valid, cum_dcg[:, k - 1] / idcg, np.nan)
    return out


def recall_curve(ranked: np.ndarray, targets: np.ndarray, kmax: int) -> np.ndarray:
    """Per-user Mult-VAE recall@k for k = 1..kmax: [n, kmax] (NaN rows without targets)."""
    hits = hits_matrix(ranked, targets).astype(np.float64)
    if hits.shape[1] < kmax:
        hits = np.pad(hits, ((0, 0), (0, kmax - hits.shape[1])))
    num_targets = (np.asarray(targets) != PAD).sum(axis=1).astype(np.float64)
    ks = np.arange(1, kmax + 1, dtype=np.float64)
    denom = np.minimum(ks[None, :], np.maximum(num_targets, 1.0)[:, None])
    curve = np.cumsum(hits[:, :kmax], axis=1) / denom
    curve[num_targets == 0] = np.nan
    return curve


def top_k_excluding(scores: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` best-scored items per row (best first), never one of ``exclude`` (-1 padded)."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    if exclude.size:
        rows = np.repeat(np.arange(scores.shape[0]), exclude.shape[1])
        cols = exclude.ravel()
        keep = cols != PAD
        scores[rows[keep], cols[keep]] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def mean_metrics(per_user: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Means over users with targets (NaN entries ignored)."""
    return {name: float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan") for name, values in per_user.items()}
