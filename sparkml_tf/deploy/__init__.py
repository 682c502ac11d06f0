"""Deployment helpers: pack this Python environment for cluster executors (``sparkml_tf.deploy.pack``).

Light to import: nothing here loads TensorFlow or pyspark.
"""

from sparkml_tf.lazy import lazy_exports

_LAZY = {
    "pack": "sparkml_tf.deploy.pack",
    "cached_pack": "sparkml_tf.deploy.pack",
    "environment_key": "sparkml_tf.deploy.pack",
    "PackReport": "sparkml_tf.deploy.pack",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = list(_LAZY)
