"""The Recommend job on Spark vs the same work in one plain process: users per second, side by side.

    python benchmarks/bench_recommend.py --users 200000 --items 50000 --rounds 3

Both sides get the same users (``--history`` items each, drawn by popularity), the same SavedModel
(the average model: a user is the mean of their items' vectors, ``--dim`` dims) and the same
hnswlib index, and produce each user's top ``--k`` without their own items:

* ``single``: the same work in one Python process on one thread (TensorFlow's pools and hnswlib
  at 1 thread: the thread budget of one Spark Python worker): read the history Parquet, group it
  per user by time (numpy), the model and index loaded once, users in batches of ``--batch``
  through the same executor code (``embed_lists``, ``HnswIndex.query``, ``drop_seen``), and the
  same columns written to one Parquet file.
* ``job``: ``sparkml_tf.retrieval.Recommend`` on ``local[N]`` (N = the cores), from the history
  Parquet (user, item, timestamp) to the published date partition: reading, the history window,
  grouping per user, the model and index on the executors, the write.

Rounds alternate the two; ratios are medians of per-round ratios, printed with the machine's load
average. Per-core ratio = job rate / (cores x single-process rate), as in bench_inference.py:
1 would mean the job scales perfectly over the cores and Spark costs nothing.
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
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--history", type=int, default=20)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    from machine import LoadWatch

    watch = LoadWatch()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparkml_tf.engine.base import RunContext
    from sparkml_tf.index.hnsw import HnswIndex
    from sparkml_tf.retrieval.jobs.index import BuildIndex
    from sparkml_tf.retrieval.jobs.recommend import Recommend
    from sparkml_tf.retrieval.remote import drop_seen, embed_lists, load_model
    from sparkml_tf.spark.executor import padded_from_offsets
    from sparkml_tf.spark.session import SparkConfig
    from sparkml_tf.testing import RecordingTracker
    from sparkml_tf.testing.average_model import save_average_model

    tmp = tempfile.mkdtemp(prefix="bench-recommend-")

    atexit.register(shutil.rmtree, tmp, True)  # history, model, index and outputs
    vectors, biases, _ = realistic_data(args.items, args.dim, 20, 1, seed=0)
    save_average_model(f"{tmp}/export", vectors)
    ids = np.arange(args.items, dtype=np.int64)
    vector_column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), args.dim).cast(pa.list_(pa.float32()))
    os.makedirs(f"{tmp}/emb")
    pq.write_table(pa.table({"id": ids, "item": ids.astype(str), "vector": vector_column, "bias": biases}), f"{tmp}/emb/p.parquet")
    rng = np.random.default_rng(0)
    popularity = 1.0 / (rng.permutation(args.items) + 1)
    history = np.stack([rng.choice(args.items, size=args.history, replace=False, p=popularity / popularity.sum()) for _ in range(args.users)])
    os.makedirs(f"{tmp}/history")
    pq.write_table(
        pa.table({"user": np.repeat(np.arange(args.users), args.history).astype(str), "item": history.ravel().astype(str),
                  "timestamp": np.tile(np.arange(args.history, dtype=np.int64) + 1_700_000_000, args.users)}),
        f"{tmp}/history/p.parquet",
    )
    conf = {"spark.ui.showConsoleProgress": "false", "spark.sql.shuffle.partitions": str(2 * args.cores)}
    spark = SparkConfig(master=f"local[{args.cores}]", conf=conf).session()
    BuildIndex(f"{tmp}/emb", f"{tmp}/index").run(RunContext(_spark=spark, tracker=RecordingTracker()))

    def single(round_: int) -> float:
        """The same work in one process: read the history, group it per user by time, embed, query,
        drop own items, write the same columns as the job."""
        start = time.perf_counter()
        fn = load_model("bench", f"{tmp}/export/1", threads=1)
        index = HnswIndex.load(f"{tmp}/index")
        table = pq.read_table(f"{tmp}/history")
        users_col = table.column("user").to_numpy(zero_copy_only=False)
        item_ids = table.column("item").to_numpy(zero_copy_only=False).astype(np.int64)  # the index's item names are the ids here
        order = np.lexsort((table.column("timestamp").to_numpy(), users_col))
        users_sorted, flat = users_col[order], item_ids[order]
        bounds = np.flatnonzero(users_sorted[1:] != users_sorted[:-1]) + 1
        offsets = np.concatenate([[0], bounds, [len(flat)]])
        names = users_sorted[offsets[:-1]]
        out_users, out_ranks, out_items, out_scores = [], [], [], []
        for first in range(0, len(names), args.batch):
            last = min(first + args.batch, len(names))
            part_offsets = offsets[first : last + 1] - offsets[first]
            part = flat[offsets[first] : offsets[last]]
            user_vectors = embed_lists(fn, part_offsets, part, args.batch)
            seen = padded_from_offsets(part_offsets, part, min_width=1)
            candidates, scores = index.query(user_vectors, args.k + seen.shape[1], num_threads=1)
            kept, kept_scores = drop_seen(candidates, seen, args.k, scores)
            rows, ranks = np.nonzero(kept >= 0)
            out_users.append(names[first:last][rows])
            out_ranks.append(ranks + 1)
            out_items.append(kept[rows, ranks].astype(str))
            out_scores.append(kept_scores[rows, ranks])
        n = sum(len(u) for u in out_users)
        result = pa.table({"user": np.concatenate(out_users), "rank": np.concatenate(out_ranks).astype(np.int32), "item": np.concatenate(out_items),
                           "score": np.concatenate(out_scores), "source": np.full(n, "model"), "model_version": np.full(n, "1"),
                           "index_version": np.full(n, "x")})
        pq.write_table(result, f"{tmp}/single{round_}.parquet")
        assert n == args.users * args.k
        return args.users / (time.perf_counter() - start)

    def job(round_: int) -> float:
        recommend = Recommend(f"{tmp}/export", f"{tmp}/index", f"{tmp}/recs{round_}", f"{tmp}/q{round_}", date="2026-01-01",
                              history_path=f"{tmp}/history", k=args.k, batch_size=args.batch)
        start = time.perf_counter()
        summary = recommend.run(RunContext(_spark=spark, tracker=RecordingTracker(), force=True))
        seconds = time.perf_counter() - start
        assert summary["users_model"] == args.users and summary["rows"] == args.users * args.k
        return args.users / seconds

    single_rates, job_rates, ratios = [], [], []
    for round_ in range(args.rounds):
        s, j = single(round_), job(round_)
        single_rates.append(s)
        job_rates.append(j)
        ratios.append(j / (args.cores * s))
    print(json.dumps({
        "users": args.users, "items": args.items, "dim": args.dim, "history": args.history, "k": args.k, "cores": args.cores, "rounds": args.rounds,
        "single_process_1_thread_users_per_s": round(statistics.median(single_rates)),
        "recommend_job_users_per_s": round(statistics.median(job_rates)),
        "per_core_ratio_job_over_cores_x_single": round(statistics.median(ratios), 3),
        **watch.stop().fields(),
    }, indent=1))
    print(watch.report())


if __name__ == "__main__":
    main()
