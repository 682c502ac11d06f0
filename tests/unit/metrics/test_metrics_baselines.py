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
    # float32 (the fit keeps one float32 N×N array): agreement to float32 precision.
    np.testing.assert_allclose(model.B, B_direct, rtol=1e-5, atol=1e-7)
    assert np.allclose(np.diag(model.B), 0.0)
    foldin = pad_lists([[0, 3], [5]])
    x = np.zeros((2, 12))
    x[0, [0, 3]] = 1
    x[1, 5] = 1
    np.testing.assert_allclose(model.score(foldin), x @ B_direct, rtol=1e-5, atol=1e-7)


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


def test_ease_memory_is_one_float32_matrix_and_a_block():
    # The fit used to hold several float64 N×N temporaries (10-13 GB at 20,000 items); now one
    # float32 N×N array and one block of the Gram product, measured by tracemalloc (numpy reports
    # its buffers to it).
    import tracemalloc

    rng = np.random.default_rng(0)
    num_items, num_users = 1500, 2000
    users = np.repeat(np.arange(num_users), 25)
    items = rng.integers(0, num_items, len(users))
    model = Ease(num_items, 500.0, block=256)
    tracemalloc.start()
    try:
        model.fit(users, items)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert model.B.dtype == np.float32
    assert peak <= model.memory_bytes() + 2_000_000, (peak, model.memory_bytes())
    assert peak < 2 * 4 * num_items * num_items  # less than two float32 N×N arrays
    reference = Ease(num_items, 500.0, block=num_items).fit(users, items)  # one block: the same result
    np.testing.assert_allclose(model.B, reference.B, atol=1e-6)


def test_evaluate_says_why_ease_was_skipped():
    from sparkml_tf.reporting import metrics_table
    from sparkml_tf.retrieval.jobs.evaluate import Evaluate

    job = Evaluate("d", "u", "i", "e", "m.json", ease_max_memory_gb=1.0)
    assert job._ease_skipped(Ease(10_000)) is None  # 0.4 GB
    reason = job._ease_skipped(Ease(20_000))  # 1.5 GiB array + a 0.3 GiB block
    assert reason == "20000 items need 1.8 GB > ease_max_memory_gb=1"
    assert Evaluate("d", "u", "i", "e", "m.json", ease_max_items=50)._ease_skipped(Ease(51)) == "51 items > ease_max_items=50"
    table = metrics_table({"ndcg@100": 0.4, "popular/ndcg@100": 0.2, "ease/skipped": reason})
    assert reason in table and "0.4000" in table
