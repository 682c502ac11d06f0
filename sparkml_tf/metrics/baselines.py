"""Reference recommenders the model is compared with, fitted on the driver (numpy/scipy).

* :class:`Popular`: every user gets the items most frequent in training.
* :class:`Ease`: EASE^R (Steck, "Embarrassingly Shallow Autoencoders", WWW 2019). With ``X`` the
  binary train user×item matrix, ``P = (XᵀX + λI)⁻¹`` and ``B = I - P·diag(1/diag(P))`` (so
  ``diag(B) = 0``); a user with fold-in row ``x`` gets scores ``x·B``. One dense float32 ``N×N``
  array (1.6 GB at 20,000 items): for catalogues up to a few ten thousand items.

Both score held-out users from their fold-in items (the strong-generalization protocol);
:func:`sparkml_tf.metrics.ranking.top_k_excluding` then drops the fold-in items themselves.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sparkml_tf.errors import DataError
from sparkml_tf.metrics.ranking import PAD


def _check_ids(item_ids: np.ndarray, num_items: int, what: str) -> np.ndarray:
    item_ids = np.asarray(item_ids, dtype=np.int64)
    if item_ids.size and (item_ids.min() < 0 or item_ids.max() >= num_items):
        raise DataError(
            "DATA_BAD_ITEM_ID",
            f"{what} holds item ids outside [0, {num_items}) (min {item_ids.min()}, max {item_ids.max()}); "
            "map items through the dataset vocabulary (vocab/items.parquet) before fitting",
        )
    return item_ids


class Popular:
    """Most popular items by training count; the same ranking for everyone."""

    def __init__(self, num_items: int):
        self.num_items = int(num_items)
        self.counts = np.zeros(self.num_items, dtype=np.float64)

    def fit(self, users: np.ndarray, items: np.ndarray) -> "Popular":
        items = _check_ids(items, self.num_items, "train items")
        self.counts = np.bincount(items, minlength=self.num_items).astype(np.float64)
        return self

    def score(self, foldin: np.ndarray) -> np.ndarray:
        """[n, num_items] scores for n users (fold-in: [n, F] -1 padded; unused but for the shape)."""
        return np.broadcast_to(self.counts, (len(foldin), self.num_items))


class Ease:
    """EASE^R fitted on the binary train matrix; ``lam`` is the L2 weight λ (500 in the paper).

    Memory: one dense float32 ``N×N`` array (4·N² bytes: 1.6 GB at 20,000 items) plus bounded
    temporaries. The Gram matrix is accumulated from sparse user chunks a block of rows at a time,
    inverted in place by Cholesky (LAPACK ``spotrf``/``spotri``), and turned into ``B`` in place.
    """

    def __init__(self, num_items: int, lam: float = 500.0, block: int = 1024):
        self.num_items = int(num_items)
        self.lam = float(lam)
        self.block = int(block)
        self.B: np.ndarray | None = None

    def memory_bytes(self) -> int:
        """An upper bound on the peak memory of :meth:`fit`: the N×N float32 array and one block of
        the Gram product (sparse, then dense)."""
        n = self.num_items
        return 4 * n * n + 16 * min(self.block, n) * n

    def fit(self, users: np.ndarray, items: np.ndarray) -> "Ease":
        G = gram_matrix(users, items, self.num_items, self.block)
        self.B = ease_weights(G, self.lam, self.block, overwrite=True)
        return self

    def score(self, foldin: np.ndarray) -> np.ndarray:
        """[n, num_items] scores x·B for fold-in id rows ([n, F], -1 padded)."""
        if self.B is None:
            raise RuntimeError("Ease.score() before fit()")
        foldin = np.asarray(foldin, dtype=np.int64)
        X = np.zeros((foldin.shape[0], self.num_items), dtype=np.float32)
        rows = np.repeat(np.arange(foldin.shape[0]), foldin.shape[1] if foldin.ndim == 2 else 0)
        cols = foldin.ravel()
        keep = cols != PAD
        X[rows[keep], _check_ids(cols[keep], self.num_items, "fold-in items")] = 1.0
        return X @ self.B


def gram_matrix(users: np.ndarray, items: np.ndarray, num_items: int, block: int = 1024) -> np.ndarray:
    """``XᵀX`` (dense float32 ``N×N``) of the binary user×item matrix of the (user, item id) pairs,
    accumulated from the sparse matrix a block of item rows at a time (repeated pairs count once)."""
    from scipy import sparse

    items = _check_ids(items, num_items, "train items")
    _, user_rows = np.unique(np.asarray(users), return_inverse=True)
    n = int(num_items)
    X = sparse.csr_matrix((np.ones(len(items), np.float32), (user_rows, items)), shape=(int(user_rows.max(initial=-1)) + 1, n))
    X.data[:] = 1.0  # repeated (user, item) pairs count once: X is binary
    G = np.zeros((n, n), np.float32)
    XT = X.T.tocsr()
    for start in range(0, n, block):  # G[rows] = X[:, rows]ᵀ X, one block of item rows at a time
        G[start : start + block] = (XT[start : start + block] @ X).toarray()
    return G


def ease_weights(G: np.ndarray, lam: float, block: int = 1024, overwrite: bool = False) -> np.ndarray:
    """EASE's ``B = I - P·diag(1/diag(P))`` with ``P = (G + λI)⁻¹`` and ``diag(B) = 0``, float32.

    With ``overwrite`` the work happens in ``G`` itself (no second ``N×N`` array; ``G`` is then
    ``B``); otherwise on a copy, so one Gram matrix serves several ``λ``."""
    from scipy.linalg import lapack

    n = len(G)
    G = G if overwrite else G.copy()
    G[np.diag_indices(n)] += np.float32(lam)
    # G is symmetric, so its transpose is the same matrix in Fortran order: LAPACK works on it in place.
    factor, info = lapack.spotrf(G.T, lower=0, clean=0, overwrite_a=1)
    if info == 0:
        P, info = lapack.spotri(factor, lower=0, overwrite_c=1)
    if info != 0:
        raise DataError("EVALUATE_EASE_FAILED", f"the regularized Gram matrix could not be inverted (LAPACK info {info}); raise the L2 weight λ (now {lam})")
    _symmetrize_upper(P, block)
    P /= -np.diag(P).copy()[None, :]  # B = I - P·diag(1/diag(P)), off the diagonal
    P[np.diag_indices(n)] = 0.0
    return P


def _symmetrize_upper(P: np.ndarray, block: int) -> None:
    """Copy the upper triangle of ``P`` onto its lower one, in place, a block of rows at a time."""
    n = len(P)
    for start in range(0, n, block):
        end = min(start + block, n)
        P[start:end, :start] = P[:start, start:end].T
        diagonal = P[start:end, start:end]
        diagonal[np.tril_indices(end - start, -1)] = diagonal.T[np.tril_indices(end - start, -1)]


def build(name: str, num_items: int, ease_lambda: float = 500.0):
    """A baseline by name: ``popular`` or ``ease``."""
    if name == "popular":
        return Popular(num_items)
    if name == "ease":
        return Ease(num_items, ease_lambda)
    raise DataError("EVALUATE_UNKNOWN_BASELINE", f"no baseline named {name!r}; choose from 'popular', 'ease'", "baselines")


# Scores recommend() holds at once: users x items (float64: 128 MiB, 16 users at 1M items).
SCORE_ELEMENTS = 1 << 24


def recommend(model, foldin: np.ndarray, k: int, batch_size: int = 1024) -> np.ndarray:
    """Top-``k`` ids per user, fold-in items excluded, scored ``batch_size`` users at a time, fewer
    when the catalogue is large (``SCORE_ELEMENTS`` scores at most; each user's list is the same)."""
    from sparkml_tf.metrics.ranking import top_k_excluding

    batch_size = max(1, min(int(batch_size), SCORE_ELEMENTS // max(int(model.num_items), 1)))
    out = [top_k_excluding(model.score(foldin[i : i + batch_size]), foldin[i : i + batch_size], k) for i in range(0, len(foldin), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


__all__: Sequence[str] = ["Popular", "Ease", "build", "recommend", "gram_matrix", "ease_weights"]
