"""The retrieval task's input reader: interactions ``user, item[, rating][, timestamp]`` from Parquet,
CSV, a Spark table, or a MovieLens file (a preset of the same reader), checked row by row
(:mod:`sparkml_tf.io.rows`; reason codes and policies in ``docs/data-quality.md``).

Every format gives the same columns: ``user: string, item: string, rating: double, timestamp:
long`` (seconds since the epoch); ``rating`` or ``timestamp`` is null throughout when the input has
none (``columns.rating: null``). Paths may be local or any URI Spark reads, a file or a folder;
for ``table``, ``path`` is a table name.

- ``movielens-csv``, ``movielens-dat``, ``movielens-100k``: the MovieLens layouts (:data:`PRESETS`);
- ``csv``: a header line, comma separated, one record per line; ``columns`` names the header's
  columns to use;
- ``parquet`` / ``table``: typed columns named by ``columns``; a column that is missing or of a type
  that cannot hold the value is DATA_MISSING_COLUMN / DATA_COLUMN_TYPE naming it and what was found.

Text is read line by line with exact line numbers; a line that is not valid UTF-8 is
``undecodable`` (two ids differing only in their bad bytes never merge into one U+FFFD id).
Driver side (Spark).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Union

from sparkml_tf.errors import DataError, bad_value
from sparkml_tf.io.rows import (
    LINE,
    RAW,
    REASON,
    SOURCE_FILE,
    CheckedRows,
    csv_header,
    first_reason,
    metadata_columns,
    parse_csv,
    spark_errors,
    text_lines,
    valid_utf8,
)

COLUMNS = ("user", "item", "rating", "timestamp")
REQUIRED = ("user", "item")
DEFAULT_COLUMNS: Dict[str, Optional[str]] = {"user": "user", "item": "item", "rating": "rating", "timestamp": "timestamp"}
GENERIC_FORMATS = ("parquet", "csv", "table")
DUPLICATES = ("latest", "all")
DEFAULT_MAX_VALUE_LENGTH = 1024


@dataclasses.dataclass(frozen=True)
class Layout:
    """How to read one format: ``kind`` is ``delimited`` (fields by position, ``columns`` maps a
    role to its position), ``csv`` (header names), ``parquet`` or ``table`` (column names)."""

    kind: str
    columns: Mapping[str, Optional[Union[str, int]]]
    sep: str = ","
    header: bool = False
    what: str = ""

    @property
    def width(self) -> int:
        return 1 + max(int(v) for v in self.columns.values() if v is not None)


_MOVIELENS = {"user": 0, "item": 1, "rating": 2, "timestamp": 3}
PRESETS: Dict[str, Layout] = {
    "movielens-csv": Layout(
        "csv",
        {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"},
        ",",
        True,
        "ratings.csv of ml-latest(-small), ml-20m, ml-25m",
    ),
    "movielens-dat": Layout("delimited", _MOVIELENS, "::", False, "ratings.dat of ml-1m (user::movie::rating::timestamp)"),
    "movielens-100k": Layout("delimited", _MOVIELENS, "\t", False, "u.data of ml-100k (user<TAB>item<TAB>rating<TAB>timestamp)"),
}
FORMATS = tuple(PRESETS) + GENERIC_FORMATS
# A wrong format is told apart from dirty data when every one of the first rows is bad.
_PROBE_ROWS = 20


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise DataError(
            "DATA_UNKNOWN_FORMAT",
            f"unknown interactions format {format!r}; valid formats are {', '.join(FORMATS)} (or 'generated' for synthetic data)",
            "format",
        )


def check_columns(format: str, columns: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Optional[str]]]:
    """The column mapping to read ``format`` with (None for a preset); ConfigError at ``columns.<role>``."""
    if format in PRESETS:
        if columns:
            raise bad_value("columns", f"format {format!r} has a fixed layout: leave columns null, or use csv/parquet/table to name the columns")
        return None
    if columns is None:
        return dict(DEFAULT_COLUMNS)
    if not isinstance(columns, Mapping):
        raise bad_value("columns", f"columns must be an object mapping user, item, rating, timestamp to column names, got {columns!r}")
    unknown = sorted(set(columns) - set(COLUMNS))
    if unknown:
        raise bad_value(f"columns.{unknown[0]}", f"columns takes {', '.join(COLUMNS)}; unknown key(s) {', '.join(unknown)}")
    out: Dict[str, Optional[str]] = {}
    for role in COLUMNS:
        value = columns.get(role)  # an optional role left out: the data has none
        if role in REQUIRED and (not isinstance(value, str) or not value):
            raise bad_value(f"columns.{role}", f"columns.{role} must name the {role} column, got {value!r}")
        if value is not None and (not isinstance(value, str) or not value):
            raise bad_value(f"columns.{role}", f"columns.{role} must name a column, or be null when the data has no {role}, got {value!r}")
        out[role] = value
    named = [v for v in out.values() if v is not None]
    repeated = sorted({v for v in named if named.count(v) > 1})
    if repeated:
        raise bad_value("columns", f"columns names {', '.join(repeated)} for two roles; each role needs its own column")
    return out


def check_duplicates(duplicates: str) -> str:
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates must be 'latest' (keep the latest row of a user and item, the default) or 'all', got {duplicates!r}")
    return duplicates


def layout_for(format: str, columns: Optional[Mapping[str, Any]] = None) -> Layout:
    check_format(format)
    if format in PRESETS:
        return PRESETS[format]
    return Layout(format, check_columns(format, columns) or dict(DEFAULT_COLUMNS), ",", format == "csv", f"{format} with declared columns")


def read_interactions(
    spark,
    path: str,
    format: str,
    columns: Optional[Mapping[str, Any]] = None,
    max_value_length: int = DEFAULT_MAX_VALUE_LENGTH,
    duplicates: str = "latest",
) -> CheckedRows:
    """Read and check interactions; each row is good or bad with a reason (nothing is dropped yet).

    ``duplicates``: ``latest`` tags all but the latest row of each (user, item) as ``duplicate``
    (latest timestamp, then the later file and line); ``all`` keeps every row.
    Raises DATA_UNKNOWN_FORMAT, DATA_NOT_FOUND, DATA_SCHEMA_MISMATCH (a MovieLens file whose header
    or first rows do not fit the layout), DATA_MISSING_COLUMN, DATA_COLUMN_TYPE.
    """
    from pyspark.sql import functions as F

    layout = layout_for(format, columns)
    check_duplicates(duplicates)
    with _not_found(path), spark_errors(path, f"the {format} input"):
        if layout.kind in ("delimited", "csv"):
            checked = _read_text(spark, path, format, layout, max_value_length)
        else:
            checked = _read_typed(spark, path, format, layout, max_value_length)
        if format in PRESETS:
            _probe(checked, path, format, layout)
    if duplicates == "latest":
        order = [F.col("timestamp").desc_nulls_last(), F.col(SOURCE_FILE).desc_nulls_last(), F.col(LINE).desc_nulls_last(), F.col("rating").desc_nulls_last()]
        checked = checked.drop_duplicates(("user", "item"), order)
    return checked


def _read_text(spark, path: str, format: str, layout: Layout, max_value_length: int) -> CheckedRows:
    from pyspark.sql import functions as F

    lines = text_lines(spark, path, header=layout.header)
    if layout.kind == "delimited":
        parts = F.split(F.col("value"), re.escape(layout.sep), -1)
        wrong = F.size(parts) != layout.width
        fields = {role: F.get(parts, int(pos)) for role, pos in layout.columns.items() if pos is not None}
    else:
        lines = parse_csv(lines, _csv_header(spark, path, format, layout), layout.sep)
        wrong = F.col("_wrong")
        fields = {role: F.col("_fields").getField(name) for role, name in layout.columns.items() if name is not None}
    text = lines.select(
        "value", SOURCE_FILE, LINE, wrong.alias("_wrong"), *[F.trim(column).alias(f"_{role}") for role, column in fields.items()]
    )
    checks = [(~valid_utf8(spark, F.col("value")), "undecodable"), (F.col("_wrong"), "wrong_column_count")]
    typed = {"user": F.col("_user"), "item": F.col("_item")}
    if "rating" in fields:
        typed["rating"] = F.expr("try_cast(_rating AS DOUBLE)")
    if "timestamp" in fields:
        typed["timestamp"] = F.expr("try_cast(_timestamp AS BIGINT)")
    return _tagged(text, typed, checks, fields, max_value_length, F.col("value"), path)


def _read_typed(spark, path: str, format: str, layout: Layout, max_value_length: int) -> CheckedRows:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    frame = spark.read.parquet(path) if format == "parquet" else spark.table(path)
    types = {f.name: f.dataType for f in frame.schema.fields}
    declared = {role: name for role, name in layout.columns.items() if name is not None}
    where = f"the {format} input" + (f" table {path}" if format == "table" else "")
    for role, name in declared.items():
        if name not in types:
            raise DataError(
                "DATA_MISSING_COLUMN",
                f"{where} has no column {name!r} (columns.{role}); it has {', '.join(list(types)[:20])}; "
                f"fix columns.{role}" + ("" if role in REQUIRED else f", or set columns.{role} to null if the data has no {role}"),
                path,
            )
    integral = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
    accepted = {
        "user": (T.StringType, *integral),
        "item": (T.StringType, *integral),
        "rating": (T.StringType, T.NumericType),
        "timestamp": (T.StringType, *integral, T.TimestampType, *((T.TimestampNTZType,) if hasattr(T, "TimestampNTZType") else ())),
    }
    wanted = {"user": "a string or integer id", "item": "a string or integer id", "rating": "a number", "timestamp": "whole seconds or a timestamp"}
    for role, name in declared.items():
        if not isinstance(types[name], accepted[role]):
            raise DataError(
                "DATA_COLUMN_TYPE",
                f"column {name!r} (columns.{role}) of {where} is {types[name].simpleString()}, but {role} must be {wanted[role]}; "
                f"convert it, or point columns.{role} at another column",
                path,
            )
    source, line = metadata_columns(frame)
    raw = F.to_json(F.struct(*[F.col(f"`{n}`").alias(n) for n in declared.values()]))
    text = frame.select(
        raw.alias("value"),
        source.alias(SOURCE_FILE),
        line.alias(LINE),
        *[F.col(f"`{name}`").alias(f"_{role}") for role, name in declared.items()],
    )
    checks = []
    strings = [role for role in ("user", "item") if isinstance(types[declared[role]], T.StringType)]
    if strings:
        invalid = F.lit(False)
        for role in strings:
            invalid = invalid | ~valid_utf8(spark, F.col(f"_{role}"))
        checks.append((invalid, "undecodable"))
    typed = {"user": F.col("_user").cast("string"), "item": F.col("_item").cast("string")}
    if "rating" in declared:
        text_rating = isinstance(types[declared["rating"]], T.StringType)
        typed["rating"] = F.expr("try_cast(trim(_rating) AS DOUBLE)") if text_rating else F.col("_rating").cast("double")
    if "timestamp" in declared:
        kind = types[declared["timestamp"]]
        if isinstance(kind, T.StringType):
            typed["timestamp"] = F.expr("try_cast(trim(_timestamp) AS BIGINT)")
        elif isinstance(kind, integral):
            typed["timestamp"] = F.col("_timestamp").cast("long")
        else:
            typed["timestamp"] = F.unix_seconds(F.col("_timestamp").cast("timestamp"))
    return _tagged(text, typed, checks, declared, max_value_length, F.col("value"), path)


def _tagged(text, typed: Dict[str, Any], checks, declared, max_value_length: int, raw, path: str) -> CheckedRows:
    """Add the id and value checks to ``checks`` and select the data and internal columns."""
    from pyspark.sql import functions as F

    user, item = typed["user"], typed["item"]
    checks = list(checks) + [
        (user.isNull() | (F.trim(user) == ""), "missing_user"),
        (item.isNull() | (F.trim(item) == ""), "missing_item"),
        ((F.length(user) > int(max_value_length)) | (F.length(item) > int(max_value_length)), "value_too_long"),
    ]
    reasons = ["undecodable", "wrong_column_count", "missing_user", "missing_item", "value_too_long"]
    if "rating" in declared:
        rating = typed["rating"]
        checks += [(rating.isNull(), "bad_rating"), (F.isnan(rating) | (F.abs(rating) == F.lit(float("inf"))), "non_finite")]
        reasons += ["bad_rating", "non_finite"]
    if "timestamp" in declared:
        checks.append((typed["timestamp"].isNull(), "bad_timestamp"))
        reasons.append("bad_timestamp")
    frame = text.select(
        user.alias("user"),
        item.alias("item"),
        typed.get("rating", F.lit(None)).cast("double").alias("rating"),
        typed.get("timestamp", F.lit(None)).cast("long").alias("timestamp"),
        first_reason(checks).alias(REASON),
        F.col(SOURCE_FILE),
        F.col(LINE).cast("long").alias(LINE),
        raw.alias(RAW),
    )
    used = [r for r in reasons if r in {reason for _, reason in checks}]
    return CheckedRows(frame, list(COLUMNS), used, path)


def _csv_header(spark, path: str, format: str, layout: Layout) -> Sequence[str]:
    names = csv_header(spark, path, layout.sep)
    wanted = {role: name for role, name in layout.columns.items() if name is not None}
    missing = {role: name for role, name in wanted.items() if name not in names}
    if missing:
        if format in PRESETS:
            raise DataError(
                "DATA_SCHEMA_MISMATCH",
                f"expected the {format} layout ({layout.what}) but the file has columns {names[:8]} (missing {sorted(missing.values())}); "
                f"check that dataset.format matches the file (valid: {', '.join(FORMATS)})",
                path,
            )
        role, name = next(iter(missing.items()))
        raise DataError(
            "DATA_MISSING_COLUMN",
            f"the csv header has no column {name!r} (columns.{role}); it has {', '.join(names[:20])}; fix columns.{role}"
            + ("" if role in REQUIRED else f", or set columns.{role} to null if the data has no {role}"),
            path,
        )
    return names


def _probe(checked: CheckedRows, path: str, format: str, layout: Layout) -> None:
    """The wrong format (or file) rather than dirty data: every one of the first rows is bad."""
    first = checked.frame.select(REASON, RAW).limit(_PROBE_ROWS).collect()
    if first and all(r[REASON] is not None for r in first):
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"none of the first {len(first)} rows parses as {format} ({layout.what}): reasons {sorted({r[REASON] for r in first})}, "
            f"first line {first[0][RAW]!r}; rating must be a number and timestamp an integer; check dataset.format and dataset.path",
            path,
        )


@contextlib.contextmanager
def _not_found(path: str) -> Iterator[None]:
    """DATA_NOT_FOUND for a path or table Spark cannot find (instead of an AnalysisException)."""
    try:
        yield
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - re-raised unless Spark says the input does not exist
        text = str(error)
        if not any(code in text for code in ("PATH_NOT_FOUND", "TABLE_OR_VIEW_NOT_FOUND", "Path does not exist")):
            raise
        raise DataError("DATA_NOT_FOUND", f"no input at {path!r}: {text.strip().splitlines()[0][:300]}; check dataset.path", path) from error
