"""The executor toolkit: what every Spark Python worker (and training worker) of both tasks uses.

- one per-worker cache (:func:`cached`), keyed by a token the driver makes fresh for each job run,
  with one eviction rule: a new token for the same (kind, path) replaces the old entry, so a model
  re-exported to the same path is never served stale and old copies do not pile up;
- SavedModel loading into that cache (:func:`load_saved_model`), TensorFlow thread pools
  (:func:`configure_tf_threads`) and heap freezing after a load (:func:`freeze_heap`); TensorFlow is
  imported through :func:`sparkml_tf.console.import_tensorflow`, which keeps its load-time noise off the logs;
- Arrow helpers that move list columns to and from numpy without per-row Python objects.

Never imports the config system, the job engine or pyspark.sql: executors get plain values only.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from sparkml_tf.console import import_tensorflow
from sparkml_tf.errors import DataError

PAD = -1
_CACHE: Dict[Tuple[str, str, str], Any] = {}  # (kind, token, path) -> value
_LOCK = threading.RLock()


def cached(kind: str, token: str, path: str, load: Callable[[], Any]) -> Any:
    """``load()``'s value, made once per Python worker for ``(kind, token, path)``.

    ``token`` is made fresh on the driver per job run (or is a content hash): a new token for the
    same ``(kind, path)`` evicts the older entry, so at most one copy per path and kind is kept."""
    key = (kind, str(token), str(path))
    with _LOCK:
        if key not in _CACHE:
            for old in [k for k in _CACHE if k[0] == kind and k[2] == key[2]]:
                del _CACHE[old]
            _CACHE[key] = load()
        return _CACHE[key]


def load_saved_model(
    token: str, model_path: str, signature: str = "serving_default", threads: int = 0, freeze: bool = False, check: Optional[Callable[[Any], None]] = None
) -> Callable:
    """The SavedModel's ``signature`` function, loaded once per Python worker (see :func:`cached`).

    ``threads``: TensorFlow pool size, set before TF's runtime starts (0 = TF's default); Spark already
    runs one Python worker per core, so TF's default of one pool thread per core oversubscribes the
    machine (measured: ~5x slower for a light model on local[2]). ``check(fn)`` raises when the
    signature breaks the task's contract. ``freeze``: :func:`freeze_heap` after a fresh load (Spark
    workers, not the driver)."""

    def load():
        tf = import_tensorflow()
        configure_tf_threads(threads)
        loaded = tf.saved_model.load(model_path)
        if signature not in loaded.signatures:
            raise DataError(
                "MODEL_SIGNATURE_MISMATCH",
                f"the SavedModel has no '{signature}' signature (it has {sorted(loaded.signatures)}); export it with one",
                model_path,
            )
        fn = loaded.signatures[signature]
        if check is not None:
            check(fn)
        if freeze:
            freeze_heap()
        return loaded, fn  # keep ``loaded`` alive: the function holds weak references to it

    return cached(f"saved_model:{signature}", token, model_path, load)[1]


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


def configure_tf_threads(threads: Optional[int]) -> bool:
    """Use ``threads`` intra-op and inter-op threads in this process; True when it took effect.

    TensorFlow fixes its pools when its runtime starts, so this only works before the process
    runs anything in TensorFlow; later calls change nothing and return False (the earlier pools
    stay). ``None`` or 0 leaves TensorFlow's default, one thread per core.
    """
    if not threads:
        return False
    tf = import_tensorflow()

    if tf.config.threading.get_intra_op_parallelism_threads() == threads and tf.config.threading.get_inter_op_parallelism_threads() == threads:
        return True
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:
        return False
    return True


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
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"every {what} must be a non-null list of one length (found {array.null_count} null, "
            f"lengths {sorted(distinct)[:5]}); were all embeddings made by the same model?",
        )
    lengths = lengths.to_numpy()
    return pc.list_flatten(array).to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(array), int(lengths[0]))
