"""Validation during retrieval training at catalogue scale: the exact top-k computed in item chunks
is the full top-k, and the validation users split across workers give the one-worker mean."""

import numpy as np
import pytest
import tensorflow as tf

from sparkml_tf.retrieval import trainer
from sparkml_tf.retrieval.trainer import ndcg_at_k, ndcg_sum, top_k_unseen, validation_share


class Net:
    """A net's scoring surface: user = mean of its items' vectors, item scores = dot + bias."""

    def __init__(self, vectors, biases):
        self.vectors = tf.constant(vectors, tf.float32)
        self.biases = tf.constant(biases, tf.float32)

    def user_embedding(self, items, training=False):
        items = tf.convert_to_tensor(items, tf.int64)
        mask = tf.cast(items >= 0, tf.float32)
        vectors = tf.gather(self.vectors, tf.maximum(items, 0)) * mask[:, :, None]
        return tf.reduce_sum(vectors, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)

    def item_embeddings(self):
        return self.vectors

    def item_biases(self):
        return self.biases


def ragged(rng, num_users, num_items, low, high):
    """-1 padded rows of distinct item ids, ``low`` to ``high`` per user."""
    rows = [rng.choice(num_items, size=rng.integers(low, high + 1), replace=False) for _ in range(num_users)]
    out = np.full((num_users, high), -1, np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def full_top_k(users, items, biases, seen, k):
    scores = (tf.matmul(users, items, transpose_b=True) + biases).numpy()
    for row, ids in enumerate(seen):
        scores[row, ids[ids >= 0]] = -np.inf
    return tf.math.top_k(scores, k=k).indices.numpy()


@pytest.mark.parametrize("chunk", [1, 7, 50, 64, 1000])
def test_chunked_top_k_is_the_full_top_k_ties_and_seen_items_included(chunk):
    rng = np.random.default_rng(0)
    num_items, k = 200, 30
    # Small whole numbers: every score is exact in float32 whatever the chunking, and ties abound.
    items = tf.constant(rng.integers(-2, 3, (num_items, 4)), tf.float32)
    biases = tf.constant(rng.integers(0, 2, num_items), tf.float32)
    users = tf.constant(rng.integers(-2, 3, (16, 4)), tf.float32)
    seen = ragged(rng, 16, num_items, 0, 25)
    got = top_k_unseen(users, items, biases, seen, k, chunk)
    assert got.dtype == np.int64 and got.shape == (16, k)
    np.testing.assert_array_equal(got, full_top_k(users, items, biases, seen, k))
    for row, ids in zip(got, seen):
        assert not set(row.tolist()) & set(ids[ids >= 0].tolist())  # fold-in items are never ranked


def test_top_k_larger_than_the_catalogue_and_everything_seen():
    items, biases = tf.eye(5), tf.zeros(5)
    users = tf.constant([[1.0, 2, 3, 4, 5]])
    seen = np.array([[4, 0, -1]])
    got = top_k_unseen(users, items, biases, seen, k=10, chunk_items=2)
    assert got.tolist() == [[3, 2, 1, 0, 4]]  # k capped at the catalogue; seen items last, lower id first
    np.testing.assert_array_equal(got, full_top_k(users, items, biases, seen, 5))


def test_ndcg_is_the_same_for_any_chunk_and_batch():
    rng = np.random.default_rng(1)
    net = Net(rng.normal(size=(300, 8)), rng.normal(scale=0.1, size=300))
    inputs, targets = ragged(rng, 70, 300, 1, 12), ragged(rng, 70, 300, 1, 6)
    one_chunk = ndcg_at_k(net, inputs, targets, k=20, batch_size=512)
    assert 0.0 <= one_chunk <= 1.0
    for batch_size, score_elements in ((16, 16 * 37), (32, 1), (512, 10_000)):  # 37-item chunks; chunks of k items; uneven
        assert ndcg_at_k(net, inputs, targets, k=20, batch_size=batch_size, score_elements=score_elements) == pytest.approx(one_chunk, abs=1e-12)


@pytest.mark.parametrize("num_workers", [2, 3])
def test_split_over_workers_gives_the_one_worker_mean(num_workers):
    rng = np.random.default_rng(2)
    net = Net(rng.normal(size=(120, 6)), np.zeros(120))
    inputs, targets = ragged(rng, 41, 120, 1, 10), ragged(rng, 41, 120, 1, 5)
    shares = [validation_share(len(inputs), rank, num_workers) for rank in range(num_workers)]
    rows = np.concatenate([np.arange(len(inputs))[share] for share in shares])
    assert sorted(rows.tolist()) == list(range(len(inputs)))  # every user once
    assert max(len(range(len(inputs))[s]) for s in shares) - min(len(range(len(inputs))[s]) for s in shares) <= 1
    sums = [ndcg_sum(net, inputs[share], targets[share], k=10) for share in shares]
    total, count = np.sum(sums, axis=0)
    assert count == len(inputs)
    assert total / count == pytest.approx(ndcg_at_k(net, inputs, targets, k=10), rel=1e-12)


def test_a_worker_with_no_users_still_takes_part():
    net = Net(np.eye(4), np.zeros(4))
    assert ndcg_sum(net, np.zeros((0, 3), np.int64), np.zeros((0, 2), np.int64)) == (0.0, 0)
    assert np.isnan(ndcg_at_k(net, np.zeros((0, 3), np.int64), np.zeros((0, 2), np.int64)))


def test_task_evaluate_scores_its_share_and_all_reduces(monkeypatch):
    """RetrievalTask.evaluate on each of two ranks (the all-reduce replaced by the sum of both ranks'
    shares): both get the mean of one worker scoring every user."""
    rng = np.random.default_rng(3)
    net = Net(rng.normal(size=(90, 5)), np.zeros(90))
    inputs, targets = ragged(rng, 25, 90, 1, 8), ragged(rng, 25, 90, 1, 4)

    def task(rank, num_workers, replicas):
        t = trainer.RetrievalTask.__new__(trainer.RetrievalTask)
        t.validation, t.rank, t.num_workers = (inputs, targets), rank, num_workers
        t.strategy = type("Strategy", (), {"num_replicas_in_sync": replicas})()
        return t

    shares = [ndcg_sum(net, inputs[validation_share(25, r, 2)], targets[validation_share(25, r, 2)]) for r in range(2)]
    calls = []

    def fake_all_reduce(strategy, values):
        calls.append(list(values))
        return np.sum(shares, axis=0)

    monkeypatch.setattr(trainer, "all_reduce_sum", fake_all_reduce)
    single = task(0, 1, 1).evaluate(net)["val_ndcg@100"]
    assert calls == [] and single == pytest.approx(ndcg_at_k(net, inputs, targets), abs=1e-12)
    for rank in range(2):
        assert task(rank, 2, 2).evaluate(net)["val_ndcg@100"] == pytest.approx(single, rel=1e-12)
    assert [c[1] for c in calls] == [13, 12]  # each rank scored its own share only
    # Two workers without a multi-worker strategy (no collective to reduce through): each scores every user.
    assert task(1, 2, 1).evaluate(net)["val_ndcg@100"] == single and len(calls) == 2


@pytest.mark.spark
def test_two_workers_validate_split_and_agree_with_one(spark, tmp_path):
    """A real two-worker training (MultiWorkerMirroredStrategy on the session's local[2]): the
    all-reduced validation NDCG is the one a single process computes over every validation user."""
    from sparkml_tf.retrieval.layout import RetrievalDataset
    from sparkml_tf.retrieval.records import read_validation
    from sparkml_tf.retrieval.toy import toy_train_settings, write_toy_dataset
    from sparkml_tf.spark.barrier import SparkBarrierLauncher
    from sparkml_tf.train.launch import build_specs

    write_toy_dataset(str(tmp_path / "ds"), num_users=128, num_items=60, num_shards=2, num_validation=33)
    settings = toy_train_settings(str(tmp_path))
    result = SparkBarrierLauncher(2, spark=spark).run(trainer.train_worker, build_specs(settings))
    assert result["num_workers"] == 2 and len(result["history"]) == 2
    loaded = tf.saved_model.load(result["export_path"])  # the best evaluation's weights
    factors = loaded.signatures["item_embeddings"]()

    class Exported(Net):
        def user_embedding(self, items, training=False):
            return loaded.signatures["serving_default"](items=tf.constant(items))["user_embedding"]

    inputs, targets = read_validation(RetrievalDataset(str(tmp_path / "ds")).shard_files("validation"))
    assert len(inputs) == 33  # an odd count: the ranks' shares differ
    one = ndcg_at_k(Exported(factors["embeddings"], factors["biases"]), inputs, targets)
    assert result["best_ndcg"] == pytest.approx(one, abs=1e-6)


def test_baseline_recommend_bounds_its_scores_and_keeps_the_lists(monkeypatch):
    """The popular/EASE baselines on the driver score few users at a time for a large catalogue
    (16 at 1M items), with the same lists as one batch."""
    from sparkml_tf.metrics import baselines
    from sparkml_tf.metrics.ranking import pad_lists

    rng = np.random.default_rng(4)
    model = baselines.Popular(50).fit(np.zeros(400, np.int64), rng.integers(0, 50, 400))
    foldin = pad_lists([rng.choice(50, size=rng.integers(0, 6), replace=False) for _ in range(30)])
    whole = baselines.recommend(model, foldin, 10)
    shapes = []
    score = model.score
    monkeypatch.setattr(model, "score", lambda f: shapes.append(f.shape[0]) or score(f))
    monkeypatch.setattr(baselines, "SCORE_ELEMENTS", 7 * 50)
    np.testing.assert_array_equal(baselines.recommend(model, foldin, 10), whole)
    assert max(shapes) == 7 and sum(shapes) == 30
