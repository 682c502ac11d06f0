"""DCN-V2 (Wang et al. 2021, "DCN V2: Improved Deep & Cross Network") for CTR.

Same inputs and ``x0`` as :mod:`sparkml_tf.ranking.models.wide_deep` (deep embeddings concatenated with the
dense floats; ``wide_ids`` are not used). Each cross layer computes
``x_{l+1} = x0 * (W_l x_l + b_l) + x_l`` with a full [d, d] ``W_l``, or the low-rank
``U_l (V_l^T x_l)`` when ``projection_dim`` is set (d = 613 for Criteo: full rank is 376k weights
a layer). ``structure`` "stacked" feeds the cross network's output to the ReLU layers; "parallel"
runs both on ``x0`` and concatenates them. One logit on top; loss as Wide & Deep's.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, List, Optional

from sparkml_tf.ranking.models.wide_deep import check_units, ctr_net_base, ctr_sizes

STRUCTURES = ("stacked", "parallel")


class DCNv2:
    def __init__(
        self,
        embedding_dim: int = 10,
        cross_layers: int = 3,
        hidden_units: Optional[List[int]] = None,
        structure: str = "stacked",
        projection_dim: Optional[int] = None,
        dropout: float = 0.0,
        l2: float = 1e-6,
        seed: int = 0,
    ):
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        if cross_layers < 0:
            raise ValueError(f"cross_layers must be >= 0, got {cross_layers}")
        if structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {', '.join(STRUCTURES)}, got '{structure}'")
        if projection_dim is not None and projection_dim < 1:
            raise ValueError(f"projection_dim must be positive (or null for full rank), got {projection_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.embedding_dim = int(embedding_dim)
        self.cross_layers = int(cross_layers)
        self.hidden_units = check_units(hidden_units, [256, 256])
        self.structure = structure
        self.projection_dim = int(projection_dim) if projection_dim is not None else None
        self.dropout = float(dropout)
        self.l2 = float(l2)
        self.seed = int(seed)

    def build(self, feature_index_or_sizes: Any):
        """The Keras layer, all weights created; create it under the distribution strategy's scope."""
        return _net_class()(self, ctr_sizes(feature_index_or_sizes))

    def __repr__(self) -> str:
        return (
            f"DCNv2(embedding_dim={self.embedding_dim}, cross_layers={self.cross_layers}, hidden_units={self.hidden_units}, "
            f"structure='{self.structure}', projection_dim={self.projection_dim}, dropout={self.dropout}, l2={self.l2}, seed={self.seed})"
        )


@functools.lru_cache(maxsize=None)
def _net_class():
    import keras

    def dense(units: int, input_dim: int, seed: int, name: str, use_bias: bool = True):
        layer = keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name=name)
        layer.build((None, input_dim))
        return layer

    class DCNv2Net(ctr_net_base()):
        def __init__(self, spec: DCNv2, sizes: Dict[str, int]):
            super().__init__(spec, sizes, name="dcn_v2")
            d = self.input_dim
            w_names, v_names = [], []  # w_i, and v_i when low-rank
            for i in range(spec.cross_layers):
                seed = spec.seed + 10 * (i + 1)
                if spec.projection_dim:
                    v_names.append(f"cross_{i}_v")
                    self.add_layer(v_names[-1], dense(spec.projection_dim, d, seed, v_names[-1], use_bias=False))
                    w_names.append(f"cross_{i}_u")
                    self.add_layer(w_names[-1], dense(d, spec.projection_dim, seed + 1, w_names[-1]))
                else:
                    w_names.append(f"cross_{i}_w")
                    self.add_layer(w_names[-1], dense(d, d, seed, w_names[-1]))
            self.cross_w_names, self.cross_v_names = tuple(w_names), tuple(v_names)
            self.hidden_names = self.dense_stack(spec.hidden_units, d, spec.seed + 1000, "deep")
            deep_out = spec.hidden_units[-1] if spec.hidden_units else d
            top = d + deep_out if spec.structure == "parallel" else deep_out
            self.out = dense(1, top, spec.seed + 2000, "logit")
            self.built = True

        def cross_network(self, x0):
            x = x0
            v_layers = self.sublayers(self.cross_v_names)
            for i, w in enumerate(self.sublayers(self.cross_w_names)):
                x = x0 * w(v_layers[i](x) if v_layers else x) + x
            return x

        def logit(self, features: Dict[str, Any], x0, training: bool):
            import tensorflow as tf

            crossed = self.cross_network(x0)
            if self.spec.structure == "stacked":
                top = self.run_stack(self.hidden_names, crossed, training)
            else:
                top = tf.concat([crossed, self.run_stack(self.hidden_names, x0, training)], axis=1)
            return self.out(top)[:, 0]

        def kernels(self) -> List[Any]:
            names = self.cross_w_names + self.cross_v_names + self.hidden_names
            return [layer.kernel for layer in self.sublayers(names)] + [self.out.kernel]

    return DCNv2Net
