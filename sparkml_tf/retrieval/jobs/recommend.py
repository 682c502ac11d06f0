"""Recommend: the nightly top-K of every user, from the exported model and the item index.

For one run date: read each user's history up to the end of that day (optionally only the last
``history_days`` days), keep the ``history_items`` most recent items the index knows, compute the
user's embedding with the newest export (loaded once per Python worker) and query the index on the
executors; the user's own items (every known item of theirs up to that day) are never recommended.
Users unseen at training time are served from their history like everyone else: the models
embed any list of known items. Publishes ``<output_path>/date=<day>/`` and
``<quarantine_path>/date=<day>/`` whole (:mod:`sparkml_tf.io.partitions`). docs/recommend.md.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Any, Dict, List, Optional

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.errors import Checks, DataError
from sparkml_tf.io.outputs import atomic_output, is_complete
from sparkml_tf.io.partitions import check_date, clear_staging, partition_path, publish, refuse_foreign, staging_path

LOGGER = logging.getLogger(__name__)
SUMMARY = "_RECOMMEND_SUMMARY.json"  # in the published partition: what produced it (a rerun's skip returns it)
FALLBACKS = ("popular", "none")
HISTORY_FORMATS = ("parquet", "table")
SECONDS_PER_DAY = 86_400


class Recommend(Job):
    """Write each user's top ``k`` for ``date`` to ``<output_path>/date=<date>/`` (Parquet):
    ``user``, ``rank`` (1 = best), ``item``, ``score``, ``source`` (``model``, or ``popular`` for a
    user none of whose items the index knows), ``model_version`` (the export's version directory),
    ``index_version`` (the index's lineage fingerprint).

    History: ``history_path`` (Parquet, or a table name with ``history_format: "table"``) with
    columns ``user``, ``item``, ``timestamp`` (seconds since the epoch), or by default the
    dataset's interactions (``<dataset_dir>/interactions``, every split). Rows after the end of
    ``date`` (UTC) are ignored, and with ``history_days`` so are rows older than that many days.

    ``<quarantine_path>/date=<date>/``: rows without a user (``reason = missing_user``, with the
    row's item and timestamp), and users whose history holds no item the index knows
    (``no_known_item``) when ``fallback`` is ``"none"``; with ``fallback: "popular"`` (the default)
    those users get the items most frequent in the history window instead, flagged
    ``source = popular``. The summary's counts add up: ``users_read = users_model + users_popular +
    users_quarantined``.

    ``date``: ``YYYY-MM-DD``, usually ``"$run:date"``; null means today (UTC). A date whose
    partition is complete is skipped unless ``--force``; a rerun writes the same rows.
    """

    def __init__(
        self,
        export_dir: str,
        index_dir: str,
        output_path: str,
        quarantine_path: str,
        date: Optional[str] = None,
        dataset_dir: Optional[str] = None,
        history_path: Optional[str] = None,
        history_format: str = "parquet",
        history_days: Optional[int] = None,
        history_items: int = 200,
        k: int = 100,
        fallback: str = "popular",
        batch_size: int = 1024,
        name: str = "recommend",
    ):
        checks = Checks()
        self.date = None
        if date not in (None, ""):
            with checks.at("date"):
                self.date = check_date(date)
        checks.require(
            dataset_dir is not None or history_path is not None,
            "history_path",
            "no history to read: set history_path (a Parquet folder or table of user, item, timestamp) or dataset_dir",
        )
        checks.require(
            history_format in HISTORY_FORMATS, "history_format", f"history_format must be one of {', '.join(HISTORY_FORMATS)}, got {history_format!r}"
        )
        checks.require(
            history_days is None or (_whole(history_days) and history_days >= 1),
            "history_days",
            f"history_days must be null (all history) or a whole number of days >= 1, got {history_days!r}",
        )
        checks.require(_whole(history_items) and history_items >= 1, "history_items", f"history_items must be a whole number >= 1, got {history_items!r}")
        checks.require(_whole(k) and k >= 1, "k", f"k must be a whole number >= 1, got {k!r}")
        checks.require(fallback in FALLBACKS, "fallback", f"fallback must be one of {', '.join(FALLBACKS)}, got {fallback!r}")
        checks.require(_whole(batch_size) and batch_size >= 1, "batch_size", f"batch_size must be a whole number >= 1, got {batch_size!r}")
        checks.require(
            str(output_path).rstrip("/") != str(quarantine_path).rstrip("/"), "quarantine_path", "output_path and quarantine_path must be two different tables"
        )
        checks.done()
        self.export_dir, self.index_dir = export_dir, index_dir
        self.output_path, self.quarantine_path = output_path, quarantine_path
        self.dataset_dir, self.history_path, self.history_format = dataset_dir, history_path, history_format
        self.history_days, self.history_items, self.k = history_days, int(history_items), int(k)
        self.fallback, self.batch_size, self.name = fallback, int(batch_size), name

    def inputs(self) -> List[str]:
        return [self.export_dir, self.index_dir] + ([self.dataset_dir] if self.dataset_dir and not self.history_path else [])

    def outputs(self) -> List[str]:
        return []  # date partitions: the marker of each is the skip rule, not lineage

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        from sparkml_tf.io.filesystems import read_json, write_json
        from sparkml_tf.io.outputs import read_lineage
        from sparkml_tf.serving.export import latest_version

        date = self.date or datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        final, quarantine_final = partition_path(self.output_path, date), partition_path(self.quarantine_path, date)
        if is_complete(final) and not ctx.force:
            LOGGER.info("recommendations for %s are complete in %s; skipping (use --force to redo)", date, final)
            return {**(read_json(f"{final}/{SUMMARY}") or {}), "skipped": True}
        refuse_foreign(final, ctx.force)
        refuse_foreign(quarantine_final, ctx.force)
        model_path = latest_version(self.export_dir)
        model_version = model_path.rstrip("/").rsplit("/", 1)[-1]
        index_version = str((read_lineage(self.index_dir) or {}).get("fingerprint") or "unversioned")
        spark = ctx.spark
        for root in (self.output_path, self.quarantine_path):
            clear_staging(root, date)
        missing_user, known, grouped, vocab = self._plan(spark, date)
        summary: Dict[str, Any] = {
            "date": date,
            "model_version": model_version,
            "model_path": model_path,
            "index_version": index_version,
            "output_path": final,
            "quarantine_path": quarantine_final,
            "k": self.k,
        }
        try:
            from pyspark.sql import functions as F

            users, fallback_users = grouped.where(F.size("items") > 0), grouped.where(F.size("items") == 0)
            sizes = {bool(r["known"]): int(r["count"]) for r in grouped.groupBy((F.size("items") > 0).alias("known")).count().collect()}
            summary["users_model"] = sizes.get(True, 0)
            summary["users_popular"] = sizes.get(False, 0) if self.fallback == "popular" else 0
            summary["users_quarantined"] = sizes.get(False, 0) - summary["users_popular"]
            summary["users_read"] = summary["users_model"] + summary["users_popular"] + summary["users_quarantined"]
            ctx.describe(f"{self.name}: quarantine {date}")
            with atomic_output(staging_path(self.quarantine_path, date), force=True) as tmp:
                summary["rows_missing_user"] = self._write_quarantine(spark, missing_user, fallback_users, tmp)
            ctx.describe(f"{self.name}: top-{self.k} for {date} with model version {model_version}")
            with atomic_output(staging_path(self.output_path, date), force=True) as tmp:
                popular = summary["users_popular"] > 0
                summary["rows"] = self._write_recommendations(
                    spark, known, users, fallback_users if popular else None, vocab, model_path, model_version, index_version, tmp
                )
                write_json(f"{tmp}/{SUMMARY}", summary)
        finally:
            grouped.unpersist()
        # Quarantine first: the recommendation partition's marker is what says the date is done.
        publish(staging_path(self.quarantine_path, date), quarantine_final)
        publish(staging_path(self.output_path, date), final)
        LOGGER.info(
            "recommended for %s: %d users by the model, %d most-popular, %d quarantined (%d rows without a user)",
            date,
            summary["users_model"],
            summary["users_popular"],
            summary["users_quarantined"],
            summary["rows_missing_user"],
        )
        ctx.tracker.log_params({f"{self.name}.date": date, f"{self.name}.model_version": model_version, f"{self.name}.index_version": index_version})
        ctx.tracker.log_metrics(
            {f"{self.name}.{key}": summary[key] for key in ("users_read", "users_model", "users_popular", "users_quarantined", "rows_missing_user")}
        )
        return {**summary, "skipped": False}

    # ---- driver-side plan -------------------------------------------------------------------

    def _read_history(self, spark):
        from pyspark.sql import functions as F

        if self.history_path is None:
            from sparkml_tf.retrieval.jobs.predict import read_interactions

            return read_interactions(spark, self.dataset_dir, ["train", "validation_input", "validation_target", "test_input", "test_target"], with_ids=False)
        try:
            df = spark.table(self.history_path) if self.history_format == "table" else spark.read.parquet(self.history_path)
        except Exception as e:  # AnalysisException: missing path / table, not Parquet
            raise DataError(
                "DATA_NOT_FOUND", f"cannot read the history ({type(e).__name__}: {str(e).splitlines()[0][:300]}); check history_path", self.history_path
            ) from e
        missing = [c for c in ("user", "item", "timestamp") if c not in df.columns]
        if missing:
            raise DataError(
                "DATA_MISSING_COLUMN", f"the history lacks column(s) {missing} (has {df.columns}); it needs user, item, timestamp (seconds)", self.history_path
            )
        return df.select(F.col("user").cast("string"), F.col("item").cast("string"), F.col("timestamp").cast("long"))

    def _plan(self, spark, date: str):
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        from sparkml_tf.index.hnsw import index_items_files

        end = int(datetime.datetime.fromisoformat(date).replace(tzinfo=datetime.timezone.utc).timestamp()) + SECONDS_PER_DAY
        history = self._read_history(spark).where(F.col("timestamp").isNull() | (F.col("timestamp") < end))
        if self.history_days is not None:
            history = history.where(F.col("timestamp") >= end - self.history_days * SECONDS_PER_DAY)
        user = F.trim(F.col("user"))
        missing_user = history.where(F.col("user").isNull() | (user == ""))
        history = history.where(F.col("user").isNotNull() & (user != ""))
        try:
            vocab = spark.read.parquet(*index_items_files(self.index_dir)).select(F.col("item").cast("string"), F.col("id").cast("long"))
        except Exception as e:  # AnalysisException: no index there
            raise DataError(
                "DATA_NOT_FOUND",
                f"cannot read the index's items ({type(e).__name__}: {str(e).splitlines()[0][:300]}); run the BuildIndex job first",
                self.index_dir,
            ) from e
        joined = history.join(F.broadcast(vocab), on="item", how="left")  # id null: an item the index does not know
        known = joined.where(F.col("id").isNotNull())
        # One aggregation over the history, no window: per user, the known items as (time, id)
        # newest first, cut to the recent ones and put back in time order (the model's input);
        # every known item (never recommended back); an empty input means no known item at all.
        events = F.sort_array(F.collect_list(F.when(F.col("id").isNotNull(), F.struct(F.coalesce("timestamp", F.lit(0)).alias("t"), "id"))), asc=False)
        grouped = (
            joined.groupBy("user")
            .agg(events.alias("_events"))
            .select(
                "user",
                F.reverse(F.slice("_events", 1, self.history_items)).getField("id").alias("items"),
                F.array_distinct(F.col("_events").getField("id")).alias("seen"),
            )
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        return missing_user, known, grouped, vocab

    # ---- writers ----------------------------------------------------------------------------

    def _write_quarantine(self, spark, missing_user, fallback_users, tmp: str) -> int:
        from pyspark.sql import functions as F

        parts = [missing_user.select(F.col("user"), F.lit("missing_user").alias("reason"), "item", "timestamp")]
        if self.fallback == "none":
            parts.append(
                fallback_users.select(
                    "user", F.lit("no_known_item").alias("reason"), F.lit(None).cast("string").alias("item"), F.lit(None).cast("long").alias("timestamp")
                )
            )
        quarantine = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
        quarantine.coalesce(1).write.parquet(tmp)
        return spark.read.parquet(tmp).where(F.col("reason") == "missing_user").count()

    def _write_recommendations(self, spark, known, users, fallback_users, vocab, model_path: str, model_version: str, index_version: str, tmp: str) -> int:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        from sparkml_tf.index.hnsw import num_index_shards
        from sparkml_tf.retrieval.jobs.predict import embed_users
        from sparkml_tf.retrieval.remote import make_recommend_fn
        from sparkml_tf.retrieval.topk import sharded_top_k

        shards = num_index_shards(self.index_dir)
        constants = {"source": "model", "model_version": model_version, "index_version": index_version}
        rows = 0
        if shards == 1:  # one stage: embed the users, query the whole index, and write the rows from the executors
            fn = make_recommend_fn(uuid.uuid4().hex, str(model_path), str(self.index_dir), self.k, self.batch_size, output_dir=tmp, constants=constants)
            rows += sum(r["rows"] for r in users.select("user", "items", "seen").mapInArrow(fn, "rows long").collect())
        else:  # the vectors first, then every shard meets every user (retrieval/topk.py)
            vectors = embed_users(users, model_path, self.batch_size).join(users.select("user", F.col("seen").alias("exclude")), on="user")
            top = sharded_top_k(vectors, self.index_dir, shards, self.k)
            ranked = top.select("user", F.posexplode(F.arrays_zip("ids", "scores")).alias("position", "c"))
            by_model = ranked.select("user", (F.col("position") + 1).cast("int").alias("rank"), F.col("c.ids").alias("id"), F.col("c.scores").alias("score"))
            by_model = by_model.join(F.broadcast(vocab), on="id").select("user", "rank", "item", "score")
            by_model = by_model.select("*", *[F.lit(v).alias(c) for c, v in constants.items()])
            by_model.write.mode("append").parquet(tmp)
            rows += spark.read.parquet(tmp).count()  # from the Parquet footers
        if fallback_users is not None:  # users without a known item get the window's most frequent items
            popular = (
                known.groupBy("item")
                .agg(F.count("*").cast("float").alias("score"))
                .withColumn("rank", F.row_number().over(Window.orderBy(F.col("score").desc(), F.col("item"))))  # a k-row list: one partition is right
                .where(F.col("rank") <= self.k)
            )
            fallback = fallback_users.crossJoin(F.broadcast(popular)).select("user", F.col("rank").cast("int"), "item", "score")
            fallback = fallback.select("*", *[F.lit(v).alias(c) for c, v in {**constants, "source": "popular"}.items()])
            fallback.write.mode("append").parquet(f"{tmp}/_popular")  # counted apart, then moved in beside the model's files
            rows += _move_parts(f"{tmp}/_popular", tmp, spark)
        return rows


def _move_parts(source: str, target: str, spark) -> int:
    """Move the Parquet files of ``source`` into ``target`` (then remove ``source``); their row count."""
    from pyarrow import fs

    from sparkml_tf.io.filesystems import delete, resolve

    count = spark.read.parquet(source).count()
    filesystem, local = resolve(source)
    _, target_local = resolve(target)
    for info in filesystem.get_file_info(fs.FileSelector(local)):
        if info.base_name.endswith(".parquet"):
            filesystem.move(info.path, f"{target_local}/popular-{info.base_name}")
    delete(filesystem, local)
    return count


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
