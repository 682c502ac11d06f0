import math

import numpy as np
import pytest

from sparkml_tf.retrieval.models.losses import BPRLoss, SampledSoftmaxLoss


def test_bpr_matches_hand_computed_value():
    import tensorflow as tf

    pos = tf.constant([[2.0, 0.0], [1.0, 5.0]])
    neg = tf.constant([[1.0, 3.0], [0.0, 0.0]])
    mask = tf.constant([[True, False], [True, False]])  # one valid positive per user
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731  -log(sigmoid(d)) = softplus(-d)
    expected = (softplus(-(2 - 1)) + softplus(-(2 - 3)) + softplus(-(1 - 0)) + softplus(-(1 - 0))) / 4
    assert float(BPRLoss(num_negatives=2)(pos, neg, mask)) == pytest.approx(expected, rel=1e-6)


def test_sampled_softmax_matches_hand_computed_value():
    import tensorflow as tf

    pos = tf.constant([[2.0]])
    neg = tf.constant([[1.0, 0.0]])
    expected = -(2.0 - np.log(np.exp(2.0) + np.exp(1.0) + np.exp(0.0)))
    assert float(SampledSoftmaxLoss(2)(pos, neg, tf.constant([[True]]))) == pytest.approx(expected, rel=1e-6)


def test_all_masked_is_zero_not_nan():
    import tensorflow as tf

    value = BPRLoss(1)(tf.zeros([2, 3]), tf.zeros([2, 1]), tf.zeros([2, 3], tf.bool))
    assert float(value) == 0.0


def test_bad_negatives():
    from sparkml_tf.errors import SparkmlTfError

    with pytest.raises(SparkmlTfError) as info:
        BPRLoss(0)
    assert info.value.code == "CONFIG_BAD_VALUE" and info.value.path == "num_negatives"
