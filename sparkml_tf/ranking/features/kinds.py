"""The field kinds of a feature index and the hash that turns crossed ids into one bucket.

Shared by the index (:mod:`sparkml_tf.ranking.features.feature_index`) and the plain-row fast path
(:mod:`sparkml_tf.ranking.features.rows`), which must give the same ids.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

CATEGORICAL = "categorical"
NUMERIC = "numeric"
KINDS = (CATEGORICAL, NUMERIC)

# splitmix64 constants (Steele et al.): a cheap, well-mixed, fixed uint64 hash. Python's hash()
# is salted per process, so it could not give the same cross ids on two machines.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def cross_mix(ids: Sequence[np.ndarray]) -> np.ndarray:
    """Mix local ids into uint64: ``h = 0; for x: h = splitmix64(h ^ (x + golden))`` (wrapping)."""
    h = np.zeros(len(ids[0]), np.uint64)
    with np.errstate(over="ignore"):
        for x in ids:
            h = _splitmix64(h ^ (np.asarray(x).astype(np.uint64) + _GOLDEN))
    return h


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    return z ^ (z >> np.uint64(31))
