"""Row validation shared by every reader: each row read is good or bad with a reason code; bad
rows go to the dataset's quarantine, counts per reason to ``stats.json``, and a bad-row budget
fails the job before anything is written (``docs/data-quality.md``).

A reader parses with ``try_cast``-style expressions (a value that does not parse is a null, never
a Spark error) and returns :class:`CheckedRows`: its typed columns plus four internal ones,

- ``_reason``: null for a good row, else the first problem found, a code of :data:`REASONS`;
- ``_source_file``: the file the row came from (``_metadata.file_path``), null when unknown;
- ``_line``: the 1-based line (text) or row (Parquet) number in that file, null when unknown;
- ``_raw``: the row as read (the line, or the row's JSON), kept for bad rows only.

Driver side: it builds Spark plans (pyspark is imported inside the functions) and the executors
write the quarantine; nothing here imports the config system or the job engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from sparkml_tf.errors import DataError, SparkmlTfError

LOGGER = logging.getLogger(__name__)

# Every reason code, in the order readers check them (the first problem of a row wins).
REASONS: Dict[str, str] = {
    "undecodable": "the line (or a text value) is not valid UTF-8; kept out so that distinct bytes never merge into one U+FFFD value",
    "wrong_column_count": "a line with more or fewer fields than the layout",
    "missing_user": "the user is null or empty",
    "missing_item": "the item is null or empty",
    "value_too_long": "a user or item id longer than max_value_length characters",
    "bad_rating": "the rating is missing or not a number",
    "non_finite": "the rating is NaN or infinite (never a positive)",
    "bad_timestamp": "the timestamp is missing or not a whole number of seconds that fits 64 bits",
    "bad_label": "the label is not exactly 0 or 1",
    "bad_numeric": "a numeric field is not a whole number (strict) or not a finite number (lenient)",
    "duplicate": "a repeated (user, item) dropped by the duplicates policy (quarantined, not charged to the budget)",
}
# Rows a policy drops: quarantined and counted, but not errors in the input.
POLICY_REASONS = ("duplicate",)
DEFAULT_MAX_BAD_FRACTION = 0.01

REASON = "_reason"
SOURCE_FILE = "_source_file"
LINE = "_line"
RAW = "_raw"
INTERNAL = (REASON, SOURCE_FILE, LINE, RAW)
# The quarantine's columns (Parquet): raw is the row as valid text (undecodable bytes shown as
# U+FFFD), raw_bytes the exact bytes read.
QUARANTINE_COLUMNS = ("reason", "source_file", "line", "raw", "raw_bytes")
_EXAMPLE_CHARS = 300
_QUARANTINE_ROWS_PER_FILE = 1_000_000


def check_fraction(value: Any, key: str = "max_bad_fraction") -> float:
    """``value`` as a fraction in [0, 1]; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{key} must be a fraction of the rows read in [0, 1] (0.01 = 1%; 1 disables the budget), got {value!r}")
    return float(value)


def check_length(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a whole number of characters >= 1, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# Building blocks for readers


def _spark_major(spark) -> int:
    try:
        return int(str(spark.version).split(".")[0])
    except (ValueError, AttributeError):
        return 4


def valid_utf8(spark, column):
    """True when the string ``column`` holds valid UTF-8 (null for null). Spark's text and Parquet
    readers keep a string's bytes as read, so invalid bytes are still there to be found."""
    from pyspark.sql import functions as F

    if _spark_major(spark) >= 4:
        return F.call_function("is_valid_utf8", column)
    binary = column.cast("binary")
    return F.encode(F.decode(binary, "UTF-8"), "UTF-8") == binary  # Spark 3: decode replaces bad bytes


def as_valid_text(spark, column):
    """``column`` with invalid UTF-8 sequences replaced by U+FFFD (for display and Parquet readers)."""
    from pyspark.sql import functions as F

    if _spark_major(spark) >= 4:
        return F.call_function("make_valid_utf8", column)
    return F.decode(column.cast("binary"), "UTF-8")


def text_lines(spark, path: str, header: bool = False):
    """The lines of the text file(s) at ``path``: ``value``, ``_source_file`` and ``_line`` (the
    exact 1-based line number in its file, also for files Spark splits into several tasks).
    Lines holding only blanks are dropped (they are not rows); with ``header``, line 1 of each file.

    One extra pass counts the lines of each file split; line numbers are then split offsets plus
    the row's position in its task (``monotonically_increasing_id``, deterministic for a file scan).
    """
    from pyspark.sql import functions as F

    scan = spark.read.text(path).select(
        F.col("value"),
        F.col("_metadata.file_path").alias(SOURCE_FILE),
        F.col("_metadata.file_block_start").alias("_block"),
        F.monotonically_increasing_id().alias("_mid"),
    )
    splits = scan.groupBy(SOURCE_FILE, "_block").agg(F.min("_mid").alias("first"), F.count(F.lit(1)).alias("n")).collect()
    per_file: Dict[str, List[Tuple[int, int, int]]] = {}
    for row in splits:
        per_file.setdefault(row[SOURCE_FILE], []).append((int(row["_block"]), int(row["first"]), int(row["n"])))
    bases = []
    for name, parts in per_file.items():
        before = 0
        for block, first, n in sorted(parts):
            bases.append((name, block, before + 1 - first))
            before += n
    table = spark.createDataFrame(bases, f"{SOURCE_FILE} string, _block long, _base long")
    lines = scan.join(F.broadcast(table), [SOURCE_FILE, "_block"]).select("value", SOURCE_FILE, (F.col("_mid") + F.col("_base")).alias(LINE))
    keep = F.trim(F.col("value")) != ""
    if header:
        keep = keep & (F.col(LINE) != 1)
    return lines.where(keep)


def csv_header(spark, path: str, sep: str = ",") -> List[str]:
    """The column names of the header line (of the first file) of the CSV input at ``path``."""
    return list(spark.read.csv(path, sep=sep, header=True, inferSchema=False).columns)


def parse_csv(lines, names: Sequence[str], sep: str = ","):
    """``lines`` (from :func:`text_lines`) plus ``_fields``, a struct of the ``names`` columns as
    strings (CSV quoting understood, one record per line), and ``_wrong``: more or fewer fields."""
    from pyspark.sql import functions as F

    ddl = ", ".join(f"`{n.replace('`', '``')}` STRING" for n in names) + ", `_corrupt` STRING"
    parsed = F.from_csv(F.col("value"), ddl, {"sep": sep, "mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"})
    return lines.withColumn("_fields", parsed).withColumn("_wrong", F.col("_fields._corrupt").isNotNull())


def metadata_columns(frame) -> Tuple[Any, Any]:
    """``(source file, 1-based row number)`` columns of a file-based DataFrame (nulls when unknown)."""
    from pyspark.sql import functions as F

    try:
        field = frame.select("_metadata").schema.fields[0]
        names = [f.name for f in field.dataType.fields]
    except Exception:  # noqa: BLE001 - a source without file metadata (a view of another kind)
        names = []
    source = F.col("_metadata.file_path") if "file_path" in names else F.lit(None).cast("string")
    line = (F.col("_metadata.row_index") + 1) if "row_index" in names else F.lit(None).cast("long")
    return source, line


def first_reason(checks: Sequence[Tuple[Any, str]]):
    """A column: the reason of the first check whose condition is true, else null (a good row).
    A null condition counts as false; conditions must say what they mean about nulls."""
    from pyspark.sql import functions as F

    if not checks:
        return F.lit(None).cast("string")
    unknown = [reason for _, reason in checks if reason not in REASONS]
    if unknown:
        raise ValueError(f"unknown reason code(s) {unknown}; add them to sparkml_tf.io.rows.REASONS and docs/data-quality.md")
    column = F.when(F.coalesce(checks[0][0], F.lit(False)), F.lit(checks[0][1]))
    for condition, reason in checks[1:]:
        column = column.when(F.coalesce(condition, F.lit(False)), F.lit(reason))
    return column


# ---------------------------------------------------------------------------------------------
# Counting, the budget, the quarantine


@dataclasses.dataclass
class RowSummary:
    """What a check found: rows read, good, bad per reason, one example per reason, bad rows per file."""

    source: str
    read: int
    good: int
    bad: Dict[str, int]
    examples: Dict[str, Dict[str, Any]]
    files: Dict[str, int]
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
    tallies: Dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def num_bad(self) -> int:
        return sum(self.bad.values())

    @property
    def charged(self) -> int:
        """Bad rows counted against the budget: all but the policy drops (duplicates)."""
        return sum(n for reason, n in self.bad.items() if reason not in POLICY_REASONS)

    @property
    def fraction(self) -> float:
        return self.charged / self.read if self.read else 0.0

    @property
    def over_budget(self) -> bool:
        return self.fraction > self.max_bad_fraction

    def describe(self) -> str:
        """One paragraph: how many, where, the top reasons with an example line each."""
        top = sorted(((n, r) for r, n in self.bad.items() if n), key=lambda t: (-t[0], list(REASONS).index(t[1])))
        parts = []
        for n, reason in top:
            example = self.examples.get(reason)
            where = ""
            if example:
                line = f" line {example['line']}" if example.get("line") is not None else ""
                where = f" (e.g. {example.get('file') or self.source}{line}: {example.get('raw')!r})"
            parts.append(f"{reason} {n}{where}")
        worst = sorted(self.files.items(), key=lambda t: (-t[1], t[0]))
        files = f"; most in {worst[0][0]} ({worst[0][1]} of them)" if worst else ""
        return (
            f"{self.num_bad} of {self.read} rows read are bad ({self.charged} charged to the budget, {100 * self.fraction:.2f}%)"
            f"{files}; by reason: {', '.join(parts) or 'none'}"
        )

    def enforce(self) -> None:
        """DATA_TOO_MANY_BAD_ROWS above the budget; a warning with the same summary below it."""
        if self.over_budget:
            raise DataError(
                "DATA_TOO_MANY_BAD_ROWS",
                f"{self.describe()}: over the bad-row budget of {100 * self.max_bad_fraction:.2f}% (max_bad_fraction); "
                "fix or remove those rows, or raise max_bad_fraction to accept them (they then go to <dataset>/quarantine/); "
                "nothing was written",
                self.source,
            )
        if self.num_bad:
            LOGGER.warning("%s: %s; within the budget of %.2f%%, they go to the quarantine", self.source, self.describe(), 100 * self.max_bad_fraction)
        else:
            LOGGER.info("%s: all %d rows read are good", self.source, self.read)

    def counts(self) -> Dict[str, int]:
        """Flat counts for the log and MLflow: ``rows.read``, ``rows.good``, ``rows.bad``, ``rows.bad.<reason>``."""
        out = {"rows.read": self.read, "rows.good": self.good, "rows.bad": self.num_bad}
        out.update({f"rows.bad.{reason}": n for reason, n in self.bad.items()})
        out.update({f"values.{name}": n for name, n in self.tallies.items()})
        return out

    def to_dict(self) -> Dict[str, Any]:
        """The ``quality`` entry of stats.json."""
        return {
            "rows_read": self.read,
            "rows_good": self.good,
            "rows_bad": self.num_bad,
            "bad_by_reason": dict(self.bad),
            "charged_to_budget": self.charged,
            "bad_fraction": self.fraction,
            "max_bad_fraction": self.max_bad_fraction,
            "bad_by_file": dict(sorted(self.files.items())),
            "examples": self.examples,
            **({"values": dict(self.tallies)} if self.tallies else {}),
        }


class CheckedRows:
    """Rows of one input, each tagged good or bad (see the module doc).

    ``columns``: the data columns a good row carries on; ``reasons``: the codes this reader can
    give (counted, zeros included); ``source``: the input, for messages; ``tallies``: integer
    columns of the frame summed over good rows (``_long_categories``: values a reader changed),
    reported as ``values.<name>``.
    """

    def __init__(self, frame, columns: Sequence[str], reasons: Sequence[str], source: str, tallies: Sequence[str] = ()):
        unknown = [r for r in reasons if r not in REASONS]
        if unknown:
            raise ValueError(f"unknown reason code(s) {unknown}")
        self.frame = frame
        self.columns = list(columns)
        self.reasons = list(reasons)
        self.source = source
        self.tallies = list(tallies)
        self._persisted = False

    @classmethod
    def trusted(cls, frame, source: str) -> "CheckedRows":
        """Rows that need no check (generated data): all good, no file or line."""
        from pyspark.sql import functions as F

        tagged = frame.select(
            *frame.columns,
            F.lit(None).cast("string").alias(REASON),
            F.lit(None).cast("string").alias(SOURCE_FILE),
            F.lit(None).cast("long").alias(LINE),
            F.lit(None).cast("string").alias(RAW),
        )
        return cls(tagged, frame.columns, [], source)

    def drop_duplicates(self, keys: Sequence[str], order: Sequence[Any]) -> "CheckedRows":
        """Tag all but the first good row of each ``keys`` group, in ``order``, as ``duplicate``."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        good = F.col(REASON).isNull()
        rank = F.row_number().over(Window.partitionBy(good, *[F.col(k) for k in keys]).orderBy(*order))
        reason = F.when(good & (rank > 1), F.lit("duplicate")).otherwise(F.col(REASON))
        frame = self.frame.select(*[c for c in self.frame.columns if c != REASON], reason.alias(REASON))
        reasons = self.reasons + ([] if "duplicate" in self.reasons else ["duplicate"])
        return CheckedRows(frame.select(*self.columns, *INTERNAL, *self.tallies), self.columns, reasons, self.source, self.tallies)

    def persist(self) -> "CheckedRows":
        """Keep the tagged rows (raw text of bad rows only) for the passes that follow."""
        from pyspark.sql import functions as F

        raw = F.when(F.col(REASON).isNotNull(), F.col(RAW))
        self.frame = self.frame.select(*self.columns, REASON, SOURCE_FILE, LINE, raw.alias(RAW), *self.tallies).persist()
        self._persisted = True
        return self

    def release(self) -> None:
        if self._persisted:
            self.frame.unpersist()
            self._persisted = False

    def good(self):
        """The good rows, data columns only."""
        from pyspark.sql import functions as F

        return self.frame.where(F.col(REASON).isNull()).select(*self.columns)

    def summarize(self, max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION) -> RowSummary:
        """One aggregation over the tagged rows: counts per file and reason, the first example of each."""
        from pyspark.sql import functions as F

        bad = F.col(REASON).isNotNull()
        example = F.min(F.when(bad, F.struct(F.col(LINE).alias("line"), F.substring(F.col(RAW), 1, _EXAMPLE_CHARS).alias("raw"))))
        spark = self.frame.sparkSession
        groups = (
            self.frame.groupBy(SOURCE_FILE, REASON)
            .agg(
                F.count(F.lit(1)).alias("n"),
                example.alias("first"),
                *[F.sum(F.col(t).cast("long")).alias(t) for t in self.tallies],
            )
            .select(SOURCE_FILE, REASON, "n", F.col("first.line").alias("line"), as_valid_text(spark, F.col("first.raw")).alias("raw"), *self.tallies)
            .collect()
        )
        read = good = 0
        bad = {reason: 0 for reason in self.reasons}
        examples: Dict[str, Dict[str, Any]] = {}
        files: Dict[str, int] = {}
        tallies = {t.lstrip("_"): 0 for t in self.tallies}
        for row in sorted(groups, key=lambda r: (r[SOURCE_FILE] or "", r["line"] if r["line"] is not None else -1)):
            n, reason, name = int(row["n"]), row[REASON], row[SOURCE_FILE]
            read += n
            if reason is None:
                good += n
                for t in self.tallies:
                    tallies[t.lstrip("_")] += int(row[t] or 0)
                continue
            if reason not in REASONS:
                raise DataError("DATA_ROWS_UNACCOUNTED", f"a row was tagged with the unknown reason {reason!r}; this is a bug in the reader", self.source)
            bad[reason] = bad.get(reason, 0) + n
            if name is not None:
                files[name] = files.get(name, 0) + n
            if reason not in examples:
                examples[reason] = {"file": name, "line": None if row["line"] is None else int(row["line"]), "raw": row["raw"]}
        summary = RowSummary(self.source, read, good, bad, examples, files, check_fraction(max_bad_fraction), tallies)
        if summary.good + summary.num_bad != summary.read:
            raise DataError("DATA_ROWS_UNACCOUNTED", f"good ({summary.good}) + bad ({summary.num_bad}) != rows read ({summary.read})", self.source)
        return summary

    def quarantine(self):
        """The bad rows, as the quarantine stores them (:data:`QUARANTINE_COLUMNS`)."""
        from pyspark.sql import functions as F

        spark = self.frame.sparkSession
        return self.frame.where(F.col(REASON).isNotNull()).select(
            F.col(REASON).alias("reason"),
            F.col(SOURCE_FILE).alias("source_file"),
            F.col(LINE).cast("long").alias("line"),
            as_valid_text(spark, F.col(RAW)).alias("raw"),
            F.col(RAW).cast("binary").alias("raw_bytes"),
        )

    def write_quarantine(self, directory: str, expected: Optional[int] = None) -> int:
        """Write the bad rows under ``directory`` (Parquet, by the executors); the rows written,
        read back, must be ``expected`` (the summary's count) when given."""
        bad = self.quarantine()
        files = max(1, (expected or 0) // _QUARANTINE_ROWS_PER_FILE + (1 if expected else 0))
        bad.repartition(files).write.parquet(directory)
        written = int(self.frame.sparkSession.read.parquet(directory).count())
        if expected is not None and written != expected:
            raise DataError("DATA_ROWS_UNACCOUNTED", f"wrote {written} rows to the quarantine but counted {expected} bad rows; rerun", directory)
        return written


def account(summary: RowSummary, used: int, quarantined: int) -> None:
    """Check that every row read is either used (good) or in the quarantine (bad)."""
    if used != summary.good or quarantined != summary.num_bad:
        raise DataError(
            "DATA_ROWS_UNACCOUNTED",
            f"{summary.read} rows read, {summary.good} good and {summary.num_bad} bad, but {used} were used and {quarantined} quarantined; rerun "
            "(the input may have changed while the job read it)",
            summary.source,
        )


# Spark error classes of a value that failed to parse or convert.
_PARSE_ERRORS = (
    "CAST_INVALID_INPUT",
    "CAST_OVERFLOW",
    "ARITHMETIC_OVERFLOW",
    "MALFORMED_RECORD_IN_PARSING",
    "MALFORMED_CHARACTER_CODING",
    "INVALID_ARRAY_INDEX",
    "NUMERIC_VALUE_OUT_OF_RANGE",
    "CANNOT_PARSE_TIMESTAMP",
    "DATATYPE_MISMATCH",
)


@contextlib.contextmanager
def spark_errors(source: str, what: str = "the input") -> Iterator[None]:
    """Turn a Spark parse or cast failure into DATA_PARSE_FAILED naming the input and Spark's own
    first line (which quotes the value and the expression, hence the column)."""
    try:
        yield
    except SparkmlTfError:
        raise
    except Exception as error:  # noqa: BLE001 - only Spark's parse errors are translated, the rest re-raised
        condition = _error_class(error)
        if condition is None or not condition.startswith(_PARSE_ERRORS):
            raise
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        # Spark's own line ("[CAST_INVALID_INPUT] The value 'five' ..."), not a Py4J preamble.
        first = next((line[line.index("[" + condition) :] for line in lines if "[" + condition in line), lines[0] if lines else condition)
        raise DataError(
            "DATA_PARSE_FAILED",
            f"Spark could not parse a value of {what} ({condition}): {first[:500]}; the readers parse with try_cast, so this "
            "is a reader bug or a setting the reader does not cover: report it with this message",
            source,
        ) from error


def _error_class(error: BaseException) -> Optional[str]:
    for name in ("getCondition", "getErrorClass"):
        method = getattr(error, name, None)
        if callable(method):
            try:
                value = method()
            except Exception:  # noqa: BLE001
                value = None
            if value:
                return str(value)
    text = str(error)
    return next((c for c in _PARSE_ERRORS if f"[{c}" in text), None)
