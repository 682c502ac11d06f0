"""ScoreCandidates: the scheduled batch scoring of one date partition of a candidates table.

One run scores ``<candidates_path>/date=<date>/`` with the newest exported model and publishes
``<output_path>/date=<date>/`` (scores) and ``<quarantine_path>/date=<date>/`` (rows that could
not be scored, with a reason). Each partition is staged and published whole
(:mod:`sparkml_tf.io.partitions`), so readers of the table never see a half-written partition,
whatever happens to the run. docs/scoring.md.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Dict, Optional, Sequence

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.errors import ConfigError, DataError
from sparkml_tf.io.outputs import atomic_output, is_complete
from sparkml_tf.io.partitions import check_date, clear_staging, partition_path, publish, refuse_foreign, staging_path

LOGGER = logging.getLogger(__name__)
SUMMARY = "_SCORE_SUMMARY.json"  # in the published partition: what produced it (a rerun's skip returns it)


class ScoreCandidates(Job):
    """Score the ``date`` partition of ``candidates_path`` (Parquet, partitioned by ``date=``).

    Output ``<output_path>/date=<date>/``: Parquet with ``id_columns`` (strings), ``probability``
    float and ``model_version`` string (the export version directory's name), one row per
    well-formed candidate. Malformed rows (a null/empty id, a numeric feature that is not a
    number) go to ``<quarantine_path>/date=<date>/``: every column of the row as a string plus
    ``reason``. The model is the highest version under ``export_dir``; its
    ``assets/feature_index.json`` encodes the rows. ``batch_size`` rows per model call.

    ``date``: ``YYYY-MM-DD``, usually the macro ``"$run:date"`` filled with ``--set run.date=...``;
    null is accepted when the pipeline is built and refused when this job runs.

    Skip rule: a date whose output partition is complete (holds the marker) is skipped, returning
    the counts recorded then, unless ``--force``; a forced rerun replaces both partitions. A
    partition there without the marker is refused (OUTPUT_EXISTS) unless forced.
    """

    def __init__(
        self,
        candidates_path: str,
        output_path: str,
        quarantine_path: str,
        export_dir: str,
        date: Optional[str],
        id_columns: Sequence[str] = ("request_id", "ad_id"),
        batch_size: int = 4096,
        name: str = "score",
    ):
        # null/"" is accepted here so that a pipeline holding this job can be built to run its
        # other stages without a date; run() refuses it.
        self.date = None if date in (None, "") else check_date(date)
        id_columns = [str(c) for c in id_columns]
        if not id_columns or len(set(id_columns)) != len(id_columns):
            raise ConfigError("CONFIG_BAD_VALUE", f"id_columns must be a non-empty list of distinct column names, got {id_columns}", "id_columns")
        if batch_size <= 0:
            raise ConfigError("CONFIG_BAD_VALUE", f"batch_size must be positive, got {batch_size}", "batch_size")
        if len({str(p).rstrip("/") for p in (candidates_path, output_path, quarantine_path)}) < 3:
            raise ConfigError("CONFIG_BAD_VALUE", "candidates_path, output_path and quarantine_path must be three different tables", "output_path")
        self.candidates_path = candidates_path
        self.output_path = output_path
        self.quarantine_path = quarantine_path
        self.export_dir = export_dir
        self.id_columns = id_columns
        self.batch_size = int(batch_size)
        self.name = name

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        from sparkml_tf.io.filesystems import read_json, write_json

        check_date(self.date)
        final = partition_path(self.output_path, self.date)
        quarantine_final = partition_path(self.quarantine_path, self.date)
        if is_complete(final) and not ctx.force:
            LOGGER.info("scores for %s are complete in %s; skipping (use --force to rescore)", self.date, final)
            return {**(read_json(f"{final}/{SUMMARY}") or {}), "skipped": True}
        refuse_foreign(final, ctx.force)
        refuse_foreign(quarantine_final, ctx.force)
        from sparkml_tf.serving.export import latest_version

        model_path = latest_version(self.export_dir)
        model_version = model_path.rstrip("/").rsplit("/", 1)[-1]
        spark = ctx.spark
        candidates, fields = self._read_candidates(spark, model_path)
        cache_key = uuid.uuid4().hex  # fresh per run: reused workers never serve a stale model
        for root in (self.output_path, self.quarantine_path):
            clear_staging(root, self.date)
        # Two passes over the (Parquet) input rather than one cached pass with two outputs: the
        # model still runs once per row, and no executor memory is held for the cache.
        ctx.describe(f"{self.name}: quarantine {self.date}")
        with atomic_output(staging_path(self.quarantine_path, self.date), force=True) as tmp:
            quarantined = self._write_quarantine(spark, candidates, model_path, cache_key, tmp)
        ctx.describe(f"{self.name}: score {self.date} with model version {model_version}")
        summary = {
            "date": self.date,
            "model_version": model_version,
            "model_path": model_path,
            "output_path": final,
            "quarantine_path": quarantine_final,
            "quarantined": quarantined,
        }
        with atomic_output(staging_path(self.output_path, self.date), force=True) as tmp:
            summary["scored"] = self._write_scores(spark, candidates, fields, model_path, model_version, cache_key, tmp)
            write_json(f"{tmp}/{SUMMARY}", summary)
        # Quarantine first: the score partition's marker is what says the date is done.
        publish(staging_path(self.quarantine_path, self.date), quarantine_final)
        publish(staging_path(self.output_path, self.date), final)
        LOGGER.info("scored %s: %d rows, %d quarantined, model version %s", self.date, summary["scored"], quarantined, model_version)
        ctx.tracker.log_params({f"{self.name}.date": self.date, f"{self.name}.model_version": model_version, f"{self.name}.model_path": model_path})
        ctx.tracker.log_metrics({f"{self.name}.scored": summary["scored"], f"{self.name}.quarantined": quarantined})
        return {**summary, "skipped": False}

    def _read_candidates(self, spark, model_path: str):
        """``(the date's candidates, the feature fields the model's index needs)``."""
        from sparkml_tf.ranking.features.feature_index import FeatureIndex
        from sparkml_tf.ranking.layout import export_feature_index

        path = partition_path(self.candidates_path, self.date)
        try:
            df = spark.read.parquet(path)
        except Exception as e:  # AnalysisException: no such partition, or not Parquet
            raise DataError(
                "DATA_NOT_FOUND",
                f"cannot read the candidates of {self.date} ({type(e).__name__}: {str(e).splitlines()[0]}); "
                "check that the upstream job wrote this date, or fix candidates_path/date",
                path,
            ) from e
        df = df.drop("date")  # the partition value lives in the path; some writers repeat it
        fields = FeatureIndex.load(export_feature_index(model_path)).field_names
        missing = [c for c in [*self.id_columns, *fields] if c not in df.columns]
        if missing:
            raise DataError(
                "DATA_SCHEMA_MISMATCH",
                f"candidates lack column(s) {missing} that the id_columns or the model's "
                f"feature index need (have {df.columns}); fix id_columns or the candidates table",
                path,
            )
        return df, fields

    def _write_quarantine(self, spark, candidates, model_path: str, cache_key: str, tmp: str) -> int:
        from sparkml_tf.ranking.score_remote import make_quarantine_fn

        columns = list(candidates.columns)
        schema = ", ".join(f"`{c}` string" for c in [*columns, "reason"])
        fn = make_quarantine_fn(cache_key, str(model_path), list(self.id_columns), columns)
        candidates.mapInPandas(fn, schema).write.parquet(tmp)
        return _count_rows(spark, tmp, schema)

    def _write_scores(self, spark, candidates, fields: Sequence[str], model_path: str, model_version: str, cache_key: str, tmp: str) -> int:
        from pyspark.sql import functions as F

        from sparkml_tf.ranking.score_remote import make_score_fn

        ids = [F.col(c).cast("string").alias(c) for c in self.id_columns]
        rows = candidates.select(*ids, *[c for c in fields if c not in self.id_columns])
        schema = ", ".join([*(f"`{c}` string" for c in self.id_columns), "probability float", "model_version string"])
        # Plain values only cross to executors.
        fn = make_score_fn(cache_key, str(model_path), str(model_version), list(self.id_columns), self.batch_size)
        rows.mapInPandas(fn, schema).write.parquet(tmp)
        return _count_rows(spark, tmp, schema)


def _count_rows(spark, path: str, schema: Optional[str] = None) -> int:
    """Rows of a Parquet directory just written (from the footers: cheap); an explicit schema
    reads a directory with no data file as empty."""
    reader = spark.read.schema(schema) if schema else spark.read
    return reader.parquet(path).count()
