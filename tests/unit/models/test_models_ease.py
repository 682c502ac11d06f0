import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from sparkml_tf.engine.base import RunContext
from sparkml_tf.errors import SparkmlTfError
from sparkml_tf.metrics.baselines import Ease as EaseBaseline
from sparkml_tf.metrics.baselines import Popular, recommend
from sparkml_tf.metrics.ranking import batch_metrics
from sparkml_tf.retrieval.layout import RetrievalDataset
from sparkml_tf.retrieval.models.ease import Ease
from sparkml_tf.retrieval.records import read_train_pairs, read_validation
from sparkml_tf.retrieval.toy import write_toy_dataset
from sparkml_tf.retrieval.trainer import train_worker
from sparkml_tf.spark.barrier import LocalLauncher
from sparkml_tf.testing import RecordingTracker
from sparkml_tf.train.launch import build_specs

MODEL = {"type": "sparkml_tf.retrieval.Ease", "eval": None}


@pytest.mark.parametrize(
    "kwargs, key",
    [({"l2": -1.0}, "l2"), ({"l2": []}, "l2"), ({"l2": [10, "x"]}, "l2"), ({"refit": "yes"}, "refit"), ({"max_items": 0}, "max_items")],
)
def test_bad_settings_are_config_errors_at_their_key(kwargs, key):
    with pytest.raises(SparkmlTfError) as info:
        Ease(**kwargs)
    assert info.value.code == "CONFIG_BAD_VALUE" and info.value.path == key


def _settings(tmp_path, **model):
    return {
        "dataset_dir": str(tmp_path / "ds"), "export_dir": str(tmp_path / "export"), "embeddings_dir": str(tmp_path / "emb"),
        "checkpoint_dir": str(tmp_path / "ckpt"), "model": {**MODEL, **model}, "loss": None,
    }


def _data(tmp_path, num_shards=1):
    write_toy_dataset(str(tmp_path / "ds"), num_users=300, num_items=60, num_shards=num_shards, num_validation=80)
    layout = RetrievalDataset(str(tmp_path / "ds"))
    return read_train_pairs(layout.shard_files("train")), read_validation(layout.shard_files("validation"))


def _ndcg(ranked, targets):
    return float(np.mean(batch_metrics(ranked, targets, [20])["ndcg@20"]))


def test_chooses_l2_on_validation_exports_the_closed_form_and_beats_popularity(tmp_path):
    (users, items), (inputs, targets) = _data(tmp_path)
    grid = [1.0, 30.0, 1000.0, 30000.0]
    logdir = str(tmp_path / "tensorboard" / "train")
    result = LocalLauncher().run(train_worker, build_specs({**_settings(tmp_path, l2=grid, refit=False), "tensorboard_dir": logdir}))
    scores = [h["val_ndcg@100"] for h in result["history"]]
    assert [h["l2"] for h in result["history"]] == grid and len(set(scores)) > 1  # the grid matters on this data
    chosen = grid[int(np.argmax(scores))]
    assert result["schedule"]["l2"] == chosen and result["best_ndcg"] == max(scores) and result["steps"] == 0
    # No loop, but TensorBoard still shows the search: each grid entry's score and L2 at step = its index.
    from sparkml_tf.telemetry.tensorboard import read_scalars

    scalars = read_scalars(logdir)
    assert scalars["ease/l2"] == list(enumerate(grid)) and [v for _, v in scalars["validation/val_ndcg@100"]] == pytest.approx(scores)

    # The export is EASE at the chosen λ, exactly as the baseline computes it, and the index's dot product serves it.
    B = EaseBaseline(60, chosen).fit(users, items).B
    loaded = tf.saved_model.load(result["export_path"])
    user = loaded.signatures["serving_default"](items=tf.constant(inputs[:8]))["user_embedding"].numpy()
    vectors = np.array(pq.read_table(str(tmp_path / "emb")).sort_by("id")["vector"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(user @ vectors.T, EaseBaseline.score(_with(B), inputs[:8]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loaded.signatures["item_embeddings"]()["embeddings"].numpy(), vectors)

    ranked = recommend(_with(B), inputs, 20)
    popular = recommend(Popular(60).fit(users, items), inputs, 20)
    assert _ndcg(ranked, targets) > _ndcg(popular, targets) + 0.05


def _with(B):
    model = EaseBaseline(len(B))
    model.B = B
    return model


def test_refit_adds_the_validation_users_to_the_chosen_fit(tmp_path):
    (users, items), (inputs, targets) = _data(tmp_path)
    result = LocalLauncher().run(train_worker, build_specs(_settings(tmp_path, l2=[50.0])))
    assert result["schedule"] == {"closed_form": True, "l2_grid": [50.0], "l2": 50.0, "refit": True}
    both = np.concatenate([inputs, targets], axis=1)
    rows = np.broadcast_to(np.arange(len(both))[:, None], both.shape)
    all_users = np.concatenate([users, rows[both >= 0] + users.max() + 1])
    all_items = np.concatenate([items, both[both >= 0]])
    B = EaseBaseline(60, 50.0).fit(all_users, all_items).B
    vectors = np.array(pq.read_table(str(tmp_path / "emb")).sort_by("id")["vector"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(vectors, B.T, rtol=1e-3, atol=1e-5)
    assert not np.allclose(vectors, EaseBaseline(60, 50.0).fit(users, items).B.T, atol=1e-4)


def test_a_catalogue_above_max_items_is_refused_with_a_coded_error(tmp_path):
    _data(tmp_path)
    with pytest.raises(SparkmlTfError) as info:
        LocalLauncher().run(train_worker, build_specs(_settings(tmp_path, max_items=50)))
    assert info.value.code == "TRAIN_MODEL_TOO_LARGE" and info.value.path == "model.max_items"


@pytest.mark.spark
def test_two_barrier_workers_split_the_grid_and_agree_with_one(spark, tmp_path):
    from sparkml_tf.retrieval.jobs.train import Train

    _data(tmp_path, num_shards=2)
    grid = [3.0, 30.0, 300.0]
    job = Train(str(tmp_path / "ds"), str(tmp_path / "export"), str(tmp_path / "emb"), str(tmp_path / "ckpt"),
                model={**MODEL, "l2": grid, "refit": False}, num_workers=2, launcher="spark")
    tracker = RecordingTracker()
    summary = job.run(RunContext(tracker=tracker, _spark=spark))
    alone = LocalLauncher().run(train_worker, build_specs(_settings(tmp_path / "one", l2=grid, refit=False) | {"dataset_dir": str(tmp_path / "ds")}))
    assert summary["num_workers"] == 2
    assert [h["l2"] for h in summary["history"]] == grid
    np.testing.assert_allclose([h["val_ndcg@100"] for h in summary["history"]], [h["val_ndcg@100"] for h in alone["history"]], rtol=1e-6)
    assert summary["schedule"]["l2"] == alone["schedule"]["l2"]
    assert "plots/training_curves.png" in tracker.figures
