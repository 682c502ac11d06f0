"""FeatureIndex layout and serialisation; Encoder ids, crosses, missing/OOV and malformed values."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sparkml_tf.errors import DataError
from sparkml_tf.ranking.features.feature_index import Encoder, FeatureIndex, cross_mix, normalize_crosses, validate_columns

FIELDS = [
    {"name": "I1", "kind": "numeric", "boundaries": [0.0, 1.0, 10.0]},
    {"name": "C1", "kind": "categorical", "vocab": ["a", "5", "b"]},
    {"name": "C2", "kind": "categorical", "vocab": ["x"]},
]
CROSSES = [{"name": "C1_x_C2", "fields": ["C1", "C2"], "buckets": 7}]
MASK = (1 << 64) - 1


def reference_mix(ids):
    """splitmix64 chain in plain Python integers: what cross_mix must compute."""
    h = 0
    for x in ids:
        z = h ^ ((int(x) + 0x9E3779B97F4A7C15) & MASK)
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        h = z ^ (z >> 31)
    return h


@pytest.fixture()
def index():
    return FeatureIndex(FIELDS, CROSSES)


def test_layout(index):
    assert index.field_names == ["I1", "C1", "C2"] and index.numeric_fields == ["I1"] and index.categorical_fields == ["C1", "C2"]
    assert index.deep_sizes == [5, 4, 2] and index.wide_sizes == [5, 4, 2, 7]
    assert index.deep_offsets == [0, 5, 9] and index.wide_offsets == [0, 5, 9, 11]
    assert (index.deep_size, index.wide_size, index.num_deep, index.num_wide, index.num_dense) == (11, 18, 3, 4, 1)
    assert index.sizes() == {"deep_size": 11, "wide_size": 18, "num_deep": 3, "num_wide": 4, "num_dense": 1}
    assert index.wide_names == ["I1", "C1", "C2", "C1_x_C2"]


def test_version_is_content_hash(index):
    assert len(index.version) == 12 and index.version == FeatureIndex(json.loads(json.dumps(FIELDS)), CROSSES).version
    changed = [dict(FIELDS[0]), FIELDS[1], {**FIELDS[2], "vocab": ["x", "y"]}]
    assert FeatureIndex(changed, CROSSES).version != index.version
    assert FeatureIndex(FIELDS, [{**CROSSES[0], "buckets": 8}]).version != index.version


def test_save_load_round_trip(index, tmp_path):
    path = index.save(str(tmp_path / "fi"))
    assert path.endswith("fi/feature_index.json")
    data = json.loads((tmp_path / "fi" / "feature_index.json").read_text())
    assert data["version"] == index.version and data["fields"] == FIELDS and data["crosses"] == CROSSES
    assert FeatureIndex.load(str(tmp_path / "fi")) == index == FeatureIndex.load(path)
    assert FeatureIndex.from_dict(index.to_dict()).to_dict() == index.to_dict()


def test_load_errors(index, tmp_path):
    with pytest.raises(DataError) as missing:
        FeatureIndex.load(str(tmp_path / "nothing"))
    assert missing.value.code == "DATA_NOT_FOUND" and missing.value.path.endswith("feature_index.json")
    data = index.to_dict()
    data["fields"][1]["vocab"].append("c")  # edited by hand: the stored version no longer matches
    (tmp_path / "feature_index.json").write_text(json.dumps(data))
    with pytest.raises(DataError) as edited:
        FeatureIndex.load(str(tmp_path))
    assert edited.value.code == "DATA_FEATURE_INDEX_INVALID" and edited.value.path == str(tmp_path / "feature_index.json")


@pytest.mark.parametrize(
    "fields, crosses, fragment",
    [
        ([FIELDS[1], FIELDS[1]], [], "unique"),
        ([{"name": "I1", "kind": "numeric", "boundaries": [2.0, 1.0]}], [], "increasing"),
        ([{"name": "C", "kind": "text", "vocab": []}], [], "kind"),
        ([{"name": "C", "kind": "categorical", "vocab": ["a", "a"]}], [], "repeats"),
        (FIELDS, [{"fields": ["C1", "C9"], "buckets": 3}], "unknown field"),
        (FIELDS, [{"fields": ["C1", "C2"]}], "buckets"),
    ],
)
def test_invalid_index(fields, crosses, fragment):
    with pytest.raises(DataError, match=fragment) as error:
        FeatureIndex(fields, crosses)
    assert error.value.code == "DATA_FEATURE_INDEX_INVALID"


def test_normalize_crosses_forms():
    crosses = normalize_crosses([["C1", "C2"], {"fields": ["C1", "I1", "C2"], "buckets": 5}], 100, ["I1", "C1", "C2"])
    assert crosses == [
        {"name": "C1_x_C2", "fields": ["C1", "C2"], "buckets": 100},
        {"name": "C1_x_I1_x_C2", "fields": ["C1", "I1", "C2"], "buckets": 5},
    ]
    for bad in (["C1"], [["C1"]], [["C1", "C1"]], [{"fields": ["C1", "C2"], "buckets": 0}], [{"fields": ["C1", "C2"], "size": 3}]):
        with pytest.raises(ValueError):
            normalize_crosses(bad, 10, ["C1", "C2"])


def test_encode_ids(index):
    columns = {
        "I1": [0.5, None, "3", " ", 100, -1, 1.0],
        "C1": ["a", 5, None, "", "zz", 5.0, float("nan")],
        "C2": ["x", "x", "y", None, "x", "x", "x"],
    }
    out = Encoder(index).encode(columns)
    # numeric: 0 = missing, else 1 + searchsorted(side="right"); offset 0
    assert out["deep_ids"][:, 0].tolist() == [2, 0, 3, 0, 4, 1, 3]
    # categorical: 0 = missing/OOV, vocab[i] -> i + 1; 5, 5.0 and "5" are the same value
    assert (out["deep_ids"][:, 1] - 5).tolist() == [1, 2, 0, 0, 0, 2, 0]
    assert (out["deep_ids"][:, 2] - 9).tolist() == [1, 1, 0, 0, 1, 1, 1]
    expected_dense = [np.log1p(0.5), 0.0, np.log1p(3.0), 0.0, np.log1p(100.0), 0.0, np.log1p(1.0)]
    np.testing.assert_allclose(out["dense"][:, 0], expected_dense, rtol=1e-6)
    assert out["deep_ids"].dtype == np.int64 and out["wide_ids"].dtype == np.int64 and out["dense"].dtype == np.float32
    assert out["deep_ids"].shape == (7, 3) and out["wide_ids"].shape == (7, 4) and out["dense"].shape == (7, 1)
    np.testing.assert_array_equal(out["wide_ids"][:, :3], out["deep_ids"])
    local = out["deep_ids"] - np.array(index.deep_offsets)
    crosses = [reference_mix([int(c1), int(c2)]) % 7 for c1, c2 in local[:, 1:3]]
    assert (out["wide_ids"][:, 3] - 11).tolist() == crosses
    assert out["wide_ids"].max() < index.wide_size and out["deep_ids"].max() < index.deep_size


def test_cross_mix_is_fixed():
    # Pinned values: a change here changes every cross id of every trained model.
    ids = [np.array([0, 1, 2, 3**20]), np.array([0, 7, 2, 5])]
    assert cross_mix(ids).tolist() == [reference_mix([a, b]) for a, b in zip(*ids)]
    assert cross_mix([np.array([0]), np.array([0])])[0] == reference_mix([0, 0]) == 0x0397AB29740681D9


def test_encode_rows_matches_encode_on_typed_columns(index):
    frame = pd.DataFrame({"I1": [0.5, np.nan, 3.0, 12.0], "C1": ["a", None, "b", "5"], "C2": ["x", "x", None, "q"]})
    rows = [{"I1": 0.5, "C1": "a", "C2": "x"}, {"C1": None, "C2": "x"}, {"I1": 3, "C1": "b"}, {"I1": "12", "C1": 5, "C2": "q"}]
    by_column = Encoder(index).encode({k: frame[k] for k in frame})
    by_row = Encoder(index).encode_rows(rows)
    arrow = Encoder(index.to_dict()).encode({k: pa.array(frame[k]) for k in frame})
    for name in ("deep_ids", "wide_ids", "dense"):
        np.testing.assert_array_equal(by_column[name], by_row[name])
        np.testing.assert_array_equal(by_column[name], arrow[name])


def test_series_index_is_ignored(index):
    frame = pd.DataFrame({"I1": [1.0, 20.0], "C1": ["a", "b"], "C2": ["x", None]}, index=[7, 3])
    assert Encoder(index).encode(frame)["deep_ids"].tolist() == Encoder(index).encode({k: list(frame[k]) for k in frame})["deep_ids"].tolist()


def test_malformed_numeric_raises_and_validate_reports(index):
    columns = {"I1": ["1", "abc", None, "inf", "2.5"], "C1": ["a"] * 5, "C2": ["x"] * 5}
    with pytest.raises(DataError, match="abc") as error:
        Encoder(index).encode(columns)
    assert error.value.code == "DATA_BAD_ROWS" and error.value.path == "I1"
    ok, reasons = validate_columns(index, columns)
    assert ok.tolist() == [True, False, True, False, True]
    assert reasons == [None, "I1: not a number: 'abc'", None, "I1: not a number: 'inf'", None]
    assert validate_columns(Encoder(index), columns)[0].tolist() == ok.tolist()
    good = {k: [v for v, keep in zip(col, ok) if keep] for k, col in columns.items()}
    assert Encoder(index).encode(good)["deep_ids"].shape == (3, 3)


def test_missing_column_and_ragged_columns(index):
    with pytest.raises(DataError, match="C2") as missing:
        Encoder(index).encode({"I1": [1.0], "C1": ["a"]})
    assert missing.value.code == "DATA_SCHEMA_MISMATCH"
    with pytest.raises(DataError) as ragged:
        Encoder(index).encode({"I1": [1.0], "C1": ["a", "b"], "C2": ["x"]})
    assert ragged.value.code == "DATA_SCHEMA_MISMATCH"


def test_empty_batch_and_no_numeric_fields():
    index = FeatureIndex([FIELDS[1], FIELDS[2]], CROSSES)
    out = Encoder(index).encode({"C1": [], "C2": []})
    assert out["deep_ids"].shape == (0, 2) and out["wide_ids"].shape == (0, 3) and out["dense"].shape == (0, 0)
    assert Encoder(index).encode_rows([{"C1": "b"}])["dense"].shape == (1, 0)


def test_category_strings_follow_spark_casts():
    from sparkml_tf.ranking.features.feature_index import category_strings

    strings, missing = category_strings([True, False, 7, 7.0, 2.5, "", None, b"ab"])
    assert [None if m else s for s, m in zip(strings, missing)] == ["true", "false", "7", "7", "2.5", None, None, "ab"]
    strings, _ = category_strings(pd.Series([True, False]))
    assert strings.tolist() == ["true", "false"]
