"""Spark Connect settings and refusals that need no server (tests/integration/test_connect.py runs one)."""

import pyspark
import pytest

from sparkml_tf.engine import Pipeline
from sparkml_tf.engine.base import Job
from sparkml_tf.errors import ConfigError, SparkmlTfError
from sparkml_tf.spark.session import SparkConfig, check_connect_client, is_connect

PYSPARK_MAJOR = int(pyspark.__version__.split(".")[0])


class Trains(Job):
    """A job with a barrier launcher, as the Train jobs have."""

    def __init__(self, launcher: str, name: str = "train"):
        self.launcher, self.name = launcher, name

    def run(self, ctx):
        return {"ran": True}


def test_a_sc_master_asks_for_connect():
    config = SparkConfig(master="sc://127.0.0.1:15002")
    assert (config.remote, config.master) == ("sc://127.0.0.1:15002", None)
    assert SparkConfig(remote="sc://host:443/;use_ssl=true").remote == "sc://host:443/;use_ssl=true"
    assert SparkConfig(master="local[2]").remote is None


def test_a_remote_must_be_a_connect_url():
    with pytest.raises(ConfigError) as error:
        SparkConfig(remote="spark://host:7077")
    assert (error.value.code, error.value.path) == ("CONFIG_BAD_VALUE", "remote")


def test_barrier_training_is_refused_when_the_config_asks_for_connect():
    with pytest.raises(ConfigError) as error:
        Pipeline([Trains("local", name="fine"), Trains("spark")], spark=SparkConfig(remote="sc://127.0.0.1:15002"))
    assert (error.value.code, error.value.path) == ("SPARK_CONNECT_UNSUPPORTED", "jobs[1]")
    assert "launcher 'spark'" in error.value.message and "classic compute" in error.value.message
    # The same jobs on a classic session, or training in this process over Connect, are fine.
    Pipeline([Trains("spark")], spark=SparkConfig(master="local[2]"))
    Pipeline([Trains("local")], spark=SparkConfig(remote="sc://127.0.0.1:15002"))


@pytest.mark.skipif(PYSPARK_MAJOR >= 4, reason="pyspark 3.5 only (make test-spark35)")
def test_connect_on_pyspark_3_5_is_refused_with_the_version_it_needs():
    with pytest.raises(SparkmlTfError) as error:
        check_connect_client()
    assert error.value.code == "SPARK_CONNECT_UNSUPPORTED" and "pyspark 4.0 or later" in error.value.message
    with pytest.raises(SparkmlTfError) as error:
        SparkConfig(remote="sc://127.0.0.1:15002").session()  # refused before it connects anywhere
    assert error.value.code == "SPARK_CONNECT_UNSUPPORTED" and pyspark.__version__ in error.value.message
    with pytest.raises(SparkmlTfError) as error:
        Pipeline([Trains("local")], spark=SparkConfig(remote="sc://127.0.0.1:15002")).run()
    assert error.value.code == "SPARK_CONNECT_UNSUPPORTED"


@pytest.mark.skipif(PYSPARK_MAJOR < 4, reason="pyspark 4.x")
def test_connect_clients_from_pyspark_4_are_accepted():
    check_connect_client()


@pytest.mark.spark
def test_the_classic_session_is_not_connect(spark):
    assert not is_connect(spark)
