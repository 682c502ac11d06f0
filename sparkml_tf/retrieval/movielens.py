"""Readers for the MovieLens rating files (driver side, Spark).

Every reader returns the same columns, so the rest of the pipeline never looks at the layout:
``user: string, item: string, rating: double, timestamp: long`` (seconds since the epoch).
Paths may be local or any URI Spark reads (hdfs://, s3a://, dbfs:/, ...), a file or a folder.
"""

from __future__ import annotations

import logging
from typing import Dict, Tuple

from sparkml_tf.errors import DataError

LOGGER = logging.getLogger(__name__)

COLUMNS = ("user", "item", "rating", "timestamp")

# format -> (separator, has header, raw column names in file order, where it comes from)
FORMATS: Dict[str, Tuple[str, bool, Tuple[str, ...], str]] = {
    "movielens-csv": (",", True, ("userId", "movieId", "rating", "timestamp"), "ratings.csv of ml-latest(-small), ml-20m, ml-25m"),
    "movielens-dat": ("::", False, ("_c0", "_c1", "_c2", "_c3"), "ratings.dat of ml-1m (user::movie::rating::timestamp)"),
    "movielens-100k": ("\t", False, ("_c0", "_c1", "_c2", "_c3"), "u.data of ml-100k (user<TAB>item<TAB>rating<TAB>timestamp)"),
}

# Rows checked for parsing right away, so a wrong format fails before the long Spark jobs do.
_PROBE_ROWS = 20


def check_format(format: str) -> None:
    if format not in FORMATS:
        valid = ", ".join(sorted(FORMATS))
        raise DataError(
            "DATA_UNKNOWN_FORMAT", f"unknown ratings format {format!r}; valid formats are {valid} (or 'generated' for synthetic data)", "format"
        )


def read_ratings(spark, path: str, format: str = "movielens-csv"):
    """Read a MovieLens ratings file into ``user, item, rating, timestamp``.

    Raises DATA_UNKNOWN_FORMAT for an unknown ``format`` and DATA_SCHEMA_MISMATCH when the file's
    columns do not parse as that format (usually: the wrong format or the wrong file).
    """
    check_format(format)
    sep, header, raw, what = FORMATS[format]
    # Read as strings first: a typed schema would turn a wrong layout into silent nulls.
    frame = spark.read.csv(path, sep=sep, header=header, inferSchema=False, mode="PERMISSIVE")
    missing = [c for c in raw if c not in frame.columns]
    if missing:
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"expected the {format} layout ({what}) but the file has columns {frame.columns[:8]} (missing {missing}); "
            f"check that dataset.format matches the file (valid: {', '.join(sorted(FORMATS))})",
            path,
        )
    _probe(_typed(frame, raw, "try_cast"), path, format, what)
    # A plain cast: under ANSI mode (Spark 4's default) a bad row further down fails the job
    # with its value, rather than becoming a null that filters would drop silently.
    return _typed(frame, raw, "cast")


def _typed(frame, raw: Tuple[str, ...], cast: str):
    from pyspark.sql import functions as F

    return frame.select(
        F.trim(F.col(raw[0])).alias("user"),
        F.trim(F.col(raw[1])).alias("item"),
        F.expr(f"{cast}(`{raw[2]}` AS DOUBLE)").alias("rating"),
        F.expr(f"{cast}(`{raw[3]}` AS BIGINT)").alias("timestamp"),
    )


def _probe(ratings, path: str, format: str, what: str) -> None:
    """Check the first rows with try_cast, to say "wrong format" before a long job fails."""
    from pyspark.sql import functions as F

    bad = ratings.limit(_PROBE_ROWS).where(
        F.col("user").isNull() | F.col("item").isNull() | F.col("rating").isNull() | F.col("timestamp").isNull()
    ).limit(1).collect()
    if bad:
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"a row of the file does not parse as {format} ({what}): {bad[0].asDict()}; "
            f"rating must be a number and timestamp an integer; check dataset.format and dataset.path",
            path,
        )
