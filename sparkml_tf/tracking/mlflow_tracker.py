"""MLflow tracking for a pipeline run: configs, flattened params, metrics, artifacts.

The run starts when the pipeline runs, never while the config is parsed. A tracking failure is
never silent: it is logged with its cause and counted, and with ``strict`` it stops the run.

Where runs go: a ``tracking_uri`` or ``experiment`` the config sets (not null) wins; else MLflow's
own environment variables (``MLFLOW_TRACKING_URI``; ``MLFLOW_EXPERIMENT_NAME`` or
``MLFLOW_EXPERIMENT_ID``), as every MLflow user and Databricks sets them; else ``sqlite:///mlruns.db``
and ``default_experiment``. Every run is tagged with the code that made it (package version, git
commit: :mod:`sparkml_tf.tracking.provenance`); an evaluation's model metrics are named
``model/<name>``, apart from the baselines' ``<baseline>/<name>``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from typing import Any, Dict, List, Optional

from sparkml_tf.errors import TrackingError
from sparkml_tf.tracking.base import Tracker

LOGGER = logging.getLogger(__name__)
DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
DEFAULT_EXPERIMENT = "sparkml_tf"
MODEL_PREFIX = "model/"
# The MLflow 3 UI opens an experiment of this kind on its runs (model training), not on the GenAI overview.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow writes these into the environment when a run starts (for subprocesses); a run's end puts back
# what was there, so the next pipeline in this process reads the user's settings, not the last run's.
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")


def tracking_uri_in_force(explicit: Optional[str] = None) -> str:
    """The config's URI when it sets one, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns.db``."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
_MAX_PARAM_LENGTH = 6000


def flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    """``{"a": {"b": [1, 2]}}`` -> ``{"a.b.0": 1, "a.b.1": 2}`` (MLflow param keys allow no brackets)."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return {prefix: node}
    out: Dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


class MLflowTracker(Tracker):
    def __init__(
        self,
        tracking_uri: Optional[str] = None,
        experiment: Optional[str] = None,
        run_name: Optional[str] = None,
        strict: bool = False,
        config: Any = None,
        macros: Any = None,
        macros_eval: Any = None,
        tags: Optional[Dict[str, str]] = None,
        default_experiment: str = DEFAULT_EXPERIMENT,
    ):
        # None: MLflow's environment variables decide, else the defaults (see the module's docstring).
        self.tracking_uri = tracking_uri_in_force(tracking_uri)
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or None
        self.experiment_id = None if self.experiment else os.environ.get("MLFLOW_EXPERIMENT_ID") or None
        if not self.experiment and not self.experiment_id:
            self.experiment = default_experiment
        self.run_name = run_name
        self.strict = strict
        self.config, self.macros, self.macros_eval = config, macros, macros_eval
        self.tags = dict(tags or {})
        self.failures: List[str] = []
        self.run_id: Optional[str] = None
        self._last_run: Optional[Dict[str, str]] = None
        self._saved_env: Optional[Dict[str, Optional[str]]] = None

    def _guard(self, what: str, fn, *args, **kwargs) -> Any:
        if self.run_id is None and what != "start run":
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            message = f"MLflow could not {what} ({type(e).__name__}: {e}); check tracking_uri={self.tracking_uri!r}"
            if self.strict:
                raise TrackingError("TRACKING_FAILED", message + "; or set tracking.strict=false to carry on without it") from e
            self.failures.append(message)
            LOGGER.warning("%s; the run goes on untracked for this call (tracking.strict=true makes this fatal)", message)
            return None

    def start(self, run_name: str, tags: Optional[Dict[str, str]] = None) -> None:
        import mlflow

        from sparkml_tf.tracking.provenance import code_version

        def _start():
            mlflow.set_tracking_uri(self.tracking_uri)
            experiment = mlflow.set_experiment(experiment_name=self.experiment, experiment_id=self.experiment_id)
            client = mlflow.MlflowClient()
            if EXPERIMENT_KIND_TAG not in (experiment.tags or {}):
                client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            close_dead_runs(client, experiment.experiment_id)
            owner = {"sparkml_tf.host": socket.gethostname(), "sparkml_tf.pid": str(os.getpid())}
            # MLFLOW_RUN_ID in the environment resumes a run: how separate spark-submits share one.
            run = mlflow.start_run(run_name=self.run_name or run_name, tags={**self.tags, **(tags or {}), **owner, **code_version()})
            self._last_run = {
                "run_id": run.info.run_id, "experiment_id": experiment.experiment_id, "experiment": experiment.name, "tracking_uri": self.tracking_uri,
            }
            return run.info.run_id

        self._saved_env = {name: os.environ.get(name) for name in MLFLOW_ENV}
        self.run_id = self._guard("start run", _start)
        if not self.run_id:
            self._restore_env()
        if self.run_id:
            LOGGER.info("MLflow run %s (tracking_uri=%s, experiment=%s)", self.run_id, self.tracking_uri, self._last_run["experiment"])
            self._log_configs()

    def create_run(self, run_name: str, tags: Optional[Dict[str, str]] = None) -> Optional[str]:
        """A run for other processes to log into (``MLFLOW_RUN_ID``), in the experiment this tracker's
        runs go to, left RUNNING: ``sparkml-tf submit`` makes one for all its stages. None (and a
        warning; fatal with ``strict``) when MLflow cannot be reached."""
        import mlflow

        from sparkml_tf.tracking.provenance import code_version

        def _create():
            client = mlflow.MlflowClient(self.tracking_uri)
            if self.experiment_id:
                experiment_id = self.experiment_id
            else:
                found = client.get_experiment_by_name(self.experiment)
                experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
            experiment = client.get_experiment(experiment_id)
            if EXPERIMENT_KIND_TAG not in (experiment.tags or {}):
                client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            owner = {"sparkml_tf.host": socket.gethostname(), "sparkml_tf.pid": str(os.getpid())}
            run = client.create_run(experiment_id, run_name=self.run_name or run_name, tags={**self.tags, **(tags or {}), **owner, **code_version()})
            self._last_run = {"run_id": run.info.run_id, "experiment_id": experiment_id, "experiment": experiment.name, "tracking_uri": self.tracking_uri}
            return run.info.run_id

        # Asked before any stage starts: an unreachable server answers in seconds, not after MLflow's minutes of retries.
        quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
        saved = {name: os.environ.get(name) for name in quick}
        os.environ.update({name: value for name, value in quick.items() if saved[name] is None})
        self.run_id = "creating"  # _guard acts only while a run is open
        try:
            return self._guard("create a run", _create)
        finally:
            self.run_id = None
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)

    def terminate_run(self, run_id: str, status: str = "FINISHED") -> None:
        """End a run made by :meth:`create_run` (what its last process left it as is overwritten)."""
        import mlflow

        self.run_id = run_id
        try:
            self._guard("end run", mlflow.MlflowClient(self.tracking_uri).set_terminated, run_id, status=status)
        finally:
            self.run_id = None

    def _log_configs(self) -> None:
        from sparkml_tf.config import fill_macros

        if self.config is not None:
            self.log_dict(self.config, "config/config.json")
        if self.macros is not None:
            self.log_dict(self.macros, "config/macros.json")
        if self.config is not None and self.macros_eval is not None:
            self.log_dict(fill_macros(self.config, self.macros_eval), "config/resolved.json")
        # Under "macros.": jobs log their own settings as "<job name>.<key>", and a macro group
        # named like a job (dataset, train) would otherwise collide with a different value.
        if self.macros_eval:
            self.log_params(flatten(self.macros_eval, "macros"))

    def end(self, status: str = "FINISHED") -> None:
        import mlflow

        try:
            self._guard("end run", mlflow.end_run, status=status)
        finally:
            self._restore_env()
        if self.failures:
            LOGGER.warning("%d MLflow call(s) failed in this run; the first: %s", len(self.failures), self.failures[0])
        self.run_id = None

    def _restore_env(self) -> None:
        for name, value in (self._saved_env or {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = None

    def log_params(self, params: Dict[str, Any]) -> None:
        import mlflow

        clean = {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v))[:_MAX_PARAM_LENGTH] for k, v in params.items()}
        items = list(clean.items())
        for i in range(0, len(items), 100):  # MLflow's batch limit
            self._guard("log params", mlflow.log_params, dict(items[i : i + 100]))

    def log_metrics(self, metrics: Dict[str, float], step: Optional[int] = None) -> None:
        import mlflow

        clean = {k.replace("@", "_at_"): float(v) for k, v in metrics.items()}
        self._guard("log metrics", mlflow.log_metrics, clean, step=step)

    def log_evaluation(self, metrics: Dict[str, float]) -> None:
        """The model's metrics as ``model/<name>``: in the MLflow UI they sit in their own group,
        beside each baseline's (``popular/...``, ``ease/...``), never mistaken for one of them."""
        self.log_metrics({(k if "/" in k else MODEL_PREFIX + k): v for k, v in metrics.items()})

    def set_tags(self, tags: Dict[str, Any]) -> None:
        import mlflow

        self._guard("set tags", mlflow.set_tags, {k: str(v)[:_MAX_PARAM_LENGTH] for k, v in tags.items()})

    def log_model(self, saved_model_dir: str, name: str, input_example: Dict[str, Any], registered_model_name: Optional[str] = None) -> None:
        """The SavedModel as an MLflow ``pyfunc`` model (:mod:`sparkml_tf.serving.mlflow_pyfunc`:
        loading it needs MLflow and TensorFlow only) with its signature, inferred from
        ``input_example`` run through the model, and the example; registered when a name is given."""
        import mlflow

        def _log():
            local = saved_model_dir[len("file://") :] if saved_model_dir.startswith("file://") else saved_model_dir
            info = self._log_pyfunc(mlflow, name, local, input_example, registered_model_name)
            LOGGER.info("logged the model as %s%s", info.model_uri, f", registered as '{registered_model_name}'" if registered_model_name else "")
            return info

        self._guard(f"log model {name}", _log)

    @staticmethod
    def _log_pyfunc(mlflow, name: str, local: str, input_example: Dict[str, Any], registered_model_name: Optional[str]):
        import importlib.metadata

        from sparkml_tf.serving import mlflow_pyfunc_path

        return mlflow.pyfunc.log_model(
            name=name,
            python_model=mlflow_pyfunc_path(),
            artifacts={"saved_model": local},
            input_example=input_example,
            signature=_signature(local, input_example),
            # Given, not inferred (inference loads the model once more in a subprocess).
            pip_requirements=[f"tensorflow=={importlib.metadata.version('tensorflow')}", f"numpy=={importlib.metadata.version('numpy')}"],
            registered_model_name=registered_model_name,
        )

    def run_info(self) -> Optional[Dict[str, str]]:
        return dict(self._last_run) if self._last_run else None

    def log_artifact(self, local_path: str, artifact_path: Optional[str] = None) -> None:
        import mlflow

        fn = mlflow.log_artifacts if os.path.isdir(local_path) else mlflow.log_artifact
        self._guard(f"log artifact {local_path}", fn, local_path, artifact_path)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        import mlflow

        self._guard(f"log {artifact_file}", mlflow.log_dict, data, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        import mlflow

        self._guard(f"log figure {artifact_file}", mlflow.log_figure, figure, artifact_file)

    def log_child_run(
        self, run_name: str, params: Dict[str, Any], history: List[Dict[str, float]], status: str = "FINISHED", tags: Optional[Dict[str, str]] = None
    ) -> None:
        import mlflow

        def _child():
            with mlflow.start_run(run_name=run_name, nested=True, tags=dict(tags or {})) as child:
                if params:
                    mlflow.log_params({k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v))[:_MAX_PARAM_LENGTH] for k, v in params.items()})
                for entry in history:
                    values = {k.replace("@", "_at_"): float(v) for k, v in entry.items() if k != "step" and isinstance(v, (int, float))}
                    if values:
                        mlflow.log_metrics(values, step=int(entry.get("step", 0)))
                mlflow.set_tag("sparkml_tf.trial_status", status)
            # The context manager ended it FINISHED; a failed or pruned trial is recorded as such.
            if status != "FINISHED":
                mlflow.tracking.MlflowClient().set_terminated(child.info.run_id, status="FAILED" if status == "FAILED" else "KILLED")

        self._guard(f"log child run {run_name}", _child)


def close_dead_runs(client, experiment_id: str) -> List[str]:
    """Mark KILLED the runs left RUNNING by a process of this host that is gone (a killed driver
    cannot end its run); their ids. Runs of other hosts cannot be checked and are left alone."""
    from sparkml_tf.io.locks import alive

    host, closed = socket.gethostname(), []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=200):
        tags = run.data.tags
        pid = tags.get("sparkml_tf.pid", "")
        if tags.get("sparkml_tf.host") == host and pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
            LOGGER.warning("MLflow run %s was left RUNNING by process %s, which is gone: marked KILLED", run.info.run_id, pid)
    return closed


def download_configs(run_id: str, tracking_uri: Optional[str] = None) -> Dict[str, str]:
    """Download a run's logged config and macros; returns ``{"config": path, "macros": path}``
    (``tracking_uri`` None: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns.db``)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri_in_force(tracking_uri))
    target = tempfile.mkdtemp(prefix=f"sparkml_tf-{run_id[:8]}-")
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config", dst_path=target)
    except Exception as e:
        raise TrackingError(
            "TRACKING_RUN_NOT_FOUND", f"cannot download the config of MLflow run {run_id} ({type(e).__name__}: {e}); check the run id and --tracking-uri"
        ) from e
    paths = {name: os.path.join(local, f"{name}.json") for name in ("config", "macros")}
    if not os.path.exists(paths["config"]):
        raise TrackingError("TRACKING_RUN_NOT_FOUND", f"MLflow run {run_id} has no config/config.json artifact; it was not started by a sparkml_tf pipeline")
    return paths


def run_tags(run_id: str, tracking_uri: Optional[str] = None) -> Dict[str, str]:
    """The tags of a logged run ({} when it cannot be read: the caller only warns with them)."""
    import mlflow

    try:
        return dict(mlflow.MlflowClient(tracking_uri_in_force(tracking_uri)).get_run(run_id).data.tags)
    except Exception as e:
        LOGGER.debug("cannot read the tags of run %s: %s", run_id, e)
        return {}


def _signature(saved_model_dir: str, input_example: Dict[str, Any]):
    """The pyfunc's signature from the SavedModel's own ``serving_default``: input shapes as the model
    declares them (a padded item list is ``(-1, -1)``, any length, not the example's width), outputs
    from running the example (batch dimension ``-1``)."""
    import numpy as np
    import tensorflow as tf
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    fn = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    outputs = fn(**{key: tf.constant(np.asarray(value), dtype=specs[key].dtype) for key, value in input_example.items()})
    declared = {key: tuple(-1 if d is None else int(d) for d in spec.shape) for key, spec in specs.items()}
    inputs = Schema([TensorSpec(np.dtype(spec.dtype.as_numpy_dtype), declared[key], key) for key, spec in specs.items()])
    returned = Schema([TensorSpec(np.dtype(t.dtype.as_numpy_dtype), (-1, *[int(d) for d in t.shape[1:]]), key) for key, t in outputs.items()])
    return ModelSignature(inputs=inputs, outputs=returned)
