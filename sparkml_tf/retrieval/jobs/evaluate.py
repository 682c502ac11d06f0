"""Evaluate: top-k retrieval metrics of the model (through the ANN index) and of baselines.

Protocol (Mult-VAE strong generalization): each held-out user of ``split`` has fold-in items
(``<split>_input``, from which the user embedding was computed) and target items
(``<split>_target``). Fold-in items are never recommended. Metric definitions are in
:mod:`sparkml_tf.metrics.ranking` and docs/metrics.md.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Dict, List, Optional, Sequence

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.engine.results import previous_metrics, save_metrics
from sparkml_tf.errors import DataError
from sparkml_tf.io.outputs import check_location

LOGGER = logging.getLogger(__name__)
BASELINES = ("popular", "ease")


class Evaluate(Job):
    """Write ``output_path`` (metrics.json), a flat JSON object::

        {"recall@20": ..., "recall_spark@20": ..., "ndcg@20": ..., ..., "num_users": ...,
         "ann_recall@100": ..., "popular/recall@20": ..., "ease/ndcg@100": ..., ...}

    Model metrics cover users with a user embedding and at least one target; baselines cover
    every user with a target. ``ann_recall@100`` is the overlap of the index's top 100 with an
    exact search on ``ann_check_users`` users (without fold-in filtering). EASE is skipped when
    its fit would need more than ``ease_max_memory_gb`` on the driver (one float32 N×N array: 1.6 GB
    at 20,000 items) or the catalogue has more than ``ease_max_items`` items (when set); then
    ``ease/skipped`` in the metrics says why. Also logs the metrics, the file and a Recall@k-vs-k
    plot to the tracker.
    """

    def __init__(
        self,
        dataset_dir: str,
        user_embeddings_dir: str,
        index_dir: str,
        embeddings_dir: str,
        output_path: str,
        ks: Sequence[int] = (20, 50, 100),
        split: str = "test",
        baselines: Sequence[str] = ("popular", "ease"),
        ease_lambda: float = 500.0,
        ease_max_items: Optional[int] = None,
        ease_max_memory_gb: float = 4.0,
        ann_check_users: int = 200,
        name: str = "evaluate",
    ):
        if split not in ("test", "validation"):
            raise DataError(
                "EVALUATE_UNKNOWN_SPLIT", f"split must be 'test' or 'validation' (it reads <split>_input and <split>_target), got {split!r}", "split"
            )
        ks = [int(k) for k in ks]
        if not ks or min(ks) <= 0:
            raise DataError("EVALUATE_BAD_KS", f"ks must be a non-empty list of positive integers, got {ks}", "ks")
        unknown = sorted(set(baselines) - set(BASELINES))
        if unknown:
            raise DataError("EVALUATE_UNKNOWN_BASELINE", f"unknown baseline(s) {unknown}; choose from {list(BASELINES)}", "baselines")
        self.dataset_dir = dataset_dir
        self.user_embeddings_dir = user_embeddings_dir
        self.index_dir = index_dir
        self.embeddings_dir = embeddings_dir
        self.output_path = output_path
        self.ks = sorted(set(ks))
        self.split = split
        self.baselines = list(baselines)
        self.ease_lambda = ease_lambda
        self.ease_max_items = ease_max_items
        self.ease_max_memory_gb = float(ease_max_memory_gb)
        self.ann_check_users = ann_check_users
        self.name = name
        check_location(self.output_path, "output_path")

    def inputs(self) -> List[str]:
        return [self.dataset_dir, self.user_embeddings_dir, self.index_dir, self.embeddings_dir]

    def outputs(self) -> List[str]:
        return [self.output_path]

    def metric_names(self) -> List[str]:
        return [f"{m}@{k}" for k in self.ks for m in ("recall", "recall_spark", "ndcg")]

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        existing = previous_metrics(self.output_path, ctx.force, self.name)
        if existing is not None:
            return existing
        from pyspark.sql import functions as F

        from sparkml_tf.retrieval.jobs.predict import group_items, read_interactions

        spark = ctx.spark
        kmax = max(self.ks)
        interactions = read_interactions(spark, self.dataset_dir, ["train", f"{self.split}_input", f"{self.split}_target"])
        targets = group_items(interactions.where(F.col("split") == f"{self.split}_target"), "targets")
        foldin = group_items(interactions.where(F.col("split") == f"{self.split}_input"), "foldin")
        users = (
            targets.join(foldin, on="user", how="left").select("user", "targets", F.coalesce("foldin", F.array().cast("array<long>")).alias("foldin")).cache()
        )
        try:
            metrics = self._model_metrics(ctx, users, kmax)
            curves = {"model": metrics.pop("_curve")}
            metrics.update(self._ann_recall(spark, users))
            baseline_metrics, baseline_curves = self._baselines(spark, interactions, users, kmax)
            metrics.update(baseline_metrics)
            curves.update(baseline_curves)
        finally:
            users.unpersist()
        ctx.tracker.log_params(
            {
                f"{self.name}.ks": self.ks,
                f"{self.name}.split": self.split,
                f"{self.name}.baselines": self.baselines,
                f"{self.name}.ease_lambda": self.ease_lambda,
            }
        )
        save_metrics(ctx, self.output_path, metrics)
        ctx.tracker.log_figure(_recall_plot(curves), "plots/recall_at_k.png")
        return metrics

    def _model_metrics(self, ctx: RunContext, users, kmax: int) -> Dict[str, Any]:
        from pyspark.sql import functions as F

        from sparkml_tf.index.hnsw import num_index_shards
        from sparkml_tf.retrieval.remote import make_ranked_metrics_fn, make_topk_metrics_fn
        from sparkml_tf.retrieval.topk import sharded_top_k

        ctx.describe(f"{self.name}: top-{kmax} from the index")
        spark = ctx.spark
        embeddings = spark.read.parquet(self.user_embeddings_dir).select(F.col("user").cast("string"), "vector")
        joined = users.join(embeddings, on="user", how="inner")
        names = self.metric_names()
        shards = num_index_shards(self.index_dir)
        if shards == 1:  # one stage: query the index and score the lists
            # Plain values only cross to executors; a fresh key keeps per-worker index caches honest.
            fn = make_topk_metrics_fn(uuid.uuid4().hex, str(self.index_dir), list(self.ks), names)
        else:  # every shard meets every user, the lists are merged per user, then scored
            top = sharded_top_k(joined.select("user", "vector", F.col("foldin").alias("exclude")), self.index_dir, shards, kmax)
            joined = top.join(users.select("user", "targets"), on="user")
            fn = make_ranked_metrics_fn(list(self.ks), names)
        rows = joined.mapInArrow(fn, "n long, sums array<double>, curve array<double>").collect()
        n = sum(r["n"] for r in rows)
        total = users.count()
        if n == 0:
            raise DataError(
                "EVALUATE_NO_USERS",
                f"no {self.split} user has both a target item and a user embedding ({total} with targets); "
                f"check that Predict ran on the '{self.split}_input' split of the same dataset",
                self.user_embeddings_dir,
            )
        import numpy as np

        sums = np.sum([r["sums"] for r in rows], axis=0)
        metrics: Dict[str, Any] = {name: float(value / n) for name, value in zip(names, sums)}
        metrics["num_users"] = int(n)
        metrics["num_users_without_embedding"] = int(total - n)
        metrics["_curve"] = np.sum([r["curve"] for r in rows], axis=0) / n
        return metrics

    def _ease_skipped(self, model) -> Optional[str]:
        """Why EASE is not fitted here, or None."""
        if self.ease_max_items is not None and model.num_items > self.ease_max_items:
            return f"{model.num_items} items > ease_max_items={self.ease_max_items}"
        need = model.memory_bytes()
        if need > self.ease_max_memory_gb * 2**30:
            return f"{model.num_items} items need {_gigabytes(need)} > ease_max_memory_gb={self.ease_max_memory_gb:g}"
        return None

    def _ann_recall(self, spark, users) -> Dict[str, float]:
        if self.ann_check_users <= 0:
            return {}
        from pyspark.sql import functions as F

        from sparkml_tf.index.hnsw import exact_search, overlap_recall, query_shards, read_item_embeddings
        from sparkml_tf.spark.arrow import collect_arrow
        from sparkml_tf.spark.executor import matrix_from_list_array

        sample = collect_arrow(
            spark.read.parquet(self.user_embeddings_dir)
            .select(F.col("user").cast("string"), "vector")
            .join(users.select("user"), "user")
            .limit(self.ann_check_users)
        )
        queries = matrix_from_list_array(sample.column("vector"), "user vector")
        ids, _, vectors, biases = read_item_embeddings(self.embeddings_dir)
        k = min(100, len(ids))
        found, _ = query_shards(self.index_dir, queries, k)
        truth, _ = exact_search(vectors, biases, queries, k, ids=ids)
        return {f"ann_recall@{k}": overlap_recall(found, truth)}

    def _baselines(self, spark, interactions, users, kmax: int):
        import numpy as np
        from pyspark.sql import functions as F

        from sparkml_tf.metrics import baselines as bl
        from sparkml_tf.metrics.ranking import batch_metrics, mean_metrics, recall_curve
        from sparkml_tf.retrieval.layout import RetrievalDataset
        from sparkml_tf.spark.arrow import collect_arrow
        from sparkml_tf.spark.executor import padded_from_list_array

        if not self.baselines:
            return {}, {}
        vocab = spark.read.parquet(RetrievalDataset(self.dataset_dir).vocab_table)
        num_items = int(vocab.agg(F.max("id")).first()[0]) + 1
        train = collect_arrow(interactions.where(F.col("split") == "train").select("user", "id"))
        held_out = collect_arrow(users)
        foldin = padded_from_list_array(held_out.column("foldin"))
        targets = padded_from_list_array(held_out.column("targets"))
        metrics: Dict[str, Any] = {}
        curves: Dict[str, Any] = {}
        for name in self.baselines:
            model = bl.build(name, num_items, self.ease_lambda)
            skipped = self._ease_skipped(model) if name == "ease" else None
            if skipped:
                LOGGER.warning("EASE skipped: %s", skipped)
                metrics["ease/skipped"] = skipped
                continue
            model = model.fit(train.column("user").to_numpy(zero_copy_only=False), train.column("id").to_numpy())
            ranked = bl.recommend(model, foldin, kmax)
            means = mean_metrics(batch_metrics(ranked, targets, self.ks))
            metrics.update({f"{name}/{key}": value for key, value in means.items()})
            metrics[f"{name}/num_users"] = int(len(targets))
            curves[name] = np.nanmean(recall_curve(ranked, targets, kmax), axis=0)
        return metrics, curves


def _gigabytes(num_bytes: int) -> str:
    return f"{num_bytes / 2**30:.1f} GB"


def _recall_plot(curves: Dict[str, Any]):
    # A bare Figure (no pyplot) needs no GUI backend and leaves matplotlib's global state alone.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot(1, 1, 1)
    for label, curve in curves.items():
        axes.plot(range(1, len(curve) + 1), curve, label=label)
    axes.set_xlabel("k")
    axes.set_ylabel("Recall@k (Mult-VAE)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure
