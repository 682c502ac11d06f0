"""Driver side: the Spark stages a run executed, from the application's own REST API (the Spark UI's
``/api/v1``), for ``--profile``: which Spark stages took the time, named by the job description each
pipeline stage sets (``RunContext.describe``)."""

from __future__ import annotations

import datetime
import json
import logging
import urllib.request
from typing import Any, Dict, List, Optional

LOGGER = logging.getLogger(__name__)


def _millis(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    # e.g. 2026-11-30T15:12:22.123GMT
    stamp = datetime.datetime.strptime(text.replace("GMT", ""), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp() * 1000.0


def spark_stage_timings(spark: Any, timeout: float = 10.0) -> List[Dict[str, Any]]:
    """Completed Spark stages of this application, longest first: ``stage_id``, ``description``,
    ``name``, ``tasks``, ``wall_s`` (submission to completion), ``executor_run_s`` (summed over tasks).
    ``[]`` when there is no Spark UI to ask (``spark.ui.enabled=false``, a Spark Connect session)."""
    from sparkml_tf.spark.session import is_connect

    if spark is None or is_connect(spark):
        return []
    context = spark.sparkContext
    url = context.uiWebUrl
    if not url:
        return []
    try:
        with urllib.request.urlopen(f"{url}/api/v1/applications/{context.applicationId}/stages?status=complete", timeout=timeout) as response:
            stages = json.load(response)
    except (OSError, ValueError) as e:  # the UI may be firewalled or gone; the profile still has the rest
        LOGGER.warning("no Spark stage timings: the Spark UI at %s did not answer (%s)", url, e)
        return []
    rows = []
    for stage in stages:
        start, end = _millis(stage.get("submissionTime")), _millis(stage.get("completionTime"))
        rows.append({
            "stage_id": stage.get("stageId"),
            "description": stage.get("description") or "",
            "name": (stage.get("name") or "").split(" at ")[0],
            "tasks": stage.get("numTasks"),
            "wall_s": round((end - start) / 1000.0, 3) if start and end else None,
            "executor_run_s": round((stage.get("executorRunTime") or 0) / 1000.0, 3),
        })
    return sorted(rows, key=lambda r: -(r["wall_s"] or 0.0))
