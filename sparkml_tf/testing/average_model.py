"""A tiny SavedModel with the retrieval serving contract, for tests and benchmarks: a user is the mean
of their (-1 padded) items' rows of ``table``. TensorFlow is imported when one is saved."""

from __future__ import annotations

import numpy as np


def save_average_model(export_dir, table: np.ndarray, version: int = 1, input_name: str = "items") -> str:
    """Save ``<export_dir>/<version>`` with ``serving_default``: ``input_name`` int64 [None, None] ->
    ``{"user_embedding": float32 [None, D]}``; return its path."""
    import tensorflow as tf

    class Average(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.Variable(np.asarray(table, np.float32), dtype=tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64, name=input_name)])
        def serve(self, items):
            mask = tf.cast(items >= 0, tf.float32)
            vectors = tf.gather(self.table, tf.maximum(items, 0)) * mask[..., None]
            return {"user_embedding": tf.reduce_sum(vectors, 1) / tf.maximum(tf.reduce_sum(mask, 1, keepdims=True), 1.0)}

    module = Average()
    path = f"{export_dir}/{version}"
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path
