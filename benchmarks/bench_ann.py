"""hnswlib (bias folded in) vs numpy brute force: recall@k and query speed-up, side by side.

    python benchmarks/bench_ann.py --items 1000000 --dim 64

Item vectors are clustered (a mixture of Gaussians), like trained embeddings; pure isotropic
noise in 64 dims is the worst case for any graph index and is not what a recommender produces
(``--clusters 0`` gives it anyway). Each timing is the median of ``--repeats`` runs, both sides
on the same queries and the same number of threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def make_items(n: int, dim: int, clusters: int, seed: int):
    rng = np.random.default_rng(seed)
    if clusters > 0:
        centers = rng.normal(size=(clusters, dim)).astype(np.float32)
        vectors = centers[rng.integers(clusters, size=n)]
        vectors += rng.normal(scale=0.6, size=(n, dim)).astype(np.float32)
    else:
        vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.float32(np.sqrt(dim))
    biases = rng.normal(scale=0.3, size=n).astype(np.float32)
    return vectors, biases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[200, 400])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from sparkml_tf.index.hnsw import HnswIndex, exact_search, overlap_recall

    vectors, biases = make_items(args.items, args.dim, args.clusters, args.seed)
    # Queries look like users: the mean of a few items plus noise.
    rng = np.random.default_rng(args.seed + 1)
    picks = rng.integers(args.items, size=(args.queries, 5))
    queries = (vectors[picks].mean(axis=1) * 3 + rng.normal(scale=0.05, size=(args.queries, args.dim))).astype(np.float32)
    print(f"items {args.items} x {args.dim}, queries {args.queries}, k {args.k}, threads {args.threads}, M {args.M}, ef_construction {args.ef_construction}")

    start = time.perf_counter()
    index = HnswIndex.build(vectors, biases, M=args.M, ef_construction=args.ef_construction, ef=max(args.ef), num_threads=args.threads)
    build_s = time.perf_counter() - start
    print(f"build: {build_s:.1f}s ({args.items / build_s:,.0f} items/s)")

    # numpy uses the same cores through BLAS; 128 queries a batch keeps the score matrix at 0.5 GB.
    brute_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        truth, _ = exact_search(vectors, biases, queries, args.k, batch_size=128)
        brute_times.append(time.perf_counter() - start)
    brute_s = statistics.median(brute_times)
    print(f"numpy brute force: {args.queries / brute_s:,.0f} queries/s (median of {args.repeats})")

    for ef in args.ef:
        index.set_ef(ef)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            found, _ = index.query(queries, args.k, num_threads=args.threads)
            times.append(time.perf_counter() - start)
        ann_s = statistics.median(times)
        recall = overlap_recall(found, truth)
        print(f"hnsw ef={ef}: recall@{args.k} {recall:.4f}, {args.queries / ann_s:,.0f} queries/s, speed-up x{brute_s / ann_s:.1f} over brute force")


if __name__ == "__main__":
    main()
