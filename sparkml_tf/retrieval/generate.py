"""Seeded MovieLens-like ratings (numpy/pandas only), for tests, demos and benchmarks.

The structure is what makes a recommender worth training: each item has one to three genres
and a popularity drawn from a power law; each user likes a few genres. A user picks items
by popularity times taste, and rates them higher the more they match that taste, so after
keeping the good ratings a model that learns tastes beats "most popular" clearly.
Defaults give about the scale of ml-1m (6,000 users, 3,700 items, ~1M ratings) in seconds.

Two samplers draw the same law (each user's items without replacement, with probability
proportional to popularity times taste): ``gumbel`` scores every item for every user (Gumbel
top-k), so it costs users x items; ``grouped`` draws items one at a time with replacement and keeps
the first ``n`` distinct ones, which is the same successive sampling. It goes through the genre
combinations items share (at most a few hundred): a user picks a combination by its popularity
mass times the user's taste for it, then an item of that combination by popularity, so it costs
users x combinations plus the draws, whatever the catalogue. ``auto`` (the default) keeps
``gumbel`` up to ``GUMBEL_MAX_ITEMS`` items (the datasets it made before stay the same) and
takes ``grouped`` above: 1M items and 10M ratings take 20-50 s on 2 busy cores (docs/scale.md).
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from sparkml_tf.errors import Checks

# Users sampled per block by the Gumbel sampler: bounds memory to block x num_items floats.
_BLOCK = 512
# Users per block of the grouped sampler (block x genre combinations weights, their draws).
_GROUPED_BLOCK = 8192
_START = 956_703_932  # 2000-04-25, the first ml-1m timestamp
SAMPLERS = ("auto", "gumbel", "grouped")
GUMBEL_MAX_ITEMS = 20_000  # ``auto``: the Gumbel top-k up to this many items, the grouped sampler above


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
    sampler: str = "auto",
):
    """Return a pandas DataFrame ``user, item, rating, timestamp`` (user and item as strings).

    ``ratings_per_user`` is the mean of a heavy-tailed (log-normal) count, never below
    ``min_ratings_per_user`` nor above 60% of ``num_items``. ``taste_strength`` scales how much a user's
    genres drive both what they pick and how they rate it (0: popularity only, ratings noise).
    ``popularity_exponent``: item popularity falls as rank^-exponent (lower it for a large catalogue
    whose tail should still be rated). ``sampler``: ``auto``, ``gumbel`` or ``grouped`` (module doc).
    A refused value is a CONFIG_BAD_VALUE at ``generator.<key>`` (:func:`check_generator`).
    """
    import pandas as pd

    check_generator(
        num_users=num_users, num_items=num_items, ratings_per_user=ratings_per_user, min_ratings_per_user=min_ratings_per_user,
        num_genres=num_genres, taste_concentration=taste_concentration, taste_strength=taste_strength,
        popularity_exponent=popularity_exponent, seed=seed, sampler=sampler,
    )
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

    if sampler == "gumbel" or (sampler == "auto" and num_items <= GUMBEL_MAX_ITEMS):
        user, item, affinity = _gumbel_picks(rng, counts, tastes, genres, log_pop, taste_strength)
    else:
        user, item, affinity = _grouped_picks(rng, counts, tastes, genres, log_pop, taste_strength)
    affinity = affinity.astype(np.float64)

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

    # Ids as strings, one str object per user and per item shared by all its rows (10M rows: ~0.3 GB, not 1.3 GB).
    frame = pd.DataFrame(
        {
            "user": pd.Series(_names(num_users)[user]),
            "item": pd.Series(_names(num_items)[item]),
            "rating": rating,
            "timestamp": timestamp.astype(np.int64),
        }
    )
    return frame


def _names(count: int) -> np.ndarray:
    """``"1"`` .. ``str(count)`` as an object array."""
    names = np.empty(count, dtype=object)
    names[:] = [str(i) for i in range(1, count + 1)]
    return names


def check_generator(**settings: Any) -> None:
    """Refuse impossible generator settings, all at once: CONFIG_BAD_VALUE at ``generator.<key>``."""
    checks = Checks()

    def whole(key: str, low: int, high: float = float("inf")) -> None:
        value = settings.get(key)
        if key in settings:
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and low <= value <= high
            checks.require(ok, f"generator.{key}", f"{key} must be a whole number{_range(low, high)}, got {value!r}")

    def number(key: str, low: float, strict: bool) -> None:
        value = settings.get(key)
        if key in settings:
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and np.isfinite(value)
            ok = ok and (value > low if strict else value >= low)
            checks.require(ok, f"generator.{key}", f"{key} must be a finite number {'above' if strict else 'of at least'} {low:g}, got {value!r}")

    whole("num_users", 1)
    whole("num_items", 2)
    whole("min_ratings_per_user", 1)
    whole("num_genres", 1, 62)  # a genre combination is a bit mask in an int64
    whole("seed", 0)
    number("ratings_per_user", 0.0, strict=True)
    number("taste_concentration", 0.0, strict=True)
    number("taste_strength", 0.0, strict=False)
    number("popularity_exponent", 0.0, strict=False)
    if "sampler" in settings:
        checks.require(settings["sampler"] in SAMPLERS, "generator.sampler", f"sampler must be one of {', '.join(SAMPLERS)}, got {settings['sampler']!r}")
    checks.done()


def _range(low: int, high: float) -> str:
    return f" of at least {low}" if high == float("inf") else f" from {low} to {int(high)}"


def _gumbel_picks(rng, counts, tastes, genres, log_pop, taste_strength) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user, item, affinity)`` of every pick: each user's ``counts[u]`` items by Gumbel top-k over
    all items (users x items work, ``_BLOCK`` users at a time)."""
    num_users, (num_items, num_genres) = len(counts), genres.shape
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
    return np.concatenate(users), np.concatenate(items), np.concatenate(affinities)


def _grouped_picks(rng, counts, tastes, genres, log_pop, taste_strength) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user, item, affinity)`` of every pick, the law of :func:`_gumbel_picks` for users x genre
    combinations work: draws with replacement (a combination by mass x taste, an item of it by
    popularity), each user's first ``counts[u]`` distinct items kept in draw order."""
    num_users, (num_items, num_genres) = len(counts), genres.shape
    groups = _genre_groups(genres, log_pop)
    users, items, affinities = [], [], []
    for start in range(0, num_users, _GROUPED_BLOCK):
        stop = min(start + _GROUPED_BLOCK, num_users)
        affinity = (tastes[start:stop] @ groups["genres"].T) * num_genres  # [B, combinations]
        weights = groups["mass"] * np.exp(taste_strength * np.log1p(affinity.astype(np.float64)))
        cumulative = np.cumsum(weights, axis=1)
        cumulative /= cumulative[:, -1:]
        rows, chosen = _first_distinct(rng, counts[start:stop], cumulative, groups, num_items)
        users.append(rows + start)
        items.append(chosen)
        affinities.append(affinity[rows, groups["of_item"][chosen]])
    return np.concatenate(users), np.concatenate(items), np.concatenate(affinities)


def _genre_groups(genres: np.ndarray, log_pop: np.ndarray) -> Dict[str, np.ndarray]:
    """Items grouped by their genre combination: each combination's genre row and popularity mass,
    the items sorted by combination with their cumulative popularity, where each combination starts."""
    num_items, num_genres = genres.shape
    masks = (genres > 0).astype(np.int64) @ (np.int64(1) << np.arange(num_genres, dtype=np.int64))
    _, first, of_item = np.unique(masks, return_index=True, return_inverse=True)
    order = np.argsort(of_item, kind="stable")
    popularity = np.exp(log_pop - log_pop.max())
    cumulative = np.cumsum(popularity[order])
    bounds = np.searchsorted(of_item[order], np.arange(len(first) + 1))  # combination g: order[bounds[g]:bounds[g + 1]]
    high = cumulative[bounds[1:] - 1]
    low = np.concatenate([[0.0], high[:-1]])
    return {"genres": genres[first], "mass": high - low, "low": low, "order": order, "cumulative": cumulative,
            "bounds": bounds, "of_item": of_item.reshape(-1)}


def _first_distinct(rng, need: np.ndarray, cumulative: np.ndarray, groups: Dict[str, np.ndarray], num_items: int):
    """Each row's first ``need[r]`` distinct draws, in draw order: ``(rows, items)``, rows ascending.

    Rows short of distinct items draw again, their new draws coming after the old ones (so the kept
    items are the first distinct ones of one long sequence, never a redrawn sample)."""
    num_rows, num_groups = cumulative.shape
    band = (cumulative + np.arange(num_rows, dtype=np.float64)[:, None]).ravel()  # each row's weights in its own [r, r + 1)
    rows = np.zeros(0, np.int64)
    picks = np.zeros(0, np.int64)
    have = np.zeros(num_rows, np.int64)
    todo = np.nonzero(need > 0)[0]
    extra = need[todo] + need[todo] // 2 + 8  # the first round: enough for a mildly skewed user
    while todo.size:
        new_rows = np.repeat(todo, extra)
        group = np.searchsorted(band, new_rows + rng.random(new_rows.size), side="right") - new_rows * num_groups
        group = np.clip(group, 0, num_groups - 1)
        target = groups["low"][group] + rng.random(new_rows.size) * groups["mass"][group]
        position = np.searchsorted(groups["cumulative"], target, side="right")
        position = np.clip(position, groups["bounds"][group], groups["bounds"][group + 1] - 1)
        # Old picks first, then the new draws in order: a stable sort by row keeps that order within a row.
        rows = np.concatenate([rows, new_rows])
        picks = np.concatenate([picks, groups["order"][position]])
        by_row = np.argsort(rows, kind="stable")
        rows, picks = rows[by_row], picks[by_row]
        _, first = np.unique(rows * num_items + picks, return_index=True)
        first.sort()
        rows, picks = rows[first], picks[first]
        have = np.bincount(rows, minlength=num_rows)
        short = have < need
        todo = np.nonzero(short)[0]
        extra = 2 * (need[todo] - have[todo]) + 8
    # Keep the first need[r] of each row.
    starts = np.concatenate([[0], np.cumsum(have)[:-1]])
    rank = np.arange(rows.size) - starts[rows]
    keep = rank < need[rows]
    return rows[keep], picks[keep]
