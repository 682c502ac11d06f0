"""CheckEnvironment: a first job to run on a new cluster (the smoke pipeline runs it).

It runs one small Spark task per slot and reports what the executors have: Python version and
executable, and the versions of the modules the real jobs import there, so a missing TensorFlow on
a YARN node, or executors running some other Python than the shipped environment's, shows up in
seconds, not halfway through a training run. ``output_path`` also writes the reports as JSON.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.errors import SparkmlTfError

LOGGER = logging.getLogger(__name__)


def _probe(modules: List[str]):
    """Executor side: report this Python worker's versions."""

    def probe(_):
        import importlib
        import os
        import platform
        import socket
        import sys

        found = {}
        for module in modules:
            try:
                found[module] = getattr(importlib.import_module(module), "__version__", "?")
            except ImportError as e:
                found[module] = f"MISSING ({e})"
        pyspark = sys.modules.get("pyspark")  # this worker runs pyspark: where from (the cluster's pyspark.zip?)
        origin = os.path.dirname(getattr(pyspark, "__file__", "") or "")
        yield {
            "host": socket.gethostname(),
            "python": platform.python_version(),
            "executable": sys.executable,
            "pid": os.getpid(),
            "pyspark_from": origin,
            **found,
        }

    return probe


class CheckEnvironment(Job):
    def __init__(self, num_tasks: Optional[int] = None, modules: Optional[List[str]] = None, output_path: Optional[str] = None, name: str = "check"):
        self.num_tasks = num_tasks
        self.modules = list(modules or ["numpy", "pandas", "pyarrow"])
        self.output_path = output_path
        self.name = name

    def run(self, ctx: RunContext) -> Dict[str, float]:
        sc = ctx.spark.sparkContext
        tasks = self.num_tasks or sc.defaultParallelism
        reports = sc.parallelize(range(tasks), tasks).mapPartitions(_probe(list(self.modules))).collect()
        if self.output_path:
            from sparkml_tf.io.filesystems import write_json

            write_json(self.output_path, reports)
        missing = sorted({f"{m} on {r['host']}" for r in reports for m in self.modules if str(r[m]).startswith("MISSING")})
        if missing:
            raise SparkmlTfError(
                "SPARK_EXECUTOR_ENV",
                f"executors lack modules: {', '.join(missing)}; install them in the executors' Python (PYSPARK_PYTHON) "
                "or ship an environment with spark-submit --archives",
            )
        for report in {tuple(sorted((k, v) for k, v in r.items() if k != "pid")) for r in reports}:
            LOGGER.info("executor: %s", dict(report))
        summary = {"tasks": len(reports), "hosts": len({r["host"] for r in reports}), "python_versions": len({r["python"] for r in reports})}
        ctx.tracker.log_metrics(summary)
        return summary
