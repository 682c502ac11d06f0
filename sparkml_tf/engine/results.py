"""What a job reports: the metrics file every evaluation writes, and its copy in the tracker."""

from __future__ import annotations

import logging
import numbers
import os
from typing import Any, Dict, Optional

from sparkml_tf.engine.base import RunContext
from sparkml_tf.io.filesystems import read_json, write_json

LOGGER = logging.getLogger(__name__)


def previous_metrics(output_path: str, force: bool, name: str) -> Optional[Dict[str, Any]]:
    """The metrics an earlier run of this evaluation wrote, unless ``force``: the job skips then."""
    existing = None if force else read_json(output_path)
    if existing is not None:
        LOGGER.info("%s: %s exists; skipping evaluation (use --force to redo)", name, output_path)
    return existing


def save_metrics(ctx: RunContext, output_path: str, metrics: Dict[str, Any]) -> None:
    """Write ``metrics.json`` atomically and log the metrics and the file to the tracker.

    Numbers are logged as an evaluation (MLflow names the model's ``model/<name>``, beside the
    baselines' ``<baseline>/<name>``); text values (a baseline's ``skipped`` reason) as parameters."""
    write_json(output_path, metrics)
    ctx.tracker.log_evaluation({k: v for k, v in metrics.items() if isinstance(v, numbers.Number)})
    notes = {k: v for k, v in metrics.items() if isinstance(v, str)}
    if notes:
        ctx.tracker.log_params(notes)
    if "://" in output_path:  # not a local file the tracker can copy: log the content
        ctx.tracker.log_dict(metrics, os.path.basename(output_path))
    else:
        ctx.tracker.log_artifact(output_path)
