"""Helpers for tests, ours and users': a local Spark builder for a whole test session, a tracker
that records what jobs log, and a push gateway that records live metrics."""

from sparkml_tf.testing.live import RecordingPushGateway
from sparkml_tf.testing.spark import local_spark
from sparkml_tf.testing.tracking import RecordingTracker

__all__ = ["local_spark", "RecordingTracker", "RecordingPushGateway"]
