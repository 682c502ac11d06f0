"""A tiny CTR dataset directory in the layout BuildCtrDataset writes, for tests and smoke runs.

Raw rows have categorical fields ``C1..`` and numeric fields ``I1..``; the click probability is a
logistic function of a few of them (one categorical value, one numeric field and one pair of
values), so a model that learns anything beats AUC 0.5 by a wide margin. The rows are encoded
with the real :class:`sparkml_tf.ranking.features.feature_index.Encoder`, and written as
``feature_index/feature_index.json``, ``tfrecord/{train,validation}/part-*.tfrecord.gz`` and
``stats.json``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict

import numpy as np


def generate_ctr_rows(num_rows: int, num_categorical: int = 3, num_numeric: int = 2, vocab_size: int = 6, seed: int = 0) -> Dict[str, Any]:
    """Raw columns ``label``, ``C1..``, ``I1..`` (with some missing values)."""
    rng = np.random.default_rng(seed)
    columns: Dict[str, Any] = {}
    for c in range(1, num_categorical + 1):
        values = rng.integers(0, vocab_size, num_rows)
        strings = np.array([f"v{v}" for v in values], dtype=object)
        strings[rng.random(num_rows) < 0.05] = None
        columns[f"C{c}"] = strings
    for i in range(1, num_numeric + 1):
        values = rng.exponential(5.0, num_rows)
        values[rng.random(num_rows) < 0.05] = np.nan
        columns[f"I{i}"] = values
    logit = -1.0 + 2.0 * (columns["C1"] == "v1") - 1.5 * (columns["C1"] == "v2")
    logit += 0.2 * np.nan_to_num(columns["I1"] if num_numeric else 0.0) - 1.0
    if num_categorical > 1:
        logit += 2.5 * ((columns["C1"] == "v3") & (columns["C2"] == "v3"))  # a pair only a cross or the MLP sees
    columns["label"] = (rng.random(num_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return columns


def ctr_feature_index(num_categorical: int = 3, num_numeric: int = 2, vocab_size: int = 6, buckets: int = 16):
    from sparkml_tf.ranking.features.feature_index import FeatureIndex

    fields = [{"name": f"C{c}", "kind": "categorical", "vocab": [f"v{v}" for v in range(vocab_size)]} for c in range(1, num_categorical + 1)]
    fields += [{"name": f"I{i}", "kind": "numeric", "boundaries": [1.0, 2.0, 4.0, 8.0, 16.0]} for i in range(1, num_numeric + 1)]
    crosses = [{"fields": ["C1", "C2"], "buckets": buckets}] if num_categorical > 1 else []
    return FeatureIndex(fields, crosses)


def write_ctr_examples(path: str, encoded: Dict[str, np.ndarray], labels: np.ndarray, num_shards: int) -> None:
    import tensorflow as tf

    os.makedirs(path, exist_ok=True)
    writers = [tf.io.TFRecordWriter(f"{path}/part-{s:05d}.tfrecord.gz", options="GZIP") for s in range(num_shards)]
    try:
        for i in range(len(labels)):
            feature = {
                "label": tf.train.Feature(float_list=tf.train.FloatList(value=[float(labels[i])])),
                "deep_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=encoded["deep_ids"][i].tolist())),
                "wide_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=encoded["wide_ids"][i].tolist())),
                "dense": tf.train.Feature(float_list=tf.train.FloatList(value=encoded["dense"][i].tolist())),
            }
            writers[i % num_shards].write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    finally:
        for writer in writers:
            writer.close()


def write_ctr_dataset(path: str, num_train: int = 600, num_validation: int = 200, num_shards: int = 2, seed: int = 0, **kwargs: Any) -> Dict[str, Any]:
    """Write the dataset directory; return its stats.json content."""
    from sparkml_tf.ranking.features.feature_index import Encoder

    index = ctr_feature_index(**kwargs)
    shape = {k: kwargs[k] for k in ("num_categorical", "num_numeric", "vocab_size") if k in kwargs}
    rows = generate_ctr_rows(num_train + num_validation, seed=seed, **shape)
    encoded = Encoder(index).encode({k: v for k, v in rows.items() if k != "label"})
    labels = rows["label"]
    train = slice(0, num_train)
    validation = slice(num_train, num_train + num_validation)
    write_ctr_examples(f"{path}/tfrecord/train", {k: v[train] for k, v in encoded.items()}, labels[train], num_shards)
    write_ctr_examples(f"{path}/tfrecord/validation", {k: v[validation] for k, v in encoded.items()}, labels[validation], 1)
    os.makedirs(f"{path}/feature_index", exist_ok=True)
    index.save(f"{path}/feature_index")
    stats = {
        "task": "ctr",
        "num_train_examples": num_train,
        "num_validation_examples": num_validation,
        "num_test_examples": 0,
        "positive_rate": float(labels[train].mean()),
        "feature_index_version": index.version,
        **index.sizes(),
        "num_shards": num_shards,
    }
    with open(f"{path}/stats.json", "w") as f:
        json.dump(stats, f)
    return stats
