"""Spark helpers. Light to import: pyspark loads only when a session is asked for."""

from sparkml_tf.spark.session import SparkConfig, check_java, ensure_driver

__all__ = ["SparkConfig", "ensure_driver", "check_java"]
