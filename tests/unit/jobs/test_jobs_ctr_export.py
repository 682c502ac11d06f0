import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from sparkml_tf.engine.base import RunContext
from sparkml_tf.errors import DataError, SparkmlTfError
from sparkml_tf.ranking.jobs.export import ExportCtr
from sparkml_tf.ranking.layout import CtrDataset
from sparkml_tf.ranking.testing import write_ctr_dataset
from sparkml_tf.ranking.trainer import read_ctr_batches, train_ctr_worker
from sparkml_tf.serving.export import latest_version, read_metadata
from sparkml_tf.spark.barrier import LocalLauncher
from sparkml_tf.testing import RecordingTracker
from sparkml_tf.train.launch import build_specs


@pytest.fixture(autouse=True)
def _fresh():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctr_export")
    write_ctr_dataset(str(root / "dataset"), num_train=400, num_validation=150, num_shards=1)
    settings = {
        "dataset_dir": str(root / "dataset"), "model_dir": str(root / "model"), "checkpoint_dir": str(root / "ckpt"),
        "model": {"type": "sparkml_tf.ranking.DCNv2", "embedding_dim": 3, "cross_layers": 1, "hidden_units": [8], "eval": None},
        "epochs": 2, "batch_size": 50, "learning_rate": 0.01,
    }
    summary = LocalLauncher().run(train_ctr_worker, build_specs(settings))
    return {"dataset": str(root / "dataset"), "model_dir": str(root / "model"), "summary": summary}


def test_exports_skips_the_same_model_and_forces(trained, tmp_path):
    export_dir = str(tmp_path / "export")
    tracker = RecordingTracker()
    result = ExportCtr(trained["model_dir"], export_dir, dataset_dir=trained["dataset"], warmup_records=30).run(RunContext(tracker=tracker))
    path = result["export_path"]
    assert result["model_version"] == 1 and path == latest_version(export_dir)
    assert ("artifact", path, "serving_model") in tracker.calls and tracker.metrics["model_version"] == 1
    metadata = read_metadata(path)
    assert metadata["checkpoint_id"] == trained["summary"]["checkpoint_id"] == result["checkpoint_id"]
    assert metadata["best_val_auc"] == pytest.approx(trained["summary"]["best_val_auc"])

    # The served model scores the validation set as the best epoch did.
    from sparkml_tf.ranking.trainer import validation_metrics

    serve = tf.saved_model.load(path).signatures["serving_default"]
    labels, logits, rows = [], [], set()
    sizes = metadata["inputs"]
    for batch in read_ctr_batches(CtrDataset(trained["dataset"]).shard_files("validation"), sizes):
        labels.append(batch["label"].numpy())
        logits.append(serve(deep_ids=batch["deep_ids"], wide_ids=batch["wide_ids"], dense=batch["dense"])["logit"].numpy())
        rows |= {tuple(r) for r in batch["deep_ids"].numpy().tolist()}
    auc = validation_metrics(np.concatenate(labels), np.concatenate(logits))["val_auc"]
    assert auc == pytest.approx(trained["summary"]["best_val_auc"], abs=1e-6)

    # Warm-up requests are validation rows.
    from tensorflow_serving.apis import prediction_log_pb2

    requests = [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request
                for r in tf.data.TFRecordDataset(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))]
    assert len(requests) == 30
    assert all(tuple(tf.make_ndarray(r.inputs["deep_ids"])[0].tolist()) in rows for r in requests)

    again = ExportCtr(trained["model_dir"], export_dir).run(RunContext())
    assert again["skipped"] is True and again["export_path"] == path
    forced = ExportCtr(trained["model_dir"], export_dir, warmup_records=0).run(RunContext(force=True))
    assert forced["model_version"] == 2 and latest_version(export_dir) == forced["export_path"]


def test_missing_model_and_bad_settings(tmp_path):
    with pytest.raises(DataError) as info:
        ExportCtr(str(tmp_path / "none"), str(tmp_path / "export")).run(RunContext())
    assert info.value.code == "MODEL_NOT_FOUND" and info.value.path.endswith("model.json")
    with pytest.raises(SparkmlTfError) as info:
        ExportCtr("m", "e", warmup_records=1001)
    assert (info.value.code, info.value.path) == ("CONFIG_BAD_VALUE", "warmup_records")
