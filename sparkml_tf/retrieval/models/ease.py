"""Ease: the EASE item-item model (Steck, "Embarrassingly Shallow Autoencoders", WWW 2019) fitted in
closed form by the training workers, with its L2 weight chosen on the validation split.

With ``G = XᵀX`` the Gram matrix of the binary training user×item matrix, ``B = I - P·diag(1/diag(P))``,
``P = (G + λI)⁻¹`` (so ``diag(B) = 0``), and a user with items ``x`` gets the scores ``x·B``. The
Evaluate job's EASE baseline is this model with ``λ = 500``; here ``λ`` is searched on a grid
(``l2``: one value, a list, or null for :data:`DEFAULT_GRID`) and the value with the best validation
NDCG@100 is kept: the regularisation that suits the data at hand, as a practitioner would tune it.
With ``refit`` (the default) the chosen ``λ`` is then fitted again on the training users *and* the
validation users (their fold-in and target items): once ``λ`` is chosen, validation has done its work
and its users are more data. Test users are never seen. (The Evaluate job's EASE baseline is fitted
on the training users only; ``refit: false`` gives the like-for-like comparison.)

Training (:func:`sparkml_tf.retrieval.trainer.fit_closed_form`): every worker reads all training
shards and builds ``G``; the grid is split across the workers, each inverts ``G + λI`` for its share
(float32 Cholesky, in place) and scores the validation users; the scores are all-reduced and the chief
keeps the best ``λ``. No optimizer, no steps: the schedule and learning rate do not apply.

Serving needs nothing new, in the index's terms: ``user_embedding(items) = x`` (the multi-hot row),
``item_embeddings()[i] = B[:, i]`` and zero biases, so ``user . item`` is the model's score. Both
have one dimension per item, so memory is ``4·N²`` bytes per copy of ``B`` (the worker holds three
while fitting; the SavedModel, the item embeddings and the index each hold one): 55 MB at 3,700 items,
1.6 GB at 20,000. A model for catalogues up to some ten thousand items; above, use LinearAE.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from sparkml_tf.errors import bad_value
from sparkml_tf.retrieval.models.inputs import multi_hot, whole_list_example

# Geometric, about 2.5x apart, around the paper's 500: small data wants less (tens to hundreds),
# large dense data more (thousands).
DEFAULT_GRID = (10.0, 25.0, 60.0, 150.0, 400.0, 1000.0, 2500.0, 6000.0)


class Ease:
    closed_form = True  # fitted by fit_closed_form, not by the gradient loop

    def __init__(self, l2: Union[None, float, Sequence[float]] = None, refit: bool = True, max_items: int = 30000, seed: int = 0):
        grid = DEFAULT_GRID if l2 is None else (l2 if isinstance(l2, (list, tuple)) else [l2])
        if not grid or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in grid):
            raise bad_value("l2", f"l2 must be a positive number, a non-empty list of them, or null (search {list(DEFAULT_GRID)}), got {l2!r}")
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise bad_value("max_items", f"max_items must be a positive whole number, got {max_items!r}")
        self.grid: List[float] = sorted({float(v) for v in grid})
        if not isinstance(refit, bool):
            raise bad_value("refit", f"refit must be true or false, got {refit!r}")
        self.refit = refit
        self.max_items = int(max_items)
        self.seed = int(seed)

    def memory_bytes(self, num_items: int) -> int:
        """Peak memory of a fitting worker: the Gram matrix, the matrix being inverted, the best ``B``."""
        return 3 * 4 * int(num_items) ** 2

    def build(self, num_items: int, loss: Any = None):
        """The Keras net holding ``Bᵀ`` (``loss`` is accepted for the common interface and ignored)."""
        return _net_class()(int(num_items))

    def preprocess(self, num_items: int, loss: Any = None) -> Callable[[Any], Dict[str, Any]]:
        return whole_list_example(num_items, loss)

    def __repr__(self) -> str:
        return f"Ease(l2={self.grid if len(self.grid) > 1 else self.grid[0]}, refit={self.refit})"


@functools.lru_cache(maxsize=None)
def _net_class():
    import keras
    import tensorflow as tf

    class EaseNet(keras.layers.Layer):
        def __init__(self, num_items: int):
            super().__init__(name="ease", dtype="float32")
            self.num_items = num_items
            # Row i is item i's vector B[:, i]: user . item = (x·B)_i.
            self.item_vectors = self.add_weight(shape=(num_items, num_items), initializer="zeros", name="item_vectors", trainable=False)
            self.biases = self.add_weight(shape=(num_items,), initializer="zeros", name="item_biases", trainable=False)
            self.built = True

        def set_weights_from(self, B: Optional[Any]) -> None:
            """Load ``B`` (numpy ``N×N``, ``x·B`` scores) as the item vectors."""
            self.item_vectors.assign(B.T)

        def user_embedding(self, items, training: bool = False):
            return multi_hot(items, self.num_items)

        def item_embeddings(self):
            return tf.convert_to_tensor(self.item_vectors)

        def item_biases(self):
            return tf.convert_to_tensor(self.biases)

        def call(self, items, training=False):
            return tf.matmul(multi_hot(items, self.num_items), self.item_vectors, transpose_b=True)

    return EaseNet
