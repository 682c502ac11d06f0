"""Retrieval task: interactions to user timelines, item-embedding models, the hnswlib index,
user embeddings and Recall/NDCG evaluation.

Jobs and model specs named in configs load their module on first use (``sparkml_tf.retrieval.Train``).
Nothing here imports :mod:`sparkml_tf.ranking`.
"""

from sparkml_tf.lazy import lazy_exports

_LAZY = {
    "BuildDataset": "sparkml_tf.retrieval.jobs.dataset",
    "Train": "sparkml_tf.retrieval.jobs.train",
    "BuildIndex": "sparkml_tf.retrieval.jobs.index",
    "Predict": "sparkml_tf.retrieval.jobs.predict",
    "Evaluate": "sparkml_tf.retrieval.jobs.evaluate",
    "Recommend": "sparkml_tf.retrieval.jobs.recommend",
    "AverageModel": "sparkml_tf.retrieval.models.average",
    "MultVAE": "sparkml_tf.retrieval.models.vae",
    "LinearAE": "sparkml_tf.retrieval.models.linear_ae",
    "Ease": "sparkml_tf.retrieval.models.ease",
    "BPRLoss": "sparkml_tf.retrieval.models.losses",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = list(_LAZY)
