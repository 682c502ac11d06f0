import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from sparkml_tf.errors import DataError
from sparkml_tf.ranking.model_dir import checkpoint_id, load_model_dir, read_json
from sparkml_tf.ranking.testing import write_ctr_dataset
from sparkml_tf.ranking.trainer import read_ctr_batches, sample_examples, train_ctr_worker, validation_metrics
from sparkml_tf.spark.barrier import LocalLauncher
from sparkml_tf.train.launch import build_specs

WIDE_DEEP = {"type": "sparkml_tf.ranking.WideDeep", "embedding_dim": 4, "hidden_units": [16, 8], "eval": None}


@pytest.fixture(autouse=True)
def _fresh():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ctr") / "dataset")
    write_ctr_dataset(path, num_train=1200, num_validation=400, num_shards=2)
    return path


def settings_for(dataset, tmp_path, **overrides):
    settings = {
        "dataset_dir": dataset,
        "model_dir": str(tmp_path / "model"),
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "model": WIDE_DEEP,
        "epochs": 3,
        "batch_size": 64,
        "learning_rate": 0.01,
        "checkpoint_every_steps": 7,
        "patience": 3,
        "seed": 0,
    }
    settings.update(overrides)
    return settings


def validation_auc(net, dataset, sizes):
    from sparkml_tf.ranking.layout import CtrDataset

    labels, logits = [], []
    for batch in read_ctr_batches(CtrDataset(dataset).shard_files("validation"), sizes):
        labels.append(batch["label"].numpy())
        logits.append(net(batch).numpy())
    return validation_metrics(np.concatenate(labels), np.concatenate(logits))["val_auc"]


def test_learns_and_writes_model_dir(dataset, tmp_path):
    result = LocalLauncher().run(train_ctr_worker, build_specs(settings_for(dataset, tmp_path)))
    assert result["epochs_run"] == 3 and result["steps"] == 3 * result["steps_per_epoch"] == 3 * 19
    assert result["best_val_auc"] > 0.72  # the generated clicks follow C1, I1 and a C1 x C2 pair
    history = result["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert {"loss", "val_auc", "val_logloss", "seconds"} <= set(history[0])
    assert result["best_val_auc"] == pytest.approx(max(h["val_auc"] for h in history))
    assert all(0 < h["val_logloss"] < 0.69 for h in history)

    model_dir = tmp_path / "model"
    assert {"best.index", "spec.json", "history.json", "model.json", "feature_index.json", "_SPARKML_TF_COMPLETE"} <= set(os.listdir(model_dir))
    assert json.loads((model_dir / "spec.json").read_text()) == WIDE_DEEP
    info = json.loads((model_dir / "model.json").read_text())
    stats = json.loads(open(f"{dataset}/stats.json").read())
    assert info["checkpoint_id"] == result["checkpoint_id"] == checkpoint_id(str(model_dir))
    assert info["feature_index_version"] == stats["feature_index_version"]
    assert info["sizes"] == {k: stats[k] for k in ("deep_size", "wide_size", "num_deep", "num_wide", "num_dense")}

    # The model directory holds the best epoch's weights.
    keras.backend.clear_session()
    loaded = load_model_dir(str(model_dir), build_specs({"model": read_json(str(model_dir), "spec.json")})["model"])
    assert loaded.history == history and loaded.feature_index.version == stats["feature_index_version"]
    assert validation_auc(loaded.net, dataset, info["sizes"]) == pytest.approx(result["best_val_auc"], abs=1e-6)


@pytest.mark.parametrize("model", [WIDE_DEEP, {**WIDE_DEEP, "wide_learning_rate": 0.01}], ids=["one optimizer", "wide part at its own rate"])
def test_resumes_from_checkpoint(dataset, tmp_path, model):
    first = LocalLauncher().run(train_ctr_worker, build_specs(settings_for(dataset, tmp_path, epochs=1, model=model)))
    keras.backend.clear_session()
    second = LocalLauncher().run(train_ctr_worker, build_specs(settings_for(dataset, tmp_path, epochs=2, force=True, model=model)))
    assert second["resumed_from_step"] == first["steps"] == first["steps_per_epoch"]
    assert second["steps"] == 2 * first["steps_per_epoch"]
    assert second["history"][0] == first["history"][0]  # epoch 0 was not run again
    assert second["checkpoint_id"] != first["checkpoint_id"] or second["best_val_auc"] == first["best_val_auc"]


def test_early_stopping_keeps_best_weights_dcn(dataset, tmp_path):
    dcn = {"type": "sparkml_tf.ranking.DCNv2", "embedding_dim": 4, "cross_layers": 2, "hidden_units": [32], "l2": 0.0, "eval": None}
    result = LocalLauncher().run(train_ctr_worker, build_specs(settings_for(dataset, tmp_path, model=dcn, epochs=30, patience=1, learning_rate=0.05)))
    aucs = [h["val_auc"] for h in result["history"]]
    assert result["epochs_run"] < 30 and len(aucs) == result["epochs_run"]  # stopped early
    assert aucs[-1] <= max(aucs[:-1])  # the last epoch did not improve
    keras.backend.clear_session()
    loaded = load_model_dir(str(tmp_path / "model"), build_specs({"model": read_json(str(tmp_path / "model"), "spec.json")})["model"])
    assert loaded.info["best_val_auc"] == pytest.approx(max(aucs))
    assert validation_auc(loaded.net, dataset, loaded.info["sizes"]) == pytest.approx(max(aucs), abs=1e-6)


def test_sample_examples(dataset):
    sizes = json.loads(open(f"{dataset}/stats.json").read())
    sample = sample_examples(dataset, "validation", sizes, 10, seed=1)
    assert sample["deep_ids"].shape == (10, sizes["num_deep"]) and sample["dense"].dtype == np.float32
    assert sample["wide_ids"].max() < sizes["wide_size"]


def test_missing_and_wrong_inputs(dataset, tmp_path):
    with pytest.raises(DataError) as info:
        train_ctr_worker(build_specs(settings_for(str(tmp_path / "nothing"), tmp_path)))
    assert info.value.code == "DATA_MISSING_STATS"
    other = tmp_path / "retrieval"
    other.mkdir()
    (other / "stats.json").write_text(json.dumps({**json.loads(open(f"{dataset}/stats.json").read()), "task": "retrieval"}))
    with pytest.raises(DataError) as info:
        train_ctr_worker(build_specs(settings_for(str(other), tmp_path)))
    assert info.value.code == "DATA_SCHEMA_MISMATCH" and info.value.path.endswith("stats.json")
    (other / "stats.json").write_text(json.dumps({"task": "ctr", "num_train_examples": 3}))
    with pytest.raises(DataError) as info:
        train_ctr_worker(build_specs(settings_for(str(other), tmp_path)))
    assert info.value.code == "DATA_SCHEMA_MISMATCH" and "deep_size" in info.value.message


def test_metrics_match_definitions():
    labels = np.array([0, 0, 1, 1, 0], np.float32)
    logits = np.array([-2.0, 0.5, 1.0, 0.5, -1.0])
    metrics = validation_metrics(labels, logits)
    assert metrics["val_auc"] == pytest.approx((1 + 1 + 1 + 0.5 + 1 + 1) / 6)  # one positive-negative tie
    p = 1 / (1 + np.exp(-logits))
    assert metrics["val_logloss"] == pytest.approx(float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))))
    assert tf.math.is_nan(validation_metrics(np.ones(3), np.zeros(3))["val_auc"])


def test_loop_checkpoints_weights_a_model_keeps_in_lists(tmp_path):
    # The shared loop, on the retrieval task: MultVAE holds its encoder and decoder in Python lists.
    from sparkml_tf.retrieval.toy import write_toy_dataset
    from sparkml_tf.retrieval.trainer import train_worker

    write_toy_dataset(str(tmp_path / "toy"), num_users=64, num_items=40, num_shards=1, num_validation=16)
    settings = {
        "dataset_dir": str(tmp_path / "toy"), "export_dir": str(tmp_path / "export"), "embeddings_dir": str(tmp_path / "emb"),
        "checkpoint_dir": str(tmp_path / "ckpt"), "model": {"type": "sparkml_tf.retrieval.MultVAE", "hidden_dims": [8, 4], "eval": None},
        "loss": None, "epochs": 1, "batch_size": 32,
    }
    LocalLauncher().run(train_worker, build_specs(settings))
    names = [name for name, _ in tf.train.list_variables(tf.train.latest_checkpoint(str(tmp_path / "ckpt")))]
    assert len([n for n in names if n.startswith("model_weights/")]) == 8  # 4 dense layers x (kernel, bias)
