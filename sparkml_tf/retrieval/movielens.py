"""The MovieLens rating files: presets of the interactions reader (:mod:`sparkml_tf.retrieval.interactions`).

Every reader returns the same columns, so the rest of the pipeline never looks at the layout:
``user: string, item: string, rating: double, timestamp: long`` (seconds since the epoch).
Paths may be local or any URI Spark reads (hdfs://, s3a://, dbfs:/, ...), a file or a folder.
Rows are checked one by one (``docs/data-quality.md``): a bad row anywhere in the file is
tagged with its reason, never a Spark cast error.
"""

from __future__ import annotations

from sparkml_tf.errors import DataError
from sparkml_tf.io.rows import DEFAULT_MAX_BAD_FRACTION
from sparkml_tf.retrieval.interactions import COLUMNS, PRESETS, read_interactions

FORMATS = {name: layout.what for name, layout in PRESETS.items()}

__all__ = ["COLUMNS", "FORMATS", "check_format", "read_ratings"]


def check_format(format: str) -> None:
    """DATA_UNKNOWN_FORMAT unless ``format`` is a MovieLens preset or a generic interactions format."""
    from sparkml_tf.retrieval.interactions import check_format as check

    check(format)


def read_ratings(spark, path: str, format: str = "movielens-csv", max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION):
    """The good rows of a MovieLens ratings file (``user, item, rating, timestamp``).

    Raises DATA_UNKNOWN_FORMAT for an unknown ``format``, DATA_SCHEMA_MISMATCH when the file does
    not fit that format (the wrong format or file), and DATA_TOO_MANY_BAD_ROWS above the budget.
    The dataset job reads through :func:`read_interactions` itself, to quarantine the bad rows.
    """
    if format not in PRESETS:
        raise DataError("DATA_UNKNOWN_FORMAT", f"unknown ratings format {format!r}; valid formats are {', '.join(sorted(PRESETS))}", "format")
    checked = read_interactions(spark, path, format)
    checked.summarize(max_bad_fraction).enforce()
    return checked.good()
