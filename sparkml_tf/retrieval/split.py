"""The Mult-VAE strong-generalization split, in Spark (Liang et al. 2018).

Users, not ratings, are held out: validation and test users are absent from training, and each
of their item sets is cut into a fold-in part (the model's input) and a target part (what it
must find). Every random choice is a hash of ids and the seed, never row order, so the same
data and seed give the same split on any cluster and partitioning.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Dict, Optional, Union

from sparkml_tf.errors import DataError

LOGGER = logging.getLogger(__name__)

SPLITS = ("train", "validation_input", "validation_target", "test_input", "test_target")


@dataclasses.dataclass
class Split:
    """``interactions``: user, item, rating, timestamp, split. ``counts``: rows/users per step."""

    interactions: "object"
    counts: Dict[str, int]
    _cached: list = dataclasses.field(default_factory=list, repr=False)

    def release(self) -> None:
        """Drop the cached intermediates once ``interactions`` is written."""
        for frame in self._cached:
            frame.unpersist()
        self._cached.clear()


def num_heldout(heldout_users: Union[int, float], num_users: int) -> int:
    """``heldout_users`` below 1 is a fraction of the users, else a count (per held-out split)."""
    if heldout_users <= 0 or (heldout_users >= 1 and heldout_users != int(heldout_users)):
        raise ValueError(f"heldout_users must be a fraction in (0, 1) or a whole count >= 1, got {heldout_users!r}")
    if heldout_users < 1:
        return max(1, int(round(heldout_users * num_users)))
    return int(heldout_users)


HASH_BUCKET_BITS = 10


def heldout_roles(users, n: int, seed: int, bucket_bits: int = HASH_BUCKET_BITS):
    """``user, role`` for the held-out users of ``users`` (distinct ``user`` values): ranked by
    ``(xxhash64(user, seed), user)``, the first ``n`` are ``validation``, the next ``n`` ``test``.

    No window over all users (which Spark runs on one partition): the hash's top ``bucket_bits``
    bits cut the users into ranges of hashes, in hash order, so a user's rank is the count of users
    in the buckets before its own plus its rank inside its bucket, a window partitioned by bucket.
    The ranks are those of one global ordering, so the split is the same as by a global window.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    hashed = users.select("user", F.xxhash64("user", F.lit(int(seed))).alias("h"))
    hashed = hashed.withColumn("bucket", F.shiftright("h", 64 - int(bucket_bits)))  # arithmetic: keeps hash order
    sizes = sorted((int(r["bucket"]), int(r["count"])) for r in hashed.groupBy("bucket").count().collect())
    offsets, before = [], 0
    for bucket, size in sizes:  # only the buckets that hold one of the first 2n users
        if before >= 2 * n:
            break
        offsets.append((bucket, before))
        before += size
    if not offsets:
        return hashed.select("user", F.lit("validation").alias("role")).limit(0)
    starts = users.sparkSession.createDataFrame(offsets, "bucket long, offset long")
    in_bucket = Window.partitionBy("bucket").orderBy("h", "user")
    ranked = hashed.join(F.broadcast(starts), "bucket").withColumn("rank", F.col("offset") + F.row_number().over(in_bucket))
    return ranked.where(F.col("rank") <= 2 * n).select("user", F.when(F.col("rank") <= n, "validation").otherwise("test").alias("role"))


def strong_generalization_split(
    ratings,
    min_rating: Optional[float] = 3.5,
    min_items: int = 5,
    heldout_users: Union[int, float] = 0.1,
    target_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """Split ``ratings`` (user, item, rating, timestamp) as Mult-VAE does.

    Keeps ratings > ``min_rating`` (all of them when it is None) and users with >= ``min_items`` of them; picks the validation
    and test users (``heldout_users`` each); the item vocabulary is the training users' items,
    so held-out items outside it are dropped, then held-out users with < 2 items; each held-out
    user's items go ``target_fraction`` to the target (at least 1) and the rest to the input.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not 0.0 < target_fraction < 1.0:
        raise ValueError(f"target_fraction must be in (0, 1), got {target_fraction!r}")
    counts: Dict[str, int] = {}

    def note(step: str, frame, items: bool = False) -> None:
        # One aggregation per step: each is a pass over the data.
        aggs = [F.count(F.lit(1)).alias("rows"), F.countDistinct("user").alias("users")]
        row = frame.agg(*aggs, *([F.countDistinct("item").alias("items")] if items else [])).first()
        counts[f"rows.{step}"], counts[f"users.{step}"] = int(row["rows"]), int(row["users"])
        if items:
            counts["num_items"] = int(row["items"])
        LOGGER.info("split %-17s %10d rows, %d users", step, row["rows"], row["users"])

    ratings = ratings.select("user", "item", "rating", "timestamp")
    counts["rows.input"] = ratings.count()
    LOGGER.info("split %-17s %10d rows", "input", counts["rows.input"])
    # Null min_rating: every interaction is a positive. Ratings reach here finite (NaN is a bad row).
    kept = ratings if min_rating is None else ratings.where(F.col("rating") > float(min_rating))
    per_user = kept.groupBy("user").agg(F.count(F.lit(1)).alias("n"))
    kept = kept.join(per_user.where(F.col("n") >= int(min_items)).select("user"), "user").cache()
    note("filtered", kept)
    num_users = counts["users.filtered"]
    n = num_heldout(heldout_users, num_users)
    if 2 * n >= num_users:
        raise DataError(
            "DATA_TOO_FEW_USERS",
            f"{num_users} users are left after filtering (rating > {min_rating}, >= {min_items} items), too few to hold out "
            f"{n} validation and {n} test users and still train; lower heldout_users, min_rating or min_items",
        )

    role = heldout_roles(kept.select("user").distinct(), n, seed).cache()
    tagged = kept.join(F.broadcast(role), "user", "left").fillna("train", ["role"])

    train = tagged.where(F.col("role") == "train").drop("role")
    note("train", train, items=True)
    vocab = train.select("item").distinct()
    heldout = tagged.where(F.col("role") != "train").join(F.broadcast(vocab), "item", "left_semi")
    by_user = Window.partitionBy("user")
    heldout = heldout.withColumn("n", F.count(F.lit(1)).over(by_user)).where(F.col("n") >= 2)
    order = Window.partitionBy("user").orderBy(F.xxhash64("user", "item", F.lit(int(seed) + 1)), "item")
    n_target = F.least(F.col("n") - 1, F.greatest(F.lit(1), F.floor(F.col("n") * float(target_fraction)).cast("long")))
    heldout = (
        heldout.withColumn("r", F.row_number().over(order))
        .withColumn("split", F.concat(F.col("role"), F.when(F.col("r") <= n_target, F.lit("_target")).otherwise(F.lit("_input"))))
        .select("user", "item", "rating", "timestamp", "split")
        .cache()
    )
    interactions = train.withColumn("split", F.lit("train")).unionByName(heldout)
    # One pass for the four held-out parts.
    found = {r["split"]: r for r in heldout.groupBy("split").agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("user").alias("users")).collect()}
    for name in SPLITS[1:]:
        row = found.get(name)
        counts[f"rows.{name}"], counts[f"users.{name}"] = (int(row["rows"]), int(row["users"])) if row else (0, 0)
        LOGGER.info("split %-17s %10d rows, %d users", name, counts[f"rows.{name}"], counts[f"users.{name}"])
    return Split(interactions=interactions, counts=counts, _cached=[kept, role, heldout])
