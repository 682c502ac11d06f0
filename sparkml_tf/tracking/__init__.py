"""Tracking: the interface jobs log through, MLflow behind it (imported only when a run starts), and
the live-metrics switch (:class:`PushGateway`)."""

from sparkml_tf.tracking.base import NullTracker, Tracker
from sparkml_tf.tracking.live import PushGateway
from sparkml_tf.tracking.mlflow_tracker import DEFAULT_TRACKING_URI, MLflowTracker, download_configs, flatten, run_tags, tracking_uri_in_force

__all__ = [
    "Tracker", "NullTracker", "MLflowTracker", "PushGateway", "DEFAULT_TRACKING_URI", "download_configs", "flatten", "run_tags", "tracking_uri_in_force",
]
