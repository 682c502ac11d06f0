"""Top-k from a sharded item index, as a Spark plan (driver side).

Every user row meets every shard (a cross join with the S shard numbers); each task queries the
shards in turn for its users, holding one shard at a time (:func:`sparkml_tf.retrieval.remote.make_shard_query_fn`),
and the per-shard lists are merged per user into the global top k, best score first (ties by id,
so reruns give the same lists). A one-shard index does not come here: its jobs query it in the
same stage that computes the user vectors.
"""

from __future__ import annotations

import uuid


def sharded_top_k(users, index_dir: str, num_shards: int, k: int, key: str = "user", vector: str = "vector", exclude: str = "exclude"):
    """``users`` (key string, vector array<float>, exclude array<long>) -> (key, ids array<long>, scores array<float>), k best each."""
    from pyspark.sql import functions as F

    from sparkml_tf.retrieval.remote import make_shard_query_fn

    spark = users.sparkSession
    shards = spark.range(int(num_shards)).select(F.col("id").alias("_shard"))
    pairs = users.select(key, vector, exclude).crossJoin(F.broadcast(shards)).sortWithinPartitions("_shard")
    fn = make_shard_query_fn(uuid.uuid4().hex, str(index_dir), int(k), key, vector, exclude)
    candidates = pairs.mapInArrow(fn, f"{key} string, ids array<long>, scores array<float>")
    merged = candidates.select(key, F.arrays_zip("ids", "scores").alias("c")).groupBy(key).agg(F.flatten(F.collect_list("c")).alias("c"))
    best_first = (
        "(l, r) -> CASE WHEN l.scores > r.scores THEN -1 WHEN l.scores < r.scores THEN 1 "
        "WHEN l.ids < r.ids THEN -1 WHEN l.ids > r.ids THEN 1 ELSE 0 END"
    )
    top = F.expr(f"slice(array_sort(filter(c, x -> x.ids >= 0), {best_first}), 1, {int(k)})")
    return merged.select(key, top.alias("c")).select(key, F.col("c.ids").alias("ids"), F.col("c.scores").alias("scores"))
