"""Readers for CTR rows (driver side, Spark), switched by ``format``.

- ``criteo-tsv``: the Criteo display-ads layout, no header, tab separated:
  ``label, I1..I13 (integers), C1..C26 (hashed categoricals)``; empty fields are nulls.
- ``parquet`` / ``csv`` (with a header): any columns, declared by a schema
  ``{"label": "clicked", "numeric": [...], "categorical": [...]}``; names are kept as they are.
- ``generated``: :func:`sparkml_tf.ranking.generate.generate_ctr` (``path`` is ignored).

Every reader returns the label as int 0/1, numeric fields as double and categorical fields as
strings normalised like the encoder does (:func:`category_column`), then any other columns.
Rows with the wrong number of fields, a label that is not 0/1, or a numeric field that is not a
number are dropped and counted (``CtrRows.counts``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, List, Mapping, Optional

from sparkml_tf.errors import DataError
from sparkml_tf.ranking.generate import CATEGORICAL_FIELDS, NUMERIC_FIELDS

LOGGER = logging.getLogger(__name__)

FORMATS = ("criteo-tsv", "parquet", "csv", "generated")
CRITEO_SCHEMA = {"label": "label", "numeric": list(NUMERIC_FIELDS), "categorical": list(CATEGORICAL_FIELDS)}
SCHEMA_KEYS = ("label", "numeric", "categorical")
# Rows parsed right away, so a wrong format fails before the long Spark jobs do.
_PROBE_ROWS = 20
# Per-row problem, checked in this order (first one wins); counts are "rows.bad_<problem>".
PROBLEMS = ("columns", "label", "numeric")


@dataclasses.dataclass
class CtrRows:
    """``frame``: good rows; ``schema``: its label/numeric/categorical columns; ``counts``:
    ``rows.input``, ``rows.bad_columns``, ``rows.bad_label``, ``rows.bad_numeric``, ``rows.kept``."""

    frame: Any
    schema: Dict[str, Any]
    counts: Dict[str, int]


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise DataError("DATA_UNKNOWN_FORMAT", f"unknown CTR format {format!r}; valid formats are {', '.join(FORMATS)}", "dataset.format")


def check_schema(format: str, schema: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The schema to read ``format`` with: Criteo's for criteo-tsv and generated (a given schema
    must then be null or Criteo's), the declared one for parquet and csv. Raises ValueError."""
    check_format(format)
    if format in ("criteo-tsv", "generated"):
        if schema and _as_schema(schema) != CRITEO_SCHEMA:
            raise ValueError(
                f"format {format!r} has the fixed Criteo layout (label, I1..I13, C1..C26): leave schema null, or use parquet/csv for other columns"
            )
        return {k: (list(v) if isinstance(v, list) else v) for k, v in CRITEO_SCHEMA.items()}
    if not schema:
        raise ValueError(f"format {format!r} needs a schema: {{\"label\": column, \"numeric\": [columns], \"categorical\": [columns]}}")
    return _as_schema(schema)


def _as_schema(schema: Mapping[str, Any]) -> Dict[str, Any]:
    if not isinstance(schema, Mapping):
        raise ValueError(f"schema must be an object {{\"label\", \"numeric\", \"categorical\"}}, got {schema!r}")
    unknown = sorted(set(schema) - set(SCHEMA_KEYS))
    if unknown:
        raise ValueError(f"schema has unknown key(s) {', '.join(unknown)}; it takes {', '.join(SCHEMA_KEYS)}")
    label = schema.get("label")
    if not isinstance(label, str) or not label:
        raise ValueError(f"schema.label must name the 0/1 label column, got {label!r}")
    lists = {}
    for key in ("numeric", "categorical"):
        value = schema.get(key) or []
        if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"schema.{key} must be a list of column names, got {value!r}")
        lists[key] = list(value)
    names = [label] + lists["numeric"] + lists["categorical"]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"schema names column(s) {', '.join(repeated)} twice; each column is the label, numeric or categorical")
    if not lists["numeric"] and not lists["categorical"]:
        raise ValueError("schema declares no feature: list numeric and/or categorical columns")
    return {"label": label, **lists}


def read_ctr(
    spark, path: str, format: str = "criteo-tsv", schema: Optional[Mapping[str, Any]] = None, generator: Optional[Mapping[str, Any]] = None, seed: int = 0
) -> CtrRows:
    """Read CTR rows (see the module doc). ``generator``: keyword arguments of ``generate_ctr``
    for ``generated`` (``seed`` defaults to ``seed``).

    Raises DATA_SCHEMA_MISMATCH (with the path) when the schema's columns are missing or no
    probed row parses, and DATA_EMPTY when no good row is left.
    """
    schema = check_schema(format, schema)
    if format == "generated":
        return _generated(spark, schema, dict(generator or {}), seed)
    if format == "criteo-tsv":
        checked = _criteo_tsv(spark, path)
    else:
        checked = _declared(spark, path, format, schema)
    return _finish(checked, schema, path, format)


def category_column(column, data_type):
    """A categorical column as strings, normalised as the encoder does
    (sparkml_tf.ranking.features.feature_index.category_strings): whole floats lose their ".0", "" is null."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if isinstance(data_type, (T.FloatType, T.DoubleType, T.DecimalType)):
        number = column.cast("double")
        whole = (number == F.floor(number)) & (F.abs(number) < F.lit(2.0**63))
        text = F.when(F.isnan(number), F.lit(None)).when(whole, number.cast("bigint").cast("string")).otherwise(number.cast("string"))
    else:
        text = column.cast("string")
    return F.when(text == "", F.lit(None)).otherwise(text)


def _criteo_tsv(spark, path: str):
    """Raw lines -> typed columns plus ``_problem`` (null for a good row)."""
    from pyspark.sql import functions as F

    width = 1 + len(NUMERIC_FIELDS) + len(CATEGORICAL_FIELDS)
    parts = F.split(F.col("value"), "\t", -1)
    raw = spark.read.text(path).select(
        F.size(parts).alias("_width"),
        *[F.get(parts, i).alias(name) for i, name in enumerate(("label",) + NUMERIC_FIELDS + CATEGORICAL_FIELDS)],
    )
    return _typed(raw, CRITEO_SCHEMA, F.col("_width") != width, {}, drop=["_width"])


def _declared(spark, path: str, format: str, schema: Dict[str, Any]):
    from pyspark.sql import types as T

    reader = spark.read
    frame = reader.parquet(path) if format == "parquet" else reader.csv(path, header=True, inferSchema=False, mode="PERMISSIVE")
    wanted = [schema["label"]] + schema["numeric"] + schema["categorical"]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"the {format} input lacks column(s) {', '.join(missing)} named by the schema; it has {', '.join(frame.columns[:20])}; "
            "fix dataset.schema (label, numeric, categorical) or dataset.path",
            path,
        )
    types = {f.name: f.dataType for f in frame.schema.fields}
    nested = [c for c in wanted if isinstance(types[c], (T.ArrayType, T.MapType, T.StructType, T.BinaryType))]
    if nested:
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"column(s) {', '.join(nested)} are not plain values ({', '.join(types[c].simpleString() for c in nested)}); declare only number or string columns",
            path,
        )
    return _typed(frame, schema, None, types)


def _typed(raw, schema: Dict[str, Any], bad_width, types: Dict[str, Any], drop: Optional[List[str]] = None):
    """Cast with try_cast (a bad value becomes null, and the row is marked) and mark problems."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    label, numeric, categorical = schema["label"], schema["numeric"], schema["categorical"]
    strings = lambda name: isinstance(types.get(name, T.StringType()), T.StringType)  # noqa: E731
    label_value = F.expr(f"try_cast(trim(`{label}`) AS DOUBLE)") if strings(label) else F.col(label).cast("double")
    numbers = {}
    bad_numeric = F.lit(False)
    for name in numeric:
        if strings(name):
            text = F.trim(F.col(name))
            value = F.expr(f"try_cast(trim(`{name}`) AS DOUBLE)")
            given = text.isNotNull() & (text != "")
            bad_numeric = bad_numeric | (given & (value.isNull() | F.isnan(value) | (F.abs(value) == F.lit(float("inf")))))
        else:
            value = F.col(name).cast("double")
            bad_numeric = bad_numeric | F.coalesce(F.isnan(value) | (F.abs(value) == F.lit(float("inf"))), F.lit(False))
        numbers[name] = value
    checks = [(bad_width, "columns")] if bad_width is not None else []
    checks += [(label_value.isNull() | ~label_value.isin(0.0, 1.0), "label"), (bad_numeric, "numeric")]
    problem = F.when(checks[0][0], F.lit(checks[0][1]))
    for condition, name in checks[1:]:
        problem = problem.when(condition, F.lit(name))
    others = [c for c in raw.columns if c not in set(schema_columns(schema) + (drop or []))]
    return raw.select(
        F.when(label_value.isin(0.0, 1.0), label_value.cast("int")).alias(label),
        *[numbers[n].alias(n) for n in numeric],
        *[category_column(F.col(n), types.get(n, T.StringType())).alias(n) for n in categorical],
        *others,
        problem.alias("_problem"),
    )


def _finish(checked, schema: Dict[str, Any], path: str, format: str) -> CtrRows:
    from pyspark.sql import functions as F

    probe = [r["_problem"] for r in checked.select("_problem").limit(_PROBE_ROWS).collect()]
    if probe and all(p is not None for p in probe):
        hint = ""
        if format == "criteo-tsv":
            hint = " (the unlabelled Criteo test file has 39 fields: it cannot be trained on)"
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"none of the first {len(probe)} rows parses as {format}: problems {sorted(set(probe))}{hint}; "
            f"check dataset.format and dataset.path (valid formats: {', '.join(FORMATS)})",
            path,
        )
    row = checked.agg(
        F.count(F.lit(1)).alias("input"),
        *[F.sum(F.when(F.col("_problem") == p, 1).otherwise(0)).alias(p) for p in PROBLEMS],
    ).first()
    counts = {"rows.input": int(row["input"]), **{f"rows.bad_{p}": int(row[p] or 0) for p in PROBLEMS}}
    counts["rows.kept"] = counts["rows.input"] - sum(counts[f"rows.bad_{p}"] for p in PROBLEMS)
    if counts["rows.kept"] == 0:
        raise DataError("DATA_EMPTY", f"no usable row in the {format} input ({counts}); check dataset.path and dataset.format", path)
    bad = counts["rows.input"] - counts["rows.kept"]
    if bad:
        LOGGER.warning("dropped %d of %d rows of %s: %s", bad, counts["rows.input"], path, {k: v for k, v in counts.items() if k.startswith("rows.bad")})
    return CtrRows(checked.where(F.col("_problem").isNull()).drop("_problem"), schema, counts)


def _generated(spark, schema: Dict[str, Any], generator: Dict[str, Any], seed: int) -> CtrRows:
    from sparkml_tf.ranking.generate import generate_ctr

    kwargs = {"seed": seed, **generator}
    frame = generate_ctr(**kwargs)
    LOGGER.info("generated %d CTR rows (%s)", len(frame), kwargs)
    ddl = ", ".join([f"{schema['label']} int"] + [f"{n} double" for n in schema["numeric"]] + [f"{n} string" for n in schema["categorical"]])
    counts = {"rows.input": len(frame), **{f"rows.bad_{p}": 0 for p in PROBLEMS}, "rows.kept": len(frame)}
    return CtrRows(spark.createDataFrame(frame[schema_columns(schema)], ddl), schema, counts)


def schema_columns(schema: Mapping[str, Any]) -> List[str]:
    """The label, then the numeric and the categorical columns."""
    return [schema["label"], *schema["numeric"], *schema["categorical"]]
