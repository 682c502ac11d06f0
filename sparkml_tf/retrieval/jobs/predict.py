"""Predict: user embeddings for every user of a split, by the exported SavedModel, on Spark."""

from __future__ import annotations

import logging
import uuid
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.errors import DataError
from sparkml_tf.io.outputs import atomic_output, check_location, is_complete

LOGGER = logging.getLogger(__name__)
SPLITS = ("train", "validation_input", "validation_target", "test_input", "test_target")
ARROW_BATCH_ROWS = 25_000  # rows per Arrow batch in the inference stage (Spark's default: 10,000)
_ARROW_BATCH_KEY = "spark.sql.execution.arrow.maxRecordsPerBatch"


@contextmanager
def arrow_batch_rows(spark, rows: Optional[int]) -> Iterator[None]:
    """Set ``spark.sql.execution.arrow.maxRecordsPerBatch`` to ``rows`` (None: Spark's default)
    for the actions run inside, then restore the session's own value. The setting is read when a
    query executes, so wrap the action (write, count), not the DataFrame's construction."""
    conf = spark.conf
    previous = conf.get(_ARROW_BATCH_KEY)  # the session's value, or Spark's default
    if rows is None:
        conf.unset(_ARROW_BATCH_KEY)
    else:
        conf.set(_ARROW_BATCH_KEY, str(int(rows)))
    try:
        yield
    finally:
        conf.set(_ARROW_BATCH_KEY, previous)


def read_interactions(spark, dataset_dir: str, splits, with_ids: bool = True):
    """Interactions of ``splits`` joined to the item vocabulary: (user, item, timestamp, split, id).

    Items missing from the vocabulary (filtered out when the dataset was built) are dropped.
    """
    from pyspark.sql import functions as F

    from sparkml_tf.retrieval.layout import RetrievalDataset

    layout = RetrievalDataset(dataset_dir)
    path = layout.interactions
    try:
        df = spark.read.parquet(path)
    except Exception as e:  # AnalysisException: path missing or not Parquet
        raise DataError(
            "DATA_NOT_FOUND",
            f"cannot read interactions ({type(e).__name__}: {str(e).splitlines()[0]}); run the BuildDataset job first or fix dataset_dir",
            path,
        ) from e
    missing = {"user", "item", "split"} - set(df.columns)
    if missing:
        raise DataError(
            "DATA_SCHEMA_MISMATCH", f"interactions lack column(s) {sorted(missing)} (have {df.columns}); expected user, item, rating, timestamp, split", path
        )
    if "timestamp" not in df.columns:
        df = df.withColumn("timestamp", F.lit(0).cast("long"))
    df = df.where(F.col("split").isin(list(splits))).select(
        F.col("user").cast("string"), F.col("item").cast("string"), F.col("timestamp").cast("long"), "split"
    )
    if not with_ids:
        return df
    vocab_path = layout.vocab_table
    try:
        vocab = spark.read.parquet(vocab_path)
    except Exception as e:
        raise DataError(
            "DATA_NOT_FOUND",
            f"cannot read the item vocabulary ({type(e).__name__}: {str(e).splitlines()[0]}); run the BuildDataset job first or fix dataset_dir",
            vocab_path,
        ) from e
    vocab = vocab.select(F.col("item").cast("string"), F.col("id").cast("long"))
    return df.join(F.broadcast(vocab), on="item", how="inner")


def group_items(df, column: str = "items"):
    """One row per user: ``column`` = the user's vocab ids ordered by timestamp (ties by id)."""
    from pyspark.sql import functions as F

    ordered = F.sort_array(F.collect_list(F.struct("timestamp", "id")))
    return df.groupBy("user").agg(ordered.alias("_events")).select("user", F.col("_events.id").alias(column))


class Predict(Job):
    """Read ``split`` of ``<dataset_dir>/interactions``, group each user's item ids (by time) into
    ``items``, run the highest version under ``export_dir`` on executors (``mapInArrow``,
    ``batch_size`` rows per model call, ``arrow_batch_rows`` rows per Arrow batch in that stage)
    and write ``<output_dir>`` Parquet: user string, vector array<float>.
    """

    def __init__(
        self,
        dataset_dir: str,
        export_dir: str,
        output_dir: str,
        split: str = "test_input",
        batch_size: int = 1024,
        name: str = "predict",
        arrow_batch_rows: int = ARROW_BATCH_ROWS,
    ):
        if split not in SPLITS:
            raise DataError("PREDICT_UNKNOWN_SPLIT", f"unknown split {split!r}; choose one of {', '.join(SPLITS)}", "split")
        if batch_size <= 0:
            raise DataError("PREDICT_BAD_BATCH_SIZE", f"batch_size must be positive, got {batch_size}", "batch_size")
        if arrow_batch_rows <= 0:
            raise DataError("PREDICT_BAD_BATCH_SIZE", f"arrow_batch_rows must be positive, got {arrow_batch_rows}", "arrow_batch_rows")
        self.arrow_batch_rows = arrow_batch_rows
        self.dataset_dir = dataset_dir
        self.export_dir = export_dir
        self.output_dir = output_dir
        self.split = split
        self.batch_size = batch_size
        self.name = name
        check_location(self.output_dir, "output_dir")

    def inputs(self) -> List[str]:
        return [self.dataset_dir, self.export_dir]

    def outputs(self) -> List[str]:
        return [self.output_dir]

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        if is_complete(self.output_dir) and not ctx.force:
            LOGGER.info("predictions %s are complete; skipping (use --force to redo)", self.output_dir)
            return {"output_dir": self.output_dir, "skipped": True}
        from sparkml_tf.serving.export import latest_version

        spark = ctx.spark
        model_path = latest_version(self.export_dir)
        users = group_items(read_interactions(spark, self.dataset_dir, [self.split]))
        with atomic_output(self.output_dir, ctx.force) as tmp:
            with arrow_batch_rows(spark, self.arrow_batch_rows):  # this stage only; restored after
                embed_users(users, model_path, self.batch_size).write.parquet(tmp)
            num_users = spark.read.parquet(tmp).count()  # from Parquet footers: cheap
        ctx.tracker.log_params({f"{self.name}.model_path": model_path, f"{self.name}.split": self.split, f"{self.name}.batch_size": self.batch_size})
        ctx.tracker.log_metrics({f"{self.name}.num_users": num_users})
        return {"output_dir": self.output_dir, "num_users": num_users, "model_path": model_path}


def embed_users(users, model_path: str, batch_size: int, key_col: str = "user", items_col: str = "items", cache_key: Optional[str] = None):
    """``users`` (key_col, items_col array<long>) -> (key_col, vector array<float>) via mapInArrow.

    ``cache_key``: the workers' model-cache key (default: fresh per call, so a model re-exported to
    the same path is reloaded). A worker keeps one model per path, so DataFrames of one model run
    alternately should share a key, or each run reloads it."""
    from sparkml_tf.retrieval.remote import make_user_embedding_fn

    # Plain values only cross to executors; a fresh key per call keeps worker caches honest.
    fn = make_user_embedding_fn(cache_key or uuid.uuid4().hex, str(model_path), int(batch_size), key_col, items_col, "vector")
    return users.select(key_col, items_col).mapInArrow(fn, f"{key_col} string, vector array<float>")
