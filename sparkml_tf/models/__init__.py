"""Model and loss specs: plain, light classes named in configs; ``build()`` makes the Keras parts
(TensorFlow is imported there, on the worker that trains or serves)."""

from sparkml_tf.lazy import lazy_exports

_LAZY = {
    "AverageModel": "sparkml_tf.models.average",
    "MultVAE": "sparkml_tf.models.vae",
    "BPRLoss": "sparkml_tf.models.losses",
    "WideDeep": "sparkml_tf.models.wide_deep",
    "DCNv2": "sparkml_tf.models.dcn",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = list(_LAZY)
