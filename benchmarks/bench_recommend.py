"""The Recommend job on Spark vs the same work in one plain process: users per second, side by side.

    python benchmarks/bench_recommend.py --users 200000 --items 50000 --rounds 3

Both sides get the same users (``--history`` items each, drawn by popularity), the same SavedModel
(the average model: a user is the mean of their items' vectors, ``--dim`` dims) and the same
hnswlib index, and produce each user's top ``--k`` without their own items:

* ``single``: one Python process on one thread (TensorFlow's pools and hnswlib at 1 thread: the
  thread budget of one Spark Python worker), the model and index loaded once, users in batches of
  ``--batch`` through the same executor code (``embed_lists``, ``HnswIndex.query``, ``drop_seen``).
  The history is already grouped in memory.
* ``job``: ``sparkml_tf.retrieval.Recommend`` on ``local[N]`` (N = the cores), from the history
  Parquet (user, item, timestamp) to the published date partition: reading, the history window,
  grouping per user, the model and index on the executors, the write.

Rounds alternate the two; ratios are medians of per-round ratios, printed with the machine's load
average. Per-core ratio = job rate / (cores x single-process rate), as in bench_inference.py:
1 would mean the job scales perfectly over the cores and Spark costs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))


def save_average_model(export_dir: str, table: np.ndarray) -> str:
    import tensorflow as tf

    class Average(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.Variable(table, dtype=tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64, name="items")])
        def serve(self, items):
            mask = tf.cast(items >= 0, tf.float32)
            vectors = tf.gather(self.table, tf.maximum(items, 0)) * mask[..., None]
            return {"user_embedding": tf.reduce_sum(vectors, 1) / tf.maximum(tf.reduce_sum(mask, 1, keepdims=True), 1.0)}

    module = Average()
    path = f"{export_dir}/1"
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


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

    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparkml_tf.engine.base import RunContext
    from sparkml_tf.index.hnsw import HnswIndex
    from sparkml_tf.retrieval.jobs.index import BuildIndex
    from sparkml_tf.retrieval.jobs.recommend import Recommend
    from sparkml_tf.retrieval.remote import drop_seen, embed_lists, load_model
    from sparkml_tf.spark.session import SparkConfig
    from sparkml_tf.testing import RecordingTracker

    tmp = tempfile.mkdtemp(prefix="bench-recommend-")
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

    def single() -> float:
        start = time.perf_counter()
        fn = load_model("bench", f"{tmp}/export/1", threads=1)
        index = HnswIndex.load(f"{tmp}/index")
        offsets = np.arange(0, (args.users + 1) * args.history, args.history)
        flat = np.sort(history, axis=1).ravel()  # the job's lists are ordered too (by time); order does not matter to the mean
        rows = 0
        for start_row in range(0, args.users, args.batch):
            end_row = min(start_row + args.batch, args.users)
            part_offsets = offsets[start_row : end_row + 1] - offsets[start_row]
            part = flat[offsets[start_row] : offsets[end_row]]
            user_vectors = embed_lists(fn, part_offsets, part, args.batch)
            seen = part.reshape(-1, args.history)
            candidates, scores = index.query(user_vectors, args.k + args.history, num_threads=1)
            kept, _ = drop_seen(candidates, seen, args.k, scores)
            rows += int((kept >= 0).sum())
        assert rows == args.users * args.k
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
        s, j = single(), job(round_)
        single_rates.append(s)
        job_rates.append(j)
        ratios.append(j / (args.cores * s))
    print(json.dumps({
        "users": args.users, "items": args.items, "dim": args.dim, "history": args.history, "k": args.k, "cores": args.cores, "rounds": args.rounds,
        "single_process_1_thread_users_per_s": round(statistics.median(single_rates)),
        "recommend_job_users_per_s": round(statistics.median(job_rates)),
        "per_core_ratio_job_over_cores_x_single": round(statistics.median(ratios), 3),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }, indent=1))


if __name__ == "__main__":
    main()
