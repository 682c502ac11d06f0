import os

import keras
import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from sparkml_tf.errors import SparkmlTfError
from sparkml_tf.retrieval.models.linear_ae import LinearAE


@pytest.fixture(autouse=True)
def _fresh():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


def test_scores_are_dot_products_and_an_item_never_predicts_itself():
    net = LinearAE(embedding_dim=6, init_scale=0.3).build(20)
    items = tf.constant([[0, 5, 7, -1], [2, 2, -1, -1]], tf.int64)
    user, table, bias = net.user_embedding(items), net.item_embeddings(), net.item_biases()
    assert user.shape == (2, 6) and table.shape == (20, 6) and bias.shape == (20,)
    x = net.multi_hot(items).numpy()
    U, V = net.encoder.numpy(), net.decoder.numpy()
    np.testing.assert_allclose(user.numpy(), x @ U, rtol=1e-5, atol=1e-6)
    # B = U Vᵀ with a zero diagonal: the model's scores are x B + b ...
    B = U @ V.T
    np.fill_diagonal(B, 0.0)
    logits = net(items, training=False).numpy()
    np.testing.assert_allclose(logits, x @ B + bias.numpy(), rtol=1e-4, atol=1e-5)
    # ... which the index's dot product gives exactly for every item the user does not have.
    dot = user.numpy() @ V.T + bias.numpy()
    unseen = x == 0
    np.testing.assert_allclose(dot[unseen], logits[unseen], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, key", [({"embedding_dim": 0}, "embedding_dim"), ({"dropout": 1.0}, "dropout"), ({"loss": "hinge"}, "loss"), ({"l2": -1.0}, "l2")]
)
def test_bad_settings_are_config_errors_at_their_key(kwargs, key):
    with pytest.raises(SparkmlTfError) as info:
        LinearAE(**kwargs)
    assert info.value.code == "CONFIG_BAD_VALUE" and info.value.path == key


@pytest.mark.parametrize("loss", ["mse", "softmax"])
def test_the_loss_falls_and_the_model_ranks_held_out_items_above_popularity(loss):
    from sparkml_tf.metrics.baselines import Popular, recommend
    from sparkml_tf.metrics.ranking import batch_metrics, pad_lists
    from sparkml_tf.retrieval.toy import generate_users

    users = generate_users(num_users=500, num_items=120, num_clusters=6, items_per_user=16, seed=3)
    train, held = users[:400], users[400:]
    net = LinearAE(embedding_dim=32, dropout=0.5, loss=loss, seed=1).build(120)
    optimizer = keras.optimizers.Adam(0.005)
    batch = {"items": tf.constant(pad_lists([list(u) for u in train], max(len(u) for u in users)))}
    first = float(net.loss(batch, training=False))
    for _ in range(150):
        with tf.GradientTape() as tape:
            value = net.loss(batch, training=True)
        optimizer.apply_gradients(zip(tape.gradient(value, net.trainable_variables), net.trainable_variables))
    assert float(net.loss(batch, training=False)) < 0.8 * first
    foldin = pad_lists([list(u[:-4]) for u in held], max(len(u) for u in held))
    targets = pad_lists([list(u[-4:]) for u in held], 4)
    scores = net(tf.constant(foldin), training=False).numpy()
    from sparkml_tf.metrics.ranking import top_k_excluding

    model = np.mean(batch_metrics(top_k_excluding(scores, foldin, 20), targets, [20])["ndcg@20"])
    popular = Popular(120).fit(np.concatenate([np.full(len(u), i) for i, u in enumerate(train)]), np.concatenate(train))
    baseline = np.mean(batch_metrics(recommend(popular, foldin, 20), targets, [20])["ndcg@20"])
    assert model > baseline + 0.2, (model, baseline)


def test_trains_on_the_shared_loop_and_exports_for_the_index(tmp_path):
    from sparkml_tf.retrieval.toy import write_toy_dataset
    from sparkml_tf.retrieval.trainer import train_worker
    from sparkml_tf.spark.barrier import LocalLauncher
    from sparkml_tf.train.launch import build_specs

    write_toy_dataset(str(tmp_path / "ds"), num_users=300, num_items=80, num_shards=1, num_validation=60)
    settings = {
        "dataset_dir": str(tmp_path / "ds"), "export_dir": str(tmp_path / "export"), "embeddings_dir": str(tmp_path / "emb"),
        "checkpoint_dir": str(tmp_path / "ckpt"), "model": {"type": "sparkml_tf.retrieval.LinearAE", "embedding_dim": 16, "eval": None},
        "loss": None, "max_steps": 120, "learning_rate": 0.005,
    }
    result = LocalLauncher().run(train_worker, build_specs(settings))
    assert result["schedule"]["max_steps"] == 120 and result["schedule"]["lr_decay"] == "cosine"
    assert result["steps"] <= 120 and result["history"][-1]["step"] == result["steps"]
    loaded = tf.saved_model.load(result["export_path"])
    items = tf.constant([[1, 2, 3, -1], [10, -1, -1, -1]], tf.int64)
    user = loaded.signatures["serving_default"](items=items)["user_embedding"].numpy()
    table = pq.read_table(str(tmp_path / "emb")).sort_by("id")
    vectors = np.array(table["vector"].to_pylist(), dtype=np.float32)
    assert user.shape == (2, 16) and vectors.shape == (80, 16)
    factors = loaded.signatures["item_embeddings"]()
    np.testing.assert_allclose(factors["embeddings"].numpy(), vectors, rtol=1e-6)
    assert os.path.exists(tmp_path / "emb" / "_SPARKML_TF_COMPLETE")
