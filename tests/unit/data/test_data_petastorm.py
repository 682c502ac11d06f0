"""Petastorm input end to end: BuildDataset(training_format="petastorm") -> Petastorm reader -> training.

Petastorm 0.13.1 imports only with pyarrow < 15, so this runs in the pinned environment
(``make petastorm-env test-petastorm``) and skips in the main one.
"""

import os

import pytest

petastorm = pytest.importorskip("petastorm")

import keras  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import tensorflow as tf  # noqa: E402

from sparkml_tf.engine.base import RunContext  # noqa: E402
from sparkml_tf.errors import DataError  # noqa: E402
from sparkml_tf.retrieval.jobs.dataset import BuildDataset  # noqa: E402
from sparkml_tf.retrieval.petastorm_input import open_examples, read_petastorm_examples, read_validation, split_dir, to_url  # noqa: E402
from sparkml_tf.retrieval.toy import toy_train_settings  # noqa: E402
from sparkml_tf.retrieval.trainer import train_worker  # noqa: E402
from sparkml_tf.spark.barrier import LocalLauncher  # noqa: E402
from sparkml_tf.train.launch import build_specs  # noqa: E402

# Petastorm 0.13.1 on pyarrow 14 warns about legacy pyarrow APIs on every row group.
pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::UnicodeWarning")]

GENERATOR = {"num_users": 120, "num_items": 50, "ratings_per_user": 20, "min_ratings_per_user": 6}


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("petastorm") / "dataset")
    stats = BuildDataset(out, generator=GENERATOR, heldout_users=15, num_shards=2, seed=3, training_format="petastorm").run(RunContext(_spark=spark))
    return out, stats


def expected(dataset_dir, split, fields):
    """What the Parquet files hold, user -> tuple of lists (read with pyarrow, not Petastorm)."""
    table = pq.read_table(split_dir(dataset_dir, split)).to_pydict()
    return {u: tuple(table[f][i] for f in fields) for i, u in enumerate(table["user"])}


@pytest.mark.spark
def test_reads_train_and_eval_examples(built):
    out, stats = built
    assert stats["training_format"] == "petastorm"
    assert not os.path.exists(os.path.join(out, "tfrecord"))
    truth = expected(out, "train", ("items",))
    assert len(truth) == stats["num_train_examples"] > 0
    dataset = read_petastorm_examples(split_dir(out, "train"), "train")
    assert dataset.element_spec["items"] == tf.TensorSpec([None], tf.int64)
    assert dataset.element_spec["user"] == tf.TensorSpec([], tf.string)
    got = {ex["user"].decode(): (ex["items"].tolist(),) for ex in dataset.as_numpy_iterator()}
    assert got == truth  # every user once, every item list whole and in order
    assert len({len(v[0]) for v in truth.values()}) > 1  # variable lengths did go through

    truth = expected(out, "validation", ("inputs", "targets"))
    with open_examples(split_dir(out, "validation"), "eval", shuffle=False) as dataset:
        got = {ex["user"].decode(): (ex["inputs"].tolist(), ex["targets"].tolist()) for ex in dataset.as_numpy_iterator()}
    assert got == truth and len(got) == stats["num_validation_examples"]
    inputs, targets = read_validation(out)
    assert inputs.shape[0] == sum(1 for _, t in truth.values() if t) and (targets[:, 0] >= 0).all()


@pytest.mark.spark
def test_each_shard_reads_its_own_row_groups(built):
    out, _ = built
    directory = split_dir(out, "train")
    shards = [
        sorted(ex["user"].decode() for ex in read_petastorm_examples(directory, cur_shard=i, shard_count=2, reader_pool_type="dummy").as_numpy_iterator())
        for i in range(2)
    ]
    assert shards[0] and shards[1] and not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(expected(out, "train", ("items",)))
    with pytest.raises(DataError) as info:
        read_petastorm_examples(directory, cur_shard=0, shard_count=3)
    assert info.value.code == "DATA_TOO_FEW_SHARDS"
    with pytest.raises(DataError):
        read_petastorm_examples(split_dir(out, "nothing"))
    assert to_url("/a/b") == "file:///a/b" and to_url("hdfs://nn/x/") == "hdfs://nn/x"


@pytest.mark.spark
@pytest.mark.parametrize("cache", [True, False])
def test_trains_from_petastorm_end_to_end(built, tmp_path, cache):
    out, stats = built
    keras.backend.clear_session()
    settings = toy_train_settings(str(tmp_path), dataset_dir=out, batch_size=16, checkpoint_every_steps=5, cache=cache, seed=0)
    result = LocalLauncher().run(train_worker, build_specs(settings))
    assert result["epochs_run"] == 2 and result["steps"] == 2 * result["steps_per_epoch"]
    assert result["steps_per_epoch"] == -(-stats["num_train_examples"] // 16)  # more steps than one pass: the input repeats
    assert all(h["val_ndcg@100"] >= 0 for h in result["history"])
    assert os.path.exists(os.path.join(result["export_path"], "saved_model.pb"))
    assert pq.read_table(str(tmp_path / "embeddings")).num_rows == stats["num_items"]
