import math

import numpy as np
import pytest

from sparkml_tf.metrics.ranking import (
    batch_metrics,
    hits_matrix,
    mean_metrics,
    ndcg_at_k,
    pad_lists,
    recall_at_k,
    recall_at_k_spark,
    recall_curve,
    top_k_excluding,
)

D = [1 / math.log2(i + 2) for i in range(10)]  # discounts by 0-based rank


def test_recall_mult_vae_vs_spark_definition():
    ranked = [5, 1, 7, 2, 9]
    targets = [1, 2, 3, 4, 8, 11]  # 6 targets; hits at ranks 1 and 3
    assert recall_at_k(ranked, targets, 2) == pytest.approx(1 / 2)  # 1 hit / min(2, 6)
    assert recall_at_k_spark(ranked, targets, 2) == pytest.approx(1 / 6)  # 1 hit / 6
    assert recall_at_k(ranked, targets, 5) == pytest.approx(2 / 5)
    assert recall_at_k_spark(ranked, targets, 5) == pytest.approx(2 / 6)
    # Few targets: both definitions agree, and a perfect top-k gives 1.
    assert recall_at_k([3, 4, 0], [3], 3) == recall_at_k_spark([3, 4, 0], [3], 3) == 1.0


def test_ndcg_hand_computed():
    ranked = [5, 1, 7, 2, 9]
    targets = [1, 2, 3]
    dcg = D[1] + D[3]
    assert ndcg_at_k(ranked, targets, 5) == pytest.approx(dcg / (D[0] + D[1] + D[2]))
    # k=2: one hit at rank 1, ideal over min(2, 3)=2 slots.
    assert ndcg_at_k(ranked, targets, 2) == pytest.approx(D[1] / (D[0] + D[1]))
    assert ndcg_at_k([1, 2, 3], targets, 3) == pytest.approx(1.0)
    assert ndcg_at_k([9], [9], 10) == pytest.approx(1.0)  # ideal limited by |targets|


def test_no_targets_is_nan_and_left_out_of_means():
    assert math.isnan(recall_at_k([1, 2], [], 2))
    per_user = batch_metrics(pad_lists([[1, 2], [3, 4]]), pad_lists([[2], []]), [2])
    assert per_user["recall@2"][0] == 1.0 and math.isnan(per_user["recall@2"][1])
    assert mean_metrics(per_user)["recall@2"] == 1.0


def test_batch_matches_scalar_versions():
    rng = np.random.default_rng(0)
    ranked = [list(rng.permutation(50)[:20]) for _ in range(30)]
    targets = [list(rng.choice(50, size=rng.integers(1, 25), replace=False)) for _ in range(30)]
    ks = [1, 5, 10, 20]
    per_user = batch_metrics(pad_lists(ranked), pad_lists(targets), ks)
    for u in range(30):
        for k in ks:
            assert per_user[f"recall@{k}"][u] == pytest.approx(recall_at_k(ranked[u], targets[u], k))
            assert per_user[f"recall_spark@{k}"][u] == pytest.approx(recall_at_k_spark(ranked[u], targets[u], k))
            assert per_user[f"ndcg@{k}"][u] == pytest.approx(ndcg_at_k(ranked[u], targets[u], k))
    curve = recall_curve(pad_lists(ranked), pad_lists(targets), 20)
    assert curve[:, 9] == pytest.approx(per_user["recall@10"])


def test_hits_matrix_ignores_padding():
    hits = hits_matrix(np.array([[0, -1, 2], [-1, -1, -1]]), np.array([[2, -1], [-1, -1]]))
    assert hits.tolist() == [[False, False, True], [False, False, False]]


def test_top_k_excluding():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [4.0, 3.0, 2.0, 1.0]])
    top = top_k_excluding(scores, np.array([[1, -1], [0, 2]]), 2)
    assert top.tolist() == [[3, 2], [1, 3]]
