"""collect_arrow: one pyarrow Table from a DataFrame, on pyspark 4.x (toArrow) and 3.5 (make test-spark35)."""

import datetime

import pytest

from sparkml_tf.spark.arrow import collect_arrow

DDL = "user string, id long, vector array<float>, score double, seen timestamp"


def _rows():
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    return [("u1", 1, [0.5, 1.5], 2.0, when), ("u2", 2, [], None, when), (None, 3, None, 1.0, None)]


def _expected_schema():
    import pyarrow as pa

    return pa.schema(
        [("user", pa.string()), ("id", pa.int64()), ("vector", pa.list_(pa.float32())), ("score", pa.float64()), ("seen", pa.timestamp("us", tz="UTC"))]
    )


@pytest.mark.spark
def test_collect_arrow_uses_to_arrow_where_pyspark_has_it(spark):
    import pyspark
    from pyspark.sql import DataFrame

    assert hasattr(DataFrame, "toArrow") == (int(pyspark.__version__.split(".")[0]) >= 4)


@pytest.mark.spark
def test_collect_arrow_keeps_types_values_and_nulls(spark):
    frame = spark.createDataFrame(_rows(), DDL).repartition(2)
    table = collect_arrow(frame)
    assert table.schema.remove_metadata() == _expected_schema()
    rows = sorted(table.to_pylist(), key=lambda row: row["id"])
    assert [row["user"] for row in rows] == ["u1", "u2", None]
    assert [row["vector"] for row in rows] == [[0.5, 1.5], [], None]
    assert [row["score"] for row in rows] == [2.0, None, 1.0]
    assert rows[0]["seen"] == datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    assert rows[2]["seen"] is None


@pytest.mark.spark
def test_collect_arrow_of_an_empty_frame_has_the_schema(spark):
    table = collect_arrow(spark.createDataFrame(_rows(), DDL).where("id < 0"))
    assert table.num_rows == 0
    assert table.schema.remove_metadata() == _expected_schema()
