"""Seeded Criteo-like click logs and scoring candidates (numpy/pandas only).

Rows have the Criteo display-ads layout: ``label``, 13 numeric count fields ``I1..I13`` (heavy
tailed, some often null) and 26 categorical fields ``C1..C26`` of 8-hex-digit strings, whose
cardinalities follow Criteo's (compressed to at most ``max_cardinality``) and whose values have
Zipf frequencies. Labels come from a hidden logistic model: per-value effects, numeric effects,
and pairwise interactions of :data:`HIDDEN_CROSSES` that no sum of per-field effects captures,
so a model with those crosses (or a deep part) beats one without, and AUC is learnable.

The hidden model (the "world") depends on the seed and the world settings only; rows come from
other random streams, so training rows and candidates of the same seed share one world.
"""

from __future__ import annotations

import datetime
from typing import Dict, Sequence

import numpy as np

from sparkml_tf.io.partitions import parse_day

NUMERIC_FIELDS = tuple(f"I{i}" for i in range(1, 14))
CATEGORICAL_FIELDS = tuple(f"C{i}" for i in range(1, 27))
COLUMNS = ("label",) + NUMERIC_FIELDS + CATEGORICAL_FIELDS
# Pairs whose interaction drives the hidden labels: declare them as crosses to learn them.
HIDDEN_CROSSES = (("C1", "C2"), ("C5", "C8"), ("C6", "C14"))
# Candidates: the first fields describe the request (shared by its ads), the rest the ad.
CONTEXT_FIELDS = NUMERIC_FIELDS[:6] + CATEGORICAL_FIELDS[:13]
# Keyword arguments of the hidden model, shared by generate_ctr and generate_candidates.
WORLD_PARAMETERS = ("seed", "max_cardinality", "zipf_exponent", "base_ctr", "main_strength", "cross_strength", "numeric_strength")
# Values written into numeric fields of malformed candidate rows.
MALFORMED_VALUES = ("abc", "1.2.3", "n/a?", "[3]", "true", "12e")

# Distinct values of C1..C26 in the Criteo Kaggle training set; compressed as c ** k with k so
# that the largest becomes max_cardinality: the ordering and spread survive, the size does not.
_CRITEO_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)  # fmt: skip
# Fraction of nulls per field, as in Criteo (I12 and C22 are mostly empty).
_NUMERIC_NULLS = (0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.0, 0.04, 0.45, 0.04, 0.76, 0.22)
_CATEGORICAL_NULLS = (0, 0, 0.03, 0.03, 0, 0.12, 0, 0, 0, 0, 0, 0.03, 0, 0, 0, 0.03, 0, 0, 0.44, 0.44, 0.03, 0.76, 0, 0.03, 0.44, 0.44)
_CALIBRATION_ROWS = 20_000


class CtrWorld:
    """The hidden data-generating model: value tables, effects, and the calibrated bias."""

    def __init__(
        self,
        seed: int = 0,
        max_cardinality: int = 5000,
        zipf_exponent: float = 1.1,
        base_ctr: float = 0.25,
        main_strength: float = 0.5,
        cross_strength: float = 1.0,
        numeric_strength: float = 0.3,
    ):
        if max_cardinality < 2:
            raise ValueError(f"max_cardinality must be >= 2, got {max_cardinality}")
        if not 0.0 < base_ctr < 1.0:
            raise ValueError(f"base_ctr must be in (0, 1), got {base_ctr}")
        rng = np.random.default_rng([seed, 0])
        power = np.log(max_cardinality) / np.log(max(_CRITEO_CARDINALITIES))
        self.cardinalities = [max(2, int(round(c**power))) for c in _CRITEO_CARDINALITIES]
        self.vocab: Dict[str, np.ndarray] = {}
        self.probabilities: Dict[str, np.ndarray] = {}
        self.effects: Dict[str, np.ndarray] = {}
        for k, (name, size) in enumerate(zip(CATEGORICAL_FIELDS, self.cardinalities)):
            codes = np.unique(rng.integers(0, 2**32, 2 * size + 16, dtype=np.uint64))
            self.vocab[name] = np.char.mod("%08x", rng.permutation(codes)[:size]).astype(object)
            freq = np.arange(1, size + 1, dtype=np.float64) ** -zipf_exponent
            self.probabilities[name] = freq / freq.sum()
            # A third of the fields carry no signal, as many Criteo fields barely do.
            scale = 0.0 if k % 3 == 2 else main_strength * rng.uniform(0.3, 1.0)
            self.effects[name] = rng.normal(0.0, scale, size) if scale else np.zeros(size)
        self.cross_effects = {
            pair: rng.normal(0.0, cross_strength, (self.cardinalities[_c(pair[0])], self.cardinalities[_c(pair[1])])) for pair in HIDDEN_CROSSES
        }
        self.count_mu = rng.uniform(0.0, 3.0, len(NUMERIC_FIELDS))
        self.count_sigma = rng.uniform(0.5, 1.5, len(NUMERIC_FIELDS))
        self.numeric_effects = rng.normal(0.0, numeric_strength, len(NUMERIC_FIELDS))
        self.missing_effects = rng.normal(0.0, numeric_strength / 2, len(NUMERIC_FIELDS))
        calibration = self.sample(_CALIBRATION_ROWS, np.random.default_rng([seed, 1]))
        self._numeric_center = np.array([np.nanmean(np.log1p(calibration[n])) for n in NUMERIC_FIELDS])
        self._numeric_scale = np.array([np.nanstd(np.log1p(calibration[n])) + 1e-6 for n in NUMERIC_FIELDS])
        self.bias = 0.0
        self.bias = _calibrate(self.logits(calibration), base_ctr)

    def sample(self, num_rows: int, rng: np.random.Generator, fields: Sequence[str] = NUMERIC_FIELDS + CATEGORICAL_FIELDS) -> Dict[str, np.ndarray]:
        """Value codes of ``fields``: numeric as float64 counts (NaN = null), categorical as int
        codes into ``vocab`` (-1 = null)."""
        columns: Dict[str, np.ndarray] = {}
        for name in fields:
            if name in NUMERIC_FIELDS:
                j = NUMERIC_FIELDS.index(name)
                counts = rng.poisson(rng.lognormal(self.count_mu[j], self.count_sigma[j], num_rows)).astype(np.float64)
                counts[rng.random(num_rows) < _NUMERIC_NULLS[j]] = np.nan
                columns[name] = counts
            else:
                k = _c(name)
                codes = rng.choice(self.cardinalities[k], num_rows, p=self.probabilities[name])
                codes[rng.random(num_rows) < _CATEGORICAL_NULLS[k]] = -1
                columns[name] = codes
        return columns

    def logits(self, codes: Dict[str, np.ndarray]) -> np.ndarray:
        """The hidden model's click logit of each row (codes as from :meth:`sample`)."""
        size = len(codes[NUMERIC_FIELDS[0]])
        logit = np.full(size, self.bias)
        for name in CATEGORICAL_FIELDS:
            values = codes[name]
            logit += np.where(values >= 0, self.effects[name][np.maximum(values, 0)], 0.0)
        for (a, b), table in self.cross_effects.items():
            known = (codes[a] >= 0) & (codes[b] >= 0)
            logit += np.where(known, table[np.maximum(codes[a], 0), np.maximum(codes[b], 0)], 0.0)
        for j, name in enumerate(NUMERIC_FIELDS):
            x = codes[name]
            standard = (np.log1p(np.nan_to_num(x)) - self._numeric_center[j]) / self._numeric_scale[j]
            logit += np.where(np.isnan(x), self.missing_effects[j], self.numeric_effects[j] * standard)
        return logit

    def strings(self, name: str, codes: np.ndarray) -> np.ndarray:
        """Categorical codes as Criteo-like strings (None for null)."""
        out = self.vocab[name][np.maximum(codes, 0)].copy()
        out[codes < 0] = None
        return out


def generate_ctr(
    num_rows: int = 100_000,
    seed: int = 0,
    max_cardinality: int = 5000,
    zipf_exponent: float = 1.1,
    base_ctr: float = 0.25,
    main_strength: float = 0.5,
    cross_strength: float = 1.0,
    numeric_strength: float = 0.3,
    with_probability: bool = False,
):
    """A pandas DataFrame ``label`` (int 0/1), ``I1..I13`` (float64, NaN = null), ``C1..C26``
    (8-hex-digit strings or None); with ``with_probability`` also the hidden ``probability``."""
    import pandas as pd

    if num_rows < 1:
        raise ValueError(f"num_rows must be >= 1, got {num_rows}")
    world = CtrWorld(seed, max_cardinality, zipf_exponent, base_ctr, main_strength, cross_strength, numeric_strength)
    rng = np.random.default_rng([seed, 2])
    codes = world.sample(num_rows, rng)
    probability = _sigmoid(world.logits(codes))
    data = {"label": (rng.random(num_rows) < probability).astype(np.int32)}
    data.update({name: codes[name] for name in NUMERIC_FIELDS})
    data.update({name: world.strings(name, codes[name]) for name in CATEGORICAL_FIELDS})
    if with_probability:
        data["probability"] = probability
    return pd.DataFrame(data)


def generate_candidates(
    dates: Sequence[str],
    requests_per_date: int = 100,
    ads_per_request: int = 100,
    num_ads: int = 1000,
    malformed_fraction: float = 0.0,
    seed: int = 0,
    max_cardinality: int = 5000,
    zipf_exponent: float = 1.1,
    base_ctr: float = 0.25,
    main_strength: float = 0.5,
    cross_strength: float = 1.0,
    numeric_strength: float = 0.3,
    with_probability: bool = False,
):
    """Scoring candidates: for each date, ``requests_per_date`` requests x ``ads_per_request`` ads.

    Columns ``date`` (YYYY-MM-DD), ``request_id``, ``ad_id``, ``I1..I13``, ``C1..C26`` (no label).
    Request fields (:data:`CONTEXT_FIELDS`) are shared by a request's rows; the others come from
    an ad catalogue of ``num_ads`` ads. With ``malformed_fraction`` > 0 that fraction of rows get
    a non-number (:data:`MALFORMED_VALUES`) in one numeric field, and the numeric columns are
    strings (numbers written as integers) so such values can exist.
    """
    import pandas as pd

    days = [parse_day(d) for d in dates]
    if requests_per_date < 1 or ads_per_request < 1:
        raise ValueError(f"requests_per_date and ads_per_request must be >= 1, got {requests_per_date}, {ads_per_request}")
    if not 1 <= ads_per_request <= num_ads:
        raise ValueError(f"ads_per_request ({ads_per_request}) must be between 1 and num_ads ({num_ads})")
    if not 0.0 <= malformed_fraction < 1.0:
        raise ValueError(f"malformed_fraction must be in [0, 1), got {malformed_fraction}")
    world = CtrWorld(seed, max_cardinality, zipf_exponent, base_ctr, main_strength, cross_strength, numeric_strength)
    ad_fields = [n for n in NUMERIC_FIELDS + CATEGORICAL_FIELDS if n not in CONTEXT_FIELDS]
    catalogue = world.sample(num_ads, np.random.default_rng([seed, 3]), ad_fields)
    frames = []
    for day in days:
        rng = np.random.default_rng([seed, 4, datetime.date.fromisoformat(day).toordinal()])
        context = world.sample(requests_per_date, rng, CONTEXT_FIELDS)
        request = np.repeat(np.arange(requests_per_date), ads_per_request)
        ads = np.argpartition(rng.random((requests_per_date, num_ads)), ads_per_request - 1, axis=1)[:, :ads_per_request].ravel()
        codes = {n: context[n][request] for n in CONTEXT_FIELDS}
        codes.update({n: catalogue[n][ads] for n in ad_fields})
        data = {
            "date": np.full(len(request), day, dtype=object),
            "request_id": np.char.add(f"{day.replace('-', '')}-", np.char.zfill(request.astype(str), 6)).astype(object),
            "ad_id": np.char.add("ad-", np.char.zfill(ads.astype(str), 6)).astype(object),
        }
        if malformed_fraction > 0:
            data.update(_malformed_numeric(codes, malformed_fraction, rng))
        else:
            data.update({n: codes[n] for n in NUMERIC_FIELDS})
        data.update({n: world.strings(n, codes[n]) for n in CATEGORICAL_FIELDS})
        if with_probability:
            data["probability"] = _sigmoid(world.logits(codes))
        frames.append(pd.DataFrame(data))
    return pd.concat(frames, ignore_index=True)


def write_criteo_tsv(frame, path: str) -> int:
    """Write ``frame`` (``label``, ``I1..I13``, ``C1..C26``) in the Criteo TSV layout: no header,
    tab separated, numbers as integers, nulls as empty fields. ``path`` may be a URI; a name
    ending in ``.gz`` is gzipped. Returns the number of lines."""
    import pandas as pd

    from sparkml_tf.io.filesystems import resolve

    out = pd.DataFrame({"label": frame["label"].astype(np.int64)})
    for name in NUMERIC_FIELDS:
        out[name] = pd.to_numeric(frame[name]).round().astype("Int64")
    for name in CATEGORICAL_FIELDS:
        out[name] = frame[name]
    text = out.to_csv(sep="\t", header=False, index=False, na_rep="", lineterminator="\n")
    filesystem, local = resolve(path)
    parent = local.rsplit("/", 1)[0]
    filesystem.create_dir(parent, recursive=True)
    with filesystem.open_output_stream(local) as f:  # compression detected from the extension
        f.write(text.encode("utf-8"))
    return len(out)


def candidates_arrow_schema(malformed: bool):
    """The Arrow schema of a date's candidates file (numeric columns are strings when ``malformed``)."""
    import pyarrow as pa

    numeric = pa.string() if malformed else pa.float64()
    fields = [("request_id", pa.string()), ("ad_id", pa.string())]
    fields += [(n, numeric) for n in NUMERIC_FIELDS] + [(n, pa.string()) for n in CATEGORICAL_FIELDS]
    return pa.schema(fields)


def _malformed_numeric(codes: Dict[str, np.ndarray], fraction: float, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    size = len(codes[NUMERIC_FIELDS[0]])
    columns: Dict[str, np.ndarray] = {}
    for name in NUMERIC_FIELDS:
        values = codes[name]
        text = np.where(np.isnan(values), "", np.nan_to_num(values).astype(np.int64).astype(str)).astype(object)
        text[np.isnan(values)] = None
        columns[name] = text
    bad_rows = np.flatnonzero(rng.random(size) < fraction)
    bad_fields = rng.integers(0, len(NUMERIC_FIELDS), len(bad_rows))
    bad_values = rng.integers(0, len(MALFORMED_VALUES), len(bad_rows))
    for row, field, value in zip(bad_rows, bad_fields, bad_values):
        columns[NUMERIC_FIELDS[field]][row] = MALFORMED_VALUES[value]
    return columns


def _calibrate(logits: np.ndarray, target: float) -> float:
    """The bias making the mean click probability ``target`` (bisection; the mean is monotone)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        middle = (low + high) / 2
        if _sigmoid(logits + middle).mean() < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _c(name: str) -> int:
    return CATEGORICAL_FIELDS.index(name)


__all__ = [
    "COLUMNS", "NUMERIC_FIELDS", "CATEGORICAL_FIELDS", "HIDDEN_CROSSES", "CONTEXT_FIELDS", "MALFORMED_VALUES", "WORLD_PARAMETERS",
    "CtrWorld", "generate_ctr", "generate_candidates", "write_criteo_tsv", "parse_day",
]  # fmt: skip
