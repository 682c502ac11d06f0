"""LinearAE: a low-rank linear item-item autoencoder trained by SGD with input dropout (the EASE /
DLAE / EDLAE family: Steck 2020, "Autoencoders that don't overfit towards the identity").

A user's items ``x`` (multi-hot over the catalogue) are encoded as ``h = x U`` and every item is
scored ``h . V_i + b_i``: the item-item weight matrix is ``B = U Vᵀ`` of rank ``embedding_dim``, so
memory is ``2 N d`` weights instead of EASE's dense ``N × N`` inverse. Training drops each input
item with probability ``dropout`` (the denoising that keeps ``B`` from copying its input) and, with
``zero_diagonal``, removes each kept item's own term ``U_i . V_i`` from its score, as EASE's
``diag(B) = 0``. The loss is the squared error against all of the user's items (``loss="mse"``, as
EASE) or their multinomial log-likelihood (``"softmax"``, as Mult-VAE); ``l2`` adds weight decay.

Serving needs nothing new: ``user_embedding(items) = h``, ``item_embeddings() = V``,
``item_biases() = b``, so ``user . item + bias`` is the model's score for every item the user has
not interacted with (the diagonal term only touches the user's own items, which are never
recommended). The index, the Predict job and the evaluator serve it as they serve the others.
Cost: two dense ``[batch, N] x [N, d]`` products a step, fine up to some ten thousand items.
"""


from __future__ import annotations

import functools
from typing import Any, Callable, Dict

from sparkml_tf.errors import bad_value
from sparkml_tf.retrieval.models.inputs import multi_hot, whole_list_example

LOSSES = ("mse", "softmax")
NORMS = ("none", "sqrt", "mean")


class LinearAE:
    def __init__(
        self,
        embedding_dim: int = 512,
        dropout: float = 0.5,
        l2: float = 0.0,
        loss: str = "mse",
        norm: str = "none",
        zero_diagonal: bool = True,
        init_scale: float = 0.01,
        seed: int = 0,
    ):
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise bad_value("embedding_dim", f"embedding_dim must be a positive whole number, got {embedding_dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise bad_value("dropout", f"dropout must be in [0, 1), got {dropout!r}")
        if l2 < 0:
            raise bad_value("l2", f"l2 must be at least 0, got {l2!r}")
        if loss not in LOSSES:
            raise bad_value("loss", f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if norm not in NORMS:
            raise bad_value("norm", f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.embedding_dim = int(embedding_dim)
        self.dropout = float(dropout)
        self.l2 = float(l2)
        self.loss_kind = loss
        self.norm = norm
        self.zero_diagonal = bool(zero_diagonal)
        self.init_scale = float(init_scale)
        self.seed = int(seed)

    def build(self, num_items: int, loss: Any = None):
        """The Keras net (``loss`` is accepted for the common interface and ignored)."""
        return _net_class()(self, int(num_items))

    def preprocess(self, num_items: int, loss: Any = None) -> Callable[[Any], Dict[str, Any]]:
        return whole_list_example(num_items, loss)

    def __repr__(self) -> str:
        return (f"LinearAE(embedding_dim={self.embedding_dim}, dropout={self.dropout}, l2={self.l2}, loss={self.loss_kind!r}, "
                f"norm={self.norm!r}, zero_diagonal={self.zero_diagonal})")


@functools.lru_cache(maxsize=None)
def _net_class():
    import keras
    import tensorflow as tf

    class LinearAENet(keras.layers.Layer):
        def __init__(self, spec: LinearAE, num_items: int):
            super().__init__(name="linear_ae", dtype="float32")
            self.spec, self.num_items = spec, num_items
            init = lambda i: keras.initializers.RandomNormal(stddev=spec.init_scale, seed=spec.seed + i)  # noqa: E731
            self.encoder = self.add_weight(shape=(num_items, spec.embedding_dim), initializer=init(0), name="item_inputs")
            self.decoder = self.add_weight(shape=(num_items, spec.embedding_dim), initializer=init(1), name="item_embeddings")
            self.biases = self.add_weight(shape=(num_items,), initializer="zeros", name="item_biases")
            self.built = True

        def multi_hot(self, items):
            return multi_hot(items, self.num_items)

        def _input(self, x, training):
            """Dropped-out, normalised input rows: x [B, N] multi-hot -> [B, N]."""
            if training and self.spec.dropout > 0:
                x = x * tf.cast(tf.random.uniform(tf.shape(x)) >= self.spec.dropout, tf.float32)
            count = tf.reduce_sum(x, axis=1, keepdims=True)
            if self.spec.norm == "sqrt":
                return x * tf.math.rsqrt(tf.maximum(count, 1.0))
            if self.spec.norm == "mean":
                return x / tf.maximum(count, 1.0)
            return x

        def user_embedding(self, items, training: bool = False):
            """``norm(x) * sum of the input vectors of items`` (int64 [B, L], -1 pads): [B, D]."""
            return tf.matmul(self._input(self.multi_hot(items), training), self.encoder)

        def item_embeddings(self):
            return tf.convert_to_tensor(self.decoder)

        def item_biases(self):
            return tf.convert_to_tensor(self.biases)

        def _logits(self, x_in):
            logits = tf.matmul(tf.matmul(x_in, self.encoder), self.decoder, transpose_b=True) + self.biases
            if self.spec.zero_diagonal:
                # diag(B) = 0: remove each input item's own term x_i * U_i . V_i from its score.
                logits -= x_in * tf.reduce_sum(self.encoder * self.decoder, axis=1)
            return logits

        def call(self, items, training=False):
            return self._logits(self._input(self.multi_hot(items), training))

        def loss(self, batch: Dict[str, Any], training: bool = True, step=None):
            x = self.multi_hot(batch["items"])
            logits = self._logits(self._input(x, training))
            if self.spec.loss_kind == "softmax":
                value = -tf.reduce_mean(tf.reduce_sum(tf.nn.log_softmax(logits, axis=1) * x, axis=1))
            else:
                value = tf.reduce_mean(tf.reduce_sum(tf.square(x - logits), axis=1))
            if self.spec.l2 > 0:
                value += self.spec.l2 * (tf.reduce_sum(tf.square(self.encoder)) + tf.reduce_sum(tf.square(self.decoder)))
            return value

    return LinearAENet
