"""Row validation of the interactions readers, fuzzed: files generated here mixing good rows with
every bad kind, anywhere in the file (also far after the first 20 rows); per-reason counts, the
quarantine's rows (reason, file, line, raw bytes) and the good rows are checked exactly."""

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparkml_tf.errors import ConfigError, DataError
from sparkml_tf.io.rows import REASONS, CheckedRows, RowSummary
from sparkml_tf.retrieval.interactions import check_columns, read_interactions

pytestmark = pytest.mark.spark

SEPARATORS = {"movielens-csv": ",", "movielens-dat": "::", "movielens-100k": "\t", "csv": ","}
HEADERS = {"movielens-csv": "userId,movieId,rating,timestamp", "csv": "ts,who,what,stars,extra"}
LONG = "i" * 1100  # over the default max_value_length (1024)


def good_rows(n=240, seed=0):
    """Unique (user, item) rows: (user, item, rating, timestamp)."""
    rng = random.Random(seed)
    pairs = sorted({(f"u{rng.randrange(40)}", f"m{rng.randrange(200)}") for _ in range(3 * n)})[:n]
    rng.shuffle(pairs)
    return [(u, i, rng.choice([1.0, 2.5, 3.0, 4.0, 4.5, 5.0]), 1_000_000_000 + rng.randrange(10**6)) for u, i in pairs]


def bad_fields(first):
    """(reason, fields as bytes) for every bad kind of the interactions readers; ``first`` is a good
    row, for the duplicate (same user and item, older timestamp: the latest row wins)."""
    u, i, r, t = first
    return [
        ("missing_user", [b"", b"m1", b"4.0", b"1000000001"]),
        ("missing_user", [b"   ", b"m2", b"4.0", b"1000000001"]),
        ("missing_item", [b"u1", b"", b"4.0", b"1000000001"]),
        ("bad_rating", [b"u1", b"m3", b"five", b"1000000001"]),
        ("bad_rating", [b"u1", b"m4", b"", b"1000000001"]),
        ("non_finite", [b"u1", b"m5", b"NaN", b"1000000001"]),
        ("non_finite", [b"u1", b"m6", b"Infinity", b"1000000001"]),
        ("non_finite", [b"u1", b"m7", b"-inf", b"1000000001"]),
        ("bad_timestamp", [b"u1", b"m8", b"4.0", b"1.5e9"]),
        ("bad_timestamp", [b"u1", b"m9", b"4.0", b"99999999999999999999"]),
        ("bad_timestamp", [b"u1", b"m10", b"4.0", b""]),
        ("wrong_column_count", [b"u1", b"m11", b"4.0", b"1000000001", b"extra"]),
        ("wrong_column_count", [b"u1", b"m12", b"4.0"]),
        ("value_too_long", [b"u1", LONG.encode(), b"4.0", b"1000000001"]),
        ("undecodable", [b"u1", b"X\xff", b"4.0", b"1000000001"]),
        ("undecodable", [b"u1", b"X\xfe", b"4.0", b"1000000001"]),
        ("duplicate", [u.encode(), i.encode(), b"5.0", str(t - 10).encode()]),
    ]


def write_text_file(path, format, rows, bad, seed=1, order=None):
    """Write ``rows`` with ``bad`` lines inserted at seeded positions; return {line number: reason}.

    ``order``: positions of the four roles in a line (the generic csv reorders and adds a column)."""
    sep = SEPARATORS[format].encode()
    lines = [[str(v).encode() for v in row] for row in rows]
    tagged = [(None, line) for line in lines]
    rng = random.Random(seed)
    for reason, fields in bad:
        # anywhere, but never before the first 3 rows, and most of them after row 20
        tagged.insert(rng.randrange(3, len(tagged) + 1), (reason, fields))
    header = HEADERS.get(format)
    out, expected, number = [], {}, 0
    if header:
        out.append(header.encode())
        number = 1
    for reason, fields in tagged:
        if order is not None and len(fields) == 4:
            fields = order(fields)
        number += 1
        out.append(sep.join(fields))
        if reason:
            expected[number] = reason
    path.write_bytes(b"\n".join(out) + b"\n\n")  # a trailing blank line is not a row
    return expected


def quarantine_rows(checked):
    return {int(r["line"]): r for r in checked.quarantine().collect()}


def check_reader(spark, path, checked, rows, expected, raw_lines):
    summary = checked.summarize(1.0)
    want = {reason: list(expected.values()).count(reason) for reason in set(expected.values())}
    assert {k: v for k, v in summary.bad.items() if v} == want
    assert summary.read == len(rows) + len(expected) and summary.good == len(rows)
    assert summary.good + summary.num_bad == summary.read
    quarantine = quarantine_rows(checked)
    assert {line: r["reason"] for line, r in quarantine.items()} == expected
    for line, r in quarantine.items():
        assert r["source_file"].endswith(path.name)
        assert r["raw_bytes"] == raw_lines[line - 1]  # the exact bytes, undecodable ones included
    good = sorted((r["user"], r["item"], r["rating"], r["timestamp"]) for r in checked.good().collect())
    assert good == sorted(rows)  # no bad row among the good ones, no good row lost
    return summary


@pytest.mark.parametrize("format", ["movielens-csv", "movielens-dat", "movielens-100k"])
def test_movielens_fuzz(spark, tmp_path, format):
    rows = good_rows()
    path = tmp_path / f"ratings-{format}.txt"
    expected = write_text_file(path, format, rows, bad_fields(rows[0]))
    assert max(expected) > 100 and min(expected) < 40
    checked = read_interactions(spark, str(path), format)
    summary = check_reader(spark, path, checked, rows, expected, path.read_bytes().split(b"\n"))
    assert summary.charged == summary.num_bad - 1  # the duplicate is a policy drop, not charged
    example = summary.examples["bad_rating"]
    assert example["line"] == min(line for line, reason in expected.items() if reason == "bad_rating")
    assert example["file"].endswith(path.name) and example["raw"] == path.read_bytes().split(b"\n")[example["line"] - 1].decode()


def test_generic_csv_with_declared_columns(spark, tmp_path):
    # the generic reader: columns in another order, an unused column, quoted values
    rows = good_rows(120, seed=3)
    path = tmp_path / "events.csv"
    bad = [b for b in bad_fields(rows[0]) if b[0] != "wrong_column_count"]
    bad.append(("wrong_column_count", [b"1", b"u1", b"m13"]))  # 3 of the 5 fields
    bad.append(("wrong_column_count", [b"1", b"u1", b"m14", b"4.0", b"x", b"y"]))  # 6 of 5
    order = lambda f: [f[3], f[0], f[1], f[2], b'"a, quoted value"']  # noqa: E731
    expected = write_text_file(path, "csv", rows, bad, seed=4, order=order)
    columns = {"user": "who", "item": "what", "rating": "stars", "timestamp": "ts"}
    checked = read_interactions(spark, str(path), "csv", columns)
    check_reader(spark, path, checked, rows, expected, path.read_bytes().split(b"\n"))


def test_duplicates_all_keeps_every_row(spark, tmp_path):
    rows = good_rows(60)
    path = tmp_path / "ratings.dat"
    u, i, r, t = rows[0]
    expected = write_text_file(path, "movielens-dat", rows, [(None, [u.encode(), i.encode(), b"2.0", str(t + 5).encode()])])
    assert expected == {}
    latest = read_interactions(spark, str(path), "movielens-dat")
    kept = {(x["user"], x["item"]): x["rating"] for x in latest.good().collect()}
    assert len(kept) == 60 and kept[(u, i)] == 2.0  # the later timestamp wins, even with a lower rating
    assert [q["reason"] for q in latest.quarantine().collect()] == ["duplicate"]
    every = read_interactions(spark, str(path), "movielens-dat", duplicates="all")
    assert every.good().count() == 61 and every.quarantine().count() == 0


def test_line_numbers_are_exact_across_file_splits(spark, tmp_path):
    # A file Spark reads in several tasks: line numbers still count from the start of the file.
    rows = good_rows(3000, seed=5)
    path = tmp_path / "ratings.dat"
    expected = write_text_file(path, "movielens-dat", rows, [("bad_rating", [b"u1", b"m1", b"x", b"1"])] * 3, seed=6)
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "8192")
    try:
        checked = read_interactions(spark, str(path), "movielens-dat", duplicates="all")
        assert checked.frame.rdd.getNumPartitions() > 3
        assert {line: r["reason"] for line, r in quarantine_rows(checked).items()} == expected
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)


def _bad_utf8_strings(values):
    """A pyarrow string array holding the given bytes as they are (invalid UTF-8 included)."""
    import numpy as np

    offsets, data = [0], b""
    for v in values:
        data += v
        offsets.append(len(data))
    return pa.StringArray.from_buffers(len(values), pa.py_buffer(np.array(offsets, np.int32).tobytes()), pa.py_buffer(data))


def test_parquet_fuzz(spark, tmp_path):
    import datetime

    utc = datetime.timezone.utc
    good = [(10 + k, f"m{k}", float(k % 5 + 1), 1_000_000_000 + k) for k in range(80)]
    bad = [
        (None, "m1", 4.0, 1_000_000_001, "missing_user"),
        (3, "", 4.0, 1_000_000_001, "missing_item"),
        (3, "m2", None, 1_000_000_001, "bad_rating"),
        (3, "m3", float("nan"), 1_000_000_001, "non_finite"),
        (3, "m4", float("inf"), 1_000_000_001, "non_finite"),
        (3, "m5", 4.0, None, "bad_timestamp"),
        (3, LONG, 4.0, 1_000_000_001, "value_too_long"),
        (3, b"X\xff", 4.0, 1_000_000_001, "undecodable"),
        (3, b"X\xfe", 4.0, 1_000_000_001, "undecodable"),
    ]
    rng = random.Random(7)
    rows = [(u, i, r, t, None) for u, i, r, t in good]
    for row in bad:
        rows.insert(rng.randrange(len(rows) + 1), row)
    items = [i if isinstance(i, bytes) else i.encode() for _, i, _, _, _ in rows]
    table = pa.table(
        {
            "uid": pa.array([u for u, *_ in rows], pa.int64()),
            "movie": _bad_utf8_strings(items),
            "score": pa.array([r for _, _, r, _, _ in rows], pa.float64()),
            "when": pa.array([None if t is None else datetime.datetime.fromtimestamp(t, utc) for _, _, _, t, _ in rows], pa.timestamp("s", "UTC")),
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    checked = read_interactions(spark, str(path), "parquet", {"user": "uid", "item": "movie", "rating": "score", "timestamp": "when"})
    summary = checked.summarize(1.0)
    expected = {k + 1: row[4] for k, row in enumerate(rows) if row[4]}
    assert {line: r["reason"] for line, r in quarantine_rows(checked).items()} == expected  # line = row number in the file
    assert summary.read == len(rows) and summary.good == len(good)
    got = sorted((r["user"], r["item"], r["rating"], r["timestamp"]) for r in checked.good().collect())
    assert got == sorted((str(u), i, r, t) for u, i, r, t in good)
    raw = {int(r["line"]): json.loads(r["raw"]) for r in checked.quarantine().collect()}
    assert raw[expected_line(expected, "missing_item")]["movie"] == ""


def expected_line(expected, reason):
    return next(line for line, r in expected.items() if r == reason)


def test_a_table_and_no_rating_column(spark, tmp_path):
    path = tmp_path / "clicks"
    spark.createDataFrame([("a", "x", 1), ("a", "y", 2), ("", "y", 3), ("b", "x", 4)], "who string, what string, at long").write.parquet(str(path))
    spark.read.parquet(str(path)).createOrReplaceTempView("clicks_view")
    checked = read_interactions(spark, "clicks_view", "table", {"user": "who", "item": "what", "timestamp": "at"})
    assert checked.summarize(1.0).bad == {r: (1 if r == "missing_user" else 0) for r in checked.reasons}
    assert sorted(tuple(r) for r in checked.good().collect()) == [("a", "x", None, 1), ("a", "y", None, 2), ("b", "x", None, 4)]


def test_column_errors_name_the_column(spark, tmp_path):
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"u": ["a"], "i": [[1, 2]], "r": [1.0]}), path)
    with pytest.raises(DataError) as missing:
        read_interactions(spark, str(path), "parquet", {"user": "user_id", "item": "i"})
    assert missing.value.code == "DATA_MISSING_COLUMN" and "'user_id'" in missing.value.message and "columns.user" in missing.value.message
    with pytest.raises(DataError) as typed:
        read_interactions(spark, str(path), "parquet", {"user": "u", "item": "i", "rating": "r"})
    assert typed.value.code == "DATA_COLUMN_TYPE" and "'i'" in typed.value.message and "array<bigint>" in typed.value.message
    csv = tmp_path / "events.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(DataError) as header:
        read_interactions(spark, str(csv), "csv", {"user": "a", "item": "b", "rating": "stars"})
    assert header.value.code == "DATA_MISSING_COLUMN" and "'stars'" in header.value.message and header.value.path == str(csv)
    with pytest.raises(DataError) as nowhere:
        read_interactions(spark, str(tmp_path / "absent"), "parquet")
    assert nowhere.value.code == "DATA_NOT_FOUND"


def test_column_mapping_checks():
    assert check_columns("movielens-csv", None) is None
    assert check_columns("parquet", {"user": "u", "item": "i"}) == {"user": "u", "item": "i", "rating": None, "timestamp": None}
    for columns, key in [
        ({"user": "u"}, "columns.item"),
        ({"user": "u", "item": "i", "stars": "s"}, "columns.stars"),
        ({"user": "u", "item": "u"}, "columns"),
        ({"user": "u", "item": "i", "rating": 3}, "columns.rating"),
        ("user", "columns"),
    ]:
        with pytest.raises(ConfigError) as error:
            check_columns("csv", columns)
        assert (error.value.code, error.value.path) == ("CONFIG_BAD_VALUE", key), columns
    with pytest.raises(ConfigError) as preset:
        check_columns("movielens-dat", {"user": "u", "item": "i"})
    assert preset.value.path == "columns"


def test_budget_error_and_warning(caplog):
    examples = {
        "bad_rating": {"file": "file:/d/r.csv", "line": 57, "raw": "1,31,five,1"},
        "missing_item": {"file": "file:/d/r.csv", "line": 3, "raw": "1,,4,1"},
    }
    over = RowSummary("data/r.csv", 1000, 970, {"bad_rating": 20, "missing_item": 10, "duplicate": 0}, examples, {"file:/d/r.csv": 30}, 0.01)
    with pytest.raises(DataError) as error:
        over.enforce()
    message = error.value.message
    assert error.value.code == "DATA_TOO_MANY_BAD_ROWS" and error.value.path == "data/r.csv"
    assert "30 of 1000 rows" in message and "file:/d/r.csv (30 of them)" in message and "max_bad_fraction" in message
    assert message.index("bad_rating 20") < message.index("missing_item 10")  # the top reason first
    assert "line 57: '1,31,five,1'" in message and "line 3: '1,,4,1'" in message
    # duplicates are not charged: 10 bad rows and 500 duplicates of 1000 pass a 1% budget
    within = RowSummary("data/r.csv", 1000, 490, {"missing_item": 10, "duplicate": 500}, examples, {"file:/d/r.csv": 510}, 0.01)
    with caplog.at_level("WARNING", logger="sparkml_tf.io.rows"):
        within.enforce()
    assert "missing_item 10" in caplog.text and "duplicate 500" in caplog.text
    assert within.counts() == {"rows.read": 1000, "rows.good": 490, "rows.bad": 510, "rows.bad.missing_item": 10, "rows.bad.duplicate": 500}


def test_every_reason_is_documented(repo_root):
    import os

    with open(os.path.join(repo_root, "docs", "data-quality.md")) as f:
        page = f.read()
    for reason in REASONS:
        assert f"`{reason}`" in page, reason
    assert "DATA_TOO_MANY_BAD_ROWS" in page
    import re

    with open(os.path.join(repo_root, "docs", "errors.md")) as f:
        errors = f.read()
    for module in ("sparkml_tf/io/rows.py", "sparkml_tf/retrieval/interactions.py", "sparkml_tf/ranking/criteo.py"):
        with open(os.path.join(repo_root, module)) as f:
            for code in set(re.findall(r'"(DATA_[A-Z_]+)"', f.read())):
                assert f"`{code}`" in errors, (module, code)
    with pytest.raises(ValueError):
        CheckedRows(None, ["user"], ["no_such_reason"], "x")


def test_a_cast_failure_that_reaches_spark_is_a_coded_error(spark):
    from sparkml_tf.io.rows import spark_errors

    ansi = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", "true")  # Spark 4's default; Spark 3.5 casts to null without it
    try:
        with pytest.raises(DataError) as error:
            with spark_errors("data/ratings.csv", "the movielens-csv input"):
                spark.createDataFrame([("five",)], "rating string").selectExpr("CAST(rating AS INT) AS r").collect()
    finally:
        spark.conf.set("spark.sql.ansi.enabled", ansi)
    assert error.value.code == "DATA_PARSE_FAILED" and error.value.path == "data/ratings.csv"
    assert "five" in error.value.message and "CAST_INVALID_INPUT" in error.value.message
    with pytest.raises(ZeroDivisionError):  # anything else passes through
        with spark_errors("x"):
            1 / 0
