"""The fast path of :meth:`sparkml_tf.ranking.features.feature_index.Encoder.encode_rows` (online rows).

The general path builds a pandas Series per field, which costs about 75 us a field: 7-8 ms for
100 candidates of 60 fields, far above a 2 ms budget for raw rows to scores. Online rows almost always hold plain ``str``/``None`` categorical values and
``float``/``int``/``None`` numeric values; for those, a dict lookup per categorical value and one
numpy conversion for all numeric fields give the same ids in a fraction of the time. Any other
value (bytes, numpy scalars, numbers in a categorical field, strings in a numeric field, an
infinite number) sends the whole batch to ``Encoder.encode_rows``, which defines the semantics
(and raises ``DATA_BAD_ROWS`` for malformed values); tests compare the two on such rows.
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter
from typing import Any, Mapping, Sequence

import numpy as np

from sparkml_tf.ranking.features.kinds import CATEGORICAL, cross_mix, shortener

_CATEGORY_TYPES = frozenset({str, type(None)})
_NUMBER_TYPES = frozenset({float, int, type(None)})


class PlainRowEncoder:
    """``try_encode(rows)``: the general encoding of plain rows, or None for any other value."""

    def __init__(self, encoder: Any):
        index = encoder.index
        self._cross_mix = cross_mix
        names = index.field_names
        self._all = itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
        self._names = names
        kinds = [f["kind"] for f in index.fields]
        self._categorical = [j for j, kind in enumerate(kinds) if kind == CATEGORICAL]
        self._numeric = [j for j, kind in enumerate(kinds) if kind != CATEGORICAL]
        self._lookups = [{value: i + 1 for i, value in enumerate(index.fields[j]["vocab"])} for j in self._categorical]
        # Fields whose vocabulary holds shortened long values: an unknown value over the limit is
        # shortened and looked up again (other fields: a long value is unknown either way).
        self._shorten = [shortener(index.fields[j]) for j in self._categorical]
        self._boundaries = [np.asarray(index.fields[j]["boundaries"], np.float64) for j in self._numeric]
        position = {name: j for j, name in enumerate(names)}
        # Crosses grouped by arity: one cross_mix call over all crosses of a group ([B * K] ids).
        self._cross_groups = []
        for arity in sorted({len(c["fields"]) for c in index.crosses}):
            members = [(k, c) for k, c in enumerate(index.crosses) if len(c["fields"]) == arity]
            slots = np.array([index.num_deep + k for k, _ in members])
            fields = [np.array([position[c["fields"][i]] for _, c in members]) for i in range(arity)]
            buckets = np.array([c["buckets"] for _, c in members], np.uint64)
            self._cross_groups.append((slots, fields, buckets))
        self._deep_offsets = np.asarray(index.deep_offsets, np.int64)
        self._wide_offsets = np.asarray(index.wide_offsets, np.int64)
        self._num_deep, self._num_wide = index.num_deep, index.num_wide

    def try_encode(self, rows: Sequence[Mapping[str, Any]]):
        """The encoding, or None when a value needs the general encoder."""
        size = len(rows)
        try:
            columns = list(zip(*map(self._all, rows))) if size else [()] * len(self._names)
        except KeyError:  # a row lacks a field: absent keys are missing values
            columns = [[row.get(name) for row in rows] for name in self._names]
        local = np.zeros((size, self._num_deep), np.int64)
        if self._categorical:
            flat: list = []
            for j, lookup, shorten in zip(self._categorical, self._lookups, self._shorten):
                column = columns[j]
                if not _CATEGORY_TYPES.issuperset(map(type, column)):
                    return None
                # None, "" and unknown strings all get id 0 (missing / out of vocabulary).
                if shorten is None:
                    flat += map(lookup.get, column, repeat(0, size))
                else:
                    flat += [lookup.get(v, 0) or (lookup.get(shorten(v), 0) if v is not None else 0) for v in column]
            local[:, self._categorical] = np.array(flat, np.int64).reshape(len(self._categorical), size).T
        if self._numeric:
            numeric = [columns[j] for j in self._numeric]
            for column in numeric:
                if not _NUMBER_TYPES.issuperset(map(type, column)):
                    return None
            values = np.array(numeric, dtype=np.float64).T  # None -> NaN
            missing = np.isnan(values)
            if np.isinf(values).any():
                return None  # the general encoder reports the bad rows
            safe = np.where(missing, 0.0, values)
            for k, (j, boundaries) in enumerate(zip(self._numeric, self._boundaries)):
                local[:, j] = np.where(missing[:, k], 0, 1 + np.searchsorted(boundaries, safe[:, k], side="right"))
            dense = np.where(missing, 0.0, np.log1p(np.maximum(safe, 0.0))).astype(np.float32)
        else:
            dense = np.zeros((size, 0), np.float32)
        wide = np.empty((size, self._num_wide), np.int64)
        wide[:, : self._num_deep] = local
        for slots, fields, buckets in self._cross_groups:
            mixed = self._cross_mix([local[:, f].ravel() for f in fields]).reshape(size, len(slots))
            wide[:, slots] = (mixed % buckets).astype(np.int64)
        return {"deep_ids": local + self._deep_offsets, "wide_ids": wide + self._wide_offsets, "dense": dense}
