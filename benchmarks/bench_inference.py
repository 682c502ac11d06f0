"""Batch user embeddings on Spark: the Predict job's mapInArrow path vs pyspark's
``predict_batch_udf`` vs one process calling the model, on the same rows and SavedModel.

    python benchmarks/bench_inference.py --users 200000 --cores 2

The model is a light average-of-item-embeddings SavedModel (vocab 50k x 32), so the numbers
measure the data path more than TensorFlow.

What is timed, and how:

* Single process (no Spark), in a fresh subprocess each: the model called by
  :func:`sparkml_tf.spark.inference_remote.embed` on the rows already in memory as a padded
  int64 matrix, ``--batch-size`` rows per call -- once with TensorFlow pinned to 1 intra/inter-op
  thread (the thread budget of one Spark Python worker: the denominator of the per-core ratio)
  and once with TensorFlow's default pools (all cores). It also times our mapInArrow function
  replayed in-process over the same rows as Arrow record batches (the Python side's ceiling).
* Spark: the rows (user, items array<long>, and the same items padded to ``--max-items`` with -1,
  which ``predict_batch_udf`` needs) are read, repartitioned to ``2 x cores`` partitions, cached
  and counted first; then only the inference stage is timed, its output consumed by the ``noop``
  writer. Each path runs once to warm up (Python worker start, TensorFlow import, model load),
  then ``--repeats`` timed runs; medians are reported. Ours runs with the Arrow batch size the
  Predict job sets for its stage (``--arrow-batch-rows``); ``predict_batch_udf`` runs at Spark's
  default and at ours, and its best is reported.
* Two identity ``mapInArrow`` functions bound what any Python-side work could reach: one returns
  its input batches, one returns (user, a constant ``--dim``-float vector) without a model.
* CPU seconds of the JVM and of the Python workers are read from ``/proc`` around each timed
  run (Linux only), to show where the cores go.

per-core ratio = spark rate / (cores x single-process 1-thread rate).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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


def make_rows(users: int, num_items: int, mean_items: int, max_items: int, path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    lengths = np.clip(rng.poisson(mean_items, size=users), 1, max_items)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = rng.integers(num_items, size=int(offsets[-1]), dtype=np.int64)
    items = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    padded = np.full((users, max_items), -1, np.int64)
    padded[np.arange(max_items) < lengths[:, None]] = values
    padded_array = pa.ListArray.from_arrays(pa.array(np.arange(0, (users + 1) * max_items, max_items, dtype=np.int32)), pa.array(padded.ravel()))
    table = pa.table({"user": pa.array([f"u{i}" for i in range(users)]), "items": items, "padded": padded_array})
    pq.write_table(table, path)


def timed(action, repeats: int, probe=None):
    """Median seconds of ``repeats`` runs after one warm-up run; with ``probe`` (a callable
    returning a dict of counters), also the median of each counter's change per run."""
    action()  # warm-up: worker start, TF import, model load
    times, deltas = [], []
    for _ in range(repeats):
        before = probe() if probe else {}
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
        after = probe() if probe else {}
        deltas.append({k: after[k] - before.get(k, 0.0) for k in after})
    cpu = {k: statistics.median(d[k] for d in deltas) for k in (deltas[0] if deltas else {})}
    return statistics.median(times), cpu


# ---------------------------------------------------------------- single process (a subprocess)


def single_process(model_path: str, rows_path: str, batch_size: int, threads: int, repeats: int, arrow_batch_rows: int) -> dict:
    import pyarrow.parquet as pq
    import tensorflow as tf

    from sparkml_tf.spark.inference_remote import configure_threads, embed, load_model, make_user_embedding_fn, padded_from_list_array

    configure_threads(threads)
    table = pq.read_table(rows_path, columns=["user", "items"]).combine_chunks()
    padded = padded_from_list_array(table.column("items"))
    fn = load_model("bench", model_path, threads=threads)
    model_s, _ = timed(lambda: embed(fn, padded, batch_size), repeats)
    result = {"threads": threads, "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(), "model_rate": len(padded) / model_s}
    if threads == 1:
        batches = table.to_batches(max_chunksize=arrow_batch_rows)
        worker = make_user_embedding_fn("bench", model_path, batch_size, threads=threads)
        replay_s, _ = timed(lambda: sum(b.num_rows for b in worker(iter(batches))), repeats)
        result["replay_rate"] = len(padded) / replay_s
    return result


def run_single_process(args, model_path: str, rows_path: str, threads: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--single-process", str(threads), "--model", model_path, "--rows", rows_path,
           "--batch-size", str(args.batch_size), "--repeats", str(args.repeats), "--arrow-batch-rows", str(args.arrow_batch_rows)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- CPU accounting from /proc


def _proc_table():
    table = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is field 3 (state): ppid = field 4, utime..cstime = fields 14..17
        table[int(pid)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)
    return table


def cpu_probe(jvm_pid: int):
    """A callable returning CPU seconds so far of the JVM (its own threads) and of its
    descendant processes (the pyspark daemon and its Python workers, reaped ones included)."""

    def probe():
        table = _proc_table()
        children = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        python, stack = 0.0, list(children.get(jvm_pid, []))
        while stack:
            pid = stack.pop()
            python += table[pid][1]
            stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{jvm_pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            jvm = sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")  # own threads only
        except OSError:
            jvm = 0.0
        return {"jvm": jvm, "python": python}

    return probe


# ---------------------------------------------------------------- Spark


def identity(batches):
    yield from batches


def make_constant_vectors(dim: int):
    def constant_vectors(batches):
        import pyarrow as pa

        from sparkml_tf.spark.inference_remote import float_list_array

        for batch in batches:
            yield pa.RecordBatch.from_arrays([batch.column(0), float_list_array(np.zeros((batch.num_rows, dim), np.float32))], names=["user", "vector"])

    return constant_vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--mean-items", type=int, default=20)
    parser.add_argument("--max-items", type=int, default=40)
    parser.add_argument("--num-items", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per model call")
    parser.add_argument("--arrow-batch-rows", type=int, default=None, help="Arrow batch rows for our stage (default: the Predict job's)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single-process", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from sparkml_tf.jobs.predict import ARROW_BATCH_ROWS, arrow_batch_rows, embed_users

    if args.arrow_batch_rows is None:
        args.arrow_batch_rows = ARROW_BATCH_ROWS
    if args.single_process is not None:
        print(json.dumps(single_process(args.model, args.rows, args.batch_size, args.single_process, args.repeats, args.arrow_batch_rows)))
        return

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    scratch = tempfile.mkdtemp(prefix="bench-inference-")
    rows_path = f"{scratch}/rows.parquet"
    # The model is written by a subprocess, so this driver never starts TensorFlow's runtime.
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
                    f"from bench_inference import save_model; save_model({scratch + '/export'!r}, {args.num_items}, {args.dim})"],
                   check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    model_path = f"{scratch}/export/1"
    make_rows(args.users, args.num_items, args.mean_items, args.max_items, rows_path)
    print(f"{args.users} users, ~{args.mean_items} items each (max {args.max_items}), model {args.num_items}x{args.dim}, "
          f"{args.batch_size} rows per model call, Arrow batches of {args.arrow_batch_rows} rows (ours), local[{args.cores}], "
          f"median of {args.repeats} after a warm-up", flush=True)

    single_1 = run_single_process(args, model_path, rows_path, 1)
    single_all = run_single_process(args, model_path, rows_path, 0)

    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import ArrayType, FloatType

    from sparkml_tf.testing import local_spark

    spark = local_spark(cores=args.cores, app_name="bench-inference")
    probe = cpu_probe(int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()))
    rows = spark.read.parquet(rows_path).repartition(args.cores * 2).cache()
    assert rows.count() == args.users

    def make_predict_fn():
        import tensorflow as tf

        model = tf.saved_model.load(model_path)
        serve = model.signatures["serving_default"]

        def predict(items):
            return serve(items=tf.constant(items, dtype=tf.int64))["user_embedding"].numpy()

        return predict

    udf = predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()), batch_size=args.batch_size, input_tensor_shapes=[[args.max_items]])
    ours_batch = lambda: arrow_batch_rows(spark, args.arrow_batch_rows)  # noqa: E731
    default_batch = lambda: arrow_batch_rows(spark, None)  # noqa: E731
    paths = [  # name, DataFrame, Arrow batch setting
        ("identity mapInArrow (user, items)", rows.select("user", "items").mapInArrow(identity, "user string, items array<long>"), ours_batch),
        ("constant vectors, no model", rows.select("user", "items").mapInArrow(make_constant_vectors(args.dim), "user string, vector array<float>"), ours_batch),
        ("ours, ragged items", embed_users(rows.select("user", "items"), model_path, args.batch_size), ours_batch),
        ("ours, padded items", embed_users(rows.select("user", rows.padded.alias("items")), model_path, args.batch_size), ours_batch),
        ("predict_batch_udf, Spark's Arrow batches", rows.select("user", udf("padded").alias("vector")), default_batch),
        ("predict_batch_udf, our Arrow batches", rows.select("user", udf("padded").alias("vector")), ours_batch),
    ]
    results = {}
    for name, df, batching in paths:
        def action(df=df, batching=batching):
            with batching():
                df.write.format("noop").mode("overwrite").save()

        seconds, cpu = timed(action, args.repeats, probe)
        results[name] = (args.users / seconds, cpu)
        print(f"  {name}: {args.users / seconds:,.0f} users/s", flush=True)
    spark.stop()

    def line(name, rate, cpu=None, note=""):
        share = ""
        if cpu:
            users_s = args.users / rate
            share = f"{cpu['jvm']:5.2f} {cpu['python']:6.2f} {(cpu['jvm'] + cpu['python']) / users_s:5.2f}"
        print(f"{name:<44} {rate:>11,.0f}  {share:<19} {note}")

    print()
    print(f"{'path':<44} {'users/s':>11}  {'cpu-s: jvm python cores':<19}")
    line("single process, TF 1 thread", single_1["model_rate"], note="model on in-memory padded batches")
    line("single process, TF default threads", single_all["model_rate"], note=f"(intra-op pool {single_all['tf_intra_op'] or 'auto'})")
    line("single process, our mapInArrow fn replayed", single_1["replay_rate"], note="1 thread, in-memory Arrow batches")
    for name, (rate, cpu) in results.items():
        line(f"local[{args.cores}] {name}", rate, cpu)
    ours = results["ours, ragged items"][0]
    ours_padded = results["ours, padded items"][0]
    theirs = max(results["predict_batch_udf, Spark's Arrow batches"][0], results["predict_batch_udf, our Arrow batches"][0])
    ceiling = results["identity mapInArrow (user, items)"][0]
    no_model = results["constant vectors, no model"][0]
    per_core = lambda rate: rate / (args.cores * single_1["model_rate"])  # noqa: E731
    print()
    print(f"ours (ragged) / predict_batch_udf (best):   {ours / theirs:5.2f}   goal >= 1.0")
    print(f"ours (padded) / predict_batch_udf (best):   {ours_padded / theirs:5.2f}")
    print(f"per-core, ours (ragged):                    {per_core(ours):5.2f}   = {ours:,.0f} / ({args.cores} x {single_1['model_rate']:,.0f}); goal >= 0.8")
    print(f"per-core, predict_batch_udf (best):         {per_core(theirs):5.2f}")
    print(f"per-core, constant vectors (no model):      {per_core(no_model):5.2f}   <- the bound for any model path with this output")
    print(f"per-core, identity mapInArrow:              {per_core(ceiling):5.2f}")
    print(f"ours / single process, TF default threads:  {ours / single_all['model_rate']:5.2f}")


if __name__ == "__main__":
    main()
