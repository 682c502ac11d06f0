import keras
import numpy as np
import pytest
import tensorflow as tf

from sparkml_tf.ranking.models.wide_deep import WideDeep, ctr_sizes
from sparkml_tf.ranking.testing import ctr_feature_index

SIZES = {"deep_size": 40, "wide_size": 70, "num_deep": 4, "num_wide": 6, "num_dense": 2}


@pytest.fixture(autouse=True)
def _fresh():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


def batch(n=5, seed=0, sizes=SIZES):
    rng = np.random.default_rng(seed)
    return {
        "deep_ids": tf.constant(rng.integers(0, sizes["deep_size"], (n, sizes["num_deep"])), tf.int64),
        "wide_ids": tf.constant(rng.integers(0, sizes["wide_size"], (n, sizes["num_wide"])), tf.int64),
        "dense": tf.constant(rng.random((n, sizes["num_dense"])), tf.float32),
        "label": tf.constant(rng.integers(0, 2, n), tf.float32),
    }


def test_logit_is_wide_plus_deep():
    net = WideDeep(embedding_dim=3, hidden_units=[8, 4]).build(SIZES)
    features = batch()
    logits = net(features)
    assert logits.shape == (5,) and logits.dtype == tf.float32
    # wide: the rows of the [wide_size, 1] table summed, plus a bias
    net.wide_weights.assign(tf.random.normal([70, 1], seed=3))
    net.wide_bias.assign(0.25)
    wide = net.wide_weights.numpy()[features["wide_ids"].numpy()].sum(axis=(1, 2)) + 0.25
    # deep: the embeddings of every deep feature concatenated with dense, through the ReLU stack
    table = net.deep_embeddings.numpy()
    x = np.concatenate([table[features["deep_ids"].numpy()].reshape(5, 4 * 3), features["dense"].numpy()], axis=1)
    assert x.shape == (5, net.input_dim) == (5, 14)
    for layer in net.sublayers(net.hidden_names):
        x = np.maximum(x @ layer.kernel.numpy() + layer.bias.numpy(), 0)
    deep = (x @ net.out.kernel.numpy() + net.out.bias.numpy())[:, 0]
    np.testing.assert_allclose(net(features).numpy(), wide + deep, rtol=1e-5, atol=1e-6)


def test_criteo_sized_deep_input():
    sizes = {"deep_size": 600, "wide_size": 900, "num_deep": 60, "num_wide": 80, "num_dense": 13}
    net = WideDeep().build(sizes)  # defaults: 10 dims, [256, 256, 256]
    assert net.input_dim == 60 * 10 + 13
    assert [layer.kernel.shape for layer in net.sublayers(net.hidden_names)] == [(613, 256), (256, 256), (256, 256)]
    assert net.deep_embeddings.shape == (600, 10) and net.wide_weights.shape == (900, 1)
    assert net(batch(3, sizes=sizes)).shape == (3,)


def test_no_dense_or_wide_features():
    sizes = {"deep_size": 12, "wide_size": 0, "num_deep": 3, "num_wide": 0, "num_dense": 0}
    net = WideDeep(embedding_dim=2, hidden_units=[4]).build(sizes)
    features = batch(4, sizes=sizes)
    assert features["dense"].shape == (4, 0) and net(features).shape == (4,)
    assert np.isfinite(float(net.loss(features)))


def test_build_from_feature_index_stats_or_its_dict():
    index = ctr_feature_index()
    for source in (index, index.to_dict(), {**index.sizes(), "num_train_examples": 5, "task": "ctr"}):
        assert ctr_sizes(source) == index.sizes()
    net = WideDeep(embedding_dim=2, hidden_units=[4]).build(index)
    assert net.sizes == index.sizes()
    with pytest.raises(ValueError, match="missing num_dense"):
        ctr_sizes({k: v for k, v in SIZES.items() if k != "num_dense"})


def test_loss_is_bce_plus_l2_and_training_lowers_it():
    features = batch(64, seed=1)
    plain = WideDeep(embedding_dim=4, hidden_units=[8], l2=0.0).build(SIZES)
    logits = plain(features)
    bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=features["label"], logits=logits))
    assert float(plain.loss(features, training=False)) == pytest.approx(float(bce), rel=1e-6)
    keras.backend.clear_session()
    regularized = WideDeep(embedding_dim=4, hidden_units=[8], l2=0.1).build(SIZES)
    unregularized = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=features["label"], logits=regularized(features)))
    assert float(regularized.loss(features, training=False)) > float(unregularized) + 1e-4
    optimizer = keras.optimizers.Adam(0.05)
    first = float(plain.loss(features))
    for _ in range(30):
        with tf.GradientTape() as tape:
            value = plain.loss(features, training=True)
        grads = tape.gradient(value, plain.trainable_variables)
        optimizer.apply_gradients(zip(grads, plain.trainable_variables))
    assert float(plain.loss(features)) < first * 0.7


def test_dropout_only_when_training():
    net = WideDeep(embedding_dim=4, hidden_units=[32], dropout=0.5).build(SIZES)
    features = batch()
    np.testing.assert_array_equal(net(features).numpy(), net(features, training=False).numpy())
    assert not np.allclose(net(features, training=True).numpy(), net(features).numpy())


def test_checkpoint_holds_every_weight(tmp_path):
    spec = WideDeep(embedding_dim=3, hidden_units=[5, 4])
    net = spec.build(SIZES)
    for w in net.weights:  # differ from a fresh build's seeded initial values everywhere
        w.assign(tf.random.normal(w.shape, seed=5))
    tf.train.Checkpoint(model=net).write(str(tmp_path / "w"))
    saved = [name for name, _ in tf.train.list_variables(str(tmp_path / "w")) if name.startswith("model/")]
    assert len(saved) == len(net.weights) == 9
    other = spec.build(SIZES)
    tf.train.Checkpoint(model=other).read(str(tmp_path / "w")).assert_consumed()
    np.testing.assert_allclose(other(batch()).numpy(), net(batch()).numpy(), rtol=1e-6)


@pytest.mark.parametrize("kwargs", [{"embedding_dim": 0}, {"dropout": 1.0}, {"hidden_units": [8, 0]}, {"l2": -1}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        WideDeep(**kwargs)


def test_spec_module_imports_without_tensorflow():
    import subprocess
    import sys

    code = "import sys, sparkml_tf.ranking.models.wide_deep, sparkml_tf.ranking.models.dcn; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_wide_part_gets_its_own_learning_rate_group():
    import keras

    from sparkml_tf.train.loop import make_optimizers

    sizes = {"deep_size": 20, "wide_size": 30, "num_deep": 3, "num_wide": 4, "num_dense": 2}
    net = WideDeep(embedding_dim=2, hidden_units=[4], wide_learning_rate=0.05).build(sizes)
    (wide, wide_optimizer), (rest, optimizer) = make_optimizers(keras, net, 0.001)
    assert {v.name for v in wide} == {"wide_weights", "wide_bias"}
    assert len(wide) + len(rest) == len(net.trainable_variables)
    assert float(wide_optimizer.learning_rate) == pytest.approx(0.05) and float(optimizer.learning_rate) == pytest.approx(0.001)
    (single,) = make_optimizers(keras, WideDeep(embedding_dim=2, hidden_units=[4]).build(sizes), 0.001)
    assert len(single[0]) == len(net.trainable_variables)
    with pytest.raises(ValueError, match="wide_learning_rate"):
        WideDeep(wide_learning_rate=0)
