"""One hnswlib index built on the driver vs S shards built on the executors (BuildIndex num_shards):
build time, peak memory per process, and recall@k of each against the exact top k, side by side.

    python benchmarks/bench_sharded_index.py --items 1000000 --shards 2

Item embeddings and users are ``bench_ann.py``'s "realistic" data (64 dims, power-law norms and
popularity). Both indexes use the same M, ef_construction and ef. The sharded recall queries every
shard for the top k and keeps the k best of the merged lists, which is what
``sparkml_tf.retrieval.topk.sharded_top_k`` does on Spark (a unit test checks that path gives the
one-index lists on a small catalogue); here it runs in-process so the recall is over the same queries.
Memory: the size of each saved hnswlib index (vectors + graph: about what a process holds to query
it), and the peak RSS of the Python worker that built a shard. Rounds alternate the two builds; medians are printed.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))


def main() -> None:
    from bench_ann import realistic_data

    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    from machine import LoadWatch

    watch = LoadWatch()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparkml_tf.engine.base import RunContext
    from sparkml_tf.index.hnsw import HnswIndex, exact_search, num_index_shards, query_shards, shard_dir
    from sparkml_tf.retrieval.jobs.index import BuildIndex
    from sparkml_tf.spark.session import SparkConfig
    from sparkml_tf.testing import RecordingTracker

    vectors, biases, users = realistic_data(args.items, args.dim, 20, args.queries, seed=0)
    tmp = tempfile.mkdtemp(prefix="bench-shards-")
    atexit.register(shutil.rmtree, tmp, True)  # embeddings and both indexes: GBs at 1M items
    ids = np.arange(args.items, dtype=np.int64)
    vector_column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), args.dim).cast(pa.list_(pa.float32()))
    pq.write_table(
        pa.table({"id": ids, "item": ids.astype(str), "vector": vector_column, "bias": biases}),
        f"{tmp}/emb.parquet", row_group_size=50_000,
    )
    truth, _ = exact_search(vectors, biases, users, args.k, ids=ids)
    spark = SparkConfig(master="local[2]", conf={"spark.ui.showConsoleProgress": "false"}).session()
    ctx = lambda: RunContext(_spark=spark, tracker=RecordingTracker(), force=True)  # noqa: E731
    params = dict(M=args.M, ef_construction=args.ef_construction, ef=args.ef)
    one_s, shard_s, one_mb, shard_mb = [], [], [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        BuildIndex(f"{tmp}/emb.parquet", f"{tmp}/one", **params).run(ctx())
        one_s.append(time.perf_counter() - start)
        one_mb.append(os.path.getsize(f"{tmp}/one/index.bin") / 2**20)
        start = time.perf_counter()
        out = BuildIndex(f"{tmp}/emb.parquet", f"{tmp}/sharded", num_shards=args.shards, **params).run(ctx())
        shard_s.append(time.perf_counter() - start)
        manifest = json.load(open(f"{tmp}/sharded/shards.json"))
        shard_mb.append(max(os.path.getsize(f"{shard_dir(f'{tmp}/sharded', s)}/index.bin") for s in range(args.shards)) / 2**20)
        worker_mb = max(s["peak_rss_mb"] for s in manifest["shards"])
        assert out["count"] == args.items and num_index_shards(f"{tmp}/sharded") == args.shards

    def recall(found):
        return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))

    one = HnswIndex.load(f"{tmp}/one")
    found_one, _ = one.query(users, args.k)
    found_sharded, _ = query_shards(f"{tmp}/sharded", users, args.k)  # each shard in turn, lists merged best first
    print(json.dumps({
        "items": args.items, "dim": args.dim, "shards": args.shards, "k": args.k, **params, "rounds": args.rounds,
        "build_s_one_index_driver_all_cores": round(statistics.median(one_s), 1),
        "build_s_sharded_executors": round(statistics.median(shard_s), 1),
        "build_time_ratio_sharded_over_one": round(statistics.median(shard_s) / statistics.median(one_s), 2),
        "index_mb_one": round(statistics.median(one_mb)),  # hnswlib's saved index: about what a process holds to query it
        "index_mb_largest_shard": round(statistics.median(shard_mb)),
        "peak_rss_mb_shard_builder_worker": round(worker_mb),
        f"recall@{args.k}_one_index": round(recall(found_one), 4),
        f"recall@{args.k}_sharded": round(recall(found_sharded), 4),
        **watch.stop().fields(),
    }, indent=1))
    print(watch.report())


if __name__ == "__main__":
    main()
