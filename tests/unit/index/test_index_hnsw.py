import json
import os

import numpy as np
import pytest

from sparkml_tf.errors import DataError
from sparkml_tf.index.hnsw import HnswIndex, exact_search, overlap_recall


def _items(n=300, d=8, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    biases = rng.normal(scale=3.0, size=n).astype(np.float32)  # large: ranking differs without it
    ids = np.arange(n, dtype=np.int64)[::-1].copy() + 1000  # ids differ from row numbers
    return ids, vectors, biases


def test_bias_folding_ranks_by_dot_plus_bias():
    ids, vectors, biases = _items()
    queries = np.random.default_rng(1).normal(size=(20, 8)).astype(np.float32)
    index = HnswIndex.build(vectors, biases, ids=ids, M=16, ef_construction=200, ef=300)
    found, scores = index.query(queries, 10)
    truth, truth_scores = exact_search(vectors, biases, queries, 10, ids=ids)
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores, truth_scores, rtol=1e-4, atol=1e-4)
    # Scores are the model's: u·v + b of the returned ids.
    rows = {int(i): r for r, i in enumerate(ids)}
    first = np.array([rows[int(i)] for i in found[0]])
    np.testing.assert_allclose(scores[0], vectors[first] @ queries[0] + biases[first], rtol=1e-4, atol=1e-4)
    # Without the bias the top list would differ: the test would catch a dropped bias.
    no_bias, _ = exact_search(vectors, None, queries, 10, ids=ids)
    assert overlap_recall(no_bias, truth) < 0.9


@pytest.mark.parametrize("augment", [True, False])
def test_scores_are_exact_with_or_without_norm_augmentation(augment):
    ids, vectors, biases = _items(n=100)
    queries = np.random.default_rng(4).normal(size=(3, 8)).astype(np.float32)
    found, scores = HnswIndex.build(vectors, biases, ids=ids, augment=augment, ef=200).query(queries, 100)
    truth, truth_scores = exact_search(vectors, biases, queries, 100, ids=ids)
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores, truth_scores, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("space", ["l2", "cosine"])
def test_augmented_l2_and_cosine_spaces_give_exact_scores_and_round_trip(space, tmp_path):
    ids, vectors, biases = _items(n=100)
    queries = np.random.default_rng(5).normal(size=(3, 8)).astype(np.float32)
    index = HnswIndex.build(vectors, biases, ids=ids, augment=True, space=space, ef=200)
    found, scores = index.query(queries, 100)
    truth, truth_scores = exact_search(vectors, biases, queries, 100, ids=ids)
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores, truth_scores, rtol=1e-4, atol=1e-3)
    index.save(str(tmp_path / space))
    loaded = HnswIndex.load(str(tmp_path / space))
    assert loaded.params["space"] == space
    np.testing.assert_allclose(loaded.query(queries, 100)[1], scores)


def test_l2_space_needs_augmentation():
    _, vectors, biases = _items(n=20)
    with pytest.raises(ValueError):
        HnswIndex.build(vectors, biases, augment=False, space="l2")


def test_save_load_round_trip(tmp_path):
    ids, vectors, biases = _items()
    items = np.array([f"item-{i}" for i in ids], dtype=object)
    index = HnswIndex.build(vectors, biases, ids=ids, items=items, M=8, ef_construction=100, ef=50)
    index.save(str(tmp_path / "idx"))
    assert sorted(os.listdir(tmp_path / "idx")) == ["ids.parquet", "index.bin", "params.json"]
    params = json.loads((tmp_path / "idx" / "params.json").read_text())
    assert params == {"M": 8, "ef_construction": 100, "ef": 50, "dim": 8, "count": 300, "space": "ip", "fold_bias": True, "augment": True}
    loaded = HnswIndex.load(str(tmp_path / "idx"))
    queries = np.random.default_rng(2).normal(size=(5, 8)).astype(np.float32)
    a, sa = index.query(queries, 7)
    b, sb = loaded.query(queries, 7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(sa, sb)
    assert loaded.items.tolist() == items.tolist() and loaded.ids.tolist() == ids.tolist()


def test_remote_uri_round_trip(tmp_path):
    ids, vectors, biases = _items(n=50)
    HnswIndex.build(vectors, biases, ids=ids).save(f"file://{tmp_path}/remote")
    loaded = HnswIndex.load(f"file://{tmp_path}/remote")
    assert loaded.params["count"] == 50


def test_errors_have_codes(tmp_path):
    with pytest.raises(DataError) as e:
        HnswIndex.load(str(tmp_path / "nothing"))
    assert e.value.code == "DATA_NOT_FOUND"
    index = HnswIndex.build(*_items(n=20)[1:])
    with pytest.raises(DataError) as e:
        index.query(np.zeros((1, 3), np.float32), 5)
    assert e.value.code == "DATA_SCHEMA_MISMATCH"


def test_k_larger_than_count_is_clamped():
    _, vectors, biases = _items(n=15)
    found, _ = HnswIndex.build(vectors, biases).query(vectors[:2], 100)
    assert found.shape == (2, 15)


def test_a_given_norm_bound_augments_every_item_to_it_and_keeps_the_scores():
    """A shard augments to the whole catalogue's largest norm (norm2), never below its own largest;
    inner products with queries, and so the scores and lists, are unchanged."""
    from sparkml_tf.index.hnsw import augment_norms, fold

    ids, vectors, biases = _items()
    data = fold(vectors, biases)
    largest = float(np.max(np.einsum("ij,ij->i", data, data, dtype=np.float64)))
    for bound, expected in ((None, largest), (4 * largest, 4 * largest), (largest / 2, largest)):
        augmented = augment_norms(data, bound)
        np.testing.assert_allclose(np.einsum("ij,ij->i", augmented, augmented, dtype=np.float64), expected, rtol=1e-5)
        np.testing.assert_array_equal(augmented[:, :-1], data)
    queries = np.random.default_rng(2).normal(size=(20, 8)).astype(np.float32)
    index = HnswIndex.build(vectors, biases, ids=ids, M=16, ef_construction=200, ef=300, norm2=4 * largest)
    stored = index.index.get_items([0], return_type="numpy")
    assert float(np.sum(np.asarray(stored, np.float64) ** 2)) == pytest.approx(4 * largest, rel=1e-5)
    found, scores = index.query(queries, 10)
    truth, truth_scores = exact_search(vectors, biases, queries, 10, ids=ids)
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores, truth_scores, rtol=1e-4, atol=1e-4)
