"""The synthetic MovieLens-like generator: shape, ranges, determinism, learnable structure."""

import numpy as np

from sparkml_tf.retrieval.generate import generate_ratings


def test_columns_ranges_and_counts():
    frame = generate_ratings(num_users=100, num_items=200, ratings_per_user=30, min_ratings_per_user=10, seed=3)
    assert list(frame.columns) == ["user", "item", "rating", "timestamp"]
    assert frame["user"].map(type).eq(str).all() and frame["item"].map(type).eq(str).all()
    assert frame["user"].nunique() == 100
    assert frame["rating"].between(1, 5).all() and (frame["rating"] * 2 % 1 == 0).all()
    per_user = frame.groupby("user").size()
    assert per_user.min() >= 10 and 20 <= per_user.mean() <= 45
    assert not frame.duplicated(["user", "item"]).any()
    assert frame["timestamp"].dtype == np.int64 and (frame["timestamp"] > 9e8).all()


def test_seeded():
    a = generate_ratings(num_users=50, num_items=80, ratings_per_user=12, min_ratings_per_user=5, seed=1)
    b = generate_ratings(num_users=50, num_items=80, ratings_per_user=12, min_ratings_per_user=5, seed=1)
    c = generate_ratings(num_users=50, num_items=80, ratings_per_user=12, min_ratings_per_user=5, seed=2)
    assert a.equals(b) and not a.equals(c)


def test_popularity_is_skewed_and_taste_beats_popularity():
    frame = generate_ratings(num_users=600, num_items=300, ratings_per_user=40, seed=0)
    counts = frame.groupby("item").size().sort_values(ascending=False)
    assert counts.iloc[:30].sum() > 3 * counts.iloc[-30:].sum()  # a heavy head
    liked = frame[frame["rating"] > 3.5]
    assert 0.35 < len(liked) / len(frame) < 0.7
    # Held-out users: item co-occurrence from the others finds their hidden likes far better
    # than the most popular items, the gap a recommender is meant to learn.
    x = np.zeros((600, 300))
    x[liked["user"].astype(int) - 1, liked["item"].astype(int) - 1] = 1
    train, test = x[:500], x[500:]
    co = train.T @ train
    np.fill_diagonal(co, 0)
    rng = np.random.default_rng(0)
    hits = {"pop": [], "co": []}
    for row in test:
        items = rng.permutation(np.nonzero(row)[0])
        if len(items) < 5:
            continue
        target, given = items[: len(items) // 5], items[len(items) // 5 :]
        for name, score in (("pop", train.sum(0).copy()), ("co", co[given].sum(0))):
            score[given] = -np.inf
            hits[name].append(len(set(np.argsort(-score)[:10]) & set(target)) / min(10, len(target)))
    assert np.mean(hits["co"]) > 1.5 * np.mean(hits["pop"])
