import json
import os
import time

import keras
import pytest

from sparkml_tf.engine.base import RunContext
from sparkml_tf.errors import DataError, SparkmlTfError
from sparkml_tf.ranking.jobs.train import TrainCtr
from sparkml_tf.ranking.testing import write_ctr_dataset
from sparkml_tf.testing import RecordingTracker

MODEL = {"type": "sparkml_tf.ranking.WideDeep", "embedding_dim": 4, "hidden_units": [8], "eval": None}


@pytest.fixture(autouse=True)
def _fresh():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ctr") / "dataset")
    write_ctr_dataset(path, num_train=512, num_validation=200, num_shards=2)
    return path


def job_for(dataset, tmp_path, **overrides):
    kwargs = {"launcher": "local", "epochs": 2, "batch_size": 64, "learning_rate": 0.01, "checkpoint_every_steps": 5}
    kwargs.update(overrides)
    return TrainCtr(dataset, str(tmp_path / "model"), str(tmp_path / "ckpt"), model=MODEL, **kwargs)


def test_local_training_logs_to_tracker_and_skips_when_complete(dataset, tmp_path):
    tracker = RecordingTracker()
    summary = job_for(dataset, tmp_path).run(RunContext(tracker=tracker))
    assert summary["epochs_run"] == 2 and summary["best_val_auc"] > 0.6
    assert os.path.exists(tmp_path / "model" / "_SPARKML_TF_COMPLETE")
    kinds = [c[0] for c in tracker.calls]
    assert kinds.count("params") == 1 and tracker.params["train.model"] == "sparkml_tf.ranking.WideDeep"
    assert tracker.params["train.model.hidden_units"] == [8] and tracker.params["train.launcher"] == "local"
    assert [c[2] for c in tracker.calls if c[0] == "metrics" and "val_auc" in c[1]] == [0, 1]
    assert {"loss", "val_auc", "val_logloss", "epoch_seconds", "best_val_auc"} <= set(tracker.metrics)
    assert tracker.metrics["best_val_auc"] == summary["best_val_auc"]
    assert ("figure", "plots/training_curves.png") in tracker.calls and "ctr/history.json" in tracker.dicts
    # The chief's TensorBoard scalars, under <run_dir>/tensorboard/train, logged to MLflow too.
    from sparkml_tf.telemetry.tensorboard import read_scalars

    logdir = str(tmp_path / "tensorboard" / "train")
    scalars = read_scalars(logdir)
    assert len(scalars["train/loss"]) == summary["steps"] and [s for s, _ in scalars["validation/val_auc"]] == [h["step"] for h in summary["history"]]
    assert {"validation/val_logloss", "train/learning_rate", "train/examples_per_second"} <= set(scalars)
    assert ("artifact", logdir, "tensorboard/train") in tracker.calls

    again = job_for(dataset, tmp_path).run(RunContext(tracker=RecordingTracker()))
    assert again == {"skipped": True, "model_dir": str(tmp_path / "model")}
    # --force trains afresh from step 0; the old checkpoints are moved aside, not deleted.
    forced = job_for(dataset, tmp_path, epochs=3).run(RunContext(force=True, tracker=RecordingTracker()))
    assert forced["resumed_from_step"] == 0 and forced["epochs_run"] == 3 and forced["steps"] == 3 * summary["steps_per_epoch"]
    moved = [p for p in os.listdir(tmp_path) if p.startswith("ckpt.replaced-")]
    assert len(moved) == 1 and any(name.startswith("ckpt") for name in os.listdir(tmp_path / moved[0]))
    # ... and so are the old TensorBoard logs: the new curves start at step 1, beside the old ones.
    assert [p for p in os.listdir(tmp_path / "tensorboard") if p.startswith("train.replaced-")]
    assert len(read_scalars(logdir)["train/loss"]) == forced["steps"]


def test_missing_dataset_fails_on_the_driver(dataset, tmp_path):
    with pytest.raises(DataError) as info:
        job_for(str(tmp_path / "nothing"), tmp_path).run(RunContext())
    assert info.value.code == "DATA_MISSING_STATS" and info.value.path.endswith("stats.json")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "stats.json").write_text(open(f"{dataset}/stats.json").read())
    with pytest.raises(DataError) as info:
        job_for(str(partial), tmp_path).run(RunContext())
    assert info.value.code == "DATA_NOT_FOUND" and info.value.path.endswith("feature_index/feature_index.json")


@pytest.mark.parametrize(
    "kwargs, code, path",
    [
        ({"model": {"embedding_dim": 4}}, "CONFIG_BAD_SUBCONFIG", "model"),
        ({"launcher": "mpi"}, "CONFIG_BAD_VALUE", "launcher"),
        ({"epochs": 0}, "CONFIG_BAD_VALUE", ""),
    ],
)
def test_bad_settings(kwargs, code, path):
    arguments = {"dataset_dir": "d", "model_dir": "m", "checkpoint_dir": "c", "model": MODEL, **kwargs}
    with pytest.raises(SparkmlTfError) as info:
        TrainCtr(**arguments)
    assert (info.value.code, info.value.path) == (code, path)


@pytest.mark.spark
def test_two_spark_barrier_workers(spark, tmp_path):
    write_ctr_dataset(str(tmp_path / "ds"), num_train=256, num_validation=64, num_shards=2)
    job = TrainCtr(str(tmp_path / "ds"), str(tmp_path / "model"), str(tmp_path / "ckpt"), model=MODEL, num_workers=2, launcher="spark",
                   epochs=2, batch_size=64, checkpoint_every_steps=3)
    start = time.perf_counter()
    summary = job.run(RunContext(tracker=RecordingTracker(), _spark=spark))
    print(f"2 barrier workers trained in {time.perf_counter() - start:.1f}s")
    assert summary["num_workers"] == 2 and summary["global_batch_size"] == 64
    assert summary["steps"] == 2 * summary["steps_per_epoch"] == 8
    assert [h["epoch"] for h in summary["history"]] == [0, 1]
    info = json.loads((tmp_path / "model" / "model.json").read_text())
    assert info["checkpoint_id"] == summary["checkpoint_id"] and info["epochs_run"] == 2
    assert os.path.exists(tmp_path / "model" / "_SPARKML_TF_COMPLETE")
    assert any(name.startswith("ckpt-") for name in os.listdir(tmp_path / "ckpt"))  # the chief checkpoints to the shared dir
