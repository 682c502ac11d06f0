"""Jobs: the steps of a pipeline. ``sparkml_tf.jobs.Train`` etc. load their module on first use."""

from sparkml_tf.jobs.base import Job, Pipeline, RunContext
from sparkml_tf.jobs.outputs import atomic_output, is_complete
from sparkml_tf.lazy import lazy_exports

_LAZY = {
    "CheckEnvironment": "sparkml_tf.jobs.check",
    "BuildDataset": "sparkml_tf.jobs.dataset",
    "Train": "sparkml_tf.jobs.train",
    "BuildIndex": "sparkml_tf.jobs.index",
    "Predict": "sparkml_tf.jobs.predict",
    "Evaluate": "sparkml_tf.jobs.evaluate",
    "BuildCtrDataset": "sparkml_tf.jobs.ctr_dataset",
    "GenerateCtrCandidates": "sparkml_tf.jobs.ctr_dataset",
    "TrainCtr": "sparkml_tf.jobs.ctr_train",
    "ExportCtr": "sparkml_tf.jobs.ctr_export",
    "EvaluateCtr": "sparkml_tf.jobs.ctr_evaluate",
    "ScoreCandidates": "sparkml_tf.jobs.score",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = ["Job", "Pipeline", "RunContext", "atomic_output", "is_complete", *_LAZY]
