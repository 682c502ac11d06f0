"""Trainer side: read the TFRecord shards written by BuildDataset as ``tf.data`` datasets.

Shards live in ``<dataset>/tfrecord/{train,validation,test}/part-%05d.tfrecord.gz`` (gzipped
``tf.train.Example``; see :mod:`sparkml_tf.io.tfrecords`). Each parsed element is a dict:

- ``kind="train"``: ``{"user": string scalar, "items": int64 [n]}``, items by timestamp;
- ``kind="eval"``:  ``{"user": string scalar, "inputs": int64 [n], "targets": int64 [m]}``.

Item values are vocabulary ids (``<dataset>/vocab/items.txt`` line numbers).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

from sparkml_tf.errors import DataError
from sparkml_tf.io.filesystems import normalize
from sparkml_tf.io.tfrecords import PATTERN, list_shards

KINDS = ("train", "eval")
FIELDS = {"train": ("items",), "eval": ("inputs", "targets")}


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
        if tf.io.gfile.isdir(files):
            directory, files = files, list_shards(files)
            if not files:
                raise DataError("DATA_NOT_FOUND", f"no {PATTERN} files in {directory}; run the BuildDataset job first, or check the path", directory)
        else:
            files = [files]
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


def parse_train(record):
    """One serialized tf.train.Example -> its ``items`` (int64 [n])."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(record, {"items": tf.io.VarLenFeature(tf.int64)})
    return tf.sparse.to_dense(parsed["items"], default_value=-1)


def read_validation(files: List[str]):
    """All validation users in memory: padded ``inputs`` and ``targets`` (int64, -1 pads)."""
    import tensorflow as tf

    spec = {"inputs": tf.io.VarLenFeature(tf.int64), "targets": tf.io.VarLenFeature(tf.int64)}
    inputs, targets = [], []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
        parsed = tf.io.parse_example(batch, spec)
        inputs += tf.RaggedTensor.from_sparse(parsed["inputs"]).to_list()
        targets += tf.RaggedTensor.from_sparse(parsed["targets"]).to_list()
    keep = [i for i, t in enumerate(targets) if t]  # users without targets have no NDCG
    return pad([inputs[i] for i in keep]), pad([targets[i] for i in keep])


def pad(rows: List[List[int]]):
    """-1 padded int64 matrix, at least one column wide (a batch of users without any input is still a batch)."""
    from sparkml_tf.metrics.ranking import pad_lists

    return pad_lists(rows, max([len(r) for r in rows] + [1]))


def training_batches(raw_items, preprocess: Callable, batch_size: int, shuffle_buffer: int, seed: int, in_memory: bool = False):
    """Per-user input -> shuffled, repeated, padded batches of training examples (-1 pads).

    ``raw_items`` holds one user per element: their ``items`` (int64 [n]), or the serialized
    ``tf.train.Example`` itself (a string: :func:`tfrecord_source` streaming, ``cache=False``), parsed
    here a batch at a time. A ``preprocess`` with a ``batched`` form (a function of the items of a
    batch of users, a RaggedTensor [b, None], to the batch: every built-in model) never runs per user:

    - ``in_memory`` (the source is finite and may be held: the trainer's cached input): the users
      are held as one RaggedTensor, their row numbers shuffled and gathered (:func:`gathered_batches`);
    - otherwise the users (or their records) are shuffled, then batched, parsed and preprocessed
      together.

    Either way the users and their order are the per-user path's: the shuffle sees positions only
    (tests compare them batch for batch). A ``preprocess`` without ``batched`` maps user by user."""
    import tensorflow as tf

    batched = getattr(preprocess, "batched", None)
    records = raw_items.element_spec.dtype == tf.string
    if batched is not None and in_memory:
        return gathered_batches(raw_items, preprocess, batch_size, shuffle_buffer, seed)
    if batched is not None:
        ds = _repeat_shuffled(raw_items, shuffle_buffer, seed)
        if records:
            ds = ds.batch(batch_size, drop_remainder=True).map(lambda r: batched(parse_train_batch(r)), num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.ragged_batch(batch_size, drop_remainder=True).map(batched, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)
    if records:
        raw_items = parsed_users(raw_items)
    ds = _repeat_shuffled(raw_items, shuffle_buffer, seed).map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    spec = ds.element_spec
    ds = ds.padded_batch(batch_size, padding_values={key: tf.constant(-1, spec[key].dtype) for key in spec}, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _repeat_shuffled(ds, shuffle_buffer: int, seed: int):
    """The one shuffle of training input (users, their records or their row numbers): every path
    shuffles alike, so they give the same order. Repeat before shuffle: the buffer stays full across
    epoch boundaries instead of draining and refilling (a stall while shuffle_buffer records are read
    and decoded, with no training). Epochs are counted in steps anyway, so their edges need not be exact."""
    return ds.repeat().shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)


def gathered_batches(raw_items, preprocess: Callable, batch_size: int, shuffle_buffer: int, seed: int):
    """Batches of ``preprocess.batched`` with no work per user: the users are read once into one
    RaggedTensor, their row numbers shuffled (:func:`_repeat_shuffled`, as :func:`training_batches`
    shuffles users, so the same order) and gathered a batch at a time. The per-user map and padding
    cost about 11 ms of CPU per batch of 256 at the default config's sizes, this about 0.5 ms."""
    import tensorflow as tf

    if raw_items.element_spec.dtype == tf.string:
        parts = list(raw_items.batch(4096).map(parse_train_batch))
    else:
        parts = list(raw_items.ragged_batch(4096))
    if not parts:  # a worker without users: the per-user path gives its (empty) answer
        return training_batches(raw_items, lambda items: preprocess(items), batch_size, shuffle_buffer, seed)
    users = tf.concat(parts, axis=0) if len(parts) > 1 else parts[0]
    rows = _repeat_shuffled(tf.data.Dataset.range(tf.cast(users.nrows(), tf.int64)), shuffle_buffer, seed)
    batches = rows.batch(batch_size, drop_remainder=True).map(lambda picked: preprocess.batched(tf.gather(users, picked)), num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def parse_train_batch(records):
    """A batch of serialized tf.train.Example -> ragged ``items`` (vectorized: far cheaper than one by one)."""
    import tensorflow as tf

    parsed = tf.io.parse_example(records, {"items": tf.io.RaggedFeature(tf.int64)})
    return parsed["items"]


def parsed_users(records):
    """Serialized ``tf.train.Example`` records -> one user's ``items`` per element, parsed 1,024 at a time."""
    import tensorflow as tf

    return records.batch(1024).map(parse_train_batch, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def read_train_pairs(files: List[str]):
    """Every training (user row, item id) pair of ``files`` as two int64 numpy arrays (users numbered
    by their order in the shards): what a closed-form fit needs in memory."""
    import numpy as np
    import tensorflow as tf

    users, items, offset = [], [], 0
    for records in tf.data.TFRecordDataset(list(files), compression_type="GZIP").batch(4096):
        ragged = parse_train_batch(records)
        users.append(ragged.value_rowids().numpy() + offset)
        items.append(ragged.flat_values.numpy())
        offset += int(ragged.nrows())
    if not users:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(users), np.concatenate(items)


def tfrecord_source(files: List[str], cache: bool = True):
    """The default input: each worker reads its own shards (files[worker::num_workers]).

    ``cache`` keeps the decoded examples in memory after the first epoch (a worker's share of the
    interaction lists is small next to its RAM), so later epochs skip GZIP and protobuf decoding.
    Without it the shards are read every epoch and the serialized records are what the source
    yields: :func:`training_batches` shuffles them and parses a batch at a time.
    """
    import tensorflow as tf

    def source(input_context):
        mine = files[input_context.input_pipeline_id :: input_context.num_input_pipelines]
        # Local shards are read one after the other: reading them is CPU work that the training step
        # needs (4 parallel readers took streaming input from 0.98 to 0.79 of in-memory input on 2
        # cores); remote ones by 4 at a time, where the wait is the store's latency.
        remote = any("://" in normalize(name) for name in mine)  # file:// and dbfs:/ (FUSE) are local
        ds = tf.data.TFRecordDataset(mine, compression_type="GZIP", num_parallel_reads=(min(len(mine), 4) or None) if remote else None)
        if not cache:
            return ds
        return parsed_users(ds).cache()

    return source


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
