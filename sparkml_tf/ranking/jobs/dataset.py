"""BuildCtrDataset: raw CTR rows -> split, feature index, encoded rows and TFRecord shards;
GenerateCtrCandidates: a date-partitioned table of synthetic scoring candidates.

Dataset folder (written atomically; a finished one is reused unless forced)::

    splits/                          Parquet: the raw rows + split (train | validation | test)
    quarantine/                      Parquet: the bad input rows with reason, source file, line, raw text
    feature_index/feature_index.json the FeatureIndex built on the train split
    encoded/                         Parquet: split, label, deep_ids, wide_ids, dense
    tfrecord/{train,validation}/part-%05d.tfrecord.gz
    stats.json                       counts, positive rate, index version and sizes, quality (rows read, good, bad per reason)

Importing this module loads neither TensorFlow nor pyspark: the config validator imports it.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Dict, List, Optional, Sequence

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.errors import DataError, bad_value
from sparkml_tf.io.layout import STATS_FILE
from sparkml_tf.io.outputs import atomic_output, check_location, is_complete
from sparkml_tf.io.rows import DEFAULT_MAX_BAD_FRACTION
from sparkml_tf.ranking.criteo import MAX_CATEGORY_LENGTH
from sparkml_tf.ranking.layout import FEATURE_INDEX_FILE, SPLITS, TFRECORD_SPLITS, CtrDataset

LOGGER = logging.getLogger(__name__)

# Split by hash buckets of this resolution (fractions are rounded to 1e-6).
_HASH_BUCKETS = 1_000_000
# Generator keys that are not the hidden model's (accepted by GenerateCtrCandidates, unused there,
# so that one dataset.generator macro serves both jobs).
_ROWS_ONLY = ("num_rows",)
_NOT_GENERATOR = ("with_probability",)


class BuildCtrDataset(Job):
    """Read (or generate) CTR rows, split them, build the feature index on train, encode, shard.

    ``format``: ``criteo-tsv``, ``parquet`` or ``csv`` read from ``path`` (parquet/csv need
    ``schema`` = ``{"label": col, "numeric": [...], "categorical": [...]}``), or ``generated``
    (``generator``: keyword arguments of :func:`sparkml_tf.ranking.generate.generate_ctr`).
    The split is a hash of each row's label and feature values with ``seed``: the same data and
    seed give the same split on any cluster. ``min_count``, ``max_vocab_size``: categorical
    vocabularies; ``num_buckets``: numeric quantile buckets; ``crosses``: ``[["C1", "C2"], ...]``
    or ``[{"fields": [...], "buckets": n}]`` (``cross_buckets`` by default).
    ``num_shards``: TFRecord files per split; use at least the number of training workers.

    Every row read is checked (``docs/data-quality.md``): bad rows go to ``quarantine/`` with their
    reason; above ``max_bad_fraction`` of the rows read the job fails (DATA_TOO_MANY_BAD_ROWS) and
    writes nothing. ``lenient``: accept ``1.0`` or `` 1`` as a label and any finite number in
    Criteo's integer fields. Category values longer than ``max_category_length`` characters are
    shortened by ``long_categories`` (``hash``, the default, or ``truncate``) and counted.
    """

    def __init__(
        self,
        output_dir: str,
        path: str = "",
        format: str = "generated",
        schema: Optional[dict] = None,
        generator: Optional[dict] = None,
        min_count: int = 10,
        num_buckets: int = 10,
        crosses: Optional[List[Any]] = None,
        cross_buckets: int = 100_000,
        max_vocab_size: Optional[int] = None,
        validation_fraction: float = 0.1,
        test_fraction: float = 0.1,
        num_shards: int = 2,
        seed: int = 0,
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
        lenient: bool = False,
        max_category_length: int = MAX_CATEGORY_LENGTH,
        long_categories: str = "hash",
        name: str = "dataset",
    ):
        from sparkml_tf.ranking.criteo import check_quality, check_schema, schema_columns
        from sparkml_tf.ranking.features.build import check_settings
        from sparkml_tf.ranking.features.feature_index import normalize_crosses

        self.schema = check_schema(format, schema)
        if format != "generated" and not path:
            raise ValueError(f"format {format!r} reads files: set path (dataset.path) to the file or folder")
        check_settings(min_count, num_buckets, cross_buckets, max_vocab_size)
        self.crosses = normalize_crosses(crosses, cross_buckets, schema_columns(self.schema)[1:])
        if not 0.0 < validation_fraction or not 0.0 <= test_fraction or validation_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"validation_fraction ({validation_fraction!r}) must be > 0, test_fraction ({test_fraction!r}) >= 0, and together below 1"
            )
        if int(num_shards) < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards!r}")
        check_generator(generator)
        check_quality(max_bad_fraction, max_category_length, long_categories)
        if not isinstance(lenient, bool):
            raise bad_value("lenient", f"lenient must be true or false, got {lenient!r}")
        self.output_dir = str(output_dir).rstrip("/")
        self.path = path
        self.format = format
        self.generator = dict(generator or {})
        self.min_count = int(min_count)
        self.num_buckets = int(num_buckets)
        self.cross_buckets = int(cross_buckets)
        self.max_vocab_size = max_vocab_size
        self.validation_fraction = float(validation_fraction)
        self.test_fraction = float(test_fraction)
        self.num_shards = int(num_shards)
        self.seed = int(seed)
        self.max_bad_fraction = float(max_bad_fraction)
        self.lenient = lenient
        self.max_category_length = int(max_category_length)
        self.long_categories = long_categories
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
            "schema": self.schema,
            "generator": self.generator,
            "min_count": self.min_count,
            "num_buckets": self.num_buckets,
            "crosses": self.crosses,
            "max_vocab_size": self.max_vocab_size,
            "validation_fraction": self.validation_fraction,
            "test_fraction": self.test_fraction,
            "num_shards": self.num_shards,
            "seed": self.seed,
            "max_bad_fraction": self.max_bad_fraction,
            "lenient": self.lenient,
            "max_category_length": self.max_category_length,
            "long_categories": self.long_categories,
        }

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        if is_complete(self.output_dir) and not ctx.force:
            LOGGER.info("CTR dataset %s is complete, skipping (force to rebuild)", self.output_dir)
            return CtrDataset(self.output_dir).read_stats()
        from sparkml_tf.io.rows import spark_errors

        # A parse failure that still reaches Spark (at any pass over the input) is a coded error.
        with spark_errors(self.path or self.format, f"the {self.format} input"):
            return self._build(ctx)

    def _build(self, ctx: RunContext) -> Dict[str, Any]:
        from pyspark.sql import functions as F

        from sparkml_tf.io.rows import account
        from sparkml_tf.ranking.criteo import read_ctr, schema_columns
        from sparkml_tf.ranking.encode_remote import batch_encoder, encoded_schema
        from sparkml_tf.ranking.features.build import build_feature_index

        ctx.tracker.log_params({f"{self.name}.{k}": v for k, v in self.params().items()})
        spark = ctx.spark
        ctx.describe(f"{self.name}: read and check rows")
        quality = (self.max_bad_fraction, self.lenient, self.max_category_length, self.long_categories)
        rows = read_ctr(spark, self.path, self.format, self.schema, self.generator, self.seed, *quality)
        with atomic_output(self.output_dir, ctx.force) as tmp:
            staged = CtrDataset(tmp)
            ctx.describe(f"{self.name}: quarantine")
            quarantined = rows.checked.write_quarantine(staged.quarantine, rows.summary.num_bad)
            ctx.describe(f"{self.name}: split")
            split_rows(rows.frame, self.schema, self.seed, self.validation_fraction, self.test_fraction).write.parquet(staged.splits)
            # Everything downstream reads the written split: one computation, one truth.
            splits = spark.read.parquet(staged.splits)
            ctx.describe(f"{self.name}: feature index")
            index = build_feature_index(
                splits.where(F.col("split") == "train"),
                self.schema["numeric"],
                self.schema["categorical"],
                self.min_count,
                self.num_buckets,
                self.crosses,
                self.cross_buckets,
                self.max_vocab_size,
                max_category_length=self.max_category_length,
                long_categories=self.long_categories,
            )
            index.save(staged.feature_index_dir)
            ctx.describe(f"{self.name}: encode")
            encode = batch_encoder(index.to_dict(), self.schema["label"], ("split",))
            splits.select(*schema_columns(self.schema), "split").mapInArrow(encode, encoded_schema()).write.parquet(staged.encoded)
            encoded = spark.read.parquet(staged.encoded)
            per_split = {
                r["split"]: (int(r["n"]), float(r["clicks"]))
                for r in encoded.groupBy("split").agg(F.count(F.lit(1)).alias("n"), F.sum("label").alias("clicks")).collect()
            }
            account(rows.summary, sum(n for n, _ in per_split.values()), quarantined)
            if per_split.get("train", (0, 0))[0] == 0:
                raise DataError(
                    "DATA_EMPTY",
                    f"the train split is empty ({rows.counts['rows.kept']} rows read); give more rows or lower validation/test_fraction",
                    self.path or self.format,
                )
            for split in TFRECORD_SPLITS:
                ctx.describe(f"{self.name}: write {split} tfrecord")
                written = self._write_tfrecords(encoded.where(F.col("split") == split), staged.tfrecord_dir(split))
                if written != per_split.get(split, (0, 0))[0]:
                    raise DataError(
                        "DATA_SHARDS_MISSING",
                        f"wrote {written} {split} records but the split has {per_split.get(split, (0, 0))[0]} rows; rerun",
                        staged.tfrecord_dir(split),
                    )
            stats = {
                "task": CtrDataset.task,
                **{f"num_{s}_examples": per_split.get(s, (0, 0))[0] for s in SPLITS},
                "positive_rate": per_split["train"][1] / per_split["train"][0],
                "positive_rate_by_split": {s: (c / n if n else None) for s, (n, c) in sorted(per_split.items())},
                "feature_index_version": index.version,
                **index.sizes(),
                "num_shards": self.num_shards,
                "schema": self.schema,
                "counts": rows.counts,
                "quality": rows.summary.to_dict(),
                "params": self.params(),
            }
            staged.write_stats(tmp, stats)
        self._log(ctx, stats, index)
        return stats

    def _write_tfrecords(self, frame, directory: str) -> int:
        from sparkml_tf.ranking.encode_remote import RESULT_SCHEMA, shard_writer

        written = (
            frame.select("label", "deep_ids", "wide_ids", "dense").repartition(self.num_shards).mapInArrow(shard_writer(directory), RESULT_SCHEMA).collect()
        )
        shards = sorted(int(r["shard"]) for r in written)
        if shards != list(range(self.num_shards)):
            raise DataError(
                "DATA_SHARDS_MISSING",
                f"expected shards 0..{self.num_shards - 1} but Spark wrote {shards}; check that adaptive execution does not "
                "coalesce the repartition (spark.sql.adaptive.coalescePartitions.enabled) and rerun",
                directory,
            )
        return int(sum(r["records"] for r in written))

    def _log(self, ctx: RunContext, stats: Dict[str, Any], index) -> None:
        from sparkml_tf.ranking.features.build import vocabulary_sizes

        metrics = {f"{self.name}.{k}": float(v) for k, v in stats["counts"].items()}
        metrics.update({f"{self.name}.rows.bad.{k}": float(v) for k, v in stats["quality"]["bad_by_reason"].items()})
        keys = ["positive_rate", "deep_size", "wide_size", "num_deep", "num_wide", "num_dense"] + [f"num_{s}_examples" for s in SPLITS]
        metrics.update({f"{self.name}.{k}": float(stats[k]) for k in keys})
        metrics.update({f"{self.name}.size.{k}": float(v) for k, v in vocabulary_sizes(index).items()})
        ctx.tracker.log_metrics(metrics)
        ctx.tracker.log_params({f"{self.name}.feature_index_version": index.version})
        ctx.tracker.log_dict(stats, f"{self.name}/{STATS_FILE}")
        from sparkml_tf.io.filesystems import normalize

        index_file = normalize(CtrDataset(self.output_dir).feature_index)
        if "://" in index_file:  # not on a local (or FUSE) path: log the content instead
            ctx.tracker.log_dict(index.to_dict(), f"{self.name}/{FEATURE_INDEX_FILE}")
        else:
            ctx.tracker.log_artifact(index_file, self.name)


class GenerateCtrCandidates(Job):
    """Synthetic candidates to score: Parquet partitioned by ``date=YYYY-MM-DD`` under ``output_dir``.

    For each of ``dates``: ``requests_per_date`` requests x ``ads_per_request`` ads from a catalogue
    of ``num_ads``; columns ``request_id``, ``ad_id``, ``I1..I13``, ``C1..C26`` (no label). With
    ``malformed_fraction`` > 0 that fraction of rows hold a non-number in a numeric field (and
    numeric columns are strings), for the scoring job's quarantine. ``generator``: the hidden-model
    settings of :func:`sparkml_tf.ranking.generate.generate_candidates` (the same dict as
    BuildCtrDataset's ``generator``: ``num_rows`` is accepted and unused), ``seed`` its default seed.
    """

    def __init__(
        self,
        output_dir: str,
        dates: Sequence[str],
        requests_per_date: int = 100,
        ads_per_request: int = 100,
        num_ads: int = 1000,
        malformed_fraction: float = 0.0,
        generator: Optional[dict] = None,
        seed: int = 0,
        name: str = "candidates",
    ):
        from sparkml_tf.ranking.generate import parse_day

        if isinstance(dates, str) or not dates:
            raise ValueError(f"dates must be a non-empty list of YYYY-MM-DD strings, got {dates!r}")
        self.dates = [parse_day(d) for d in dates]
        if len(set(self.dates)) != len(self.dates):
            raise ValueError(f"dates repeat a day: {self.dates}")
        if int(requests_per_date) < 1 or int(ads_per_request) < 1 or int(ads_per_request) > int(num_ads):
            raise ValueError(f"need requests_per_date >= 1 and 1 <= ads_per_request <= num_ads, got {requests_per_date}, {ads_per_request}, {num_ads}")
        if not 0.0 <= malformed_fraction < 1.0:
            raise ValueError(f"malformed_fraction must be in [0, 1), got {malformed_fraction!r}")
        check_generator(generator, world_only=True)
        self.output_dir = str(output_dir).rstrip("/")
        self.requests_per_date = int(requests_per_date)
        self.ads_per_request = int(ads_per_request)
        self.num_ads = int(num_ads)
        self.malformed_fraction = float(malformed_fraction)
        self.generator = {k: v for k, v in (generator or {}).items() if k not in _ROWS_ONLY}
        self.seed = int(seed)
        self.name = name
        check_location(self.output_dir, "output_dir")

    def inputs(self) -> List[str]:
        return []

    def outputs(self) -> List[str]:
        return [self.output_dir]

    def params(self) -> Dict[str, Any]:
        return {
            "dates": self.dates,
            "requests_per_date": self.requests_per_date,
            "ads_per_request": self.ads_per_request,
            "num_ads": self.num_ads,
            "malformed_fraction": self.malformed_fraction,
            "generator": self.generator,
            "seed": self.seed,
        }

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        summary = {"output_dir": self.output_dir, "dates": self.dates}
        if is_complete(self.output_dir) and not ctx.force:
            LOGGER.info("candidates %s are complete, skipping (force to rebuild)", self.output_dir)
            return summary
        from sparkml_tf.ranking.features.feature_index import numeric_values
        from sparkml_tf.ranking.generate import NUMERIC_FIELDS, candidates_arrow_schema, generate_candidates

        ctx.tracker.log_params({f"{self.name}.{k}": v for k, v in self.params().items()})
        rows = malformed = 0
        with atomic_output(self.output_dir, ctx.force) as tmp:
            for day in self.dates:
                ctx.describe(f"{self.name}: {day}")
                frame = generate_candidates(
                    [day], self.requests_per_date, self.ads_per_request, self.num_ads, self.malformed_fraction, **{"seed": self.seed, **self.generator}
                ).drop(columns=["date"])
                _write_parquet(frame, candidates_arrow_schema(self.malformed_fraction > 0), f"{tmp}/date={day}/part-00000.parquet")
                rows += len(frame)
                if self.malformed_fraction:
                    bad = sum((numeric_values(frame[n])[2]).astype(int) for n in NUMERIC_FIELDS)
                    malformed += int((bad > 0).sum())
        summary.update({"num_rows": rows, "num_malformed_rows": malformed})
        ctx.tracker.log_metrics({f"{self.name}.num_rows": float(rows), f"{self.name}.num_malformed_rows": float(malformed)})
        return summary


def split_rows(frame, schema: Dict[str, Any], seed: int, validation_fraction: float, test_fraction: float):
    """``frame`` plus ``split``: a hash of the label and feature values with ``seed`` picks it."""
    from pyspark.sql import functions as F

    from sparkml_tf.ranking.criteo import schema_columns

    bucket = F.pmod(F.xxhash64(F.lit(int(seed)), *[F.col(c) for c in schema_columns(schema)]), F.lit(_HASH_BUCKETS))
    test = int(round(test_fraction * _HASH_BUCKETS))
    validation = test + int(round(validation_fraction * _HASH_BUCKETS))
    split = F.when(bucket < test, "test").when(bucket < validation, "validation").otherwise("train")
    return frame.withColumn("split", split)


def check_generator(generator: Optional[dict], world_only: bool = False) -> None:
    """ValueError for keys that :func:`sparkml_tf.ranking.generate.generate_ctr` does not take
    (``world_only``: its hidden-model settings, plus the unused ``num_rows``)."""
    if not generator:
        return
    if not isinstance(generator, dict):
        raise ValueError(f"generator must be an object of generate_ctr keyword arguments, got {generator!r}")
    from sparkml_tf.ranking import generate as ctr_generate

    if world_only:
        accepted = set(ctr_generate.WORLD_PARAMETERS) | set(_ROWS_ONLY)
    else:
        accepted = set(inspect.signature(ctr_generate.generate_ctr).parameters) - set(_NOT_GENERATOR)
    unknown = sorted(set(generator) - accepted)
    if unknown:
        raise ValueError(f"generator has unknown key(s) {', '.join(unknown)}; it accepts {', '.join(sorted(accepted))}")


def _write_parquet(frame, schema, path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparkml_tf.io.filesystems import resolve

    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    filesystem, local = resolve(path)
    filesystem.create_dir(local.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, local, filesystem=filesystem)
