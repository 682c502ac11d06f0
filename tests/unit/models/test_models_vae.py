import keras
import numpy as np
import pytest
import tensorflow as tf

from sparkml_tf.retrieval.models.vae import MultVAE


@pytest.fixture(autouse=True)
def _fresh():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


def test_score_equals_decoder_logits():
    net = MultVAE(hidden_dims=[16, 4], dropout=0.5).build(30)
    items = tf.constant([[0, 5, 7, -1], [2, -1, -1, -1]], tf.int64)
    user = net.user_embedding(items, training=False)
    assert user.shape == (2, 16)
    assert net.item_embeddings().shape == (30, 16) and net.item_biases().shape == (30,)
    scores = tf.matmul(user, net.item_embeddings(), transpose_b=True) + net.item_biases()
    np.testing.assert_allclose(scores.numpy(), net(items, training=False).numpy(), rtol=1e-5, atol=1e-6)


def test_single_hidden_layer_uses_latent_as_user():
    net = MultVAE(hidden_dims=[6]).build(12)
    assert net.user_embedding(tf.constant([[1, 2]], tf.int64)).shape == (1, 6)


def test_multi_hot_counts_each_item_once():
    net = MultVAE(hidden_dims=[4, 2]).build(5)
    hot = net.multi_hot(tf.constant([[1, 1, 3, -1]], tf.int64)).numpy()
    assert hot.tolist() == [[0.0, 1.0, 0.0, 1.0, 0.0]]


def test_beta_anneals_linearly_to_cap():
    spec = MultVAE(beta_max=0.2, anneal_steps=100)
    assert float(spec.beta(0)) == 0.0
    assert float(spec.beta(50)) == pytest.approx(0.1)
    assert float(spec.beta(1000)) == pytest.approx(0.2)


def test_loss_decreases_on_toy_problem():
    net = MultVAE(hidden_dims=[16, 4], dropout=0.2, anneal_steps=10).build(20)
    rng = np.random.default_rng(0)
    items = np.stack([rng.choice(10, 5, replace=False) + 10 * g for g in rng.integers(0, 2, size=64)]).astype(np.int64)
    batch = {"items": tf.constant(items)}
    optimizer = keras.optimizers.Adam(0.01)
    first = float(net.loss(batch, training=False, step=0))
    for step in range(60):
        with tf.GradientTape() as tape:
            value = net.loss(batch, training=True, step=step)
        optimizer.apply_gradients(zip(tape.gradient(value, net.trainable_variables), net.trainable_variables))
    assert float(net.loss(batch, training=False, step=0)) < 0.9 * first
