"""An MLflow ``pyfunc`` model around a SavedModel's ``serving_default`` signature.

MLflow "models from code": :meth:`sparkml_tf.tracking.MLflowTracker.log_model` logs this file as
the model's code and the SavedModel directory as its ``saved_model`` artifact. Loading it
(``mlflow.pyfunc.load_model``, ``mlflow models serve``) needs MLflow and TensorFlow only, not
sparkml_tf. ``predict`` takes the signature's inputs by name (a dict of arrays, or a DataFrame whose
columns hold one array per row) and returns its outputs as a dict of numpy arrays.

Never imported by the package: MLflow runs this file when it loads the model.
"""

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class SavedModelPyfunc(PythonModel):
    def load_context(self, context):
        import tensorflow as tf

        self._loaded = tf.saved_model.load(context.artifacts["saved_model"])
        self._fn = self._loaded.signatures["serving_default"]
        self._inputs = {name: spec for name, spec in self._fn.structured_input_signature[1].items()}

    # The hint is one MLflow takes as "validate against the signature" (a dict of arrays passes too).
    def predict(self, context, model_input: pd.DataFrame, params=None):
        import tensorflow as tf

        columns = dict(model_input) if isinstance(model_input, dict) else {c: model_input[c] for c in model_input.columns}
        missing = sorted(set(self._inputs) - set(columns))
        if missing:
            raise ValueError(f"the model needs inputs {sorted(self._inputs)}; missing {missing}")
        feed = {}
        for name, spec in self._inputs.items():
            value = columns[name]
            if not isinstance(value, np.ndarray) or value.dtype == object:  # a DataFrame column, a list: one array per row
                rows = [np.asarray(v) for v in value]
                value = np.stack(rows) if rows and rows[0].ndim > 0 else np.asarray(rows)
            feed[name] = tf.constant(value, dtype=spec.dtype)
        return {name: tensor.numpy() for name, tensor in self._fn(**feed).items()}


mlflow.models.set_model(SavedModelPyfunc())
