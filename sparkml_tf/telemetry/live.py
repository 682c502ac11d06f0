"""Live metrics: gauges pushed to a Prometheus push gateway (``prometheus_client``) while a run goes.

The driver pushes stage durations and its memory; each training worker pushes its memory, and the
chief its loss, validation metrics, learning rate, steps/s and examples/s, once per evaluation.
Each process pushes its own group (``job``, the pipeline, ``instance``: ``driver``, ``train-worker-0``,
...), so a push replaces that process's previous values and no other's.

Sending never slows or stops a job: values are set in memory, and pushes go from one background
thread, a new request folding into a pending one; a failed push (a dead or unreachable gateway, a
missing ``prometheus_client``) is reported once, as a warning, and never raises. The settings are a
plain dict (see :class:`sparkml_tf.tracking.PushGateway`), so executors build their sender from them.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from typing import Any, Callable, Dict, Optional

LOGGER = logging.getLogger(__name__)
KIND = "prometheus"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(namespace: str, name: str) -> str:
    """``("sparkml_tf", "train_val_ndcg@100")`` -> ``sparkml_tf_train_val_ndcg_at_100``."""
    return _INVALID.sub("_", f"{namespace}_{name}".replace("@", "_at_")).strip("_")


class NullLiveMetrics:
    """Live metrics off: every call does nothing."""

    enabled = False

    def set(self, values: Dict[str, Any], labels: Optional[Dict[str, str]] = None) -> None:
        pass

    def push(self) -> None:
        pass

    def close(self) -> None:
        pass


class LiveMetrics(NullLiveMetrics):
    """Gauges of one process, pushed (HTTP PUT of the whole group) to ``url`` from a background thread.

    ``report(message)`` is called once, on the first failure (default: a logging warning)."""

    enabled = True

    def __init__(
        self, url: str, job: str = "sparkml_tf", grouping: Optional[Dict[str, str]] = None, timeout_s: float = 2.0, namespace: str = "sparkml_tf",
        report: Optional[Callable[[str], None]] = None,
    ):
        from prometheus_client import CollectorRegistry

        self.url, self.job, self.namespace = url, job, namespace
        self.grouping = {str(k): str(v) for k, v in (grouping or {}).items()}
        self.timeout_s = float(timeout_s)
        self.report = report or LOGGER.warning
        self.registry = CollectorRegistry()
        self.pushes, self.failures = 0, 0
        self._gauges: Dict[str, Any] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._reported = False

    @classmethod
    def from_settings(cls, settings: Optional[Dict[str, Any]], instance: str, report: Optional[Callable[[str], None]] = None) -> NullLiveMetrics:
        """The sender ``settings`` describe (None: off), for the process ``instance`` names; with
        ``"quiet": true`` (the driver has already reported the gateway unreachable) failures are not reported again."""
        if not settings:
            return NullLiveMetrics()
        report = LOGGER.debug if settings.get("quiet") else (report or LOGGER.warning)
        if settings.get("kind", KIND) != KIND:
            report(f"live metrics: unknown kind {settings.get('kind')!r} (known: {KIND}); nothing is sent")
            return NullLiveMetrics()
        try:
            return cls(
                settings["url"], settings.get("job", "sparkml_tf"), {**(settings.get("grouping") or {}), "instance": instance},
                settings.get("timeout_s", 2.0), settings.get("namespace", "sparkml_tf"), report,
            )
        except ImportError:
            report("live metrics are on but prometheus_client is not installed here: pip install 'sparkml-tf[metrics]'; nothing is sent")
            return NullLiveMetrics()

    def _fail(self, message: str) -> None:
        self.failures += 1
        if not self._reported:
            self._reported = True
            try:
                self.report(message)
            except Exception:  # a report that fails must not stop the job either
                pass

    def set(self, values: Dict[str, Any], labels: Optional[Dict[str, str]] = None) -> None:
        """Set gauges by short name (``{"train_loss": 0.41}`` -> ``sparkml_tf_train_loss``); None is skipped."""
        labels = {str(k): str(v) for k, v in (labels or {}).items()}
        try:
            from prometheus_client import Gauge

            with self._lock:
                for name, value in values.items():
                    if value is None or isinstance(value, bool):
                        continue
                    value = float(value)
                    full = metric_name(self.namespace, name)
                    gauge = self._gauges.get(full)
                    if gauge is None:
                        gauge = self._gauges[full] = Gauge(full, f"sparkml_tf {name}", sorted(labels), registry=self.registry)
                    (gauge.labels(**labels) if labels else gauge).set(value if math.isfinite(value) else math.nan)
        except Exception as e:
            self._fail(f"live metrics: cannot set {sorted(values)} ({type(e).__name__}: {e}); these values are not sent")

    def push(self) -> None:
        """Ask for a push of every value set so far; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="sparkml-tf-live-metrics", daemon=True)
            self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """Push what is set and stop the thread: waits up to ``timeout_s``, not at all once the
        gateway has failed (a dead endpoint never holds a job up)."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(0 if self.failures else self.timeout_s + 0.5)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            stopping = self._stopping
            self._push_now()
            if stopping:
                return

    def _push_now(self) -> None:
        try:
            from prometheus_client import push_to_gateway

            push_to_gateway(self.url, job=self.job, registry=self.registry, grouping_key=self.grouping, timeout=self.timeout_s)
            self.pushes += 1
        except Exception as e:
            self._fail(
                f"live metrics: cannot push to the Prometheus push gateway at {self.url} ({type(e).__name__}: {e}); "
                "the run goes on without them (reported once)"
            )
