"""The job engine: ``Job``, ``Pipeline``, ``RunContext`` and the environment check.

Task jobs live in their task packages (:mod:`sparkml_tf.retrieval`, :mod:`sparkml_tf.ranking`);
the output commit protocol they all use is :mod:`sparkml_tf.io.outputs`.
"""

from sparkml_tf.engine.base import Job, Pipeline, RunContext
from sparkml_tf.lazy import lazy_exports

_LAZY = {"CheckEnvironment": "sparkml_tf.engine.check"}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = ["Job", "Pipeline", "RunContext", *_LAZY]
