"""The MovieLens pipeline end to end through the CLI: real Spark (the session fixture's
local[2]), 2 barrier workers, hnswlib, a sqlite MLflow store. Tiny generated data."""

import json
import os
import re
import subprocess
import sys

import numpy as np
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


# What must not reach a user's console: TensorFlow's, absl's, gRPC's and CUDA probing's lines
# (glog/absl format, or naming them), and Spark's warnings (log4j lines at WARN).
NOISE = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d:|absl::InitializeLog|oneDNN|cuInit|cuda|CUDA|TF-TRT|tensorflow/|grpc|StartAbort|"
    r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d WARN |^\[Stage \d+"
)
# The JVM's own notice for the vector module Spark's launcher adds (not Spark's logging; no switch turns it off).
JVM_NOTICE = "WARNING: Using incubator modules: jdk.incubator.vector"


def run_cli_quietly(args, cwd):
    """``sparkml-tf ARGS`` in its own process, as a user runs it (no quieting variables of the test
    session's): its exit code and everything it printed, the output of Spark's Python workers and
    of the training processes included."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY") and not k.startswith("MLFLOW_")}
    env.update({"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable})
    done = subprocess.run([sys.executable, "-m", "sparkml_tf.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=1500)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.spark
@pytest.mark.slow
def test_movielens_pipeline_through_the_cli(spark, tmp_path, caplog):
    import logging

    import mlflow

    from sparkml_tf.version import __version__

    run_dir, db, ratings = str(tmp_path / "run"), f"sqlite:///{tmp_path}/mlruns.db", str(tmp_path / "ratings.csv")
    write_ratings(ratings)
    # The first run in its own process, as a user's: a quiet console with training progress, then the summary;
    # with --profile, a profiler trace of training steps and the stages' timings.
    code, printed, errors = run_cli_quietly(["run", CONFIG, MACROS, *tiny(run_dir, db, ratings), "--profile"], cwd=str(tmp_path))
    assert code == 0, errors[-5000:]
    assert "ease" in printed and "popular" in printed and "recall@20" in printed
    stages = ("dataset", "train", "index", "predict", "evaluate")
    noise = [line for line in (printed + errors).splitlines() if NOISE.search(line) and line != JVM_NOTICE]
    assert not noise, "\n".join(noise[:20])
    assert re.search(r"\[sparkml_tf\.train rank 0\] evaluation 1/\d+ \(step \d+/240\): .* examples/s, .*s left at most", errors), errors[-3000:]

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
    summary = printed[printed.index("== run ==") :]
    assert run.info.run_id in summary and f"mlflow ui --backend-store-uri {db}" in summary and f"run directory  {run_dir}" in summary
    headline = next(line for line in summary.splitlines() if line.startswith("metrics"))
    assert f"ndcg@100 {metrics['ndcg@100']:.4f} (" in headline and f"popular {metrics['popular/ndcg@100']:.4f}" in headline
    # The model's metrics apart from the baselines'; the code and the data that made them.
    assert run.data.metrics["model/recall_at_20"] == pytest.approx(metrics["recall@20"])
    assert run.data.metrics["popular/recall_at_20"] == pytest.approx(metrics["popular/recall@20"]) and "recall_at_20" not in run.data.metrics
    assert run.data.params["train.num_workers"] == "2"
    tags = run.data.tags
    assert tags["sparkml_tf.version"] == __version__ and tags["sparkml_tf.data.dataset.path"] == ratings
    assert tags["sparkml_tf.data.dataset.size_bytes"] == str(os.path.getsize(ratings))
    stats = json.load(open(os.path.join(run_dir, "dataset", "stats.json")))
    assert f"train {stats['counts']['rows.train']}" in tags["sparkml_tf.data.dataset.rows"]
    # The export as an MLflow model, with its signature (items -> user_embedding) and an input example.
    mlflow.set_tracking_uri(db)
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/retrieval_model")
    assert [spec.name for spec in model.metadata.signature.inputs.inputs] == ["items"]
    example = model.input_example["items"]
    assert model.predict({"items": example})["user_embedding"].shape == (len(example), 16)
    # any list length, not the example's width: the signature takes the SavedModel's own shapes
    assert model.metadata.signature.inputs.inputs[0].shape == (-1, -1)
    wider = np.pad(np.asarray(example), ((0, 0), (0, 3)), constant_values=-1)
    np.testing.assert_allclose(model.predict({"items": wider})["user_embedding"], model.predict({"items": example})["user_embedding"], rtol=1e-5, atol=1e-6)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "model", "index", "plots", "tensorboard", "profile"} <= artifacts

    # TensorBoard: the chief's scalars only (one event file for 2 workers), how to open them, the --profile trace.
    from sparkml_tf.telemetry.tensorboard import read_scalars

    logdir = os.path.join(run_dir, "tensorboard", "train")
    assert len([f for f in os.listdir(logdir) if f.startswith("events.out.tfevents.")]) == 1
    scalars = read_scalars(logdir)
    assert len(scalars["train/loss"]) == run.data.metrics["train_steps"]
    assert {"validation/val_ndcg@100", "train/learning_rate", "train/examples_per_second"} <= set(scalars)  # the rate under MultiWorkerMirroredStrategy too
    assert f"TensorBoard    tensorboard --logdir {run_dir}/tensorboard" in summary
    profile = printed[printed.index("== profile ==") :]
    for stage in stages:
        assert re.search(rf"^{stage} +\d+\.\d +\d+\.\d +\d+\.\d$", profile, re.M), profile
    (trace,) = [line.split(None, 1)[1] for line in profile.splitlines() if line.startswith("trace ")]
    assert trace.startswith(os.path.join(logdir, "plugins", "profile")) and trace.endswith(".xplane.pb") and os.path.getsize(trace) > 0
    timings = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/profile/stages.json")["stages"]
    assert [t["stage"] for t in timings if t["stage"] in stages] == list(stages) and all(t["wall_s"] > 0 for t in timings)
    # ... and the Spark stages that took the time, from the Spark UI's REST API, named by the pipeline stage that ran them.
    spark_stages = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/profile/spark_stages.json")["spark_stages"]
    assert spark_stages and all(s["wall_s"] is not None and s["tasks"] >= 1 for s in spark_stages)
    assert [s["wall_s"] for s in spark_stages] == sorted((s["wall_s"] for s in spark_stages), reverse=True)
    assert any("dataset" in s["description"] for s in spark_stages) and "longest Spark stages of" in profile

    # A rerun of finished stages is a no-op: every stage is up to date with its settings and inputs.
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
