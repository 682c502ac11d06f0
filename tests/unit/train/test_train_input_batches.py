"""The trainer's input: the built-in models' batches are made a batch at a time (from the users held
as one RaggedTensor, or from streamed records parsed together), never user by user, and they hold
the per-user path's users in the same order."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from sparkml_tf.io.tfrecords import write_shard
from sparkml_tf.retrieval.models.average import AverageModel
from sparkml_tf.retrieval.models.inputs import whole_list_example
from sparkml_tf.retrieval.models.losses import BPRLoss
from sparkml_tf.retrieval.records import gathered_batches, tfrecord_source, training_batches


def user_lists(count, seed=0, longest=40):
    rng = np.random.default_rng(seed)
    return [rng.choice(500, size=rng.integers(1, longest), replace=False).astype(np.int64) for _ in range(count)]


def users(count, seed=0, splits=tf.int64, longest=40):
    return tf.data.Dataset.from_tensor_slices(tf.ragged.constant(user_lists(count, seed, longest), dtype=tf.int64, row_splits_dtype=splits))


def per_user(preprocess):
    """The same function without its batched form: the per-user path."""
    return lambda items: preprocess(items)


def take(dataset, n, key="items"):
    return [batch[key].numpy() for batch in itertools.islice(iter(dataset), n)]


@pytest.mark.parametrize("count, batch, buffer, splits", [(300, 32, 100, tf.int64), (50, 16, 10_000, tf.int32), (37, 37, 5, tf.int64)])
def test_held_whole_list_batches_are_the_per_user_paths_in_the_same_order(count, batch, buffer, splits):
    """Several passes over the users (the repeat crosses epoch edges), every batch equal: same users,
    same order, the same -1 padding to the batch's longest list."""
    preprocess = whole_list_example(500)
    steps = 3 * count // batch + 2
    element = take(training_batches(users(count, splits=splits), per_user(preprocess), batch, buffer, seed=7), steps)
    held = take(training_batches(users(count, splits=splits), preprocess, batch, buffer, seed=7, in_memory=True), steps)  # int32 splits: as parsed
    assert len(held) == len(element) == steps
    for a, b in zip(element, held):
        assert a.dtype == b.dtype == np.int64
        np.testing.assert_array_equal(a, b)
    assert any(np.any(b == -1) for b in held)  # padding happened


def test_streamed_records_are_shuffled_then_parsed_a_batch_at_a_time(tmp_path):
    """The streaming source yields the serialized records; their batches are the per-user path's
    over the parsed users, in the same order, for whole-list models (and for any source of items)."""
    lists = user_lists(90, seed=3)
    path = str(tmp_path / "part-00000.tfrecord.gz")
    write_shard(path, ((f"u{i}".encode(), items.tolist()) for i, items in enumerate(lists)), ["user"], ["items"])
    context = tf.distribute.InputContext()
    records = tfrecord_source([path], cache=False)(context)
    assert records.element_spec.dtype == tf.string
    preprocess = whole_list_example(500)
    streamed = take(training_batches(records, preprocess, 16, 50, seed=2), 12)
    element = take(training_batches(tfrecord_source([path], cache=True)(context), per_user(preprocess), 16, 50, seed=2), 12)
    from_items = take(training_batches(users(90, seed=3), preprocess, 16, 50, seed=2), 12)
    for a, b, c in zip(streamed, element, from_items):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    # A preprocess without a batched form still gets parsed users from records.
    first = take(training_batches(records, lambda items: {"items": items[:3]}, 8, 50, seed=2), 1)[0]
    assert first.shape == (8, 3)


def rows_of(batch, key):
    return [set(row[row >= 0].tolist()) for row in batch[key].numpy()]


@pytest.mark.parametrize("in_memory", [True, False])
def test_average_model_batches_draw_as_its_per_user_examples(in_memory):
    """The average model's batched draws: each user's items split into inputs (at least one) and
    positives (at least one when the user has two items, at most max_positives), no item lost or
    repeated, users in the per-user path's order; negatives in the catalogue."""
    tf.random.set_seed(11)  # the draws are random: a fixed seed keeps the means' comparison stable
    spec = AverageModel(max_positives=16)
    preprocess = spec.preprocess(500, BPRLoss(num_negatives=5))
    assert callable(preprocess.batched)
    lists = user_lists(200, seed=5, longest=17)  # at most 16 items: inputs + positives hold the whole list
    batched = list(itertools.islice(iter(training_batches(users(200, seed=5, longest=17), preprocess, 25, 1000, seed=4, in_memory=in_memory)), 8))
    element = list(itertools.islice(iter(training_batches(users(200, seed=5, longest=17), per_user(preprocess), 25, 1000, seed=4)), 8))
    by_set = {frozenset(items.tolist()): items for items in lists}
    sizes = {"batched": [], "element": []}
    in_list_order = []
    for got, want in zip(batched, element):
        assert got["negatives"].shape == want["negatives"].shape == (25, 5)
        assert 0 <= got["negatives"].numpy().min() and got["negatives"].numpy().max() < 500
        for inputs, positives, want_in, want_pos in zip(rows_of(got, "inputs"), rows_of(got, "positives"), rows_of(want, "inputs"), rows_of(want, "positives")):
            assert inputs | positives == want_in | want_pos  # the same user
            items = by_set[frozenset(inputs | positives)]
            assert not inputs & positives and len(inputs) + len(positives) == len(items)
            assert len(inputs) >= 1 and (len(positives) >= 1 or len(items) == 1)
            sizes["batched"].append(len(inputs) / len(items))
            if len(items) >= 4:
                in_list_order.append(inputs == set(items[: len(inputs)].tolist()))
            sizes["element"].append(len(want_in) / len(items))
    # The inputs' share is drawn alike (keep probability 0.8, clipped): means within a few points.
    assert abs(np.mean(sizes["batched"]) - np.mean(sizes["element"])) < 0.05
    # Not the list's own order: the items are drawn at random into inputs and positives.
    assert sum(in_list_order) < 0.2 * len(in_list_order)


def test_average_model_batch_caps_positives_and_handles_short_lists():
    spec = AverageModel(max_positives=2, input_keep_prob=0.1)
    make = spec.preprocess(50, BPRLoss(num_negatives=3)).batched
    items = tf.ragged.constant([[1], [2, 3], list(range(10, 30)), []], dtype=tf.int64, row_splits_dtype=tf.int32)
    out = {key: value.numpy() for key, value in make(items).items()}
    counts = lambda key: [(row >= 0).sum() for row in out[key]]
    assert counts("inputs") == [1, 1, counts("inputs")[2], 0]
    assert counts("positives")[:2] == [0, 1] and counts("positives")[2] == 2 and counts("positives")[3] == 0
    assert out["inputs"].shape[0] == out["positives"].shape[0] == 4 and out["negatives"].shape == (4, 3)


def test_gathered_batches_on_a_worker_without_users():
    empty = tf.data.Dataset.from_tensor_slices(tf.ragged.constant([[1]], dtype=tf.int64)).take(0)
    assert take(gathered_batches(empty, whole_list_example(10), 4, 10, seed=0), 1) == []
