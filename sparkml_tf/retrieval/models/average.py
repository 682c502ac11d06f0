"""Average model: a user is the mean of the embeddings of the items they interacted with.

``score(user, item) = dot(user_embedding, item_embedding) + item_bias``. The spec is light (no
TensorFlow at import); ``build`` makes the Keras part on the worker that trains or serves.

Training examples come from each user's ``items``: a random part becomes the inputs (each kept
with ``input_keep_prob``, at least one), the rest the positives (at most ``max_positives``), and
``loss.num_negatives`` negatives are drawn uniformly from the catalogue; the loss spec scores them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict

from sparkml_tf.errors import bad_value


class AverageModel:
    def __init__(
        self,
        embedding_dim: int = 64,
        input_dropout: float = 0.2,
        l2: float = 1e-6,
        seed: int = 0,
        input_keep_prob: float = 0.8,
        max_positives: int = 16,
    ):
        if embedding_dim < 1:
            raise bad_value("embedding_dim", f"embedding_dim must be positive, got {embedding_dim}")
        if not 0.0 <= input_dropout < 1.0:
            raise bad_value("input_dropout", f"input_dropout must be in [0, 1), got {input_dropout}")
        if not 0.0 < input_keep_prob < 1.0:
            raise bad_value("input_keep_prob", f"input_keep_prob must be in (0, 1), got {input_keep_prob}")
        self.embedding_dim = int(embedding_dim)
        self.input_dropout = float(input_dropout)
        self.l2 = float(l2)
        self.seed = int(seed)
        self.input_keep_prob = float(input_keep_prob)
        self.max_positives = int(max_positives)

    def default_loss(self):
        from sparkml_tf.retrieval.models.losses import BPRLoss

        return BPRLoss()

    def build(self, num_items: int, loss: Any = None):
        """The Keras model; create it under the distribution strategy's scope."""
        return _net_class()(self, int(num_items), loss or self.default_loss())

    def preprocess(self, num_items: int, loss: Any = None) -> Callable[[Any], Dict[str, Any]]:
        """A tf.data map function: one user's ``items`` (int64 [n]) -> a training example."""
        import tensorflow as tf

        keep_prob, max_positives = self.input_keep_prob, self.max_positives
        num_negatives = (loss or self.default_loss()).num_negatives

        def make_example(items):
            items = tf.random.shuffle(tf.reshape(tf.cast(items, tf.int64), [-1]))
            n = tf.size(items)
            kept = tf.reduce_sum(tf.cast(tf.random.uniform([n]) < keep_prob, tf.int32))
            # At least one input, and at least one positive when the user has two items or more.
            num_inputs = tf.clip_by_value(kept, 1, tf.maximum(n - 1, 1))
            positives = items[num_inputs:][:max_positives]
            negatives = tf.random.uniform([num_negatives], 0, num_items, dtype=tf.int64)
            return {"inputs": items[:num_inputs], "positives": positives, "negatives": negatives}

        def make_batch(items):
            """The same draws for a batch of users at once (a RaggedTensor [b, None]), padded with -1."""
            items = tf.cast(items, tf.int64)
            rows = tf.cast(items.value_rowids(), tf.int64)
            values, count = items.values, tf.size(items.values)
            # Each user's items in a random order: sort by row, then by a random key.
            values = tf.gather(values, tf.argsort(tf.cast(rows, tf.float64) + tf.random.uniform([count], dtype=tf.float64)))
            nrows, lengths = items.nrows(out_type=tf.int64), tf.cast(items.row_lengths(), tf.int64)
            kept = tf.math.unsorted_segment_sum(tf.cast(tf.random.uniform([count]) < keep_prob, tf.int64), rows, nrows)
            num_inputs = tf.gather(tf.clip_by_value(kept, 1, tf.maximum(lengths - 1, 1)), rows)
            position = tf.range(tf.cast(count, tf.int64)) - tf.gather(tf.cast(items.row_starts(), tf.int64), rows)

            def part(mask):
                return tf.RaggedTensor.from_value_rowids(values[mask], rows[mask], nrows=nrows).to_tensor(default_value=-1)

            return {
                "inputs": part(position < num_inputs),
                "positives": part((position >= num_inputs) & (position < num_inputs + max_positives)),
                "negatives": tf.random.uniform(tf.stack([nrows, num_negatives]), 0, num_items, dtype=tf.int64),
            }

        make_example.batched = make_batch  # what the trainer runs (records.training_batches): no work per user
        return make_example

    def __repr__(self) -> str:
        return f"AverageModel(embedding_dim={self.embedding_dim}, input_dropout={self.input_dropout}, l2={self.l2}, seed={self.seed})"


@functools.lru_cache(maxsize=None)
def _net_class():
    """Define the Keras class once, on first use, so importing this module stays free of TensorFlow."""
    import keras
    import tensorflow as tf

    # A Layer, not a Model: keras.Model's trainer claims the ``loss`` attribute for compile().
    class AverageNet(keras.layers.Layer):
        def __init__(self, spec: AverageModel, num_items: int, loss):
            super().__init__(name="average_model", dtype="float32")
            self.spec, self.num_items, self.loss_spec = spec, num_items, loss
            self.embeddings = self.add_weight(
                shape=(num_items, spec.embedding_dim),
                initializer=keras.initializers.RandomNormal(stddev=0.05, seed=spec.seed),
                name="item_embeddings",
            )
            self.biases = self.add_weight(shape=(num_items,), initializer="zeros", name="item_biases")
            self.built = True

        def user_embedding(self, items, training: bool = False):
            """Mean of the embeddings of ``items`` (int64 [B, L], -1 pads); dropout on inputs when training."""
            items = tf.convert_to_tensor(items, tf.int64)
            mask = tf.cast(items >= 0, tf.float32)
            if training and self.spec.input_dropout > 0:
                mask *= tf.cast(tf.random.uniform(tf.shape(mask)) >= self.spec.input_dropout, tf.float32)
            vectors = tf.gather(self.embeddings, tf.maximum(items, 0)) * mask[:, :, None]
            return tf.reduce_sum(vectors, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)

        def item_embeddings(self):
            return tf.convert_to_tensor(self.embeddings)

        def item_biases(self):
            return tf.convert_to_tensor(self.biases)

        def score_items(self, user, items):
            """Scores of ``items`` [B, M] (any -1 pads get a meaningless score; mask them) for ``user`` [B, D]."""
            ids = tf.maximum(items, 0)
            return tf.einsum("bd,bmd->bm", user, tf.gather(self.embeddings, ids)) + tf.gather(self.biases, ids)

        def call(self, items, training=False):
            user = self.user_embedding(items, training=training)
            return tf.matmul(user, self.embeddings, transpose_b=True) + self.biases

        def loss(self, batch: Dict[str, Any], training: bool = True, step=None):
            user = self.user_embedding(batch["inputs"], training=training)
            positives, negatives = batch["positives"], batch["negatives"]
            value = self.loss_spec(self.score_items(user, positives), self.score_items(user, negatives), positives >= 0)
            if self.spec.l2 > 0:
                used = tf.gather(self.embeddings, tf.maximum(tf.concat([positives, negatives], axis=1), 0))
                batch_size = tf.cast(tf.shape(user)[0], tf.float32)
                value += self.spec.l2 * (tf.reduce_sum(tf.square(user)) + tf.reduce_sum(tf.square(used))) / batch_size
            return value

    return AverageNet
