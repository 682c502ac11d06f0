"""Item vocabulary: ordering, both on-disk forms, and loading them back."""

import pandas as pd
import pytest

from sparkml_tf.errors import DataError
from sparkml_tf.retrieval.vocab import build_vocab, load_vocab, load_vocab_text, write_vocab


@pytest.mark.spark
def test_ids_by_descending_count_ties_by_item(spark, tmp_path):
    rows = [("u1", "b"), ("u2", "b"), ("u1", "a"), ("u3", "c"), ("u2", "a"), ("u3", "b"), ("u4", "d")]
    vocab = build_vocab(spark.createDataFrame(rows, "user string, item string"))
    assert vocab.to_dict("list") == {"item": ["b", "a", "c", "d"], "id": [0, 1, 2, 3], "count": [3, 2, 1, 1]}


def test_write_and_load_local_and_uri(tmp_path):
    vocab = pd.DataFrame({"item": ["10", "2", "x y"], "id": [0, 1, 2], "count": [5, 4, 4]})
    write_vocab(vocab, str(tmp_path / "vocab"))
    assert (tmp_path / "vocab" / "items.txt").read_text() == "10\n2\nx y\n"
    for where in (str(tmp_path / "vocab"), (tmp_path / "vocab").as_uri()):
        loaded = load_vocab(where)
        assert loaded.to_dict("list") == vocab.to_dict("list")
        assert str(loaded["id"].dtype) == "int64" and str(loaded["count"].dtype) == "int64"
        assert load_vocab_text(where) == ["10", "2", "x y"]


def test_missing_vocab_says_how_to_fix(tmp_path):
    with pytest.raises(DataError) as info:
        load_vocab(str(tmp_path / "nothing"))
    assert info.value.code == "DATA_NOT_FOUND" and "BuildDataset" in info.value.message


def test_line_breaks_in_items_are_refused(tmp_path):
    with pytest.raises(DataError) as info:
        write_vocab(pd.DataFrame({"item": ["a\nb"], "id": [0], "count": [1]}), str(tmp_path))
    assert info.value.code == "DATA_BAD_ROWS"
