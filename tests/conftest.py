"""Shared fixtures: one local[2] Spark session for the whole run, created on first use."""

import os
import sys

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def spark():
    from sparkml_tf.testing import local_spark

    session = local_spark(cores=2)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def repo_root():
    return REPO
