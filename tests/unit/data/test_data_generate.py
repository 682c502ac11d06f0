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


def test_grouped_sampler_shape_counts_and_no_duplicates():
    frame = generate_ratings(num_users=100, num_items=200, ratings_per_user=30, min_ratings_per_user=10, seed=3, sampler="grouped")
    gumbel = generate_ratings(num_users=100, num_items=200, ratings_per_user=30, min_ratings_per_user=10, seed=3, sampler="gumbel")
    assert list(frame.columns) == ["user", "item", "rating", "timestamp"] and frame.dtypes.equals(gumbel.dtypes)
    assert not frame.duplicated(["user", "item"]).any()
    # The same per-user counts (drawn before the sampler runs): only which items differ.
    assert frame.groupby("user").size().equals(gumbel.groupby("user").size())
    assert frame["rating"].between(1, 5).all() and frame["item"].astype(int).between(1, 200).all()


def test_grouped_sampler_draws_the_gumbel_law():
    """Both samplers draw each user's items without replacement by popularity x taste: the items'
    pick frequencies agree within sampling noise, and so does how well picks match tastes."""
    kwargs = dict(num_users=4000, num_items=60, ratings_per_user=8, min_ratings_per_user=2, seed=7)
    frames = {s: generate_ratings(**kwargs, sampler=s) for s in ("gumbel", "grouped")}
    freq = {s: f["item"].astype(int).value_counts(normalize=True).reindex(range(1, 61), fill_value=0.0).to_numpy() for s, f in frames.items()}
    assert 0.5 * np.abs(freq["gumbel"] - freq["grouped"]).sum() < 0.03  # total variation
    assert np.corrcoef(freq["gumbel"], freq["grouped"])[0, 1] > 0.99
    liked = {s: (f["rating"] > 3.5).mean() for s, f in frames.items()}
    assert abs(liked["gumbel"] - liked["grouped"]) < 0.02


def test_auto_sampler_switches_above_the_threshold(monkeypatch):
    from sparkml_tf.retrieval import generate

    kwargs = dict(num_users=40, num_items=90, ratings_per_user=10, min_ratings_per_user=3, seed=2)
    assert generate_ratings(**kwargs).equals(generate_ratings(**kwargs, sampler="gumbel"))
    monkeypatch.setattr(generate, "GUMBEL_MAX_ITEMS", 89)
    assert generate_ratings(**kwargs).equals(generate_ratings(**kwargs, sampler="grouped"))


def test_large_catalogue_is_cheap_and_its_tail_is_rated():
    frame = generate_ratings(num_users=2000, num_items=200_000, ratings_per_user=100, popularity_exponent=0.5, seed=0)
    assert len(frame) > 150_000 and not frame.duplicated(["user", "item"]).any()
    assert frame["item"].nunique() > 0.5 * len(frame)  # a flat popularity spreads the ratings over the catalogue


def test_bad_settings_are_config_errors_at_their_key():
    import pytest

    from sparkml_tf.errors import ConfigError, ConfigErrors

    with pytest.raises(ConfigError) as one:
        generate_ratings(num_users=0)
    assert one.value.code == "CONFIG_BAD_VALUE" and one.value.path == "generator.num_users"
    with pytest.raises(ConfigErrors) as many:
        generate_ratings(num_items=1.5, popularity_exponent=-1, sampler="exact", taste_strength=float("nan"))
    paths = sorted(e.path for e in many.value.errors)
    assert paths == ["generator.num_items", "generator.popularity_exponent", "generator.sampler", "generator.taste_strength"]
    assert all(e.code == "CONFIG_BAD_VALUE" for e in many.value.errors)
    assert "sampler must be one of auto, gumbel, grouped, got 'exact'" in str(many.value)
