"""BuildIndex: an hnswlib index over the exported item embeddings (bias folded in)."""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List

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
        name: str = "index",
    ):
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


def _log_index(ctx: RunContext, directory: str) -> None:
    if "://" not in directory:
        ctx.tracker.log_artifact(directory, "index")
        return
    from sparkml_tf.index.hnsw import _local_dir_for_read

    with _local_dir_for_read(directory) as local:
        ctx.tracker.log_artifact(local, "index")
