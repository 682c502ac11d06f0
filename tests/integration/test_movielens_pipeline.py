"""The MovieLens pipeline end to end through the CLI: real Spark (the session fixture's
local[2]), 2 barrier workers, hnswlib, a sqlite MLflow store. Tiny generated data."""

import json
import os

import pytest

from sparkml_tf.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "conf", "movielens", "config.json")
MACROS = os.path.join(REPO, "conf", "movielens", "macros.json")


def tiny(run_dir, db):
    generator = {"num_users": 300, "num_items": 120, "ratings_per_user": 25, "seed": 1}
    return [
        "--set", f"paths.run_dir={run_dir}",
        "--set", f"dataset.generator={json.dumps(generator)}",
        "--set", f"mlflow.tracking_uri={db}",
        "--set", "mlflow.strict=true",
        "--set", "model.embedding_dim=16",
        "--set", "train.epochs=3",
        "--set", "train.batch_size=32",
        "--set", "train.checkpoint_every_steps=5",
        "--set", "index.ef_construction=50",
    ]


@pytest.mark.spark
@pytest.mark.slow
def test_movielens_pipeline_through_the_cli(spark, tmp_path, capsys):
    import mlflow

    run_dir, db = str(tmp_path / "run"), f"sqlite:///{tmp_path}/mlruns.db"
    assert main(["run", CONFIG, MACROS, *tiny(run_dir, db)]) == 0
    printed = capsys.readouterr().out
    assert "ease" in printed and "popular" in printed and "recall@20" in printed

    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    for key in ("recall@20", "recall@50", "ndcg@100", "num_users", "ann_recall@100", "popular/recall@20", "ease/ndcg@100"):
        assert key in metrics
    assert metrics["num_users"] > 0
    assert metrics["ann_recall@100"] > 0.9
    # The model learned something: better than a random ranking of 120 items.
    assert metrics["recall@20"] > 20 / 120

    client = mlflow.MlflowClient(db)
    (run,) = client.search_runs([client.get_experiment_by_name("movielens").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["recall_at_20"] == pytest.approx(metrics["recall@20"])
    assert run.data.params["train.num_workers"] == "2"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "model", "index", "plots"} <= artifacts

    # A rerun of finished stages is a no-op: every job sees its complete output and skips.
    before = os.path.getmtime(os.path.join(run_dir, "metrics.json"))
    assert main(["run", CONFIG, MACROS, *tiny(run_dir, db)]) == 0
    assert os.path.getmtime(os.path.join(run_dir, "metrics.json")) == before
