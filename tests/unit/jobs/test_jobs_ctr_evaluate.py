import json

import numpy as np
import pytest
from ctr_scoring_fixtures import feature_index, save_model, write_encoded_dataset

from sparkml_tf.engine.base import RunContext
from sparkml_tf.errors import ConfigError, DataError
from sparkml_tf.testing import RecordingTracker


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctr_evaluate")
    index = feature_index()
    table = write_encoded_dataset(root / "dataset", index)
    model_path = save_model(root / "export", index)
    return {"root": root, "table": table, "model_path": model_path, "index": index}


def evaluate(spark, world, output, force=False, **kwargs):
    from sparkml_tf.ranking.jobs.evaluate import EvaluateCtr

    job = EvaluateCtr(str(world["root"] / "dataset"), str(world["root"] / "export"), str(output), **kwargs)
    ctx = RunContext(force=force, tracker=RecordingTracker(), _spark=spark)
    return job.run(ctx), ctx.tracker


def direct(world, split):
    """Labels and the model's probabilities for ``split``, computed without Spark."""
    import tensorflow as tf

    table = world["table"].filter(np.asarray(world["table"].column("split").to_pylist()) == split)
    fn = tf.saved_model.load(world["model_path"]).signatures["serving_default"]
    features = {
        "deep_ids": tf.constant(np.array(table.column("deep_ids").to_pylist(), np.int64)),
        "wide_ids": tf.constant(np.array(table.column("wide_ids").to_pylist(), np.int64)),
        "dense": tf.constant(np.array(table.column("dense").to_pylist(), np.float32)),
    }
    return table.column("label").to_numpy(), fn(**features)["probability"].numpy()


def test_metrics_of_the_model_and_the_logistic_regression_baseline(spark, world, tmp_path):
    from sklearn.metrics import log_loss, roc_auc_score

    output = tmp_path / "metrics.json"
    metrics, tracker = evaluate(spark, world, output)
    assert json.loads(output.read_text()) == metrics
    assert set(metrics) == {
        "auc", "logloss", "num_examples", "positive_rate",
        "logistic_regression/auc", "logistic_regression/logloss", "logistic_regression/num_examples", "logistic_regression/num_train_examples",
    }  # fmt: skip
    labels, probabilities = direct(world, "test")
    assert metrics["num_examples"] == metrics["logistic_regression/num_examples"] == 200
    assert metrics["logistic_regression/num_train_examples"] == 400
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, probabilities), abs=1e-9)
    assert metrics["logloss"] == pytest.approx(log_loss(labels, probabilities), rel=1e-5)
    assert metrics["positive_rate"] == pytest.approx(labels.mean())
    # The labels follow a logistic model of C1 and I1: the baseline learns them, the random model does not.
    assert metrics["logistic_regression/auc"] > 0.7 > metrics["auc"]
    assert metrics["logistic_regression/logloss"] < metrics["logloss"]
    assert tracker.metrics == metrics and tracker.artifacts == [str(output)]

    again, _ = evaluate(spark, world, output, baselines=[])  # exists: returned as it is
    assert again == metrics
    redone, _ = evaluate(spark, world, output, force=True, baselines=[], split="validation")
    labels, probabilities = direct(world, "validation")
    assert set(redone) == {"auc", "logloss", "num_examples", "positive_rate"} and redone["num_examples"] == 50
    assert redone["auc"] == pytest.approx(roc_auc_score(labels, probabilities), abs=1e-9)


def test_settings_and_mismatched_feature_index_are_refused(spark, world, tmp_path):
    from sparkml_tf.ranking.features.feature_index import FeatureIndex
    from sparkml_tf.ranking.jobs.evaluate import EvaluateCtr

    with pytest.raises(ConfigError) as info:
        EvaluateCtr("d", "e", "m.json", baselines=["ease"])
    assert (info.value.code, info.value.path) == ("CONFIG_BAD_VALUE", "baselines")
    with pytest.raises(ConfigError) as info:
        EvaluateCtr("d", "e", "m.json", split="train")
    assert (info.value.code, info.value.path) == ("CONFIG_BAD_VALUE", "split")
    other = FeatureIndex([{"name": "C1", "kind": "categorical", "vocab": ["a"]}])
    save_model(tmp_path / "export", other)
    job = EvaluateCtr(str(world["root"] / "dataset"), str(tmp_path / "export"), str(tmp_path / "metrics.json"))
    with pytest.raises(DataError) as info:
        job.run(RunContext(_spark=spark))
    assert info.value.code == "DATA_FEATURE_INDEX_MISMATCH" and other.version in info.value.message
