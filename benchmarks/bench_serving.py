"""Online CTR scoring latency: the in-process :class:`sparkml_tf.ranking.scorer.Scorer` on a Wide &
Deep model of production size, against a plain ``tf.function`` over the same weights.

    .venv/bin/python benchmarks/bench_serving.py            # about 7 minutes on 2 busy cores
    .venv/bin/python benchmarks/bench_serving.py --quick    # about 2 minutes, noisier tails

The model: 13 numeric + 47 categorical fields (60 deep features: 10-dim embeddings, 613 inputs
into 3 x 256 ReLU and one logit) and 20 pair crosses (80 wide features), exported with
:func:`sparkml_tf.serving.export.export_ctr_model` (warm-up records included). A request is 100
candidate rows: raw rows (strings for categorical fields, some out of vocabulary or missing;
floats for numeric ones, some missing) or the same rows already encoded.

What is timed (each call separately, ``time.perf_counter``):

* model call: ``Scorer.score_ids`` on encoded inputs, with and without XLA; the reference is a
  ``tf.function(jit_compile=True)`` (and a plain ``tf.function``) over the exported net's own
  weights, called with the same numpy inputs converted to tensors, result back to numpy. Also
  the public ``signatures["serving_default"](**inputs)`` call, to show what the scorer's direct
  call saves.
* raw rows to scores: ``Scorer.score`` on raw rows; and encoding alone, by the scorer's
  row encoder and by ``Encoder.encode_rows`` (pandas), to show where the time goes.
* on 1 and 2 client threads (each thread records its own calls; throughput = rows / wall time);
* during a version swap: one client thread scores raw rows in a loop while a new version is
  renamed into the export directory and the scorer's poller loads, warms up and switches to it;
  p99 and max of the calls that started between the rename and 0.2 s after the switch, against
  the calls of the second before the rename (steady state), and against the p99 of steady windows
  holding as many calls as the swap's window ("same n p99": the p99 of ~60 calls is near their
  maximum, so this tells a spike from the machine's own tail). The scorers run with their default
  batch sizes (what a swap warms up and, with XLA, compiles). The versions alternate between two
  trainings of one model (same program, other weights), so the scorer loads them by their
  weights only; every other swap runs with ``weight_swap=False`` and loads the version in full
  (alternating, so that load from other work weighs on both alike).
* garbage collection: every collection the interpreter triggers while the paths and swaps run
  (``gc.callbacks``: count and longest pause per generation), and at the end one full
  ``gc.collect()``, which is what a generation-2 collection costs whenever the interpreter starts
  one (the shortest of 3, so that preemption by other work does not count). The first scorer
  freezes the heap after loading (``gc_freeze``); ``--no-gc-freeze`` shows the figures without.
  What the bench itself makes after that freeze (the XLA scorer, the reference functions, the
  full loads of the swaps) stays collectable and is walked. So the same is measured in a process
  that holds one scorer, as a server does (``server_process``: one client thread, weights-only
  and full loads alternating, then a full collection); the goal line takes the longest of the
  collections while serving and in weights-only swaps, in both processes, and that process's
  full collection.

The load average (1, 5, 15 min) and the CPU count are printed at the start and at the end; when
the 1-minute load is above half the CPU count, a WARNING says the figures come from a busy
machine: tails and swap figures then measure the other work as much as the scorer.

Every path is warmed up first, then ``--repeats`` rounds run all paths in turn (round-robin, so
load from other work on the machine weighs on every path alike); the table shows medians over
rounds of each round's percentiles. p99.9 needs >= 1000 calls a round to mean anything (the
full run makes 2000).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List

import numpy as np

ROWS = 100
GOALS = {
    "model call p50 ms": 1.0,
    "model call p99.9 ms": 3.0,
    "raw rows p50 ms": 2.0,
    "swap p99 ms": 4.0,
    "swap max ms": 10.0,
}
GC_PAUSE_GOAL_MS = 1.0


def feature_index(vocab: int, numeric: int = 13, categorical: int = 47, crosses: int = 20, buckets: int = 10_000):
    from sparkml_tf.ranking.features.feature_index import FeatureIndex

    boundaries = sorted({round(float(b), 3) for b in np.expm1(np.linspace(0, 10, 24))})
    fields = [{"name": f"I{i}", "kind": "numeric", "boundaries": boundaries} for i in range(1, numeric + 1)]
    fields += [{"name": f"C{i}", "kind": "categorical", "vocab": [f"{i}-{j:x}" for j in range(vocab)]} for i in range(1, categorical + 1)]
    pairs = [{"fields": [f"C{i}", f"C{i + 1}"], "buckets": buckets} for i in range(1, crosses + 1)]
    return FeatureIndex(fields, pairs)


def export_models(index, directory: str, seeds=(1, 2)) -> Dict[int, object]:
    """One export per seed (``<directory>/1``, ``/2``); returns the nets by version."""
    import tensorflow as tf

    from sparkml_tf.ranking.export import export_ctr_model
    from sparkml_tf.ranking.models.wide_deep import WideDeep

    nets = {}
    for version, seed in enumerate(seeds, start=1):
        spec = WideDeep(embedding_dim=10, hidden_units=[256, 256, 256], seed=seed)
        net = spec.build(index)
        net.wide_weights.assign(0.1 * tf.random.stateless_normal(net.wide_weights.shape, seed=[seed, 0]))  # zeros at init
        export_ctr_model(spec, net, index, directory, warmup_records=100)
        nets[version] = net
    return nets


def raw_requests(index, count: int, vocab: int, seed: int = 0) -> List[List[dict]]:
    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(count):
        rows = []
        for _ in range(ROWS):
            row = {}
            for field in index.fields:
                name = field["name"]
                if rng.random() < 0.05:
                    row[name] = None
                elif field["kind"] == "numeric":
                    row[name] = float(np.round(rng.exponential(30.0), 2))
                else:
                    row[name] = f"{name[1:]}-{int(rng.integers(0, vocab * 1.1)):x}"  # ~10% out of vocabulary
            rows.append(row)
        requests.append(rows)
    return requests


def timed_calls(fn: Callable[[int], object], calls: int, threads: int, count: int):
    """``calls`` calls of ``fn(request number)`` spread over ``threads`` threads: (latencies in
    ms, wall seconds, CPU seconds of the whole process: TensorFlow's pool threads included)."""
    latencies: List[List[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def worker(t: int) -> None:
        out = latencies[t]
        barrier.wait()
        for i in range(t, calls, threads):
            start = time.perf_counter()
            fn(i % count)
            out.append((time.perf_counter() - start) * 1e3)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for thread in pool:
        thread.join()
    return np.concatenate([np.asarray(x) for x in latencies]), time.perf_counter() - start, time.process_time() - cpu


def summary(latencies: np.ndarray, wall: float, cpu: float) -> Dict[str, float]:
    return {
        "cpu ms": cpu / len(latencies) * 1e3,
        "p50": float(np.percentile(latencies, 50)),
        "p99": float(np.percentile(latencies, 99)),
        "p99.9": float(np.percentile(latencies, 99.9)),
        "max": float(latencies.max()),
        "rows/s": len(latencies) * ROWS / wall,
    }


PHASE = {"now": "serving"}  # what ran while a collection happened: "serving", "swap, weights only", "swap, loaded in full"


def measure_swaps(scorer, export_dir: str, sources: Dict[int, str], swaps: int, rows: List[List[dict]]) -> Dict[bool, Dict[str, float]]:
    """For each ``weight_swap`` setting (True, then False, alternating, so that load from other work
    weighs on both alike): median over ``swaps`` version swaps of p99 / max latency of raw-row calls
    during each swap and during the second before it."""
    records: List[tuple] = []  # (start, latency ms)
    stop = threading.Event()
    # The client notes when the new version serves, so that this thread waits on an Event instead
    # of polling scorer.version: a polling thread takes the GIL ~1000 times a second in the swap
    # window only (not in the steady one), and would add its own waits to the swap's figures.
    switch = {"version": None, "at": None}
    switched_event = threading.Event()

    def client() -> None:
        i = 0
        while not stop.is_set():
            start = time.perf_counter()
            scorer.score(rows[i % len(rows)])
            records.append((start, (time.perf_counter() - start) * 1e3))
            i += 1
            if switch["version"] is not None and not switched_event.is_set() and scorer.version == switch["version"]:
                switch["at"] = time.perf_counter()
                switched_event.set()

    thread = threading.Thread(target=client)
    thread.start()
    keys = ("steady p99", "steady max", "steady p99 same n", "swap p99", "swap max", "swap seconds")
    by_mode: Dict[bool, Dict[str, List[float]]] = {mode: {key: [] for key in keys} for mode in (True, False)}
    try:
        for s in range(2 * swaps):
            mode = s % 2 == 0
            scorer.weight_swap = mode
            stats = by_mode[mode]
            version = scorer.version + 1
            tmp = f"{export_dir}/.{version}.tmp"
            shutil.copytree(sources[2 - version % 2], tmp)  # written before the window, like a finished export
            switched_event.clear()
            switch["version"] = version
            time.sleep(1.0)
            published = time.perf_counter()
            PHASE["now"] = f"swap, {'weights only' if mode else 'loaded in full'}"
            os.rename(tmp, f"{export_dir}/{version}")
            if not switched_event.wait(timeout=120):
                raise RuntimeError(f"version {version} was not served within 120 s: {scorer.last_error}")
            switched = switch["at"]
            time.sleep(0.2)
            PHASE["now"] = "serving"
            steady = np.array([lat for start, lat in records if published - 1.0 <= start < published])
            during = np.array([lat for start, lat in records if published <= start < switched + 0.2])
            stats["steady p99"].append(float(np.percentile(steady, 99)))
            stats["steady p99 same n"].append(same_size_p99(steady, len(during)))
            stats["steady max"].append(float(steady.max()))
            stats["swap p99"].append(float(np.percentile(during, 99)))
            stats["swap max"].append(float(during.max()))
            stats["swap seconds"].append(switched - published)
            loaded_by = scorer.metrics()["loaded_by"]
            if loaded_by != ("weights" if mode else "full"):
                raise RuntimeError(f"version {version} was loaded by {loaded_by} with weight_swap={mode}; see the log")
    finally:
        stop.set()
        thread.join()
        scorer.weight_swap = True
    return {mode: {key: statistics.median(values) for key, values in stats.items()} for mode, stats in by_mode.items()}


def same_size_p99(steady: np.ndarray, n: int) -> float:
    """The p99 of ``n`` calls of steady serving: the median over the consecutive, disjoint windows of
    ``n`` calls in ``steady`` of each window's p99. A swap window holds fewer calls than the second
    before it, and the p99 of ~60 calls is close to their maximum: this is what the swap's p99 is
    compared with to tell a spike from the machine's own tail."""
    windows = [steady[i : i + n] for i in range(0, len(steady) - n + 1, n)] or [steady]
    return float(statistics.median(np.percentile(w, 99) for w in windows))


def watch_gc() -> Dict[str, List[tuple]]:
    """The interpreter's garbage collections from now on: generation -> (wall ms, CPU ms of the
    collecting thread, what ran then: ``PHASE``) of each. A full collection over
    TensorFlow's and the models' ~400k objects, unless frozen, is a latency spike; wall minus CPU
    is time the thread was preempted."""
    pauses: Dict[str, List[tuple]] = {"gen0": [], "gen1": [], "gen2": []}
    started = threading.local()

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started.at = (time.perf_counter(), time.thread_time(), PHASE["now"])
        else:
            wall, cpu, during = started.at
            pauses[f"gen{info['generation']}"].append(((time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3, during))

    gc.callbacks.append(callback)
    return pauses


def full_collection_ms() -> tuple:
    """(wall ms, CPU ms of this thread) of a full ``gc.collect()``, the shortest of 3: the cost of
    walking the heap, less preemption by other work."""
    runs = []
    for _ in range(3):
        start, cpu = time.perf_counter(), time.thread_time()
        gc.collect()
        runs.append(((time.perf_counter() - start) * 1e3, (time.thread_time() - cpu) * 1e3))
    return min(runs)


def server_process(source: str, vocab: int, swaps: int, tf_threads: int, gc_freeze: bool) -> None:
    """``--server-process``: the garbage collector's view of a process that holds one scorer, as a
    server does (the benchmark's own process also holds a second scorer, reference functions and
    its records). One client thread scores raw rows while the scorer loads ``2 x swaps`` versions,
    weights-only and full loads alternating; prints, as one JSON line, each collection's longest
    pause by generation and by what ran then, and a full ``gc.collect()`` at the end (shortest of 3)."""
    from sparkml_tf.spark.executor import configure_tf_threads

    configure_tf_threads(tf_threads)
    from sparkml_tf.ranking.scorer import Scorer

    scratch = tempfile.mkdtemp(prefix="bench-serving-server-")
    try:
        shutil.copytree(f"{source}/1", f"{scratch}/1")
        scorer = Scorer(scratch, poll_seconds=None, gc_freeze=gc_freeze)
        requests = raw_requests(scorer.feature_index, 64, vocab)
        pauses = watch_gc()
        stop = threading.Event()

        def client() -> None:
            i = 0
            while not stop.is_set():
                scorer.score(requests[i % len(requests)])
                i += 1

        thread = threading.Thread(target=client)
        thread.start()
        try:
            time.sleep(1.0)
            for s in range(2 * swaps):
                scorer.weight_swap = s % 2 == 0
                version = scorer.version + 1
                shutil.copytree(f"{source}/{2 - version % 2}", f"{scratch}/.{version}.tmp")
                os.rename(f"{scratch}/.{version}.tmp", f"{scratch}/{version}")
                PHASE["now"] = f"swap, {'weights only' if scorer.weight_swap else 'loaded in full'}"
                if not scorer.refresh():
                    raise RuntimeError(f"version {version} did not load: {scorer.last_error}")
                PHASE["now"] = "serving"
                time.sleep(1.0)
        finally:
            stop.set()
            thread.join()
        gc.callbacks.clear()
        full = full_collection_ms()
        longest = {}
        for gen, p in pauses.items():
            for wall, cpu, during in p:
                key = f"{during}|{gen}"
                count, most = longest.get(key, (0, 0.0))
                longest[key] = (count + 1, max(most, wall))
        print(json.dumps({"full_ms": full, "tracked": len(gc.get_objects()), "frozen": gc.get_freeze_count(),
                          "loads": scorer.metrics()["loads"], "pauses": longest}))
        scorer.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, rounds and swaps (about 2 minutes)")
    parser.add_argument("--calls", type=int, help="calls per path and round (default 2000; --quick: 400)")
    parser.add_argument("--repeats", type=int, help="round-robin rounds; medians are reported (default 5; --quick: 3)")
    parser.add_argument("--swaps", type=int, help="version swaps measured per scorer and load path (default 5; --quick: 2)")
    parser.add_argument("--vocab", type=int, default=1000, help="vocabulary per categorical field")
    parser.add_argument(
        "--tf-threads", type=int, default=1, help="TensorFlow intra/inter-op threads, as Scorer(tf_threads=...) sets them (0: its default, one per core)"
    )
    parser.add_argument("--no-gc-freeze", action="store_true", help="scorers made with gc_freeze=False: the collector walks every object")
    parser.add_argument("--server-process", metavar="SOURCE", help=argparse.SUPPRESS)  # the one-scorer process (server_process)
    args = parser.parse_args()
    for name, full, quick in (("calls", 2000, 400), ("repeats", 5, 3), ("swaps", 5, 2)):  # --quick does not override a given value
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.server_process:
        return server_process(args.server_process, args.vocab, args.swaps, args.tf_threads, not args.no_gc_freeze)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from machine import LoadWatch

    watch = LoadWatch()
    print(f"load average at the start: {'/'.join(f'{x:.2f}' for x in watch.start)} (1/5/15 min) on {watch.cpus} CPUs", flush=True)
    if watch.busy:
        print("WARNING: busy machine at the start: the tails and the swap figures measure the other work too", flush=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from sparkml_tf.spark.executor import configure_tf_threads

    configure_tf_threads(args.tf_threads)  # before any TF op; the reference runs with the same pools

    from sparkml_tf.ranking.features.feature_index import Encoder, rows_to_columns
    from sparkml_tf.ranking.scorer import Scorer

    scratch = tempfile.mkdtemp(prefix="bench-serving-")
    try:
        index = feature_index(args.vocab)
        nets = export_models(index, f"{scratch}/source")
        sources = {1: f"{scratch}/source/1", 2: f"{scratch}/source/2"}
        # One export dir per scorer, so one scorer's swaps do not load versions into the other.
        export_dirs = {xla: f"{scratch}/export-{'xla' if xla else 'plain'}" for xla in (False, True)}
        for directory in export_dirs.values():
            shutil.copytree(sources[1], f"{directory}/1")
        requests = raw_requests(index, 64, args.vocab)
        encoder = Encoder(index)
        encoded = [encoder.encode_rows(rows) for rows in requests]
        batches = [(e["deep_ids"], e["wide_ids"], e["dense"]) for e in encoded]

        # The scorer's default batch sizes (1, 16, 100, 256, 1024): what a swap warms up and, with XLA, compiles.
        scorers = {xla: Scorer(export_dirs[xla], xla=xla, poll_seconds=0.1, gc_freeze=not args.no_gc_freeze) for xla in (False, True)}
        for scorer in scorers.values():
            assert scorer.metrics()["fast_call"], scorer.metrics()
        net = nets[1]

        def forward(deep_ids, wide_ids, dense):
            return tf.sigmoid(net({"deep_ids": deep_ids, "wide_ids": wide_ids, "dense": dense}, training=False))

        reference = {"tf.function(jit_compile=True)": tf.function(forward, jit_compile=True), "tf.function": tf.function(forward)}
        signature = tf.saved_model.load(sources[1]).signatures["serving_default"]
        expected = scorers[False].score_ids(*batches[0])
        for name, fn in reference.items():
            np.testing.assert_allclose(fn(*[tf.constant(a) for a in batches[0]]).numpy(), expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(scorers[True].score(requests[0]), expected, rtol=1e-4, atol=1e-6)
        row_encoder = scorers[False]._servable.encoder
        direct = scorers[False]._servable._predict  # what score_ids calls after its input checks

        model_paths = {
            "Scorer.score_ids": lambda i: scorers[False].score_ids(*batches[i]),
            "Scorer.score_ids, XLA": lambda i: scorers[True].score_ids(*batches[i]),
            "reference tf.function(jit_compile=True)": lambda i: reference["tf.function(jit_compile=True)"](*[tf.constant(a) for a in batches[i]]).numpy(),
            "reference tf.function": lambda i: reference["tf.function"](*[tf.constant(a) for a in batches[i]]).numpy(),
            "the scorer's graph function alone": lambda i: direct(*batches[i]),
            "public signature call (numpy kwargs)": (
                lambda i: signature(deep_ids=batches[i][0], wide_ids=batches[i][1], dense=batches[i][2])["probability"].numpy()
            ),
        }
        raw_paths = {
            "Scorer.score (raw rows)": lambda i: scorers[False].score(requests[i]),
            "Scorer.score (raw rows), XLA": lambda i: scorers[True].score(requests[i]),
            "encode only: Encoder.encode_rows": lambda i: row_encoder.encode_rows(requests[i]),
        }
        slow_paths = {"encode only: Encoder.encode (pandas, general path)": lambda i: encoder.encode(rows_to_columns(requests[i], index.field_names))}
        plan = [(name, fn, threads, args.calls) for paths in (model_paths, raw_paths) for name, fn in paths.items() for threads in (1, 2)]
        plan += [(name, fn, 1, max(args.calls // 20, 20)) for name, fn in slow_paths.items()]

        print(f"Wide & Deep: {index.num_deep} deep features x 10 dims + {index.num_dense} dense -> 3 x 256 ReLU -> 1; "
              f"{index.num_wide} wide features ({len(index.crosses)} crosses); deep_size {index.deep_size:,}, wide_size {index.wide_size:,}")
        print(f"{ROWS} rows per request; {os.cpu_count()} CPUs; TF threads intra {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}; "
              f"{args.calls} calls per path and round, {args.repeats} rounds, medians of per-round percentiles; "
              f"{gc.get_freeze_count():,} objects frozen out of garbage collection", flush=True)
        for name, fn, threads, calls in plan:  # warm-up
            timed_calls(fn, min(calls, 100), threads, len(requests))
        gc_pauses = watch_gc()
        rounds: Dict[tuple, List[Dict[str, float]]] = {(name, threads): [] for name, _, threads, _ in plan}
        for r in range(args.repeats):
            for name, fn, threads, calls in plan:
                rounds[(name, threads)].append(summary(*timed_calls(fn, calls, threads, len(requests))))
            print(f"  round {r + 1}/{args.repeats} done", flush=True)
        results = {key: {stat: statistics.median(run[stat] for run in runs) for stat in runs[0]} for key, runs in rounds.items()}

        swap = {}
        for xla, scorer in scorers.items():
            for weights, stats in measure_swaps(scorer, export_dirs[xla], sources, args.swaps, requests).items():
                swap[(xla, weights)] = stats
            failed = scorer.metrics()["failed_loads"]
            if failed:
                raise RuntimeError(f"{failed} version load(s) failed during the swaps: {scorer.last_error}")
        gc.callbacks.clear()
        gc_ms, tracked = full_collection_ms(), len(gc.get_objects())
        for scorer in scorers.values():
            scorer.close()
        print("  the one-scorer process ...", flush=True)
        command = [sys.executable, os.path.abspath(__file__), "--server-process", f"{scratch}/source", "--vocab", str(args.vocab),
                   "--swaps", str(args.swaps), "--tf-threads", str(args.tf_threads)] + (["--no-gc-freeze"] if args.no_gc_freeze else [])
        server = json.loads(subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print()
    print(f"{'path (median over rounds)':<46} {'threads':>7} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} {'rows/s':>10} {'CPU ms/call':>11}")
    for (name, threads), r in results.items():
        print(f"{name:<46} {threads:>7} {r['p50']:>8.3f} {r['p99']:>8.3f} {r['p99.9']:>9.3f} {r['max']:>8.2f} {r['rows/s']:>10,.0f} {r['cpu ms']:>11.3f}")

    print()
    print("ratios, scorer / reference (p50, p99.9, throughput; < 1 is faster for latency, > 1 is better for throughput):")
    pairs = [("Scorer.score_ids", "reference tf.function"), ("Scorer.score_ids, XLA", "reference tf.function(jit_compile=True)"),
             ("Scorer.score_ids", "reference tf.function(jit_compile=True)"), ("public signature call (numpy kwargs)", "Scorer.score_ids")]
    for ours, theirs in pairs:
        for threads in (1, 2):
            a, b = results[(ours, threads)], results[(theirs, threads)]
            print(
                f"  {ours:<38} / {theirs:<40} {threads} thr: p50 {a['p50'] / b['p50']:5.2f}  "
                f"p99.9 {a['p99.9'] / b['p99.9']:5.2f}  rows/s {a['rows/s'] / b['rows/s']:5.2f}"
            )

    print()
    print(f"{'during a version swap (raw rows, 1 thread)':<52} {'steady p99':>10} {'steady max':>10} {'same n p99':>10} {'swap p99':>9} {'swap max':>9} "
          f"{'load+warm-up s':>14}")
    for (xla, weights), r in swap.items():
        name = f"Scorer.score{', XLA' if xla else ''}, {'weights only (default)' if weights else 'loaded in full (weight_swap=False)'}"
        print(f"{name:<52} {r['steady p99']:>10.3f} {r['steady max']:>10.2f} {r['steady p99 same n']:>10.3f} {r['swap p99']:>9.3f} {r['swap max']:>9.2f} "
              f"{r['swap seconds']:>14.2f}")
    print(f"  (median over {args.swaps} swaps each; weights-only and full loads alternate; steady: the second before the new version is published;\n"
          "   same n p99: the p99 of steady windows holding as many calls as the swap's window: a swap p99 near it is the machine's own tail, not a spike)")
    print()
    print("garbage collections while the paths and swaps ran (count; longest pause, wall ms / CPU ms of the collecting thread), by what ran then:")
    phases = sorted({during for p in gc_pauses.values() for _, _, during in p})
    for during in phases:
        parts = []
        for gen, p in gc_pauses.items():
            mine = [x for x in p if x[2] == during]
            parts.append(f"{gen} {len(mine)}: {max((w for w, _, _ in mine), default=0.0):.2f} / {max((c for _, c, _ in mine), default=0.0):.2f}")
        print(f"  {during:<22} " + "; ".join(parts))
    # The goal: what a request can meet with the scorer's defaults (serving, weights-only swaps); full
    # loads (weight_swap=False, or a new architecture) are printed above, apart.
    longest = max((w for p in gc_pauses.values() for w, _, during in p if during != "swap, loaded in full"), default=0.0)
    print(f"a full gc.collect() at the end (shortest of 3): {gc_ms[0]:.2f} ms wall / {gc_ms[1]:.2f} ms CPU over {tracked:,} tracked objects, "
          f"{gc.get_freeze_count():,} frozen{'' if gc.get_freeze_count() else ' (--no-gc-freeze)'}")
    gc_ms = gc_ms[0]
    print(f"a process holding one scorer, as a server does (1 client thread, {server['loads']} loads: weights-only and full alternating), "
          "collections by what ran then (count: longest wall ms):")
    for during in sorted({key.split("|")[0] for key in server["pauses"]}):
        counts = {gen: server["pauses"].get(f"{during}|{gen}", (0, 0.0)) for gen in ("gen0", "gen1", "gen2")}
        print(f"  {during:<22} " + "; ".join(f"{gen} {count}: {most:.2f}" for gen, (count, most) in counts.items()))
    print(f"  a full gc.collect() at the end (shortest of 3): {server['full_ms'][0]:.2f} ms wall / {server['full_ms'][1]:.2f} ms CPU "
          f"over {server['tracked']:,} tracked objects, {server['frozen']:,} frozen")
    server_longest = max((most for key, (_, most) in server["pauses"].items() if not key.startswith("swap, loaded in full")), default=0.0)
    print()
    print("goals (1 thread; swaps with the scorer's defaults):                           without XLA   with XLA")
    plain_swap, xla_swap = swap[(False, True)], swap[(True, True)]
    measured = {
        "model call p50 ms": (results[("Scorer.score_ids", 1)]["p50"], results[("Scorer.score_ids, XLA", 1)]["p50"]),
        "model call p99.9 ms": (results[("Scorer.score_ids", 1)]["p99.9"], results[("Scorer.score_ids, XLA", 1)]["p99.9"]),
        "raw rows p50 ms": (results[("Scorer.score (raw rows)", 1)]["p50"], results[("Scorer.score (raw rows), XLA", 1)]["p50"]),
        "swap p99 ms": (plain_swap["swap p99"], xla_swap["swap p99"]),
        "swap max ms": (plain_swap["swap max"], xla_swap["swap max"]),
    }
    for goal, limit in GOALS.items():
        marks = ["met" if value <= limit else "NOT met" for value in measured[goal]]
        print(f"  {goal:<22} <= {limit:<5} {measured[goal][0]:>40.3f} {marks[0]:<8} {measured[goal][1]:7.3f} {marks[1]}")
    pause = max(longest, server_longest, server["full_ms"][0])
    print(f"  {'gc pause ms':<22} <= {GC_PAUSE_GOAL_MS:<5} {pause:>40.3f} {'met' if pause <= GC_PAUSE_GOAL_MS else 'NOT met'}"
          "     (the longest of: collections while serving and in weights-only swaps, here and in the one-scorer process,\n"
          f"{'':<78}and a full collection in the one-scorer process; this process's own full collection: {gc_ms:.2f} ms)")
    print()
    print(watch.report())

if __name__ == "__main__":
    sys.exit(main())
