import math

import numpy as np
import pytest

from sparkml_tf.metrics.classification import auc_from_counts, binary_metrics, log_loss, roc_auc, score_counts


def test_auc_hand_computed_with_ties():
    # Positives at .8 and .4, negatives at .4, .3, .1. Pairs (pos, neg): .8 beats all 3;
    # .4 ties .4 (one half) and beats .3 and .1: (3 + 2.5) / (2 * 3).
    labels = [1, 0, 1, 0, 0]
    scores = [0.8, 0.4, 0.4, 0.3, 0.1]
    assert roc_auc(labels, scores) == pytest.approx(5.5 / 6)
    assert roc_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5  # all tied: chance


def test_auc_single_class_is_nan_and_counts_merge():
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))
    assert math.isnan(roc_auc([], []))
    distinct, pos, neg = score_counts([1, 0, 1, 0, 0], [0.8, 0.4, 0.4, 0.3, 0.1])
    assert distinct.tolist() == [0.1, 0.3, 0.4, 0.8]
    assert pos.tolist() == [0, 0, 1, 1] and neg.tolist() == [1, 1, 1, 0]
    assert auc_from_counts(pos, neg) == pytest.approx(5.5 / 6)


def test_auc_and_logloss_match_sklearn_on_random_data_with_ties():
    from sklearn.metrics import log_loss as sk_log_loss
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=2000)
    scores = np.round(np.clip(0.3 * labels + rng.normal(0.35, 0.2, size=2000), 0.01, 0.99), 2)  # many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert log_loss(labels, scores) == pytest.approx(sk_log_loss(labels, scores), rel=1e-10)


def test_logloss_hand_computed_and_clipped():
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))  # finite, not inf
    assert math.isnan(log_loss([], []))


def test_binary_metrics_and_bad_inputs():
    metrics = binary_metrics([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3])
    assert metrics["auc"] == 1.0 and metrics["num_examples"] == 4 and metrics["positive_rate"] == 0.25
    with pytest.raises(ValueError, match="0 or 1"):
        roc_auc([2, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="length"):
        log_loss([1, 0], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([1, 0], [float("nan"), 0.2])
