import json
import logging

import pytest

from sparkml_tf.errors import TrackingError
from sparkml_tf.tracking import MLflowTracker, download_configs, flatten


def test_flatten():
    assert flatten({"a": {"b": [1, {"c": 2}]}, "d": None}) == {"a.b.0": 1, "a.b.1.c": 2, "d": None}


def test_logs_configs_params_and_metrics_to_a_sqlite_store(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    config = {"type": "x", "v": "$p:a"}
    tracker = MLflowTracker(uri, experiment="t", strict=True, config=config, macros={"p": {"a": "$p:b", "b": 2}}, macros_eval={"p": {"a": 2, "b": 2}})
    tracker.start("run")
    run_id = tracker.run_id
    tracker.log_metrics({"recall@20": 0.5}, step=1)
    tracker.end()
    run = mlflow.MlflowClient(uri).get_run(run_id)
    assert run.data.params == {"macros.p.a": "2", "macros.p.b": "2"}
    assert run.data.metrics == {"recall_at_20": 0.5}
    paths = download_configs(run_id, uri)
    assert json.load(open(paths["config"])) == config
    resolved = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config/resolved.json", tracking_uri=uri)
    assert json.load(open(resolved)) == {"type": "x", "v": 2}


def unusable_uri(tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    return f"sqlite:///{tmp_path}/a_file/x.db"


def test_failure_is_reported_not_silent(tmp_path, caplog):
    tracker = MLflowTracker(unusable_uri(tmp_path), experiment="t")
    with caplog.at_level(logging.WARNING):
        tracker.start("run")
    assert tracker.run_id is None
    assert tracker.failures and "MLflow could not start run" in tracker.failures[0]
    assert "MLflow could not start run" in caplog.text


def test_strict_failure_is_fatal(tmp_path):
    tracker = MLflowTracker(unusable_uri(tmp_path), experiment="t", strict=True)
    with pytest.raises(TrackingError) as info:
        tracker.start("run")
    assert info.value.code == "TRACKING_FAILED"
    assert info.value.__cause__ is not None


def test_unknown_run_id(tmp_path):
    with pytest.raises(TrackingError) as info:
        download_configs("0" * 32, f"sqlite:///{tmp_path}/m.db")
    assert info.value.code == "TRACKING_RUN_NOT_FOUND"
