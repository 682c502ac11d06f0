"""BuildIndex: an hnswlib index over the exported item embeddings (bias folded in)."""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.io.outputs import atomic_output, check_location, is_complete

LOGGER = logging.getLogger(__name__)

# Defaults measured by benchmarks/bench_ann.py (docs/benchmarks.md, "ANN"): on embeddings shaped
# like a trained recommender's, 1M items x 64 dims, the norm-augmented index reaches recall@100
# >= 0.99 at ef=200 with M=16, ef_construction=200; larger M / ef_construction added < 0.001
# recall at 100k items for 3-4x the build time. Raise ``ef`` first if ann_recall@100 is low.
DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF = 200


class BuildIndex(Job):
    """Read ``<embeddings_dir>`` (id, item, vector, bias) on the driver and write ``<output_dir>``
    (index.bin, ids.parquet, params.json; see :mod:`sparkml_tf.index.hnsw`).

    ``M``/``ef_construction`` trade build time and memory for recall; ``ef`` is the query-time
    beam (raise it when ``ann_recall@100`` in the evaluation is low). ``num_threads=0`` uses all cores.
    """

    def __init__(
        self,
        embeddings_dir: str,
        output_dir: str,
        M: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef: int = DEFAULT_EF,
        num_threads: int = 0,
        num_shards: int = 1,
        name: str = "index",
    ):
        from sparkml_tf.errors import Checks

        checks = Checks()
        checks.require(isinstance(num_shards, int) and not isinstance(num_shards, bool) and num_shards >= 1, "num_shards",
                       f"num_shards must be a whole number >= 1, got {num_shards!r}")
        checks.done()
        self.num_shards = num_shards
        self.embeddings_dir = embeddings_dir
        self.output_dir = output_dir
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef
        self.num_threads = num_threads
        self.name = name
        check_location(self.output_dir, "output_dir")

    def inputs(self) -> List[str]:
        return [self.embeddings_dir]

    def outputs(self) -> List[str]:
        return [self.output_dir]

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        if is_complete(self.output_dir) and not ctx.force:
            LOGGER.info("index %s is complete; skipping (use --force to rebuild)", self.output_dir)
            return {"output_dir": self.output_dir, "skipped": True}
        if self.num_shards > 1:
            return self._build_sharded(ctx)
        from sparkml_tf.index.hnsw import HnswIndex, read_item_embeddings

        ids, items, vectors, biases = read_item_embeddings(self.embeddings_dir)
        start = time.perf_counter()
        index = HnswIndex.build(vectors, biases, ids=ids, items=items, M=self.M, ef_construction=self.ef_construction, ef=self.ef, num_threads=self.num_threads)
        build_s = time.perf_counter() - start
        with atomic_output(self.output_dir, ctx.force) as tmp:
            index.save(tmp)
            # Log from the temporary dir while it is still local and complete (remote: via a copy).
            _log_index(ctx, tmp)
        ctx.tracker.log_params({f"{self.name}.{k}": v for k, v in index.params.items()})
        ctx.tracker.log_metrics({f"{self.name}.build_s": build_s})
        LOGGER.info("indexed %d items (dim %d) in %.1fs", index.params["count"], index.params["dim"], build_s)
        return {"output_dir": self.output_dir, "count": index.params["count"], "build_s": build_s}


    def _build_sharded(self, ctx: RunContext) -> Dict[str, Any]:
        """S shards built on the executors, one task per shard, each reading only its items."""
        from sparkml_tf.index.hnsw import SHARD_SCHEMA, make_build_shards_fn, write_shards_manifest

        spark = ctx.spark
        start = time.perf_counter()
        ctx.describe(f"{self.name}: {self.num_shards} shards")
        with atomic_output(self.output_dir, ctx.force) as tmp:
            threads = self.num_threads or 1  # one task per shard, each on its task's core
            norm2 = largest_squared_norm(spark, str(self.embeddings_dir))  # every shard augments to the catalogue's Φ
            fn = make_build_shards_fn(str(self.embeddings_dir), tmp, self.num_shards, self.M, self.ef_construction, self.ef, threads, norm2)
            schema = ", ".join(f"{f.name} {'long' if str(f.type) == 'int64' else 'double'}" for f in SHARD_SCHEMA())
            shards = [row.asDict() for row in shard_tasks(spark, self.num_shards).mapInArrow(fn, schema).collect()]
            if sorted(s["shard"] for s in shards) != list(range(self.num_shards)):
                raise RuntimeError(f"the shard builders returned shards {sorted(s['shard'] for s in shards)}, expected 0..{self.num_shards - 1}")
            manifest = write_shards_manifest(tmp, self.num_shards, shards)
        build_s = time.perf_counter() - start
        ctx.tracker.log_params({f"{self.name}.num_shards": self.num_shards, f"{self.name}.M": self.M, f"{self.name}.ef_construction": self.ef_construction,
                                f"{self.name}.ef": self.ef})
        ctx.tracker.log_metrics({f"{self.name}.build_s": build_s})
        LOGGER.info("indexed %d items in %d shards on the executors in %.1fs", manifest["count"], self.num_shards, build_s)
        return {"output_dir": self.output_dir, "count": manifest["count"], "num_shards": self.num_shards, "build_s": build_s}


def shard_tasks(spark, num_shards: int):
    """The shard numbers 0..S-1, one per partition, so each shard is built by its own task, in
    parallel. (``range(S).repartition(S)`` does not give that: its round-robin start is drawn per
    input partition from a generator seeded by the partition number, and on 2 cores both of 2
    rows land in one partition, as do 4 or 8 rows in half the partitions: the shards were then
    built one after the other.)"""
    return spark.range(0, int(num_shards), 1, int(num_shards))


def _log_index(ctx: RunContext, directory: str) -> None:
    if "://" not in directory:
        ctx.tracker.log_artifact(directory, "index")
        return
    from sparkml_tf.index.hnsw import _local_dir_for_read

    with _local_dir_for_read(directory) as local:
        ctx.tracker.log_artifact(local, "index")


def largest_squared_norm(spark, embeddings_dir: str) -> Optional[float]:
    """The largest ``|[v, b]|²`` over the item embeddings (one pass on the executors); None when empty."""
    from pyspark.sql import functions as F

    frame = spark.read.parquet(embeddings_dir)
    squared = F.aggregate("vector", F.lit(0.0).cast("double"), lambda total, x: total + x.cast("double") * x.cast("double"))
    if "bias" in frame.columns:
        squared = squared + F.coalesce(F.col("bias").cast("double"), F.lit(0.0)) ** 2
    value = frame.select(F.max(squared)).first()[0]
    return None if value is None else float(value)
