"""The console: what a run prints, without the noise of the libraries under it.

TensorFlow, absl, gRPC and the CUDA probing write to the standard error of every process that
imports TensorFlow (the driver, Spark's Python workers, the training processes), from C++. Part
of it comes before TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL``: absl writes whatever is logged
before its ``InitializeLog()`` to stderr, whatever the level (the oneDNN and "no CUDA driver"
lines at import, and ``failed call to cuInit`` on a machine without a GPU). So:

- :func:`quiet_environment`: defaults, never overrides, for the variables these libraries read:
  ``TF_CPP_MIN_LOG_LEVEL=2`` (C++ INFO and WARNING off; errors still shown),
  ``GRPC_VERBOSITY=ERROR`` and ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false``. Set in the driver before Spark starts, so local Python workers and
  training processes inherit them; the Spark session passes them to cluster executors.
- :func:`import_tensorflow`: the first import of TensorFlow in a process, its stderr captured
  while it loads and probes for GPUs, then replayed less the known noise.
- :class:`NoiseFilter`: the line classifier both use; the barrier launcher runs the output of
  training processes through it (keeping every line for its error reports), and holds back the
  collective runtime's shutdown messages until the process exit says whether they matter.

Nothing is hidden from TensorFlow: ``CUDA_VISIBLE_DEVICES`` is left alone. CUDA probing lines are
dropped only once TensorFlow said that the machine has no CUDA driver. When a driver is present
but TensorFlow finds no GPU, everything it printed while loading is shown, with a warning: that
is a GPU user's broken set-up, not noise. ``TF_CPP_MIN_LOG_LEVEL=0`` turns all filtering off.

Light: no TensorFlow or Spark import here (it runs on executors and in the driver alike).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from typing import Dict, Iterable, List, MutableMapping, Optional

QUIET_ENV: Dict[str, str] = {"TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
# Python loggers that report what the user did not ask to see at INFO (a py4j connection closing,
# MLflow creating its tables); warnings and errors still pass.
QUIET_LOGGERS = ("py4j", "mlflow.store", "mlflow.pyfunc", "mlflow.models", "alembic", "urllib3")

SHOW, DROP, HOLD = "show", "drop", "hold"
_ABSL_PREINIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# absl/glog: "I0000 00:00:1796046779.656195   13148 port.cc:153] message" (also gRPC's, through absl).
_GLOG = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\s\]]+:\d+\] ?(.*)$")
# Lines that continue a multi-line absl message: indented or brace-led detail, gRPC's trailer, and
# the coordination service's list of unhealthy tasks ("/job:worker/replica:0/task:1", "The tasks
# have crashed. ... [type.googleapis.com/tensorflow.CoordinationServiceError=...]").
_CONTINUATION = re.compile(r"^(\s|:|\{|\[\[|Additional GRPC error information|/job:|The tasks have crashed|.*type\.googleapis\.com/tensorflow\.)")
# TensorFlow found no CUDA driver: the machine has no usable NVIDIA GPU.
_NO_DRIVER = re.compile(r"Could not find cuda drivers|no CUDA-capable device is detected|CUDA_ERROR_NO_DEVICE|libcuda\.so\.1: cannot open shared object")
# Probing for CUDA where there is no driver: expected failures, once per process.
_CUDA_PROBE = re.compile(
    r"cuInit|cuda_diagnostics|kernel driver does not appear to be running|CUDA diagnostic|libcuda reported version|"
    r"DSO loaded for CUDA|cuda_executor|cuda_platform|Unable to register cu(DNN|FFT|BLAS) factory|TF-TRT Warning|computation placer already registered"
)
# Duplicate factory registrations at import (TensorFlow and its XLA both register them): harmless everywhere.
_BENIGN = re.compile(r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered")
# The collective runtime going down: after a healthy multi-worker run, workers leave one by one and
# the last ones report their peers gone. Meaningful only when the process then fails.
_SHUTDOWN = re.compile(
    r"StartAbort|[Cc]oordination ?[Ss]ervice|PollForError|Failed to send RPC|Connection refused|Socket closed|"
    r"CollectiveOps|[Cc]ollective ops is aborted|Local rendezvous|[Hh]eartbeat|UNAVAILABLE|CANCELLED|Cancelled|DEADLINE_EXCEEDED"
)


def min_log_level(environ: Optional[MutableMapping[str, str]] = None) -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it (0 when unset or not a number)."""
    value = (os.environ if environ is None else environ).get("TF_CPP_MIN_LOG_LEVEL", "0")
    try:
        return int(value)
    except ValueError:
        return 0


def quiet_environment(environ: Optional[MutableMapping[str, str]] = None) -> Dict[str, str]:
    """Set :data:`QUIET_ENV` where unset (a user's own value wins); the values now in force."""
    environ = os.environ if environ is None else environ
    for name, value in QUIET_ENV.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in QUIET_ENV}


def quiet_loggers(names: Iterable[str] = QUIET_LOGGERS, level: int = logging.WARNING) -> None:
    """Raise these Python loggers to ``level`` unless someone configured them already."""
    for name in names:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m 05s``, ``1h 02m``: a duration for people."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class NoiseFilter:
    """Classify lines of output as :data:`SHOW`, :data:`DROP` (known noise) or :data:`HOLD`
    (a collective-runtime shutdown message, with ``hold_shutdown``: show it only if the process fails).

    Stateful: lines that continue a dropped message go with it, and CUDA probing errors are dropped
    only after TensorFlow said there is no CUDA driver."""

    def __init__(self, hold_shutdown: bool = False, level: Optional[int] = None):
        self.hold_shutdown = hold_shutdown
        self.level = min_log_level() if level is None else int(level)
        self.no_cuda_driver = False
        self._last = SHOW

    def classify(self, line: str) -> str:
        text = line.rstrip("\r\n")
        if self.level <= 0:
            return SHOW
        match = _GLOG.match(text)
        if match is None:
            if text.strip() == _ABSL_PREINIT:
                return DROP
            if self._last != SHOW and text and _CONTINUATION.match(text):
                return self._last  # the rest of a multi-line message goes with its first line
            self._last = SHOW
            return SHOW
        self._last = verdict = self._classify(match.group(1), match.group(2))
        return verdict

    def _classify(self, severity: str, message: str) -> str:
        if _NO_DRIVER.search(message):
            self.no_cuda_driver = True
        if severity == "I" or (severity == "W" and self.level >= 2):
            return DROP
        if severity == "F":
            return SHOW
        if _BENIGN.search(message) or (self.no_cuda_driver and _CUDA_PROBE.search(message)):
            return DROP
        if self.hold_shutdown and _SHUTDOWN.search(message):
            return HOLD
        return SHOW

    def shown(self, lines: Iterable[str]) -> List[str]:
        """The lines to show, held ones included (the caller has no exit status to wait for)."""
        return [line for line in lines if self.classify(line) != DROP]


_IMPORT_LOCK = threading.RLock()


def import_tensorflow():
    """``tensorflow``, imported the first time with its load-time noise filtered out.

    While TensorFlow loads and probes for GPUs (``tf.config.list_physical_devices``, where CUDA is
    initialised), this process's stderr (file descriptor 2) goes to a temporary file; afterwards the
    lines that are not known noise are written back. Later calls, and a TensorFlow that someone
    imported already, return the module as it is."""
    module = sys.modules.get("tensorflow")
    if module is not None and hasattr(module, "config"):
        return module
    with _IMPORT_LOCK:
        module = sys.modules.get("tensorflow")
        if module is not None and hasattr(module, "config"):
            return module

        def load():
            import tensorflow

            return tensorflow

        return _load_quietly(load)


def _load_quietly(load):
    """``load()`` (which imports TensorFlow) with stderr captured, GPUs probed, the output replayed
    less its noise; returns the module."""
    quiet_environment()
    with _CapturedStderr() as captured:
        module = load()
        gpus = module.config.list_physical_devices("GPU")
    lines = captured.lines
    noise = NoiseFilter()
    shown = noise.shown(lines)
    if not gpus and not noise.no_cuda_driver and _gpu_expected(module):
        shown = lines + [
            "sparkml_tf: this machine has an NVIDIA driver, but TensorFlow found no GPU (its messages above say why); "
            "it runs on the CPU. Set CUDA_VISIBLE_DEVICES=-1 to choose the CPU and hide this warning."
        ]
    _write_stderr(shown)
    quiet_loggers(["tensorflow", "absl"])  # TensorFlow's Python-side loggers: warnings and errors only
    return module


def quiet_tensorflow_imports() -> None:
    """Make this process's first ``import tensorflow``, wherever it happens, load as
    :func:`import_tensorflow` does. For a process entry point (the ``sparkml-tf`` command), never at
    import of a library module; a no-op when TensorFlow is loaded already."""
    with _IMPORT_LOCK:
        if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorflowFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _QuietTensorflowFinder())


class _QuietTensorflowFinder:
    """An import hook: finds ``tensorflow`` as the other finders do and wraps its loader; gone
    from ``sys.meta_path`` once TensorFlow is loaded (a mere ``find_spec`` probe leaves it in place)."""

    def __init__(self):
        self._busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow" or self._busy:
            return None
        import importlib.util

        with _IMPORT_LOCK:
            self._busy = True
            try:
                spec = importlib.util.find_spec(fullname)  # the other finders (this one answers None while busy)
            finally:
                self._busy = False
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader, self)
        return spec

    def invalidate_caches(self) -> None:
        pass


class _QuietLoader:
    def __init__(self, loader, finder):
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        def load():
            self.loader.exec_module(module)
            return module

        with _IMPORT_LOCK:
            if self.finder in sys.meta_path:
                sys.meta_path.remove(self.finder)
            _load_quietly(load)

    def __getattr__(self, name):  # get_resource_reader, is_package, ... as the real loader answers
        return getattr(self.loader, name)


def _gpu_expected(tf) -> bool:
    """A TensorFlow built with CUDA, on a machine with an NVIDIA driver, and GPUs not hidden on purpose."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    try:
        if not tf.test.is_built_with_cuda():
            return False
    except Exception:
        return False
    return os.path.exists("/proc/driver/nvidia/version")


def _write_stderr(lines: List[str]) -> None:
    if lines:
        sys.stderr.write("".join(line if line.endswith("\n") else line + "\n" for line in lines))
        sys.stderr.flush()


class _CapturedStderr:
    """File descriptor 2 sent to a temporary file for the ``with`` block; ``lines`` afterwards.
    On an exception everything captured is written back unfiltered, before the exception goes on."""

    def __init__(self):
        self.lines: List[str] = []

    def __enter__(self) -> "_CapturedStderr":
        self._file = tempfile.TemporaryFile(mode="w+b")
        self._saved = None
        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except (OSError, ValueError, AttributeError):  # no real fd 2 (an embedding host): capture nothing
            if self._saved is not None:
                os.close(self._saved)
            self._saved = None
        return self

    def __exit__(self, kind, value, traceback) -> bool:
        try:
            if self._saved is not None:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(self._saved, 2)
                os.close(self._saved)
            self._file.seek(0)
            self.lines = self._file.read().decode("utf-8", "replace").splitlines(keepends=True)
        finally:
            self._file.close()
        if kind is not None:
            _write_stderr(self.lines)
        return False


# Spark's console: its own log4j2 profile (stderr, the same layout), at WARN, without the warnings a
# user of this package cannot act on: Hadoop's missing native library, our own tasks' sizes (the
# seeded generator's data, broadcast item tables), our wide plans' strings being truncated, and the
# UI moving to the next free port when another Spark application holds 4040. Everything else at
# WARN and above shows.
LOG4J2_PROPERTIES = """\
# Written by sparkml_tf (sparkml_tf.console): Spark's console at WARN, less what users cannot act on.
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = warn
logger.jetty2.name = org.sparkproject.jetty.util.component.AbstractLifeCycle
logger.jetty2.level = error
logger.parquet.name = org.apache.parquet.CorruptStatistics
logger.parquet.level = error
logger.hadoopnative.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoopnative.level = error
logger.tasksize.name = org.apache.spark.scheduler.TaskSetManager
logger.tasksize.level = warn
logger.tasksize.filter.size.type = RegexFilter
logger.tasksize.filter.size.regex = .*contains a task of very large size.*
logger.tasksize.filter.size.onMatch = DENY
logger.tasksize.filter.size.onMismatch = NEUTRAL
logger.plans.name = org.apache.spark.sql.catalyst.util.SparkStringUtils
logger.plans.level = error
logger.plans35.name = org.apache.spark.sql.catalyst.util.package
logger.plans35.level = error
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = warn
logger.utils.filter.port.type = RegexFilter
logger.utils.filter.port.regex = .*could not bind on port.*
logger.utils.filter.port.onMatch = DENY
logger.utils.filter.port.onMismatch = NEUTRAL
"""


def spark_defaults(conf: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Console settings for a Spark session this process starts (the config's ``spark.conf`` overrides each):

    - ``spark.ui.showConsoleProgress=false``: the progress bar would run into the log lines;
    - ``spark.executorEnv.*``: :data:`QUIET_ENV` (as set here, else its defaults) for cluster executors;
    - ``spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=...``: :data:`LOG4J2_PROPERTIES`, when
      this process launches the JVM and the user has no log4j2 configuration of their own (a
      ``log4j2.properties`` in ``SPARK_CONF_DIR``, or ``spark.driver.extraJavaOptions`` in ``conf``)."""
    conf = dict(conf or {})
    out = {"spark.ui.showConsoleProgress": "false"}
    out.update({f"spark.executorEnv.{name}": value for name, value in quiet_environment(dict(os.environ)).items()})
    conf_dir = os.environ.get("SPARK_CONF_DIR") or (os.path.join(os.environ["SPARK_HOME"], "conf") if os.environ.get("SPARK_HOME") else "")
    own_log4j = bool(conf_dir) and os.path.exists(os.path.join(conf_dir, "log4j2.properties"))
    if _launches_jvm() and not own_log4j and "spark.driver.extraJavaOptions" not in conf:
        path = _log4j2_file()
        if path:
            out["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{path}"
    return out


def _launches_jvm() -> bool:
    """Whether a session made now starts its JVM here (not under spark-submit, none running yet)."""
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        return False
    try:
        from pyspark import SparkContext
    except ImportError:
        return False
    return SparkContext._active_spark_context is None


def _log4j2_file() -> Optional[str]:
    """:data:`LOG4J2_PROPERTIES` in a file named by its content (written once, atomically); None if it cannot be."""
    import hashlib

    digest = hashlib.sha256(LOG4J2_PROPERTIES.encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), f"sparkml-tf-log4j2-{digest}.properties")
    if os.path.exists(path):
        return path
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".sparkml-tf-log4j2-")
        with os.fdopen(fd, "w") as f:
            f.write(LOG4J2_PROPERTIES)
        os.chmod(tmp, 0o644)  # readable by other users' JVMs that find it at the same name
        os.replace(tmp, path)
    except OSError:
        return None
    return path
