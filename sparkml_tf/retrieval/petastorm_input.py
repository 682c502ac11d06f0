"""Trainer side: read the Parquet examples of ``BuildDataset(training_format="petastorm")`` with Petastorm.

Files live in ``<dataset>/petastorm/{train,validation,test}/*.parquet`` (plain Parquet, no Petastorm
metadata; see docs/petastorm.md). Each element of :func:`read_petastorm_examples` is the same dict the TFRecord
reader (:mod:`sparkml_tf.retrieval.records`) gives:

- ``kind="train"``: ``{"user": string scalar, "items": int64 [n]}``, items by timestamp;
- ``kind="eval"``:  ``{"user": string scalar, "inputs": int64 [n], "targets": int64 [m]}``.

Petastorm hands TensorFlow fixed-shape batches only, and the item lists have a different length per
user. So a ``TransformSpec`` (run on Petastorm's reader threads) turns each list into the raw bytes of
an int64 array (a string scalar per user, nothing padded or cut), and ``tf.io.decode_raw`` turns it
back after ``unbatch``.

Petastorm 0.13.1 imports only with pyarrow < 15, so it lives in its own environment
(``make petastorm-env``); this module imports it only when called.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from typing import Any, Iterator, Optional

from sparkml_tf.errors import DataError
from sparkml_tf.io.filesystems import normalize

KINDS = ("train", "eval")
FIELDS = {"train": ("items",), "eval": ("inputs", "targets")}
SPLIT_KIND = {"train": "train", "validation": "eval", "test": "eval"}


def split_dir(dataset_dir: str, split: str) -> str:
    """``<dataset_dir>/petastorm/<split>``: where BuildDataset writes a split's Parquet files."""
    from sparkml_tf.retrieval.layout import RetrievalDataset

    return RetrievalDataset(dataset_dir).petastorm_dir(split)


def to_url(path: str) -> str:
    """Petastorm wants URLs: ``file://`` plus the absolute path for local paths (``dbfs:/x`` is the
    FUSE path ``/dbfs/x``, see :mod:`sparkml_tf.io.filesystems`); others pass through, ``s3a://`` as ``s3://``."""
    path = normalize(str(path))
    if "://" in path:
        return path.rstrip("/")
    return "file://" + os.path.abspath(path)


def list_files(directory: str):
    """The Parquet files of one split folder, sorted; a DataError when there are none."""
    import tensorflow as tf

    directory = str(directory).rstrip("/")
    files = sorted(tf.io.gfile.glob(f"{directory}/*.parquet"))
    if not files:
        raise DataError(
            "DATA_NOT_FOUND",
            f"no *.parquet files in {directory}; build the dataset with training_format='petastorm', or check the path",
            directory,
        )
    return files


def _bytes_spec(kind: str):
    """A TransformSpec that stores each variable-length list as the bytes of an int64 array."""
    import numpy as np
    from petastorm import TransformSpec

    fields = FIELDS[kind]

    def encode(frame):
        for name in fields:
            frame[name] = [np.asarray(v if v is not None else (), dtype="<i8").tobytes() for v in frame[name]]
        return frame

    return TransformSpec(encode, edit_fields=[(name, np.bytes_, (), False) for name in fields], selected_fields=["user", *fields])


@contextlib.contextmanager
def open_examples(directory: str, kind: str = "train", **options: Any) -> Iterator:
    """As :func:`read_petastorm_examples` (same options), as a context manager that stops Petastorm's reader on exit."""
    dataset, reader = _make(directory, kind, **options)
    try:
        yield dataset
    finally:
        _close(reader)


def read_petastorm_examples(
    directory: str,
    kind: str = "train",
    cur_shard: Optional[int] = None,
    shard_count: Optional[int] = None,
    num_epochs: Optional[int] = 1,
    shuffle: bool = True,
    seed: Optional[int] = None,
    reader_pool_type: str = "thread",
    workers_count: int = 2,
):
    """A ``tf.data.Dataset`` of per-user dicts (see the module doc) from one split folder.

    ``cur_shard``/``shard_count``: this worker reads only its own row groups (Petastorm shards by row
    group; each file of BuildDataset is usually one, so write at least ``shard_count`` files).
    ``num_epochs``: passes over the files (None: forever); do not ``repeat()`` the result, cache it or
    ask for more epochs. ``shuffle``: shuffle the order of row groups (rows inside one stay in order).
    The reader stops when the dataset is garbage collected; use :func:`open_examples` to stop it
    at a known point.
    """
    dataset, reader = _make(directory, kind, cur_shard, shard_count, num_epochs, shuffle, seed, reader_pool_type, workers_count)
    weakref.finalize(dataset, _close, reader)
    return dataset


def _make(directory, kind, cur_shard=None, shard_count=None, num_epochs=1, shuffle=True, seed=None, reader_pool_type="thread", workers_count=2):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if (cur_shard is None) != (shard_count is None):
        raise ValueError("set both cur_shard and shard_count, or neither")
    if shard_count is not None and shard_count == 1:
        cur_shard = shard_count = None  # one reader: no sharding (Petastorm would still demand >= 1 row group)
    files = list_files(directory)
    import tensorflow as tf
    from petastorm import make_batch_reader
    from petastorm.errors import NoDataAvailableError
    from petastorm.tf_utils import make_petastorm_dataset

    try:
        reader = make_batch_reader(
            to_url(directory),
            num_epochs=num_epochs,
            cur_shard=cur_shard,
            shard_count=shard_count,
            shuffle_row_groups=shuffle,
            seed=seed,
            shard_seed=None,  # shard k gets row groups k, k + shard_count, ...: fixed across runs
            reader_pool_type=reader_pool_type,
            workers_count=workers_count,
            transform_spec=_bytes_spec(kind),
        )
    except NoDataAvailableError as error:
        raise DataError(
            "DATA_TOO_FEW_SHARDS",
            f"{len(files)} Parquet file(s) in {directory} for {shard_count} readers, so some reader would get no row group "
            f"({error}); rebuild the dataset with num_shards >= {shard_count}",
            str(directory),
        ) from error
    fields = FIELDS[kind]

    def to_examples(batch):
        columns = batch._asdict()
        out = {"user": columns["user"]}
        out.update({name: columns[name] for name in fields})
        return out

    def decode(example):
        out = {"user": example["user"]}
        out.update({name: tf.io.decode_raw(example[name], tf.int64, little_endian=True) for name in fields})
        return out

    dataset = make_petastorm_dataset(reader).map(to_examples).unbatch().map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset, reader


def _close(reader) -> None:
    try:
        reader.stop()
        reader.join()
    except Exception:  # already stopped, or the interpreter is shutting down
        pass


def read_eval_lists(directory: str):
    """All users of an eval split as Python lists: ``(inputs, targets)``, for the trainer's validation."""
    inputs, targets = [], []
    with open_examples(directory, "eval", shuffle=False, reader_pool_type="dummy") as dataset:
        for batch in dataset.ragged_batch(4096):
            inputs += batch["inputs"].to_list()
            targets += batch["targets"].to_list()
    return inputs, targets


def trainer_source(dataset_dir: str, num_workers: int = 1, cache: bool = True):
    """The trainer's input for a petastorm-format dataset: ``source(input_context)`` -> per-user ``items``.

    Like the TFRecord input, each worker reads only its own row groups (``cur_shard`` = its input
    pipeline id). ``cache`` reads the files once and keeps the examples in memory (the trainer
    repeats the dataset); without it Petastorm reads the files again every epoch (``num_epochs=None``).
    """
    directory = split_dir(dataset_dir, "train")
    files = list_files(directory)
    if len(files) < num_workers:
        raise DataError(
            "DATA_TOO_FEW_SHARDS",
            f"{len(files)} Parquet file(s) for {num_workers} workers, so some worker would get no data; "
            "write at least one file per worker (the dataset job's num_shards) or use fewer workers",
            directory,
        )

    def source(input_context):
        dataset = read_petastorm_examples(
            directory,
            "train",
            cur_shard=input_context.input_pipeline_id,
            shard_count=input_context.num_input_pipelines,
            num_epochs=1 if cache else None,
        ).map(lambda example: example["items"])
        return dataset.cache() if cache else dataset

    return source


def read_validation(dataset_dir: str):
    """As :func:`sparkml_tf.retrieval.trainer.read_validation`, from ``<dataset_dir>/petastorm/validation``."""
    from sparkml_tf.retrieval.records import pad

    inputs, targets = read_eval_lists(split_dir(dataset_dir, "validation"))
    keep = [i for i, t in enumerate(targets) if t]  # users without targets have no NDCG
    return pad([inputs[i] for i in keep]), pad([targets[i] for i in keep])
