"""Executor side of CTR scoring: a per-worker model cache and the functions Spark maps over batches.

Runs inside Spark's Python workers. It never imports the config system nor touches a
SparkSession; the driver (:mod:`sparkml_tf.ranking.jobs.score`, :mod:`sparkml_tf.ranking.jobs.evaluate`)
passes plain values only (paths, names, ints). The SavedModel and the encoder built from its
feature index asset are loaded once per Python worker into the executor cache
(:func:`sparkml_tf.spark.executor.cached`), keyed by a token the driver makes fresh per job.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple

import numpy as np

from sparkml_tf.errors import DataError
from sparkml_tf.ranking.layout import export_feature_index
from sparkml_tf.spark.executor import cached, list_offsets_values, load_saved_model, matrix_from_list_array


def load_encoder(cache_key: str, model_path: str):
    """The version's :class:`~sparkml_tf.ranking.features.feature_index.Encoder`, cached per worker (no TensorFlow needed)."""

    def load():
        from sparkml_tf.ranking.features.feature_index import Encoder, FeatureIndex

        return Encoder(FeatureIndex.load(export_feature_index(model_path)))

    return cached("ctr_encoder", cache_key, model_path, load)


def load_ctr_model(cache_key: str, model_path: str, threads: int = 1, freeze: bool = False) -> Tuple[Callable, Any]:
    """``(serving_default function, encoder)``, loaded once per Python worker (see
    :func:`sparkml_tf.spark.executor.load_saved_model` for ``threads`` and ``freeze``)."""
    encoder = load_encoder(cache_key, model_path)
    fn = load_saved_model(cache_key, model_path, "serving_default", threads, freeze, check=lambda fn: check_ctr_signature(fn, encoder.index, model_path))
    return fn, encoder


def check_ctr_signature(fn, index, model_path: str = "") -> None:
    """The contract: deep_ids/wide_ids int64 and dense float32, [None, width] with the index's
    widths, and a ``probability`` output."""
    _, inputs = fn.structured_input_signature
    widths = {"deep_ids": (index.num_deep, "int64"), "wide_ids": (index.num_wide, "int64"), "dense": (index.num_dense, "float32")}
    have = {name: f"{spec.dtype.name}{spec.shape}" for name, spec in inputs.items()}
    for name, (width, dtype) in widths.items():
        spec = inputs.get(name)
        ok = spec is not None and spec.dtype.name == dtype and spec.shape.rank == 2 and spec.shape[1] in (None, width)
        if not ok:
            raise DataError(
                "MODEL_SIGNATURE_MISMATCH",
                f"serving_default must take {name}: {dtype} [batch, {width}] (widths from assets/feature_index.json), "
                f"but takes {have}; export the model and its feature index together with export_ctr_model",
                model_path,
            )
    if "probability" not in fn.structured_outputs:
        raise DataError(
            "MODEL_SIGNATURE_MISMATCH",
            f"serving_default must return 'probability', but returns {sorted(fn.structured_outputs)}; export the model with export_ctr_model",
            model_path,
        )


def predict_probability(fn, features: Dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """float32 [B]: the model's ``probability`` over ``features``, ``batch_size`` rows per call."""
    import tensorflow as tf

    rows = len(features["deep_ids"])
    out = np.empty(rows, np.float32)
    for start in range(0, rows, batch_size):
        stop = min(start + batch_size, rows)
        got = fn(
            deep_ids=tf.constant(features["deep_ids"][start:stop], tf.int64),
            wide_ids=tf.constant(features["wide_ids"][start:stop], tf.int64),
            dense=tf.constant(features["dense"][start:stop], tf.float32),
        )["probability"].numpy().reshape(-1)
        if got.shape[0] != stop - start:
            raise DataError(
                "MODEL_BAD_OUTPUT", f"the model returned {got.shape[0]} probabilities for {stop - start} rows; 'probability' must be float32 [batch]"
            )
        out[start:stop] = got
    return out


def row_problems(frame, encoder, id_columns: Sequence[str]) -> Tuple[np.ndarray, List[Any]]:
    """``(ok bool[B], reasons)``: a row is bad when an id is null/empty or a feature value is
    malformed (:func:`sparkml_tf.ranking.features.feature_index.validate_columns`); reasons join with '; '."""
    from sparkml_tf.ranking.features.feature_index import validate_columns

    ok, feature_reasons = validate_columns(encoder, {name: frame[name] for name in encoder.index.field_names})
    ok = np.asarray(ok, dtype=bool).copy()
    reasons: List[List[str]] = [[] for _ in range(len(frame))]
    for column in id_columns:
        values = frame[column]
        missing = (values.isna() | (values.astype("string").str.strip() == "")).to_numpy(dtype=bool)
        for row in np.flatnonzero(missing):
            reasons[row].append(f"missing {column}")
        ok &= ~missing
    for row, reason in enumerate(feature_reasons):
        if reason:
            reasons[row].append(reason)
    return ok, ["; ".join(r) or None for r in reasons]


def make_score_fn(
    cache_key: str, model_path: str, model_version: str, id_columns: Sequence[str], batch_size: int, threads: int = 1
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The ``mapInPandas`` function: raw candidate rows -> (ids..., probability, model_version)
    for the rows that pass :func:`row_problems` (the others go to the quarantine pass)."""
    id_columns = [str(c) for c in id_columns]

    def score(frames):
        import pandas as pd

        fn, encoder = load_ctr_model(cache_key, model_path, threads=threads, freeze=True)
        for frame in frames:
            if frame.empty:
                continue
            ok, _ = row_problems(frame, encoder, id_columns)
            good = frame.loc[ok]
            if good.empty:
                continue
            features = encoder.encode({name: good[name] for name in encoder.index.field_names})
            out = {c: good[c].astype(str).to_numpy() for c in id_columns}
            out["probability"] = predict_probability(fn, features, batch_size)
            out["model_version"] = model_version
            yield pd.DataFrame(out)

    return score


def make_quarantine_fn(cache_key: str, model_path: str, id_columns: Sequence[str], columns: Sequence[str]) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The ``mapInPandas`` function: raw candidate rows -> the bad ones, every column of
    ``columns`` as a string (null stays null) plus ``reason``. Needs no TensorFlow."""
    id_columns = [str(c) for c in id_columns]
    columns = [str(c) for c in columns]

    def quarantine(frames):
        import pandas as pd

        encoder = load_encoder(cache_key, model_path)
        for frame in frames:
            if frame.empty:
                continue
            ok, reasons = row_problems(frame, encoder, id_columns)
            bad = np.flatnonzero(~ok)
            if not bad.size:
                continue
            out = {c: [_as_string(v) for v in frame[c].iloc[bad]] for c in columns}
            out["reason"] = [reasons[i] or "malformed row" for i in bad]
            yield pd.DataFrame(out, columns=[*columns, "reason"])

    return quarantine


def _as_string(value: Any):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)


def id_matrix(array, width: int, what: str) -> np.ndarray:
    """A pyarrow ``list<int64>`` array whose rows all hold ``width`` ids, as int64 [n, width]."""
    offsets, flat = list_offsets_values(array)
    lengths = np.diff(offsets)
    if array.null_count or (lengths != width).any():
        raise _width_error(what, width, sorted(set(lengths.tolist()))[:5], array.null_count)
    return flat.reshape(len(lengths), width)


def dense_matrix(array, width: int) -> np.ndarray:
    """A pyarrow ``list<float>`` array whose rows all hold ``width`` values, as float32 [n, width]."""
    matrix = matrix_from_list_array(array, "dense row")
    if len(array) and matrix.shape[1] != width:
        raise _width_error("dense", width, [matrix.shape[1]], 0)
    return matrix.reshape(len(array), width)


def _width_error(what: str, width: int, lengths, nulls: int) -> DataError:
    return DataError(
        "DATA_SCHEMA_MISMATCH",
        f"every {what} must be a list of {width} values (the feature index's width), found {nulls} null(s) "
        f"and lengths {lengths}; rebuild the encoded dataset with the exported model's feature index",
    )


def make_encoded_score_fn(cache_key: str, model_path: str, batch_size: int, threads: int = 1) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The ``mapInArrow`` function of evaluation: encoded rows (label, deep_ids, wide_ids, dense)
    -> (label double, probability double)."""

    def score(batches):
        import pyarrow as pa

        fn, encoder = load_ctr_model(cache_key, model_path, threads=threads, freeze=True)
        index = encoder.index
        for batch in batches:
            if batch.num_rows == 0:
                continue
            column = lambda name: batch.column(batch.schema.get_field_index(name))  # noqa: E731
            features = {
                "deep_ids": id_matrix(column("deep_ids"), index.num_deep, "deep_ids"),
                "wide_ids": id_matrix(column("wide_ids"), index.num_wide, "wide_ids"),
                "dense": dense_matrix(column("dense"), index.num_dense),
            }
            probability = predict_probability(fn, features, batch_size)
            label = column("label").cast(pa.float64())
            yield pa.RecordBatch.from_arrays([label, pa.array(probability.astype(np.float64))], names=["label", "probability"])

    return score


def one_hot(ids, size: int):
    """A row's wide ids as a Spark ML SparseVector of ``size`` with 1.0 at each distinct id (the
    logistic-regression baseline's features)."""
    from pyspark.ml.linalg import SparseVector

    indices = np.unique(np.asarray(ids, dtype=np.int64))
    return SparseVector(size, indices.astype(np.int32), np.ones(indices.size))
