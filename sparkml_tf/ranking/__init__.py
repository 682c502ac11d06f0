"""Ranking (CTR) task: Criteo-layout readers, the feature index shared offline and online,
Wide & Deep / DCN-v2, TF Serving exports, nightly candidate scoring and the in-process scorer.

Jobs, model specs and the scorer load their module on first use (``sparkml_tf.ranking.TrainCtr``).
Nothing here imports :mod:`sparkml_tf.retrieval`.
"""

from sparkml_tf.lazy import lazy_exports

_LAZY = {
    "BuildCtrDataset": "sparkml_tf.ranking.jobs.dataset",
    "GenerateCtrCandidates": "sparkml_tf.ranking.jobs.dataset",
    "TrainCtr": "sparkml_tf.ranking.jobs.train",
    "ExportCtr": "sparkml_tf.ranking.jobs.export",
    "EvaluateCtr": "sparkml_tf.ranking.jobs.evaluate",
    "ScoreCandidates": "sparkml_tf.ranking.jobs.score",
    "WideDeep": "sparkml_tf.ranking.models.wide_deep",
    "DCNv2": "sparkml_tf.ranking.models.dcn",
    "Scorer": "sparkml_tf.ranking.scorer",
    "FeatureIndex": "sparkml_tf.ranking.features.feature_index",
    "Encoder": "sparkml_tf.ranking.features.feature_index",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = list(_LAZY)
