"""Low-latency, in-process CTR scoring from an export directory, with hot swap of new versions.

``Scorer(export_dir)`` serves the newest ``<export_dir>/<int>/`` SavedModel (the layout of
:func:`sparkml_tf.serving.export.export_ctr_model`, which TF Serving reads too). A background
thread polls ``export_dir``; when a higher version appears it is loaded, checked and warmed up in
that thread while requests keep going to the current version, then it replaces the current one
by a single reference assignment. A request reads that reference once, so it runs wholly on the
old or wholly on the new version, never waits on a load and never sees a half-loaded model.

Two ways to load a version:

* **Weights only** (``weight_swap=True``, the usual case of a retrained model). When the new
  version has the same program as the last version loaded in full (the same TensorFlow graph,
  signature and object graph: equal hashes in the SavedModel fingerprint, which TensorFlow
  computes here from ``saved_model.pb`` with function names normalised, weights left out) and
  its checkpoint holds every variable the model call reads with the same dtype and shape, the
  scorer reads just those tensors into new variables and runs them through the already traced,
  optimised (and with XLA compiled) function of that full load. It rebuilds no graph or Python
  object tree, so it holds the GIL only in short stretches: its thread spends ~15 ms of CPU (no
  C call over ~1 ms) against ~140 ms for a full load of the benchmark's model. The variables are
  the new version's own, so the old version's requests keep reading the old ones. The feature
  index is parsed only when its file differs from the serving one's. Cost: the version loaded in
  full stays in memory as long as later versions run its function, so one extra copy of the
  weights stays resident. Each full load (with ``weight_swap``) checks, before its version
  serves, that the function on copies of its own variables gives exactly its own scores; if not,
  later versions are loaded in full. (Checked then, inside the full load's own stall, and not by
  the first weights-only load after it, whose requests would meet ~50 ms of extra work.)
* **In full** (the first version, a changed program, changed variable shapes, or any problem on
  the weights-only path): ``tf.saved_model.load``, signature check, model call, warm-up. Restoring
  a SavedModel runs much Python and some long calls that hold the GIL, so requests that collide
  with it wait: measured swap p99 about 10 ms for 100 rows on 2 cores. ``load_switch_interval``
  shortens the waits that come from the interpreter's switching only.

The old version is dropped right after the switch and freed by reference counting once its last
in-flight request ends (a version loaded in full also leaves a few reference cycles that a
garbage collection frees later).

**Garbage collection.** With TensorFlow and a model loaded the interpreter tracks ~412k objects,
and a full collection walks all of them with the GIL held (0.24 s at best on 2 cores, up to
0.76 s on a busy machine): a request stalls for that long whenever the interpreter decides to
collect generation 2. With ``gc_freeze`` (the default) the first scorer of the process, once its
first version is loaded and warmed up, runs one collection and then ``gc.freeze()``: everything
alive then (TensorFlow's modules, the model) moves to the interpreter's permanent generation,
which collections skip, so a collection walks only objects made afterwards (about 150 per
weights-only load, 3,200 per full load: 0.4 ms). Later scorers and later versions are not
frozen. Reference counting still frees frozen objects; only cycles among them are never
collected: if the first version is replaced by a full load, its leftover cycles (~1,700 objects,
~6 MiB) stay. (Freezing after every full load instead would keep ~6 MiB per full load.) A later
version loaded in full also leaves cycles when it is replaced, in the oldest generation, which the
interpreter collects by itself once ~100k objects have survived into it: ~40 full loads here
(~4 MiB each meanwhile), then one collection (185 ms; the worst concurrent request 72 ms).
Collecting before each full load instead was measured and not kept: freeing one version's
graphs stalled concurrent requests ~50 ms every time (p99.9 of those requests 23 -> 51 ms).

A version that fails to load (bad signature, unreadable files, a warm-up error) is logged,
recorded in ``last_error`` and ``metrics()``, never retried, and the current version keeps
serving. A problem on the weights-only path is not a failure: the version is then loaded in full,
and only that load's error counts. Requests never raise because of a load.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from sparkml_tf.errors import ConfigError, DataError, SparkmlTfError
from sparkml_tf.serving.export import list_versions

LOGGER = logging.getLogger(__name__)
DEFAULT_BATCH_SIZES = (1, 16, 100, 256, 1024)
PROOF_ROWS = 100  # the most rows a weights-only load's warm-up runs (proof_rows)
CHECKPOINT = "variables/variables"  # a SavedModel's checkpoint prefix, inside its directory


class ServingError(SparkmlTfError):
    """The scorer cannot serve a request (closed) or a version could not be loaded."""


class Scorer:
    """Score raw CTR rows (or encoded ids) with the newest model version under ``export_dir``.

    Args:
      export_dir: directory (or URI TensorFlow can read) holding ``<version>/`` SavedModels.
      xla: compile the model call with XLA (``jit_compile=True``); batches are padded up to the
        nearest of ``batch_sizes``, each compiled during warm-up.
      poll_seconds: how often the background thread looks for a newer version; ``None`` or 0:
        no thread, call :meth:`refresh` yourself.
      warmup: replay ``assets.extra/tf_serving_warmup_requests`` and one batch of each of
        ``batch_sizes`` through a version loaded in full before it takes traffic; a version
        loaded by its weights runs one batch (:func:`proof_rows`), the function being warm.
      batch_sizes: the batch sizes requests will have (warm-up shapes; XLA's padding buckets).
      load_switch_interval: the interpreter's GIL switch interval (seconds) while a new version
        loads in the background; loading is mostly Python and would otherwise hold the GIL for
        the default 5 ms slices that requests wait behind. ``None`` leaves it alone.
      weight_swap: load a version whose program matches the last full load by its weights only
        (see the module doc); False: load every version in full.
      gc_freeze: after the first version is loaded, collect garbage once and ``gc.freeze()`` the
        heap, if no scorer of this process has done so yet, so that garbage collections triggered
        while serving skip TensorFlow's objects (see the module doc). False: leave the
        interpreter's collector alone.
      tf_threads: TensorFlow intra-op and inter-op threads for this process (``None``: its
        default, one per core). 1 is usually best for request serving: each model call runs on
        its caller's thread, with no hand-off to a pool whose threads went to sleep while the
        rows were encoded, and concurrency comes from request threads (measured on 2 cores: model
        call p50 0.81 ms against 0.91, raw rows 1.90 ms against 2.29). Only takes effect when the
        scorer is created before the process runs anything in TensorFlow; otherwise a warning.
    """

    def __init__(
        self,
        export_dir: str,
        xla: bool = False,
        poll_seconds: Optional[float] = 30.0,
        warmup: bool = True,
        batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
        load_switch_interval: Optional[float] = 0.0005,
        tf_threads: Optional[int] = None,
        weight_swap: bool = True,
        gc_freeze: bool = True,
    ):
        sizes = sorted({int(b) for b in batch_sizes}) if all(isinstance(b, int) and not isinstance(b, bool) for b in batch_sizes) else []
        if not sizes or sizes[0] < 1:
            raise ConfigError(
                "CONFIG_BAD_VALUE", f"batch_sizes must be positive whole numbers (the request batch sizes to warm up), got {list(batch_sizes)}", "batch_sizes"
            )
        if poll_seconds is not None and poll_seconds < 0:
            raise ConfigError("CONFIG_BAD_VALUE", f"poll_seconds must be >= 0 (0 or None: no poller, call refresh()), got {poll_seconds}", "poll_seconds")
        if load_switch_interval is not None and load_switch_interval <= 0:
            raise ConfigError(
                "CONFIG_BAD_VALUE",
                f"load_switch_interval must be > 0 seconds, or None to leave the interpreter's alone, got {load_switch_interval}",
                "load_switch_interval",
            )
        if tf_threads is not None and (not isinstance(tf_threads, int) or tf_threads < 1):
            raise ConfigError(
                "CONFIG_BAD_VALUE", f"tf_threads must be a positive whole number (or None: TensorFlow's default), got {tf_threads!r}", "tf_threads"
            )
        if tf_threads is not None:
            from sparkml_tf.spark.executor import configure_tf_threads

            if not configure_tf_threads(tf_threads):
                LOGGER.warning(
                    "TensorFlow already runs in this process, so tf_threads=%s cannot change its thread pools; "
                    "create the Scorer before anything else uses TensorFlow",
                    tf_threads,
                )
        self.export_dir = export_dir.rstrip("/")
        self.xla = bool(xla)
        self.poll_seconds = poll_seconds
        self.warmup = warmup
        self.batch_sizes = tuple(sizes)
        self.load_switch_interval = load_switch_interval
        self.weight_swap = bool(weight_swap)
        self.last_error: Optional[SparkmlTfError] = None
        self._failed: Dict[int, str] = {}
        self._counts = {"loads": 0, "weight_loads": 0, "failed_loads": 0, "swaps": 0}
        self._load_lock = threading.Lock()  # one load at a time; requests never take it
        self._stop = threading.Event()
        self._program: Optional[Program] = None  # what a weights-only load reuses; set with _servable
        self._index_digest: Optional[str] = None  # sha256 of the serving version's feature_index.json
        self._servable = self._load_initial()
        if gc_freeze:
            freeze_heap()
        self._thread: Optional[threading.Thread] = None
        if poll_seconds:
            self._thread = threading.Thread(target=self._poll, name=f"scorer-poll-{self.export_dir}", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ requests

    def score(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Click probabilities (float32 [len(rows)]) for raw feature rows (field name -> value,
        strings or numbers; missing keys, None, NaN and "" are missing values), encoded with the
        serving version's own feature index."""
        servable = self._current()
        if len(rows) == 0:
            return np.zeros(0, np.float32)
        encoded = servable.encoder.encode_rows(rows)
        return servable.predict(encoded["deep_ids"], encoded["wide_ids"], encoded["dense"])

    def score_ids(self, deep_ids, wide_ids, dense) -> np.ndarray:
        """Click probabilities for already encoded inputs (global ids, as ``Encoder.encode``
        returns them): deep_ids int [B, num_deep], wide_ids int [B, num_wide], dense float [B, num_dense]."""
        servable = self._current()
        arrays = (np.asarray(deep_ids, np.int64), np.asarray(wide_ids, np.int64), np.asarray(dense, np.float32))
        for name, array, width in zip(("deep_ids", "wide_ids", "dense"), arrays, servable.widths):
            if array.ndim != 2 or array.shape[1] != width or array.shape[0] != arrays[0].shape[0]:
                raise DataError(
                    "DATA_SCHEMA_MISMATCH",
                    f"{name} has shape {array.shape}, expected [{arrays[0].shape[0]}, {width}] (model version {servable.version}); "
                    "encode rows with its feature index or call score()",
                    servable.path,
                )
        for name, array, size in zip(("deep_ids", "wide_ids"), arrays, servable.id_limits):
            if array.size and (array.min() < 0 or array.max() >= size):
                raise DataError(
                    "DATA_BAD_ROWS",
                    f"{name} holds ids outside [0, {size}) of model version {servable.version}; ids must come from its feature index (Encoder.encode)",
                    servable.path,
                )
        return servable.predict(*arrays)

    def _current(self):
        servable = self._servable  # one read: the whole request runs on this version
        if servable is None:
            raise ServingError("SCORER_CLOSED", "the scorer is closed; create a new Scorer", self.export_dir)
        return servable

    # ------------------------------------------------------------------ versions

    @property
    def version(self) -> int:
        """The version now serving."""
        return self._current().version

    @property
    def feature_index(self):
        """The serving version's :class:`~sparkml_tf.ranking.features.feature_index.FeatureIndex`."""
        return self._current().feature_index

    def refresh(self) -> bool:
        """Load, warm up and switch to the newest version if it is newer than the serving one and
        has not failed before. Returns True when it switched. Never raises for a bad version:
        the error is logged and kept in ``last_error``."""
        with self._load_lock:
            current = self._current()
            candidates = [v for v in list_versions(self.export_dir) if v > current.version and v not in self._failed]
            if not candidates:
                return False
            loaded = self._try_load(max(candidates))
            if loaded is None:
                return False
            servable, self._program, self._index_digest = loaded
            self._servable = servable  # the switch: one reference assignment
            self._counts["swaps"] += 1
            LOGGER.info("now serving model version %s (was %s) from %s", servable.version, current.version, self.export_dir)
            return True

    def metrics(self) -> Dict[str, Any]:
        """Plain counters and the serving version's load facts, for logs and health checks."""
        servable = self._servable
        out: Dict[str, Any] = dict(self._counts)
        out["failed_versions"] = sorted(self._failed)
        out["last_error"] = self.last_error.format() if self.last_error else None
        if servable is not None:
            out.update(version=servable.version, path=servable.path, xla=servable.xla, fast_call=servable.fast_call,
                       loaded_by="weights" if isinstance(servable._keep, Weights) else "full",
                       load_seconds=servable.load_seconds, warmup_seconds=servable.warmup_seconds, warmup_records=servable.warmup_records)
        return out

    def _load_initial(self):
        versions = sorted(list_versions(self.export_dir), reverse=True)
        if not versions:
            raise DataError(
                "MODEL_NOT_FOUND",
                "no complete model version (a <version>/ directory holding a SavedModel) under the export directory; run the export stage or fix export_dir",
                self.export_dir,
            )
        first_error = None
        for version in versions:  # newest first; an older good version serves when the newest is broken
            loaded = self._try_load(version)
            if loaded is not None:
                servable, self._program, self._index_digest = loaded
                return servable
            first_error = first_error or self.last_error
        raise first_error

    def _try_load(self, version: int):
        """``(servable, program, feature index digest)`` of the version, or None when it failed
        (recorded). Touches nothing that requests read."""
        from sparkml_tf.ranking.servable import load_servable

        path = f"{self.export_dir}/{version}"
        try:
            with gil_switch_interval(self.load_switch_interval):
                loaded = self._try_load_weights(version, path) if self.weight_swap and self._program is not None else None
                if loaded is None:
                    servable = load_servable(path, version, self.xla, self.batch_sizes, self.warmup)
                    loaded = servable, checked_program(servable) if self.weight_swap else program_of(servable), index_digest(path)
        except Exception as e:
            error = e
            if not isinstance(e, SparkmlTfError):
                error = ServingError(
                    "MODEL_LOAD_FAILED",
                    f"loading the version failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); fix or remove it, then export a new version",
                    path,
                )
                error.__cause__ = e
            self._failed[version] = error.format()
            self._counts["failed_loads"] += 1
            self.last_error = error
            LOGGER.error("cannot serve model version %s: %s", version, error.format(), exc_info=e)
            return None
        servable = loaded[0]
        weights_only = isinstance(servable._keep, Weights)
        self._counts["loads"] += 1
        self._counts["weight_loads"] += weights_only
        LOGGER.info("loaded model version %s (%s) in %.2fs, warmed up in %.2fs (%d warm-up requests, xla=%s, direct call=%s)",
                    version, "weights only" if weights_only else "in full", servable.load_seconds, servable.warmup_seconds,
                    servable.warmup_records, servable.xla, servable.fast_call)
        return loaded

    def _try_load_weights(self, version: int, path: str):
        """The weights-only load, or None (logged) when the version needs a full load."""
        program = self._program
        try:
            fingerprint = program_fingerprint(path)
            if fingerprint != program.fingerprint:
                LOGGER.info("model version %s has another program than version %s (fingerprint %s, not %s): loading it in full",
                            version, program.servable.version, fingerprint, program.fingerprint)
                return None
            if not program.checked and not rebinding_checked(program):  # loaded in full with weight_swap=False: checked now
                self._program = None  # under the load lock; the next full load makes a new one
                return None
            digest = index_digest(path)
            current = self._servable
            index = (current.feature_index, current.encoder) if digest == self._index_digest else None
            return load_weights(program, path, version, self.batch_sizes, self.warmup, index), program, digest
        except Exception as e:  # never a failure of the version: the full load decides
            LOGGER.info("model version %s cannot be loaded by its weights only (%s: %s): loading it in full", version, type(e).__name__, e)
            return None

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception as e:  # listing export_dir failed (a flaky filesystem): keep serving, try again next poll
                self.last_error = (
                    e
                    if isinstance(e, SparkmlTfError)
                    else ServingError(
                        "MODEL_POLL_FAILED", f"looking for new versions failed ({type(e).__name__}: {e}); the current version keeps serving", self.export_dir
                    )
                )
                LOGGER.error("polling %s failed", self.export_dir, exc_info=e)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop the poller and release the model; later requests raise SCORER_CLOSED."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._load_lock:
            self._servable = None
            self._program = None

    def __enter__(self) -> "Scorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        servable = self._servable
        return f"Scorer({self.export_dir!r}, version={servable.version if servable else None}, xla={self.xla})"


_SWITCH_LOCK = threading.Lock()
_SWITCH_STATE = {"loads": 0, "saved": 0.0}


@contextmanager
def gil_switch_interval(seconds: Optional[float]) -> Iterator[None]:
    """Shorten the interpreter's GIL switch interval while any scorer of this process loads a
    version (the count makes overlapping loads restore the original value only once)."""
    if not seconds:
        yield
        return
    with _SWITCH_LOCK:
        if _SWITCH_STATE["loads"] == 0:
            _SWITCH_STATE["saved"] = sys.getswitchinterval()
        _SWITCH_STATE["loads"] += 1
        sys.setswitchinterval(min(seconds, _SWITCH_STATE["saved"]))
    try:
        yield
    finally:
        with _SWITCH_LOCK:
            _SWITCH_STATE["loads"] -= 1
            if _SWITCH_STATE["loads"] == 0:
                sys.setswitchinterval(_SWITCH_STATE["saved"])


# ---------------------------------------------------------------------- weights-only loads


@dataclass
class Program:
    """What a weights-only load reuses from a version loaded in full: its model call, already
    traced, optimised, warmed up (and with XLA compiled), and which checkpoint entry feeds each
    variable that call reads."""

    servable: Any  # the Servable loaded in full: keeps the SavedModel, its variables and the function alive
    fingerprint: Tuple[int, int, int]
    function: Any  # the concrete function the servable's direct call runs (the signature, or the XLA wrapper)
    variables: List[Any]  # its variables, in the order of function.captured_inputs
    keys: List[str]  # each one's checkpoint key
    checked: bool = False

    def rebinding_problem(self) -> Optional[str]:
        """Why the function cannot run on other variables, or None (then ``checked``): with copies
        of its own variables it must give exactly the scores it gives with them."""
        import tensorflow as tf

        from sparkml_tf.ranking.export import random_features

        copies = [tf.Variable(v.read_value(), trainable=False) for v in self.variables]
        call = rebound_call(self.function, [c.handle for c in copies])
        if call is None:
            return "the direct call cannot be built on other variables"
        features = random_features(self.servable.feature_index, min(self.servable.batch_sizes[-1], 32), seed=7)
        probe = tuple(features[name] for name in ("deep_ids", "wide_ids", "dense"))
        size = self.servable.batch_sizes[0] if self.servable.xla else len(probe[0])  # with XLA, a compiled size
        probe = tuple(a[:size] for a in probe)
        expected, got = self.servable._predict(*probe), call(*probe)
        if got.shape != expected.shape or not np.array_equal(got, expected):
            return "the function on copies of its variables gives other scores than on its own"
        self.checked = True
        return None


@dataclass
class Weights:
    """``Servable._keep`` of a version loaded by its weights: the program it runs, and its own
    variables (freed with it)."""

    program: Program
    variables: List[Any] = field(repr=False)


def program_fingerprint(path: str) -> Optional[Tuple[int, int, int]]:
    """The version's program, weights aside: the graph (function names normalised), signature and
    object-graph hashes of the SavedModel fingerprint, computed from its ``saved_model.pb`` (not
    read from ``fingerprint.pb``, which could be stale). None when this TensorFlow cannot compute
    it or there is no SavedModel; raises for an unreadable one."""
    try:
        from tensorflow.core.protobuf import fingerprint_pb2
        from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting
    except ImportError:
        return None
    proto = fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(path))
    hashes = (proto.graph_def_program_hash, proto.signature_def_hash, proto.saved_object_graph_hash)
    return hashes if proto.saved_model_checksum and all(hashes) else None


def index_digest(path: str) -> str:
    """sha256 of the version's feature_index.json, read in 1 MiB chunks (hashlib lets go of the
    GIL while it hashes a chunk), so that a weights-only load parses the index only when it changed."""
    import hashlib

    import tensorflow as tf

    from sparkml_tf.ranking.layout import export_feature_index

    digest = hashlib.sha256()
    with tf.io.gfile.GFile(export_feature_index(path), "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)
            time.sleep(0)


def program_of(servable) -> Optional[Program]:
    """The :class:`Program` of a servable loaded in full, or None (logged) when its versions cannot
    be loaded by weights: no direct call, no fingerprint, or a captured input that is not one of the
    SavedModel's checkpointed variables."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    if not servable.fast_call:
        LOGGER.info("model version %s serves through the signature call, so later versions are loaded in full", servable.version)
        return None
    loaded, function = servable._keep
    try:
        fingerprint = program_fingerprint(servable.path)
        reader = tf.train.load_checkpoint(f"{servable.path}/{CHECKPOINT}")
        graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        keys = checkpoint_keys(loaded, graph)
    except Exception as e:  # a layout this code does not know: every version loads in full, as before
        LOGGER.info("model version %s: cannot map its variables to its checkpoint (%s: %s); later versions are loaded in full",
                    servable.version, type(e).__name__, e)
        return None
    variables, names = [], []
    for handle in function.captured_inputs:
        found = keys.get(id(handle))
        if found is None:
            LOGGER.info("model version %s: its model call reads a tensor that is not a checkpointed variable; later versions are loaded in full",
                        servable.version)
            return None
        variables.append(found[0])
        names.append(found[1])
    if fingerprint is None:
        LOGGER.info("model version %s: this TensorFlow gives no SavedModel fingerprint; later versions are loaded in full", servable.version)
        return None
    return Program(servable, fingerprint, function, variables, names)


def checked_program(servable) -> Optional[Program]:
    """:func:`program_of` a version just loaded in full, with its function checked on other
    variables (:meth:`Program.rebinding_problem`) now, inside the full load's own stall, rather
    than by the first weights-only load after it (the check copies every variable and runs the
    model twice: ~50 ms that requests would meet in a swap otherwise free of it). None (logged)
    when later versions must load in full."""
    program = program_of(servable)
    if program is None:
        return None
    try:
        return program if rebinding_checked(program) else None
    except Exception as e:  # not a failure of the version: later versions load in full
        LOGGER.info("model version %s: its function could not be checked on other variables (%s: %s); later versions are loaded in full",
                    servable.version, type(e).__name__, e)
        return None


def rebinding_checked(program: Program) -> bool:
    """:meth:`Program.rebinding_problem`, with the problem logged: True when versions can be loaded
    by their weights through this program."""
    problem = program.rebinding_problem()
    if problem:
        LOGGER.warning("loading only the weights of a version is unusable with this TensorFlow (%s): loading versions in full", problem)
    return problem is None


def checkpoint_keys(loaded, graph) -> Dict[int, Tuple[Any, str]]:
    """id of each variable handle of the loaded SavedModel -> (variable, its checkpoint key),
    walking the checkpoint's object graph and the restored objects together by child name."""
    import tensorflow as tf

    out: Dict[int, Tuple[Any, str]] = {}
    seen = set()
    stack = [(0, loaded)]
    while stack:
        node_id, obj = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = graph.nodes[node_id]
        for attribute in node.attributes:
            if attribute.name == "VARIABLE_VALUE" and isinstance(obj, tf.Variable):
                out[id(obj.handle)] = (obj, attribute.checkpoint_key)
        if node.children:
            children = tf.train.TrackableView(obj).children(obj)
            stack.extend((child.node_id, children[child.local_name]) for child in node.children if child.local_name in children)
    return out


def rebound_call(function, handles: Sequence[Any]):
    """The direct model call of ``function`` (see :func:`~sparkml_tf.ranking.servable.make_fast_call`)
    reading ``handles`` instead of the variables it captured; None when there is none."""
    from sparkml_tf.ranking.servable import make_fast_call

    view = SimpleNamespace(
        _inference_function=getattr(function, "_inference_function", None),
        structured_input_signature=function.structured_input_signature,
        structured_outputs=function.structured_outputs,
        captured_inputs=list(handles),
    )
    return make_fast_call(view)


def load_weights(program: Program, path: str, version: int, batch_sizes: Tuple[int, ...], warmup: bool, index=None):
    """A Servable of the version at ``path`` that runs ``program``'s function on the version's own
    weights, read into new variables. ``index``: the serving ``(feature_index, encoder)`` when the
    version's feature_index.json is the same file; otherwise it is read. Raises when the version
    does not fit the program (missing checkpoint entries, other shapes, another signature)."""
    import tensorflow as tf

    from sparkml_tf.ranking.features.feature_index import Encoder, FeatureIndex
    from sparkml_tf.ranking.layout import export_feature_index
    from sparkml_tf.ranking.servable import Servable, check_signature, synthetic_batch

    start = time.perf_counter()
    new_index = index is None
    if new_index:
        feature_index = FeatureIndex.load(export_feature_index(path))
        index = feature_index, Encoder(feature_index)
    feature_index, encoder = index
    widths = {"deep_ids": feature_index.num_deep, "wide_ids": feature_index.num_wide, "dense": feature_index.num_dense}
    check_signature(program.servable._keep[0].signatures["serving_default"], widths, path)
    # One RestoreV2 op reads every tensor; TensorFlow runs it without the GIL.
    tensors = tf.raw_ops.RestoreV2(
        prefix=f"{path}/{CHECKPOINT}", tensor_names=program.keys, shape_and_slices=[""] * len(program.keys), dtypes=[v.dtype for v in program.variables]
    )
    variables = []
    for key, old, tensor in zip(program.keys, program.variables, tensors):
        if tensor.shape != old.shape:
            raise DataError("MODEL_SIGNATURE_MISMATCH", f"{key} is {tensor.shape}, not {old.shape} as in version {program.servable.version}", path)
        variables.append(tf.Variable(tensor, trainable=False))
        time.sleep(0)  # let request threads take the GIL between variables
    predict = rebound_call(program.function, [v.handle for v in variables])
    if predict is None:
        raise DataError("MODEL_BAD_EXPORT", "the direct model call cannot be built on this version's variables", path)
    template = program.servable
    servable = Servable(version, path, feature_index, encoder, template.xla, True, template.batch_sizes, _predict=predict, _keep=Weights(program, variables))
    servable.widths = (feature_index.num_deep, feature_index.num_wide, feature_index.num_dense)
    servable.id_limits = (feature_index.deep_size, feature_index.wide_size)
    servable.load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    if warmup:  # the function is warm already (every size): one batch runs the new variables and proves them
        size = proof_rows(batch_sizes)
        probabilities = servable.predict(*synthetic_batch(feature_index, size))
        if not np.all(np.isfinite(probabilities)):
            raise DataError("MODEL_BAD_EXPORT", f"the version's weights give non-finite probabilities on a batch of {size}", path)
        if new_index:
            encoder.encode_rows([{name: None for name in feature_index.field_names}] * min(batch_sizes[-1], 8))
    servable.warmup_seconds = time.perf_counter() - start
    return servable


def proof_rows(batch_sizes: Tuple[int, ...]) -> int:
    """Rows of the one batch that proves a weights-only load: the largest batch size up to
    ``PROOF_ROWS`` (else the smallest). Not one batch of each size as a full load runs: with
    TensorFlow on one thread (``tf_threads=1``) a request's model call waits for a concurrent one,
    and a warm-up batch of 1,024 rows held requests for ~10 ms (measured on 2 cores)."""
    fitting = [size for size in batch_sizes if size <= PROOF_ROWS]
    return fitting[-1] if fitting else batch_sizes[0]


# ---------------------------------------------------------------------- garbage collection

_FREEZE_LOCK = threading.Lock()
_FROZEN = {"by_scorer": False}


def freeze_heap() -> bool:
    """Once per process: collect garbage, then move every object alive to the interpreter's
    permanent generation (``gc.freeze()``), which later collections skip. True when this call
    did it."""
    with _FREEZE_LOCK:
        if _FROZEN["by_scorer"]:
            return False
        start = time.perf_counter()
        gc.collect()
        gc.freeze()
        _FROZEN["by_scorer"] = True
    LOGGER.info("froze %d objects out of garbage collection after %.2fs of collecting", gc.get_freeze_count(), time.perf_counter() - start)
    return True
