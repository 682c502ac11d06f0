"""build_feature_index on a small Spark DataFrame: vocabularies, boundaries, crosses."""

import pytest

from sparkml_tf.ranking.features.build import build_feature_index, check_settings
from sparkml_tf.ranking.features.feature_index import Encoder


@pytest.fixture(scope="module")
def frame(spark):
    site = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] + [None, ""] * 2  # 16 rows
    price = [float(v) for v in range(1, 13)] + [None] * 4
    zeros = [0.0] * 12 + [5.0, 6.0, None, None]
    empty = [None] * 16
    rows = list(zip(site, price, zeros, empty, [str(i % 2) for i in range(16)]))
    return spark.createDataFrame(rows, "site string, price double, zeros double, empty double, slot string")


@pytest.mark.spark
def test_vocabularies_boundaries_and_crosses(frame):
    index = build_feature_index(
        frame,
        ["price", "zeros", "empty"],
        ["site", "slot"],
        min_count=3,
        num_buckets=4,
        crosses=[["site", "slot"], {"fields": ["site", "price"], "buckets": 9}],
        cross_buckets=50,
    )
    assert index.field_names == ["price", "zeros", "empty", "site", "slot"]
    fields = {f["name"]: f for f in index.fields}
    # >= min_count, most frequent first, ties by value; null and "" never in a vocabulary
    assert fields["site"]["vocab"] == ["a", "b", "c"]
    assert fields["slot"]["vocab"] == ["0", "1"]
    assert fields["price"]["boundaries"] == [3.0, 6.0, 9.0]  # quartiles of 1..12, nulls ignored
    assert fields["zeros"]["boundaries"] == [0.0]  # repeated quantiles collapse
    assert fields["empty"]["boundaries"] == []
    assert index.crosses == [
        {"name": "site_x_slot", "fields": ["site", "slot"], "buckets": 50},
        {"name": "site_x_price", "fields": ["site", "price"], "buckets": 9},
    ]
    encoded = Encoder(index).encode_rows([{"site": "d", "price": 3.0, "slot": "1"}])
    local = encoded["deep_ids"][0] - index.deep_offsets
    # price 3.0 is in [3, 6): bucket 1, local id 2; "d" is below min_count: out of vocabulary
    assert local.tolist() == [2, 0, 0, 0, 2]


@pytest.mark.spark
def test_max_vocab_size_and_single_bucket(frame):
    index = build_feature_index(frame, ["price"], ["site"], min_count=1, num_buckets=1, max_vocab_size=2)
    assert index.fields[1]["vocab"] == ["a", "b"] and index.fields[0]["boundaries"] == []


@pytest.mark.spark
def test_cross_of_an_unknown_field_is_refused(frame):
    with pytest.raises(ValueError, match="unknown field"):
        build_feature_index(frame, ["price"], ["site"], crosses=[["site", "slot"]])


@pytest.mark.parametrize("kwargs", [{"min_count": 0}, {"num_buckets": 0}, {"cross_buckets": 1.5}, {"max_vocab_size": 0}, {"relative_error": 1.0}])
def test_settings_are_checked(kwargs):
    settings = {"min_count": 1, "num_buckets": 2, "cross_buckets": 10, **kwargs}
    with pytest.raises(ValueError):
        check_settings(**settings)
