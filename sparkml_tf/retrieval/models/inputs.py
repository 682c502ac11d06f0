"""Input helpers shared by the autoencoder models (Mult-VAE, LinearAE): a user's whole item list is
one example, turned into a multi-hot row inside the graph."""

from __future__ import annotations

from typing import Any, Callable, Dict


def whole_list_example(num_items: int, loss: Any = None) -> Callable[[Any], Dict[str, Any]]:
    """The ``preprocess`` of models that read a user's whole item list: ``{"items": int64 [n]}``."""
    import tensorflow as tf

    def make_example(items):
        return {"items": tf.reshape(tf.cast(items, tf.int64), [-1])}

    def make_batch(items):  # a RaggedTensor [b, None]: the same batch as make_example's, padded with -1
        return {"items": tf.cast(items, tf.int64).to_tensor(default_value=-1)}

    make_example.batched = make_batch  # what the trainer runs (records.training_batches): no work per user
    return make_example


def multi_hot(items: Any, num_items: int) -> Any:
    """int64 [B, L] with -1 pads -> float32 [B, num_items] (repeats count once)."""
    import tensorflow as tf

    items = tf.convert_to_tensor(items, tf.int64)
    where = tf.where(items >= 0)
    indices = tf.stack([where[:, 0], tf.gather_nd(items, where)], axis=1)
    shape = tf.stack([tf.shape(items, out_type=tf.int64)[0], tf.constant(num_items, tf.int64)])
    return tf.minimum(tf.scatter_nd(indices, tf.ones([tf.shape(indices)[0]], tf.float32), shape), 1.0)
