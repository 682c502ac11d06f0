"""The Criteo-like generator: layout, determinism, a learnable label with crosses, candidates, TSV."""

import gzip
import time

import numpy as np
import pytest

from sparkml_tf.ranking.features.feature_index import FeatureIndex, validate_columns
from sparkml_tf.ranking.generate import (
    CATEGORICAL_FIELDS,
    COLUMNS,
    CONTEXT_FIELDS,
    HIDDEN_CROSSES,
    MALFORMED_VALUES,
    NUMERIC_FIELDS,
    CtrWorld,
    generate_candidates,
    generate_ctr,
    write_criteo_tsv,
)


def auc(labels, scores):
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positives = labels.astype(bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return (ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


@pytest.fixture(scope="module")
def rows():
    return generate_ctr(20_000, seed=3, with_probability=True)


def test_layout(rows):
    assert list(rows.columns) == list(COLUMNS) + ["probability"]
    assert set(rows["label"].unique()) == {0, 1}
    numeric = rows[list(NUMERIC_FIELDS)]
    assert all(numeric.dtypes == np.float64)
    values = numeric.to_numpy()[~np.isnan(numeric.to_numpy())]
    assert (values >= 0).all() and (values == np.round(values)).all()  # counts
    assert 0.6 < rows["I12"].isna().mean() < 0.9 and rows["I2"].isna().mean() == 0.0
    assert np.quantile(rows["I5"].dropna(), 0.99) > 5 * rows["I5"].median()  # heavy tail
    strings = rows["C1"].dropna()
    assert strings.str.fullmatch(r"[0-9a-f]{8}").all()
    assert 0.3 < rows["C22"].isna().mean() < 0.9 and rows["C1"].isna().mean() == 0.0


def test_cardinalities_and_zipf(rows):
    world = CtrWorld(seed=3)
    assert min(world.cardinalities) == 2 and max(world.cardinalities) == 5000
    distinct = rows[list(CATEGORICAL_FIELDS)].nunique()
    assert (distinct <= 10).sum() >= 4 and (distinct >= 1000).sum() >= 3
    counts = rows["C10"].value_counts().to_numpy()
    assert counts[0] > 20 * counts[min(len(counts) - 1, 100)]  # power-law frequencies


def test_seeded(rows):
    again = generate_ctr(20_000, seed=3, with_probability=True)
    assert again.equals(rows)
    other = generate_ctr(2_000, seed=4)
    assert not other["C1"].head(50).equals(rows["C1"].head(50))
    assert set(other["C1"].dropna()) & set(rows["C1"].dropna()) == set()  # another world, other values


def test_label_is_learnable_and_needs_the_crosses(rows):
    assert 0.2 <= rows["label"].mean() <= 0.3
    labels = rows["label"].to_numpy()
    assert auc(labels, rows["probability"].to_numpy()) > 0.8
    # The same rows under the same world without its interactions: the hidden model's own scores
    # lose much of their power on these labels, so the crosses carry real signal.
    no_cross = generate_ctr(20_000, seed=3, cross_strength=0.0, with_probability=True)
    assert no_cross[list(CATEGORICAL_FIELDS)].equals(rows[list(CATEGORICAL_FIELDS)])
    assert auc(labels, no_cross["probability"].to_numpy()) < auc(labels, rows["probability"].to_numpy()) - 0.05
    table = CtrWorld(seed=3).cross_effects[HIDDEN_CROSSES[0]]
    assert np.std(table[0] - table[1]) > 0.5  # the effect of one field's value depends on the other's


def test_base_ctr_is_calibrated():
    frame = generate_ctr(20_000, seed=1, base_ctr=0.1)
    assert 0.08 < frame["label"].mean() < 0.12


def test_fast_enough_for_100k_rows():
    start = time.perf_counter()
    frame = generate_ctr(100_000, seed=0)
    assert len(frame) == 100_000 and time.perf_counter() - start < 20


def test_candidates():
    frame = generate_candidates(["2024-03-01", "2024-03-02"], requests_per_date=5, ads_per_request=20, num_ads=50, seed=3, with_probability=True)
    assert len(frame) == 2 * 5 * 20
    assert list(frame.columns[:3]) == ["date", "request_id", "ad_id"] and "label" not in frame.columns
    assert frame.groupby("date")["request_id"].nunique().tolist() == [5, 5]
    assert (frame.groupby("request_id")["ad_id"].nunique() == 20).all()  # no ad twice in a request
    for name in CONTEXT_FIELDS:  # request features are shared by the request's candidates
        assert (frame.groupby("request_id")[name].nunique(dropna=False) == 1).all(), name
    ad_fields = [n for n in COLUMNS[1:] if n not in CONTEXT_FIELDS]
    assert (frame.groupby("ad_id")[ad_fields].nunique(dropna=False) == 1).all().all()  # an ad keeps its features
    assert frame["probability"].between(0, 1).all() and frame["probability"].std() > 0.05
    same = generate_candidates(["2024-03-02"], requests_per_date=5, ads_per_request=20, num_ads=50, seed=3)
    assert (
        same.drop(columns="date")
        .reset_index(drop=True)
        .equals(frame[frame["date"] == "2024-03-02"].drop(columns=["date", "probability"]).reset_index(drop=True))
    )
    # Candidates share the training world: their categorical values are the training values.
    assert set(frame["C10"].dropna()) <= set(CtrWorld(seed=3).vocab["C10"])


def test_malformed_candidates_are_caught_by_validate_columns():
    frame = generate_candidates(["2024-03-01"], requests_per_date=20, ads_per_request=50, num_ads=100, malformed_fraction=0.05, seed=0)
    index = FeatureIndex([{"name": n, "kind": "numeric", "boundaries": [1.0]} for n in NUMERIC_FIELDS])
    ok, reasons = validate_columns(index, {n: frame[n] for n in NUMERIC_FIELDS})
    assert 20 <= (~ok).sum() <= 90
    bad = [r for r in reasons if r]
    assert all(any(repr(v) in r for v in MALFORMED_VALUES) for r in bad)
    assert frame.loc[ok, "I2"].map(lambda v: v is None or v.isdigit()).all()  # numbers written as integers


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dates": ["2024-3-1"]},
        {"dates": ["yesterday"]},
        {"dates": ["2024-03-01"], "ads_per_request": 11, "num_ads": 10},
        {"dates": ["2024-03-01"], "malformed_fraction": 1.0},
    ],
)
def test_candidate_arguments_are_checked(kwargs):
    with pytest.raises(ValueError):
        generate_candidates(**kwargs)


@pytest.mark.parametrize("name", ["rows.tsv", "rows.tsv.gz"])
def test_write_criteo_tsv(tmp_path, name):
    frame = generate_ctr(200, seed=5)
    path = tmp_path / "sub" / name
    assert write_criteo_tsv(frame, str(path)) == 200
    text = gzip.open(path, "rt").read() if name.endswith(".gz") else path.read_text()
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 201
    first = lines[0].split("\t")
    assert len(first) == 40 and first[0] == str(frame["label"][0])
    for j, name in enumerate(NUMERIC_FIELDS, 1):
        value = frame[name][0]
        assert first[j] == ("" if np.isnan(value) else str(int(value)))
    for j, name in enumerate(CATEGORICAL_FIELDS, 14):
        assert first[j] == (frame[name][0] or "")
