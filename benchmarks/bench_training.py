"""Training throughput: a plain TensorFlow process against our trainer on 1 and 2 barrier workers.

    python benchmarks/bench_training.py --repeats 3

The same model (the default retrieval model of conf/movielens/config.json: LinearAE, 512 dims,
dropout 0.5, squared error, over ``--items`` items), the same batch (``--batch-size``, global), the
same generated users (``--users``, about ``--items-per-user`` items each, as the default config's
generated MovieLens after its rating filter), the same Adam and learning-rate schedule:

* (a) ``plain``: one Python process, TensorFlow on all cores, the users decoded into memory,
  shuffled and padded into batches before the clock starts, a ``tf.function`` train step;
* (b) ``barrier 1``: ``sparkml_tf.retrieval.trainer.train`` through ``SparkBarrierLauncher(1)``
  on ``local[C]`` (C = the cores): the custom loop, TFRecord shards, checkpoints, validation;
* (c) ``barrier 2``: the same with 2 workers (MultiWorkerMirroredStrategy, a ring all-reduce of
  every gradient each step), each worker half the batch.

Examples/s over the same ``--rounds`` x ``--steps`` steps, after ``--steps`` steps left out
(tracing, warm-up, the first pass that fills the trainer's cache); for (b) and (c) the loop's own
count (training steps only: validation and the round-end checkpoint are left out, as (a) has
neither), with the CPU time those steps took (every thread of every worker). Each variant runs in
a fresh process; repeats are interleaved (a, b, c, a, b, c, ...) and the medians compared with
the goals b/a >= 0.95 and c/a >= 0.9. CPU ms a step is the steadier figure on a shared machine:
what a variant costs beyond (a) shows there even when the wall-clock rates drift.

Then the all-reduce: bytes per step (every gradient, float32), and, in 2 barrier workers set up as
the trainer sets them up (same net, Adam, half the batch each, batches in memory), the ms of a
step's gradients alone, of a whole step (gradients, all-reduce, Adam), of the all-reduce alone and
of an all-reduce of one float; from these an estimate of throughput on N machines (its assumptions
are printed with it).

The load average is printed at the start, after every run and at the end, with the machine lines of
``benchmarks/machine.py`` (its rule for a busy machine, flagged by a WARNING line: label such
figures as busy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MODEL = {"type": "sparkml_tf.retrieval.LinearAE", "embedding_dim": 512, "dropout": 0.5, "l2": 0.0, "loss": "mse", "seed": 0, "eval": None}
GOALS = {"b/a": 0.95, "c/a": 0.9}


def load() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


def schedule_settings(args) -> Dict[str, Any]:
    """One warm-up round of ``steps`` steps, then ``rounds`` measured rounds; no early stop."""
    return {
        "batch_size": args.batch_size, "max_steps": args.steps * (1 + args.rounds), "eval_every_steps": args.steps,
        "patience": 10**6, "learning_rate": 1e-3,
    }


# -- (a) the plain process -------------------------------------------------------------------------


def memory_batches(dataset: str, batch: int, count: int, seed: int = 0):
    """``count`` batches of ``batch`` training users in memory (shuffled, each padded with -1 to its
    longest user, as the trainer pads), and the number of items."""
    import numpy as np
    import tensorflow as tf

    from sparkml_tf.retrieval.layout import RetrievalDataset
    from sparkml_tf.retrieval.records import parse_train

    layout = RetrievalDataset(dataset)
    users = [r.numpy() for r in tf.data.TFRecordDataset(layout.shard_files("train"), compression_type="GZIP").map(parse_train)]
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(users)) for _ in range(count * batch // len(users) + 1)])
    batches = []
    for i in range(count):
        rows = [users[j] for j in order[i * batch : (i + 1) * batch]]
        padded = np.full((batch, max(len(r) for r in rows)), -1, np.int64)
        for k, r in enumerate(rows):
            padded[k, : len(r)] = r
        batches.append(tf.constant(padded))
    return batches, int(layout.read_stats()["num_items"])


def plain(args) -> Dict[str, Any]:
    """(a), in this process: examples/s of a plain tf.function loop over in-memory batches."""
    import keras
    import numpy as np
    import tensorflow as tf

    from sparkml_tf.config import build
    from sparkml_tf.retrieval.layout import RetrievalDataset
    from sparkml_tf.train.schedule import keras_schedule, plan

    keras.utils.set_random_seed(0)
    layout = RetrievalDataset(args.dataset)
    schedule = plan(int(layout.read_stats()["num_train_examples"]), 1, schedule_settings(args))
    batch = args.batch_size
    batches, num_items = memory_batches(args.dataset, batch, schedule.max_steps)

    spec = build({k: v for k, v in MODEL.items() if k != "eval"}, keys=["model"])
    net = spec.build(num_items, None)
    variables = list(net.trainable_variables)
    optimizer = keras.optimizers.Adam(learning_rate=keras_schedule(keras, 1e-3, schedule))
    optimizer.build(variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64)])
    def train_step(items):
        with tf.GradientTape() as tape:
            value = net.loss({"items": items}, training=True, step=step)
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
        step.assign_add(1)
        return value

    skip = args.steps
    for items in batches[:skip]:
        value = train_step(items)
    float(value)
    start, cpu_start = time.perf_counter(), time.process_time()
    for items in batches[skip:]:
        value = train_step(items)
    float(value)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    steps = len(batches) - skip
    return {"examples_per_s": steps * batch / seconds, "step_ms": 1000 * seconds / steps, "cpu_ms": 1000 * cpu_seconds / steps, "steps": steps, "batch": batch,
            "gradient_bytes": int(sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)),
            "gradient_shapes": [list(map(int, v.shape)) for v in variables]}


def run_plain(args) -> Dict[str, Any]:
    """:func:`plain` in a fresh Python process (its own TensorFlow runtime, as the barrier workers get)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    command = [sys.executable, __file__, "--plain-out", out, "--dataset", args.dataset, "--batch-size", str(args.batch_size),
               "--steps", str(args.steps), "--rounds", str(args.rounds)]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode:  # TensorFlow's start-up noise is shown only when the run failed
        raise RuntimeError(f"the plain run failed (exit {done.returncode}):\n{done.stdout[-4000:]}")
    with open(out) as f:
        result = json.load(f)
    os.unlink(out)
    return result


# -- (b), (c) the trainer through the barrier launcher ----------------------------------------------


def run_trainer(args, spark, workers: int, tag: str, extra: Dict[str, Any]) -> Dict[str, Any]:
    from sparkml_tf.retrieval.trainer import train_worker
    from sparkml_tf.spark.barrier import SparkBarrierLauncher
    from sparkml_tf.train.launch import build_specs

    run = tempfile.mkdtemp(prefix=f"bench-{tag}-", dir=args.work)
    settings = {
        "dataset_dir": args.dataset, "export_dir": f"{run}/export", "embeddings_dir": f"{run}/embeddings", "checkpoint_dir": f"{run}/ckpt",
        "model": MODEL, "loss": None, "checkpoint_every_steps": 200, "seed": 0, **schedule_settings(args), **extra,
    }
    try:
        summary = SparkBarrierLauncher(workers, spark=spark).run(train_worker, build_specs(settings))
    finally:
        shutil.rmtree(run, ignore_errors=True)  # ~150 MB of checkpoints and export a run
    measured = summary["history"][1:]  # round 0: tracing, warm-up, the first pass that fills the cache
    steps = sum(h["steps"] for h in measured)
    seconds = sum(h["train_seconds"] for h in measured)
    cpu_ms = 1000 * sum(h["train_cpu_seconds"] for h in measured) / steps * workers  # rank 0's; every worker does the same work
    return {"examples_per_s": steps * summary["global_batch_size"] / seconds, "step_ms": 1000 * seconds / steps, "cpu_ms": cpu_ms, "steps": steps,
            "evaluation_s": statistics.median(h["seconds"] - h["train_seconds"] for h in measured)}


def collective_worker(settings: Dict[str, Any]) -> Dict[str, Any]:
    """On each of 2 barrier workers, as the trainer sets them up (threads, strategy, the same net and
    Adam, half the batch each, batches already in memory): ms per step of (1) the gradients alone, no
    collective; (2) a whole step: gradients, their all-reduce, Adam; (3) the all-reduce alone, of
    tensors of the gradients' shapes; (4) an all-reduce of one float. Interleaved, medians; rank 0's figures."""
    from sparkml_tf.spark.executor import configure_tf_threads

    threads = settings.get("tf_threads")
    configure_tf_threads(threads)
    import keras
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras.utils.set_random_seed(0)
    from sparkml_tf.config import build

    rank = strategy.cluster_resolver.task_id
    batches, num_items = memory_batches(settings["dataset"], settings["batch"], settings["steps"], seed=rank)
    spec = build({k: v for k, v in MODEL.items() if k != "eval"}, keys=["model"])
    with strategy.scope():
        net = spec.build(num_items, None)
        variables = list(net.trainable_variables)
        optimizer = keras.optimizers.Adam(learning_rate=1e-3)
        optimizer.build(variables)
    grads_like = [tf.random.normal(v.shape) for v in variables]

    def gradients(items):
        with tf.GradientTape() as tape:
            value = net.loss({"items": items}, training=True) / strategy.num_replicas_in_sync
        return tape.gradient(value, variables)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64)])
    def local_step(items):  # (1) no collective: the gradients, summed so that every one is computed
        return strategy.run(lambda x: tf.add_n([tf.reduce_sum(g) for g in gradients(x)]), args=(items,))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64)])
    def full_step(items):  # (2) the trainer's step without its input pipeline
        def fn(x):
            optimizer.apply_gradients(zip(gradients(x), variables))
            return tf.constant(0.0)

        return strategy.run(fn, args=(items,))

    @tf.function
    def allreduce():  # (3)
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads_like))

    @tf.function
    def scalar():  # (4) one float: the latency of a collective
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.constant(1.0)))

    def timed(fn, with_batch):
        out = None
        start = time.perf_counter()
        for items in batches:
            out = fn(items) if with_batch else fn()
        tf.nest.map_structure(lambda t: t.numpy(), strategy.experimental_local_results(out))
        return 1000 * (time.perf_counter() - start) / len(batches)

    figures: Dict[str, List[float]] = {"local": [], "full": [], "allreduce": [], "scalar": []}
    for i in range(settings["repeats"] + 1):  # the first repeat traces and warms up: left out
        for name, fn, with_batch in (("local", local_step, True), ("full", full_step, True), ("allreduce", allreduce, False), ("scalar", scalar, False)):
            ms = timed(fn, with_batch)
            if i:
                figures[name].append(ms)
    return {**{name: statistics.median(values) for name, values in figures.items()}, "threads": threads or os.cpu_count()}


def measure_collective(args, spark) -> Dict[str, float]:
    from sparkml_tf.spark.barrier import SparkBarrierLauncher

    settings = {"dataset": args.dataset, "batch": args.batch_size // 2, "steps": 10, "repeats": 5}
    return SparkBarrierLauncher(2, spark=spark).run(collective_worker, settings)


# -- the scaling estimate ---------------------------------------------------------------------------


def scaling(a: Dict[str, Any], c: Dict[str, Any], collective: Dict[str, float], batch: int) -> List[str]:
    """What the all-reduce costs, and the step time on N machines: compute of B/N examples + Adam +
    a ring all-reduce of every gradient."""
    size = a["gradient_bytes"]
    t_a, ar = a["step_ms"], collective["allreduce"]
    adam = max(collective["full"] - collective["local"] - ar, 0.0)  # on one core; the same whole update on every worker
    fixed = adam / 2  # on this machine's 2 cores, as (a) runs it
    per_example = max(t_a - fixed, 0.0) / batch
    # A ring all-reduce of S bytes over N workers sends and receives 2 (N-1)/N S per worker: S for N = 2.
    rate = size / (ar / 1000)
    lines = [
        f"all-reduce per step: {size / 1e6:.1f} MB of float32 gradients ({sum(1 for _ in a['gradient_shapes'])} tensors, one pack); "
        "a ring all-reduce sends and receives 2(N-1)/N of it per worker",
        f"in a (c) worker (half batch, {collective.get('threads', 1)} thread(s), both workers at once): gradients alone {collective['local']:.1f} ms, "
        f"all-reduce alone {ar:.1f} ms ({rate / 1e9:.2f} GB/s each way per worker over loopback), whole step without the input "
        f"pipeline {collective['full']:.1f} ms, so the all-reduce is {ar / collective['full']:.0%} of it; "
        f"an all-reduce of one float (the latency of a collective) {collective['scalar']:.1f} ms",
        f"(c) in the trainer: {c['step_ms']:.1f} ms a step against (a)'s {t_a:.1f} ms",
        "estimate for N machines like this one (2 cores each, one worker each), the global batch fixed at "
        f"{batch} (the schedule keeps it): step = {fixed:.1f} ms (Adam, on every worker) + {per_example * 1000:.0f} us x {batch}/N examples "
        "+ 2(N-1)/N x gradient bytes / bandwidth; input pipeline, latency and stragglers left out. Bandwidth: the gRPC ring's rate "
        "measured here (pessimistic: both workers' gRPC on the same 2 busy cores) or a link's line rate (optimistic):",
    ]
    rates = ((f"{rate / 1e9:.2f} GB/s as measured", rate), ("10 GbE line rate", 1.25e9), ("25 GbE line rate", 3.125e9))
    for name, bandwidth in rates:
        row = []
        for n in (1, 2, 4, 8, 16):
            t = fixed + per_example * batch / n + (1000 * 2 * (n - 1) / n * size / bandwidth if n > 1 else 0.0)
            row.append(f"N={n} {batch / t * 1000:,.0f}/s ({t_a / t:.2f}x)")
        lines.append(f"  {name}: " + ", ".join(row))
    for name, bandwidth in rates[:2]:  # weak scaling: each machine keeps (a)'s whole batch, the global batch grows N-fold
        row = []
        for n in (2, 4, 8, 16):
            t = t_a + 1000 * 2 * (n - 1) / n * size / bandwidth
            row.append(f"N={n} {n * batch / t * 1000:,.0f}/s ({n * t_a / t:.2f}x)")
        lines.append(f"  {name}, {batch} examples per machine (global batch N x {batch}): " + ", ".join(row))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5400)
    parser.add_argument("--items", type=int, default=3700)
    parser.add_argument("--items-per-user", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40, help="measured steps per round (and the warm-up steps left out)")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds of --steps steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--variants", nargs="+", default=["a", "b", "c"],
        help="a, b, c, or b/c with extra trainer settings, e.g. 'c:{\"tf_threads\": 2}' (compared side by side, interleaved)",
    )
    parser.add_argument("--no-allreduce", action="store_true")
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--plain-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_out:  # the child of run_plain
        result = plain(args)
        with open(args.plain_out, "w") as f:
            json.dump(result, f)
        return

    from machine import BUSY_SHARE, LoadWatch

    watch = LoadWatch()
    print(f"start: load average {load()} on {watch.cpus} CPUs", flush=True)
    if watch.start[0] > BUSY_SHARE * watch.cpus:
        print(f"WARNING: busy machine at the start (1-min load average above {BUSY_SHARE:g} x {watch.cpus} CPUs): label these figures as busy", flush=True)

    from sparkml_tf.retrieval.toy import write_toy_dataset
    from sparkml_tf.testing import local_spark

    args.work = tempfile.mkdtemp(prefix="sparkml-tf-bench-training-")
    if not args.dataset:
        args.dataset = f"{args.work}/dataset"
        write_toy_dataset(args.dataset, num_users=args.users, num_items=args.items, num_shards=2, num_validation=200, items_per_user=args.items_per_user)
    cores = os.cpu_count() or 1
    spark = local_spark(cores=cores, app_name="bench-training")
    import pyspark.cloudpickle

    pyspark.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # collective_worker, shipped to the workers

    names = {"a": "(a) plain process", "b": "(b) barrier, 1 worker", "c": "(c) barrier, 2 workers"}
    for v in args.variants:
        names.setdefault(v, f"{names[v[0]]} {v[2:]}")
    results: Dict[str, List[Dict[str, Any]]] = {v: [] for v in args.variants}
    for i in range(args.repeats):  # interleaved, so drift in the machine's load hits every variant alike
        for variant in args.variants:
            kind, extra = variant[0], json.loads(variant[2:] or "{}")
            r = run_plain(args) if kind == "a" else run_trainer(args, spark, 1 if kind == "b" else 2, f"{kind}{i}", extra)
            results[variant].append(r)
            print(f"repeat {i} {names[variant]}: {r['examples_per_s']:,.0f} examples/s ({r['step_ms']:.1f} ms/step, {r['cpu_ms']:.0f} CPU ms/step), "
                  f"load {load()}", flush=True)

    medians = {k: statistics.median(r["examples_per_s"] for r in v) for k, v in results.items()}
    print(f"\nusers={args.users} items={args.items} batch={args.batch_size} model LinearAE(512) mse, {args.steps * args.rounds} steps measured "
          f"after {args.steps} left out, {args.repeats} interleaved repeats")
    for key, values in results.items():
        cpu = statistics.median(r["cpu_ms"] for r in values)
        print(f"{names[key]:<24}: {medians[key]:10,.0f} examples/s  {[round(r['examples_per_s']) for r in values]}, {cpu:.0f} CPU ms a step (all processes)")
    for key in medians:
        if key != "a" and "a" in medians:
            ratio, goal = medians[key] / medians["a"], GOALS[f"{key[0]}/a"]
            print(f"ratio {key}/a: {ratio:.3f} (goal >= {goal}: {'met' if ratio >= goal else 'NOT met'})")
    if "c" in results and "a" in results and not args.no_allreduce:
        a = min(results["a"], key=lambda r: abs(r["examples_per_s"] - medians["a"]))
        c = min(results["c"], key=lambda r: abs(r["examples_per_s"] - medians["c"]))
        collective = measure_collective(args, spark)
        print()
        for line in scaling(a, c, collective, args.batch_size):
            print(line)
    print()
    print(watch.report())
    spark.stop()
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
