"""Driver-side Spark session helper. Never runs on an executor."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from typing import Dict, Optional

from sparkml_tf.console import spark_defaults
from sparkml_tf.errors import Checks, SparkmlTfError

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


CONNECT_COMPUTE = (
    "classic compute: a dedicated (single user) Databricks cluster, spark-submit, or a local/standalone master"
)


def is_connect(spark) -> bool:
    """Whether ``spark`` is a Spark Connect session (no ``sparkContext``, no RDDs)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def check_connect_client(where: str = "") -> None:
    """Spark Connect sessions are supported from pyspark 4.0 on (``toArrow``, Spark ML over Connect)."""
    import pyspark

    major = int(pyspark.__version__.split(".")[0])
    if major < 4:
        raise SparkmlTfError(
            "SPARK_CONNECT_UNSUPPORTED",
            f"a Spark Connect session needs pyspark 4.0 or later on the client, this is pyspark {pyspark.__version__}; "
            f"use pyspark>=4.0 (on Databricks, a Spark 4 runtime), or run on {CONNECT_COMPUTE}",
            where,
        )


def spark_context(spark, what: str):
    """``spark.sparkContext``, or a coded error naming the compute to use when ``spark`` is Spark Connect."""
    if is_connect(spark):
        raise SparkmlTfError(
            "SPARK_CONNECT_UNSUPPORTED",
            f"{what} needs the classic Spark API (sparkContext, RDD barrier stages), which a Spark Connect session "
            f"(Databricks standard access mode or serverless, or a sc:// remote) has not; run it on {CONNECT_COMPUTE}",
        )
    return spark.sparkContext


def set_job_description(spark, text: Optional[str]) -> None:
    """Name the Spark jobs that follow in the UI (classic sessions; Spark Connect has no such setting)."""
    if not is_connect(spark):
        spark.sparkContext.setJobDescription(text)


class SparkConfig:
    """How to get a session: ``master`` (None: spark-submit's, else ``local[*]``), app name, conf.

    ``remote`` (or a ``master`` of the form ``sc://host:port``) asks for a Spark Connect session
    instead (pyspark 4.0+ with its ``connect`` extra); no local Java is needed then, and ``conf``
    may hold only settings a session can change at run time.
    """

    def __init__(
        self,
        master: Optional[str] = None,
        app_name: str = "sparkml-tf",
        conf: Optional[Dict[str, str]] = None,
        log_level: str = "WARN",
        remote: Optional[str] = None,
    ):
        self.master = master
        self.app_name = app_name
        self.conf = dict(conf or {})
        self.log_level = log_level
        if remote is None and master and str(master).startswith("sc://"):
            remote, self.master = master, None
        checks = Checks()
        checks.require(remote is None or str(remote).startswith("sc://"), "remote", f"remote must be a Spark Connect URL (sc://host:port), got {remote!r}")
        checks.done()
        self.remote = remote

    def session(self):
        ensure_driver("SparkConfig.session()")
        if self.remote:
            return self._connect_session()
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
        # A quiet console (no progress bar, Spark's WARNs that users can act on): sparkml_tf.console.spark_defaults.
        defaults = {"spark.sql.execution.arrow.pyspark.enabled": "true", **spark_defaults(self.conf)}
        for key, value in {**defaults, **self.conf}.items():
            builder = builder.config(key, str(value))
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel(self.log_level)
        LOGGER.info("Spark %s, master %s", spark.version, spark.sparkContext.master)
        return spark

    def _connect_session(self):
        check_connect_client("spark.remote")
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.remote(self.remote).appName(self.app_name)
        for key, value in {"spark.sql.execution.arrow.pyspark.enabled": "true", **self.conf}.items():
            builder = builder.config(key, str(value))
        spark = builder.getOrCreate()
        LOGGER.info("Spark %s over Spark Connect at %s", spark.version, self.remote)
        return spark
