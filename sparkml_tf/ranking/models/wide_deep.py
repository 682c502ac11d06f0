"""Wide & Deep (Cheng et al. 2016) for CTR, and the input layer every CTR model here shares.

Inputs (see the feature index): ``deep_ids`` int64 [B, num_deep] and ``wide_ids`` int64 [B, num_wide],
both global ids (a feature's offset plus its local id), and ``dense`` float32 [B, num_dense].

* wide: a linear model over ``wide_ids`` (single fields and crosses): one [wide_size, 1] table, the
  rows of an example summed, plus a bias.
* deep: each deep feature's row of one [deep_size, embedding_dim] table, concatenated with ``dense``
  (60 features x 10 dims + 13 floats for Criteo), through ReLU layers to one logit.

The logit is the sum of both; the loss binary cross-entropy plus ``l2`` on the embedding rows a batch
uses (sparse-friendly: unused rows cost nothing) and on the dense kernels. The spec is light (no
TensorFlow at import); ``build`` makes the Keras part on the worker that trains or serves.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, List, Mapping, Optional, Tuple

SIZE_KEYS = ("deep_size", "wide_size", "num_deep", "num_wide", "num_dense")


def ctr_sizes(feature_index_or_sizes: Any) -> Dict[str, int]:
    """``{deep_size, wide_size, num_deep, num_wide, num_dense}`` from a FeatureIndex, a dict holding
    those keys (stats.json does), or a feature index's ``to_dict()``."""
    source = feature_index_or_sizes
    if isinstance(source, Mapping) and "fields" in source and not all(k in source for k in SIZE_KEYS):
        from sparkml_tf.ranking.features.feature_index import FeatureIndex

        source = FeatureIndex.from_dict(dict(source))
    if isinstance(source, Mapping):
        missing = [k for k in SIZE_KEYS if k not in source]
        get = source.__getitem__
    else:
        missing = [k for k in SIZE_KEYS if not hasattr(source, k)]
        get = functools.partial(getattr, source)
    if missing:
        raise ValueError(f"a CTR model needs a feature index or a dict with {', '.join(SIZE_KEYS)}; missing {', '.join(missing)}")
    sizes = {k: int(get(k)) for k in SIZE_KEYS}
    if sizes["num_deep"] < 1 or sizes["deep_size"] < sizes["num_deep"]:
        raise ValueError(f"a CTR model needs at least one deep feature with at least one id each, got {sizes}")
    return sizes


def check_units(hidden_units: Optional[List[int]], default: List[int]) -> List[int]:
    units = list(hidden_units) if hidden_units is not None else list(default)
    if any(int(u) < 1 for u in units):
        raise ValueError(f"hidden_units must be positive sizes, got {units}")
    return [int(u) for u in units]


class WideDeep:
    def __init__(
        self,
        embedding_dim: int = 10,
        hidden_units: Optional[List[int]] = None,
        dropout: float = 0.0,
        l2: float = 1e-6,
        seed: int = 0,
        wide_learning_rate: Optional[float] = None,
    ):
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.embedding_dim = int(embedding_dim)
        self.hidden_units = check_units(hidden_units, [256, 256, 256])
        self.dropout = float(dropout)
        self.l2 = float(l2)
        self.seed = int(seed)
        if wide_learning_rate is not None and wide_learning_rate <= 0:
            raise ValueError(f"wide_learning_rate must be positive (or null: the training learning_rate), got {wide_learning_rate}")
        self.wide_learning_rate = None if wide_learning_rate is None else float(wide_learning_rate)

    def build(self, feature_index_or_sizes: Any):
        """The Keras layer, all weights created; create it under the distribution strategy's scope."""
        return _net_class()(self, ctr_sizes(feature_index_or_sizes))

    def __repr__(self) -> str:
        return (f"WideDeep(embedding_dim={self.embedding_dim}, hidden_units={self.hidden_units}, dropout={self.dropout}, l2={self.l2}, "
                f"seed={self.seed}, wide_learning_rate={self.wide_learning_rate})")


@functools.lru_cache(maxsize=None)
def ctr_net_base():
    """The Keras base class of CTR nets (defined on first use: importing this module stays light).

    It owns the deep embedding table, builds ``x0 = concat(deep embeddings, dense)``, and the loss;
    a subclass defines ``logit(features, x0, training)`` -> [B] and lists its kernels in ``kernels``.
    """
    import keras
    import tensorflow as tf

    # A Layer, not a Model: keras.Model's trainer claims the ``loss`` attribute for compile().
    class CtrNet(keras.layers.Layer):
        def __init__(self, spec: Any, sizes: Dict[str, int], name: str):
            super().__init__(name=name, dtype="float32")
            self.spec, self.sizes = spec, dict(sizes)
            self.input_dim = sizes["num_deep"] * spec.embedding_dim + sizes["num_dense"]
            self.deep_embeddings = self.add_weight(
                shape=(sizes["deep_size"], spec.embedding_dim),
                initializer=keras.initializers.RandomNormal(stddev=0.01, seed=spec.seed),
                name="deep_embeddings",
            )

        def dense_stack(self, units: List[int], input_dim: int, seed: int, prefix: str) -> Tuple[str, ...]:
            """ReLU layers, built now so every weight exists before a checkpoint restore; their names."""
            names = []
            for i, width in enumerate(units):
                layer = keras.layers.Dense(width, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i), name=f"{prefix}_{i}")
                layer.build((None, input_dim))
                self.add_layer(f"{prefix}_{i}", layer)
                names.append(f"{prefix}_{i}")
                input_dim = width
            return tuple(names)

        def add_layer(self, name: str, layer: Any) -> Any:
            # One attribute per layer, never a list of layers: tf.train.Checkpoint and SavedModel
            # do not see into Keras 3's tracked lists, so listed layers would not be saved.
            setattr(self, name, layer)
            return layer

        def sublayers(self, names: Tuple[str, ...]) -> List[Any]:
            return [getattr(self, name) for name in names]

        def run_stack(self, names: Tuple[str, ...], x, training: bool):
            for layer in self.sublayers(names):
                x = layer(x)
                if training and self.spec.dropout > 0:
                    # tf.nn.dropout, not keras Dropout: no seed-generator variable to mirror across workers.
                    x = tf.nn.dropout(x, rate=self.spec.dropout)
            return x

        def x0(self, features: Dict[str, Any]):
            deep_ids = tf.convert_to_tensor(features["deep_ids"], tf.int64)
            vectors = tf.gather(self.deep_embeddings, deep_ids)  # [B, num_deep, D]
            flat = tf.reshape(vectors, [-1, self.sizes["num_deep"] * self.spec.embedding_dim])
            if self.sizes["num_dense"] == 0:  # (a [B, 0] tensor cannot be reshaped with -1)
                return flat
            return tf.concat([flat, tf.cast(features["dense"], tf.float32)], axis=1)

        def call(self, features: Dict[str, Any], training: bool = False):
            return self.logit(features, self.x0(features), training)

        def penalty(self, features: Dict[str, Any]):
            """``l2`` on the embedding rows this batch uses (per example) and on the kernels."""
            batch = tf.cast(tf.shape(features["deep_ids"])[0], tf.float32)
            used = tf.reduce_sum(tf.square(tf.gather(self.deep_embeddings, features["deep_ids"]))) + self.used_extra(features)
            kernels = tf.add_n([tf.reduce_sum(tf.square(k)) for k in self.kernels()] or [tf.constant(0.0)])
            return self.spec.l2 * (used / batch + kernels)

        def used_extra(self, features: Dict[str, Any]):
            return tf.constant(0.0)

        def loss(self, batch: Dict[str, Any], training: bool = True, step=None):
            """Mean binary cross-entropy of ``batch["label"]`` (float 0/1), plus the l2 penalty."""
            logits = self(batch, training=training)
            labels = tf.reshape(tf.cast(batch["label"], tf.float32), tf.shape(logits))
            value = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
            if self.spec.l2 > 0:
                value += self.penalty(batch)
            return value

    return CtrNet


@functools.lru_cache(maxsize=None)
def _net_class():
    import keras
    import tensorflow as tf

    class WideDeepNet(ctr_net_base()):
        def __init__(self, spec: WideDeep, sizes: Dict[str, int]):
            super().__init__(spec, sizes, name="wide_deep")
            self.wide_weights = self.add_weight(shape=(max(sizes["wide_size"], 1), 1), initializer="zeros", name="wide_weights")
            self.wide_bias = self.add_weight(shape=(), initializer="zeros", name="wide_bias")
            self.hidden_names = self.dense_stack(spec.hidden_units, self.input_dim, spec.seed + 1, "deep")
            self.out = keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(seed=spec.seed + 100), name="deep_logit")
            self.out.build((None, spec.hidden_units[-1] if spec.hidden_units else self.input_dim))
            self.built = True

        def wide_logit(self, features: Dict[str, Any]):
            if self.sizes["num_wide"] == 0:
                return tf.zeros([tf.shape(features["deep_ids"])[0]]) + self.wide_bias
            wide_ids = tf.convert_to_tensor(features["wide_ids"], tf.int64)
            # Gather rows of the [wide_size, 1] table: the gradient stays sparse (IndexedSlices).
            return tf.reduce_sum(tf.gather(self.wide_weights, wide_ids), axis=[1, 2]) + self.wide_bias

        def logit(self, features: Dict[str, Any], x0, training: bool):
            deep = self.out(self.run_stack(self.hidden_names, x0, training))[:, 0]
            return self.wide_logit(features) + deep

        def learning_rate_groups(self, learning_rate: float):
            """The wide part at ``wide_learning_rate``: each of its many weights (one per id and
            cross bucket) sees few examples, so at the deep part's rate it barely moves in a few
            epochs (the Wide & Deep paper trains it with its own optimizer for that reason)."""
            wide = [self.wide_weights, self.wide_bias]
            rest = [v for v in self.trainable_variables if all(v is not w for w in wide)]
            if self.spec.wide_learning_rate is None:
                return [(wide + rest, learning_rate)]
            return [(wide, self.spec.wide_learning_rate), (rest, learning_rate)]

        def used_extra(self, features: Dict[str, Any]):
            if self.sizes["num_wide"] == 0:
                return tf.constant(0.0)
            return tf.reduce_sum(tf.square(tf.gather(self.wide_weights, features["wide_ids"])))

        def kernels(self) -> List[Any]:
            return [layer.kernel for layer in self.sublayers(self.hidden_names)] + [self.out.kernel]

    return WideDeepNet
