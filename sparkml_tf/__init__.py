"""sparkml_tf: train, evaluate, export and batch-score TensorFlow recommenders on Spark.

Importing the package is light: neither TensorFlow nor pyspark is imported here.
"""

from sparkml_tf.config import ResolvedConfig, resolve
from sparkml_tf.engine.base import Job, Pipeline, RunContext
from sparkml_tf.errors import ConfigError, ConfigErrors, SparkmlTfError
from sparkml_tf.version import __version__

__all__ = ["__version__", "resolve", "ResolvedConfig", "Job", "Pipeline", "RunContext", "SparkmlTfError", "ConfigError", "ConfigErrors"]
