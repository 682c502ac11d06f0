"""Serving exports: versioned SavedModels for TF Serving (and for the batch scorer and evaluator).

Light to import: :mod:`sparkml_tf.serving.export` imports TensorFlow where it is used.
"""

from sparkml_tf.serving.export import export_ctr_model, latest_version

__all__ = ["export_ctr_model", "latest_version"]
