"""A two-trial search end to end on tiny generated data: trials as Spark tasks on the session's
local[2], successive halving, MLflow child runs, a failed trial recorded without stopping the
search, and best_macros.json runnable by the same config."""

import json
import os

import pytest

from sparkml_tf.config import resolve
from sparkml_tf.engine import Pipeline
from sparkml_tf.tracking import MLflowTracker
from sparkml_tf.tuning.search import Tune

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_two_trials_then_a_failed_one(spark, repo_root, tmp_path):
    config = os.path.join(repo_root, "conf/smoke/config.json")
    macros = os.path.join(repo_root, "conf/smoke/macros.json")
    overrides = [f"paths.run_dir={tmp_path}/run", "train.epochs=2"]
    space = {"train.batch_size": {"type": "categorical", "choices": [16, 32, 0]}, "train.patience": {"type": "int", "low": 1, "high": 3}}
    db = f"sqlite:///{tmp_path}/mlruns.db"
    tune = Tune(
        config, space, str(tmp_path / "tune"), macros=macros, overrides=overrides, trials=3, parallelism=2, seed=0,
        include_defaults=False, enqueue=[{"train.batch_size": 32, "train.patience": 3}, {"train.batch_size": 0, "train.patience": 3}],
    )
    tracker = MLflowTracker(tracking_uri=db, experiment="tune-test", strict=True)
    summary = Pipeline([tune], name="tune-test", tracking=tracker).run(spark=spark)["tune"]

    # trial 1 asks for batch_size 0: refused when its settings are built, recorded, and the search went on
    trials = json.loads((tmp_path / "tune" / "trials.json").read_text())
    assert [t["number"] for t in trials] == [0, 1, 2]
    assert trials[1]["state"] == "FAILED" and "[CONFIG_BAD_VALUE] train.batch_size" in trials[1]["error"]
    assert summary["failed"] == 1 and summary["finished"] + summary["pruned"] == 2 and summary["finished"] >= 1
    best = trials[summary["best_trial"]]
    assert best["state"] == "FINISHED" and best["value"] == summary["best_best_ndcg"] > 0

    # the best macros run with the unchanged config
    with open(summary["best_macros"]) as f:
        best_macros = json.load(f)
    assert best_macros["train"]["batch_size"] == best["params"]["train.batch_size"]
    assert best_macros["train"]["patience"] == best["params"]["train.patience"]
    resolved = resolve(config, summary["best_macros"], [f"paths.run_dir={tmp_path}/run"])
    assert resolved.macros["train"]["batch_size"] == best["params"]["train.batch_size"]

    # one MLflow parent run, one child per trial with its validation curve by step
    import mlflow

    client = mlflow.MlflowClient(db)
    runs = client.search_runs([client.get_experiment_by_name("tune-test").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 3
    statuses = sorted(r.info.status for r in children)
    assert statuses.count("FAILED") == 1 and "FINISHED" in statuses
    finished = [r for r in children if r.info.status == "FINISHED"][0]
    curve = client.get_metric_history(finished.info.run_id, "val_ndcg_at_100")
    assert len(curve) >= 1 and all(m.step > 0 for m in curve)
    assert parents[0].data.metrics["trials_failed"] == 1
