import pytest

from sparkml_tf.errors import SparkmlTfError
from sparkml_tf.spark import ensure_driver


def test_driver_guard_passes_on_the_driver():
    ensure_driver()


@pytest.mark.spark
def test_driver_only_code_refuses_to_run_in_a_task(spark):
    def attempt(_):
        from sparkml_tf.spark.session import SparkConfig

        try:
            SparkConfig().session()
        except SparkmlTfError as e:
            yield e.code

    assert spark.sparkContext.parallelize([0], 1).mapPartitions(attempt).collect() == ["SPARK_DRIVER_ONLY"]


@pytest.mark.spark
def test_session_sets_pyspark_python(spark):
    import os
    import sys

    assert os.environ["PYSPARK_PYTHON"] == sys.executable
    assert spark.sparkContext.master == "local[2]"


def test_missing_java_says_how_to_fix(monkeypatch, tmp_path):
    from sparkml_tf.spark import check_java

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SparkmlTfError) as info:
        check_java()
    assert info.value.code == "SPARK_JAVA_MISSING"
    assert "openjdk-17" in info.value.message
