"""Retrieval training: the task the shared loop (:mod:`sparkml_tf.train.loop`) runs for the
average and Mult-VAE models, and what its chief exports (a SavedModel and item embeddings).

``train_worker(settings)`` takes plain JSON-able values only (the model and loss as raw sub-configs)
and builds everything here, on the worker.

Validation NDCG@100 is exact (every item is scored) and split across the training workers: worker
``r`` of ``W`` scores validation users ``r, r + W, r + 2W, ...`` and the per-worker sums and counts
are all-reduced, so every worker gets the same mean (the same early-stopping decision) for
``users x items / W`` work. Scores are computed ``SCORE_ELEMENTS`` at a time (a batch of users
against a chunk of items), each chunk's top ``k`` merged with the best so far, so memory stays
bounded at any catalogue size (docs/scale.md).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from sparkml_tf.errors import DataError
from sparkml_tf.retrieval.layout import RetrievalDataset
from sparkml_tf.retrieval.records import read_train_pairs, read_validation, tfrecord_source, training_batches
from sparkml_tf.serving.export import publish_version
from sparkml_tf.train.loop import LoopResult, Telemetry, check_shards, cluster_info, copy_weights, log, run_loop, spec_of

__all__ = ["train_worker", "train", "read_stats", "ndcg_at_k", "ndcg_sum", "top_k_unseen", "validation_share"]

EVAL_K = 100
# Scores one worker holds at once during validation: a batch of users x a chunk of items (float32:
# 256 MiB, 512 users x 131,072 items; a smaller catalogue is one chunk).
SCORE_ELEMENTS = 1 << 26


def train_worker(settings: Dict[str, Any]) -> Dict[str, Any]:
    """Train, validate, checkpoint and (on rank 0) export; return a summary from rank 0."""
    return train(settings)


def read_stats(dataset_dir: str) -> Dict[str, Any]:
    return RetrievalDataset(dataset_dir).read_stats()


def ndcg_at_k(net, inputs, targets, k: int = EVAL_K, batch_size: int = 512, score_elements: int = SCORE_ELEMENTS) -> float:
    """Mean NDCG@k (Mult-VAE definition: IDCG over min(k, #targets)) over every item exactly; fold-in
    items are never ranked. NaN without users."""
    if len(inputs) == 0:
        return float("nan")
    total, count = ndcg_sum(net, inputs, targets, k, batch_size, score_elements)
    return total / count


def ndcg_sum(net, inputs, targets, k: int = EVAL_K, batch_size: int = 512, score_elements: int = SCORE_ELEMENTS) -> Tuple[float, int]:
    """``(sum of the users' NDCG@k, number of users)`` of ``inputs``/``targets`` (-1 padded rows), for a
    mean over several workers' shares. Memory: ``batch_size x chunk`` scores, the chunk of items being
    ``score_elements // batch_size`` (at least ``k``)."""
    import numpy as np
    import tensorflow as tf

    from sparkml_tf.metrics.ranking import batch_metrics

    if len(inputs) == 0:
        return 0.0, 0
    items = net.item_embeddings()
    biases = net.item_biases()
    num_items = int(items.shape[0])
    k = min(k, num_items)
    chunk = max(k, int(score_elements) // max(int(batch_size), 1))
    total = 0.0
    for start in range(0, len(inputs), batch_size):
        x = tf.constant(inputs[start : start + batch_size])
        top = top_k_unseen(net.user_embedding(x, training=False), items, biases, x, k, chunk)
        total += float(np.sum(batch_metrics(top, targets[start : start + batch_size], [k])[f"ndcg@{k}"]))  # the evaluator's definition, shared
    return total, len(inputs)


def top_k_unseen(users, items, biases, seen, k: int, chunk_items: int):
    """Ids (int64 numpy [B, k]) of the ``k`` best items by ``users @ items.T + biases``, never one of
    ``seen`` (int [B, L], -1 padded), best first: the same list as one ``tf.math.top_k`` over all
    items, ties to the lower id, computed ``chunk_items`` items at a time. Each chunk's top ``k`` is
    merged with the best so far (candidates of earlier chunks first, so a tie still goes to the lower id)."""
    import numpy as np
    import tensorflow as tf

    num_items = int(items.shape[0])
    k = min(int(k), num_items)
    chunk_items = max(int(chunk_items), 1)
    seen = tf.convert_to_tensor(seen, tf.int64)
    best_values = best_ids = None
    for start in range(0, num_items, chunk_items):
        stop = min(start + chunk_items, num_items)
        scores = tf.matmul(users, items[start:stop], transpose_b=True) + biases[start:stop]
        where = tf.where((seen >= start) & (seen < stop))
        if int(tf.shape(where)[0]):
            cells = tf.stack([where[:, 0], tf.gather_nd(seen, where) - start], axis=1)
            scores = tf.tensor_scatter_nd_update(scores, cells, tf.fill([tf.shape(cells)[0]], tf.constant(-np.inf, scores.dtype)))
        top = tf.math.top_k(scores, k=min(k, stop - start))
        ids = tf.cast(top.indices, tf.int64) + start
        if best_values is None:
            best_values, best_ids = top.values, ids
            continue
        values = tf.concat([best_values, top.values], axis=1)
        merged = tf.math.top_k(values, k=min(k, int(values.shape[1])))
        best_values, best_ids = merged.values, tf.gather(tf.concat([best_ids, ids], axis=1), merged.indices, batch_dims=1)
    return best_ids.numpy()


def validation_share(num_users: int, rank: int, num_workers: int) -> slice:
    """The validation rows worker ``rank`` of ``num_workers`` scores: every ``num_workers``-th from
    ``rank``: the shares differ by one user at most and together hold every row once, provided every
    worker reads the rows in the same order (the sorted validation shards)."""
    return slice(int(rank), int(num_users), max(int(num_workers), 1))


_REDUCER: List[Any] = [None, None]  # (strategy, its traced all-reduce): one per training process


def all_reduce_sum(strategy, values: Sequence[float]):
    """``values`` (float64) summed over the workers of ``strategy`` (MultiWorkerMirroredStrategy), the
    same array on every worker. A collective: every worker must call it, in the same order. Traced
    once per strategy (run eagerly, the strategy warns of its overhead at every call)."""
    import numpy as np
    import tensorflow as tf

    if _REDUCER[0] is not strategy:
        def gather(v):
            # identity: the traced input has no device; the copy is placed on this replica's, which the all-reduce needs
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(v))

        _REDUCER[:] = [strategy, tf.function(lambda v: strategy.run(gather, args=(v,)))]
    reduced = _REDUCER[1](tf.constant(np.asarray(values, np.float64)))
    return strategy.experimental_local_results(reduced)[0].numpy()


class RetrievalTask:
    """Per-user item lists in, validation NDCG@100 out (see :class:`sparkml_tf.train.loop.LoopTask`):
    each worker scores its share of the validation users, the sums are all-reduced."""

    metric = "val_ndcg@100"

    def __init__(self, settings: Dict[str, Any], source: Optional[Callable] = None):
        self.settings = settings
        self.dataset_dir = settings["dataset_dir"]
        self.spec = spec_of(settings["model"], "model")
        self.loss = spec_of(settings.get("loss"), "loss")
        self.layout = RetrievalDataset(self.dataset_dir)
        self.stats = self.layout.read_stats()
        self.num_items = int(self.stats["num_items"])
        self.source = source
        self.cache = bool(settings.get("cache", True))
        self.petastorm = self.stats.get("training_format") == "petastorm"  # Parquet under petastorm/, read with Petastorm
        self.validation = None
        self.strategy = None  # the training strategy, seen by build() under its scope: validation all-reduces through it
        self.rank, self.num_workers = 0, 1

    def num_train_examples(self) -> int:
        return int(self.stats["num_train_examples"])

    def configure(self, schedule) -> None:
        """Let the model size step-counted settings (Mult-VAE's KL annealing) by the step budget."""
        if hasattr(self.spec, "for_schedule"):
            self.spec = self.spec.for_schedule(schedule)

    def prepare(self) -> None:
        cluster = cluster_info()
        self.rank, self.num_workers = cluster["rank"], cluster["num_workers"]
        num_workers = self.num_workers
        if self.source is None and self.petastorm:
            from sparkml_tf.retrieval.petastorm_input import trainer_source

            self.source = trainer_source(self.dataset_dir, num_workers, cache=self.cache)
        if self.source is None:
            train_files = self.layout.shard_files("train")
            check_shards(train_files, num_workers, self.layout.tfrecord_dir("train"))
            self.source = tfrecord_source(train_files, cache=self.cache)
        if self.petastorm:
            from sparkml_tf.retrieval.petastorm_input import read_validation as read_petastorm_validation

            self.validation = read_petastorm_validation(self.dataset_dir)
        else:
            self.validation = read_validation(self.layout.shard_files("validation"))
        self.preprocess = self.spec.preprocess(self.num_items, self.loss)

    def build(self):
        import tensorflow as tf

        self.strategy = tf.distribute.get_strategy()  # called under the strategy's scope
        return self.spec.build(self.num_items, self.loss)

    def dataset(self, input_context, per_replica_batch: int, seed: int):
        shuffle_buffer = int(self.settings.get("shuffle_buffer", 10000))
        return training_batches(self.source(input_context), self.preprocess, per_replica_batch, shuffle_buffer, seed, in_memory=self.cache)

    def evaluate(self, net) -> Dict[str, float]:
        """The mean NDCG@100 over all validation users, identical on every worker: this worker's share
        scored here, the sums and counts of all shares all-reduced (a collective: every worker calls it)."""
        inputs, targets = self.validation
        split = self.num_workers > 1 and self.strategy is not None and self.strategy.num_replicas_in_sync > 1
        share = validation_share(len(inputs), self.rank, self.num_workers) if split else slice(None)
        total, count = ndcg_sum(net, inputs[share], targets[share])
        if split:
            total, count = all_reduce_sum(self.strategy, [total, count])
        return {self.metric: float(total / count) if count else float("nan")}


def train(settings: Dict[str, Any], source: Optional[Callable] = None) -> Dict[str, Any]:
    """``train_worker`` with a pluggable input: ``source(input_context)`` -> dataset of per-user items
    (the benchmark feeds in-memory tensors through it)."""
    task = RetrievalTask(settings, source)
    result = fit_closed_form(task, settings) if getattr(task.spec, "closed_form", False) else run_loop(task, settings)
    if not result.is_chief:
        return {"rank": result.rank}
    if not result.finished:  # paused (a search rung): the checkpoints hold it, nothing to export yet
        return {"best_ndcg": result.best_metric, **result.summary()}
    net = result.net
    export_path = export_saved_model(task.spec, task.loss, net, task.num_items, settings["export_dir"], result.history)
    write_embeddings(net, task.dataset_dir, settings["embeddings_dir"], force=bool(settings.get("force", False)))
    return {
        "best_ndcg": result.best_metric,
        **result.summary(),
        "export_path": export_path,
        "embeddings_dir": settings["embeddings_dir"],
    }


def fit_closed_form(task: "RetrievalTask", settings: Dict[str, Any]) -> LoopResult:
    """Fit a closed-form model (:class:`sparkml_tf.retrieval.models.ease.Ease`): every worker builds the
    Gram matrix from all training shards, fits its share of the L2 grid and scores it on validation;
    the scores are all-reduced, and every worker ends holding the best fit (the chief exports it).

    TensorBoard (the chief's): the validation metric, the L2 value and the fit's seconds of each grid
    entry, at step = its index in the grid; live metrics: each worker's memory, the chief's best score."""
    import time

    import numpy as np

    from sparkml_tf.metrics.baselines import ease_weights, gram_matrix
    from sparkml_tf.spark.executor import configure_tf_threads

    cluster = cluster_info()
    rank, num_workers = cluster["rank"], cluster["num_workers"]
    configure_tf_threads(settings.get("tf_threads"))
    import tensorflow as tf

    spec = task.spec
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if num_workers > 1 else None  # before any other TF op
    if task.num_items > spec.max_items:
        raise DataError(
            "TRAIN_MODEL_TOO_LARGE",
            f"Ease holds dense {task.num_items}×{task.num_items} matrices ({spec.memory_bytes(task.num_items) / 2**30:.1f} GiB per worker while "
            f"fitting), above its max_items={spec.max_items}; use LinearAE for this catalogue, or raise model.max_items if the workers have the memory",
            "model.max_items",
        )
    started = time.perf_counter()
    if task.petastorm:
        raise DataError("TRAIN_UNSUPPORTED_INPUT", "Ease reads the TFRecord shards; build the dataset with training_format 'tfrecord'", "model")
    task.validation = read_validation(task.layout.shard_files("validation"))
    users, items = read_train_pairs(task.layout.shard_files("train"))
    G = gram_matrix(users, items, task.num_items)
    del users, items
    if rank == 0:
        log(rank, f"Ease: Gram matrix of {task.num_items} items in {time.perf_counter() - started:.1f}s; L2 grid {spec.grid} over {num_workers} worker(s)")
    net = spec.build(task.num_items)
    scores = np.zeros(len(spec.grid), np.float64)
    seconds = np.zeros(len(spec.grid), np.float64)
    best, best_B = -1, None
    for i in range(rank, len(spec.grid), num_workers):
        start = time.perf_counter()
        B = ease_weights(G, spec.grid[i])
        net.set_weights_from(B)
        scores[i] = ndcg_at_k(net, *task.validation)
        seconds[i] = time.perf_counter() - start
        log(rank, f"Ease l2={spec.grid[i]:g}: {task.metric} {scores[i]:.4f}, {seconds[i]:.1f}s")
        if not spec.refit and (best < 0 or scores[i] > scores[best]):
            best, best_B = i, B  # kept, so the chief need not fit it again
        del B
    if strategy is not None:  # each worker filled its own entries; a sum gathers them all
        scores, seconds = all_reduce_sum(strategy, np.stack([scores, seconds]))
    chosen = int(np.nanargmax(scores))
    report_closed_form(Telemetry(settings, rank, 0), task.metric, spec.grid, scores, seconds, chosen)
    if rank == 0 and spec.refit:  # λ is chosen: fit it again on every user not held out for test
        del best_B
        inputs, targets = task.validation
        both = np.concatenate([inputs, targets], axis=1)
        rows = np.broadcast_to(np.arange(len(both))[:, None], both.shape)
        G += gram_matrix(rows[both >= 0], both[both >= 0], task.num_items)
        net.set_weights_from(ease_weights(G, spec.grid[chosen], overwrite=True))
        log(rank, f"Ease: kept l2={spec.grid[chosen]:g} ({task.metric} {scores[chosen]:.4f}), refitted on the training and validation users")
    elif rank == 0:
        net.set_weights_from(best_B if chosen == best else ease_weights(G, spec.grid[chosen], overwrite=True))
        log(rank, f"Ease: kept l2={spec.grid[chosen]:g} ({task.metric} {scores[chosen]:.4f})")
    del G
    history = [{"epoch": i, "step": 0, "l2": lam, task.metric: float(scores[i]), "seconds": float(seconds[i])} for i, lam in enumerate(spec.grid)]
    return LoopResult(
        net=net, history=history, best_metric=float(scores[chosen]), epochs_run=len(spec.grid), steps=0, resumed_from_step=0,
        steps_per_epoch=0, global_batch_size=0, rank=rank, num_workers=num_workers,
        schedule={"closed_form": True, "l2_grid": list(spec.grid), "l2": spec.grid[chosen], "refit": spec.refit},
    )


def report_closed_form(telemetry: Telemetry, metric: str, grid, scores, seconds, chosen: int) -> None:
    """A closed-form fit's grid to TensorBoard (the chief's) and live metrics; closes ``telemetry``."""
    from sparkml_tf.telemetry.resources import rss_bytes

    try:
        telemetry.live.set({"train_worker_rss_bytes": rss_bytes()})
        if telemetry.chief:
            for i, lam in enumerate(grid):
                telemetry.scalars.write(i, {f"validation/{metric}": float(scores[i]), "ease/l2": float(lam), "ease/fit_seconds": float(seconds[i])})
            telemetry.live.set({f"train_{metric}": float(scores[chosen]), "train_ease_l2": float(grid[chosen])})
        telemetry.live.push()
    finally:
        telemetry.close()


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

    from sparkml_tf.io.outputs import atomic_output

    vectors = np.asarray(net.item_embeddings(), dtype=np.float32)
    biases = np.asarray(net.item_biases(), dtype=np.float32)
    num_items, dim = vectors.shape
    vocab_path = RetrievalDataset(dataset_dir).vocab_table
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
        from sparkml_tf.io.filesystems import resolve

        filesystem, local = resolve(tmp)
        filesystem.create_dir(local, recursive=True)
        pq.write_table(table, f"{local}/part-00000.parquet", filesystem=filesystem)
