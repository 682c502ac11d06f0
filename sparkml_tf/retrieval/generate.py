"""Seeded MovieLens-like ratings (numpy/pandas only), for tests, demos and benchmarks.

The structure is what makes a recommender worth training: each item has one to three genres
and a popularity drawn from a power law; each user likes a few genres. A user picks items
by popularity times taste, and rates them higher the more they match that taste, so after
keeping the good ratings a model that learns tastes beats "most popular" clearly.
Defaults give about the scale of ml-1m (6,000 users, 3,700 items, ~1M ratings) in seconds.
"""

from __future__ import annotations

import numpy as np

# Users sampled per block: bounds memory to block x num_items floats.
_BLOCK = 512
_START = 956_703_932  # 2000-04-25, the first ml-1m timestamp


def generate_ratings(
    num_users: int = 6000,
    num_items: int = 3700,
    ratings_per_user: float = 165.0,
    min_ratings_per_user: int = 20,
    num_genres: int = 18,
    taste_concentration: float = 0.3,
    taste_strength: float = 3.0,
    popularity_exponent: float = 1.0,
    seed: int = 0,
):
    """Return a pandas DataFrame ``user, item, rating, timestamp`` (user and item as strings).

    ``ratings_per_user`` is the mean of a heavy-tailed (log-normal) count, never below
    ``min_ratings_per_user`` nor above 60% of ``num_items``. ``taste_strength`` scales how much a user's
    genres drive both what they pick and how they rate it (0: popularity only, ratings noise).
    """
    import pandas as pd

    if num_users < 1 or num_items < 2:
        raise ValueError(f"need at least 1 user and 2 items, got num_users={num_users}, num_items={num_items}")
    rng = np.random.default_rng(seed)
    low = max(1, min(min_ratings_per_user, num_items))

    # Items: 1-3 genres each (row-normalized), a power-law popularity in shuffled order, a quality.
    genres = np.zeros((num_items, num_genres), np.float32)
    per_item = rng.integers(1, 4, num_items)
    for k in range(3):
        rows = np.nonzero(per_item > k)[0]
        genres[rows, rng.integers(0, num_genres, rows.size)] = 1.0
    genres /= genres.sum(1, keepdims=True)
    log_pop = (-popularity_exponent * np.log(np.arange(1, num_items + 1, dtype=np.float64)))[rng.permutation(num_items)]
    quality = rng.normal(0.0, 0.4, num_items)

    # Users: a sparse taste over genres, a rating bias, how many items they rate.
    tastes = rng.dirichlet(np.full(num_genres, taste_concentration), num_users).astype(np.float32)
    bias = rng.normal(0.0, 0.3, num_users)
    extra = max(ratings_per_user - low, 1.0)
    sigma = 1.0
    counts = low + rng.lognormal(np.log(extra) - sigma**2 / 2, sigma, num_users)
    counts = np.minimum(np.round(counts).astype(np.int64), max(low, int(0.6 * num_items)))

    users, items, affinities = [], [], []
    for start in range(0, num_users, _BLOCK):
        stop = min(start + _BLOCK, num_users)
        affinity = (tastes[start:stop] @ genres.T) * num_genres  # ~1 for an average match
        # Gumbel top-k: n items without replacement, with probability ~ popularity * exp(taste).
        keys = log_pop + taste_strength * np.log1p(affinity) + rng.gumbel(size=affinity.shape)
        order = np.argsort(-keys, axis=1)
        n = counts[start:stop]
        keep = np.arange(num_items)[None, :] < n[:, None]
        rows = np.broadcast_to(np.arange(start, stop)[:, None], order.shape)[keep]
        chosen = order[keep]
        users.append(rows)
        items.append(chosen)
        affinities.append(affinity[rows - start, chosen])
    user = np.concatenate(users)
    item = np.concatenate(items)
    affinity = np.concatenate(affinities).astype(np.float64)

    # Ratings: taste match + item quality + user bias + noise, mapped to 1..5 in half stars
    # with about ml-1m's mean (3.6) and spread.
    match = np.log1p(affinity)
    match = (match - match.mean()) / (match.std() + 1e-9)
    score = 0.7 * match * min(taste_strength / 3.0, 1.0) + quality[item] + bias[user] + rng.normal(0.0, 0.6, user.size)
    score = (score - score.mean()) / (score.std() + 1e-9)
    rating = np.clip(np.round((3.6 + 1.05 * score) * 2.0) / 2.0, 1.0, 5.0)

    # Timestamps: each user is active from a start day for a heavy-tailed span, in random order.
    first = _START + rng.integers(0, 3 * 365 * 86400, num_users)
    span = rng.exponential(60 * 86400, num_users) + 3600
    timestamp = first[user] + (rng.random(user.size) * span[user]).astype(np.int64)

    frame = pd.DataFrame(
        {
            "user": pd.Series(user + 1).astype(str),
            "item": pd.Series(item + 1).astype(str),
            "rating": rating,
            "timestamp": timestamp.astype(np.int64),
        }
    )
    return frame
