"""Serving exports: the versioned SavedModel layout that TF Serving, batch scoring and the
in-process scorers share (one rule for "newest version"), and warm-up records.

Light to import: TensorFlow is imported where it is used.
"""

import os

from sparkml_tf.serving.export import latest_version, publish_version


def mlflow_pyfunc_path() -> str:
    """The file MLflow logs as the code of a SavedModel ``pyfunc`` model (models from code)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "mlflow_pyfunc.py")


__all__ = ["latest_version", "publish_version", "mlflow_pyfunc_path"]
