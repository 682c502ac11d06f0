"""Driver-side Spark session helper. Never runs on an executor."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from typing import Dict, Optional

from sparkml_tf.errors import SparkmlTfError

LOGGER = logging.getLogger(__name__)


def ensure_driver(what: str = "this") -> None:
    """Refuse to run driver-only code inside a Spark task (it would try to start a nested session)."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return
    if TaskContext.get() is not None:
        raise SparkmlTfError(
            "SPARK_DRIVER_ONLY",
            f"{what} runs on the driver only, but was called inside a Spark task; pass plain values to "
            "executor code instead of driver objects",
        )


def check_java() -> None:
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return
    raise SparkmlTfError(
        "SPARK_JAVA_MISSING",
        "Spark needs Java (17 recommended), and none was found on PATH or in JAVA_HOME; "
        "install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17) and retry",
    )


class SparkConfig:
    """How to get a session: ``master`` (None: spark-submit's, else ``local[*]``), app name, conf."""

    def __init__(self, master: Optional[str] = None, app_name: str = "sparkml-tf", conf: Optional[Dict[str, str]] = None, log_level: str = "WARN"):
        self.master = master
        self.app_name = app_name
        self.conf = dict(conf or {})
        self.log_level = log_level

    def session(self):
        ensure_driver("SparkConfig.session()")
        check_java()
        # Executors must run the driver's Python (the one with sparkml_tf and TensorFlow installed).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.appName(self.app_name)
        launched_by_submit = "PYSPARK_GATEWAY_PORT" in os.environ
        if self.master:
            builder = builder.master(self.master)
        elif not launched_by_submit:
            builder = builder.master("local[*]")
        defaults = {"spark.sql.execution.arrow.pyspark.enabled": "true", "spark.ui.showConsoleProgress": "true"}
        for key, value in {**defaults, **self.conf}.items():
            builder = builder.config(key, str(value))
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel(self.log_level)
        LOGGER.info("Spark %s, master %s", spark.version, spark.sparkContext.master)
        return spark
