"""Readers for the three MovieLens layouts, on tiny files written per test."""

import pytest

from sparkml_tf.errors import DataError
from sparkml_tf.retrieval.movielens import read_ratings

pytestmark = pytest.mark.spark

ROWS = [("1", "31", 2.5, 1260759144), ("1", "1029", 3.0, 1260759179), ("7", "31", 5.0, 851866703)]


def _collect(frame):
    return sorted((r["user"], r["item"], r["rating"], r["timestamp"]) for r in frame.collect())


@pytest.mark.parametrize(
    "format,name,header,sep",
    [
        ("movielens-csv", "ratings.csv", "userId,movieId,rating,timestamp\n", ","),
        ("movielens-dat", "ratings.dat", "", "::"),
        ("movielens-100k", "u.data", "", "\t"),
    ],
)
def test_read_ratings_formats(spark, tmp_path, format, name, header, sep):
    path = tmp_path / name
    path.write_text(header + "".join(sep.join(str(v) for v in row) + "\n" for row in ROWS))
    frame = read_ratings(spark, str(path), format)
    assert frame.dtypes == [("user", "string"), ("item", "string"), ("rating", "double"), ("timestamp", "bigint")]
    assert _collect(frame) == sorted(ROWS)


def test_read_ratings_folder_and_uri(spark, tmp_path):
    folder = tmp_path / "ratings"
    folder.mkdir()
    (folder / "part-0.csv").write_text("userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n")
    (folder / "part-1.csv").write_text("userId,movieId,rating,timestamp\n7,31,5.0,851866703\n")
    assert len(read_ratings(spark, folder.as_uri(), "movielens-csv").collect()) == 2


def test_unknown_format_names_valid_ones(spark, tmp_path):
    with pytest.raises(DataError) as info:
        read_ratings(spark, str(tmp_path), "movielens-xml")
    assert info.value.code == "DATA_UNKNOWN_FORMAT"
    assert "movielens-csv" in info.value.message and "movielens-dat" in info.value.message


def test_wrong_format_is_a_schema_mismatch(spark, tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::31::2.5::1260759144\n")
    with pytest.raises(DataError) as info:
        read_ratings(spark, str(path), "movielens-csv")
    assert info.value.code == "DATA_SCHEMA_MISMATCH"
    assert "dataset.format" in info.value.message


def test_unparsable_values_are_a_schema_mismatch(spark, tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t31\tgood\t1260759144\n")
    with pytest.raises(DataError) as info:
        read_ratings(spark, str(path), "movielens-100k")
    assert info.value.code == "DATA_SCHEMA_MISMATCH"
    assert info.value.path == str(path)
