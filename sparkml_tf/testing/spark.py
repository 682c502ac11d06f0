"""One small local Spark session for a whole test run (UI off, 2 shuffle partitions, temp dirs)."""

from __future__ import annotations

import os
import sys
import tempfile


def local_spark(cores: int = 2, app_name: str = "sparkml-tf-tests"):
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from sparkml_tf.spark.session import SparkConfig

    scratch = tempfile.mkdtemp(prefix="sparkml-tf-spark-")
    conf = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": str(cores),
        "spark.local.dir": scratch,
        "spark.sql.warehouse.dir": os.path.join(scratch, "warehouse"),
        "spark.driver.memory": "2g",
        "spark.python.worker.reuse": "true",
    }
    return SparkConfig(master=f"local[{cores}]", app_name=app_name, conf=conf).session()
