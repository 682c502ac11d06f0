"""A tracker that records what jobs log, for tests of jobs (ours and users')."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from sparkml_tf.tracking.base import Tracker


class RecordingTracker(Tracker):
    """Every call in ``calls`` as a tuple, in order; merged views in ``metrics``, ``params``,
    ``dicts``, ``artifacts`` (local paths) and ``figures`` (artifact file names); ``tags``, ``models``."""

    def __init__(self):
        self.calls: List[tuple] = []
        self.metrics: Dict[str, float] = {}
        self.params: Dict[str, Any] = {}
        self.dicts: Dict[str, Any] = {}
        self.artifacts: List[str] = []
        self.figures: List[str] = []
        self.tags: Dict[str, Any] = {}
        self.models: Dict[str, Dict[str, Any]] = {}

    def start(self, run_name: str, tags: Optional[Dict[str, str]] = None) -> None:
        self.calls.append(("start", run_name, dict(tags or {})))

    def end(self, status: str = "FINISHED") -> None:
        self.calls.append(("end", status))

    def log_params(self, params: Dict[str, Any]) -> None:
        self.calls.append(("params", params))
        self.params.update(params)

    def log_metrics(self, metrics: Dict[str, float], step: Optional[int] = None) -> None:
        self.calls.append(("metrics", metrics, step))
        self.metrics.update(metrics)

    def set_tags(self, tags: Dict[str, Any]) -> None:
        self.tags.update(tags)

    def log_model(self, saved_model_dir: str, name: str, input_example: Dict[str, Any], registered_model_name: Optional[str] = None) -> None:
        self.models[name] = {"path": saved_model_dir, "input_example": input_example, "registered_model_name": registered_model_name}

    def log_artifact(self, local_path: str, artifact_path: Optional[str] = None) -> None:
        self.calls.append(("artifact", local_path, artifact_path))
        self.artifacts.append(local_path)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        self.calls.append(("dict", artifact_file))
        self.dicts[artifact_file] = data

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.calls.append(("figure", artifact_file))
        self.figures.append(artifact_file)

    def log_child_run(
        self, run_name: str, params: Dict[str, Any], history: List[Dict[str, float]], status: str = "FINISHED", tags: Optional[Dict[str, str]] = None
    ) -> None:
        self.calls.append(("child", run_name, dict(params), list(history), status, dict(tags or {})))
