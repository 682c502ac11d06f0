"""Ranking metrics and baselines (numpy only; nothing heavy is imported here)."""

from sparkml_tf.metrics.ranking import batch_metrics, mean_metrics, ndcg_at_k, recall_at_k, recall_at_k_spark

__all__ = ["recall_at_k", "recall_at_k_spark", "ndcg_at_k", "batch_metrics", "mean_metrics"]
