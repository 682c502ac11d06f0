"""The tracker interface jobs log through, and the no-op one used when tracking is off."""

from __future__ import annotations

from typing import Any, Dict, List, Optional


class Tracker:
    """Jobs call these; an implementation decides where it goes. All methods are no-ops here."""

    def start(self, run_name: str, tags: Optional[Dict[str, str]] = None) -> None:
        pass

    def end(self, status: str = "FINISHED") -> None:
        pass

    def log_params(self, params: Dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Dict[str, float], step: Optional[int] = None) -> None:
        pass

    def log_artifact(self, local_path: str, artifact_path: Optional[str] = None) -> None:
        pass

    def log_dict(self, data: Any, artifact_file: str) -> None:
        pass

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        pass

    def log_child_run(
        self, run_name: str, params: Dict[str, Any], history: List[Dict[str, float]], status: str = "FINISHED", tags: Optional[Dict[str, str]] = None
    ) -> None:
        """A finished child of the current run (a search trial): its params, its metrics by step
        (each ``history`` entry holds a ``step`` and metric values), its status and tags."""


class NullTracker(Tracker):
    """Tracking turned off (``"tracking": null``)."""
