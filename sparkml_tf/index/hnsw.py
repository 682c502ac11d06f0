"""An hnswlib index over item embeddings that ranks by ``user · item + bias``.

The bias is folded into the vectors so plain inner-product search ranks by the model's score:
item ``v, b`` is stored as ``[v, b]`` and a query ``u`` is sent as ``[u, 1]``, so
``[u, 1] · [v, b] = u · v + b``. hnswlib's "ip" space returns ``1 - dot``; :meth:`query` turns
that back into the score.

Graph search on raw inner products is poor when item norms vary (high-norm items crowd the
graph). With ``augment`` (the default) each stored vector gets one more coordinate,
``sqrt(Φ² - |[v, b]|²)`` with ``Φ`` the largest norm, and queries a 0 there (Bachrach et al.,
2014): all items then share one norm, inner product ranks like L2 distance and cosine, and the
score is unchanged. The shards of a sharded index all use the largest norm of the whole catalogue
(``norm2``): with its own, smaller ``Φ`` a shard's graph is laid out differently from one index's
(the extra coordinate changes fastest near ``Φ``, among the high-norm items that top the lists),
and at 1M items a shard missed 3x as many of its true top 100. On embeddings shaped like a
trained recommender's (power-law norms), augmentation takes recall@100 from about 0.45 to 0.99+
at the same speed (see docs/benchmarks.md, "ANN").

On disk (``save(dir)``): ``index.bin`` (hnswlib), ``ids.parquet`` (row ``i`` = hnswlib label
``i``: columns ``id`` int64 vocab id, ``item`` string) and ``params.json`` (M, ef_construction,
ef, dim, count, space, fold_bias, augment; norm2 = Φ² for the "l2"/"cosine" spaces). Directories may be local or remote URIs (copied through a
local temporary directory with pyarrow.fs). This module runs on executors too: it never
imports pyspark or TensorFlow.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from sparkml_tf.errors import DataError
from sparkml_tf.io.filesystems import normalize, resolve

INDEX_FILE = "index.bin"
IDS_FILE = "ids.parquet"
PARAMS_FILE = "params.json"
SHARDS_FILE = "shards.json"
# Space for augmented indexes (see HnswIndex.build). With every augmented item at norm Φ,
# ``1 - q·x`` ("ip") and ``|q - x|² = |q|² + Φ² - 2 q·x`` ("l2") order items identically, for
# queries and for item-item links alike, so both build the same graph (benchmarks/bench_ann.py
# measures identical recall); "ip" keeps the score exact (``1 - distance``).
DEFAULT_AUGMENTED_SPACE = "ip"


# ---- item embeddings (the ExportEmbeddings contract) ---------------------------------------


def read_item_embeddings(embeddings_dir: str, shard: int = 0, num_shards: int = 1) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read ``id, item, vector, bias`` Parquet into (ids int64 [N], items object [N], vectors float32 [N, D], biases float32 [N]).

    With ``num_shards > 1``, only the items of ``shard`` (:func:`shard_of`), read a record batch at
    a time, so a shard's builder never holds the whole catalogue."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    filesystem, path = resolve(embeddings_dir)
    try:
        dataset = ds.dataset(path, filesystem=filesystem, format="parquet", exclude_invalid_files=True)
        if num_shards > 1:
            parts = [b.filter(pa.array(shard_of(b.column(b.schema.get_field_index("id")).to_numpy(), num_shards) == shard)) for b in dataset.to_batches()]
            table = pa.Table.from_batches(parts, schema=dataset.schema)
        else:
            table = dataset.to_table()
    except (FileNotFoundError, OSError) as e:
        raise DataError("DATA_NOT_FOUND", f"cannot read item embeddings ({e}); run the ExportEmbeddings job first or fix the path", embeddings_dir) from e
    missing = {"id", "vector"} - set(table.column_names)
    if missing:
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"item embeddings lack column(s) {sorted(missing)} (have {table.column_names}); expected id int64, item string, vector list<float>, bias float",
            embeddings_dir,
        )
    if table.num_rows == 0:
        raise DataError("DATA_EMPTY", "no item embeddings to index; check that the train job wrote its item embeddings here", embeddings_dir)
    vector = table.column("vector").combine_chunks()
    lengths = pc.list_value_length(vector).to_numpy(zero_copy_only=False)
    dim = int(lengths[0])
    if vector.null_count or np.any(lengths != dim):
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"item vectors must all have the same length (found lengths {sorted(set(lengths.tolist()))[:5]} and {vector.null_count} null)",
            embeddings_dir,
        )
    vectors = pc.list_flatten(vector).to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
    ids = table.column("id").to_numpy().astype(np.int64)
    items = table.column("item").to_numpy(zero_copy_only=False).astype(object) if "item" in table.column_names else ids.astype(str).astype(object)
    biases = table.column("bias").to_numpy(zero_copy_only=False).astype(np.float32) if "bias" in table.column_names else np.zeros(len(ids), np.float32)
    return ids, items, vectors, biases


# ---- shards -------------------------------------------------------------------------------
# A sharded index: ``<dir>/shards.json`` ({"num_shards": S, "count": ..., "shards": [per-shard
# params]}) and ``<dir>/shard=00000/`` ... each a complete one-shard index (the layout above).
# Items go to shard ``id mod S``: vocab ids are dense and ordered by popularity, so every shard
# gets its share of popular and rare items.


def shard_of(ids: np.ndarray, num_shards: int) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64) % int(num_shards)


def shard_dir(index_dir: str, shard: int) -> str:
    return f"{str(index_dir).rstrip('/')}/shard={int(shard):05d}"


def num_index_shards(index_dir: str) -> int:
    """1 for a plain index; S for a sharded one (its ``shards.json``)."""
    from sparkml_tf.io.filesystems import read_json

    manifest = read_json(f"{str(index_dir).rstrip('/')}/{SHARDS_FILE}")
    return int(manifest["num_shards"]) if isinstance(manifest, dict) else 1


def write_shards_manifest(index_dir: str, num_shards: int, shards: Sequence[Dict]) -> Dict:
    from sparkml_tf.io.filesystems import write_json

    manifest = {"num_shards": int(num_shards), "count": int(sum(s["count"] for s in shards)), "shards": sorted(shards, key=lambda s: s["shard"])}
    write_json(f"{str(index_dir).rstrip('/')}/{SHARDS_FILE}", manifest)
    return manifest


def query_shards(index_dir: str, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Top ``k`` (ids, scores) of a plain or sharded index, in this process: each shard in turn, the
    lists merged, best first (ties by id). For a sample of users; jobs fan out over Spark instead."""
    shards = num_index_shards(index_dir)
    if shards == 1:
        return HnswIndex.load(index_dir).query(queries, k)
    found = [HnswIndex.load(shard_dir(index_dir, s)).query(queries, k) for s in range(shards)]
    ids, scores = np.concatenate([f[0] for f in found], axis=1), np.concatenate([f[1] for f in found], axis=1)
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)


def build_shard(
    embeddings_dir: str, index_dir: str, shard: int, num_shards: int, M: int, ef_construction: int, ef: int, num_threads: int = 1,
    norm2: Optional[float] = None,
) -> Dict:
    """Build and save shard ``shard`` of ``num_shards`` from the item embeddings; its params and build seconds.
    ``norm2``: Φ², the largest squared norm of ``[v, b]`` over every shard (see the module's doc)."""
    import time

    start = time.perf_counter()
    ids, items, vectors, biases = read_item_embeddings(embeddings_dir, shard, num_shards)
    index = HnswIndex.build(vectors, biases, ids=ids, items=items, M=M, ef_construction=ef_construction, ef=ef, num_threads=num_threads, norm2=norm2)
    index.save(shard_dir(index_dir, shard))
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # this worker process's peak (Linux: KiB)
    return {"shard": int(shard), "count": int(index.params["count"]), "dim": int(index.params["dim"]), "build_s": time.perf_counter() - start,
            "peak_rss_mb": float(peak_mb)}


def make_build_shards_fn(
    embeddings_dir: str, index_dir: str, num_shards: int, M: int, ef_construction: int, ef: int, num_threads: int = 1, norm2: Optional[float] = None
):
    """A ``mapInArrow`` function over rows ``shard`` (long): builds each shard named, yields its params."""

    def build(batches):
        import pyarrow as pa

        for batch in batches:
            for shard in batch.column(0).to_pylist():
                info = build_shard(embeddings_dir, index_dir, int(shard), num_shards, M, ef_construction, ef, num_threads, norm2)
                yield pa.RecordBatch.from_pylist([info], schema=SHARD_SCHEMA())

    return build


def SHARD_SCHEMA():  # noqa: N802 (a schema constant, built when pyarrow is imported)
    import pyarrow as pa

    return pa.schema([("shard", pa.int64()), ("count", pa.int64()), ("dim", pa.int64()), ("build_s", pa.float64()), ("peak_rss_mb", pa.float64())])


# ---- search -------------------------------------------------------------------------------


def fold(vectors: np.ndarray, biases: Optional[np.ndarray]) -> np.ndarray:
    """Item side: ``[v, b]``."""
    vectors = np.asarray(vectors, dtype=np.float32)
    biases = np.zeros(len(vectors), np.float32) if biases is None else np.asarray(biases, np.float32)
    return np.concatenate([vectors, biases[:, None]], axis=1)


def fold_queries(queries: np.ndarray, augment: bool = False) -> np.ndarray:
    """Query side: ``[u, 1]`` (``[u, 1, 0]`` for an augmented index)."""
    queries = np.asarray(queries, dtype=np.float32)
    extra = [np.ones((len(queries), 1), np.float32)] + ([np.zeros((len(queries), 1), np.float32)] if augment else [])
    return np.concatenate([queries, *extra], axis=1)


def augment_norms(data: np.ndarray, norm2: Optional[float] = None) -> np.ndarray:
    """Append ``sqrt(Φ² - |x|²)`` so every row has norm ``Φ`` (inner products with a 0-padded query
    unchanged). ``Φ²`` is ``norm2`` when given (never below the rows' own largest), else their largest."""
    squared = np.einsum("ij,ij->i", data, data, dtype=np.float64)
    phi2 = squared.max() if norm2 is None else max(float(norm2), squared.max())
    extra = np.sqrt(np.maximum(phi2 - squared, 0.0)).astype(np.float32)
    return np.concatenate([data, extra[:, None]], axis=1)


def exact_search(
    item_vectors: np.ndarray,
    item_biases: Optional[np.ndarray],
    queries: np.ndarray,
    k: int,
    ids: Optional[np.ndarray] = None,
    batch_size: int = 1024,
) -> Tuple[np.ndarray, np.ndarray]:
    """Brute-force top-``k`` by ``q · v + b`` (numpy): (ids [n, k], scores [n, k]) best first.

    ``ids`` maps rows of ``item_vectors`` to returned ids (default: row numbers).
    """
    item_vectors = np.asarray(item_vectors, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    k = min(k, len(item_vectors))
    batch_size = max(1, min(int(batch_size), 2**24 // max(len(item_vectors), 1)))  # at most 64 MiB of scores at a time, whatever the catalogue
    out_ids, out_scores = [], []
    for start in range(0, len(queries), batch_size):
        scores = queries[start : start + batch_size] @ item_vectors.T
        if item_biases is not None:
            scores += np.asarray(item_biases, np.float32)[None, :]
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        out_ids.append(np.take_along_axis(part, order, axis=1))
        out_scores.append(np.take_along_axis(part_scores, order, axis=1))
    rows = np.concatenate(out_ids) if out_ids else np.zeros((0, k), np.int64)
    scores = np.concatenate(out_scores) if out_scores else np.zeros((0, k), np.float32)
    return (rows if ids is None else np.asarray(ids)[rows]).astype(np.int64), scores


def overlap_recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of ``truth``'s ids per row that ``found`` also returns (ANN recall)."""
    per_row = [len(np.intersect1d(f, t)) / max(len(t), 1) for f, t in zip(found, truth)]
    return float(np.mean(per_row)) if per_row else float("nan")


class HnswIndex:
    """Build with :meth:`build`, or :meth:`load` a saved one; :meth:`query` returns vocab ids and scores."""

    def __init__(self, index, ids: np.ndarray, items: np.ndarray, params: Dict):
        self.index = index
        self.ids = np.asarray(ids, dtype=np.int64)
        self.items = items
        self.params = dict(params)

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        biases: Optional[np.ndarray] = None,
        ids: Optional[np.ndarray] = None,
        items: Optional[np.ndarray] = None,
        M: int = 16,
        ef_construction: int = 200,
        ef: int = 200,
        num_threads: int = 0,
        fold_bias: bool = True,
        augment: bool = True,
        space: Optional[str] = None,
        norm2: Optional[float] = None,
    ) -> "HnswIndex":
        """``space``: hnswlib space, "ip" (the default), or with ``augment`` also "l2" or "cosine":
        all augmented items share one norm, so these rank like inner product (same recall).
        ``norm2``: Φ² for the augmentation (a shard's: the whole catalogue's); default these items' largest."""
        import hnswlib

        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise DataError("DATA_SCHEMA_MISMATCH", f"item vectors must be a non-empty [N, D] matrix, got shape {vectors.shape}")
        space = space or (DEFAULT_AUGMENTED_SPACE if augment else "ip")
        if space not in ("ip", "l2", "cosine") or (space != "ip" and not augment):
            raise ValueError(f"space must be 'ip', or with augment=True 'l2' or 'cosine'; got {space!r} (augment={augment})")
        data = fold(vectors, biases) if fold_bias else vectors
        if augment:
            data = augment_norms(data, norm2)
            norm2 = float(np.einsum("ij,ij->i", data[:1], data[:1], dtype=np.float64)[0])
        else:
            norm2 = 0.0
        count, dim = data.shape
        ids = np.arange(count, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        items = ids.astype(str).astype(object) if items is None else np.asarray(items, dtype=object)
        index = hnswlib.Index(space=space, dim=dim)
        index.init_index(max_elements=count, ef_construction=ef_construction, M=M)
        index.set_num_threads(num_threads if num_threads > 0 else (os.cpu_count() or 1))
        # Labels are row numbers; ``ids`` maps them to vocab ids (kept apart so any id space works).
        index.add_items(data, np.arange(count))
        index.set_ef(ef)
        params = {
            "M": M,
            "ef_construction": ef_construction,
            "ef": ef,
            "dim": int(vectors.shape[1]),
            "count": int(count),
            "space": space,
            "fold_bias": bool(fold_bias),
            "augment": bool(augment),
        }
        if space != "ip":
            params["norm2"] = norm2  # Φ², the shared squared norm: turns l2/cosine distances back into scores
        return cls(index, ids, items, params)

    def set_ef(self, ef: int) -> None:
        self.index.set_ef(ef)
        self.params["ef"] = ef

    def query(self, vectors: np.ndarray, k: int, num_threads: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` by ``u · v + b``: (vocab ids int64 [n, k], scores float32 [n, k]) best first."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.params["dim"]:
            raise DataError(
                "DATA_SCHEMA_MISMATCH",
                f"queries must be [n, {self.params['dim']}] (the index's dim), "
                f"got shape {vectors.shape}; were user and item embeddings made by the same model?",
            )
        k = min(k, self.params["count"])
        if len(vectors) == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        # hnswlib needs ef >= k to return k results.
        if self.index.ef < k:
            self.index.set_ef(k)
        augment = self.params.get("augment", False)
        if self.params["fold_bias"]:
            data = fold_queries(vectors, augment)
        else:
            data = np.concatenate([vectors, np.zeros((len(vectors), 1), np.float32)], axis=1) if augment else vectors
        labels, distances = self.index.knn_query(data, k=k, num_threads=num_threads)
        return self.ids[labels.astype(np.int64)], self._scores(data, distances)

    def _scores(self, data: np.ndarray, distances: np.ndarray) -> np.ndarray:
        """hnswlib distances -> ``q · x`` (= ``u · v + b``): ip ``1 - q·x``; l2 ``|q|² + Φ² - 2 q·x``; cosine ``1 - q·x / (|q| Φ)``."""
        space = self.params["space"]
        if space == "ip":
            return (1.0 - distances).astype(np.float32)
        q2 = np.einsum("ij,ij->i", data, data, dtype=np.float64)[:, None]
        norm2 = self.params["norm2"]
        if space == "l2":
            return ((q2 + norm2 - distances.astype(np.float64)) / 2.0).astype(np.float32)
        return ((1.0 - distances.astype(np.float64)) * np.sqrt(q2 * norm2)).astype(np.float32)

    def save(self, directory: str) -> None:
        """Write index.bin, ids.parquet and params.json under ``directory`` (local path or URI)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        with _local_dir_for_write(directory) as local:
            self.index.save_index(os.path.join(local, INDEX_FILE))
            pq.write_table(pa.table({"id": pa.array(self.ids, pa.int64()), "item": pa.array(self.items, pa.string())}), os.path.join(local, IDS_FILE))
            with open(os.path.join(local, PARAMS_FILE), "w") as f:
                json.dump(self.params, f, indent=2, sort_keys=True)

    @classmethod
    def load(cls, directory: str, ef: Optional[int] = None) -> "HnswIndex":
        import hnswlib
        import pyarrow.parquet as pq

        with _local_dir_for_read(directory) as local:
            params_path = os.path.join(local, PARAMS_FILE)
            if not os.path.exists(params_path) or not os.path.exists(os.path.join(local, INDEX_FILE)):
                raise DataError(
                    "DATA_NOT_FOUND", f"no hnsw index here (expected {INDEX_FILE} and {PARAMS_FILE}); run the BuildIndex job first or fix the path", directory
                )
            with open(params_path) as f:
                params = json.load(f)
            dim = params["dim"] + int(params["fold_bias"]) + int(params.get("augment", False))
            index = hnswlib.Index(space=params["space"], dim=dim)
            index.load_index(os.path.join(local, INDEX_FILE), max_elements=params["count"])
            table = pq.read_table(os.path.join(local, IDS_FILE))
        index.set_ef(ef or params["ef"])
        return cls(index, table.column("id").to_numpy(), table.column("item").to_numpy(zero_copy_only=False).astype(object), params)


def index_items_files(directory: str) -> List[str]:
    """The id-map Parquet files of an index, every shard's (``id`` int64, ``item`` string): Spark reads
    them in place to map a user's items to ids."""
    shards = num_index_shards(directory)
    roots = [shard_dir(directory, s) for s in range(shards)] if shards > 1 else [str(directory).rstrip("/")]
    return [f"{root}/{IDS_FILE}" for root in roots]


def read_index_items(directory: str) -> Tuple[np.ndarray, np.ndarray]:
    """An index's (vocab ids, item names), all shards', without loading a graph: what maps a user's items to ids."""
    import pyarrow.parquet as pq

    shards = num_index_shards(directory)
    if shards > 1:
        parts = [read_index_items(shard_dir(directory, s)) for s in range(shards)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    with _local_dir_for_read(directory) as local:
        path = os.path.join(local, IDS_FILE)
        if not os.path.exists(path):
            raise DataError("DATA_NOT_FOUND", f"no {IDS_FILE} here; run the BuildIndex job first or fix the path", directory)
        table = pq.read_table(path)
    return table.column("id").to_numpy(), table.column("item").to_numpy(zero_copy_only=False).astype(object)


# ---- local copies of remote directories --------------------------------------------------


class _local_dir_for_read:
    def __init__(self, directory: str):
        self.directory = normalize(directory)  # file://, dbfs:/ (FUSE) -> local paths; s3a:// -> s3://
        self.tmp: Optional[str] = None

    def __enter__(self) -> str:
        if "://" not in self.directory:
            return self.directory
        from pyarrow import fs

        self.tmp = tempfile.mkdtemp(prefix="sparkml-tf-index-")
        filesystem, path = resolve(self.directory)
        fs.copy_files(path, self.tmp, source_filesystem=filesystem, destination_filesystem=fs.LocalFileSystem())
        return self.tmp

    def __exit__(self, *exc) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


class _local_dir_for_write(_local_dir_for_read):
    def __enter__(self) -> str:
        if "://" not in self.directory:
            os.makedirs(self.directory, exist_ok=True)
            return self.directory
        self.tmp = tempfile.mkdtemp(prefix="sparkml-tf-index-")
        return self.tmp

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if self.tmp and exc_type is None:
                from pyarrow import fs

                filesystem, path = resolve(self.directory)
                filesystem.create_dir(path, recursive=True)
                fs.copy_files(self.tmp, path, source_filesystem=fs.LocalFileSystem(), destination_filesystem=filesystem)
        finally:
            super().__exit__(exc_type, *exc)


__all__: Sequence[str] = ["HnswIndex", "exact_search", "read_item_embeddings", "fold", "fold_queries", "overlap_recall"]
