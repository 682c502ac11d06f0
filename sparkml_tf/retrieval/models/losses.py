"""Ranking losses over sampled negatives. Light specs: TensorFlow is imported when a loss is computed.

Every loss takes ``positive`` scores [B, P] with a ``positive_mask`` [B, P] (users have different
numbers of positives, padded) and ``negative`` scores [B, K] (K = ``num_negatives`` items drawn
uniformly from the catalogue per example), and returns a scalar mean over the valid terms.
"""

from __future__ import annotations

from sparkml_tf.errors import bad_value


class BPRLoss:
    """Bayesian personalised ranking: mean of ``-log sigmoid(s_pos - s_neg)`` over valid (pos, neg) pairs."""

    def __init__(self, num_negatives: int = 8):
        if num_negatives < 1:
            raise bad_value("num_negatives", f"num_negatives must be at least 1, got {num_negatives}")
        self.num_negatives = int(num_negatives)

    def __call__(self, positive, negative, positive_mask):
        import tensorflow as tf

        diff = positive[:, :, None] - negative[:, None, :]  # [B, P, K]
        mask = tf.cast(positive_mask, diff.dtype)[:, :, None] * tf.ones_like(diff)
        # -log(sigmoid(x)) == softplus(-x), stable for large |x|.
        per_pair = tf.nn.softplus(-diff) * mask
        return tf.reduce_sum(per_pair) / tf.maximum(tf.reduce_sum(mask), 1.0)

    def __repr__(self) -> str:
        return f"BPRLoss(num_negatives={self.num_negatives})"


class SampledSoftmaxLoss:
    """Softmax over [positive, K sampled negatives] per positive, cross-entropy against the positive.

    No log-Q correction: negatives are uniform over the catalogue, so it would be a constant.
    """

    def __init__(self, num_negatives: int = 32):
        if num_negatives < 1:
            raise bad_value("num_negatives", f"num_negatives must be at least 1, got {num_negatives}")
        self.num_negatives = int(num_negatives)

    def __call__(self, positive, negative, positive_mask):
        import tensorflow as tf

        negatives = tf.broadcast_to(negative[:, None, :], tf.concat([tf.shape(positive), tf.shape(negative)[1:]], 0))
        logits = tf.concat([positive[:, :, None], negatives], axis=-1)  # [B, P, 1 + K], column 0 is the positive
        per_positive = -tf.nn.log_softmax(logits, axis=-1)[:, :, 0]
        mask = tf.cast(positive_mask, per_positive.dtype)
        return tf.reduce_sum(per_positive * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)

    def __repr__(self) -> str:
        return f"SampledSoftmaxLoss(num_negatives={self.num_negatives})"
