"""Spark Connect for real: a Connect server started from the installed pyspark on 127.0.0.1 with a
local[2] master, the smoke pipeline run through it by the CLI (training with launcher 'local', in
the client process), and the coded refusals of what needs sparkContext.

Every client runs in a subprocess: pyspark switches a whole process into Connect mode (an
environment variable) once it makes a Connect session, which would turn the suite's classic session
fixture's columns into Connect ones."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "conf", "smoke", "config.json")
MACROS = os.path.join(REPO, "conf", "smoke", "macros.json")

pytestmark = pytest.mark.skipif(
    int(__import__("pyspark").__version__.split(".")[0]) < 4,
    reason="Spark Connect sessions need pyspark 4.0+ (on 3.5 they are refused: tests/unit/spark/test_spark_connect.py)",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from sparkml_tf.testing.connect import ConnectServer

    with ConnectServer(str(tmp_path_factory.mktemp("connect-server"))) as running:
        yield running


def run(args, cwd, timeout=600):
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


@pytest.mark.slow
def test_smoke_pipeline_over_spark_connect_through_the_cli(server, tmp_path):
    run_dir, db = str(tmp_path / "run"), f"sqlite:///{tmp_path}/mlruns.db"
    args = ["-m", "sparkml_tf.cli", "run", CONFIG, MACROS, "--set", f"macros.spark.master={server.url}", "--set", "train.launcher=local",
            "--set", f"paths.run_dir={run_dir}", "--set", f"tracking.uri={db}"]
    proc = run(args, str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:] + "\n--- server:\n" + server.tail()
    assert "over Spark Connect at " + server.url in proc.stderr
    assert "recall@20" in proc.stdout

    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    for key in ("recall@10", "recall@20", "ndcg@20", "num_users", "ann_recall@100", "popular/recall@20"):
        assert key in metrics
    assert metrics["num_users"] > 0 and metrics["num_users_without_embedding"] == 0
    assert metrics["ann_recall@100"] > 0.9
    # Every stage wrote its output: the executors' report (CheckEnvironment, from the server's Python workers), the
    # dataset (Spark), the model and item embeddings (training here), the index, the user embeddings (Arrow UDF).
    (report, *_) = json.load(open(os.path.join(run_dir, "executors.json")))
    assert report["executable"] == sys.executable and not str(report["tensorflow"]).startswith("MISSING")
    for folder in ("dataset/interactions", "dataset/tfrecord", "export", "embeddings/items", "index", "embeddings/users"):
        assert os.listdir(os.path.join(run_dir, folder)), folder


def test_validate_refuses_barrier_training_for_a_connect_remote(tmp_path):
    proc = run(["-m", "sparkml_tf.cli", "validate", CONFIG, MACROS, "--set", "macros.spark.master=sc://127.0.0.1:15002"], str(tmp_path), timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "[SPARK_CONNECT_UNSUPPORTED] jobs[2]: train: launcher 'spark' runs its workers as an RDD barrier stage" in proc.stderr
    assert "dedicated (single user) Databricks cluster" in proc.stderr


def test_a_connect_session_handed_in_is_refused_before_any_job_runs(server, tmp_path):
    """The notebook's case (Pipeline.run(spark=spark) on shared or serverless compute), and the launchers' own guard."""
    script = textwrap.dedent(
        f"""
        import os
        from pyspark.sql import SparkSession
        from sparkml_tf.config import resolve
        from sparkml_tf.errors import SparkmlTfError
        from sparkml_tf.spark.barrier import SparkBarrierLauncher

        spark = SparkSession.builder.remote({server.url!r}).getOrCreate()
        pipeline = resolve({CONFIG!r}, {MACROS!r}, overrides=["paths.run_dir=run", "tracking.uri=sqlite:///mlruns.db"]).build()
        try:
            pipeline.run(spark=spark)
        except SparkmlTfError as e:
            print("pipeline", e.code, e.message)
        print("ran", sorted(os.listdir("run")) if os.path.exists("run") else [])
        try:
            SparkBarrierLauncher(2, spark=spark).run(print, {{}})
        except SparkmlTfError as e:
            print("launcher", e.code, e.message)
        """
    )
    proc = run(["-c", script], str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.split(" ", 1)[0] in ("pipeline", "ran", "launcher"))
    assert lines["pipeline"].startswith("SPARK_CONNECT_UNSUPPORTED train: launcher 'spark'"), proc.stdout
    assert "classic compute" in lines["pipeline"]
    assert lines["ran"] == "[]"  # refused at the start: not even the dataset stage ran
    assert lines["launcher"].startswith("SPARK_CONNECT_UNSUPPORTED training with launcher 'spark' needs the classic Spark API"), proc.stdout
