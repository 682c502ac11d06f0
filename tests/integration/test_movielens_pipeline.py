"""The MovieLens pipeline end to end through the CLI: real Spark (the session fixture's
local[2]), 2 barrier workers, hnswlib, a sqlite MLflow store. Tiny generated data."""

import json
import os

import pytest

from sparkml_tf.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "conf", "movielens", "config.json")
MACROS = os.path.join(REPO, "conf", "movielens", "macros.json")


def write_ratings(path, seed=1, drop_every=0):
    """A MovieLens ratings.csv of tiny generated data (every ``drop_every``-th row left out)."""
    from sparkml_tf.retrieval.generate import generate_ratings

    frame = generate_ratings(num_users=300, num_items=120, ratings_per_user=25, seed=seed)
    frame = frame.rename(columns={"user": "userId", "item": "movieId"})
    if drop_every:
        frame = frame[frame.index % drop_every != 0]
    frame[["userId", "movieId", "rating", "timestamp"]].to_csv(path, index=False)


def tiny(run_dir, db, ratings):
    return [
        "--set", f"paths.run_dir={run_dir}",
        "--set", f"dataset.path={ratings}",
        "--set", "dataset.format=movielens-csv",
        "--set", f"mlflow.tracking_uri={db}",
        "--set", "mlflow.strict=true",
        "--set", "model.embedding_dim=16",
        "--set", "train.max_steps=240",  # the data-sized schedule, its budget cut for a test
        "--set", "train.checkpoint_every_steps=50",
        "--set", "index.ef_construction=50",
    ]


@pytest.mark.spark
@pytest.mark.slow
def test_movielens_pipeline_through_the_cli(spark, tmp_path, capsys, caplog):
    import logging

    import mlflow

    run_dir, db, ratings = str(tmp_path / "run"), f"sqlite:///{tmp_path}/mlruns.db", str(tmp_path / "ratings.csv")
    write_ratings(ratings)
    assert main(["run", CONFIG, MACROS, *tiny(run_dir, db, ratings)]) == 0
    printed = capsys.readouterr().out
    assert "ease" in printed and "popular" in printed and "recall@20" in printed

    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    for key in ("recall@20", "recall@50", "ndcg@100", "num_users", "ann_recall@100", "popular/recall@20", "ease/ndcg@100"):
        assert key in metrics
    assert metrics["num_users"] > 0
    assert metrics["ann_recall@100"] > 0.9
    # The model learned something: better than recommending the most popular items.
    assert metrics["ndcg@100"] > metrics["popular/ndcg@100"] and metrics["recall@20"] > metrics["popular/recall@20"]

    client = mlflow.MlflowClient(db)
    (run,) = client.search_runs([client.get_experiment_by_name("movielens").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["recall_at_20"] == pytest.approx(metrics["recall@20"])
    assert run.data.params["train.num_workers"] == "2"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "model", "index", "plots"} <= artifacts

    # A rerun of finished stages is a no-op: every stage is up to date with its settings and inputs.
    stages = ("dataset", "train", "index", "predict", "evaluate")
    before = os.path.getmtime(os.path.join(run_dir, "metrics.json"))
    with caplog.at_level(logging.INFO, logger="sparkml_tf.engine.base"):
        assert main(["run", CONFIG, MACROS, *tiny(run_dir, db, ratings)]) == 0
    assert os.path.getmtime(os.path.join(run_dir, "metrics.json")) == before
    for stage in stages:
        assert f"{stage}: skipped (up to date)" in caplog.text

    # A new input file, and no --force: the dataset and every stage after it are rebuilt, each saying why.
    write_ratings(ratings, drop_every=7)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sparkml_tf.engine.base"):
        assert main(["run", CONFIG, MACROS, *tiny(run_dir, db, ratings)]) == 0
    assert f"dataset: runs (input {ratings} changed)" in caplog.text
    assert f"train: runs (input {run_dir}/dataset changed)" in caplog.text
    assert f"index: runs (input {run_dir}/embeddings/items changed)" in caplog.text
    assert "predict: runs (input" in caplog.text and "evaluate: runs (input" in caplog.text
    assert os.path.getmtime(os.path.join(run_dir, "metrics.json")) > before
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sparkml_tf.engine.base"):
        assert main(["run", CONFIG, MACROS, *tiny(run_dir, db, ratings)]) == 0
    assert all(f"{stage}: skipped (up to date)" in caplog.text for stage in stages)

    # --job train --force trains afresh from step 0; the old checkpoints are moved aside.
    assert main(["run", CONFIG, MACROS, *tiny(run_dir, db, ratings), "--job", "train", "--force"]) == 0
    forced = [r for r in client.search_runs([client.get_experiment_by_name("movielens").experiment_id]) if r.data.tags.get("sparkml_tf.jobs") == "train"]
    assert len(forced) == 1 and forced[0].data.metrics["resumed_from_step"] == 0 and forced[0].data.metrics["train_steps"] > 0
    assert any(name.startswith("checkpoints.replaced-") for name in os.listdir(run_dir))
