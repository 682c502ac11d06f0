"""BuildDataset on dirty files: bad rows quarantined with their reason, counted in stats.json and
MLflow, never in the training records; above the bad-row budget the job fails and writes nothing."""

import logging
import os
import random

import pytest

from sparkml_tf.engine.base import RunContext
from sparkml_tf.errors import DataError
from sparkml_tf.retrieval.generate import generate_ratings
from sparkml_tf.retrieval.jobs.dataset import BuildDataset
from sparkml_tf.testing import RecordingTracker

pytestmark = pytest.mark.spark

GENERATOR = {"num_users": 100, "num_items": 60, "ratings_per_user": 20, "min_ratings_per_user": 6}
HEADER = b"userId,movieId,rating,timestamp"
# Each once, in a file of about 2,000 good rows: 10 charged to the budget (0.5%), plus a duplicate.
BAD = [
    ("missing_user", b",7,5.0,1000000000"),
    ("missing_item", b"3,,5.0,1000000000"),  # crashed vocab.py with a TypeError before
    ("non_finite", b"3,999,NaN,1000000000"),  # NaN sorts above every number: a positive before
    ("non_finite", b"4,999,Infinity,1000000000"),
    ("bad_rating", b"5,999,five,1000000000"),  # a CAST_INVALID_INPUT crash after row 20 before
    ("bad_timestamp", b"6,999,5.0,99999999999999999999"),
    ("wrong_column_count", b"7,999,5.0,1000000000,extra"),
    ("undecodable", b"8,X\xff,5.0,1000000000"),  # these two merged into one item X\ufffd before
    ("undecodable", b"9,X\xfe,5.0,1000000000"),
    ("value_too_long", b"10," + b"y" * 2000 + b",5.0,1000000000"),
]


def ratings_lines(seed=4):
    frame = generate_ratings(**GENERATOR, seed=seed)
    return [f"{u},{i},{r},{t}".encode() for u, i, r, t in frame[["user", "item", "rating", "timestamp"]].itertuples(index=False)]


def dirty_file(path, good, bad, seed=0):
    """``good`` lines with ``bad`` (reason, line) inserted at seeded places; {line number: reason}."""
    rng = random.Random(seed)
    tagged = [(None, line) for line in good]
    for reason, line in bad:
        tagged.insert(rng.randrange(25, len(tagged)), (reason, line))  # after row 20: the old probe never saw them
    path.write_bytes(b"\n".join([HEADER] + [line for _, line in tagged]) + b"\n")
    return {n + 2: reason for n, (reason, _) in enumerate(tagged) if reason}


def build(spark, path, out, **kwargs):
    tracker = RecordingTracker()
    settings = {"heldout_users": 10, "num_shards": 1, "seed": 3, **kwargs}
    job = BuildDataset(str(out), path=str(path), format="movielens-csv", **settings)
    return job.run(RunContext(tracker=tracker, _spark=spark)), tracker


def records(directory):
    from sparkml_tf.retrieval.records import read_examples

    out = {}
    for split in ("train", "validation", "test"):
        kind = "train" if split == "train" else "eval"
        rows = set()
        for e in read_examples(os.path.join(directory, "tfrecord", split), kind).as_numpy_iterator():
            rows.add((e["user"].decode(), *(tuple(int(v) for v in e[k]) for k in sorted(e) if k != "user")))
        out[split] = rows
    return out


def test_half_a_percent_of_bad_rows_warns_and_trains_on_the_rest(spark, tmp_path, caplog):
    good = ratings_lines()
    # a duplicate of a good row with an older timestamp: the latest row wins, this one is quarantined
    user, item, _, stamp = good[40].split(b",")
    duplicate = ("duplicate", b",".join([user, item, b"5.0", str(int(stamp) - 1).encode()]))
    dirty, clean = tmp_path / "dirty.csv", tmp_path / "clean.csv"
    expected = dirty_file(dirty, good, BAD + [duplicate])
    clean.write_bytes(b"\n".join([HEADER] + good) + b"\n")
    assert 0.004 < len(BAD) / (len(good) + len(BAD) + 1) < 0.006

    with caplog.at_level(logging.WARNING, logger="sparkml_tf.io.rows"):
        stats, tracker = build(spark, dirty, tmp_path / "dirty")
    clean_stats, _ = build(spark, clean, tmp_path / "clean")

    warning = caplog.text
    assert "11 of" in warning and "bad_rating 1" in warning and "dirty.csv" in warning and "within the budget" in warning
    quality = stats["quality"]
    want = {}
    for reason in expected.values():
        want[reason] = want.get(reason, 0) + 1
    assert {k: v for k, v in quality["bad_by_reason"].items() if v} == want
    assert quality["rows_read"] == len(good) + len(expected) and quality["rows_good"] == len(good)
    assert quality["rows_read"] == quality["rows_good"] + quality["rows_bad"] and quality["charged_to_budget"] == len(BAD)
    assert stats["counts"]["rows.input"] == len(good) and stats["counts"]["rows.bad.undecodable"] == 2
    assert tracker.metrics["dataset.rows.bad.non_finite"] == 2 and tracker.metrics["dataset.rows.read"] == quality["rows_read"]

    # the quarantine holds exactly the bad rows, with reason, file, line and bytes
    quarantine = spark.read.parquet(str(tmp_path / "dirty" / "quarantine")).collect()
    assert {int(r["line"]): r["reason"] for r in quarantine} == expected
    lines = dirty.read_bytes().split(b"\n")
    assert all(r["raw_bytes"] == lines[r["line"] - 1] and r["source_file"].endswith("dirty.csv") for r in quarantine)
    assert spark.read.parquet(str(tmp_path / "clean" / "quarantine")).count() == 0

    # ... and the training records are those of the file without them
    for name in ("interactions", "vocab/items.parquet"):
        got = sorted(tuple(r) for r in spark.read.parquet(str(tmp_path / "dirty" / name)).collect())
        assert got == sorted(tuple(r) for r in spark.read.parquet(str(tmp_path / "clean" / name)).collect()), name
    assert records(tmp_path / "dirty") == records(tmp_path / "clean")
    assert clean_stats["num_train_examples"] == stats["num_train_examples"] and clean_stats["num_items"] == stats["num_items"]
    items = [r["item"] for r in spark.read.parquet(str(tmp_path / "dirty" / "vocab/items.parquet")).collect()]
    assert not [i for i in items if "\ufffd" in i or not i or len(i) > 1024]


def test_over_the_budget_the_job_fails_and_writes_nothing(spark, tmp_path):
    good = ratings_lines()[:400]
    path = tmp_path / "ratings.csv"
    expected = dirty_file(path, good, BAD * 2, seed=1)  # 20 of 420 rows: 4.8%
    out = tmp_path / "dataset"
    with pytest.raises(DataError) as error:
        build(spark, path, out)
    message = error.value.message
    assert error.value.code == "DATA_TOO_MANY_BAD_ROWS" and error.value.path == str(path)
    assert "20 of 420 rows" in message and "ratings.csv (20 of them)" in message and "max_bad_fraction" in message
    first_bad_rating = min(n for n, reason in expected.items() if reason == "bad_rating")
    assert f"bad_rating 2 (e.g. file:{path} line {first_bad_rating}: '5,999,five,1000000000')" in message
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["ratings.csv"]
    # a higher budget takes the same file, the bad rows quarantined
    stats, _ = build(spark, path, out, max_bad_fraction=0.05, heldout_users=2)
    assert stats["quality"]["rows_bad"] == 20 and spark.read.parquet(str(out / "quarantine")).count() == 20


def test_parquet_without_ratings_every_interaction_is_a_positive(spark, tmp_path):
    frame = generate_ratings(**GENERATOR, seed=5)
    path = tmp_path / "clicks.parquet"
    frame.rename(columns={"user": "visitor", "item": "page"})[["visitor", "page", "timestamp"]].to_parquet(path, index=False)
    stats, _ = build_parquet(spark, path, tmp_path / "dataset")
    assert stats["counts"]["rows.input"] == stats["counts"]["rows.filtered"] == len(frame)  # min_rating does not apply
    assert stats["quality"]["rows_bad"] == 0 and stats["params"]["columns"]["rating"] is None


def build_parquet(spark, path, out):
    tracker = RecordingTracker()
    job = BuildDataset(
        str(out), path=str(path), format="parquet", columns={"user": "visitor", "item": "page", "timestamp": "timestamp"}, heldout_users=10, num_shards=1
    )
    return job.run(RunContext(tracker=tracker, _spark=spark)), tracker


def test_settings_are_validated_with_their_key_paths():
    from sparkml_tf.config import resolve
    from sparkml_tf.errors import ConfigErrors

    job = {"type": "sparkml_tf.retrieval.BuildDataset", "output_dir": "out", "path": "x.parquet", "format": "parquet"}
    job.update({"columns": {"user": "u"}, "duplicates": "first", "max_bad_fraction": 2, "max_value_length": -1})
    with pytest.raises(ConfigErrors) as error:
        resolve({"type": "sparkml_tf.engine.Pipeline", "jobs": [job]}).build()
    assert [(e.code, e.path) for e in error.value.errors] == [
        ("CONFIG_BAD_VALUE", "jobs[0].columns.item"),
        ("CONFIG_BAD_VALUE", "jobs[0].duplicates"),
        ("CONFIG_BAD_VALUE", "jobs[0].max_bad_fraction"),
        ("CONFIG_BAD_VALUE", "jobs[0].max_value_length"),
    ]
