"""Tiny CTR artefacts in the pipeline's formats, for the scoring and evaluation job tests: a
feature index, a SavedModel with the export contract's serving_default, a date-partitioned
candidates table with malformed rows, and an encoded dataset."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sparkml_tf.ranking.features.feature_index import Encoder, FeatureIndex

DAY, OTHER_DAY = "2024-05-01", "2024-05-02"


def feature_index() -> FeatureIndex:
    return FeatureIndex(
        [
            {"name": "I1", "kind": "numeric", "boundaries": [1.0, 5.0]},
            {"name": "I2", "kind": "numeric", "boundaries": [0.5]},
            {"name": "C1", "kind": "categorical", "vocab": ["a", "b", "c"]},
            {"name": "C2", "kind": "categorical", "vocab": ["x", "y"]},
        ],
        [{"name": "C1_x_C2", "fields": ["C1", "C2"], "buckets": 5}],
    )


def save_model(export_dir, index: FeatureIndex, version: int = 1, seed: int = 0) -> str:
    """``<export_dir>/<version>``: logit = sum of per-wide-id weights + dense . w + b, with the
    index as the ``assets/feature_index.json`` asset."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    assets = os.path.join(str(export_dir), f"assets-src-{version}")
    index.save(assets)

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            self.wide = tf.Variable(rng.normal(0, 1, index.wide_size).astype(np.float32))
            self.dense_weights = tf.Variable(rng.normal(0, 0.5, index.num_dense).astype(np.float32))
            self.bias = tf.Variable(-0.3)
            self.feature_index = tf.saved_model.Asset(os.path.join(assets, "feature_index.json"))

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, index.num_deep], tf.int64, name="deep_ids"),
                tf.TensorSpec([None, index.num_wide], tf.int64, name="wide_ids"),
                tf.TensorSpec([None, index.num_dense], tf.float32, name="dense"),
            ]
        )
        def serve(self, deep_ids, wide_ids, dense):
            logit = tf.reduce_sum(tf.gather(self.wide, wide_ids), 1) + tf.linalg.matvec(dense, self.dense_weights) + self.bias
            return {"probability": tf.sigmoid(logit), "logit": logit}

    module = Tiny()
    path = os.path.join(str(export_dir), str(version))
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def model_probabilities(model_path, columns) -> np.ndarray:
    """What the model says for raw ``columns``, called directly (no Spark)."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(model_path)).signatures["serving_default"]
    features = Encoder(FeatureIndex.load(os.path.join(str(model_path), "assets"))).encode(columns)
    return fn(**{k: tf.constant(v) for k, v in features.items()})["probability"].numpy()


def candidate_rows(day: str, n: int, seed: int):
    """``n`` well-formed raw rows as a dict of string columns (I* as text, like a raw feed)."""
    rng = np.random.default_rng(seed)
    i1 = [None if v < 0 else f"{v:.2f}" for v in rng.normal(3, 3, n)]
    return {
        "request_id": [f"{day}-r{i // 3}" for i in range(n)],
        "ad_id": [f"ad{i}" for i in range(n)],
        "I1": i1,
        "I2": [f"{v:.3f}" for v in rng.uniform(0, 1, n)],
        "C1": list(rng.choice(["a", "b", "c", "zz", ""], n)),
        "C2": list(rng.choice(["x", "y", None], n)),
    }


BAD_ROWS = {  # appended to DAY's candidates, with the reason each must get
    "request_id": ["bad-0", None, "bad-2", "bad-3"],
    "ad_id": ["ad-b0", "ad-b1", "", "ad-b3"],
    "I1": ["abc", "1", "2", "3"],
    "I2": ["0.1", "0.2", "x1", "inf"],
    "C1": ["a", "b", "c", "a"],
    "C2": ["x", "y", "x", "y"],
}
BAD_REASONS = {
    "bad-0": "I1: not a number: 'abc'",
    None: "missing request_id",
    "bad-2": "missing ad_id; I2: not a number: 'x1'",
    "bad-3": "I2: not a number: 'inf'",
}


def write_candidates(root, good_per_day: int = 20):
    """``<root>/date=DAY/`` (two files, good rows + BAD_ROWS) and ``<root>/date=OTHER_DAY/``."""
    schema = pa.schema([(name, pa.string()) for name in BAD_ROWS])
    good = {}
    for seed, day in enumerate((DAY, OTHER_DAY)):
        rows = candidate_rows(day, good_per_day, seed)
        good[day] = rows
        folder = os.path.join(str(root), f"date={day}")
        os.makedirs(folder)
        half = good_per_day // 2
        first = {k: v[:half] for k, v in rows.items()}
        second = {k: v[half:] + (BAD_ROWS[k] if day == DAY else []) for k, v in rows.items()}
        pq.write_table(pa.table(first, schema=schema), os.path.join(folder, "part-0.parquet"))
        pq.write_table(pa.table(second, schema=schema), os.path.join(folder, "part-1.parquet"))
    return good


def write_encoded_dataset(dataset_dir, index: FeatureIndex, sizes=(("train", 400), ("validation", 50), ("test", 200)), seed: int = 0):
    """``<dataset_dir>/encoded/`` (contract columns), ``feature_index/`` and ``stats.json``. Labels
    follow a logistic model of C1 and I1, so a logistic regression can learn them."""
    from sparkml_tf.io.filesystems import write_json

    rng = np.random.default_rng(seed)
    encoder = Encoder(index)
    tables = []
    for split, n in sizes:
        c1 = rng.choice(["a", "b", "c", "zz"], n)
        i1 = rng.uniform(0, 8, n)
        columns = {"I1": i1, "I2": rng.uniform(0, 1, n), "C1": c1, "C2": rng.choice(["x", "y"], n)}
        logit = np.select([c1 == "a", c1 == "b"], [1.5, -1.5], 0.0) + 0.3 * (i1 - 4)
        label = (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
        enc = encoder.encode(columns)
        tables.append(
            pa.table(
                {
                    "split": [split] * n,
                    "label": label,
                    "deep_ids": pa.array(enc["deep_ids"].tolist(), pa.list_(pa.int64())),
                    "wide_ids": pa.array(enc["wide_ids"].tolist(), pa.list_(pa.int64())),
                    "dense": pa.array(enc["dense"].tolist(), pa.list_(pa.float32())),
                }
            )
        )
    folder = os.path.join(str(dataset_dir), "encoded")
    os.makedirs(folder)
    for i, table in enumerate(tables):
        pq.write_table(table, os.path.join(folder, f"part-{i}.parquet"))
    index.save(os.path.join(str(dataset_dir), "feature_index"))
    counts = dict(sizes)
    write_json(
        os.path.join(str(dataset_dir), "stats.json"),
        {
            "task": "ctr",
            "num_train_examples": counts["train"],
            "num_validation_examples": counts["validation"],
            "num_test_examples": counts["test"],
            "feature_index_version": index.version,
            **index.sizes(),
        },
    )
    return pa.concat_tables(tables)
