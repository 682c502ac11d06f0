"""BuildDataset: raw ratings -> strong-generalization split, vocabulary and training shards.

Output folder (written atomically; a finished one is reused unless forced)::

    interactions/                    Parquet: user, item, rating, timestamp, split
    quarantine/                      Parquet: the bad input rows with reason, source file, line, raw text
    vocab/items.parquet, items.txt   item vocabulary (see sparkml_tf.retrieval.vocab)
    tfrecord/{train,validation,test}/part-%05d.tfrecord.gz     training_format="tfrecord"
    petastorm/{train,validation,test}/*.parquet                training_format="petastorm"
    stats.json                       counts, num_items, num_train_examples, num_shards, quality (rows read, good, bad per reason)

Importing this module loads neither TensorFlow nor pyspark: the config validator imports it.
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any, Dict, List, Optional

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.errors import Checks, DataError, bad_value
from sparkml_tf.io.layout import STATS_FILE
from sparkml_tf.io.outputs import atomic_output, check_location, is_complete
from sparkml_tf.io.rows import DEFAULT_MAX_BAD_FRACTION, spark_errors
from sparkml_tf.retrieval.interactions import DEFAULT_MAX_VALUE_LENGTH, GENERIC_FORMATS
from sparkml_tf.retrieval.layout import RetrievalDataset

LOGGER = logging.getLogger(__name__)

TRAINING_FORMATS = ("tfrecord", "petastorm")
FORMATS_WITH_COLUMNS = GENERIC_FORMATS
# split folder -> (split values in interactions, list columns of one example)
EXAMPLES = {
    "train": (("train",), ("items",)),
    "validation": (("validation_input", "validation_target"), ("inputs", "targets")),
    "test": (("test_input", "test_target"), ("inputs", "targets")),
}


class BuildDataset(Job):
    """Read (or generate) ratings, split them Mult-VAE style, write the vocabulary and shards.

    ``format``: ``generated`` (synthetic, from ``generator`` keyword arguments of
    :func:`sparkml_tf.retrieval.generate.generate_ratings`; ``path`` is ignored), a MovieLens layout
    read from ``path`` (``movielens-csv``, ``movielens-dat``, ``movielens-100k``), or ``parquet``,
    ``csv`` or ``table`` (``path`` is then a table name) with ``columns`` naming the ``user``,
    ``item``, ``rating`` and ``timestamp`` columns (rating and timestamp may be null: without a
    rating every interaction is a positive and ``min_rating`` does not apply).
    ``min_rating``: keep ratings above it (null: keep all); it applies to finite ratings only.
    ``heldout_users``: validation users, and as many test users; below 1 a fraction of users.
    ``num_shards``: files per split; use at least the number of training workers.

    Every row read is checked (:mod:`sparkml_tf.retrieval.interactions`, ``docs/data-quality.md``):
    bad rows go to ``quarantine/`` with their reason; above ``max_bad_fraction`` of the rows read
    the job fails with DATA_TOO_MANY_BAD_ROWS and writes nothing. ``duplicates``: ``latest`` keeps
    the latest row of each (user, item) and quarantines the others, ``all`` keeps them all.
    ``max_value_length``: longest user or item id accepted, in characters.
    """

    def __init__(
        self,
        output_dir: str,
        path: str = "",
        format: str = "generated",
        generator: Optional[dict] = None,
        columns: Optional[dict] = None,
        min_rating: Optional[float] = 3.5,
        min_items: int = 5,
        heldout_users: float = 0.1,
        target_fraction: float = 0.2,
        num_shards: int = 2,
        seed: int = 0,
        training_format: str = "tfrecord",
        duplicates: str = "latest",
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
        max_value_length: int = DEFAULT_MAX_VALUE_LENGTH,
        name: str = "dataset",
    ):
        from sparkml_tf.io.rows import check_fraction, check_length
        from sparkml_tf.retrieval.interactions import check_columns, check_duplicates, check_format
        from sparkml_tf.retrieval.split import num_heldout

        checks = Checks()
        if format != "generated":
            with checks.at("format"):
                check_format(format)
            checks.require(
                bool(path), "path", f"format {format!r} reads a file or table: set path (dataset.path) to the ratings file or folder, or the table name"
            )
            with checks.at("columns"):
                columns = check_columns(format, columns) if format in FORMATS_WITH_COLUMNS or columns else None
        else:
            checks.require(not columns, "columns", "columns names the columns of an input file or table; format 'generated' reads none: leave it null")
        checks.require(
            min_rating is None or (not isinstance(min_rating, bool) and isinstance(min_rating, (int, float)) and math.isfinite(min_rating)),
            "min_rating", f"min_rating must be a finite number (ratings above it are kept) or null (keep all), got {min_rating!r}",
        )
        with checks.at("duplicates"):
            check_duplicates(duplicates)
        with checks.at("max_bad_fraction"):
            check_fraction(max_bad_fraction)
        with checks.at("max_value_length"):
            check_length(max_value_length, "max_value_length")
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
        self.columns = columns
        self.min_rating = None if min_rating is None else float(min_rating)
        self.min_items = int(min_items)
        self.heldout_users = heldout_users
        self.target_fraction = float(target_fraction)
        self.num_shards = int(num_shards)
        self.seed = int(seed)
        self.training_format = training_format
        self.duplicates = duplicates
        self.max_bad_fraction = float(max_bad_fraction)
        self.max_value_length = int(max_value_length)
        self.name = name
        check_location(self.output_dir, "output_dir")

    def inputs(self) -> List[str]:
        # A table is not a path: its changes are not seen by lineage (rerun with --force).
        return [self.path] if self.format not in ("generated", "table") else []

    def outputs(self) -> List[str]:
        return [self.output_dir]

    def params(self) -> Dict[str, Any]:
        return {
            "path": self.path if self.format != "generated" else "",
            "format": self.format,
            "generator": self.generator,
            "columns": self.columns,
            "min_rating": self.min_rating,
            "min_items": self.min_items,
            "heldout_users": self.heldout_users,
            "target_fraction": self.target_fraction,
            "num_shards": self.num_shards,
            "seed": self.seed,
            "training_format": self.training_format,
            "duplicates": self.duplicates,
            "max_bad_fraction": self.max_bad_fraction,
            "max_value_length": self.max_value_length,
        }

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        if is_complete(self.output_dir) and not ctx.force:
            LOGGER.info("dataset %s is complete, skipping (force to rebuild)", self.output_dir)
            return RetrievalDataset(self.output_dir).read_stats(())
        ctx.tracker.log_params({f"{self.name}.{k}": v for k, v in self.params().items()})
        spark = ctx.spark
        ctx.describe(f"{self.name}: read and check rows")
        with spark_errors(self.path or self.format, f"the {self.format} input"):
            checked = self._checked(spark).persist()
            try:
                return self._build(ctx, spark, checked)
            finally:
                checked.release()

    def _build(self, ctx: RunContext, spark, checked) -> Dict[str, Any]:
        from pyspark.sql import functions as F

        from sparkml_tf.io.rows import account
        from sparkml_tf.retrieval.split import strong_generalization_split
        from sparkml_tf.retrieval.vocab import build_vocab, write_vocab

        summary = checked.summarize(self.max_bad_fraction)
        summary.enforce()  # above the budget: DATA_TOO_MANY_BAD_ROWS, before anything is written
        min_rating = self.min_rating
        if self.columns is not None and self.columns.get("rating") is None and min_rating is not None:
            LOGGER.info("the input has no rating column: every interaction is a positive (min_rating %s does not apply)", min_rating)
            min_rating = None
        ctx.describe(f"{self.name}: split")
        split = strong_generalization_split(checked.good(), min_rating, self.min_items, self.heldout_users, self.target_fraction, self.seed)
        with atomic_output(self.output_dir, ctx.force) as tmp:
            staged = RetrievalDataset(tmp)
            ctx.describe(f"{self.name}: quarantine")
            quarantined = checked.write_quarantine(staged.quarantine, summary.num_bad)
            account(summary, split.counts["rows.input"], quarantined)
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
            counts = {**split.counts, **summary.counts()}
            stats = {
                "num_items": int(len(vocab)),
                "num_users": {folder: int(split.counts[f"users.{EXAMPLES[folder][0][0]}"]) for folder in EXAMPLES},
                "num_train_examples": examples["train"],
                "num_validation_examples": examples["validation"],
                "num_test_examples": examples["test"],
                "num_shards": self.num_shards,
                "training_format": self.training_format,
                "counts": counts,
                "quality": summary.to_dict(),
                "params": self.params(),
            }
            staged.write_stats(tmp, stats)
        metrics = {f"{self.name}.{k}": float(v) for k, v in counts.items()}
        metrics.update({f"{self.name}.num_items": stats["num_items"], f"{self.name}.num_train_examples": stats["num_train_examples"]})
        ctx.tracker.log_metrics(metrics)
        ctx.tracker.log_dict(stats, f"{self.name}/{STATS_FILE}")
        return stats

    def _checked(self, spark):
        """The input rows, each tagged good or bad (generated rows are all good)."""
        from sparkml_tf.io.rows import CheckedRows

        if self.format != "generated":
            from sparkml_tf.retrieval.interactions import read_interactions

            return read_interactions(spark, self.path, self.format, self.columns, self.max_value_length, self.duplicates)
        from sparkml_tf.retrieval.generate import generate_ratings

        kwargs = {"seed": self.seed, **self.generator}
        frame = generate_ratings(**kwargs)
        LOGGER.info("generated %d ratings (%s)", len(frame), kwargs)
        return CheckedRows.trusted(spark.createDataFrame(frame, "user string, item string, rating double, timestamp long"), "generated")

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
    generate.check_generator(**generator)  # impossible values, at generator.<key>, before any Spark job
