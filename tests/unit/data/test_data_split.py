"""The strong-generalization split: the protocol's invariants on tiny generated data."""

import pandas as pd
import pytest

from sparkml_tf.errors import DataError
from sparkml_tf.retrieval.generate import generate_ratings
from sparkml_tf.retrieval.split import SPLITS, heldout_roles, num_heldout, strong_generalization_split

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def ratings(spark):
    frame = generate_ratings(num_users=120, num_items=80, ratings_per_user=25, min_ratings_per_user=4, seed=5)
    return spark.createDataFrame(frame, "user string, item string, rating double, timestamp long")


@pytest.fixture(scope="module")
def split(ratings):
    result = strong_generalization_split(ratings, min_rating=3.5, min_items=5, heldout_users=15, target_fraction=0.2, seed=7)
    frame = result.interactions.toPandas()
    result.release()
    return result, frame


def test_columns_and_split_values(split):
    result, frame = split
    assert list(frame.columns) == ["user", "item", "rating", "timestamp", "split"]
    assert set(frame["split"]) == set(SPLITS)
    assert (frame["rating"] > 3.5).all()
    assert result.counts["rows.train"] == (frame["split"] == "train").sum()


def test_heldout_users_are_disjoint_and_absent_from_train(split):
    _, frame = split
    users = {s: set(frame.loc[frame["split"] == s, "user"]) for s in SPLITS}
    assert users["validation_input"] == users["validation_target"]
    assert users["test_input"] == users["test_target"]
    assert not users["validation_input"] & users["test_input"]
    assert not users["train"] & (users["validation_input"] | users["test_input"])
    # 15 chosen each; a few may drop for having < 2 items in the vocabulary
    assert 12 <= len(users["validation_input"]) <= 15 and 12 <= len(users["test_input"]) <= 15


def test_heldout_items_come_from_training_users_vocabulary(split):
    _, frame = split
    vocab = set(frame.loc[frame["split"] == "train", "item"])
    assert set(frame.loc[frame["split"] != "train", "item"]) <= vocab


def test_inputs_and_targets_partition_each_user(split):
    _, frame = split
    for prefix in ("validation", "test"):
        inputs = frame[frame["split"] == f"{prefix}_input"].groupby("user")["item"].apply(set)
        targets = frame[frame["split"] == f"{prefix}_target"].groupby("user")["item"].apply(set)
        assert set(inputs.index) == set(targets.index)
        for user in inputs.index:
            assert inputs[user] and targets[user] and not inputs[user] & targets[user]
        total_targets = sum(len(t) for t in targets)
        total = total_targets + sum(len(i) for i in inputs)
        assert 0.12 < total_targets / total < 0.3  # floor(20%), at least one


def test_min_items_filter(split):
    _, frame = split
    assert frame[frame["split"] == "train"].groupby("user").size().min() >= 5


def test_deterministic_for_a_seed_and_different_across_seeds(ratings, split):
    _, frame = split
    key = ["user", "item"]

    def run(seed, data=ratings):
        result = strong_generalization_split(data, heldout_users=15, seed=seed)
        out = result.interactions.toPandas().sort_values(key).reset_index(drop=True)
        result.release()
        return out

    same = run(7, ratings.repartition(3))  # another partitioning: the same split
    pd.testing.assert_frame_equal(frame.sort_values(key).reset_index(drop=True), same)
    other = run(8)
    assert set(other.loc[other["split"] == "test_input", "user"]) != set(frame.loc[frame["split"] == "test_input", "user"])


@pytest.mark.parametrize("bucket_bits", [1, 4, 10])
def test_heldout_users_are_ranked_as_by_one_global_ordering_of_their_hash(ratings, bucket_bits):
    # The first n users by (xxhash64(user, seed), user) validate, the next n test: the split a
    # window over all users gave, computed here without one (any number of hash buckets).
    from pyspark.sql import functions as F

    users, n = ratings.select("user").distinct(), 17
    got = dict(heldout_roles(users, n, seed=7, bucket_bits=bucket_bits).toPandas().itertuples(index=False))
    order = list(users.select("user", F.xxhash64("user", F.lit(7)).alias("h")).toPandas().sort_values(["h", "user"])["user"])
    assert got == {**{u: "validation" for u in order[:n]}, **{u: "test" for u in order[n : 2 * n]}}


def test_fraction_of_users():
    assert num_heldout(0.1, 1000) == 100
    assert num_heldout(25, 1000) == 25
    with pytest.raises(ValueError):
        num_heldout(1.5, 1000)


def test_too_few_users(ratings):
    with pytest.raises(DataError) as info:
        strong_generalization_split(ratings, heldout_users=0.5)
    assert info.value.code == "DATA_TOO_FEW_USERS"
