import json
import os

import keras
import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from sparkml_tf.retrieval.toy import write_toy_dataset
from sparkml_tf.retrieval.trainer import ndcg_at_k, train_worker
from sparkml_tf.spark.barrier import LocalLauncher
from sparkml_tf.train.launch import build_specs

AVERAGE = {"type": "sparkml_tf.retrieval.AverageModel", "embedding_dim": 16, "input_dropout": 0.1, "eval": None}


@pytest.fixture(autouse=True)
def _fresh():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("toy") / "dataset")
    write_toy_dataset(path, num_users=400, num_items=300, num_shards=2, num_validation=100)
    return path


def settings_for(dataset, tmp_path, **overrides):
    settings = {
        "dataset_dir": dataset,
        "export_dir": str(tmp_path / "export"),
        "embeddings_dir": str(tmp_path / "embeddings"),
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "model": AVERAGE,
        "loss": {"type": "sparkml_tf.retrieval.BPRLoss", "num_negatives": 8, "eval": None},
        "epochs": 4,
        "batch_size": 32,
        "learning_rate": 0.01,
        "checkpoint_every_steps": 5,
        "patience": 3,
        "seed": 0,
    }
    settings.update(overrides)
    return settings


def random_ndcg(dataset):
    from sparkml_tf.retrieval.layout import RetrievalDataset
    from sparkml_tf.retrieval.records import read_validation

    class Random:
        def __init__(self):
            self.table = tf.random.normal([300, 4], seed=1)

        def user_embedding(self, items, training=False):
            return tf.random.normal([tf.shape(items)[0], 4], seed=2)

        def item_embeddings(self):
            return self.table

        def item_biases(self):
            return tf.zeros([300])

    inputs, targets = read_validation(RetrievalDataset(dataset).shard_files("validation"))
    return ndcg_at_k(Random(), inputs, targets)


def test_learns_exports_and_embeddings(dataset, tmp_path):
    result = LocalLauncher().run(train_worker, build_specs(settings_for(dataset, tmp_path)))
    assert result["epochs_run"] == 4 and result["steps"] == 4 * result["steps_per_epoch"]
    assert result["best_ndcg"] > random_ndcg(dataset) + 0.1
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2, 3]
    assert result["export_path"].endswith(os.path.join("export", "1"))
    assert os.path.exists(os.path.join(result["export_path"], "history.json"))

    # The SavedModel gives back the embeddings the (best) model had.
    loaded = tf.saved_model.load(result["export_path"])
    items = tf.constant([[1, 2, 3, -1], [10, -1, -1, -1]], tf.int64)
    user = loaded.signatures["serving_default"](items=items)["user_embedding"]
    assert user.shape == (2, 16) and user.dtype == tf.float32
    factors = loaded.signatures["item_embeddings"]()
    table = pq.read_table(str(tmp_path / "embeddings")).sort_by("id")
    assert table.column_names == ["id", "item", "vector", "bias"]
    assert table.num_rows == 300 and table["item"][5].as_py() == "item5"
    vectors = np.array(table["vector"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(factors["embeddings"].numpy(), vectors, rtol=1e-6)
    np.testing.assert_allclose(factors["biases"].numpy(), table["bias"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(user.numpy()[1], vectors[10], rtol=1e-5)  # a one-item user is that item
    np.testing.assert_allclose(user.numpy()[0], vectors[[1, 2, 3]].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert os.path.exists(tmp_path / "embeddings" / "_SPARKML_TF_COMPLETE")

    # A second export lands in the next version.
    again = LocalLauncher().run(train_worker, build_specs(settings_for(dataset, tmp_path, force=True)))
    assert again["export_path"].endswith(os.path.join("export", "2"))
    assert again["resumed_from_step"] == result["steps"] and again["steps"] == result["steps"]


def test_resumes_from_checkpoint(dataset, tmp_path):
    first = LocalLauncher().run(train_worker, build_specs(settings_for(dataset, tmp_path, epochs=1)))
    per_epoch = first["steps_per_epoch"]
    assert first["steps"] == per_epoch and first["epochs_run"] == 1
    keras.backend.clear_session()
    second = LocalLauncher().run(train_worker, build_specs(settings_for(dataset, tmp_path, epochs=3, force=True)))
    assert second["resumed_from_step"] == per_epoch
    assert second["steps"] == 3 * per_epoch
    assert [h["epoch"] for h in second["history"]] == [0, 1, 2]
    assert second["history"][0] == first["history"][0]  # epoch 0 was not run again
    with open(tmp_path / "checkpoints" / "history.json") as f:
        assert len(json.load(f)) == 3


def test_early_stopping_and_vae(dataset, tmp_path):
    vae = {"type": "sparkml_tf.retrieval.MultVAE", "hidden_dims": [32, 8], "anneal_steps": 50, "eval": None}
    result = LocalLauncher().run(train_worker, build_specs(settings_for(dataset, tmp_path, model=vae, loss=None, epochs=30, patience=1, learning_rate=0.05)))
    assert result["epochs_run"] < 30  # stopped early
    ndcgs = [h["val_ndcg@100"] for h in result["history"]]
    assert result["best_ndcg"] == pytest.approx(max(ndcgs))
    # The exported model is the best epoch's, not the last one's.
    loaded = tf.saved_model.load(result["export_path"])
    factors = loaded.signatures["item_embeddings"]()

    class Exported:
        def __init__(self):
            self.serve = loaded.signatures["serving_default"]

        def user_embedding(self, items, training=False):
            return self.serve(items=tf.constant(items))["user_embedding"]

        def item_embeddings(self):
            return factors["embeddings"]

        def item_biases(self):
            return factors["biases"]

    from sparkml_tf.retrieval.layout import RetrievalDataset
    from sparkml_tf.retrieval.records import read_validation

    inputs, targets = read_validation(RetrievalDataset(dataset).shard_files("validation"))
    assert ndcg_at_k(Exported(), inputs, targets) == pytest.approx(result["best_ndcg"], abs=1e-6)


def test_build_spec_and_missing_data(tmp_path):
    built = build_specs({"model": AVERAGE, "loss": {"type": "sparkml_tf.retrieval.BPRLoss", "num_negatives": 3, "eval": None}})
    assert built["loss"].num_negatives == 3 and built["raw_specs"]["model"] == AVERAGE
    from sparkml_tf.errors import SparkmlTfError

    with pytest.raises(SparkmlTfError) as unbuilt:  # workers never build configs
        train_worker(settings_for(str(tmp_path / "nothing"), tmp_path))
    assert unbuilt.value.code == "CONFIG_BAD_SUBCONFIG" and unbuilt.value.path == "model"
    from sparkml_tf.errors import DataError

    with pytest.raises(DataError) as info:
        train_worker(build_specs(settings_for(str(tmp_path / "nothing"), tmp_path)))
    assert info.value.code == "DATA_MISSING_STATS"


def test_train_job_local_logs_to_tracker_tensorboard_and_live_metrics(dataset, tmp_path):
    """One local training through the job: MLflow calls, TensorBoard scalars written by the chief,
    a --profile trace of steps 10-20, and live metrics arriving at a real HTTP push gateway."""
    from sparkml_tf.engine.base import RunContext
    from sparkml_tf.retrieval.jobs.train import Train
    from sparkml_tf.telemetry.tensorboard import read_scalars
    from sparkml_tf.testing import RecordingPushGateway, RecordingTracker
    from sparkml_tf.tracking import PushGateway

    s = settings_for(dataset, tmp_path, epochs=2)
    job = Train(
        s["dataset_dir"], s["export_dir"], s["embeddings_dir"], s["checkpoint_dir"], model=AVERAGE, loss=s["loss"], launcher="local", epochs=2, batch_size=32
    )
    tracker = RecordingTracker()
    with RecordingPushGateway() as gateway:
        ctx = RunContext(tracker=tracker, profile=True, live_settings=PushGateway(gateway.url).settings("unit"))
        summary = job.run(ctx)
        assert gateway.wait_for(2)
    kinds = [c[0] for c in tracker.calls]
    assert kinds.count("params") == 1 and ("figure", "plots/training_curves.png") in tracker.calls
    assert ("artifact", summary["export_path"], "model") in tracker.calls
    assert [c[2] for c in tracker.calls if c[0] == "metrics" and "val_ndcg@100" in c[1]] == [0, 1]

    # TensorBoard: <run_dir>/tensorboard/<job name> beside the checkpoints, logged to MLflow as well.
    logdir = str(tmp_path / "tensorboard" / "train")
    assert summary["tensorboard_dir"] == logdir and ("artifact", logdir, "tensorboard/train") in tracker.calls
    scalars = read_scalars(logdir)
    steps = summary["steps"]
    assert [step for step, _ in scalars["train/loss"]] == list(range(1, steps + 1))
    evaluations = [h["step"] for h in summary["history"]]
    assert [step for step, _ in scalars["validation/val_ndcg@100"]] == evaluations
    assert [v for _, v in scalars["validation/val_ndcg@100"]] == pytest.approx([h["val_ndcg@100"] for h in summary["history"]])
    for tag in ("train/learning_rate", "train/examples_per_second", "train/steps_per_second", "train/epoch_loss"):
        assert len(scalars[tag]) == len(evaluations) and all(v > 0 for _, v in scalars[tag]), tag
    # --profile: a trace of a window of steps, where TensorBoard's profile tab looks.
    traces = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(logdir, "plugins", "profile")) for f in files if f.endswith(".xplane.pb")]
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 0

    # Live metrics: the chief's training numbers, pushed at each evaluation.
    live = gateway.latest(instance="train-worker-0", pipeline="unit")
    assert live["sparkml_tf_train_step"] == steps and live["sparkml_tf_train_val_ndcg_at_100"] == pytest.approx(summary["history"][-1]["val_ndcg@100"])
    assert live["sparkml_tf_train_loss"] > 0 and live["sparkml_tf_train_examples_per_second"] > 0 and live["sparkml_tf_train_worker_rss_bytes"] > 1e7
    assert job.run(RunContext(tracker=RecordingTracker()))["skipped"] is True
