"""CTR features: the feature index (vocabularies, numeric buckets, crosses) and its encoder.

``sparkml_tf.ranking.features.feature_index`` is pure python/numpy/pandas and runs anywhere (Spark executors,
an online server); ``sparkml_tf.ranking.features.build`` builds an index from a Spark DataFrame.
"""

from sparkml_tf.ranking.features.feature_index import Encoder, FeatureIndex, validate_columns

__all__ = ["FeatureIndex", "Encoder", "validate_columns"]
