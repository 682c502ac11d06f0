"""Helpers for tests, ours and users': a local Spark builder for a whole test session."""

from sparkml_tf.testing.spark import local_spark

__all__ = ["local_spark"]
