"""The trainer's input: whole-list models get their batches from the users held as one RaggedTensor
(no work per user), and those batches are the element path's, in the same order."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from sparkml_tf.retrieval.models.inputs import whole_list_example
from sparkml_tf.retrieval.records import training_batches, whole_list_batches


def users(count, seed=0, splits=tf.int64):
    rng = np.random.default_rng(seed)
    rows = [rng.choice(500, size=rng.integers(1, 40), replace=False).astype(np.int64) for _ in range(count)]
    return tf.data.Dataset.from_tensor_slices(tf.ragged.constant(rows, dtype=tf.int64, row_splits_dtype=splits))


def take(dataset, n):
    return [batch["items"].numpy() for batch in itertools.islice(iter(dataset), n)]


@pytest.mark.parametrize("count, batch, buffer, splits", [(300, 32, 100, tf.int64), (50, 16, 10_000, tf.int32), (37, 37, 5, tf.int64)])
def test_whole_list_batches_are_the_element_paths_in_the_same_order(count, batch, buffer, splits):
    """Several passes over the users (the repeat crosses epoch edges), every batch equal: same users,
    same order, the same -1 padding to the batch's longest list."""
    preprocess = whole_list_example(500)
    assert preprocess.whole_list
    steps = 3 * count // batch + 2
    element = take(training_batches(users(count, splits=splits), preprocess, batch, buffer, seed=7), steps)
    held = take(training_batches(users(count, splits=splits), preprocess, batch, buffer, seed=7, in_memory=True), steps)  # int32 splits: as parsed
    assert len(held) == len(element) == steps
    for a, b in zip(element, held):
        assert a.dtype == b.dtype == np.int64
        np.testing.assert_array_equal(a, b)
    assert any(np.any(b == -1) for b in held)  # padding happened


def test_other_models_and_streaming_input_keep_the_element_path():
    def average_like(items):  # a per-user preprocess (random draws per user): never bypassed
        return {"items": items[:3]}

    first = take(training_batches(users(40), average_like, 8, 100, seed=1, in_memory=True), 1)[0]
    assert first.shape[1] <= 3
    streaming = take(training_batches(users(40), whole_list_example(500), 8, 100, seed=1, in_memory=False), 2)
    np.testing.assert_array_equal(streaming[0], take(whole_list_batches(users(40), 8, 100, seed=1), 1)[0])
