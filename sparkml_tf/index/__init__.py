"""Approximate nearest-neighbour search over item embeddings (hnswlib, imported on use)."""

from sparkml_tf.lazy import lazy_exports

_LAZY = {"HnswIndex": "sparkml_tf.index.hnsw", "exact_search": "sparkml_tf.index.hnsw"}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = list(_LAZY)
