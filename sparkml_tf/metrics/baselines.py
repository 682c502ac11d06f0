"""Reference recommenders the model is compared with, fitted on the driver (numpy/scipy).

* :class:`Popular`: every user gets the items most frequent in training.
* :class:`Ease`: EASE^R (Steck, "Embarrassingly Shallow Autoencoders", WWW 2019). With ``X`` the
  binary train user×item matrix, ``P = (XᵀX + λI)⁻¹`` and ``B = I - P·diag(1/diag(P))`` (so
  ``diag(B) = 0``); a user with fold-in row ``x`` gets scores ``x·B``. Dense ``N×N``: only for
  catalogues up to a few ten thousand items.

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
    """EASE^R fitted on the binary train matrix; ``lam`` is the L2 weight λ (500 in the paper)."""

    def __init__(self, num_items: int, lam: float = 500.0):
        self.num_items = int(num_items)
        self.lam = float(lam)
        self.B: np.ndarray | None = None

    def fit(self, users: np.ndarray, items: np.ndarray) -> "Ease":
        from scipy import sparse

        items = _check_ids(items, self.num_items, "train items")
        _, user_rows = np.unique(np.asarray(users), return_inverse=True)
        X = sparse.csr_matrix((np.ones(len(items)), (user_rows, items)), shape=(int(user_rows.max(initial=-1)) + 1, self.num_items))
        X.data[:] = 1.0  # repeated (user, item) pairs count once: X is binary
        G = (X.T @ X).toarray()
        G[np.diag_indices_from(G)] += self.lam
        P = np.linalg.inv(G)
        B = P / (-np.diag(P))
        B[np.diag_indices_from(B)] = 0.0
        self.B = B
        return self

    def score(self, foldin: np.ndarray) -> np.ndarray:
        """[n, num_items] scores x·B for fold-in id rows ([n, F], -1 padded)."""
        if self.B is None:
            raise RuntimeError("Ease.score() before fit()")
        foldin = np.asarray(foldin, dtype=np.int64)
        X = np.zeros((foldin.shape[0], self.num_items), dtype=np.float64)
        rows = np.repeat(np.arange(foldin.shape[0]), foldin.shape[1] if foldin.ndim == 2 else 0)
        cols = foldin.ravel()
        keep = cols != PAD
        X[rows[keep], _check_ids(cols[keep], self.num_items, "fold-in items")] = 1.0
        return X @ self.B


def build(name: str, num_items: int, ease_lambda: float = 500.0):
    """A baseline by name: ``popular`` or ``ease``."""
    if name == "popular":
        return Popular(num_items)
    if name == "ease":
        return Ease(num_items, ease_lambda)
    raise DataError("EVALUATE_UNKNOWN_BASELINE", f"no baseline named {name!r}; choose from 'popular', 'ease'", "baselines")


def recommend(model, foldin: np.ndarray, k: int, batch_size: int = 1024) -> np.ndarray:
    """Top-``k`` ids per user, fold-in items excluded, scored ``batch_size`` users at a time."""
    from sparkml_tf.metrics.ranking import top_k_excluding

    out = [top_k_excluding(model.score(foldin[i : i + batch_size]), foldin[i : i + batch_size], k) for i in range(0, len(foldin), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


__all__: Sequence[str] = ["Popular", "Ease", "build", "recommend"]
