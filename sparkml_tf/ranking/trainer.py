"""CTR training: the task the shared loop (:mod:`sparkml_tf.train.loop`) runs for the Wide & Deep
and DCN-V2 models, and what its chief writes (``<model_dir>``, see :mod:`sparkml_tf.ranking.model_dir`).

``train_ctr_worker(settings)`` takes plain JSON-able values only (the model as a raw sub-config)
and builds everything here, on the worker. Input: ``<dataset_dir>/tfrecord/train`` shards, each
worker reading its own (``files[worker::num_workers]``); loss: binary cross-entropy. Validation AUC
and log loss are computed on every validation example by every worker, so all workers reach the
same early-stopping decision (on AUC) without talking.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from sparkml_tf.errors import DataError
from sparkml_tf.ranking.layout import CtrDataset
from sparkml_tf.train.loop import check_shards, cluster_info, run_loop, spec_of

STATS_KEYS = ("num_train_examples", "deep_size", "wide_size", "num_deep", "num_wide", "num_dense")
METRIC = "val_auc"


def train_ctr_worker(settings: Dict[str, Any]) -> Dict[str, Any]:
    """Train, validate, checkpoint and (on rank 0) write ``model_dir``; return a summary from rank 0."""
    return train_ctr(settings)


def example_spec(sizes: Dict[str, int]) -> Dict[str, Any]:
    import tensorflow as tf

    return {
        "label": tf.io.FixedLenFeature([], tf.float32),
        "deep_ids": tf.io.FixedLenFeature([sizes["num_deep"]], tf.int64),
        "wide_ids": tf.io.FixedLenFeature([sizes["num_wide"]], tf.int64),
        "dense": tf.io.FixedLenFeature([sizes["num_dense"]], tf.float32),
    }


def parse_batch(records, sizes: Dict[str, int]) -> Dict[str, Any]:
    """A batch of serialized tf.train.Example -> ``{label, deep_ids, wide_ids, dense}`` (vectorized)."""
    import tensorflow as tf

    return tf.io.parse_example(records, example_spec(sizes))


def read_ctr_batches(files: List[str], sizes: Dict[str, int], batch_size: int = 4096, limit: Optional[int] = None):
    """The examples of ``files`` in order, as parsed batches (validation, warm-up samples)."""
    import tensorflow as tf

    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if limit:
        ds = ds.take(limit)
    return ds.batch(batch_size).map(lambda r: parse_batch(r, sizes), num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def sample_examples(dataset_dir: str, split: str, sizes: Dict[str, int], num: int, seed: int = 0) -> Dict[str, Any]:
    """``num`` examples of a split (shuffled within the first ``10 * num``) as numpy features."""
    import tensorflow as tf

    ds = tf.data.TFRecordDataset(CtrDataset(dataset_dir).shard_files(split), compression_type="GZIP").take(10 * num).shuffle(10 * num, seed=seed).take(num)
    batch = next(iter(ds.batch(num).map(lambda r: parse_batch(r, sizes))), None)
    if batch is None:
        raise DataError("DATA_EMPTY", f"the {split} split has no examples; rebuild the dataset", CtrDataset(dataset_dir).tfrecord_dir(split))
    return {k: batch[k].numpy() for k in ("deep_ids", "wide_ids", "dense")}


def validation_metrics(labels, logits) -> Dict[str, float]:
    """``val_auc`` and ``val_logloss`` with the evaluator's definitions."""
    import numpy as np

    from sparkml_tf.metrics.classification import log_loss, roc_auc

    probabilities = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    return {METRIC: roc_auc(labels, probabilities), "val_logloss": log_loss(labels, probabilities)}


class CtrTask:
    """Encoded CTR examples in, validation AUC out (see :class:`sparkml_tf.train.loop.LoopTask`)."""

    metric = METRIC

    def __init__(self, settings: Dict[str, Any]):
        self.settings = settings
        self.dataset_dir = settings["dataset_dir"]
        self.spec = spec_of(settings["model"], "model")
        self.layout = CtrDataset(self.dataset_dir)
        self.stats = self.layout.read_stats(STATS_KEYS)
        self.sizes = {k: int(self.stats[k]) for k in ("deep_size", "wide_size", "num_deep", "num_wide", "num_dense")}
        self.cache = bool(settings.get("cache", False))  # CTR data usually outgrows a worker's RAM
        self.shuffle_buffer = int(settings.get("shuffle_buffer", 10000))
        self.eval_batch_size = int(settings.get("eval_batch_size", 4096))
        self.max_validation = settings.get("max_validation_examples")
        self._predict = None

    def num_train_examples(self) -> int:
        return int(self.stats["num_train_examples"])

    def prepare(self) -> None:
        self.train_files = self.layout.shard_files("train")
        check_shards(self.train_files, cluster_info()["num_workers"], self.layout.tfrecord_dir("train"))
        self.validation_files = self.layout.shard_files("validation")

    def build(self):
        return self.spec.build(self.sizes)

    def dataset(self, input_context, per_replica_batch: int, seed: int):
        import tensorflow as tf

        mine = self.train_files[input_context.input_pipeline_id :: input_context.num_input_pipelines]
        ds = tf.data.TFRecordDataset(mine, compression_type="GZIP", num_parallel_reads=min(len(mine), 4))
        if self.cache:
            ds = ds.cache()
        # repeat before shuffle: the buffer stays full across epoch edges (epochs are counted in steps).
        ds = ds.repeat().shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(per_replica_batch, drop_remainder=True)
        return ds.map(lambda r: parse_batch(r, self.sizes), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def evaluate(self, net) -> Dict[str, float]:
        import numpy as np
        import tensorflow as tf

        if self._predict is None:
            self._predict = tf.function(lambda features: net(features, training=False))
        labels, logits = [], []
        limit = int(self.max_validation) if self.max_validation else None
        for batch in read_ctr_batches(self.validation_files, self.sizes, self.eval_batch_size, limit):
            labels.append(batch["label"].numpy())
            logits.append(self._predict(batch).numpy())
        if not labels:
            return {METRIC: float("nan"), "val_logloss": float("nan")}
        return validation_metrics(np.concatenate(labels), np.concatenate(logits))


def train_ctr(settings: Dict[str, Any]) -> Dict[str, Any]:
    from sparkml_tf.ranking.model_dir import write_model_dir

    task = CtrTask(settings)
    result = run_loop(task, settings)
    if not result.is_chief:
        return {"rank": result.rank}
    if not result.finished:  # paused (a search rung): the checkpoints hold it, nothing to write yet
        return {"best_val_auc": result.best_metric, **result.summary()}
    info = write_model_dir(
        settings["model_dir"],
        task.spec,
        settings["raw_specs"]["model"],
        result.net,
        task.sizes,
        dataset_dir=task.dataset_dir,
        history=result.history,
        extra={"best_val_auc": result.best_metric, "epochs_run": result.epochs_run, "steps": result.steps},
        force=bool(settings.get("force", False)),
    )
    return {"best_val_auc": result.best_metric, **result.summary(), "model_dir": settings["model_dir"], "checkpoint_id": info["checkpoint_id"]}
