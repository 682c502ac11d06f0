"""TFRecord shards: written by Spark executors, read back with the trainer's reader."""

import os

import pytest

from sparkml_tf.errors import DataError
from sparkml_tf.io.tfrecords import RESULT_SCHEMA, list_shards, shard_writer, worker_shards
from sparkml_tf.retrieval.layout import RetrievalDataset
from sparkml_tf.retrieval.records import make_train_dataset, read_examples

pytestmark = pytest.mark.spark

TRAIN = [("u1", [3, 1, 2]), ("u2", [0]), ("u3", []), ("é4", [5, 5, 7, 9])]


def _write(spark, rows, schema, directory, fields, num_shards):
    frame = spark.createDataFrame(rows, schema).repartition(num_shards)
    return frame.mapInPandas(shard_writer(str(directory), ("user",), fields), RESULT_SCHEMA).collect()


def test_train_round_trip_with_more_shards_than_rows(spark, tmp_path):
    written = _write(spark, TRAIN, "user string, items array<long>", tmp_path / "train", ("items",), 6)
    assert sorted(r["shard"] for r in written) == list(range(6))
    assert sum(r["records"] for r in written) == len(TRAIN)
    files = list_shards(str(tmp_path / "train"))
    assert [os.path.basename(f) for f in files] == [f"part-{i:05d}.tfrecord.gz" for i in range(6)]
    assert not [f for f in os.listdir(tmp_path / "train") if f.startswith(".")]  # no temporaries left
    got = {e["user"].decode(): e["items"].tolist() for e in read_examples(files, "train").as_numpy_iterator()}
    assert got == dict(TRAIN)
    # a folder works too, and each worker gets its own files
    assert len(list(read_examples(str(tmp_path / "train")).as_numpy_iterator())) == len(TRAIN)
    assert worker_shards(files, 1, 2) == files[1::2]


def test_eval_round_trip_and_ragged_batches(spark, tmp_path):
    rows = [("a", [1, 2], [3]), ("b", [4], [5, 6])]
    _write(spark, rows, "user string, inputs array<long>, targets array<long>", tmp_path / "validation", ("inputs", "targets"), 2)
    got = {e["user"].decode(): (e["inputs"].tolist(), e["targets"].tolist()) for e in read_examples(str(tmp_path / "validation"), "eval").as_numpy_iterator()}
    assert got == {"a": ([1, 2], [3]), "b": ([4], [5, 6])}

    _write(spark, TRAIN, "user string, items array<long>", tmp_path / "train", ("items",), 2)
    batch = next(iter(make_train_dataset(str(tmp_path / "train"), batch_size=4, seed=0)))
    assert batch["items"].shape[0] == 4 and sorted(batch["items"].row_lengths().numpy().tolist()) == [0, 1, 3, 4]


def test_missing_shards_and_too_few_shards(tmp_path):
    assert list_shards(str(tmp_path)) == []
    with pytest.raises(DataError) as info:
        read_examples(str(tmp_path))
    assert info.value.code == "DATA_NOT_FOUND"
    with pytest.raises(DataError) as info:
        RetrievalDataset(str(tmp_path)).shard_files("train")
    assert info.value.code == "DATA_MISSING_SPLIT"
    with pytest.raises(DataError) as info:
        worker_shards(["part-00000.tfrecord.gz"], 1, 2)
    assert info.value.code == "DATA_TOO_FEW_SHARDS"
