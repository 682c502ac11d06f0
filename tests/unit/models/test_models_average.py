import keras
import numpy as np
import pytest
import tensorflow as tf

from sparkml_tf.retrieval.models.average import AverageModel
from sparkml_tf.retrieval.models.losses import BPRLoss


@pytest.fixture(autouse=True)
def _fresh():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


def test_shapes_and_padding():
    net = AverageModel(embedding_dim=4, input_dropout=0.0).build(10)
    items = tf.constant([[1, 2, -1], [3, -1, -1]], tf.int64)
    user = net.user_embedding(items, training=False)
    assert user.shape == (2, 4)
    table = net.item_embeddings().numpy()
    np.testing.assert_allclose(user.numpy()[0], table[[1, 2]].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(user.numpy()[1], table[3], rtol=1e-6)
    assert net.item_embeddings().shape == (10, 4) and net.item_biases().shape == (10,)
    assert len(net.trainable_variables) == 2
    scores = net(items)
    np.testing.assert_allclose(scores.numpy(), user.numpy() @ table.T + net.item_biases().numpy(), rtol=1e-5)


def test_preprocess_splits_inputs_and_positives():
    spec = AverageModel()
    make = spec.preprocess(50, BPRLoss(num_negatives=5))
    example = make(tf.constant(np.arange(10), tf.int64))
    inputs, positives = example["inputs"].numpy(), example["positives"].numpy()
    assert len(inputs) >= 1 and len(positives) >= 1
    assert sorted(np.concatenate([inputs, positives])) == list(range(10))
    assert example["negatives"].shape == (5,)
    single = make(tf.constant([7], tf.int64))
    assert single["inputs"].numpy().tolist() == [7] and single["positives"].shape == (0,)


def test_loss_decreases_on_toy_problem():
    # Two groups of items; a user's items come from one group. BPR should learn that.
    spec = AverageModel(embedding_dim=8, input_dropout=0.0, l2=0.0)
    net = spec.build(20, BPRLoss(num_negatives=4))
    rng = np.random.default_rng(0)
    group = rng.integers(0, 2, size=64)
    inputs = np.stack([rng.choice(10, 3, replace=False) + 10 * g for g in group]).astype(np.int64)
    positives = np.stack([rng.choice(10, 2, replace=False) + 10 * g for g in group]).astype(np.int64)
    negatives = np.stack([rng.choice(10, 4) + 10 * (1 - g) for g in group]).astype(np.int64)
    batch = {"inputs": tf.constant(inputs), "positives": tf.constant(positives), "negatives": tf.constant(negatives)}
    optimizer = keras.optimizers.Adam(0.05)
    first = float(net.loss(batch, training=True))
    for _ in range(30):
        with tf.GradientTape() as tape:
            value = net.loss(batch, training=True)
        optimizer.apply_gradients(zip(tape.gradient(value, net.trainable_variables), net.trainable_variables))
    assert float(net.loss(batch, training=True)) < 0.5 * first
