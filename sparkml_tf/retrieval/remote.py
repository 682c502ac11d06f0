"""Executor side of retrieval inference: user embeddings (``mapInArrow``) and top-k queries of the index.

Runs inside Spark's Python workers. It never imports the config system nor touches a
SparkSession; the driver (:mod:`sparkml_tf.retrieval.jobs.predict`) passes plain values only.

Why Arrow and not pandas: an ``array<long>`` column through ``mapInPandas`` becomes a pandas
object column of per-row numpy arrays, and building and re-stacking those dominates the cost
for light models. Here each model call's rows (bucketed by length, padded to their own longest
row) are gathered straight from the flat Arrow list buffer with its offsets, and the output
vectors go back as one flat float buffer plus offsets. Workers freeze their heap after loading
the model (see :func:`sparkml_tf.spark.executor.freeze_heap`): Spark's per-task ``gc.collect()`` otherwise dominates.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import numpy as np

from sparkml_tf.errors import DataError
from sparkml_tf.spark.executor import (
    PAD,
    float_list_array,
    list_offsets_values,
    load_saved_model,
    matrix_from_list_array,
    padded_from_list_array,
    padded_from_offsets,
)


def load_model(cache_key: str, model_path: str, signature: str = "serving_default", threads: int = 0, freeze: bool = False) -> Callable:
    """The model's signature function, loaded once per Python worker (:func:`sparkml_tf.spark.executor.load_saved_model`)
    and checked against the retrieval contract."""
    return load_saved_model(cache_key, model_path, signature, threads, freeze, check=lambda fn: check_signature(fn, model_path))


def check_signature(fn, model_path: str = "") -> None:
    """The contract: input ``items`` int64 [None, None], output ``user_embedding`` float32 [None, D]."""
    _, inputs = fn.structured_input_signature
    spec = inputs.get("items")
    if spec is None or spec.dtype.name != "int64" or spec.shape.rank not in (None, 2):
        have = {name: f"{s.dtype.name}{s.shape}" for name, s in inputs.items()}
        raise DataError(
            "MODEL_SIGNATURE_MISMATCH",
            f"serving_default must take 'items': int64 [batch, length] (padded with -1), but takes {have}; export the model with that signature",
            model_path,
        )
    outputs = fn.structured_outputs
    if "user_embedding" not in outputs:
        raise DataError(
            "MODEL_SIGNATURE_MISMATCH",
            f"serving_default must return 'user_embedding', but returns {sorted(outputs)}; export the model with that output",
            model_path,
        )


def used_lengths(items: np.ndarray) -> np.ndarray:
    """Per row, 1 + the index of its last non-pad cell (0 for an all-pad row): the columns a
    row needs; everything after is padding the model masks anyway."""
    if items.shape[1] == 0:
        return np.zeros(len(items), np.int64)
    used = items[:, ::-1] != PAD
    return np.where(used.any(axis=1), items.shape[1] - np.argmax(used, axis=1), 0)


def _call(fn: Callable, chunk: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    # ``np.asarray`` reads the output tensor's buffer in place (``.numpy()`` would copy it);
    # the caller copies it into its own array at once.
    result = np.asarray(fn(items=tf.constant(chunk))["user_embedding"])
    if len(result) != len(chunk):
        raise DataError(
            "MODEL_BAD_OUTPUT", f"the model returned {len(result)} embeddings for {len(chunk)} rows; 'user_embedding' must have one row per input row"
        )
    return result


def _length_order(lengths: np.ndarray) -> np.ndarray:
    """Row indices sorted by length, ties in input order. Lengths that fit int16 are sorted as
    int16, which numpy's stable sort does by radix (10x faster than int64 at 25k rows)."""
    if lengths.size and 0 <= int(lengths.min()) and int(lengths.max()) < 2**15:
        lengths = lengths.astype(np.int16)
    return np.argsort(lengths, kind="stable")


def _bucketed(fn: Callable, lengths: np.ndarray, batch_size: int, chunk_of: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Rows sorted by length (stable), cut into slices of ``batch_size``, each built by
    ``chunk_of(row_indices, their_lengths)`` (lengths ascending) and sent to the model. Results
    are stacked in sorted order (contiguous copies) and put back into input order at the end,
    in one permutation."""
    n = len(lengths)
    order = _length_order(lengths)
    sorted_lengths = lengths[order]
    out = None
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        result = _call(fn, chunk_of(order[start:stop], sorted_lengths[start:stop]))
        if out is None:
            out = np.empty((n,) + result.shape[1:], np.float32)
        out[start:stop] = result
    if out is None:
        return np.zeros((0, 0), np.float32)
    embeddings = np.empty_like(out)
    embeddings[order] = out
    return embeddings


def _width(lengths: np.ndarray) -> int:
    """A slice's width: its longest row (``lengths`` ascending), at least 1."""
    return max(int(lengths[-1]), 1)


def embed(fn: Callable, items: np.ndarray, batch_size: int) -> np.ndarray:
    """Embeddings of the rows of a -1 padded int64 matrix, ``batch_size`` rows per model call.

    Rows are bucketed by length first (a stable sort by :func:`used_lengths`) and each slice is
    trimmed to its own longest row, so short rows do not pay for the padding of long ones (a
    Poisson(20) batch padded to its maximum is ~45% padding; bucketed, ~3%). The signature takes
    ``[None, None]``, so no shape ever retraces.
    """
    if len(items) == 0:
        return np.zeros((0, 0), np.float32)
    if items.shape[1] == 0:
        items = np.full((len(items), 1), PAD, np.int64)
    lengths = used_lengths(items)
    return _bucketed(fn, lengths, batch_size, lambda rows, lens: items[rows, : min(_width(lens), items.shape[1])])


def embed_lists(fn: Callable, offsets: np.ndarray, flat: np.ndarray, batch_size: int) -> np.ndarray:
    """:func:`embed` for rows given as list offsets (from 0) and flat values, without building
    the whole padded matrix: each model call's rows are gathered straight from ``flat``.

    Rows of one length ``L`` are rows of a strided ``[len(flat) - L + 1, L]`` view of ``flat``
    (row ``i`` is ``flat[i : i + L]``), so a slice is gathered by one fancy index on that view:
    a copy of ``L`` contiguous values per row, no index matrix, no mask. Sorted by length, a
    slice of 1,024 rows mostly holds one or two lengths."""
    lengths = np.diff(offsets)
    if len(lengths) == 0:
        return np.zeros((0, 0), np.float32)
    if flat.size and (flat == PAD).any():  # explicit pads inside the lists: trim them per row
        return embed(fn, padded_from_offsets(offsets, flat, min_width=1), batch_size)
    flat = np.asarray(flat, np.int64)
    starts = offsets[:-1]
    windows = {}

    def rows_of(length):  # in bounds by construction; numpy checks the row index against its shape
        if length not in windows:
            windows[length] = np.lib.stride_tricks.as_strided(flat, (flat.size - length + 1, length), flat.strides * 2, writeable=False)
        return windows[length]

    def chunk_of(rows, lens):
        width = _width(lens)
        if lens[0] == width:  # one length: the slice is rows of one view
            return rows_of(width)[starts[rows]]
        chunk = np.full((len(rows), width), PAD, np.int64)
        cuts = (np.flatnonzero(np.diff(lens)) + 1).tolist()
        for a, b in zip([0, *cuts], [*cuts, len(rows)]):
            if lens[a]:
                chunk[a:b, : lens[a]] = rows_of(int(lens[a]))[starts[rows[a:b]]]
        return chunk

    return _bucketed(fn, lengths, batch_size, chunk_of)


def make_user_embedding_fn(
    cache_key: str, model_path: str, batch_size: int, key_col: str = "user", items_col: str = "items", output_col: str = "vector", threads: int = 1
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The ``mapInArrow`` function: batches of (key, items list<long>) -> (key, vector list<float>).

    ``threads``: TensorFlow pool size per Python worker (0 = TF's default, one per core).

    Only plain values are captured, so Spark pickles nothing but strings and an int.
    """
    if batch_size <= 0:
        raise DataError("PREDICT_BAD_BATCH_SIZE", f"batch_size must be positive, got {batch_size}", "batch_size")

    def user_embeddings(batches):
        import pyarrow as pa

        fn = load_model(cache_key, model_path, threads=threads, freeze=True)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            offsets, flat = list_offsets_values(batch.column(batch.schema.get_field_index(items_col)))
            vectors = embed_lists(fn, offsets, flat, batch_size)
            if vectors.shape[0] != batch.num_rows:
                raise DataError(
                    "MODEL_BAD_OUTPUT",
                    f"the model returned {vectors.shape[0]} embeddings for {batch.num_rows} rows; 'user_embedding' must have one row per input row",
                    model_path,
                )
            yield pa.RecordBatch.from_arrays([batch.column(batch.schema.get_field_index(key_col)), float_list_array(vectors)], names=[key_col, output_col])

    return user_embeddings


def drop_seen(ranked: np.ndarray, seen: np.ndarray, k: int, scores: Optional[np.ndarray] = None):
    """Remove each row's ``seen`` ids from ``ranked`` (order kept) and keep ``k`` columns, -1 padded;
    with ``scores`` (aligned with ``ranked``), return the kept ids and their scores (NaN at pads)."""
    from sparkml_tf.metrics.ranking import hits_matrix

    mask = hits_matrix(ranked, seen) | (ranked == PAD)
    order = np.argsort(mask, axis=1, kind="stable")  # unseen first, in rank order
    dropped = np.take_along_axis(mask, order, axis=1)
    kept = np.where(dropped, PAD, np.take_along_axis(ranked, order, axis=1))
    kept_scores = None if scores is None else np.where(dropped, np.nan, np.take_along_axis(scores, order, axis=1)).astype(np.float32)
    if kept.shape[1] < k:
        kept = np.pad(kept, ((0, 0), (0, k - kept.shape[1])), constant_values=PAD)
        kept_scores = None if scores is None else np.pad(kept_scores, ((0, 0), (0, k - kept_scores.shape[1])), constant_values=np.nan)
    return kept[:, :k] if scores is None else (kept[:, :k], kept_scores[:, :k])


def make_topk_metrics_fn(
    cache_key: str, index_dir: str, ks, metric_names, vector_col: str = "vector", foldin_col: str = "foldin", targets_col: str = "targets"
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The Evaluate ``mapInArrow`` function: per Arrow batch of users (vector, fold-in ids, target
    ids), query the index for ``max(ks) + #fold-in`` candidates, drop fold-in items, score the top
    ``max(ks)``, and yield one row of sums: ``n`` long, ``sums`` (in ``metric_names`` order) and
    ``curve`` (sum of recall@k for k = 1..max(ks)), both array<double>.
    """
    ks = [int(k) for k in ks]
    metric_names = [str(m) for m in metric_names]
    kmax = max(ks)

    def topk_metrics(batches):

        from sparkml_tf.index.hnsw import HnswIndex
        from sparkml_tf.spark.executor import cached

        index = cached("hnsw", cache_key, index_dir, lambda: HnswIndex.load(index_dir))
        for batch in batches:
            if batch.num_rows == 0:
                continue
            column = lambda name: batch.column(batch.schema.get_field_index(name))  # noqa: E731
            vectors = matrix_from_list_array(column(vector_col), "user vector")
            foldin = padded_from_list_array(column(foldin_col))
            targets = padded_from_list_array(column(targets_col))
            extra = int((foldin != PAD).sum(axis=1).max(initial=0))
            candidates, _ = index.query(vectors, kmax + extra)
            yield _metric_sums(drop_seen(candidates, foldin, kmax), targets, ks, metric_names)

    return topk_metrics


def _metric_sums(ranked: np.ndarray, targets: np.ndarray, ks, metric_names):
    """One row of sums over a batch of users: ``n``, ``sums`` (``metric_names`` order), ``curve`` (recall@1..k)."""
    import pyarrow as pa

    from sparkml_tf.metrics.ranking import batch_metrics, recall_curve

    per_user = batch_metrics(ranked, targets, ks)
    sums = [float(np.nansum(per_user[name])) for name in metric_names]
    curve = np.nansum(recall_curve(ranked, targets, max(ks)), axis=0)
    return pa.RecordBatch.from_pydict(
        {"n": [len(ranked)], "sums": [sums], "curve": [curve.tolist()]},
        schema=pa.schema([("n", pa.int64()), ("sums", pa.list_(pa.float64())), ("curve", pa.list_(pa.float64()))]),
    )


def make_ranked_metrics_fn(ks, metric_names, ranked_col: str = "ids", targets_col: str = "targets") -> Callable[[Iterator[Any]], Iterator[Any]]:
    """:func:`make_topk_metrics_fn` for users whose top ``max(ks)`` (fold-in items already dropped) is
    given, e.g. merged from the shards of an index: rows (ranked ids, targets) -> one row of sums per batch."""
    ks = [int(k) for k in ks]
    metric_names = [str(m) for m in metric_names]
    kmax = max(ks)

    def ranked_metrics(batches):
        for batch in batches:
            if batch.num_rows == 0:
                continue
            column = lambda name: batch.column(batch.schema.get_field_index(name))  # noqa: E731
            ranked = padded_from_list_array(column(ranked_col))
            if ranked.shape[1] < kmax:
                ranked = np.pad(ranked, ((0, 0), (0, kmax - ranked.shape[1])), constant_values=PAD)
            yield _metric_sums(ranked[:, :kmax], padded_from_list_array(column(targets_col)), ks, metric_names)

    return ranked_metrics


def make_recommend_fn(
    cache_key: str, model_path: str, index_dir: str, k: int, batch_size: int, threads: int = 1, output_dir: Optional[str] = None,
    constants: Optional[dict] = None,
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The Recommend ``mapInArrow`` function: batches of (user, items list<long>[, seen list<long>]) ->
    one row per recommendation (user, rank int, item string, score float): the user's embedding by
    the model from ``items``, ``k + #seen`` candidates from the index, the ``seen`` items (default:
    ``items``) dropped, the best ``k`` kept.

    With ``output_dir`` the task writes its rows itself, one Parquet file per task with the
    ``constants`` columns added (string values), and yields one row: ``rows`` long. Arrow to
    Parquet directly skips Spark's row conversion, most of the cost of a wide top-k table."""
    k = int(k)
    constants = dict(constants or {})

    def recommend_batches(batches):
        import pyarrow as pa

        from sparkml_tf.index.hnsw import HnswIndex
        from sparkml_tf.spark.executor import cached

        fn = load_model(cache_key, model_path, threads=threads, freeze=True)
        index = cached("hnsw", cache_key, index_dir, lambda: HnswIndex.load(index_dir))
        names = cached("hnsw-names", cache_key, index_dir, lambda: _names_by_id(index))
        for batch in batches:
            if batch.num_rows == 0:
                continue
            users = batch.column(batch.schema.get_field_index("user"))
            offsets, flat = list_offsets_values(batch.column(batch.schema.get_field_index("items")))
            vectors = embed_lists(fn, offsets, flat, batch_size)
            seen_at = batch.schema.get_field_index("seen")  # every item the user has (default: the input items)
            seen_lists = list_offsets_values(batch.column(seen_at)) if seen_at >= 0 else (offsets, flat)
            seen = padded_from_offsets(*seen_lists, min_width=1)
            extra = int((seen != PAD).sum(axis=1).max(initial=0))
            candidates, scores = index.query(vectors, k + extra)
            kept, kept_scores = drop_seen(candidates, seen, k, scores)
            valid = kept != PAD
            rows, ranks = np.nonzero(valid)
            yield pa.RecordBatch.from_arrays(
                [users.take(pa.array(rows)), pa.array((ranks + 1).astype(np.int32)), names.take(pa.array(kept[valid])),
                 pa.array(kept_scores[valid].astype(np.float32))],
                names=["user", "rank", "item", "score"],
            )

    def recommend(batches):
        import pyarrow as pa

        if output_dir is None:
            yield from recommend_batches(batches)
            return
        import uuid

        import pyarrow.parquet as pq

        from sparkml_tf.io.filesystems import resolve

        filesystem, local = resolve(output_dir)
        filesystem.create_dir(local, recursive=True)
        writer, written = None, 0
        try:
            for batch in recommend_batches(batches):
                n = batch.num_rows
                repeat = pa.array(np.zeros(n, np.int32))  # a constant column: one dictionary entry, n zero indices
                columns = list(batch.columns) + [pa.DictionaryArray.from_arrays(repeat, pa.array([str(v)])) for v in constants.values()]
                out = pa.RecordBatch.from_arrays(columns, names=batch.schema.names + list(constants))
                if writer is None:
                    writer = pq.ParquetWriter(f"{local}/part-{uuid.uuid4().hex}.parquet", out.schema, filesystem=filesystem)
                writer.write_batch(out)
                written += n
        finally:
            if writer is not None:
                writer.close()
        yield pa.RecordBatch.from_pydict({"rows": [written]}, schema=pa.schema([("rows", pa.int64())]))

    return recommend


def _names_by_id(index):
    """Item names indexed by vocab id, as an Arrow string array (null where the index has no such id)."""
    import pyarrow as pa

    names = np.full(int(index.ids.max(initial=-1)) + 1, None, dtype=object)
    names[index.ids] = index.items
    return pa.array(names, pa.string())


def make_shard_query_fn(cache_key: str, index_dir: str, k: int, key_col: str = "user", vector_col: str = "vector", exclude_col: str = "exclude"):
    """The sharded query's ``mapInArrow`` function: rows (key, vector, exclude list<long>, ``_shard``),
    best sorted by shard, -> (key, ids list<long>, scores list<float>): each row's top ``k`` of that
    shard with its ``exclude`` ids dropped (-1 / NaN where the shard has fewer). A worker holds one
    shard at a time (:func:`sparkml_tf.spark.executor.cached` keeps one entry per kind and path)."""
    k = int(k)

    def query(batches):
        import pyarrow as pa

        from sparkml_tf.index.hnsw import HnswIndex, shard_dir
        from sparkml_tf.spark.executor import cached

        schema = pa.schema([(key_col, pa.string()), ("ids", pa.list_(pa.int64())), ("scores", pa.list_(pa.float32()))])
        for batch in batches:
            if batch.num_rows == 0:
                continue
            column = lambda name: batch.column(batch.schema.get_field_index(name))  # noqa: E731
            shards = column("_shard").to_numpy()
            for shard in np.unique(shards):
                rows = pa.array(np.flatnonzero(shards == shard))
                index = cached("hnsw-shard", f"{cache_key}:{shard}", index_dir, lambda: HnswIndex.load(shard_dir(index_dir, int(shard))))
                vectors = matrix_from_list_array(column(vector_col).take(rows), "user vector")
                exclude = padded_from_list_array(column(exclude_col).take(rows))
                extra = int((exclude != PAD).sum(axis=1).max(initial=0))
                candidates, scores = index.query(vectors, k + extra)
                kept, kept_scores = drop_seen(candidates, exclude, k, scores)
                width = kept.shape[1]
                offsets = pa.array(np.arange(0, (len(kept) + 1) * width, width, dtype=np.int32))
                yield pa.RecordBatch.from_arrays(
                    [column(key_col).take(rows), pa.ListArray.from_arrays(offsets, pa.array(kept.ravel())),
                     pa.ListArray.from_arrays(offsets, pa.array(kept_scores.ravel(), pa.float32()))],
                    schema=schema,
                )

    return query
