"""The field kinds of a feature index, the hash that turns crossed ids into one bucket, and the
rule that shortens category values over a length limit.

Shared by the index (:mod:`sparkml_tf.ranking.features.feature_index`) and the plain-row fast path
(:mod:`sparkml_tf.ranking.features.rows`), which must give the same ids.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

CATEGORICAL = "categorical"
NUMERIC = "numeric"
KINDS = (CATEGORICAL, NUMERIC)
# How a categorical field shortens values over its "max_length" (its "long_values"); the Spark
# readers do the same (sparkml_tf.ranking.criteo.long_category).
LONG_VALUES = ("hash", "truncate")
HASH_PREFIX = "#sha256:"


def shorten_category(value: str, max_length: int, policy: str) -> str:
    """``value`` if it has at most ``max_length`` characters; else ``#sha256:`` and the first 32 hex
    digits of the SHA-256 of its UTF-8 bytes (``hash``), or its first ``max_length`` characters."""
    if len(value) <= max_length:
        return value
    if policy == "hash":
        return HASH_PREFIX + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return value[:max_length]


def shortener(field: Mapping[str, Any]) -> Optional[Callable[[str], str]]:
    """The shortening of a categorical field's values, or None when it cannot change an id: the
    vocabulary holds no shortened value, so a long value is unknown shortened or not."""
    if "max_length" not in field:
        return None
    length, policy = field["max_length"], field["long_values"]
    if not any((v.startswith(HASH_PREFIX) if policy == "hash" else len(v) == length) for v in field["vocab"]):
        return None
    return lambda value: shorten_category(value, length, policy)

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
