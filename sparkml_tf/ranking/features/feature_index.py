"""The feature index of a CTR model and the one encoder that applies it, offline and online.

Pure python + numpy/pandas (no Spark, no TensorFlow): Spark executors (BuildCtrDataset,
scoring) and an online server call the same :class:`Encoder`, so a row gets the same ids
wherever it is encoded.

Ids (docs/ctr-data.md):

- categorical field: local id 0 = missing or out of vocabulary, ``vocab[i]`` -> ``i + 1``;
- numeric field: local id 0 = missing, else ``1 + searchsorted(boundaries, x, side="right")``,
  and a dense value ``log1p(max(x, 0))`` (missing -> 0.0);
- cross: :func:`cross_mix` of its fields' local ids modulo ``buckets``.

deep features are the fields; wide features the fields then the crosses; dense features the
numeric fields. Ids are global within their group: ``deep_ids[:, j] = deep_offsets[j] + local``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from sparkml_tf.errors import DataError
from sparkml_tf.ranking.features.kinds import CATEGORICAL, KINDS, LONG_VALUES, NUMERIC, cross_mix, shortener
from sparkml_tf.ranking.layout import FEATURE_INDEX_FILE

FORMAT_VERSION = 1
# Rows quoted in a DATA_BAD_ROWS message.
_QUOTED = 3
def cross_name(fields: Sequence[str]) -> str:
    return "_x_".join(fields)


def normalize_crosses(crosses: Optional[Sequence[Any]], default_buckets: Optional[int], fields: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """Crosses as ``[{"name", "fields", "buckets"}]`` from ``[["C1", "C2"], ...]`` or
    ``[{"fields": [...], "buckets": n}, ...]`` (``buckets`` defaults to ``default_buckets``);
    checks the fields against ``fields`` when given. Raises ValueError."""
    result: List[Dict[str, Any]] = []
    known = None if fields is None else set(fields)
    for position, cross in enumerate(crosses or []):
        where = f"crosses[{position}]"
        if isinstance(cross, Mapping):
            unknown = sorted(set(cross) - {"fields", "buckets", "name"})
            if unknown:
                raise ValueError(f"{where} has unknown key(s) {', '.join(unknown)}; a cross is {{\"fields\": [...], \"buckets\": n}}")
            names, buckets = cross.get("fields"), cross.get("buckets", default_buckets)
        else:
            names, buckets = cross, default_buckets
        if isinstance(names, str) or not isinstance(names, Sequence) or len(names) < 2 or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{where} must name at least two fields, like [\"C1\", \"C2\"], got {names!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"{where} repeats a field: {list(names)}")
        missing = [n for n in names if known is not None and n not in known]
        if missing:
            raise ValueError(f"{where} names unknown field(s) {', '.join(missing)}; the fields are {', '.join(fields or [])}")
        if buckets is None:
            raise ValueError(f"{where} needs 'buckets' (a whole number >= 1)")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ValueError(f"{where} buckets must be a whole number >= 1, got {buckets!r}")
        name = cross.get("name") if isinstance(cross, Mapping) and cross.get("name") else cross_name(names)
        result.append({"name": str(name), "fields": list(names), "buckets": int(buckets)})
    return result


class FeatureIndex:
    """Fields (categorical vocabularies, numeric bucket boundaries) and crosses; JSON-serialisable.

    ``fields``: ``{"name", "kind": "categorical", "vocab": [str, ...]}`` (optionally with
    ``"max_length"`` and ``"long_values"``: values longer than that many characters are shortened,
    offline by the readers and online by the Encoder: :func:`~sparkml_tf.ranking.features.kinds.shorten_category`) or
    ``{"name", "kind": "numeric", "boundaries": [float, ...]}`` (sorted, increasing);
    ``crosses``: ``{"name", "fields": [...], "buckets": int}``.
    """

    def __init__(self, fields: Sequence[Mapping[str, Any]], crosses: Sequence[Mapping[str, Any]] = ()):
        self.fields: List[Dict[str, Any]] = [_check_field(f, i) for i, f in enumerate(fields)]
        names = [f["name"] for f in self.fields]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise _invalid(f"field names must be unique; repeated: {', '.join(repeated)}")
        try:
            self.crosses = normalize_crosses(crosses, None, names)
        except ValueError as e:
            raise _invalid(str(e)) from e
        wide = names + [c["name"] for c in self.crosses]
        if len(set(wide)) != len(wide):
            raise _invalid(f"a cross name repeats a field or another cross: {wide}")

    # ---- layout -------------------------------------------------------------------------
    @property
    def field_names(self) -> List[str]:
        return [f["name"] for f in self.fields]

    @property
    def categorical_fields(self) -> List[str]:
        return [f["name"] for f in self.fields if f["kind"] == CATEGORICAL]

    @property
    def numeric_fields(self) -> List[str]:
        return [f["name"] for f in self.fields if f["kind"] == NUMERIC]

    @property
    def deep_names(self) -> List[str]:
        return self.field_names

    @property
    def wide_names(self) -> List[str]:
        return self.field_names + [c["name"] for c in self.crosses]

    @property
    def dense_names(self) -> List[str]:
        return self.numeric_fields

    @property
    def deep_sizes(self) -> List[int]:
        return [len(f["vocab"]) + 1 if f["kind"] == CATEGORICAL else len(f["boundaries"]) + 2 for f in self.fields]

    @property
    def wide_sizes(self) -> List[int]:
        return self.deep_sizes + [c["buckets"] for c in self.crosses]

    @property
    def deep_offsets(self) -> List[int]:
        return _offsets(self.deep_sizes)

    @property
    def wide_offsets(self) -> List[int]:
        return _offsets(self.wide_sizes)

    @property
    def deep_size(self) -> int:
        return int(sum(self.deep_sizes))

    @property
    def wide_size(self) -> int:
        return int(sum(self.wide_sizes))

    @property
    def num_deep(self) -> int:
        return len(self.fields)

    @property
    def num_wide(self) -> int:
        return len(self.fields) + len(self.crosses)

    @property
    def num_dense(self) -> int:
        return len(self.numeric_fields)

    @property
    def version(self) -> str:
        """First 12 hex digits of the sha256 of the canonical JSON of fields and crosses."""
        canonical = json.dumps({"fields": self.fields, "crosses": self.crosses}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    def sizes(self) -> Dict[str, int]:
        """The numbers a model is built from."""
        return {
            "deep_size": self.deep_size,
            "wide_size": self.wide_size,
            "num_deep": self.num_deep,
            "num_wide": self.num_wide,
            "num_dense": self.num_dense,
        }

    # ---- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "version": self.version, "fields": self.fields, "crosses": self.crosses}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureIndex":
        if not isinstance(data, Mapping) or "fields" not in data:
            raise _invalid("expected a JSON object with 'fields' (and 'crosses')")
        if data.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
            raise _invalid(f"format_version {data.get('format_version')!r} is not {FORMAT_VERSION}; rebuild the dataset with this sparkml_tf")
        index = cls(data["fields"], data.get("crosses") or ())
        if data.get("version") not in (None, index.version):
            raise _invalid(f"its version {data['version']!r} does not match its content ({index.version}); the file was edited, rebuild it")
        return index

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    def save(self, directory: str) -> str:
        """Write ``<directory>/feature_index.json`` (atomically); return its path."""
        from sparkml_tf.io.filesystems import write_text

        path = f"{str(directory).rstrip('/')}/{FEATURE_INDEX_FILE}"
        write_text(path, self.to_json(), atomic=True)
        return path

    @classmethod
    def load(cls, path: str) -> "FeatureIndex":
        """Read a ``feature_index.json``, given the file or the directory holding it."""
        from pyarrow import fs

        from sparkml_tf.io.filesystems import read_text, resolve

        path = str(path).rstrip("/")
        filesystem, local = resolve(path)
        kind = filesystem.get_file_info(local).type
        if kind == fs.FileType.Directory or (kind == fs.FileType.NotFound and not path.endswith(".json")):
            path = f"{path}/{FEATURE_INDEX_FILE}"
        text = read_text(path)
        if text is None:
            raise DataError("DATA_NOT_FOUND", f"no {FEATURE_INDEX_FILE} here; run the BuildCtrDataset job first, or point at its feature_index/ folder", path)
        try:
            return cls.from_dict(json.loads(text))
        except DataError as e:
            raise DataError(e.code, e.message, path) from e
        except json.JSONDecodeError as e:
            raise DataError("DATA_FEATURE_INDEX_INVALID", f"not valid JSON ({e}); rebuild it with BuildCtrDataset", path) from e

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureIndex) and other.fields == self.fields and other.crosses == self.crosses

    def __repr__(self) -> str:
        return (
            f"FeatureIndex(version={self.version}, fields={self.num_deep}, crosses={len(self.crosses)}, deep_size={self.deep_size}, wide_size={self.wide_size})"
        )


IndexLike = Union[FeatureIndex, Mapping[str, Any]]


def as_index(index: IndexLike) -> FeatureIndex:
    return index if isinstance(index, FeatureIndex) else FeatureIndex.from_dict(index)


class Encoder:
    """Raw columns -> ``{"deep_ids", "wide_ids", "dense"}``; vectorised, one code path for all."""

    def __init__(self, index: IndexLike):
        import pandas as pd

        self.index = as_index(index)
        self._lookup = {f["name"]: pd.Index(f["vocab"], dtype=object) for f in self.index.fields if f["kind"] == CATEGORICAL}
        # Long values shortened as the reader did, where that can change an id (kinds.shortener).
        self._shorten = {f["name"]: shortener(f) for f in self.index.fields if f["kind"] == CATEGORICAL and shortener(f) is not None}
        self._boundaries = {f["name"]: np.asarray(f["boundaries"], np.float64) for f in self.index.fields if f["kind"] == NUMERIC}
        self._deep_offsets = np.asarray(self.index.deep_offsets, np.int64)
        self._wide_offsets = np.asarray(self.index.wide_offsets, np.int64)
        self._plain_rows = None  # the fast path of encode_rows, built on first use

    def encode(self, columns: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Encode a batch given by column (arrays, lists or pandas Series of equal length).

        Raises DATA_SCHEMA_MISMATCH when a field's column is absent and DATA_BAD_ROWS when a
        numeric field holds something that is not a number (use :meth:`validate_columns` to
        set such rows aside first).
        """
        size = self._check(columns)
        local = np.zeros((size, self.index.num_deep), np.int64)
        dense = np.zeros((size, self.index.num_dense), np.float32)
        position = 0
        for j, field in enumerate(self.index.fields):
            name = field["name"]
            if field["kind"] == CATEGORICAL:
                local[:, j] = self._categorical(name, columns[name])
                continue
            values, missing, bad = numeric_values(columns[name])
            if bad.any():
                raise _bad_rows(name, columns[name], bad)
            local[:, j] = np.where(missing, 0, 1 + np.searchsorted(self._boundaries[name], np.where(missing, 0.0, values), side="right"))
            dense[:, position] = np.where(missing, 0.0, np.log1p(np.maximum(np.where(missing, 0.0, values), 0.0)))
            position += 1
        crosses = self._crosses(local)
        wide = np.concatenate([local, crosses], axis=1) + self._wide_offsets
        return {"deep_ids": local + self._deep_offsets, "wide_ids": wide, "dense": dense}

    def encode_rows(self, rows: Sequence[Mapping[str, Any]]) -> Dict[str, np.ndarray]:
        """Encode rows (dicts, e.g. one online request's candidates); absent keys are missing.

        Rows of plain values (str/None categoricals, int/float/None numerics) take a numpy fast
        path with the same result (:mod:`sparkml_tf.ranking.features.rows`); anything else goes through
        :meth:`encode`.
        """
        if self._plain_rows is None:
            from sparkml_tf.ranking.features.rows import PlainRowEncoder

            self._plain_rows = PlainRowEncoder(self)
        encoded = self._plain_rows.try_encode(rows)
        return encoded if encoded is not None else self.encode(rows_to_columns(rows, self.index.field_names))

    def validate_columns(self, columns: Mapping[str, Any]) -> Tuple[np.ndarray, List[Optional[str]]]:
        """``(ok, reasons)``: ``ok[i]`` is False when row ``i`` would make :meth:`encode` raise,
        and ``reasons[i]`` says why (``"I3: not a number: 'abc'"``); None for good rows."""
        size = self._check(columns)
        ok = np.ones(size, bool)
        reasons: List[Optional[str]] = [None] * size
        for name in self.index.numeric_fields:
            series = _series(columns[name])
            _, _, bad = numeric_values(series)
            for i in np.flatnonzero(bad):
                text = f"{name}: not a number: {_quote(series.iloc[i])}"
                reasons[i] = text if reasons[i] is None else f"{reasons[i]}; {text}"
            ok &= ~bad
        return ok, reasons

    def _check(self, columns: Mapping[str, Any]) -> int:
        missing = [n for n in self.index.field_names if n not in columns]
        if missing:
            raise DataError(
                "DATA_SCHEMA_MISMATCH",
                f"the feature index (version {self.index.version}) needs column(s) {', '.join(missing)} that the input lacks; "
                "give every field of the index, with null for unknown values",
            )
        lengths = {len(columns[n]) for n in self.index.field_names}
        if len(lengths) > 1:
            raise DataError("DATA_SCHEMA_MISMATCH", f"columns have different lengths {sorted(lengths)}; give one value per row in every column")
        return lengths.pop() if lengths else 0

    def _categorical(self, name: str, values: Any) -> np.ndarray:
        strings, missing = category_strings(values)
        if name in self._shorten:
            strings = np.array([self._shorten[name](v) for v in strings], dtype=object)
        ids = self._lookup[name].get_indexer(strings) + 1  # -1 (unknown) -> 0
        ids[missing] = 0
        return ids.astype(np.int64)

    def _crosses(self, local: np.ndarray) -> np.ndarray:
        position = {name: j for j, name in enumerate(self.index.field_names)}
        out = np.zeros((local.shape[0], len(self.index.crosses)), np.int64)
        for k, cross in enumerate(self.index.crosses):
            mixed = cross_mix([local[:, position[n]] for n in cross["fields"]])
            out[:, k] = (mixed % np.uint64(cross["buckets"])).astype(np.int64)
        return out


def validate_columns(index: Union[IndexLike, Encoder], columns: Mapping[str, Any]) -> Tuple[np.ndarray, List[Optional[str]]]:
    """:meth:`Encoder.validate_columns` for an index, its dict, or an encoder."""
    encoder = index if isinstance(index, Encoder) else Encoder(index)
    return encoder.validate_columns(columns)


def rows_to_columns(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> Dict[str, List[Any]]:
    return {name: [row.get(name) for row in rows] for name in names}


def category_strings(values: Any) -> Tuple[np.ndarray, np.ndarray]:
    """``(strings, missing)``: values as strings (5, 5.0 and "5" are all "5"); None, NaN and ""
    are missing. Spark readers apply the same rule (sparkml_tf.ranking.criteo.category_column)."""
    import pandas as pd

    series = _series(values)
    missing = series.isna().to_numpy()
    if series.dtype.kind == "f":
        strings = _float_strings(series.to_numpy(np.float64, na_value=np.nan), missing)
    elif series.dtype.kind in "iu":
        strings = series.astype(str).to_numpy(object)
    elif pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        strings = series.to_numpy(object)
    else:  # mixed Python values (an online request): normalised one by one
        strings = np.array([None if m else _one_string(v) for v, m in zip(series.tolist(), missing)], dtype=object)
    missing = missing | (strings == "")
    return np.where(missing, "", strings).astype(object), missing


def numeric_values(values: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(float64 values, missing, bad)``: None, NaN and "" (or blanks) are missing; anything
    else that does not parse as a finite number ("abc", "inf", [1]) is bad."""
    import pandas as pd

    series = _series(values)
    if series.dtype.kind in "iufb":
        numbers = series.to_numpy(np.float64, na_value=np.nan)
        return numbers, np.isnan(numbers), np.isinf(numbers)
    missing = series.isna().to_numpy()
    if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        text = series.str.strip()
    else:  # mixed Python values: strip the strings, keep the rest for to_numeric to judge
        text = series.map(lambda v: v.strip() if isinstance(v, str) else v)
    missing |= (text == "").to_numpy()
    numbers = pd.to_numeric(text.where(~missing, np.nan), errors="coerce").to_numpy(np.float64, na_value=np.nan)
    return numbers, missing, ~missing & ~np.isfinite(numbers)


def _series(values: Any):
    import pandas as pd

    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    if isinstance(values, np.ndarray):
        return pd.Series(values)
    if callable(getattr(values, "to_pandas", None)):  # pyarrow arrays: typed, no Python objects
        return values.to_pandas().reset_index(drop=True)
    return pd.Series(list(values))


def _float_strings(numbers: np.ndarray, missing: np.ndarray) -> np.ndarray:
    safe = np.where(missing, 0.0, numbers)
    whole = (safe == np.floor(safe)) & (np.abs(safe) < 2.0**63)
    out = np.empty(len(numbers), dtype=object)
    out[whole] = safe[whole].astype(np.int64).astype(str)
    out[~whole] = [repr(float(v)) for v in safe[~whole]]
    return out


def _one_string(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"  # as Spark casts a boolean to string
    if isinstance(value, (float, np.floating)):
        return _float_strings(np.array([float(value)]), np.array([False]))[0]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bad_rows(name: str, values: Any, bad: np.ndarray) -> DataError:
    rows = np.flatnonzero(bad)
    series = _series(values)
    quoted = ", ".join(f"row {i}: {_quote(series.iloc[i])}" for i in rows[:_QUOTED])
    return DataError(
        "DATA_BAD_ROWS",
        f"numeric field {name} holds {len(rows)} value(s) that are not finite numbers ({quoted}); "
        "fix the input, or set such rows aside with validate_columns() before encoding",
        name,
    )


def _check_field(field: Mapping[str, Any], position: int) -> Dict[str, Any]:
    if not isinstance(field, Mapping) or not isinstance(field.get("name"), str) or not field.get("name"):
        raise _invalid(f"fields[{position}] must be an object with a non-empty string 'name'")
    name, kind = field["name"], field.get("kind")
    if kind == CATEGORICAL:
        vocab = field.get("vocab")
        if not isinstance(vocab, (list, tuple)) or not all(isinstance(v, str) and v for v in vocab):
            raise _invalid(f"field {name}: 'vocab' must be a list of non-empty strings")
        if len(set(vocab)) != len(vocab):
            raise _invalid(f"field {name}: 'vocab' repeats a value")
        out = {"name": name, "kind": kind, "vocab": list(vocab)}
        if "max_length" in field or "long_values" in field:
            length, policy = field.get("max_length"), field.get("long_values")
            if isinstance(length, bool) or not isinstance(length, int) or length < 1 or policy not in LONG_VALUES:
                raise _invalid(f"field {name}: 'max_length' must be a whole number >= 1 and 'long_values' one of {', '.join(LONG_VALUES)}")
            out.update({"max_length": length, "long_values": policy})
        return out
    if kind == NUMERIC:
        boundaries = field.get("boundaries")
        if not isinstance(boundaries, (list, tuple)) or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in boundaries):
            raise _invalid(f"field {name}: 'boundaries' must be a list of numbers")
        values = [float(b) for b in boundaries]
        if not all(np.isfinite(values)) or any(b >= a for a, b in zip(values[1:], values)):
            raise _invalid(f"field {name}: 'boundaries' must be finite and strictly increasing, got {values[:6]}...")
        return {"name": name, "kind": kind, "boundaries": values}
    raise _invalid(f"field {name}: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")


def _offsets(sizes: Sequence[int]) -> List[int]:
    return [int(v) for v in np.concatenate([[0], np.cumsum(sizes)[:-1]])] if sizes else []


def _invalid(message: str) -> DataError:
    return DataError("DATA_FEATURE_INDEX_INVALID", f"feature index: {message}")
