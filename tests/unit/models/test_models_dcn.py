import keras
import numpy as np
import pytest
import tensorflow as tf

from sparkml_tf.ranking.models.dcn import DCNv2

SIZES = {"deep_size": 30, "wide_size": 50, "num_deep": 3, "num_wide": 4, "num_dense": 2}


@pytest.fixture(autouse=True)
def _fresh():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


def batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "deep_ids": tf.constant(rng.integers(0, 30, (n, 3)), tf.int64),
        "wide_ids": tf.constant(rng.integers(0, 50, (n, 4)), tf.int64),
        "dense": tf.constant(rng.random((n, 2)), tf.float32),
        "label": tf.constant(rng.integers(0, 2, n), tf.float32),
    }


def x0_of(net, features):
    table = net.deep_embeddings.numpy()
    n = features["deep_ids"].shape[0]
    return np.concatenate([table[features["deep_ids"].numpy()].reshape(n, -1), features["dense"].numpy()], axis=1)


def test_cross_layer_formula_stacked():
    net = DCNv2(embedding_dim=4, cross_layers=2, hidden_units=[6]).build(SIZES)
    features = batch()
    x0 = x0_of(net, features)
    assert x0.shape[1] == net.input_dim == 3 * 4 + 2
    x = x0
    for w in net.sublayers(net.cross_w_names):  # x_{l+1} = x0 * (W x_l + b) + x_l
        x = x0 * (x @ w.kernel.numpy() + w.bias.numpy()) + x
    (hidden,) = net.sublayers(net.hidden_names)
    h = np.maximum(x @ hidden.kernel.numpy() + hidden.bias.numpy(), 0)
    expected = (h @ net.out.kernel.numpy() + net.out.bias.numpy())[:, 0]
    logits = net(features)
    assert logits.shape == (6,) and logits.dtype == tf.float32
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_parallel_low_rank():
    net = DCNv2(embedding_dim=4, cross_layers=3, hidden_units=[8, 5], structure="parallel", projection_dim=2).build(SIZES)
    d = net.input_dim
    cross_v, cross_u = net.sublayers(net.cross_v_names), net.sublayers(net.cross_w_names)
    assert [v.kernel.shape for v in cross_v] == [(d, 2)] * 3 and [u.kernel.shape for u in cross_u] == [(2, d)] * 3
    assert net.out.kernel.shape == (d + 5, 1)  # cross output and MLP output side by side
    features = batch()
    x0 = x0_of(net, features)
    x = x0
    for v, u in zip(cross_v, cross_u):
        x = x0 * ((x @ v.kernel.numpy()) @ u.kernel.numpy() + u.bias.numpy()) + x
    h = x0
    for layer in net.sublayers(net.hidden_names):
        h = np.maximum(h @ layer.kernel.numpy() + layer.bias.numpy(), 0)
    expected = (np.concatenate([x, h], axis=1) @ net.out.kernel.numpy() + net.out.bias.numpy())[:, 0]
    np.testing.assert_allclose(net(features).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_loss_and_learning():
    net = DCNv2(embedding_dim=4, cross_layers=1, hidden_units=[8], l2=0.0).build(SIZES)
    features = batch(64, seed=2)
    bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=features["label"], logits=net(features)))
    assert float(net.loss(features, training=False)) == pytest.approx(float(bce), rel=1e-6)
    optimizer = keras.optimizers.Adam(0.05)
    first = float(net.loss(features))
    for _ in range(30):
        with tf.GradientTape() as tape:
            value = net.loss(features, training=True)
        optimizer.apply_gradients(zip(tape.gradient(value, net.trainable_variables), net.trainable_variables))
    assert float(net.loss(features)) < first * 0.7


def test_same_seed_same_weights():
    a = DCNv2(embedding_dim=2, hidden_units=[4], seed=7).build(SIZES)
    b = DCNv2(embedding_dim=2, hidden_units=[4], seed=7).build(SIZES)
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


@pytest.mark.parametrize("kwargs", [{"structure": "zigzag"}, {"cross_layers": -1}, {"projection_dim": 0}, {"dropout": -0.1}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        DCNv2(**kwargs)


@pytest.mark.parametrize("projection_dim", [None, 3])
def test_checkpoint_holds_every_weight(tmp_path, projection_dim):
    spec = DCNv2(embedding_dim=2, cross_layers=2, hidden_units=[4, 3], projection_dim=projection_dim, structure="parallel")
    net = spec.build(SIZES)
    for w in net.weights:  # differ from a fresh build's seeded initial values everywhere
        w.assign(tf.random.normal(w.shape, seed=5))
    tf.train.Checkpoint(model=net).write(str(tmp_path / "w"))
    saved = [name for name, _ in tf.train.list_variables(str(tmp_path / "w")) if name.startswith("model/")]
    assert len(saved) == len(net.weights)
    other = spec.build(SIZES)
    tf.train.Checkpoint(model=other).read(str(tmp_path / "w")).assert_consumed()
    np.testing.assert_allclose(other(batch()).numpy(), net(batch()).numpy(), rtol=1e-6)
