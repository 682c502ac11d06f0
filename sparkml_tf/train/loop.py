"""Retrieval training: the task the shared loop (:mod:`sparkml_tf.train.runner`) runs for the
average and Mult-VAE models, and what its chief exports (a SavedModel and item embeddings).

``train_worker(settings)`` takes plain JSON-able values only (the model and loss as raw sub-configs)
and builds everything here, on the worker. Validation NDCG@100 scores every item exactly on every
worker, so all workers reach the same early-stopping decision without talking.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional

from sparkml_tf.errors import DataError
from sparkml_tf.serving.export import publish_version
from sparkml_tf.train.runner import build_spec, check_shards, cluster_info, copy_weights, read_dataset_stats, run_loop, shard_files

__all__ = ["train_worker", "train", "build_spec", "cluster_info", "shard_files", "read_stats", "read_validation", "ndcg_at_k"]

EVAL_K = 100


def train_worker(settings: Dict[str, Any]) -> Dict[str, Any]:
    """Train, validate, checkpoint and (on rank 0) export; return a summary from rank 0."""
    return train(settings)


def read_stats(dataset_dir: str) -> Dict[str, Any]:
    return read_dataset_stats(dataset_dir, ("num_items", "num_train_examples"))


def parse_train(record):
    """One serialized tf.train.Example -> its ``items`` (int64 [n])."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(record, {"items": tf.io.VarLenFeature(tf.int64)})
    return tf.sparse.to_dense(parsed["items"], default_value=-1)


def read_validation(files: List[str]):
    """All validation users in memory: padded ``inputs`` and ``targets`` (int64, -1 pads)."""
    import tensorflow as tf

    spec = {"inputs": tf.io.VarLenFeature(tf.int64), "targets": tf.io.VarLenFeature(tf.int64)}
    inputs, targets = [], []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
        parsed = tf.io.parse_example(batch, spec)
        inputs += tf.RaggedTensor.from_sparse(parsed["inputs"]).to_list()
        targets += tf.RaggedTensor.from_sparse(parsed["targets"]).to_list()
    keep = [i for i, t in enumerate(targets) if t]  # users without targets have no NDCG
    return _pad([inputs[i] for i in keep]), _pad([targets[i] for i in keep])


def _pad(rows: List[List[int]]):
    """-1 padded int64 matrix, at least one column wide (a batch of users without any input is still a batch)."""
    from sparkml_tf.metrics.ranking import pad_lists

    return pad_lists(rows, max([len(r) for r in rows] + [1]))


def ndcg_at_k(net, inputs, targets, k: int = EVAL_K, batch_size: int = 512) -> float:
    """Mean NDCG@k (Mult-VAE definition: IDCG over min(k, #targets)); fold-in items are never ranked."""
    import numpy as np
    import tensorflow as tf

    from sparkml_tf.metrics.ranking import batch_metrics

    if len(inputs) == 0:
        return float("nan")
    items = net.item_embeddings()
    biases = net.item_biases()
    num_items = int(items.shape[0])
    k = min(k, num_items)
    total = 0.0
    for start in range(0, len(inputs), batch_size):
        x = tf.constant(inputs[start : start + batch_size])
        t = targets[start : start + batch_size]
        scores = tf.matmul(net.user_embedding(x, training=False), items, transpose_b=True) + biases
        where = tf.where(x >= 0)
        seen = tf.stack([where[:, 0], tf.gather_nd(x, where)], axis=1)
        scores = tf.tensor_scatter_nd_update(scores, seen, tf.fill([tf.shape(seen)[0]], -np.inf))
        top = tf.math.top_k(scores, k=k).indices.numpy()
        total += float(np.sum(batch_metrics(top, t, [k])[f"ndcg@{k}"]))  # the evaluator's definition, shared
    return total / len(inputs)


def make_train_dataset(raw_items, preprocess: Callable, batch_size: int, shuffle_buffer: int, seed: int):
    """Per-user ``items`` -> shuffled, repeated, padded batches of training examples (-1 pads)."""
    import tensorflow as tf

    # repeat before shuffle: the buffer stays full across epoch boundaries instead of draining and
    # refilling (a stall while shuffle_buffer records are read and decoded, with no training).
    # Epochs are counted in steps anyway, so their edges need not be exact.
    ds = raw_items.repeat().shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    spec = ds.element_spec
    ds = ds.padded_batch(batch_size, padding_values={key: tf.constant(-1, spec[key].dtype) for key in spec}, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def parse_train_batch(records):
    """A batch of serialized tf.train.Example -> ragged ``items`` (vectorized: far cheaper than one by one)."""
    import tensorflow as tf

    parsed = tf.io.parse_example(records, {"items": tf.io.RaggedFeature(tf.int64)})
    return parsed["items"]


def tfrecord_source(files: List[str], cache: bool = True):
    """The default input: each worker reads its own shards (files[worker::num_workers]).

    ``cache`` keeps the decoded examples in memory after the first epoch (a worker's share of the
    interaction lists is small next to its RAM), so later epochs skip GZIP and protobuf decoding.
    """
    import tensorflow as tf

    def source(input_context):
        mine = files[input_context.input_pipeline_id :: input_context.num_input_pipelines]
        ds = tf.data.TFRecordDataset(mine, compression_type="GZIP", num_parallel_reads=min(len(mine), 4) or None)
        ds = ds.batch(1024).map(parse_train_batch, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        return ds.cache() if cache else ds

    return source


class RetrievalTask:
    """Per-user item lists in, validation NDCG@100 out (see :class:`sparkml_tf.train.runner.LoopTask`)."""

    metric = "val_ndcg@100"

    def __init__(self, settings: Dict[str, Any], source: Optional[Callable] = None):
        self.settings = settings
        self.dataset_dir = settings["dataset_dir"]
        self.stats = read_stats(self.dataset_dir)
        self.num_items = int(self.stats["num_items"])
        self.spec = build_spec(settings["model"])
        self.loss = build_spec(settings.get("loss"))
        self.source = source
        self.cache = bool(settings.get("cache", True))
        self.petastorm = self.stats.get("training_format") == "petastorm"  # Parquet under petastorm/, read with Petastorm
        self.validation = None

    def num_train_examples(self) -> int:
        return int(self.stats["num_train_examples"])

    def prepare(self) -> None:
        num_workers = cluster_info()["num_workers"]
        if self.source is None and self.petastorm:
            from sparkml_tf.data.petastorm_dataset import trainer_source

            self.source = trainer_source(self.dataset_dir, num_workers, cache=self.cache)
        if self.source is None:
            train_files = shard_files(self.dataset_dir, "train")
            check_shards(train_files, num_workers, f"{self.dataset_dir}/tfrecord/train")
            self.source = tfrecord_source(train_files, cache=self.cache)
        if self.petastorm:
            from sparkml_tf.data.petastorm_dataset import read_validation as read_petastorm_validation

            self.validation = read_petastorm_validation(self.dataset_dir)
        else:
            self.validation = read_validation(shard_files(self.dataset_dir, "validation"))
        self.preprocess = self.spec.preprocess(self.num_items, self.loss)

    def build(self):
        return self.spec.build(self.num_items, self.loss)

    def dataset(self, input_context, per_replica_batch: int, seed: int):
        shuffle_buffer = int(self.settings.get("shuffle_buffer", 10000))
        return make_train_dataset(self.source(input_context), self.preprocess, per_replica_batch, shuffle_buffer, seed)

    def evaluate(self, net) -> Dict[str, float]:
        return {self.metric: ndcg_at_k(net, *self.validation)}


def train(settings: Dict[str, Any], source: Optional[Callable] = None) -> Dict[str, Any]:
    """``train_worker`` with a pluggable input: ``source(input_context)`` -> dataset of per-user items
    (the benchmark feeds in-memory tensors through it)."""
    task = RetrievalTask(settings, source)
    result = run_loop(task, settings)
    if not result.is_chief:
        return {"rank": result.rank}
    net = result.net
    export_path = export_saved_model(task.spec, task.loss, net, task.num_items, settings["export_dir"], result.history)
    write_embeddings(net, task.dataset_dir, settings["embeddings_dir"], force=bool(settings.get("force", False)))
    return {
        "best_ndcg": result.best_metric,
        **result.summary(),
        "export_path": export_path,
        "embeddings_dir": settings["embeddings_dir"],
    }


def export_saved_model(spec, loss, net, num_items: int, export_dir: str, history: List[Dict[str, Any]]) -> str:
    """Write ``<export_dir>/<version>/``: a SavedModel whose ``serving_default`` maps padded ``items``
    (int64 [None, None], -1 pads) to ``{"user_embedding": float32 [None, D]}``, and whose
    ``item_embeddings`` signature returns ``{"embeddings": [N, D], "biases": [N]}``."""
    import tensorflow as tf

    # A plain (undistributed) copy: saving distributed variables would need every worker to save.
    serving_net = spec.build(num_items, loss)
    copy_weights(serving_net, net)
    module = tf.Module()
    module.net = serving_net
    module.item_embeddings = tf.Variable(net.item_embeddings(), trainable=False, name="item_embeddings")
    module.item_biases = tf.Variable(net.item_biases(), trainable=False, name="item_biases")

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64, name="items")])
    def serve(items):
        return {"user_embedding": serving_net.user_embedding(items, training=False)}

    @tf.function(input_signature=[])
    def item_factors():
        return {"embeddings": tf.identity(module.item_embeddings), "biases": tf.identity(module.item_biases)}

    module.serve, module.item_factors = serve, item_factors

    def write(tmp: str, version: int) -> None:
        tf.saved_model.save(module, tmp, signatures={"serving_default": serve, "item_embeddings": item_factors})
        with tf.io.gfile.GFile(f"{tmp}/history.json", "w") as f:
            json.dump(history, f, indent=1)

    return publish_version(export_dir, write)  # readers listing versions never see a half-written one


def write_embeddings(net, dataset_dir: str, embeddings_dir: str, force: bool = False) -> None:
    """Parquet ``id`` int64, ``item`` string (original id from the vocab), ``vector`` list<float32>, ``bias`` float32."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparkml_tf.jobs.outputs import atomic_output

    vectors = np.asarray(net.item_embeddings(), dtype=np.float32)
    biases = np.asarray(net.item_biases(), dtype=np.float32)
    num_items, dim = vectors.shape
    vocab_path = f"{dataset_dir}/vocab/items.parquet"
    vocab = pq.read_table(vocab_path, columns=["item", "id"]).to_pydict()
    names: List[Optional[str]] = [None] * num_items
    for item, index in zip(vocab["item"], vocab["id"]):
        if 0 <= index < num_items:
            names[index] = str(item)
    missing = [i for i, n in enumerate(names) if n is None]
    if missing:
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"the item vocabulary has no entry for {len(missing)} of {num_items} ids (first: {missing[:5]}); "
            "the vocab and stats.json come from different dataset runs: rebuild the dataset",
            vocab_path,
        )
    table = pa.table(
        {
            "id": pa.array(np.arange(num_items, dtype=np.int64)),
            "item": pa.array(names, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim).cast(pa.list_(pa.float32())),
            "bias": pa.array(biases),
        }
    )
    with atomic_output(embeddings_dir, force=force) as tmp:
        from sparkml_tf.filesystems import resolve

        filesystem, local = resolve(tmp)
        filesystem.create_dir(local, recursive=True)
        pq.write_table(table, f"{local}/part-00000.parquet", filesystem=filesystem)
