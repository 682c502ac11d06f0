"""A tiny generated dataset in the trainer's input format, for tests, benchmarks and smoke runs.

Users fall into ``num_clusters`` taste groups; each group prefers its own slice of the catalogue, so
a model that learns anything beats random ranking by a wide margin.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

import numpy as np


def generate_users(num_users: int, num_items: int, num_clusters: int = 8, items_per_user: int = 20, seed: int = 0) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    slices = np.array_split(np.arange(num_items), num_clusters)
    users = []
    for _ in range(num_users):
        group = slices[rng.integers(num_clusters)]
        n = int(rng.integers(max(2, items_per_user // 2), items_per_user * 3 // 2 + 1))
        own = rng.choice(group, size=min(len(group), max(1, int(n * 0.9))), replace=False)
        noise = rng.choice(num_items, size=max(1, n - len(own)), replace=False)
        users.append(np.unique(np.concatenate([own, noise])).astype(np.int64))
    return users


def write_toy_dataset(
    path: str, num_users: int = 400, num_items: int = 100, num_shards: int = 2, num_validation: int = 100, seed: int = 0, **kwargs: Any
) -> Dict[str, Any]:
    """Write ``stats.json``, ``tfrecord/{train,validation}/part-*.tfrecord.gz`` and ``vocab/items.parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    users = generate_users(num_users + num_validation, num_items, seed=seed, **kwargs)
    train, validation = users[:num_users], users[num_users:]
    rng = np.random.default_rng(seed + 1)

    def int64s(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    def user_bytes(i):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"u{i}".encode()]))

    os.makedirs(f"{path}/tfrecord/train", exist_ok=True)
    os.makedirs(f"{path}/tfrecord/validation", exist_ok=True)
    os.makedirs(f"{path}/vocab", exist_ok=True)
    writers = [tf.io.TFRecordWriter(f"{path}/tfrecord/train/part-{s:05d}.tfrecord.gz", options="GZIP") for s in range(num_shards)]
    for i, items in enumerate(train):
        example = tf.train.Example(features=tf.train.Features(feature={"user": user_bytes(i), "items": int64s(items)}))
        writers[i % num_shards].write(example.SerializeToString())
    for w in writers:
        w.close()
    with tf.io.TFRecordWriter(f"{path}/tfrecord/validation/part-00000.tfrecord.gz", options="GZIP") as w:
        for i, items in enumerate(validation):
            items = rng.permutation(items)
            cut = max(1, int(len(items) * 0.8))
            feature = {"user": user_bytes(num_users + i), "inputs": int64s(items[:cut]), "targets": int64s(items[cut:])}
            w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    counts = np.bincount(np.concatenate(train), minlength=num_items)
    pq.write_table(
        pa.table({"item": [f"item{i}" for i in range(num_items)], "id": np.arange(num_items, dtype=np.int64), "count": counts.astype(np.int64)}),
        f"{path}/vocab/items.parquet",
    )
    stats = {"num_items": num_items, "num_train_examples": len(train), "num_validation_users": len(validation)}
    with open(f"{path}/stats.json", "w") as f:
        json.dump(stats, f)
    return stats


def toy_train_settings(root: str, **overrides: Any) -> Dict[str, Any]:
    """Training settings for a toy dataset written to ``<root>/ds``: a small average + BPR model whose
    outputs (export, embeddings, checkpoints) go under ``root``; ``overrides`` replace or add keys."""
    settings: Dict[str, Any] = {
        "dataset_dir": os.path.join(root, "ds"),
        "export_dir": os.path.join(root, "export"),
        "embeddings_dir": os.path.join(root, "embeddings"),
        "checkpoint_dir": os.path.join(root, "ckpt"),
        "model": {"type": "sparkml_tf.retrieval.AverageModel", "embedding_dim": 8, "eval": None},
        "loss": {"type": "sparkml_tf.retrieval.BPRLoss", "num_negatives": 4, "eval": None},
        "epochs": 2,
        "batch_size": 32,
        "learning_rate": 0.01,
        "patience": 3,
        "tf_threads": 1,
    }
    settings.update(overrides)
    return settings
