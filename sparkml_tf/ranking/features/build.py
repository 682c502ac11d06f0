"""Build a :class:`~sparkml_tf.ranking.features.feature_index.FeatureIndex` from a Spark DataFrame (driver side).

Call it on the TRAIN rows only: vocabularies and bucket boundaries seen on validation or test
rows would leak them into the features. Two passes over the data: one aggregation counts every
categorical value of every field; one ``approxQuantile`` gives all numeric boundaries.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence

from sparkml_tf.ranking.features.feature_index import CATEGORICAL, NUMERIC, FeatureIndex, normalize_crosses

LOGGER = logging.getLogger(__name__)


def build_feature_index(
    train,
    numeric: Sequence[str],
    categorical: Sequence[str],
    min_count: int = 10,
    num_buckets: int = 10,
    crosses: Optional[Sequence[Any]] = None,
    cross_buckets: int = 100_000,
    max_vocab_size: Optional[int] = None,
    relative_error: float = 0.001,
    max_category_length: Optional[int] = None,
    long_categories: str = "hash",
) -> FeatureIndex:
    """Fields in order: ``numeric`` then ``categorical``, then the ``crosses``.

    A categorical field's vocabulary holds the values seen at least ``min_count`` times (at most
    ``max_vocab_size``, the most frequent), by decreasing count then value, so it is the same on
    every run. A numeric field's boundaries are its ``num_buckets``-quantiles (distinct values
    only: a field with many zeros gets fewer buckets). Crosses are ``[["C1", "C2"], ...]`` or
    ``[{"fields": [...], "buckets": n}]``, with ``cross_buckets`` buckets by default.
    ``max_category_length``: the limit the reader shortened long category values to (with
    ``long_categories``), recorded on each categorical field so the Encoder shortens online values
    the same way; None records nothing.
    """
    check_settings(min_count, num_buckets, cross_buckets, max_vocab_size, relative_error)
    numeric, categorical = list(numeric), list(categorical)
    crosses = normalize_crosses(crosses, cross_buckets, numeric + categorical)
    vocabs = category_vocabularies(train, categorical, min_count, max_vocab_size)
    boundaries = numeric_boundaries(train, numeric, num_buckets, relative_error)
    fields: List[Dict[str, Any]] = [{"name": n, "kind": NUMERIC, "boundaries": boundaries[n]} for n in numeric]
    long = {"max_length": int(max_category_length), "long_values": long_categories} if max_category_length else {}
    fields += [{"name": n, "kind": CATEGORICAL, "vocab": vocabs[n], **long} for n in categorical]
    index = FeatureIndex(fields, crosses)
    LOGGER.info(
        "feature index %s: %d fields, %d crosses, deep_size %d, wide_size %d", index.version, index.num_deep, len(crosses), index.deep_size, index.wide_size
    )
    return index


def check_settings(min_count: int, num_buckets: int, cross_buckets: int, max_vocab_size: Optional[int] = None, relative_error: float = 0.001) -> None:
    """ValueError for settings no data can make right (called by the job's constructor too)."""
    for name, value, low in (("min_count", min_count, 1), ("num_buckets", num_buckets, 1), ("cross_buckets", cross_buckets, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    if max_vocab_size is not None and (isinstance(max_vocab_size, bool) or not isinstance(max_vocab_size, int) or max_vocab_size < 1):
        raise ValueError(f"max_vocab_size must be null or a whole number >= 1, got {max_vocab_size!r}")
    if not 0.0 <= relative_error < 1.0:
        raise ValueError(f"relative_error must be in [0, 1), got {relative_error!r}")


def category_vocabularies(frame, fields: Sequence[str], min_count: int, max_vocab_size: Optional[int] = None) -> Dict[str, List[str]]:
    """Per field, the values seen >= ``min_count`` times, most frequent first (ties by value)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    vocabs: Dict[str, List[str]] = {name: [] for name in fields}
    if not fields:
        return vocabs
    pairs = F.explode(F.array(*[F.struct(F.lit(n).alias("field"), F.col(n).cast("string").alias("value")) for n in fields]))
    counts = (
        frame.select(pairs.alias("pair"))
        .select("pair.field", "pair.value")
        .where(F.col("value").isNotNull() & (F.col("value") != ""))
        .groupBy("field", "value")
        .count()
        .where(F.col("count") >= min_count)
    )
    if max_vocab_size:
        rank = F.row_number().over(Window.partitionBy("field").orderBy(F.desc("count"), F.asc("value")))
        counts = counts.withColumn("rank", rank).where(F.col("rank") <= max_vocab_size).drop("rank")
    rows = sorted(((r["field"], -int(r["count"]), r["value"]) for r in counts.collect()))
    for field, _, value in rows:
        vocabs[field].append(value)
    return vocabs


def numeric_boundaries(frame, fields: Sequence[str], num_buckets: int, relative_error: float = 0.001) -> Dict[str, List[float]]:
    """Per field, the distinct finite ``num_buckets``-quantiles of its non-null values."""
    import math

    if not fields or num_buckets < 2:
        return {name: [] for name in fields}
    probabilities = [i / num_buckets for i in range(1, num_buckets)]
    quantiles = frame.approxQuantile(list(fields), probabilities, relative_error)
    return {name: sorted({float(v) for v in values if math.isfinite(v)}) for name, values in zip(fields, quantiles)}


def vocabulary_sizes(index: FeatureIndex) -> Mapping[str, int]:
    """Ids per field and cross (vocabulary + 1, boundaries + 2, buckets), for logging."""
    return dict(zip(index.wide_names, index.wide_sizes))
