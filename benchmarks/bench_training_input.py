"""Trainer throughput fed from TFRecord shards vs from in-memory tensors (same model, loop, examples).

    python benchmarks/bench_training_input.py --users 20000 --items 5000

Prints examples/s (median of --runs runs, first epoch left out as warm-up: it traces the step
function for every source) and the ratios against in-memory tensors. The headline is **streaming**
(`cache: false`: the shards are read, decompressed and decoded in every epoch, what a dataset
larger than memory gets), goal >= 0.95. Cached (the trainer's default: the decoded users kept in
memory after the first epoch) is printed apart: epoch 0, the only one that reads the files, is left
out of the timing, so it compares in-memory input with in-memory input.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    from machine import LoadWatch

    watch = LoadWatch()

    import tensorflow as tf

    from sparkml_tf.retrieval.layout import RetrievalDataset
    from sparkml_tf.retrieval.records import parse_train
    from sparkml_tf.retrieval.toy import write_toy_dataset
    from sparkml_tf.retrieval.trainer import train
    from sparkml_tf.train.launch import build_specs

    work = tempfile.mkdtemp(prefix="sparkml-tf-bench-")

    atexit.register(shutil.rmtree, work, True)  # dataset, checkpoints and exports
    dataset = f"{work}/dataset"
    write_toy_dataset(dataset, num_users=args.users, num_items=args.items, num_shards=args.shards, num_validation=200, items_per_user=30)
    # The same examples, decoded once into memory.
    rows = [r.numpy() for r in tf.data.TFRecordDataset(RetrievalDataset(dataset).shard_files("train"), compression_type="GZIP").map(parse_train)]
    ragged = tf.ragged.constant(rows, dtype=tf.int64)

    def in_memory(input_context):
        return tf.data.Dataset.from_tensor_slices(ragged)

    def run(source, tag, i, cache=True):
        settings = {
            "cache": cache,
            "dataset_dir": dataset, "export_dir": f"{work}/{tag}{i}/export", "embeddings_dir": f"{work}/{tag}{i}/emb",
            "checkpoint_dir": f"{work}/{tag}{i}/ckpt", "model": {"type": "sparkml_tf.retrieval.AverageModel", "embedding_dim": args.dim},
            "loss": {"type": "sparkml_tf.retrieval.BPRLoss", "num_negatives": 8}, "epochs": args.epochs, "batch_size": args.batch_size,
            "checkpoint_every_steps": 10**9, "patience": args.epochs, "learning_rate": 1e-3,
        }
        history = train(build_specs(settings), source=source)["history"][1:]  # epoch 0 traces the step function
        return sum(h["steps"] for h in history) * args.batch_size / sum(h["train_seconds"] for h in history)

    results = {"tfrecord streaming": [], "tfrecord cached": [], "in-memory": []}
    for i in range(args.runs):  # interleaved, so drift in machine load hits all alike
        results["tfrecord streaming"].append(run(None, "stream", i, cache=False))
        results["tfrecord cached"].append(run(None, "cached", i, cache=True))
        results["in-memory"].append(run(in_memory, "memory", i))
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"users={args.users} items={args.items} shards={args.shards} batch={args.batch_size} dim={args.dim} runs={args.runs}")
    for name, values in results.items():
        print(f"{name:<19}: {medians[name]:10.0f} examples/s  {[round(x) for x in values]}")
    print(f"headline: tfrecord streaming/in-memory {medians['tfrecord streaming'] / medians['in-memory']:.3f} (goal >= 0.95)")
    print(
        f"tfrecord cached/in-memory {medians['tfrecord cached'] / medians['in-memory']:.3f} "
        "(the files are read in epoch 0 only, which is left out: in-memory input against in-memory input)"
    )
    print(watch.report())


if __name__ == "__main__":
    main()
