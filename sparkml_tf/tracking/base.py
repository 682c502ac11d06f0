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

    def log_evaluation(self, metrics: Dict[str, float]) -> None:
        """An evaluation's numbers: the model's under their own names, each baseline's as
        ``<baseline>/<name>``. Here, as any metrics; a tracker may name the model's apart."""
        self.log_metrics(metrics)

    def set_tags(self, tags: Dict[str, Any]) -> None:
        """Facts about the run that may change when a run is resumed (code version, data identity)."""

    def log_model(self, saved_model_dir: str, name: str, input_example: Dict[str, Any], registered_model_name: Optional[str] = None) -> None:
        """A SavedModel as a model of the run (its ``serving_default`` signature, an input example
        of a few rows by input name), registered under ``registered_model_name`` when given."""

    def run_info(self) -> Optional[Dict[str, str]]:
        """Where the last run went (``run_id``, ``experiment_id``, ``experiment``, ``tracking_uri``),
        for the summary at the end of a run; None when nothing was tracked."""
        return None

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
