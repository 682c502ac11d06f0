"""BuildDataset: raw ratings -> strong-generalization split, vocabulary and training shards.

Output folder (written atomically; a finished one is reused unless forced)::

    interactions/                    Parquet: user, item, rating, timestamp, split
    vocab/items.parquet, items.txt   item vocabulary (see sparkml_tf.retrieval.vocab)
    tfrecord/{train,validation,test}/part-%05d.tfrecord.gz     training_format="tfrecord"
    petastorm/{train,validation,test}/*.parquet                training_format="petastorm"
    stats.json                       counts, num_items, num_train_examples, num_shards

Importing this module loads neither TensorFlow nor pyspark: the config validator imports it.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Dict, List, Optional

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.errors import Checks, DataError, bad_value
from sparkml_tf.io.layout import STATS_FILE
from sparkml_tf.io.outputs import atomic_output, check_location, is_complete
from sparkml_tf.retrieval.layout import RetrievalDataset

LOGGER = logging.getLogger(__name__)

TRAINING_FORMATS = ("tfrecord", "petastorm")
# split folder -> (split values in interactions, list columns of one example)
EXAMPLES = {
    "train": (("train",), ("items",)),
    "validation": (("validation_input", "validation_target"), ("inputs", "targets")),
    "test": (("test_input", "test_target"), ("inputs", "targets")),
}


class BuildDataset(Job):
    """Read (or generate) ratings, split them Mult-VAE style, write the vocabulary and shards.

    ``format``: ``generated`` (synthetic, from ``generator`` keyword arguments of
    :func:`sparkml_tf.retrieval.generate.generate_ratings`; ``path`` is ignored), or a MovieLens layout
    read from ``path``: ``movielens-csv``, ``movielens-dat``, ``movielens-100k``.
    ``heldout_users``: validation users, and as many test users; below 1 a fraction of users.
    ``num_shards``: files per split; use at least the number of training workers.
    """

    def __init__(
        self,
        output_dir: str,
        path: str = "",
        format: str = "generated",
        generator: Optional[dict] = None,
        min_rating: float = 3.5,
        min_items: int = 5,
        heldout_users: float = 0.1,
        target_fraction: float = 0.2,
        num_shards: int = 2,
        seed: int = 0,
        training_format: str = "tfrecord",
        name: str = "dataset",
    ):
        from sparkml_tf.retrieval.movielens import check_format
        from sparkml_tf.retrieval.split import num_heldout

        checks = Checks()
        if format != "generated":
            with checks.at("format"):
                check_format(format)
            checks.require(bool(path), "path", f"format {format!r} reads a file: set path (dataset.path) to the ratings file or folder")
        checks.require(
            training_format in TRAINING_FORMATS, "training_format", f"training_format must be one of {', '.join(TRAINING_FORMATS)}, got {training_format!r}"
        )
        checks.require(
            not isinstance(num_shards, bool) and isinstance(num_shards, int) and num_shards >= 1,
            "num_shards", f"num_shards must be a whole number of at least 1 (one shard per training worker at least), got {num_shards!r}",
        )
        checks.require(
            isinstance(target_fraction, (int, float)) and 0.0 < target_fraction < 1.0,
            "target_fraction",
            f"target_fraction must be in (0, 1), got {target_fraction!r}",
        )
        with checks.at("heldout_users"):
            num_heldout(heldout_users, 10**9)  # checks the value's form; the count needs the data
        with checks.at("generator"):
            _check_generator(generator)
        checks.done()
        self.output_dir = str(output_dir).rstrip("/")
        self.path = path
        self.format = format
        self.generator = dict(generator or {})
        self.min_rating = float(min_rating)
        self.min_items = int(min_items)
        self.heldout_users = heldout_users
        self.target_fraction = float(target_fraction)
        self.num_shards = int(num_shards)
        self.seed = int(seed)
        self.training_format = training_format
        self.name = name
        check_location(self.output_dir, "output_dir")

    def inputs(self) -> List[str]:
        return [self.path] if self.format != "generated" else []

    def outputs(self) -> List[str]:
        return [self.output_dir]

    def params(self) -> Dict[str, Any]:
        return {
            "path": self.path if self.format != "generated" else "",
            "format": self.format,
            "generator": self.generator,
            "min_rating": self.min_rating,
            "min_items": self.min_items,
            "heldout_users": self.heldout_users,
            "target_fraction": self.target_fraction,
            "num_shards": self.num_shards,
            "seed": self.seed,
            "training_format": self.training_format,
        }

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        if is_complete(self.output_dir) and not ctx.force:
            LOGGER.info("dataset %s is complete, skipping (force to rebuild)", self.output_dir)
            return RetrievalDataset(self.output_dir).read_stats(())
        from pyspark.sql import functions as F

        from sparkml_tf.retrieval.split import strong_generalization_split
        from sparkml_tf.retrieval.vocab import build_vocab, write_vocab

        ctx.tracker.log_params({f"{self.name}.{k}": v for k, v in self.params().items()})
        spark = ctx.spark
        ctx.describe(f"{self.name}: read and split")
        split = strong_generalization_split(
            self._ratings(spark), self.min_rating, self.min_items, self.heldout_users, self.target_fraction, self.seed
        )
        with atomic_output(self.output_dir, ctx.force) as tmp:
            staged = RetrievalDataset(tmp)
            ctx.describe(f"{self.name}: write interactions")
            split.interactions.write.parquet(staged.interactions)
            split.release()
            # Everything downstream reads the written split: one computation, one truth.
            interactions = spark.read.parquet(staged.interactions)
            ctx.describe(f"{self.name}: vocabulary")
            vocab = build_vocab(interactions.where(F.col("split") == "train"))
            write_vocab(vocab, staged.vocab)
            ids = spark.createDataFrame(vocab[["item", "id"]], "item string, id long")
            examples = {}
            for folder, frame in user_examples(interactions, ids).items():
                ctx.describe(f"{self.name}: write {folder} {self.training_format}")
                directory = staged.tfrecord_dir(folder) if self.training_format == "tfrecord" else staged.petastorm_dir(folder)
                examples[folder] = self._write_examples(frame, directory, EXAMPLES[folder][1])
            stats = {
                "num_items": int(len(vocab)),
                "num_users": {folder: int(split.counts[f"users.{EXAMPLES[folder][0][0]}"]) for folder in EXAMPLES},
                "num_train_examples": examples["train"],
                "num_validation_examples": examples["validation"],
                "num_test_examples": examples["test"],
                "num_shards": self.num_shards,
                "training_format": self.training_format,
                "counts": split.counts,
                "params": self.params(),
            }
            staged.write_stats(tmp, stats)
        metrics = {f"{self.name}.{k}": float(v) for k, v in split.counts.items()}
        metrics.update({f"{self.name}.num_items": stats["num_items"], f"{self.name}.num_train_examples": stats["num_train_examples"]})
        ctx.tracker.log_metrics(metrics)
        ctx.tracker.log_dict(stats, f"{self.name}/{STATS_FILE}")
        return stats

    def _ratings(self, spark):
        if self.format != "generated":
            from sparkml_tf.retrieval.movielens import read_ratings

            return read_ratings(spark, self.path, self.format)
        from sparkml_tf.retrieval.generate import generate_ratings

        kwargs = {"seed": self.seed, **self.generator}
        frame = generate_ratings(**kwargs)
        LOGGER.info("generated %d ratings (%s)", len(frame), kwargs)
        return spark.createDataFrame(frame, "user string, item string, rating double, timestamp long")

    def _write_examples(self, frame, directory: str, list_fields) -> int:
        frame = frame.repartition(self.num_shards)
        if self.training_format == "petastorm":
            frame.write.parquet(directory)
            return int(frame.count())
        from sparkml_tf.io.tfrecords import RESULT_SCHEMA, shard_writer

        written = frame.mapInPandas(shard_writer(directory, ("user",), list_fields), RESULT_SCHEMA).collect()
        shards = sorted(int(r["shard"]) for r in written)
        if shards != list(range(self.num_shards)):
            raise DataError(
                "DATA_SHARDS_MISSING",
                f"expected shards 0..{self.num_shards - 1} but Spark wrote {shards}; check that adaptive execution does not "
                "coalesce the repartition (spark.sql.adaptive.coalescePartitions.enabled) and rerun",
                directory,
            )
        return int(sum(r["records"] for r in written))


def user_examples(interactions, ids) -> Dict[str, Any]:
    """One row per user and split folder, item ids ordered by time (then id).

    train: ``user, items``; validation/test: ``user, inputs, targets`` (all ``array<long>``).
    """
    from pyspark.sql import functions as F

    grouped = (
        interactions.join(ids, "item")
        .groupBy("user", "split")
        .agg(F.sort_array(F.collect_list(F.struct("timestamp", "id"))).alias("events"))
        .select("user", "split", F.col("events.id").alias("ids"))
    )
    frames = {}
    for folder, (splits, fields) in EXAMPLES.items():
        parts = [grouped.where(F.col("split") == s).select("user", F.col("ids").alias(f)) for s, f in zip(splits, fields)]
        frame = parts[0]
        for part in parts[1:]:
            frame = frame.join(part, "user")
        frames[folder] = frame
    return frames


def _check_generator(generator: Optional[dict]) -> None:
    if not generator:
        return
    from sparkml_tf.retrieval import generate

    accepted = set(inspect.signature(generate.generate_ratings).parameters)
    unknown = sorted(set(generator) - accepted)
    if unknown:
        raise bad_value("generator", f"generator has unknown key(s) {', '.join(unknown)}; generate_ratings accepts {', '.join(sorted(accepted))}")
