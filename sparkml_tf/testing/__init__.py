"""Helpers for tests, ours and users': a local Spark builder for a whole test session and a
tracker that records what jobs log."""

from sparkml_tf.testing.spark import local_spark
from sparkml_tf.testing.tracking import RecordingTracker

__all__ = ["local_spark", "RecordingTracker"]
