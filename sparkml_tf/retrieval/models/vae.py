"""Mult-VAE (Liang et al. 2018, "Variational Autoencoders for Collaborative Filtering").

Input: the multi-hot vector of a user's items, L2-normalised, with dropout when training.
Encoder: tanh layers -> (mu, logvar) of a Gaussian latent; decoder: tanh layers -> logits over all
items. Loss: the negative ELBO with a multinomial likelihood and a KL term whose weight ``beta``
grows linearly with the training step, reaching ``beta_max`` at ``anneal_steps`` (by default half
the training schedule's step budget, so the annealing fits any data size).

The decoder's last layer is the item table: ``user_embedding`` is the decoder's last hidden
activation (mu, not a sample, at inference), ``item_embeddings`` its kernel transposed and
``item_biases`` its bias, so ``user . item + bias`` is exactly the decoder's logits and the same
retrieval index serves this model and the average model. The loss spec is ignored.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional

from sparkml_tf.errors import bad_value
from sparkml_tf.retrieval.models.inputs import multi_hot, whole_list_example


class MultVAE:
    def __init__(
        self,
        hidden_dims: Optional[List[int]] = None,
        dropout: float = 0.5,
        beta_max: float = 0.2,
        anneal_steps: Optional[int] = None,
        seed: int = 0,
    ):
        hidden_dims = list(hidden_dims) if hidden_dims is not None else [600, 200]
        if not hidden_dims or any(int(d) < 1 for d in hidden_dims):
            raise bad_value("hidden_dims", f"hidden_dims must be a non-empty list of positive sizes, got {hidden_dims}")
        if not 0.0 <= dropout < 1.0:
            raise bad_value("dropout", f"dropout must be in [0, 1), got {dropout}")
        self.hidden_dims = [int(d) for d in hidden_dims]
        self.dropout = float(dropout)
        self.beta_max = float(beta_max)
        self.anneal_steps = max(int(anneal_steps), 1) if anneal_steps is not None else None
        self.seed = int(seed)

    def for_schedule(self, schedule: Any) -> "MultVAE":
        """This spec with ``anneal_steps`` = half the schedule's step budget, when not set."""
        if self.anneal_steps is not None:
            return self
        return MultVAE(self.hidden_dims, self.dropout, self.beta_max, max(schedule.max_steps // 2, 1), self.seed)

    def build(self, num_items: int, loss: Any = None):
        """The Keras model (``loss`` is accepted for a common interface and ignored)."""
        return _net_class()(self, int(num_items))

    def preprocess(self, num_items: int, loss: Any = None) -> Callable[[Any], Dict[str, Any]]:
        return whole_list_example(num_items, loss)

    def beta(self, step):
        import tensorflow as tf

        step = tf.cast(step, tf.float32)
        return self.beta_max * tf.minimum(step / float(self.anneal_steps or 20000), 1.0)

    def __repr__(self) -> str:
        return f"MultVAE(hidden_dims={self.hidden_dims}, dropout={self.dropout}, beta_max={self.beta_max}, anneal_steps={self.anneal_steps})"


@functools.lru_cache(maxsize=None)
def _net_class():
    import keras
    import tensorflow as tf

    # A Layer, not a Model: keras.Model's trainer claims the ``loss`` attribute for compile().
    class MultVAENet(keras.layers.Layer):
        def __init__(self, spec: MultVAE, num_items: int):
            super().__init__(name="mult_vae", dtype="float32")
            self.spec, self.num_items = spec, num_items
            latent = spec.hidden_dims[-1]
            init = lambda i: keras.initializers.GlorotUniform(seed=spec.seed + i)  # noqa: E731
            self.encoder = [
                keras.layers.Dense(d, activation="tanh", kernel_initializer=init(i), name=f"encoder_{i}") for i, d in enumerate(spec.hidden_dims[:-1])
            ]
            self.latent = keras.layers.Dense(2 * latent, kernel_initializer=init(100), name="latent")
            decoder_dims = spec.hidden_dims[-2::-1]  # [600, 200] -> decoder 200 -> 600 -> items
            self.decoder = [keras.layers.Dense(d, activation="tanh", kernel_initializer=init(200 + i), name=f"decoder_{i}") for i, d in enumerate(decoder_dims)]
            self.output_layer = keras.layers.Dense(num_items, kernel_initializer=init(300), name="items")
            # Create every weight now, so optimizers and checkpoints see them before the first step.
            shape = [1, num_items]
            for layer in self.encoder:
                layer.build(shape)
                shape = [1, layer.units]
            self.latent.build(shape)
            shape = [1, latent]
            for layer in self.decoder:
                layer.build(shape)
                shape = [1, layer.units]
            self.output_layer.build(shape)
            self.built = True

        def multi_hot(self, items):
            return multi_hot(items, self.num_items)

        def encode(self, items, training: bool = False):
            x = tf.math.l2_normalize(self.multi_hot(items), axis=1)
            if training and self.spec.dropout > 0:
                x = tf.nn.dropout(x, rate=self.spec.dropout)
            for layer in self.encoder:
                x = layer(x)
            mu, logvar = tf.split(self.latent(x), 2, axis=1)
            return mu, logvar

        def decode_hidden(self, z):
            for layer in self.decoder:
                z = layer(z)
            return z

        def user_embedding(self, items, training: bool = False):
            mu, logvar = self.encode(items, training=training)
            z = mu + tf.exp(0.5 * logvar) * tf.random.normal(tf.shape(mu)) if training else mu
            return self.decode_hidden(z)

        def item_embeddings(self):
            return tf.transpose(tf.convert_to_tensor(self.output_layer.kernel))

        def item_biases(self):
            return tf.convert_to_tensor(self.output_layer.bias)

        def call(self, items, training=False):
            """Decoder logits over all items [B, num_items]."""
            return self.output_layer(self.user_embedding(items, training=training))

        def loss(self, batch: Dict[str, Any], training: bool = True, step=None):
            items = batch["items"]
            mu, logvar = self.encode(items, training=training)
            z = mu + tf.exp(0.5 * logvar) * tf.random.normal(tf.shape(mu)) if training else mu
            logits = self.output_layer(self.decode_hidden(z))
            x = self.multi_hot(items)
            neg_ll = -tf.reduce_mean(tf.reduce_sum(tf.nn.log_softmax(logits, axis=1) * x, axis=1))
            kl = tf.reduce_mean(tf.reduce_sum(0.5 * (-logvar + tf.exp(logvar) + tf.square(mu) - 1.0), axis=1))
            beta = self.spec.beta(0 if step is None else step)
            return neg_ll + beta * kl

    return MultVAENet
