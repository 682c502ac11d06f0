"""CTR readers on real files: Criteo TSV (bad rows counted), Parquet/CSV with a declared schema."""

import numpy as np
import pandas as pd
import pytest

from sparkml_tf.errors import DataError
from sparkml_tf.ranking.criteo import CRITEO_SCHEMA, check_schema, read_ctr
from sparkml_tf.ranking.features.feature_index import category_strings
from sparkml_tf.ranking.generate import CATEGORICAL_FIELDS, COLUMNS, NUMERIC_FIELDS, generate_ctr, write_criteo_tsv

SCHEMA = {"label": "clicked", "numeric": ["price", "age"], "categorical": ["site", "slot"]}


def user_frame():
    return pd.DataFrame(
        {
            "request_id": ["r1", "r2", "r3", "r4", "r5"],
            "clicked": [1, 0, 0, 2, 1],  # 2 is not a label
            "price": [1.5, None, 3.0, 1.0, 2.0],
            "age": [30, 40, None, 20, 50],
            "site": ["a", "", None, "b", "a"],
            "slot": [5.0, 2.5, None, 1.0, 7.0],  # a float categorical: 5.0 reads as "5"
        }
    )


def sort(frame, by):
    return frame.sort_values(by).reset_index(drop=True)


@pytest.mark.spark
def test_criteo_tsv_counts_bad_rows_and_keeps_the_rest(spark, tmp_path):
    frame = generate_ctr(300, seed=2)
    path = tmp_path / "day_0.tsv"
    write_criteo_tsv(frame, str(path))
    good = path.read_text().split("\n")[0].split("\t")
    bad_lines = [
        "\t".join(good[:39]),  # 39 fields: the unlabelled test layout
        "\t".join(good + ["extra"]),
        "\t".join(["x"] + good[1:]),  # label not a number
        "\t".join(["2"] + good[1:]),  # label not 0/1
        "\t".join(good[:1] + ["abc"] + good[2:]),  # I1 not a number
    ]
    with open(path, "a") as f:
        f.write("\n".join(bad_lines) + "\n")
    rows = read_ctr(spark, str(path), "criteo-tsv", max_bad_fraction=0.02)
    assert rows.counts == {
        "rows.input": 305, "rows.bad_columns": 2, "rows.bad_label": 2, "rows.bad_numeric": 1, "rows.bad_undecodable": 0, "rows.kept": 300,
        "values.long_categories": 0,
    }
    assert rows.schema == CRITEO_SCHEMA
    got = rows.frame.toPandas()
    assert list(got.columns) == list(COLUMNS)
    assert got["label"].dtype == np.int32 and all(got[n].dtype == np.float64 for n in NUMERIC_FIELDS)
    expected = frame.copy()
    got = sort(got, list(COLUMNS[:3]) + ["C3", "C4"])
    expected = sort(expected, list(COLUMNS[:3]) + ["C3", "C4"])
    np.testing.assert_array_equal(got["label"], expected["label"])
    np.testing.assert_array_equal(got[list(NUMERIC_FIELDS)].to_numpy(), expected[list(NUMERIC_FIELDS)].to_numpy())  # NaN == NaN here
    for name in CATEGORICAL_FIELDS:  # empty fields are nulls
        assert got[name].tolist() == expected[name].tolist(), name


@pytest.mark.spark
def test_gzipped_folder_reads_too(spark, tmp_path):
    folder = tmp_path / "criteo"
    write_criteo_tsv(generate_ctr(50, seed=1), str(folder / "part-0.tsv.gz"))
    write_criteo_tsv(generate_ctr(30, seed=2), str(folder / "part-1.tsv.gz"))
    assert read_ctr(spark, str(folder), "criteo-tsv").counts["rows.kept"] == 80


@pytest.mark.spark
def test_wrong_layout_is_a_schema_mismatch(spark, tmp_path):
    path = tmp_path / "test.txt"
    frame = generate_ctr(30, seed=2)
    write_criteo_tsv(frame, str(path))
    path.write_text("\n".join(line.split("\t", 1)[1] for line in path.read_text().splitlines()) + "\n")  # no label
    with pytest.raises(DataError, match="39 fields") as error:
        read_ctr(spark, str(path), "criteo-tsv")
    assert error.value.code == "DATA_SCHEMA_MISMATCH" and error.value.path == str(path)


@pytest.mark.spark
def test_parquet_with_declared_schema(spark, tmp_path):
    path = tmp_path / "events.parquet"
    user_frame().to_parquet(path, index=False)
    rows = read_ctr(spark, str(path), "parquet", SCHEMA, max_bad_fraction=1.0)
    assert rows.counts["rows.bad_label"] == 1 and rows.counts["rows.kept"] == 4
    got = sort(rows.frame.toPandas(), "request_id")
    assert list(got.columns) == ["clicked", "price", "age", "site", "slot", "request_id"]  # names kept, passthrough last
    assert got["request_id"].tolist() == ["r1", "r2", "r3", "r5"]
    assert got["clicked"].tolist() == [1, 0, 0, 1] and got["age"].dtype == np.float64
    assert got["site"].tolist() == ["a", None, None, "a"]  # "" is null
    assert got["slot"].tolist() == ["5", "2.5", None, "7"]
    # The encoder reads the same strings from the original column: same vocabulary offline and online.
    strings, missing = category_strings(user_frame()["slot"])
    assert [None if m else s for s, m in zip(strings, missing)] == ["5", "2.5", None, "1", "7"]


@pytest.mark.spark
def test_csv_with_header_and_bad_numbers(spark, tmp_path):
    path = tmp_path / "events.csv"
    frame = user_frame()
    frame["price"] = ["1.5", "", "abc", "1", " 2 "]
    frame.to_csv(path, index=False)
    strict = read_ctr(spark, str(path), "csv", SCHEMA, max_bad_fraction=1.0)
    assert (strict.counts["rows.bad_label"], strict.counts["rows.bad_numeric"], strict.counts["rows.kept"]) == (1, 2, 2)  # " 2 " is bad too
    rows = read_ctr(spark, str(path), "csv", SCHEMA, max_bad_fraction=1.0, lenient=True)
    assert rows.counts == {
        "rows.input": 5, "rows.bad_columns": 0, "rows.bad_label": 1, "rows.bad_numeric": 1, "rows.bad_undecodable": 0, "rows.kept": 3,
        "values.long_categories": 0,
    }
    got = sort(rows.frame.toPandas(), "request_id")
    assert got["request_id"].tolist() == ["r1", "r2", "r5"]
    assert got["price"].tolist()[0] == 1.5 and np.isnan(got["price"][1]) and got["price"].tolist()[2] == 2.0


@pytest.mark.spark
def test_missing_schema_column_names_the_path(spark, tmp_path):
    path = tmp_path / "events.parquet"
    user_frame().drop(columns=["slot"]).to_parquet(path, index=False)
    with pytest.raises(DataError, match="slot") as error:
        read_ctr(spark, str(path), "parquet", SCHEMA)
    assert error.value.code == "DATA_SCHEMA_MISMATCH" and error.value.path == str(path)


@pytest.mark.spark
def test_generated(spark):
    rows = read_ctr(spark, "", "generated", generator={"num_rows": 120}, seed=4)
    assert rows.counts["rows.kept"] == 120 and rows.frame.columns == list(COLUMNS)
    expected = generate_ctr(120, seed=4)
    assert rows.frame.toPandas()["C1"].tolist() == expected["C1"].tolist()


def test_schema_checks():
    assert check_schema("criteo-tsv") == CRITEO_SCHEMA == check_schema("generated", CRITEO_SCHEMA)
    assert check_schema("csv", SCHEMA) == SCHEMA
    with pytest.raises(DataError) as unknown:
        check_schema("libsvm")
    assert unknown.value.code == "DATA_UNKNOWN_FORMAT"
    for format, schema in [
        ("parquet", None),
        ("criteo-tsv", SCHEMA),
        ("csv", {"label": "y", "numeric": ["a"], "categorical": ["a"]}),
        ("csv", {"label": "y", "numeric": [], "categorical": []}),
        ("csv", {"label": "y", "numeric": "a"}),
        ("csv", {"label": "y", "numeric": ["a"], "dense": ["b"]}),
    ]:
        with pytest.raises(ValueError):
            check_schema(format, schema)
