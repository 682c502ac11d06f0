"""Executor side: write one gzipped TFRecord shard per Spark partition.

Runs inside Spark tasks, so it imports neither the config system nor pyspark.sql and gets
only plain values. Each shard is ``<dir>/part-%05d.tfrecord.gz`` (``%05d`` = partition id),
written to a hidden temporary name and moved into place, so a killed or speculative task
never leaves a half-written ``part-*`` file. An empty partition still writes its (empty)
shard, so ``num_shards`` partitions always give ``num_shards`` files, one per training worker.

Record layout (``tf.train.Example``), see :mod:`sparkml_tf.retrieval.records`:
  train:            ``user`` bytes, ``items`` int64 list (vocab ids by timestamp)
  validation/test:  ``user`` bytes, ``inputs`` int64 list, ``targets`` int64 list
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from typing import Callable, Iterator, List, Sequence

from sparkml_tf.console import import_tensorflow
from sparkml_tf.errors import DataError
from sparkml_tf.io.filesystems import normalize, resolve

SHARD_NAME = "part-{:05d}.tfrecord.gz"
PATTERN = "part-*.tfrecord.gz"

# Output columns of the function returned by shard_writer (a Spark DDL schema).
RESULT_SCHEMA = "shard long, path string, records long"


def list_shards(directory: str) -> List[str]:
    """The shard files of one split folder, sorted (shard i first at position i); [] when none."""
    tf = import_tensorflow()

    return sorted(tf.io.gfile.glob(f"{normalize(str(directory).rstrip('/'))}/{PATTERN}"))


def worker_shards(files: Sequence[str], worker_index: int, num_workers: int) -> List[str]:
    """The files of one worker: every ``num_workers``-th shard starting at ``worker_index``."""
    mine = list(files)[worker_index::num_workers]
    if not mine:
        raise DataError(
            "DATA_TOO_FEW_SHARDS",
            f"worker {worker_index} of {num_workers} gets no shard from {len(files)} file(s); rebuild the dataset with num_shards >= {num_workers}",
        )
    return mine


def shard_writer(directory: str, bytes_fields: Sequence[str] = ("user",), int64_list_fields: Sequence[str] = ("items",)) -> Callable:
    """Make a ``mapInPandas`` function writing the rows of each partition to one shard.

    ``directory`` is a local path or a URI :mod:`sparkml_tf.io.filesystems` understands (hdfs://, s3a://,
    gs://, dbfs:/, ...).
    The function yields one row per shard: ``shard, path, records``.
    """
    directory = str(directory).rstrip("/")
    bytes_fields = tuple(bytes_fields)
    int64_list_fields = tuple(int64_list_fields)

    def write(batches: Iterator) -> Iterator:
        import pandas as pd
        from pyspark import TaskContext

        index = TaskContext.get().partitionId()
        path = f"{directory}/{SHARD_NAME.format(index)}"
        records = write_shard(path, _rows(batches, bytes_fields, int64_list_fields), bytes_fields, int64_list_fields)
        yield pd.DataFrame({"shard": [index], "path": [path], "records": [records]})

    return write


def _rows(batches: Iterator, bytes_fields: Sequence[str], int64_list_fields: Sequence[str]) -> Iterator[tuple]:
    for frame in batches:
        columns = [frame[name].tolist() for name in bytes_fields] + [frame[name].tolist() for name in int64_list_fields]
        yield from zip(*columns)


def write_shard(path: str, rows: Iterator[tuple], bytes_fields: Sequence[str], int64_list_fields: Sequence[str]) -> int:
    """Write ``rows`` (bytes fields then int64 lists, in that order) as a gzipped TFRecord file."""
    tf = import_tensorflow()

    return write_records(path, (_example(tf, row, bytes_fields, int64_list_fields) for row in rows))


def write_records(path: str, records: Iterator[bytes]) -> int:
    """Write serialized records as a gzipped TFRecord file at ``path`` (local or a URI), through
    a hidden temporary name moved into place; return how many."""
    tf = import_tensorflow()

    options = tf.io.TFRecordOptions(compression_type="GZIP")
    local_path = normalize(path)  # file://, dbfs:/ (FUSE) -> local paths; s3a:// -> s3://
    remote = "://" in local_path
    if remote:
        scratch = tempfile.mkdtemp(prefix="sparkml-tf-shard-")
        tmp = os.path.join(scratch, os.path.basename(path))
    else:
        os.makedirs(os.path.dirname(local_path) or ".", exist_ok=True)
        scratch = None
        tmp = os.path.join(os.path.dirname(local_path), f".{os.path.basename(local_path)}.tmp-{uuid.uuid4().hex[:8]}")
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp, options) as writer:
            for record in records:
                writer.write(record)
                count += 1
        if remote:
            _upload(tmp, path)
        else:
            os.replace(tmp, local_path)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
    return count


def _example(tf, row: tuple, bytes_fields: Sequence[str], int64_list_fields: Sequence[str]) -> bytes:
    feature = {}
    for name, value in zip(bytes_fields, row):
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))
    for name, value in zip(int64_list_fields, row[len(bytes_fields):]):
        ids = [] if value is None else [int(v) for v in value]
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=ids))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _upload(local: str, path: str) -> None:
    """Copy to a hidden name beside ``path``, then move: object stores get a whole file or none."""
    from pyarrow import fs

    filesystem, target = resolve(path)
    parent, name = target.rsplit("/", 1)
    tmp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:8]}"
    filesystem.create_dir(parent, recursive=True)
    fs.copy_files(local, tmp, source_filesystem=fs.LocalFileSystem(), destination_filesystem=filesystem)
    filesystem.move(tmp, target)
