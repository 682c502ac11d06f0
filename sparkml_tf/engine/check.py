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
    """Executor side: report this Python worker's versions as JSON (a plain Python UDF: no Arrow,
    so a missing pyarrow or pandas is reported like any other module)."""

    def probe(_):
        import importlib
        import json
        import os
        import platform
        import socket
        import sys

        try:  # TensorFlow without its load-time noise, when this worker has sparkml_tf (else reported missing below)
            from sparkml_tf.console import import_tensorflow
        except ImportError:
            import_tensorflow = None
        found = {}
        for module in modules:
            try:
                loaded = import_tensorflow() if module == "tensorflow" and import_tensorflow else importlib.import_module(module)
                found[module] = getattr(loaded, "__version__", "?")
            except ImportError as e:
                found[module] = f"MISSING ({e})"
        pyspark = sys.modules.get("pyspark")  # this worker runs pyspark: where from (the cluster's pyspark.zip?)
        origin = os.path.dirname(getattr(pyspark, "__file__", "") or "")
        report = {
            "host": socket.gethostname(),
            "python": platform.python_version(),
            "executable": sys.executable,
            "pid": os.getpid(),
            "pyspark_from": origin,
            **found,
        }
        return json.dumps(report)

    return probe


def _default_parallelism(spark) -> int:
    """The session's default parallelism, without sparkContext: how many partitions a range gets."""
    from pyspark.sql import functions as F

    return spark.range(0, 1 << 16).select(F.spark_partition_id().alias("p")).distinct().count()


class CheckEnvironment(Job):
    def __init__(self, num_tasks: Optional[int] = None, modules: Optional[List[str]] = None, output_path: Optional[str] = None, name: str = "check"):
        self.num_tasks = num_tasks
        self.modules = list(modules or ["numpy", "pandas", "pyarrow"])
        self.output_path = output_path
        self.name = name

    def run(self, ctx: RunContext) -> Dict[str, float]:
        import json

        from pyspark.sql import functions as F

        spark = ctx.spark
        # DataFrame API only, so it runs over Spark Connect too: one row in each of `tasks` partitions.
        tasks = self.num_tasks or _default_parallelism(spark)
        probe = F.udf(_probe(list(self.modules)), "string", useArrow=False).asNondeterministic()
        reports = [json.loads(row.report) for row in spark.range(0, tasks, 1, tasks).select(probe("id").alias("report")).collect()]
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
