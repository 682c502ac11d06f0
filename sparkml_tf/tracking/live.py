"""The live-metrics switch of a pipeline config: ``"live_metrics": {"type": "sparkml_tf.tracking.PushGateway",
"url": "http://pushgateway:9091"}`` sends stage durations, the driver's and each training worker's
memory, and the training chief's loss, validation metrics, learning rate, steps/s and examples/s to
a Prometheus push gateway while the run goes (:mod:`sparkml_tf.telemetry.live` sends them).

``url`` null (the shipped configs' default, macro ``metrics.push_gateway``) turns it off.
"""

from __future__ import annotations

from typing import Any, Dict, Optional
from urllib.parse import urlparse

from sparkml_tf.errors import Checks

__all__ = ["PushGateway"]


class PushGateway:
    """Where live metrics go: a Prometheus push gateway (``url``: ``http://host:9091``; None: off).

    Each process pushes its own group, keyed by ``job``, the pipeline's name, the ``grouping``
    labels given here and ``instance`` (``driver``, ``train-worker-0``, ...); metric names start
    with ``namespace`` (``sparkml_tf_train_loss``). A push waits at most ``timeout_s``, in a
    background thread; an unreachable gateway is reported once and never stops the run."""

    def __init__(self, url: Optional[str] = None, job: str = "sparkml_tf", grouping: Optional[Dict[str, str]] = None, timeout_s: float = 2.0,
                 namespace: str = "sparkml_tf"):
        checks = Checks()
        if url:
            parsed = urlparse(url if "://" in url else f"http://{url}")
            checks.require(parsed.scheme in ("http", "https") and bool(parsed.hostname), "url",
                           f"url must be a push gateway address such as http://pushgateway:9091, got {url!r}")
        checks.require(isinstance(job, str) and bool(job), "job", f"job must be a non-empty string, got {job!r}")
        checks.require(isinstance(timeout_s, (int, float)) and timeout_s > 0, "timeout_s", f"timeout_s must be positive, got {timeout_s!r}")
        checks.require(grouping is None or isinstance(grouping, dict), "grouping", f"grouping must be a dict of label -> value, got {grouping!r}")
        checks.done()
        self.url, self.job, self.grouping = url or None, job, dict(grouping or {})
        self.timeout_s, self.namespace = float(timeout_s), namespace

    def settings(self, pipeline: str) -> Optional[Dict[str, Any]]:
        """The plain settings a sender is built from (:meth:`sparkml_tf.telemetry.live.LiveMetrics.from_settings`), None when off."""
        if not self.url:
            return None
        return {
            "kind": "prometheus", "url": self.url, "job": self.job, "grouping": {"pipeline": pipeline, **self.grouping},
            "timeout_s": self.timeout_s, "namespace": self.namespace,
        }
