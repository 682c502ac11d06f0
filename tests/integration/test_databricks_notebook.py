"""The Databricks notebook, executed here with nbclient: a local[2] session stands in for the
notebook's `spark`, a sqlite store for the workspace MLflow, generated data for MovieLens.

The Databricks-only cells (widgets, %pip, restartPython) are skipped outside Databricks; the
pipeline runs for real, barrier training with 2 workers included.
"""

import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(REPO, "spark-submit", "databricks_movielens.ipynb")
KERNEL = "sparkml-tf-test"
EXPERIMENT = "databricks-notebook-test"


def kernel_spec(jupyter_dir):
    """A kernel that runs this interpreter (the one with sparkml_tf installed), whatever else is on PATH."""
    folder = jupyter_dir / "kernels" / KERNEL
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": KERNEL, "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))


def setup_cell(nbformat, remote=None):
    """Stands in for Databricks: a `spark` session exists before the notebook's first cell (a
    classic one as on a dedicated cluster, or with ``remote`` a Spark Connect one as on shared and
    serverless compute)."""
    make = (
        f"from pyspark.sql import SparkSession\nspark = SparkSession.builder.remote({remote!r}).getOrCreate()"
        if remote
        else "from sparkml_tf.testing import local_spark\nspark = local_spark(cores=2, app_name='databricks-notebook-test')"
    )
    return nbformat.v4.new_code_cell(
        "import os\n"
        "os.environ['SPARK_LOCAL_IP'] = '127.0.0.1'\n"
        f"os.environ['PYSPARK_PYTHON'] = {sys.executable!r}\n" + make
    )


def parameters_cell(nbformat, run_dir, db):
    """What a job would pass: a tiny run (papermill's convention, right after the parameters cell)."""
    generator = {"num_users": 300, "num_items": 120, "ratings_per_user": 25, "seed": 1}
    overrides = [
        f"dataset.generator={json.dumps(generator)}",
        "mlflow.strict=true",
        "model.embedding_dim=16",
        "train.epochs=2",
        "train.batch_size=32",
        "train.checkpoint_every_steps=5",
        "index.ef_construction=50",
    ]
    source = "\n".join(f"{name} = {value!r}" for name, value in {
        "run_dir": run_dir,
        "mlflow_tracking_uri": db,
        "mlflow_experiment": EXPERIMENT,
        "num_workers": 2,
        "overrides": overrides,
    }.items())
    return nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})


def printed(nb):
    return "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs if out.output_type == "stream" and out.name == "stdout"
    )


def execute(tmp_path, monkeypatch, remote=None):
    """Run the notebook as a job would; (printed text, metrics.json, the MLflow run)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    import mlflow

    jupyter = tmp_path / "jupyter"
    kernel_spec(jupyter)
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)

    run_dir, db = str(tmp_path / "run"), f"sqlite:///{tmp_path}/mlruns.db"
    # Created here so that its artifacts go under tmp_path, not the kernel's working directory.
    client = mlflow.MlflowClient(db)
    client.create_experiment(EXPERIMENT, artifact_location=(tmp_path / "artifacts").as_uri())

    nb = nbformat.read(NOTEBOOK, as_version=4)
    (position,) = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    nb.cells.insert(position + 1, parameters_cell(nbformat, run_dir, db))
    nb.cells.insert(0, setup_cell(nbformat, remote))
    nb.cells.append(nbformat.v4.new_code_cell("spark.stop()"))

    # The kernel starts in the notebook's folder, as on Databricks, so the default conf paths resolve.
    nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}).execute()

    text = printed(nb)
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    return text, metrics, run


@pytest.mark.slow
def test_databricks_notebook_runs_the_pipeline_on_the_given_session(tmp_path, monkeypatch):
    text, metrics, run = execute(tmp_path, monkeypatch)
    assert "== evaluate ==" in text and "recall@20" in text and "ease" in text and "popular" in text
    for key in ("recall@20", "recall@50", "ndcg@100", "num_users", "ann_recall@100", "popular/recall@20", "ease/ndcg@100"):
        assert key in metrics
    assert metrics["num_users"] > 0
    assert run.info.status == "FINISHED"
    assert f"MLflow run {run.info.run_id}" in text
    assert run.data.metrics["model/recall_at_20"] == pytest.approx(metrics["recall@20"])  # the model's own, apart from the baselines'
    assert run.data.params["train.num_workers"] == "2"
    assert run.data.params["train.launcher"] == "spark"


@pytest.mark.slow
@pytest.mark.skipif(int(__import__("pyspark").__version__.split(".")[0]) < 4, reason="Spark Connect sessions need pyspark 4.0+")
def test_databricks_notebook_on_a_spark_connect_session(tmp_path, monkeypatch):
    """Shared and serverless compute: the notebook's `spark` is a Connect session (a real Connect
    server here). Training runs in the notebook's process, every other stage through Connect."""
    from sparkml_tf.testing.connect import ConnectServer

    with ConnectServer(str(tmp_path / "server")) as server:
        text, metrics, run = execute(tmp_path, monkeypatch, remote=server.url)
    assert "Spark Connect session: training runs in the notebook's Python process" in text
    assert "== evaluate ==" in text and metrics["num_users"] > 0 and "ease/ndcg@100" in metrics
    assert run.info.status == "FINISHED" and run.data.params["train.launcher"] == "local"
