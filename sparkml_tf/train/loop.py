"""The training function each worker runs: a custom loop under a tf.distribute strategy.

``train_worker(settings)`` takes plain JSON-able values only (the model and loss as raw sub-configs)
and builds everything here, on the worker. The strategy is MultiWorkerMirroredStrategy when
TF_CONFIG names more than one worker, else the default strategy; the code path is the same.
A custom loop, not ``model.fit``: Keras 3 fit fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585).

Checkpoints (model, optimizer, step, epochs done, best metric and weights, patience counter) go to
``checkpoint_dir``, which must be shared by all workers (HDFS, S3, ...): the chief writes there and
every worker restores from there; other workers write theirs to a local temp dir, as TF asks for
MultiWorkerMirroredStrategy. A rerun resumes from the latest checkpoint (the input pipeline starts
over, reshuffled). Validation NDCG@100 scores every item exactly on every worker, so all workers
reach the same early-stopping decision without talking.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

from sparkml_tf.errors import DataError

EVAL_K = 100


def train_worker(settings: Dict[str, Any]) -> Dict[str, Any]:
    """Train, validate, checkpoint and (on rank 0) export; return a summary from rank 0."""
    return train(settings)


def _log(rank: int, message: str) -> None:
    # print, not logging: a barrier task's stdout is what the launcher keeps for error reports.
    print(f"[sparkml_tf.train rank {rank}] {message}", flush=True)


def build_spec(raw: Any) -> Any:
    """Build a raw sub-config (``{"type": ..., "eval": null, ...}``) into its object; pass objects through."""
    if raw is None or not isinstance(raw, dict):
        return raw
    from sparkml_tf.config import build

    return build({k: v for k, v in raw.items() if k != "eval"})


def cluster_info() -> Dict[str, Any]:
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = tf_config.get("cluster", {}).get("worker", [])
    num_workers = max(len(workers), 1)
    rank = int(tf_config.get("task", {}).get("index", 0)) if num_workers > 1 else 0
    return {"num_workers": num_workers, "rank": rank}


def _set_threads(threads: Optional[int]) -> None:
    import tensorflow as tf

    if not threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:
        pass  # TF already initialised in this (reused) process: the earlier setting stays, which is harmless.


def read_stats(dataset_dir: str) -> Dict[str, Any]:
    import tensorflow as tf

    path = f"{dataset_dir}/stats.json"
    if not tf.io.gfile.exists(path):
        raise DataError("DATA_MISSING_STATS", f"no stats.json in the dataset directory; run the dataset job first (it writes {path})", path)
    with tf.io.gfile.GFile(path) as f:
        stats = json.load(f)
    for key in ("num_items", "num_train_examples"):
        if key not in stats:
            raise DataError("DATA_SCHEMA_MISMATCH", f"stats.json lacks '{key}'; rebuild the dataset with this version of sparkml_tf", path)
    return stats


def shard_files(dataset_dir: str, split: str) -> List[str]:
    import tensorflow as tf

    pattern = f"{dataset_dir}/tfrecord/{split}/part-*.tfrecord.gz"
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise DataError("DATA_MISSING_SPLIT", f"no TFRecord shards match {pattern}; run the dataset job first or fix dataset_dir", pattern)
    return files


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


def train(settings: Dict[str, Any], source: Optional[Callable] = None) -> Dict[str, Any]:
    """``train_worker`` with a pluggable input: ``source(input_context)`` -> dataset of per-user items
    (the benchmark feeds in-memory tensors through it)."""
    cluster = cluster_info()
    rank, num_workers = cluster["rank"], cluster["num_workers"]
    _set_threads(settings.get("tf_threads"))
    import keras
    import tensorflow as tf

    seed = int(settings.get("seed", 0))
    keras.utils.set_random_seed(seed)
    dataset_dir = settings["dataset_dir"]
    stats = read_stats(dataset_dir)
    num_items, num_train = int(stats["num_items"]), int(stats["num_train_examples"])
    spec = build_spec(settings["model"])
    loss = build_spec(settings.get("loss"))

    strategy = tf.distribute.MultiWorkerMirroredStrategy() if num_workers > 1 else tf.distribute.get_strategy()
    global_batch = int(settings.get("batch_size", 256))
    if global_batch % num_workers:
        global_batch += num_workers - global_batch % num_workers  # equal per-worker batches
    steps_per_epoch = int(settings.get("steps_per_epoch") or max(1, math.ceil(num_train / global_batch)))
    epochs, patience = int(settings.get("epochs", 10)), int(settings.get("patience", 3))
    checkpoint_every = max(1, int(settings.get("checkpoint_every_steps", 200)))

    petastorm = stats.get("training_format") == "petastorm"  # Parquet under petastorm/, read with Petastorm
    if source is None and petastorm:
        from sparkml_tf.data.petastorm_dataset import trainer_source

        source = trainer_source(dataset_dir, num_workers, cache=bool(settings.get("cache", True)))
    if source is None:
        train_files = shard_files(dataset_dir, "train")
        if len(train_files) < num_workers:
            raise DataError(
                "DATA_TOO_FEW_SHARDS",
                f"{len(train_files)} training shard(s) for {num_workers} workers, so some worker would get no data; "
                "write at least one shard per worker (the dataset job's num_shards) or use fewer workers",
                f"{dataset_dir}/tfrecord/train",
            )
        source = tfrecord_source(train_files, cache=bool(settings.get("cache", True)))
    if petastorm:
        from sparkml_tf.data.petastorm_dataset import read_validation as read_petastorm_validation

        val_inputs, val_targets = read_petastorm_validation(dataset_dir)
    else:
        val_inputs, val_targets = read_validation(shard_files(dataset_dir, "validation"))

    with strategy.scope():
        net = spec.build(num_items, loss)
        optimizer = keras.optimizers.Adam(learning_rate=float(settings.get("learning_rate", 1e-3)))
        optimizer.build(net.trainable_variables)
    preprocess = spec.preprocess(num_items, loss)
    shuffle_buffer = int(settings.get("shuffle_buffer", 10000))

    def dataset_fn(input_context):
        batch = input_context.get_per_replica_batch_size(global_batch)
        return make_train_dataset(source(input_context), preprocess, batch, shuffle_buffer, seed + input_context.input_pipeline_id)

    # Training state outside the strategy: plain variables, identical on every worker.
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    best_metric = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_ndcg")
    bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_epochs")
    best_weights = [tf.Variable(tf.convert_to_tensor(v), trainable=False, name=f"best_{i}") for i, v in enumerate(net.weights)]
    checkpoint = tf.train.Checkpoint(
        model=net, optimizer=optimizer, step=step, epochs_done=epochs_done, best_metric=best_metric, bad_epochs=bad_epochs, best_weights=best_weights
    )
    checkpoint_dir = settings["checkpoint_dir"]
    is_chief = rank == 0
    if is_chief:
        tf.io.gfile.makedirs(checkpoint_dir)
    own_dir = checkpoint_dir if is_chief else tempfile.mkdtemp(prefix=f"sparkml-tf-ckpt-worker{rank}-")
    manager = tf.train.CheckpointManager(checkpoint, own_dir, max_to_keep=2)
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    history: List[Dict[str, Any]] = []
    history_path = f"{checkpoint_dir}/history.json"
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        if tf.io.gfile.exists(history_path):
            with tf.io.gfile.GFile(history_path) as f:
                history = [h for h in json.load(f) if h["epoch"] < int(epochs_done)]
        _log(rank, f"resumed from {latest} at step {int(step)} (epoch {int(epochs_done)})")
    resumed_from = int(step)

    dist_dataset = strategy.distribute_datasets_from_function(dataset_fn)
    iterator = iter(dist_dataset)

    @tf.function
    def train_step(iterator):
        def step_fn(batch):
            with tf.GradientTape() as tape:
                # The optimizer sums gradients over replicas, so each replica contributes 1/N of the mean.
                value = net.loss(batch, training=True, step=step) / strategy.num_replicas_in_sync
            grads = tape.gradient(value, net.trainable_variables)
            optimizer.apply_gradients(zip(grads, net.trainable_variables))
            return value

        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(step_fn, args=(next(iterator),)), axis=None)

    def save_history():
        if is_chief:
            with tf.io.gfile.GFile(history_path, "w") as f:
                json.dump(history, f, indent=1)

    stopped = int(bad_epochs) >= patience
    for epoch in range(int(epochs_done), epochs):
        if stopped:
            break
        start, losses = time.perf_counter(), []
        while int(step) < (epoch + 1) * steps_per_epoch:
            losses.append(train_step(iterator))
            step.assign_add(1)
            if int(step) % checkpoint_every == 0:
                manager.save(checkpoint_number=int(step))
        train_seconds = time.perf_counter() - start
        ndcg = ndcg_at_k(net, val_inputs, val_targets)
        epoch_loss = float(tf.reduce_mean(tf.stack(losses))) if losses else float("nan")
        if ndcg > float(best_metric):
            best_metric.assign(ndcg)
            bad_epochs.assign(0)
            for b, v in zip(best_weights, net.weights):
                b.assign(tf.convert_to_tensor(v))
        else:
            bad_epochs.assign_add(1)
        epochs_done.assign(epoch + 1)
        seconds = time.perf_counter() - start
        steps_run = len(losses)
        history.append(
            {"epoch": epoch, "loss": epoch_loss, "val_ndcg@100": ndcg, "seconds": seconds, "train_seconds": train_seconds, "steps": steps_run,
             "examples_per_s": steps_run * global_batch / train_seconds if train_seconds > 0 else None}
        )
        if rank == 0:  # every rank computes the same numbers; one copy is enough
            _log(rank, f"epoch {epoch}: loss {epoch_loss:.4f}, val ndcg@100 {ndcg:.4f}, {seconds:.1f}s")
        save_history()  # before the checkpoint: a resume drops epochs the checkpoint has not seen
        manager.save(checkpoint_number=int(step))
        stopped = int(bad_epochs) >= patience

    if float(best_metric) >= 0:  # keep the best epoch's weights, not the last one's
        for v, b in zip(net.weights, best_weights):
            v.assign(tf.convert_to_tensor(b))
    if not is_chief:
        shutil.rmtree(own_dir, ignore_errors=True)
        return {"rank": rank}

    export_path = export_saved_model(spec, loss, net, num_items, settings["export_dir"], history)
    write_embeddings(net, dataset_dir, settings["embeddings_dir"], force=bool(settings.get("force", False)))
    return {
        "best_ndcg": float(best_metric),
        "epochs_run": int(epochs_done),
        "steps": int(step),
        "resumed_from_step": resumed_from,
        "steps_per_epoch": steps_per_epoch,
        "global_batch_size": global_batch,
        "num_workers": num_workers,
        "export_path": export_path,
        "embeddings_dir": settings["embeddings_dir"],
        "history": history,
    }


def next_version(export_dir: str) -> int:
    import tensorflow as tf

    if not tf.io.gfile.isdir(export_dir):
        return 1
    versions = [int(name.rstrip("/")) for name in tf.io.gfile.listdir(export_dir) if name.rstrip("/").isdigit()]
    return max(versions, default=0) + 1


def export_saved_model(spec, loss, net, num_items: int, export_dir: str, history: List[Dict[str, Any]]) -> str:
    """Write ``<export_dir>/<version>/``: a SavedModel whose ``serving_default`` maps padded ``items``
    (int64 [None, None], -1 pads) to ``{"user_embedding": float32 [None, D]}``, and whose
    ``item_embeddings`` signature returns ``{"embeddings": [N, D], "biases": [N]}``."""
    import tensorflow as tf

    # A plain (undistributed) copy: saving distributed variables would need every worker to save.
    serving_net = spec.build(num_items, loss)
    for dst, src in zip(serving_net.weights, net.weights):
        dst.assign(tf.convert_to_tensor(src))
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
    version = next_version(export_dir)
    final = f"{export_dir.rstrip('/')}/{version}"
    tmp = f"{export_dir.rstrip('/')}/.{version}.tmp-{os.getpid()}"
    tf.io.gfile.makedirs(export_dir)
    tf.saved_model.save(module, tmp, signatures={"serving_default": serve, "item_embeddings": item_factors})
    with tf.io.gfile.GFile(f"{tmp}/history.json", "w") as f:
        json.dump(history, f, indent=1)
    tf.io.gfile.rename(tmp, final)  # readers listing versions never see a half-written one
    return final


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
