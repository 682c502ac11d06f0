"""Hyper-parameter search on Spark: trials of a pipeline's training job run as Spark tasks,
sampled by Optuna, cut by successive halving, each logged as an MLflow child run.

``sparkml-tf tune CONFIG MACROS --space SPACE.json`` or the :class:`Tune` job in a pipeline.
"""

from sparkml_tf.lazy import lazy_exports

_LAZY = {"Tune": "sparkml_tf.tuning.search", "load_space": "sparkml_tf.tuning.space"}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = list(_LAZY)
