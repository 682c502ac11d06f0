"""Driver side: collect a Spark DataFrame as one pyarrow Table, on pyspark 3.5 and 4.x alike."""

from __future__ import annotations


def collect_arrow(frame):
    """Every row of ``frame`` on the driver as a ``pyarrow.Table`` with the frame's Arrow schema.

    pyspark 4.0+ (classic or Connect) has ``DataFrame.toArrow()``; pyspark 3.5 has not, so there the
    Arrow batches come from ``_collect_as_arrow()``, the collection under 3.5's ``toPandas()``
    (Arrow end to end, no pandas in between, whatever ``spark.sql.execution.arrow.pyspark.enabled``
    says), and are cast to the schema ``toArrow()`` would give. An empty frame gives an empty
    table with that schema.
    """
    to_arrow = getattr(frame, "toArrow", None)
    if to_arrow is not None:
        return to_arrow()
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = to_arrow_schema(frame.schema)
    batches = frame._collect_as_arrow()
    if not batches:
        return schema.empty_table()
    return pa.Table.from_batches(batches).cast(schema)
