"""hnswlib (bias folded in) vs numpy brute force: recall@k and query speed-up, side by side.

    python benchmarks/bench_ann.py --items 1000000 --dim 64 --data realistic

Data (``--data``):

* ``realistic`` (default): item embeddings shaped like those of a trained recommender. Each
  64-d vector is a low-rank product (``--rank`` 20 latent factors with a decaying spectrum,
  grouped into 200 "genres") mapped to 64 dims, plus small isotropic noise (10% of the signal
  norm). Items have Zipf popularity; vector norms follow a power law in popularity rank
  (popular items have larger norms) and biases are correlated with log popularity. Queries
  are users: the mean of 5 items drawn by popularity, plus noise, at a fixed norm.
* ``hard``: the previous synthetic set, 2000 Gaussian clusters whose spread (0.6) is about
  the distance between centres, so the data are nearly isotropic in all 64 dims, with
  independent biases; queries are 3x the mean of 5 uniform items. It is the worst case for a
  graph index and not what trained embeddings look like; kept for comparison.

Two comparisons, both sides timed alternately in each of ``--repeats`` rounds (so both see the
same machine load); each speed-up is the median of the per-round ratios:

* per query (latency): queries one at a time on one thread for both sides; hnswlib
  ``knn_query`` of one vector vs numpy = one matvec over the folded ``[v, b]`` matrix plus
  ``argpartition`` (BLAS limited to one thread). Timed on ``--latency-queries`` queries.
* batched (throughput): ``--batch-queries`` queries at once on ``--threads`` threads; hnswlib
  batch query vs numpy GEMM (blocks of 128 queries) plus ``argpartition``
  (:func:`sparkml_tf.index.hnsw.exact_search`).

Recall@k is over all ``--queries`` queries against the exact top-k of ``u · v + b``.
Variants (``--variants``): ``ip`` = folded vectors in hnswlib's "ip" space; ``aug-l2`` /
``aug-ip`` / ``aug-cos`` = the norm-augmented vectors (all of one norm) in the "l2", "ip" or
"cosine" space.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time

import numpy as np

VARIANTS = {"ip": (False, "ip"), "aug-l2": (True, "l2"), "aug-ip": (True, "ip"), "aug-cos": (True, "cosine")}


def realistic_data(n: int, dim: int, rank: int, queries: int, seed: int):
    rng = np.random.default_rng(seed)
    # Zipf popularity over a random order of items.
    pop_rank = rng.permutation(n) + 1
    popularity = 1.0 / pop_rank
    # Low-rank latent factors: 200 genres, a decaying spectrum, mapped to ``dim`` by a random basis.
    spectrum = (np.arange(1, rank + 1) ** -0.5).astype(np.float32)
    genres = rng.normal(size=(200, rank)).astype(np.float32)
    latent = genres[rng.integers(200, size=n)] + rng.normal(scale=0.8, size=(n, rank)).astype(np.float32)
    latent *= spectrum
    basis = np.linalg.qr(rng.normal(size=(dim, rank)))[0].T.astype(np.float32)  # [rank, dim], orthonormal rows
    signal = latent @ basis
    signal /= np.float32(np.sqrt(np.mean(np.einsum("ij,ij->i", signal, signal))))
    vectors = signal + rng.normal(scale=0.1 / np.sqrt(dim), size=(n, dim)).astype(np.float32)
    # Norms: power law in popularity rank (x1 for the top item, x0.25 at rank 1M).
    vectors *= (pop_rank ** -0.1).astype(np.float32)[:, None]
    log_pop = np.log(popularity)
    biases = (0.3 * (log_pop - log_pop.mean()) / log_pop.std() + rng.normal(scale=0.05, size=n)).astype(np.float32)
    # Users: the mean of 5 items drawn by popularity, plus noise, scaled to norm 3.
    qrng = np.random.default_rng(seed + 1)
    picks = qrng.choice(n, size=(queries, 5), p=popularity / popularity.sum())
    users = signal[picks].mean(axis=1) + qrng.normal(scale=0.1 / np.sqrt(dim), size=(queries, dim)).astype(np.float32)
    users *= 3.0 / np.linalg.norm(users, axis=1, keepdims=True)
    return vectors, biases, users.astype(np.float32)


def hard_data(n: int, dim: int, queries: int, seed: int, clusters: int = 2000):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    vectors = centers[rng.integers(clusters, size=n)]
    vectors += rng.normal(scale=0.6, size=(n, dim)).astype(np.float32)
    vectors /= np.float32(np.sqrt(dim))
    biases = rng.normal(scale=0.3, size=n).astype(np.float32)
    qrng = np.random.default_rng(seed + 1)
    picks = qrng.integers(n, size=(queries, 5))
    users = (vectors[picks].mean(axis=1) * 3 + qrng.normal(scale=0.05, size=(queries, dim))).astype(np.float32)
    return vectors, biases, users


def saved_mb(raw) -> float:
    """Size of hnswlib's saved index (vectors + graph; about what it holds in memory, less its label map)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index.bin")
        raw.save_index(path)
        return os.path.getsize(path) / 2**20


def build(vectors, biases, M, efc, augment, space, args, cached):
    """The index HnswIndex.build makes (same folding, augmentation and space), added in chunks of 50k items; with ``cached``, saved after each
    chunk once ``--build-budget-s`` is spent so a later run resumes (a busy machine cannot build
    1M items inside one bounded run). ``build_s`` sums the time spent adding, over all runs."""
    import hnswlib

    from sparkml_tf.index.hnsw import HnswIndex, augment_norms, fold

    data = fold(vectors, biases)
    data = augment_norms(data) if augment else data
    count, dim = data.shape
    state = os.path.join(cached, "build.json") if cached else None
    raw = hnswlib.Index(space=space, dim=dim)
    done, build_s = 0, 0.0
    if state and os.path.exists(state):
        with open(state) as f:
            done, build_s = json.load(f)
        raw.load_index(os.path.join(cached, "index.bin"), max_elements=count)
    else:
        raw.init_index(max_elements=count, ef_construction=efc, M=M)
    raw.set_num_threads(args.threads)
    finished_before = done == count
    run_start = time.perf_counter()
    while done < count:
        start = time.perf_counter()
        raw.add_items(data[done : done + 50_000], np.arange(done, min(done + 50_000, count)))
        build_s += time.perf_counter() - start
        done = min(done + 50_000, count)
        if state and done < count and time.perf_counter() - run_start > args.build_budget_s:
            os.makedirs(cached, exist_ok=True)
            raw.save_index(os.path.join(cached, "index.bin"))
            with open(state, "w") as f:
                json.dump([done, build_s], f)
            return None
    if state and not finished_before:
        os.makedirs(cached, exist_ok=True)
        raw.save_index(os.path.join(cached, "index.bin"))
        with open(state, "w") as f:
            json.dump([count, build_s], f)
    params = {
        "M": M,
        "ef_construction": efc,
        "ef": efc,
        "dim": vectors.shape[1],
        "count": count,
        "space": space,
        "fold_bias": True,
        "augment": augment,
        "build_s": build_s,
    }
    if space != "ip":
        params["norm2"] = float(np.dot(data[0], data[0]))
    ids = np.arange(count, dtype=np.int64)
    return HnswIndex(raw, ids, ids.astype(str).astype(object), params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=["realistic", "hard"], default="realistic")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--rank", type=int, default=20, help="latent factors of the realistic data")
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall")
    parser.add_argument("--latency-queries", type=int, default=100, help="queries for the one-at-a-time timing")
    parser.add_argument("--batch-queries", type=int, default=256, help="queries for the batched timing")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["aug-l2"])
    parser.add_argument("--M", type=int, nargs="+", default=[16])
    parser.add_argument("--ef-construction", type=int, nargs="+", default=[200])
    parser.add_argument("--ef", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="build and batched-query threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", help="save built (or partly built) indexes here and reuse them; build time is the time spent adding items")
    parser.add_argument("--build-budget-s", type=float, default=240, help="with --cache-dir: save a partial build and stop after this long")
    args = parser.parse_args()
    from machine import LoadWatch

    watch = LoadWatch()

    from threadpoolctl import threadpool_limits

    from sparkml_tf.index.hnsw import exact_search, fold, fold_queries, overlap_recall

    if args.data == "realistic":
        vectors, biases, queries = realistic_data(args.items, args.dim, args.rank, args.queries, args.seed)
    else:
        vectors, biases, queries = hard_data(args.items, args.dim, args.queries, args.seed)
    print(
        f"data {args.data}: items {args.items} x {args.dim}, recall on {args.queries} queries, timings on {args.latency_queries} (one at a time) "
        f"/ {args.batch_queries} (batched), k {args.k}, threads {args.threads}, repeats {args.repeats}"
    )
    norms = np.linalg.norm(vectors, axis=1)
    print(f"  item norm p1/p50/p99 {np.percentile(norms, 1):.3f}/{np.median(norms):.3f}/{np.percentile(norms, 99):.3f}, bias std {biases.std():.3f}")

    # Brute force on the same folded vectors: score = [u, 1] · [v, b].
    folded = fold(vectors, biases)
    fq = fold_queries(queries)
    k = args.k

    def brute_one(q):
        s = folded @ q
        top = np.argpartition(-s, k - 1)[:k]
        return top[np.argsort(-s[top])]

    lq = fq[: args.latency_queries]
    bq = fq[: args.batch_queries]

    def brute_latency() -> float:
        with threadpool_limits(1):
            start = time.perf_counter()
            for q in lq:
                brute_one(q)
            return (time.perf_counter() - start) / len(lq)

    def brute_batched() -> float:
        start = time.perf_counter()
        exact_search(folded, None, bq, k, batch_size=128)
        return (time.perf_counter() - start) / len(bq)

    start = time.perf_counter()
    truth, _ = exact_search(folded, None, fq, k, batch_size=128)
    print(f"exact top-{k} of {len(fq)} queries: {time.perf_counter() - start:.1f}s")
    print("timings: each row times brute force and hnsw alternately, --repeats times; ratios are medians of the per-repeat ratios")
    print()
    print(
        "| data | variant | M | efC | build s | index MB (saved) | ef | recall@%d | hnsw ms/q | "
        "numpy ms/q | speed-up per query | hnsw q/s batched | numpy q/s batched | speed-up batched |"
        % k
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    for variant in args.variants:
        augment, space = VARIANTS[variant]
        for M in args.M:
            for efc in args.ef_construction:
                gc.collect()
                cached = args.cache_dir and os.path.join(
                    args.cache_dir, f"{args.data}-{args.items}x{args.dim}-r{args.rank}-s{args.seed}-{variant}-M{M}-efc{efc}"
                )
                index = build(vectors, biases, M, efc, augment, space, args, cached)
                if index is None:
                    print(
                        f"build of {variant} M={M} efC={efc} not finished within --build-budget-s; saved to {cached}: run the same command again to go on",
                        flush=True,
                    )
                    return
                build_s = index.params["build_s"]
                index_mb = saved_mb(index.index)
                hq = fold_queries(queries, augment)
                raw = index.index
                for ef in args.ef:
                    raw.set_ef(max(ef, k))
                    found, _ = raw.knn_query(hq, k=k, num_threads=args.threads)
                    recall = overlap_recall(found.astype(np.int64), truth)
                    lat, blat, bat, bbat = [], [], [], []
                    for _ in range(args.repeats):
                        blat.append(brute_latency())
                        start = time.perf_counter()
                        for q in hq[: args.latency_queries]:
                            raw.knn_query(q[None, :], k=k, num_threads=1)
                        lat.append((time.perf_counter() - start) / args.latency_queries)
                        bbat.append(brute_batched())
                        start = time.perf_counter()
                        raw.knn_query(hq[: args.batch_queries], k=k, num_threads=args.threads)
                        bat.append((time.perf_counter() - start) / args.batch_queries)
                    med = statistics.median
                    print(
                        f"| {args.data} | {variant} | {M} | {efc} | {build_s:.0f} | {index_mb:.0f} "
                        f"| {ef} | {recall:.4f} | {med(lat) * 1e3:.3f} | {med(blat) * 1e3:.2f} | "
                        f"{med([b / h for b, h in zip(blat, lat)]):.1f}x | {1 / med(bat):,.0f} | "
                        f"{1 / med(bbat):,.0f} | {med([b / h for b, h in zip(bbat, bat)]):.1f}x |",
                        flush=True,
                    )
                del index, raw
    print(watch.report())


if __name__ == "__main__":
    main()
