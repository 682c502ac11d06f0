"""Serving exports: the versioned SavedModel layout that TF Serving, batch scoring and the
in-process scorers share (one rule for "newest version"), and warm-up records.

Light to import: TensorFlow is imported where it is used.
"""

from sparkml_tf.serving.export import latest_version, publish_version

__all__ = ["latest_version", "publish_version"]
