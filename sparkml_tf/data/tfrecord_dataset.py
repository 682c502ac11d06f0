"""Trainer side: read the TFRecord shards written by BuildDataset as ``tf.data`` datasets.

Shards live in ``<dataset>/tfrecord/{train,validation,test}/part-%05d.tfrecord.gz`` (gzipped
``tf.train.Example``; see :mod:`sparkml_tf.data.tfrecord_remote`). Each parsed element is a dict:

- ``kind="train"``: ``{"user": string scalar, "items": int64 [n]}``, items by timestamp;
- ``kind="eval"``:  ``{"user": string scalar, "inputs": int64 [n], "targets": int64 [m]}``.

Item values are vocabulary ids (``<dataset>/vocab/items.txt`` line numbers).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

from sparkml_tf.errors import DataError

KINDS = ("train", "eval")
FIELDS = {"train": ("items",), "eval": ("inputs", "targets")}
PATTERN = "part-*.tfrecord.gz"


def list_shards(directory: str) -> List[str]:
    """The shard files of one split folder, sorted (shard i first at position i)."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(f"{str(directory).rstrip('/')}/{PATTERN}"))
    if not files:
        raise DataError("DATA_NOT_FOUND", f"no {PATTERN} files in {directory}; run the BuildDataset job first, or check the path", str(directory))
    return files


def worker_shards(files: Sequence[str], worker_index: int, num_workers: int) -> List[str]:
    """The files of one worker: every ``num_workers``-th shard starting at ``worker_index``."""
    mine = list(files)[worker_index::num_workers]
    if not mine:
        raise DataError(
            "DATA_TOO_FEW_SHARDS",
            f"worker {worker_index} of {num_workers} gets no shard from {len(files)} file(s); rebuild the dataset with num_shards >= {num_workers}",
        )
    return mine


def parse_fn(kind: str = "train"):
    """A function from one serialized ``tf.train.Example`` to the dict described above."""
    import tensorflow as tf

    _check_kind(kind)
    spec = {"user": tf.io.FixedLenFeature([], tf.string)}
    spec.update({name: tf.io.RaggedFeature(tf.int64) for name in FIELDS[kind]})

    def parse(record):
        return tf.io.parse_single_example(record, spec)

    return parse


def read_examples(files: Union[str, Sequence[str]], kind: str = "train", num_parallel_reads: Optional[int] = None):
    """A ``tf.data.Dataset`` of parsed dicts, one per user, from shard files (or a split folder).

    Batch it with ``dataset.ragged_batch(n)`` (items become a RaggedTensor) or
    ``dataset.padded_batch(n)`` (padded with 0, a real item id: keep the lengths if you pad).
    """
    import tensorflow as tf

    _check_kind(kind)
    if isinstance(files, str):
        files = list_shards(files) if tf.io.gfile.isdir(files) else [files]
    autotune = tf.data.AUTOTUNE
    dataset = tf.data.TFRecordDataset(list(files), compression_type="GZIP", num_parallel_reads=num_parallel_reads or autotune)
    return dataset.map(parse_fn(kind), num_parallel_calls=autotune)


def make_train_dataset(files: Union[str, Sequence[str]], batch_size: int = 256, shuffle_buffer: int = 10_000, seed: Optional[int] = None, repeat: bool = False):
    """Shuffled, ragged-batched training users: ``{"user": [b], "items": RaggedTensor [b, None]}``."""
    import tensorflow as tf

    dataset = read_examples(files, "train")
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.ragged_batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
