"""BuildDataset end to end on tiny data: layout, stats, skip-if-complete, force, petastorm."""

import json
import os
import subprocess
import sys

import pytest

from sparkml_tf.engine.base import RunContext
from sparkml_tf.retrieval.jobs.dataset import BuildDataset
from sparkml_tf.retrieval.layout import RetrievalDataset
from sparkml_tf.testing import RecordingTracker

GENERATOR = {"num_users": 100, "num_items": 60, "ratings_per_user": 20, "min_ratings_per_user": 6}


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "dataset")
    job = BuildDataset(out, generator=GENERATOR, heldout_users=10, num_shards=3, seed=1)
    tracker = RecordingTracker()
    stats = job.run(RunContext(tracker=tracker, _spark=spark))
    return job, out, stats, tracker


@pytest.mark.spark
def test_layout_and_stats(spark, built):
    _, out, stats, tracker = built
    assert os.path.exists(os.path.join(out, "_SPARKML_TF_COMPLETE"))
    for split in ("train", "validation", "test"):
        names = sorted(os.listdir(os.path.join(out, "tfrecord", split)))
        assert [n for n in names if n.startswith("part-")] == [f"part-{i:05d}.tfrecord.gz" for i in range(3)]
    assert sorted(os.listdir(os.path.join(out, "vocab"))) == ["items.parquet", "items.txt"]
    assert RetrievalDataset(out).read_stats(()) == json.loads(json.dumps(stats))
    interactions = spark.read.parquet(os.path.join(out, "interactions"))
    assert interactions.columns == ["user", "item", "rating", "timestamp", "split"]
    train_users = interactions.where("split = 'train'").select("user").distinct().count()
    assert stats["num_train_examples"] == train_users == stats["num_users"]["train"]
    assert stats["num_items"] == interactions.where("split = 'train'").select("item").distinct().count()
    assert stats["num_validation_examples"] == stats["num_users"]["validation"] and stats["num_users"]["validation"] <= 10
    assert stats["num_shards"] == 3 and stats["counts"]["rows.input"] > 0
    assert tracker.metrics["dataset.num_items"] == stats["num_items"] and "dataset.rows.train" in tracker.metrics
    assert tracker.params["dataset.format"] == "generated" and "dataset/stats.json" in tracker.dicts


@pytest.mark.spark
def test_records_match_interactions(spark, built):
    from sparkml_tf.retrieval.records import read_examples
    from sparkml_tf.retrieval.vocab import load_vocab

    _, out, _, _ = built
    items = load_vocab(os.path.join(out, "vocab"))["item"].tolist()
    frame = spark.read.parquet(os.path.join(out, "interactions")).toPandas()
    test = {e["user"].decode(): e for e in read_examples(os.path.join(out, "tfrecord", "test"), "eval").as_numpy_iterator()}
    assert set(test) == set(frame.loc[frame["split"] == "test_input", "user"])
    for user, example in test.items():
        mine = frame[frame["user"] == user]
        assert sorted(items[i] for i in example["inputs"]) == sorted(mine.loc[mine["split"] == "test_input", "item"])
        assert sorted(items[i] for i in example["targets"]) == sorted(mine.loc[mine["split"] == "test_target", "item"])
    train = next(read_examples(os.path.join(out, "tfrecord", "train")).as_numpy_iterator())
    times = frame[frame["user"] == train["user"].decode()].set_index("item")["timestamp"]
    assert list(times[[items[i] for i in train["items"]]]) == sorted(times)  # ordered by time


@pytest.mark.spark
def test_complete_output_is_skipped_unless_forced(spark, built, monkeypatch):
    job, out, stats, _ = built
    import sparkml_tf.retrieval.split as split

    def fail(*args, **kwargs):
        raise AssertionError("should have been skipped")

    monkeypatch.setattr(split, "strong_generalization_split", fail)
    assert job.run(RunContext(_spark=spark)) == RetrievalDataset(out).read_stats(())
    with pytest.raises(AssertionError, match="skipped"):
        job.run(RunContext(force=True, _spark=spark))
    assert RetrievalDataset(out).read_stats(()) == json.loads(json.dumps(stats))  # a failed forced run leaves the old output


@pytest.mark.spark
def test_force_rebuilds_and_movielens_file(spark, tmp_path):
    from sparkml_tf.retrieval.generate import generate_ratings

    ratings = generate_ratings(**GENERATOR, seed=4)
    path = tmp_path / "ratings.csv"
    ratings.rename(columns={"user": "userId", "item": "movieId"}).to_csv(path, index=False)
    out = str(tmp_path / "dataset")
    first = BuildDataset(
        out, path=str(path), format="movielens-csv", heldout_users=0.1, num_shards=1, training_format="petastorm"
    ).run(RunContext(_spark=spark))
    stamp = os.path.getmtime(os.path.join(out, "stats.json"))
    again = BuildDataset(
        out, path=str(path), format="movielens-csv", heldout_users=0.1, num_shards=1, training_format="petastorm"
    ).run(RunContext(force=True, _spark=spark))
    assert again["counts"] == first["counts"] and os.path.getmtime(os.path.join(out, "stats.json")) >= stamp
    assert not os.path.exists(os.path.join(out, "tfrecord"))
    train = spark.read.parquet(os.path.join(out, "petastorm", "train"))
    assert dict(train.dtypes) == {"user": "string", "items": "array<bigint>"}
    assert train.count() == first["num_train_examples"]
    assert spark.read.parquet(os.path.join(out, "petastorm", "test")).columns == ["user", "inputs", "targets"]


def test_constructor_checks():
    from sparkml_tf.errors import ConfigError, ConfigErrors

    def refused(**kwargs):
        with pytest.raises(ConfigError) as info:
            BuildDataset("out", **kwargs)
        return [(e.code, e.path) for e in (info.value.errors if isinstance(info.value, ConfigErrors) else [info.value])]

    assert refused(path="x", format="xml") == [("DATA_UNKNOWN_FORMAT", "format")]
    # the data-quality settings (docs/data-quality.md)
    assert refused(duplicates="first") == [("CONFIG_BAD_VALUE", "duplicates")]
    assert refused(max_bad_fraction=1.5) == [("CONFIG_BAD_VALUE", "max_bad_fraction")]
    assert refused(max_value_length=0) == [("CONFIG_BAD_VALUE", "max_value_length")]
    assert refused(min_rating=float("nan")) == [("CONFIG_BAD_VALUE", "min_rating")]
    assert refused(path="t", format="parquet", columns={"user": "u"}) == [("CONFIG_BAD_VALUE", "columns.item")]
    assert refused(path="t", format="movielens-csv", columns={"user": "u", "item": "i"}) == [("CONFIG_BAD_VALUE", "columns")]
    assert refused(columns={"user": "u", "item": "i"}) == [("CONFIG_BAD_VALUE", "columns")]  # generated data has no columns
    assert refused(format="movielens-dat") == [("CONFIG_BAD_VALUE", "path")]
    assert refused(generator={"num_userz": 3}) == [("CONFIG_BAD_VALUE", "generator")]
    assert refused(training_format="csv") == [("CONFIG_BAD_VALUE", "training_format")]
    assert refused(heldout_users=2.5) == [("CONFIG_BAD_VALUE", "heldout_users")]
    # every refused setting at once
    assert refused(format="movielens-dat", heldout_users=2.5, num_shards=0) == [
        ("CONFIG_BAD_VALUE", "path"), ("CONFIG_BAD_VALUE", "num_shards"), ("CONFIG_BAD_VALUE", "heldout_users"),
    ]


def test_import_is_light():
    code = "import sys, sparkml_tf.retrieval.jobs.dataset as d; d.BuildDataset('o'); print(sorted(m for m in ('tensorflow', 'pyspark') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
