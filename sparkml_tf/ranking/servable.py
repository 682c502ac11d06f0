"""One loaded CTR model version, ready to take traffic: its signature checked, its model call
made as cheap as TensorFlow allows, and warmed up.

Why not call ``loaded.signatures["serving_default"](**inputs)``: that public path converts and
validates its keyword arguments in Python on every call, about 0.3 ms for three [100, k] numpy
inputs on a 2-core machine, a third of a 1 ms latency budget. The signature's underlying
function (``ConcreteFunction._inference_function``, an ``AtomicFunction``) runs the same graph
from three tensors and the variable handles in about 0.06 ms. That is a private TensorFlow
attribute, so it is used only after it has given the same probabilities as the public call on
the warm-up batch; otherwise (a TensorFlow that renamed it, a signature shaped differently) the
public call serves.

With ``xla`` the model call is a ``tf.function(jit_compile=True)`` over the restored signature.
XLA compiles one program per input shape (about 0.1 s each), so batches are padded up to the
nearest of ``batch_sizes`` (larger ones are cut into chunks of the largest) and every size is
compiled during warm-up, before the version takes traffic.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from sparkml_tf.errors import DataError
from sparkml_tf.ranking.layout import export_feature_index

LOGGER = logging.getLogger(__name__)
INPUTS = (("deep_ids", np.int64), ("wide_ids", np.int64), ("dense", np.float32))
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's own cap on warm-up records


@dataclass
class Servable:
    """A loaded version. Immutable once built; :class:`~sparkml_tf.ranking.scorer.Scorer` swaps
    whole instances, so a request holding one never sees a half-switched model."""

    version: int
    path: str
    feature_index: Any
    encoder: Any  # the feature index's Encoder
    xla: bool
    fast_call: bool  # True: the signature's underlying function; False: the public signature call
    batch_sizes: Tuple[int, ...]
    load_seconds: float = 0.0
    warmup_seconds: float = 0.0
    warmup_records: int = 0
    widths: Tuple[int, int, int] = (0, 0, 0)  # num_deep, num_wide, num_dense
    id_limits: Tuple[int, int] = (0, 0)  # deep_size, wide_size
    _predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] = field(default=None, repr=False)
    _keep: Any = field(default=None, repr=False)  # the loaded SavedModel: owns the variables the call reads

    def predict(self, deep_ids: np.ndarray, wide_ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """Probabilities float32 [B] for already encoded, already checked numpy inputs."""
        n = deep_ids.shape[0]
        if n == 0:
            return np.zeros(0, np.float32)
        if not self.xla:
            return self._predict(deep_ids, wide_ids, dense)
        largest = self.batch_sizes[-1]
        if n > largest:
            return np.concatenate([self.predict(deep_ids[i : i + largest], wide_ids[i : i + largest], dense[i : i + largest]) for i in range(0, n, largest)])
        size = self.batch_sizes[bisect.bisect_left(self.batch_sizes, n)]
        if size == n:
            return self._predict(deep_ids, wide_ids, dense)
        # Padding rows are zeros: id 0 is a valid row of every embedding table.
        padded = [np.zeros((size, a.shape[1]), a.dtype) for a in (deep_ids, wide_ids, dense)]
        for p, a in zip(padded, (deep_ids, wide_ids, dense)):
            p[:n] = a
        return self._predict(*padded)[:n]


def load_servable(path: str, version: int, xla: bool = False, batch_sizes: Sequence[int] = (1, 100), warmup: bool = True) -> Servable:
    """Load ``<export_dir>/<version>`` (``path``), check it against the contract, build its model
    call and warm it up. Raises :class:`~sparkml_tf.errors.DataError` (``MODEL_SIGNATURE_MISMATCH``,
    ``MODEL_BAD_EXPORT``) for a version that cannot serve."""
    import tensorflow as tf

    from sparkml_tf.ranking.features.feature_index import Encoder, FeatureIndex

    start = time.perf_counter()
    index_path = export_feature_index(path)
    if not tf.io.gfile.exists(index_path):
        raise DataError(
            "MODEL_BAD_EXPORT", f"the version has no {index_path}, which the scorer needs to encode raw rows; export it with export_ctr_model", path
        )
    feature_index = FeatureIndex.load(index_path)
    loaded = tf.saved_model.load(path)
    if "serving_default" not in loaded.signatures:
        raise DataError(
            "MODEL_SIGNATURE_MISMATCH",
            f"the SavedModel has no 'serving_default' signature (it has {sorted(loaded.signatures)}); export it with export_ctr_model",
            path,
        )
    signature = loaded.signatures["serving_default"]
    widths = {"deep_ids": feature_index.num_deep, "wide_ids": feature_index.num_wide, "dense": feature_index.num_dense}
    check_signature(signature, widths, path)
    sizes = tuple(sorted(set(batch_sizes)))  # checked by the Scorer

    public = make_public_call(signature)
    target = jit_wrapper(signature, widths) if xla else signature
    fallback = make_public_call(target) if xla else public
    fast = make_fast_call(target)
    servable = Servable(version, path, feature_index, Encoder(feature_index), xla, fast is not None, sizes, _predict=fast or fallback, _keep=(loaded, target))
    servable.widths = (feature_index.num_deep, feature_index.num_wide, feature_index.num_dense)
    servable.id_limits = (feature_index.deep_size, feature_index.wide_size)
    servable.load_seconds = time.perf_counter() - start

    start = time.perf_counter()
    requests = read_warmup_requests(f"{path.rstrip('/')}/{WARMUP_FILE}", path) if warmup else []
    probe = requests[0] if requests else synthetic_batch(feature_index, min(sizes[-1], 8))
    if fast is not None:
        problem = fast_call_problem(servable, public, probe)
        if problem:
            LOGGER.warning("model version %s: the direct function call is unusable (%s); serving through the signature call", version, problem)
            servable.fast_call, servable._predict = False, fallback
    if warmup:
        for batch in requests:
            servable.predict(*batch)
        for size in sizes:  # every batch shape the scorer will run (with XLA: every compiled program)
            servable.predict(*synthetic_batch(feature_index, size))
        servable.encoder.encode_rows([{name: None for name in feature_index.field_names}] * min(sizes[-1], 8))
    servable.warmup_records = len(requests)
    servable.warmup_seconds = time.perf_counter() - start
    return servable


def fast_call_problem(servable: Servable, public: Callable, probe) -> Optional[str]:
    """Why the servable's direct call cannot stand in for the public signature call, or None."""
    expected = public(*probe)
    try:
        got = servable.predict(*probe)
    except Exception as e:  # a TensorFlow whose private function takes its inputs differently
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
        return f"its probabilities differ from the signature's (max |diff| {float(np.max(np.abs(got - expected))) if got.shape == expected.shape else 'shape'})"
    return None


def check_signature(signature, widths: Dict[str, int], path: str) -> None:
    """The contract: deep_ids int64, wide_ids int64, dense float32, each [None, width], and a
    ``probability`` output."""
    _, inputs = signature.structured_input_signature
    problems = []
    for name, dtype in INPUTS:
        spec = inputs.get(name)
        if spec is None:
            problems.append(f"no input '{name}'")
        elif spec.dtype.as_numpy_dtype != dtype or spec.shape.rank != 2 or spec.shape[1] not in (None, widths[name]):
            problems.append(
                f"'{name}' is {spec.dtype.name}{spec.shape.as_list() if spec.shape.rank is not None else '[?]'}, "
                f"expected {np.dtype(dtype).name}[None, {widths[name]}]"
            )
    extra = sorted(set(inputs) - {name for name, _ in INPUTS})
    if extra:
        problems.append(f"unexpected input(s) {extra}")
    if "probability" not in signature.structured_outputs:
        problems.append(f"no 'probability' output (outputs: {sorted(signature.structured_outputs)})")
    if problems:
        raise DataError(
            "MODEL_SIGNATURE_MISMATCH",
            f"serving_default does not match the feature index in assets/feature_index.json: {'; '.join(problems)}; re-export the model with export_ctr_model",
            path,
        )


def make_public_call(fn) -> Callable:
    """The documented way: keyword inputs, a dict of outputs."""

    def predict(deep_ids, wide_ids, dense):
        return fn(deep_ids=deep_ids, wide_ids=wide_ids, dense=dense)["probability"].numpy()

    return predict


def make_fast_call(fn) -> Optional[Callable]:
    """The concrete function's underlying ``AtomicFunction`` called with flat tensors in the
    order of its flattened inputs, plus the captured variable handles; None when this TensorFlow
    does not have that shape (the caller falls back to the public call)."""
    import tensorflow as tf

    atomic = getattr(fn, "_inference_function", None)
    call_flat = getattr(atomic, "call_flat", None)
    if call_flat is None:
        return None
    args, kwargs = fn.structured_input_signature
    if args:
        names = [spec.name for spec in tf.nest.flatten(args)]
    else:
        names = list(sorted(kwargs))  # nest flattens a dict in sorted key order
    if sorted(names) != sorted(name for name, _ in INPUTS):
        return None
    outputs = tf.nest.flatten(fn.structured_outputs, expand_composites=True)
    output_names = sorted(fn.structured_outputs) if isinstance(fn.structured_outputs, dict) else None
    if output_names is None or len(outputs) != len(output_names):
        return None
    slot = output_names.index("probability")
    order = [dict(deep_ids=0, wide_ids=1, dense=2)[name] for name in names]
    captured = list(fn.captured_inputs)
    constant = tf.constant

    def predict(deep_ids, wide_ids, dense):
        given = (deep_ids, wide_ids, dense)
        return call_flat(*[constant(given[i]) for i in order], *captured)[slot].numpy()

    return predict


def jit_wrapper(signature, widths: Dict[str, int]):
    """A concrete ``tf.function(jit_compile=True)`` over the restored signature, traced once for
    [None, width] inputs; XLA then compiles one program per batch size actually seen."""
    import tensorflow as tf

    @tf.function(jit_compile=True, autograph=False)
    def jit_predict(deep_ids, wide_ids, dense):
        outputs = signature(deep_ids=deep_ids, wide_ids=wide_ids, dense=dense)
        return {"probability": outputs["probability"]}

    specs = [tf.TensorSpec([None, widths[name]], dtype, name=name) for name, dtype in INPUTS]
    return jit_predict.get_concrete_function(*specs)


def synthetic_batch(feature_index, size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``size`` rows with every feature missing: each feature's id 0 (its offset), dense 0."""
    deep = np.broadcast_to(np.asarray(feature_index.deep_offsets, np.int64), (size, feature_index.num_deep)).copy()
    wide = np.broadcast_to(np.asarray(feature_index.wide_offsets, np.int64), (size, feature_index.num_wide)).copy()
    return deep, wide, np.zeros((size, feature_index.num_dense), np.float32)


def read_warmup_requests(file: str, path: str) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The ``PredictionLog`` records of TF Serving's warm-up file as model inputs (empty when the
    file is absent). Needs ``tensorflow-serving-api`` (the ``serving`` extra) to parse them."""
    import tensorflow as tf

    if not tf.io.gfile.exists(file):
        LOGGER.info("model %s has no %s: warming up with synthetic batches only", path, WARMUP_FILE)
        return []
    try:
        from tensorflow_serving.apis import prediction_log_pb2
    except ImportError:
        LOGGER.warning(
            "tensorflow-serving-api is not installed, so %s/%s is not replayed (install sparkml-tf[serving]); warming up with synthetic batches only",
            path,
            WARMUP_FILE,
        )
        return []
    batches = []
    for record in tf.data.TFRecordDataset(file).take(MAX_WARMUP_RECORDS):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        inputs = log.predict_log.request.inputs
        missing = [name for name, _ in INPUTS if name not in inputs]
        if missing:
            raise DataError(
                "MODEL_BAD_EXPORT",
                f"a warm-up request lacks input(s) {missing}; its PredictionLog must carry deep_ids, wide_ids and dense (re-export with export_ctr_model)",
                file,
            )
        batches.append(tuple(np.asarray(tf.make_ndarray(inputs[name]), dtype) for name, dtype in INPUTS))
    return batches
