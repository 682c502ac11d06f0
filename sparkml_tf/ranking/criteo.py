"""Readers for CTR rows (driver side, Spark), switched by ``format``.

- ``criteo-tsv``: the Criteo display-ads layout, no header, tab separated:
  ``label, I1..I13 (integers), C1..C26 (hashed categoricals)``; empty fields are nulls.
- ``parquet`` / ``csv`` (with a header): any columns, declared by a schema
  ``{"label": "clicked", "numeric": [...], "categorical": [...]}``; names are kept as they are.
- ``generated``: :func:`sparkml_tf.ranking.generate.generate_ctr` (``path`` is ignored).

Every reader returns the label as int 0/1, numeric fields as double and categorical fields as
strings normalised like the encoder does (:func:`category_column`), then any other columns.
Each row is checked (:mod:`sparkml_tf.io.rows`, ``docs/data-quality.md``): rows that are not valid
UTF-8, with the wrong number of fields, a label that is not 0/1, or a numeric field that does not
parse are bad, counted (``CtrRows.counts``) and kept for the dataset's quarantine; text labels
and Criteo's integer fields are parsed strictly (``1.0``, `` 1``, ``1.5``, ``1e300`` are bad)
unless ``lenient``. Category values longer than ``max_category_length`` are hashed (or truncated)
and counted, so no huge value reaches the feature index.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, List, Mapping, Optional

from sparkml_tf.errors import DataError
from sparkml_tf.io.rows import DEFAULT_MAX_BAD_FRACTION, LINE, RAW, REASON, SOURCE_FILE, spark_errors
from sparkml_tf.ranking.features.kinds import HASH_PREFIX, LONG_VALUES
from sparkml_tf.ranking.generate import CATEGORICAL_FIELDS, NUMERIC_FIELDS

LOGGER = logging.getLogger(__name__)

FORMATS = ("criteo-tsv", "parquet", "csv", "generated")
CRITEO_SCHEMA = {"label": "label", "numeric": list(NUMERIC_FIELDS), "categorical": list(CATEGORICAL_FIELDS)}
SCHEMA_KEYS = ("label", "numeric", "categorical")
# Rows parsed right away, so a wrong format fails before the long Spark jobs do.
_PROBE_ROWS = 20
# The counts of earlier versions, "rows.bad_<problem>", and the reason code each one counts.
PROBLEMS = {"columns": "wrong_column_count", "label": "bad_label", "numeric": "bad_numeric", "undecodable": "undecodable"}
# Category values longer than this are shortened (hashed by default) and counted.
MAX_CATEGORY_LENGTH = 256
LONG_CATEGORIES = LONG_VALUES
LONG_TALLY = "_long_categories"


@dataclasses.dataclass
class CtrRows:
    """``frame``: good rows; ``schema``: its label/numeric/categorical columns; ``counts``:
    ``rows.input``, ``rows.bad_columns``, ``rows.bad_label``, ``rows.bad_numeric``,
    ``rows.bad_undecodable``, ``rows.kept``, ``values.long_categories``; ``checked``: every row
    tagged (:class:`sparkml_tf.io.rows.CheckedRows`, for the quarantine); ``summary``: its counts."""

    frame: Any
    schema: Dict[str, Any]
    counts: Dict[str, int]
    checked: Any = None
    summary: Any = None


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


def check_quality(max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION, max_category_length: int = MAX_CATEGORY_LENGTH, long_categories: str = "hash") -> None:
    """ConfigError (CONFIG_BAD_VALUE at the key) for a bad budget, length limit or long-value policy."""
    from sparkml_tf.errors import bad_value
    from sparkml_tf.io.rows import check_fraction, check_length

    checks = {
        "max_bad_fraction": lambda: check_fraction(max_bad_fraction),
        "max_category_length": lambda: check_length(max_category_length, "max_category_length"),
    }
    for key, check in checks.items():
        try:
            check()
        except ValueError as error:
            raise bad_value(key, str(error)) from None
    if long_categories not in LONG_CATEGORIES:
        raise bad_value("long_categories", f"long_categories must be 'hash' (the default) or 'truncate', got {long_categories!r}")


def read_ctr(
    spark,
    path: str,
    format: str = "criteo-tsv",
    schema: Optional[Mapping[str, Any]] = None,
    generator: Optional[Mapping[str, Any]] = None,
    seed: int = 0,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    lenient: bool = False,
    max_category_length: int = MAX_CATEGORY_LENGTH,
    long_categories: str = "hash",
) -> CtrRows:
    """Read and check CTR rows (see the module doc). ``generator``: keyword arguments of
    ``generate_ctr`` for ``generated`` (``seed`` defaults to ``seed``).

    Raises DATA_SCHEMA_MISMATCH (with the path) when the schema's columns are missing or no
    probed row parses, DATA_TOO_MANY_BAD_ROWS above ``max_bad_fraction`` of the rows read, and
    DATA_EMPTY when no good row is left. ``rows.checked`` still holds the bad rows, for the quarantine.
    """
    schema = check_schema(format, schema)
    check_quality(max_bad_fraction, max_category_length, long_categories)
    if format == "generated":
        return _generated(spark, schema, dict(generator or {}), seed, max_bad_fraction)
    options = (bool(lenient), int(max_category_length), long_categories)
    with spark_errors(path, f"the {format} input"):
        if format == "criteo-tsv":
            checked = _criteo_tsv(spark, path, options)
        else:
            checked = _declared(spark, path, format, schema, options)
        return _finish(checked, schema, path, format, max_bad_fraction)


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


def long_category(text, max_length: int, policy: str):
    """A category value longer than ``max_length`` characters, shortened by ``policy``: ``hash``
    (``#sha256:`` and the first 32 hex digits of the SHA-256 of its UTF-8 bytes) or ``truncate``."""
    from pyspark.sql import functions as F

    long = F.length(text) > int(max_length)
    short = F.concat(F.lit(HASH_PREFIX), F.substring(F.sha2(text, 256), 1, 32)) if policy == "hash" else F.substring(text, 1, int(max_length))
    return F.when(long, short).otherwise(text), F.coalesce(long.cast("int"), F.lit(0))


def _criteo_tsv(spark, path: str, options):
    """Raw lines -> typed columns, each row tagged good or bad (integers and the label parsed strictly)."""
    from pyspark.sql import functions as F

    from sparkml_tf.io.rows import text_lines, valid_utf8

    width = 1 + len(NUMERIC_FIELDS) + len(CATEGORICAL_FIELDS)
    parts = F.split(F.col("value"), "\t", -1)
    lines = text_lines(spark, path)
    raw = lines.select(
        F.col("value"),
        F.col(SOURCE_FILE),
        F.col(LINE),
        (F.size(parts) != width).alias("_wrong"),
        *[F.get(parts, i).alias(name) for i, name in enumerate(("label",) + NUMERIC_FIELDS + CATEGORICAL_FIELDS)],
    )
    first = [(~valid_utf8(spark, F.col("value")), "undecodable"), (F.col("_wrong"), "wrong_column_count")]
    return _typed(raw, CRITEO_SCHEMA, first, {}, options, integers=True, source=path)


def _declared(spark, path: str, format: str, schema: Dict[str, Any], options):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from sparkml_tf.io.rows import csv_header, metadata_columns, parse_csv, text_lines, valid_utf8

    wanted = [schema["label"]] + schema["numeric"] + schema["categorical"]
    if format == "parquet":
        frame = spark.read.parquet(path)
        names = list(frame.columns)
    else:
        names = csv_header(spark, path)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"the {format} input lacks column(s) {', '.join(missing)} named by the schema; it has {', '.join(names[:20])}; "
            "fix dataset.schema (label, numeric, categorical) or dataset.path",
            path,
        )
    if format == "csv":
        lines = parse_csv(text_lines(spark, path, header=True), names)
        raw = lines.select("value", SOURCE_FILE, LINE, "_wrong", *[F.col("_fields").getField(n).alias(n) for n in names])
        first = [(~valid_utf8(spark, F.col("value")), "undecodable"), (F.col("_wrong"), "wrong_column_count")]
        return _typed(raw, schema, first, {}, options, integers=False, source=path)
    types = {f.name: f.dataType for f in frame.schema.fields}
    nested = [c for c in wanted if isinstance(types[c], (T.ArrayType, T.MapType, T.StructType, T.BinaryType))]
    if nested:
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"column(s) {', '.join(nested)} are not plain values ({', '.join(types[c].simpleString() for c in nested)}); declare only number or string columns",
            path,
        )
    source, line = metadata_columns(frame)
    raw = frame.select(
        F.to_json(F.struct(*[F.col(f"`{c}`") for c in frame.columns])).alias("value"), source.alias(SOURCE_FILE), line.alias(LINE), *frame.columns
    )
    texts = [c for c in wanted if isinstance(types[c], T.StringType)]
    invalid = F.lit(False)
    for name in texts:
        invalid = invalid | ~valid_utf8(spark, F.col(f"`{name}`"))
    return _typed(raw, schema, [(invalid, "undecodable")], types, options, integers=False, source=path)


def _typed(raw, schema: Dict[str, Any], first, types: Dict[str, Any], options, integers: bool, source: str):
    """Cast with try_cast (a bad value becomes null, and the row is tagged) and tag problems.

    Strict (``lenient`` false): a text label is exactly ``0`` or ``1``; a text numeric field is a
    whole number (``integers``: Criteo's I1..I13) or a finite number (declared schemas) with no
    blanks around it. Lenient: blanks are trimmed and any finite number is taken (a label 1.0 is 1).
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from sparkml_tf.io.rows import CheckedRows, first_reason

    lenient, max_length, policy = options
    label, numeric, categorical = schema["label"], schema["numeric"], schema["categorical"]
    strings = lambda name: isinstance(types.get(name, T.StringType()), T.StringType)  # noqa: E731
    column = lambda name: F.col(f"`{name}`")  # noqa: E731
    if strings(label) and not lenient:
        label_ok = column(label).rlike("^[01]$")
        label_value = F.when(label_ok, column(label).cast("int"))
    else:
        number = F.expr(f"try_cast(trim(`{label}`) AS DOUBLE)") if strings(label) else column(label).cast("double")
        label_ok = number.isin(0.0, 1.0)
        label_value = F.when(label_ok, number.cast("int"))
    numbers = {}
    bad_numeric = F.lit(False)
    infinite = lambda value: F.isnan(value) | (F.abs(value) == F.lit(float("inf")))  # noqa: E731
    for name in numeric:
        if strings(name):
            text = column(name)
            given = text.isNotNull() & (F.trim(text) != "")
            if lenient:
                value = F.expr(f"try_cast(trim(`{name}`) AS DOUBLE)")
                wrong = value.isNull() | infinite(value)
            elif integers:
                value = F.expr(f"try_cast(`{name}` AS BIGINT)").cast("double")
                wrong = ~text.rlike("^-?[0-9]+$") | value.isNull()
            else:
                value = F.expr(f"try_cast(`{name}` AS DOUBLE)")
                wrong = (text != F.trim(text)) | value.isNull() | infinite(value)
            bad_numeric = bad_numeric | (given & wrong)
            value = F.when(given, value)
        else:
            value = column(name).cast("double")
            bad_numeric = bad_numeric | F.coalesce(infinite(value), F.lit(False))
        numbers[name] = value
    checks = list(first) + [(~F.coalesce(label_ok, F.lit(False)), "bad_label"), (bad_numeric, "bad_numeric")]
    categories, long_counts = {}, []
    for name in categorical:
        value, count = long_category(category_column(column(name), types.get(name, T.StringType())), max_length, policy)
        categories[name] = value
        long_counts.append(count)
    others = [c for c in raw.columns if c not in set(schema_columns(schema)) and c not in ("value", SOURCE_FILE, LINE, "_wrong")]
    frame = raw.select(
        label_value.alias(label),
        *[numbers[n].alias(n) for n in numeric],
        *[categories[n].alias(n) for n in categorical],
        *[column(c) for c in others],
        first_reason(checks).alias(REASON),
        F.col(SOURCE_FILE),
        F.col(LINE).cast("long").alias(LINE),
        F.col("value").alias(RAW),
        (sum(long_counts[1:], long_counts[0]) if long_counts else F.lit(0)).alias(LONG_TALLY),
    )
    reasons = [reason for _, reason in checks]
    return CheckedRows(frame, schema_columns(schema) + others, reasons, source, tallies=[LONG_TALLY])


def _finish(checked, schema: Dict[str, Any], path: str, format: str, max_bad_fraction: float) -> CtrRows:
    probe = [r[REASON] for r in checked.frame.select(REASON).limit(_PROBE_ROWS).collect()]
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
    summary = checked.summarize(max_bad_fraction)
    counts = _counts(summary)
    if counts["rows.kept"] == 0:
        raise DataError("DATA_EMPTY", f"no usable row in the {format} input ({counts}); check dataset.path and dataset.format", path)
    summary.enforce()
    if summary.tallies.get("long_categories"):
        LOGGER.warning("%s: %d category values longer than the limit were shortened (max_category_length)", path, summary.tallies["long_categories"])
    return CtrRows(checked.good(), schema, counts, checked, summary)


def _counts(summary) -> Dict[str, int]:
    """The counts of earlier versions (``rows.bad_<problem>``) plus ``values.long_categories``."""
    counts = {"rows.input": summary.read, **{f"rows.bad_{p}": summary.bad.get(reason, 0) for p, reason in PROBLEMS.items()}}
    counts["rows.kept"] = summary.good
    counts["values.long_categories"] = summary.tallies.get("long_categories", 0)
    return counts


def _generated(spark, schema: Dict[str, Any], generator: Dict[str, Any], seed: int, max_bad_fraction: float) -> CtrRows:
    from sparkml_tf.io.rows import CheckedRows
    from sparkml_tf.ranking.generate import generate_ctr

    kwargs = {"seed": seed, **generator}
    frame = generate_ctr(**kwargs)
    LOGGER.info("generated %d CTR rows (%s)", len(frame), kwargs)
    ddl = ", ".join([f"{schema['label']} int"] + [f"{n} double" for n in schema["numeric"]] + [f"{n} string" for n in schema["categorical"]])
    checked = CheckedRows.trusted(spark.createDataFrame(frame[schema_columns(schema)], ddl), "generated")
    summary = checked.summarize(max_bad_fraction)
    return CtrRows(checked.good(), schema, _counts(summary), checked, summary)


def schema_columns(schema: Mapping[str, Any]) -> List[str]:
    """The label, then the numeric and the categorical columns."""
    return [schema["label"], *schema["numeric"], *schema["categorical"]]
