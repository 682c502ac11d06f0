"""Criteo TSV rows, fuzzed: every bad kind anywhere in a generated file; strict label and integer
parsing (and the lenient flag); the quarantine; category values over the length limit shortened
and counted, the same way offline (Spark) and online (the Encoder)."""

import hashlib
import random

import numpy as np
import pytest

from sparkml_tf.errors import ConfigError, DataError
from sparkml_tf.ranking.criteo import read_ctr
from sparkml_tf.ranking.generate import CATEGORICAL_FIELDS, COLUMNS, NUMERIC_FIELDS, generate_ctr, write_criteo_tsv

pytestmark = pytest.mark.spark


def _with(fields, position, value):
    out = list(fields)
    out[position] = value
    return out


def bad_lines(good):
    """(reason, strict reason or None when lenient takes it, fields as bytes) from a good line's fields."""
    i1 = 1 + NUMERIC_FIELDS.index("I1")
    return [
        ("wrong_column_count", "wrong_column_count", good[:39]),
        ("wrong_column_count", "wrong_column_count", good + [b"extra"]),
        ("bad_label", "bad_label", _with(good, 0, b"x")),
        ("bad_label", "bad_label", _with(good, 0, b"2")),
        ("bad_label", "bad_label", _with(good, 0, b"")),
        ("bad_label", None, _with(good, 0, b"1.0")),
        ("bad_label", None, _with(good, 0, b" 1")),
        ("bad_numeric", "bad_numeric", _with(good, i1, b"abc")),
        ("bad_numeric", "bad_numeric", _with(good, i1, b"inf")),
        ("bad_numeric", None, _with(good, i1, b"1.5")),
        ("bad_numeric", None, _with(good, i1, b"1e300")),
        ("bad_numeric", None, _with(good, i1, b" 3 ")),
        ("bad_numeric", None, _with(good, i1, b"99999999999999999999")),  # over 64 bits: a finite double when lenient
        ("undecodable", "undecodable", _with(good, 20, b"ab\xff")),
    ]


@pytest.fixture(scope="module")
def criteo_file(tmp_path_factory):
    frame = generate_ctr(200, seed=3)
    path = tmp_path_factory.mktemp("criteo") / "day_0.tsv"
    write_criteo_tsv(frame, str(path))
    lines = path.read_bytes().rstrip(b"\n").split(b"\n")
    rng = random.Random(5)
    tagged = [(None, None, line) for line in lines]
    for reason, lenient, fields in bad_lines(lines[0].split(b"\t")):
        tagged.insert(rng.randrange(2, len(tagged) + 1), (reason, lenient, b"\t".join(fields)))
    path.write_bytes(b"\n".join(line for _, _, line in tagged) + b"\n")
    strict = {n + 1: reason for n, (reason, _, _) in enumerate(tagged) if reason}
    lenient = {n + 1: reason for n, (_, reason, _) in enumerate(tagged) if reason}
    return frame, path, strict, lenient


def test_strict_rows_are_counted_quarantined_and_kept_out(spark, criteo_file):
    frame, path, strict, _ = criteo_file
    rows = read_ctr(spark, str(path), "criteo-tsv", max_bad_fraction=1.0)
    per_reason = {}
    for reason in strict.values():
        per_reason[reason] = per_reason.get(reason, 0) + 1
    assert {k: v for k, v in rows.summary.bad.items() if v} == per_reason
    assert rows.counts["rows.bad_columns"] == 2 and rows.counts["rows.bad_label"] == 5 and rows.counts["rows.bad_numeric"] == 6
    assert rows.counts["rows.bad_undecodable"] == 1 and rows.counts["rows.kept"] == 200 == rows.summary.good
    assert rows.counts["rows.input"] == 200 + len(strict)
    quarantine = rows.checked.quarantine().collect()
    lines = path.read_bytes().split(b"\n")
    assert {int(r["line"]): r["reason"] for r in quarantine} == strict
    assert all(r["raw_bytes"] == lines[r["line"] - 1] and r["source_file"].endswith("day_0.tsv") for r in quarantine)
    got = rows.frame.toPandas().sort_values(list(COLUMNS[:3]) + ["C3", "C4"]).reset_index(drop=True)
    expected = frame.sort_values(list(COLUMNS[:3]) + ["C3", "C4"]).reset_index(drop=True)
    np.testing.assert_array_equal(got["label"], expected["label"])  # exactly the good rows, none of the bad
    np.testing.assert_array_equal(got[list(NUMERIC_FIELDS)].to_numpy(), expected[list(NUMERIC_FIELDS)].to_numpy())


def test_lenient_takes_what_parses_as_a_number(spark, criteo_file):
    _, path, strict, lenient = criteo_file
    rows = read_ctr(spark, str(path), "criteo-tsv", max_bad_fraction=1.0, lenient=True)
    assert {int(r["line"]): r["reason"] for r in rows.checked.quarantine().collect()} == lenient
    assert rows.counts["rows.kept"] == 200 + len(strict) - len(lenient)
    taken = rows.frame.where("I1 IN (1.5, 1e300, 3, 1e20)").count()
    assert taken >= 4 and rows.frame.where("label NOT IN (0, 1)").count() == 0


def test_the_budget_names_the_file_and_the_reasons(spark, criteo_file):
    _, path, strict, _ = criteo_file
    with pytest.raises(DataError) as error:
        read_ctr(spark, str(path), "criteo-tsv")  # 14 of 214 rows: over the default 1%
    assert error.value.code == "DATA_TOO_MANY_BAD_ROWS" and error.value.path == str(path)
    assert "bad_numeric 6" in error.value.message and "day_0.tsv" in error.value.message


def test_long_category_values_are_shortened_and_counted(spark, tmp_path):
    from sparkml_tf.ranking.features.build import build_feature_index
    from sparkml_tf.ranking.features.feature_index import Encoder
    from sparkml_tf.ranking.features.kinds import shorten_category

    frame = generate_ctr(60, seed=4)
    huge = "v" * 200_000  # a 200 KB value, seen in 5 rows: frequent enough for the vocabulary
    frame.loc[:4, "C7"] = huge
    path = tmp_path / "long.tsv"
    write_criteo_tsv(frame, str(path))
    hashed = "#sha256:" + hashlib.sha256(huge.encode()).hexdigest()[:32]
    assert shorten_category(huge, 256, "hash") == hashed and shorten_category("short", 256, "hash") == "short"
    for policy, expected in (("hash", hashed), ("truncate", huge[:256])):
        rows = read_ctr(spark, str(path), "criteo-tsv", long_categories=policy)
        assert rows.counts["values.long_categories"] == 5 and rows.summary.bad == {r: 0 for r in rows.summary.bad}
        assert rows.frame.where(f"C7 = '{expected}'").count() == 5
        index = build_feature_index(rows.frame, NUMERIC_FIELDS, CATEGORICAL_FIELDS, min_count=2, max_category_length=256, long_categories=policy)
        vocab = next(f for f in index.fields if f["name"] == "C7")["vocab"]
        assert expected in vocab and max(len(v) for f in index.fields if f["kind"] == "categorical" for v in f["vocab"]) <= 256
        assert huge not in index.to_json()
        # online, the encoder shortens the raw value the same way (general and fast path)
        encoder = Encoder(index)
        row = {name: None for name in NUMERIC_FIELDS + CATEGORICAL_FIELDS}
        row["C7"] = huge
        want = 1 + vocab.index(expected)
        assert encoder.encode_rows([row])["deep_ids"][0, index.field_names.index("C7")] - index.deep_offsets[index.field_names.index("C7")] == want
        columns = {name: [row[name]] for name in row}
        assert encoder.encode(columns)["deep_ids"][0, index.field_names.index("C7")] - index.deep_offsets[index.field_names.index("C7")] == want


def test_quality_settings_are_checked():
    from sparkml_tf.ranking.jobs.dataset import BuildCtrDataset

    for kwargs, key in (({"max_bad_fraction": -0.1}, "max_bad_fraction"), ({"max_category_length": 0}, "max_category_length"),
                        ({"long_categories": "drop"}, "long_categories"), ({"lenient": "yes"}, "lenient")):
        with pytest.raises(ConfigError) as error:
            BuildCtrDataset("out", **kwargs)
        assert (error.value.code, error.value.path) == ("CONFIG_BAD_VALUE", key)
