"""The CTR pipeline end to end through the CLI: feature index, 2 barrier workers training
Wide & Deep, TF Serving export, evaluation against logistic regression, date-partitioned
scoring with quarantine. Real Spark (the session fixture's local[2]), sqlite MLflow, tiny data."""

import glob
import json
import os

import pytest

from sparkml_tf.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "conf", "ctr", "config.json")
MACROS = os.path.join(REPO, "conf", "ctr", "macros.json")


def tiny(run_dir, db):
    return [
        "--set", f"paths.run_dir={run_dir}",
        "--set", 'dataset.generator={"num_rows": 12000, "max_cardinality": 200}',
        "--set", "dataset.cross_buckets=2000",
        "--set", f"mlflow.tracking_uri={db}",
        "--set", "mlflow.strict=true",
        "--set", "model.hidden_units=[64,64]",
        "--set", "train.epochs=4",
        "--set", "train.batch_size=256",
        "--set", "train.checkpoint_every_steps=20",
        "--set", "export.warmup_records=20",
        "--set", "export.registered_model_name=ctr-test",
        "--set", 'candidates.dates=["2026-01-01"]',
        "--set", "candidates.requests_per_date=20",
        "--set", "candidates.ads_per_request=50",
        "--set", "candidates.malformed_fraction=0.05",
    ]


@pytest.mark.spark
@pytest.mark.slow
def test_ctr_pipeline_through_the_cli(spark, tmp_path, capsys):
    import mlflow
    import pyarrow.parquet as pq

    run_dir, db = str(tmp_path / "run"), f"sqlite:///{tmp_path}/mlruns.db"
    assert main(["run", CONFIG, MACROS, *tiny(run_dir, db)]) == 0
    printed = capsys.readouterr().out
    assert "logistic_regression" in printed and "auc" in printed

    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["num_examples"] > 0
    # The model sees the hidden crosses (wide part, deep part); logistic regression over single fields cannot.
    assert metrics["auc"] > metrics["logistic_regression/auc"]
    assert metrics["auc"] > 0.6

    (version,) = glob.glob(os.path.join(run_dir, "export", "*", "saved_model.pb"))
    version_dir = os.path.dirname(version)
    assert os.path.exists(os.path.join(version_dir, "assets", "feature_index.json"))
    assert os.path.exists(os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests"))

    scores = pq.read_table(os.path.join(run_dir, "scores", "date=2026-01-01")).to_pandas()
    quarantine = pq.read_table(os.path.join(run_dir, "quarantine", "date=2026-01-01")).to_pandas()
    assert len(scores) + len(quarantine) == 20 * 50
    assert len(quarantine) > 0 and quarantine["reason"].notna().all()
    assert not scores.duplicated(["request_id", "ad_id"]).any()
    assert scores["probability"].between(0, 1).all()

    client = mlflow.MlflowClient(db)
    (run,) = client.search_runs([client.get_experiment_by_name("sparkml-tf-ctr").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.num_workers"] == "2"

    # The export as an MLflow model with its signature: loaded back, it scores as the export does;
    # a version of it is registered under the configured name.
    import numpy as np
    import tensorflow as tf

    from sparkml_tf.ranking.export import random_features
    from sparkml_tf.ranking.features.feature_index import FeatureIndex

    mlflow.set_tracking_uri(db)
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/ctr_model")
    signature = model.metadata.signature
    assert signature is not None and {spec.name for spec in signature.inputs.inputs} == {"deep_ids", "wide_ids", "dense"}
    assert {spec.name for spec in signature.outputs.inputs} >= {"probability"} and model.input_example is not None
    features = random_features(FeatureIndex.load(os.path.join(version_dir, "assets", "feature_index.json")), 64, seed=3)
    export = tf.saved_model.load(version_dir).signatures["serving_default"]
    expected = export(**{k: tf.constant(v) for k, v in features.items()})["probability"].numpy()
    np.testing.assert_allclose(model.predict(features)["probability"], expected, rtol=1e-6)
    assert [int(v.version) for v in client.search_model_versions("name='ctr-test'")] == [1]
