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


def test_the_environment_names_store_and_experiment_unless_the_config_does(tmp_path, monkeypatch):
    env_uri, own_uri = f"sqlite:///{tmp_path}/env.db", f"sqlite:///{tmp_path}/own.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    runs = {}
    trackers = {"env": MLflowTracker(None, None, default_experiment="movielens", strict=True), "own": MLflowTracker(own_uri, "mine", strict=True)}
    for name, tracker in trackers.items():
        tracker.start("run")
        tracker.end()
        runs[name] = tracker.run_info()
    assert (runs["env"]["tracking_uri"], runs["env"]["experiment"]) == (env_uri, "from-env")
    assert (runs["own"]["tracking_uri"], runs["own"]["experiment"]) == (own_uri, "mine")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    default = MLflowTracker(None, None, default_experiment="movielens")
    assert (default.tracking_uri, default.experiment) == ("sqlite:///mlruns.db", "movielens")


def test_a_run_carries_its_code_and_names_the_models_metrics_apart_from_the_baselines(tmp_path):
    import mlflow

    from sparkml_tf.tracking.provenance import code_version

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    tracker = MLflowTracker(uri, experiment="t", strict=True)
    tracker.start("run")
    tracker.log_evaluation({"recall@20": 0.5, "popular/recall@20": 0.1})
    tracker.set_tags({"sparkml_tf.data.dataset.rows": "train 10"})
    tracker.end()
    client = mlflow.MlflowClient(uri)
    run = client.get_run(tracker.run_info()["run_id"])
    assert run.data.metrics == {"model/recall_at_20": 0.5, "popular/recall_at_20": 0.1}
    assert {k: run.data.tags.get(k) for k in code_version()} == code_version() and run.data.tags["sparkml_tf.data.dataset.rows"] == "train 10"
    # MLflow 3 opens an experiment of this kind on its runs, not on the GenAI overview.
    assert client.get_experiment_by_name("t").tags["mlflow.experimentKind"] == "custom_model_development"


def test_code_differences_in_words():
    from sparkml_tf.tracking.provenance import code_differences

    now = {"sparkml_tf.version": "0.2.0", "sparkml_tf.git_commit": "b" * 40, "sparkml_tf.git_dirty": "true", "sparkml_tf.git_diff_sha256": "d1"}
    assert code_differences(dict(now), now) == []  # the same commit with the same uncommitted changes
    said = code_differences({"sparkml_tf.version": "0.1.0", "sparkml_tf.git_commit": "a" * 40, "sparkml_tf.git_dirty": "false"}, now)
    assert said == ["sparkml_tf 0.1.0 ran it, 0.2.0 is installed", f"it ran at git commit {'a' * 12}, this checkout is at {'b' * 12}"]
    assert code_differences({**now, "sparkml_tf.git_diff_sha256": "d0"}, now) == [
        f"it ran with uncommitted changes to {'b' * 12} that this checkout does not have"
    ]
    assert code_differences({"sparkml_tf.git_commit": "a" * 40}, {"sparkml_tf.version": "0.2.0"}) == [
        f"it ran at git commit {'a' * 12}; the installed sparkml_tf is not a git checkout"
    ]
