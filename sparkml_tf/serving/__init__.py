"""Serving: versioned SavedModels for TF Serving (and for the batch scorer and evaluator), and
the in-process :class:`Scorer` with hot swap.

Light to import: TensorFlow is imported where it is used.
"""

from sparkml_tf.serving.export import export_ctr_model, latest_version
from sparkml_tf.serving.scorer import Scorer

__all__ = ["export_ctr_model", "latest_version", "Scorer"]
