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

Two comparisons, each timing the median of ``--repeats`` runs:

* per query (latency): queries one at a time on one thread for both sides; hnswlib
  ``knn_query`` of one vector vs numpy = one matvec over the folded ``[v, b]`` matrix plus
  ``argpartition`` (BLAS limited to one thread). Measured on ``--latency-queries`` queries.
* batched (throughput): all queries at once on ``--threads`` threads; hnswlib batch query vs
  numpy GEMM over all queries (blocks of 128) plus ``argpartition``.

Recall@k is over all ``--queries`` queries against the exact top-k of ``u · v + b``.
Variants (``--variants``): ``ip`` = folded vectors in hnswlib's "ip" space; ``aug-l2`` /
``aug-ip`` / ``aug-cos`` = the norm-augmented vectors (all of one norm) in the "l2", "ip" or
"cosine" space.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
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


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=["realistic", "hard"], default="realistic")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--rank", type=int, default=20, help="latent factors of the realistic data")
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall and the batched timing")
    parser.add_argument("--latency-queries", type=int, default=200, help="queries for the one-at-a-time timing")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["aug-l2"])
    parser.add_argument("--M", type=int, nargs="+", default=[16])
    parser.add_argument("--ef-construction", type=int, nargs="+", default=[200])
    parser.add_argument("--ef", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="build and batched-query threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    from sparkml_tf.index.hnsw import HnswIndex, exact_search, fold, fold_queries, overlap_recall

    if args.data == "realistic":
        vectors, biases, queries = realistic_data(args.items, args.dim, args.rank, args.queries, args.seed)
    else:
        vectors, biases, queries = hard_data(args.items, args.dim, args.queries, args.seed)
    print(f"data {args.data}: items {args.items} x {args.dim}, queries {args.queries} (latency on {args.latency_queries}), k {args.k}, threads {args.threads}, repeats {args.repeats}")
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
    with threadpool_limits(1):
        brute_lat = median_time(lambda: [brute_one(q) for q in lq], args.repeats) / len(lq)
    truth = None

    def brute_batch():
        nonlocal truth
        truth, _ = exact_search(folded, None, fq, k, batch_size=128)

    brute_batch_s = median_time(brute_batch, args.repeats) / len(fq)
    print(f"numpy brute force: per query {brute_lat * 1e3:.2f} ms (1 thread); batched {brute_batch_s * 1e3:.3f} ms/query = {1 / brute_batch_s:,.0f} q/s ({args.threads} threads)")
    print()
    print("| data | variant | M | efC | build s | index MB | ef | recall@%d | hnsw ms/q | speed-up per query | hnsw batched q/s | speed-up batched |" % k)
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")

    for variant in args.variants:
        augment, space = VARIANTS[variant]
        for M in args.M:
            for efc in args.ef_construction:
                gc.collect()
                before = rss_mb()
                start = time.perf_counter()
                index = HnswIndex.build(vectors, biases, M=M, ef_construction=efc, ef=max(args.ef), num_threads=args.threads, augment=augment, space=space)
                build_s = time.perf_counter() - start
                gc.collect()
                index_mb = rss_mb() - before
                hq = fold_queries(queries, augment)
                raw = index.index
                for ef in args.ef:
                    raw.set_ef(max(ef, k))
                    found = None

                    def batch():
                        nonlocal found
                        found, _ = raw.knn_query(hq, k=k, num_threads=args.threads)

                    batch_s = median_time(batch, args.repeats) / len(hq)
                    recall = overlap_recall(found.astype(np.int64), truth)
                    lat = median_time(lambda: [raw.knn_query(q[None, :], k=k, num_threads=1) for q in hq[: args.latency_queries]], args.repeats) / args.latency_queries
                    print(
                        f"| {args.data} | {variant} | {M} | {efc} | {build_s:.0f} | {index_mb:.0f} | {ef} | {recall:.4f} | {lat * 1e3:.3f} | "
                        f"{brute_lat / lat:.1f}x | {1 / batch_s:,.0f} | {brute_batch_s / batch_s:.1f}x |",
                        flush=True,
                    )
                del index, raw


if __name__ == "__main__":
    main()
