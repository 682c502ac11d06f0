"""Executor side of batch inference: a per-worker SavedModel cache and the ``mapInArrow`` function.

Runs inside Spark's Python workers. It never imports the config system nor touches a
SparkSession; the driver (:mod:`sparkml_tf.jobs.predict`) passes plain values only.

Why Arrow and not pandas: an ``array<long>`` column through ``mapInPandas`` becomes a pandas
object column of per-row numpy arrays, and building and re-stacking those dominates the cost
for light models. Here each model call's rows (bucketed by length, padded to their own longest
row) are gathered straight from the flat Arrow list buffer with its offsets, and the output
vectors go back as one flat float buffer plus offsets. Workers freeze their heap after loading
the model (see :func:`freeze_heap`): Spark's per-task ``gc.collect()`` otherwise dominates.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Iterator, Tuple

import numpy as np

from sparkml_tf.errors import DataError

PAD = -1
_MODELS: Dict[Tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def latest_version(export_dir: str) -> str:
    """``<export_dir>/<version>`` with the highest integer version, or ``export_dir`` itself when it
    is already a SavedModel. Works for local paths and filesystem URIs."""
    from pyarrow import fs

    from sparkml_tf.filesystems import resolve

    filesystem, path = resolve(export_dir)
    infos = filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
    names = {info.base_name for info in infos}
    if "saved_model.pb" in names:
        return export_dir
    versions = [int(info.base_name) for info in infos if info.type == fs.FileType.Directory and info.base_name.isdigit()]
    if not versions:
        raise DataError("MODEL_NOT_FOUND", "no SavedModel version directory (an integer name such as 1/) found; run the Train/Export job first or fix export_dir", export_dir)
    return f"{export_dir.rstrip('/')}/{max(versions)}"


def configure_threads(threads: int) -> None:
    """Pin TensorFlow's thread pools in this worker. Spark already runs one Python worker per
    core, so TF's default of one pool thread per core oversubscribes the machine several times
    over (measured: ~5x slower for a light model on local[2]). Only effective before TF's
    runtime starts, i.e. on the first model load in a fresh worker; later calls keep its pools."""
    from sparkml_tf.tf_threads import configure_tf_threads

    configure_tf_threads(threads)


def freeze_heap() -> None:
    """Exclude every object alive now from future cyclic garbage collections (``gc.freeze``).

    Spark's Python daemon runs a full ``gc.collect()`` in a reused worker after *every task*;
    with TensorFlow and a model loaded that walks ~400k objects, 0.15 CPU-s a task on this
    machine -- more than the inference itself for a 50k-row partition of a light model. Freezing
    after the model load makes those collections near free. Earlier frozen objects are unfrozen
    and collected first, so a model dropped from the cache (a new predictor) is still freed."""
    import gc

    gc.unfreeze()
    gc.collect()
    gc.freeze()


def load_model(cache_key: str, model_path: str, signature: str = "serving_default", threads: int = 0, freeze: bool = False) -> Callable:
    """The model's signature function, loaded once per Python worker and cached under
    ``(cache_key, model_path)``; the driver makes ``cache_key`` fresh per predictor, so a model
    re-exported to the same path is never served stale from a reused worker.

    ``freeze``: call :func:`freeze_heap` after a fresh load (for Spark workers, not the driver)."""
    with _LOCK:
        key = (cache_key, model_path)
        if key not in _MODELS:
            import tensorflow as tf

            configure_threads(threads)
            for old in [k for k in _MODELS if k[1] == model_path]:
                del _MODELS[old]
            loaded = tf.saved_model.load(model_path)
            if signature not in loaded.signatures:
                raise DataError("MODEL_SIGNATURE_MISMATCH", f"the SavedModel has no '{signature}' signature (it has {sorted(loaded.signatures)}); export it with one", model_path)
            fn = loaded.signatures[signature]
            check_signature(fn, model_path)
            _MODELS[key] = (loaded, fn)  # keep ``loaded`` alive: the function holds weak references to it
            if freeze:
                freeze_heap()
        return _MODELS[key][1]


def check_signature(fn, model_path: str = "") -> None:
    """The contract: input ``items`` int64 [None, None], output ``user_embedding`` float32 [None, D]."""
    _, inputs = fn.structured_input_signature
    spec = inputs.get("items")
    if spec is None or spec.dtype.name != "int64" or spec.shape.rank not in (None, 2):
        have = {name: f"{s.dtype.name}{s.shape}" for name, s in inputs.items()}
        raise DataError("MODEL_SIGNATURE_MISMATCH", f"serving_default must take 'items': int64 [batch, length] (padded with -1), but takes {have}; export the model with that signature", model_path)
    outputs = fn.structured_outputs
    if "user_embedding" not in outputs:
        raise DataError("MODEL_SIGNATURE_MISMATCH", f"serving_default must return 'user_embedding', but returns {sorted(outputs)}; export the model with that output", model_path)


def list_offsets_values(array) -> Tuple[np.ndarray, np.ndarray]:
    """A pyarrow ``list<int>`` array as (offsets [n + 1] starting at 0, flat int64 values), read
    straight from its buffers: zero-copy for the offsets and for int64 values without nulls, and
    no per-row Python objects in any case. Null lists are empty; null elements become -1."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        array = pc.fill_null(array, pa.scalar([], type=array.type))
    offsets = array.offsets.to_numpy()
    # ``values`` is the unsliced child; slicing with the absolute offsets keeps a sliced array right.
    values = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0])) if len(offsets) else array.values.slice(0, 0)
    if values.null_count:
        values = pc.fill_null(values, PAD)
    flat = values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return (offsets - offsets[0] if len(offsets) and offsets[0] else offsets), flat


def padded_from_offsets(offsets: np.ndarray, flat: np.ndarray, min_width: int = 0) -> np.ndarray:
    """Rows ``flat[offsets[i]:offsets[i + 1]]`` as an int64 [n, max_len] matrix padded with -1."""
    lengths = np.diff(offsets)
    n = len(lengths)
    width = max(int(lengths.max()) if n else 0, min_width)
    out = np.full((n, width), PAD, dtype=np.int64)
    if flat.size:
        # Row-major boolean assignment fills each row's first ``length`` cells in ``flat`` order.
        out[np.arange(width) < lengths[:, None]] = flat
    return out


def padded_from_list_array(array) -> np.ndarray:
    """A pyarrow ``list<int>`` array to an int64 [n, max_len] matrix padded with -1, straight
    from the flat values buffer and offsets (no per-row Python objects). Null lists are empty."""
    offsets, flat = list_offsets_values(array)
    if len(offsets) <= 1:
        return np.zeros((0, 0), np.int64)
    return padded_from_offsets(offsets, flat)


def float_list_array(matrix: np.ndarray):
    """A float32 [n, d] matrix to a pyarrow ``list<float>`` array without per-row objects: the
    matrix buffer becomes the values (zero-copy) and the offsets are ``0, d, 2d, ...``."""
    import pyarrow as pa

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, d = matrix.shape
    values = pa.array(matrix.reshape(-1))
    if n * d < 2**31:
        return pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32)), values)
    return pa.LargeListArray.from_arrays(pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int64)), values)


def used_lengths(items: np.ndarray) -> np.ndarray:
    """Per row, 1 + the index of its last non-pad cell (0 for an all-pad row): the columns a
    row needs; everything after is padding the model masks anyway."""
    if items.shape[1] == 0:
        return np.zeros(len(items), np.int64)
    used = items[:, ::-1] != PAD
    return np.where(used.any(axis=1), items.shape[1] - np.argmax(used, axis=1), 0)


def _call(fn: Callable, chunk: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    result = fn(items=tf.constant(chunk))["user_embedding"].numpy()
    if len(result) != len(chunk):
        raise DataError("MODEL_BAD_OUTPUT", f"the model returned {len(result)} embeddings for {len(chunk)} rows; 'user_embedding' must have one row per input row")
    return result


def _bucketed(fn: Callable, lengths: np.ndarray, batch_size: int, chunk_of: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """Rows sorted by length (stable), cut into slices of ``batch_size``, each built by
    ``chunk_of(row_indices, width)`` at its own longest row and sent to the model; results are
    scattered back into input order."""
    n = len(lengths)
    order = np.argsort(lengths, kind="stable")
    out = None
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        result = _call(fn, chunk_of(rows, max(int(lengths[rows[-1]]), 1)))
        if out is None:
            out = np.empty((n,) + result.shape[1:], np.float32)
        out[rows] = result
    return out if out is not None else np.zeros((0, 0), np.float32)


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
    return _bucketed(fn, lengths, batch_size, lambda rows, width: items[rows, : min(width, items.shape[1])])


def embed_lists(fn: Callable, offsets: np.ndarray, flat: np.ndarray, batch_size: int) -> np.ndarray:
    """:func:`embed` for rows given as list offsets (from 0) and flat values, without building
    the whole padded matrix: each length bucket is gathered straight from ``flat``."""
    lengths = np.diff(offsets)
    if len(lengths) == 0:
        return np.zeros((0, 0), np.float32)
    if flat.size and (flat == PAD).any():  # explicit pads inside the lists: trim them per row
        return embed(fn, padded_from_offsets(offsets, flat, min_width=1), batch_size)
    source = np.append(flat, np.int64(PAD))  # index len(flat) reads a pad
    starts = offsets[:-1].astype(np.int64)

    def chunk_of(rows, width):
        columns = np.arange(width)
        index = starts[rows, None] + columns
        return source[np.where(columns < lengths[rows, None], index, flat.size)]

    return _bucketed(fn, lengths, batch_size, chunk_of)


def make_user_embedding_fn(cache_key: str, model_path: str, batch_size: int, key_col: str = "user", items_col: str = "items", output_col: str = "vector", threads: int = 1) -> Callable[[Iterator[Any]], Iterator[Any]]:
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
                raise DataError("MODEL_BAD_OUTPUT", f"the model returned {vectors.shape[0]} embeddings for {batch.num_rows} rows; 'user_embedding' must have one row per input row", model_path)
            yield pa.RecordBatch.from_arrays([batch.column(batch.schema.get_field_index(key_col)), float_list_array(vectors)], names=[key_col, output_col])

    return user_embeddings


def matrix_from_list_array(array, what: str = "vector") -> np.ndarray:
    """A pyarrow ``list<float>`` array of equal-length rows to a float32 [n, d] matrix."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if len(array) == 0:
        return np.zeros((0, 0), np.float32)
    lengths = pc.list_value_length(array)
    distinct = pc.unique(lengths.drop_null()).to_pylist()
    if array.null_count or len(distinct) != 1:
        raise DataError("DATA_SCHEMA_MISMATCH", f"every {what} must be a non-null list of one length (found {array.null_count} null, lengths {sorted(distinct)[:5]}); were all embeddings made by the same model?")
    lengths = lengths.to_numpy()
    return pc.list_flatten(array).to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(array), int(lengths[0]))


def drop_seen(ranked: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """Remove each row's ``seen`` ids from ``ranked`` (order kept) and keep ``k`` columns, -1 padded."""
    from sparkml_tf.metrics.ranking import hits_matrix

    mask = hits_matrix(ranked, seen) | (ranked == PAD)
    order = np.argsort(mask, axis=1, kind="stable")  # unseen first, in rank order
    kept = np.where(np.take_along_axis(mask, order, axis=1), PAD, np.take_along_axis(ranked, order, axis=1))
    if kept.shape[1] < k:
        kept = np.pad(kept, ((0, 0), (0, k - kept.shape[1])), constant_values=PAD)
    return kept[:, :k]


def make_topk_metrics_fn(cache_key: str, index_dir: str, ks, metric_names, vector_col: str = "vector", foldin_col: str = "foldin", targets_col: str = "targets") -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The Evaluate ``mapInArrow`` function: per Arrow batch of users (vector, fold-in ids, target
    ids), query the index for ``max(ks) + #fold-in`` candidates, drop fold-in items, score the top
    ``max(ks)``, and yield one row of sums: ``n`` long, ``sums`` (in ``metric_names`` order) and
    ``curve`` (sum of recall@k for k = 1..max(ks)), both array<double>.
    """
    ks = [int(k) for k in ks]
    metric_names = [str(m) for m in metric_names]
    kmax = max(ks)

    def topk_metrics(batches):
        import pyarrow as pa

        from sparkml_tf.index.hnsw import load_cached
        from sparkml_tf.metrics.ranking import batch_metrics, recall_curve

        index = load_cached(index_dir, cache_key)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            column = lambda name: batch.column(batch.schema.get_field_index(name))  # noqa: E731
            vectors = matrix_from_list_array(column(vector_col), "user vector")
            foldin = padded_from_list_array(column(foldin_col))
            targets = padded_from_list_array(column(targets_col))
            extra = int((foldin != PAD).sum(axis=1).max(initial=0))
            candidates, _ = index.query(vectors, kmax + extra)
            ranked = drop_seen(candidates, foldin, kmax)
            per_user = batch_metrics(ranked, targets, ks)
            sums = [float(np.nansum(per_user[name])) for name in metric_names]
            curve = np.nansum(recall_curve(ranked, targets, kmax), axis=0)
            yield pa.RecordBatch.from_pydict(
                {"n": [batch.num_rows], "sums": [sums], "curve": [curve.tolist()]},
                schema=pa.schema([("n", pa.int64()), ("sums", pa.list_(pa.float64())), ("curve", pa.list_(pa.float64()))]),
            )

    return topk_metrics
