import numpy as np
import pytest

from sparkml_tf.errors import DataError
from sparkml_tf.metrics.baselines import Ease, Popular, build, recommend
from sparkml_tf.metrics.ranking import pad_lists


def _toy():
    rng = np.random.default_rng(1)
    X = (rng.random((40, 12)) < 0.3).astype(np.float64)
    users, items = np.nonzero(X)
    return X, users.astype(str), items


def test_ease_matches_closed_form():
    X, users, items = _toy()
    lam = 5.0
    B_direct = np.linalg.inv(X.T @ X + lam * np.eye(12))
    B_direct = np.eye(12) - B_direct @ np.diag(1.0 / np.diag(B_direct))
    model = Ease(12, lam).fit(users, items)
    np.testing.assert_allclose(model.B, B_direct, atol=1e-10)
    assert np.allclose(np.diag(model.B), 0.0)
    foldin = pad_lists([[0, 3], [5]])
    x = np.zeros((2, 12))
    x[0, [0, 3]] = 1
    x[1, 5] = 1
    np.testing.assert_allclose(model.score(foldin), x @ B_direct, atol=1e-10)


def test_ease_counts_duplicate_interactions_once():
    X, users, items = _toy()
    once = Ease(12, 5.0).fit(users, items)
    twice = Ease(12, 5.0).fit(np.concatenate([users, users]), np.concatenate([items, items]))
    np.testing.assert_allclose(once.B, twice.B)


def test_popular_ranks_by_count_and_excludes_foldin():
    model = Popular(5).fit(np.array(["a"] * 6), np.array([2, 2, 2, 4, 4, 0]))
    ranked = recommend(model, pad_lists([[], [2]]), 3)
    assert ranked[0].tolist() == [2, 4, 0]  # counts: 2 -> 3, 4 -> 2, 0 -> 1
    assert ranked[1, :2].tolist() == [4, 0] and ranked[1, 2] in (1, 3)  # 2 was folded in; 1 and 3 tie


def test_bad_ids_and_names_raise_with_codes():
    with pytest.raises(DataError) as e:
        Popular(3).fit(np.array(["a"]), np.array([3]))
    assert e.value.code == "DATA_BAD_ITEM_ID"
    with pytest.raises(DataError) as e:
        build("svd", 3)
    assert e.value.code == "EVALUATE_UNKNOWN_BASELINE" and e.value.path == "baselines"
