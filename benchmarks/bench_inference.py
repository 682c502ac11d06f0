"""Batch user embeddings on Spark: the Predict job's mapInArrow path vs pyspark's
``predict_batch_udf`` vs one process calling the model, on the same rows and SavedModel.

    python benchmarks/bench_inference.py --users 200000 --cores 2

The model is a light average-of-item-embeddings SavedModel (vocab 50k x 32), so the numbers
measure the data path, not TensorFlow. ``predict_batch_udf`` needs fixed-length arrays, so
every path gets the same rows padded to ``--max-items`` with -1 (ours also runs on the raw
variable-length lists). Each Spark path runs once to warm its Python workers (TensorFlow
import, model load), then ``--repeats`` timed runs; the median is reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def save_model(path: str, num_items: int, dim: int) -> str:
    import tensorflow as tf

    class Average(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.Variable(np.random.default_rng(0).normal(size=(num_items, dim)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64, name="items")])
        def serve(self, items):
            mask = tf.cast(items >= 0, tf.float32)
            vectors = tf.gather(self.table, tf.maximum(items, 0)) * mask[..., None]
            return {"user_embedding": tf.reduce_sum(vectors, 1) / tf.maximum(tf.reduce_sum(mask, 1, keepdims=True), 1.0)}

    module = Average()
    tf.saved_model.save(module, f"{path}/1", signatures={"serving_default": module.serve})
    return f"{path}/1"


def make_rows(users: int, num_items: int, mean_items: int, max_items: int, path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    lengths = np.clip(rng.poisson(mean_items, size=users), 1, max_items)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = rng.integers(num_items, size=int(offsets[-1]), dtype=np.int64)
    items = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    padded = np.full((users, max_items), -1, np.int64)
    padded[np.repeat(np.arange(users), lengths), np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)] = values
    table = pa.table({"user": pa.array([f"u{i}" for i in range(users)]), "items": items, "padded": pa.array(list(padded), pa.list_(pa.int64()))})
    pq.write_table(table, path)
    return padded


def timed(action, repeats: int) -> float:
    action()  # warm-up: worker start, TF import, model load
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--mean-items", type=int, default=20)
    parser.add_argument("--max-items", type=int, default=40)
    parser.add_argument("--num-items", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, FloatType

    from sparkml_tf.jobs.predict import embed_users
    from sparkml_tf.spark.inference_remote import embed, load_model
    from sparkml_tf.testing import local_spark

    scratch = tempfile.mkdtemp(prefix="bench-inference-")
    model_path = save_model(f"{scratch}/export", args.num_items, args.dim)
    padded = make_rows(args.users, args.num_items, args.mean_items, args.max_items, f"{scratch}/rows.parquet")
    print(f"{args.users} users, ~{args.mean_items} items each (padded to {args.max_items}), model {args.num_items}x{args.dim}, batch {args.batch_size}, local[{args.cores}]")

    # One process, no Spark: the ceiling.
    fn = load_model("bench", model_path)
    single_s = timed(lambda: embed(fn, padded, args.batch_size), args.repeats)
    single_rate = args.users / single_s

    spark = local_spark(cores=args.cores, app_name="bench-inference")
    rows = spark.read.parquet(f"{scratch}/rows.parquet").repartition(args.cores * 2).cache()
    rows.count()

    ours_padded = embed_users(rows.select("user", F.col("padded").alias("items")), model_path, args.batch_size)
    ours_ragged = embed_users(rows.select("user", "items"), model_path, args.batch_size)

    def make_predict_fn():
        import tensorflow as tf

        model = tf.saved_model.load(model_path)
        serve = model.signatures["serving_default"]

        def predict(items):
            return serve(items=tf.constant(items, dtype=tf.int64))["user_embedding"].numpy()

        return predict

    udf = predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()), batch_size=args.batch_size, input_tensor_shapes=[[args.max_items]])
    theirs = rows.select("user", udf("padded").alias("vector"))

    def run(df):
        return lambda: df.write.format("noop").mode("overwrite").save()

    ours_s = timed(run(ours_padded), args.repeats)
    ours_ragged_s = timed(run(ours_ragged), args.repeats)
    theirs_s = timed(run(theirs), args.repeats)
    spark.stop()

    ours_rate, ragged_rate, theirs_rate = args.users / ours_s, args.users / ours_ragged_s, args.users / theirs_s
    print(f"single process:            {single_rate:>10,.0f} users/s")
    print(f"predict_batch_udf:         {theirs_rate:>10,.0f} users/s")
    print(f"ours (mapInArrow, padded): {ours_rate:>10,.0f} users/s")
    print(f"ours (mapInArrow, ragged): {ragged_rate:>10,.0f} users/s")
    print(f"ours / predict_batch_udf:  {ours_rate / theirs_rate:.2f}  (goal >= 1.0)")
    print(f"ours / single process:     {ours_rate / single_rate:.2f}  (plain ratio)")
    print(f"per-core ratio:            {ours_rate / (args.cores * single_rate):.2f}  (ours / ({args.cores} x single process); goal >= 0.8)")


if __name__ == "__main__":
    main()
