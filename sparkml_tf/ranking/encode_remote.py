"""Executor side of the CTR dataset: encode Arrow batches, write TFRecord shards.

Runs inside Spark tasks: gets only plain values (the feature index as a dict), imports neither
the config system nor pyspark.sql. Encoding goes through the same
:class:`~sparkml_tf.ranking.features.feature_index.Encoder` an online server uses, so ids match.

TFRecord record (``tf.train.Example``): ``label`` float, ``deep_ids`` int64 list, ``wide_ids``
int64 list, ``dense`` float list. Shards are named, placed and moved into place as in
:mod:`sparkml_tf.io.tfrecords` (one per partition, never half-written).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence

from sparkml_tf.io.tfrecords import RESULT_SCHEMA, SHARD_NAME, write_records
from sparkml_tf.spark.executor import cached

ID_COLUMNS = ("deep_ids", "wide_ids", "dense")

__all__ = ["RESULT_SCHEMA", "SHARD_NAME", "encoded_schema", "batch_encoder", "shard_writer", "write_records"]


def encoded_schema(keep_ddl: str = "split string", label: bool = True) -> str:
    """The Spark DDL of :func:`batch_encoder`'s output: kept columns, ``label``, the id lists."""
    parts = [keep_ddl] if keep_ddl else []
    parts += ["label float"] if label else []
    parts += ["deep_ids array<bigint>", "wide_ids array<bigint>", "dense array<float>"]
    return ", ".join(parts)


def batch_encoder(index: Mapping[str, Any], label: Optional[str] = "label", keep: Sequence[str] = ("split",)) -> Callable:
    """Make a ``mapInArrow`` function: each batch -> ``keep`` columns as they are, ``label`` as
    float (when given), ``deep_ids``, ``wide_ids``, ``dense``. ``index``: ``FeatureIndex.to_dict()``."""
    index = dict(index)
    keep = tuple(keep)

    def encode(batches: Iterator) -> Iterator:
        import pyarrow as pa

        encoder = _encoder(index)
        names = encoder.index.field_names
        for batch in batches:
            encoded = encoder.encode({name: batch.column(name) for name in names})
            arrays = [batch.column(name) for name in keep]
            if label is not None:
                arrays.append(batch.column(label).cast(pa.float32()))
            arrays += [_lists(encoded[name], pa.int64() if name != "dense" else pa.float32()) for name in ID_COLUMNS]
            yield pa.RecordBatch.from_arrays(arrays, names=list(keep) + (["label"] if label is not None else []) + list(ID_COLUMNS))

    return encode


def shard_writer(directory: str) -> Callable:
    """Make a ``mapInArrow`` function writing each partition's encoded rows (``label``,
    ``deep_ids``, ``wide_ids``, ``dense``) to ``<directory>/part-%05d.tfrecord.gz`` (partition id).
    It yields one row per shard: ``shard, path, records`` (``RESULT_SCHEMA``)."""
    directory = str(directory).rstrip("/")

    def write(batches: Iterator) -> Iterator:
        import pyarrow as pa
        from pyspark import TaskContext

        index = TaskContext.get().partitionId()
        path = f"{directory}/{SHARD_NAME.format(index)}"
        records = write_records(path, _examples(batches))
        yield pa.RecordBatch.from_pydict({"shard": [index], "path": [path], "records": [records]})

    return write


def _examples(batches: Iterator) -> Iterator[bytes]:
    import tensorflow as tf

    train = tf.train
    for batch in batches:
        labels = batch.column("label").to_numpy(zero_copy_only=False)
        lists = {name: _rows(batch.column(name)) for name in ID_COLUMNS}
        for i, label in enumerate(labels):
            feature = {
                "label": train.Feature(float_list=train.FloatList(value=[float(label)])),
                "deep_ids": train.Feature(int64_list=train.Int64List(value=lists["deep_ids"][i])),
                "wide_ids": train.Feature(int64_list=train.Int64List(value=lists["wide_ids"][i])),
                "dense": train.Feature(float_list=train.FloatList(value=lists["dense"][i])),
            }
            yield train.Example(features=train.Features(feature=feature)).SerializeToString()


def _encoder(index: Dict[str, Any]):
    """The Encoder of ``index``, once per Python worker, keyed by the index's content hash."""
    from sparkml_tf.ranking.features.feature_index import Encoder, FeatureIndex

    def load():
        return Encoder(FeatureIndex.from_dict(index))

    version = index.get("version")  # set by to_dict(); from_dict() checks it against the content
    if version is None:
        return load()
    return cached("ctr_encoder", version, "feature_index", load)


def _lists(matrix, value_type):
    """A [rows, k] numpy matrix as an Arrow list array (Spark ``array<...>``), without copies per row."""
    import numpy as np
    import pyarrow as pa

    rows, width = matrix.shape
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * np.int32(width))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=value_type))


def _rows(column) -> list:
    """An Arrow list column as a list of Python lists (what the protobuf builders take)."""
    return column.to_pylist()
