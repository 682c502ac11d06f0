"""A push gateway to test live metrics against: a real HTTP server on 127.0.0.1 that keeps what it
receives (no Prometheus needed)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple


class RecordingPushGateway:
    """``with RecordingPushGateway() as gateway:`` ... ``gateway.url`` takes pushes as a Prometheus
    push gateway does (``PUT``/``POST /metrics/job/<job>/<label>/<value>...``); ``pushes`` holds
    ``(method, path, body)`` in arrival order, :meth:`latest` the newest values of each group."""

    def __init__(self):
        self.pushes: List[Tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                with recorder._arrived:
                    recorder.pushes.append((self.command, self.path, body))
                    recorder._arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            do_PUT = do_POST = do_DELETE = _record

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="recording-push-gateway", daemon=True)

    def __enter__(self) -> "RecordingPushGateway":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` pushes have arrived (False on timeout)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.pushes) >= count, timeout)

    def groups(self) -> Dict[str, Dict[str, str]]:
        """Each pushed group's labels by its path: ``/metrics/job/j/instance/driver`` -> ``{"job": "j", "instance": "driver"}``."""
        out = {}
        for _, path, _ in self.pushes:
            parts = path.strip("/").split("/")[1:]
            out[path] = dict(zip(parts[::2], parts[1::2]))
        return out

    def latest(self, **labels: str) -> Dict[str, float]:
        """The newest push of the group matching ``labels`` (``instance="driver"``), as
        ``{'name{label="v"}': value}`` (``name`` alone for a sample without labels); {} when none."""
        from prometheus_client.parser import text_string_to_metric_families

        body: Optional[str] = None
        for _, path, text in self.pushes:
            if all(self.groups()[path].get(k) == v for k, v in labels.items()):
                body = text
        values: Dict[str, float] = {}
        for family in text_string_to_metric_families(body or ""):
            for sample in family.samples:
                key = sample.name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items())) + "}" if sample.labels else "")
                values[key] = sample.value
        return values
