"""Launchers: the seam between the driver and the training workers.

``LocalLauncher`` runs the function in the driver process (N=1: ``local`` runs and tests).
``SparkBarrierLauncher`` runs it on N barrier tasks: rank = partition id, every ``host:port`` via
``allGather``, ``TF_CONFIG`` from that list, environment restored in ``finally`` (Spark reuses
Python workers), only rank 0's result returned. With ``isolate`` (the default) each task runs the
function in a child Python process: TensorFlow's collective runtime can be set up once per process
only, so a reused Spark Python worker could not train twice, and the child's whole output (C++
logs included) is kept for error reports. ``DistributorLauncher`` delegates to
spark-tensorflow-distributor's MirroredStrategyRunner.

Failures. The barrier tasks run as a shuffle-map stage (their results go through a one-partition
shuffle to the driver), because Spark retries a failed barrier *shuffle-map* stage as a whole, up to
``spark.stage.maxConsecutiveAttempts`` (default 4) times, but aborts the job on any failure of a
barrier *result* stage. So a lost executor or a killed worker process costs one retry of the stage,
and training resumes from its last checkpoint. A failure a retry cannot fix (an exception of our own
or a plain Python bug such as ValueError or KeyError, raised by the training function) is reported
by its task to a small listener on the driver, which cancels the job at once: the error, with rank and
output tail, reaches the user without three useless retries. TensorFlow runtime errors (a collective
that lost its peer) and deaths by signal are left to Spark's retry.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from typing import Any, Callable, Dict, Optional, Tuple

from sparkml_tf.errors import DistributedError

LOGGER = logging.getLogger(__name__)
TAIL_LINES = 40
_FAILURE = "SPARKML_TF_WORKER_FAILED"
_FAILURE_RE = re.compile(_FAILURE + r" rank=(\d+) exit=(\S+)\n(.*?)\n" + _FAILURE + "_END", re.S)


class LocalLauncher:
    """Run ``fn(settings)`` here, with no TF_CONFIG (a single worker)."""

    def run(self, fn: Callable[[Dict[str, Any]], Any], settings: Dict[str, Any]) -> Any:
        saved = os.environ.pop("TF_CONFIG", None)
        try:
            return fn(settings)
        finally:
            if saved is not None:
                os.environ["TF_CONFIG"] = saved


def available_slots(sc) -> int:
    """Tasks the cluster can run at once now (what Spark's own barrier check counts), else an estimate."""
    try:
        jsc = sc._jsc.sc()
        return int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().defaultResourceProfile()))
    except Exception:  # an older or different Spark: estimate from the default parallelism
        task_cpus = int(sc.getConf().get("spark.task.cpus", "1") or 1)
        return max(sc.defaultParallelism // max(task_cpus, 1), 0)


def _check_slots(sc, num_workers: int, wait_s: float = 0.0) -> None:
    slots = available_slots(sc)
    # On a cluster, executors register some seconds after the application starts: wait for them.
    start = time.monotonic()
    deadline = start + (0.0 if sc.master.startswith("local") else wait_s)
    while num_workers > slots and time.monotonic() < deadline:
        time.sleep(1.0)
        slots = available_slots(sc)
    if num_workers > slots:
        waited = f", after waiting {time.monotonic() - start:.0f}s for executors to register" if time.monotonic() > start + 1 else ""
        raise DistributedError(
            "SPARK_NOT_ENOUGH_SLOTS",
            f"{num_workers} barrier workers need {num_workers} concurrent task slots, but the cluster offers {slots} "
            f"(executor cores / spark.task.cpus {sc.getConf().get('spark.task.cpus', '1')}{waited}); "
            "a barrier stage would wait for slots forever: ask for fewer workers (num_workers) or give Spark more cores/executors",
            "num_workers",
        )


class SparkBarrierLauncher:
    """Run ``fn(settings)`` on ``num_workers`` Spark barrier tasks at once."""

    def __init__(self, num_workers: int = 2, isolate: bool = True, tail_lines: int = TAIL_LINES, spark: Any = None, slot_wait_s: float = 60.0):
        if num_workers < 1:
            raise DistributedError("DISTRIBUTED_BAD_WORKERS", f"num_workers must be at least 1, got {num_workers}", "num_workers")
        self.num_workers = int(num_workers)
        self.isolate = bool(isolate)
        self.tail_lines = int(tail_lines)
        self.spark = spark
        self.slot_wait_s = float(slot_wait_s)

    def run(self, fn: Callable[[Dict[str, Any]], Any], settings: Dict[str, Any]) -> Any:
        from sparkml_tf.spark.session import ensure_driver, spark_context

        ensure_driver("SparkBarrierLauncher.run()")
        spark = self.spark
        if spark is None:
            from pyspark.sql import SparkSession

            spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
        sc = spark_context(spark, "training with launcher 'spark'")
        _check_slots(sc, self.num_workers, self.slot_wait_s)
        group = f"sparkml-tf-train-{uuid.uuid4().hex[:8]}"
        inbox = _FailureInbox(lambda: sc.cancelJobGroup(group), sc.getConf().get("spark.driver.host") or socket.gethostname())
        # Plain locals only: the closure Spark pickles must not hold self, the session or TF objects.
        task = _make_task(fn, dict(settings), self.num_workers, self.isolate, self.tail_lines, inbox.address, inbox.token)
        sc.setJobGroup(group, f"sparkml_tf: {self.num_workers} barrier workers", interruptOnCancel=True)
        try:
            barrier = sc.parallelize(range(self.num_workers), self.num_workers).barrier().mapPartitions(task)
            # Through a shuffle: a failed barrier shuffle-map stage is retried by Spark, a result stage is not.
            results = barrier.map(lambda result: (0, result)).partitionBy(1).values().collect()
        except BaseException as e:
            sc.cancelJobGroup(group)  # leave no task running when the driver fails or is interrupted
            report = inbox.report
            match = _FAILURE_RE.search(str(e))
            if report or match:
                rank, code, tail = (str(report["rank"]), str(report["code"]), report["tail"]) if report else match.groups()
                raise DistributedError(
                    "DISTRIBUTED_WORKER_FAILED",
                    f"barrier worker rank {rank} failed (exit {code}); the other workers were stopped. "
                    f"Fix the cause below and rerun (training resumes from the last checkpoint). Last lines of its output:\n{tail}",
                    f"rank {rank}",
                ) from e
            if isinstance(e, Exception):  # not an interrupt: the stage failed before a worker could report
                raise DistributedError(
                    "DISTRIBUTED_WORKER_FAILED",
                    f"the barrier stage failed before a worker reported ({type(e).__name__}: {str(e)[:2000]}); check the executor logs",
                ) from e
            raise
        finally:
            inbox.close()
            sc.setLocalProperty("spark.jobGroup.id", None)
            sc.setLocalProperty("spark.job.description", None)
        if not results:
            raise DistributedError("DISTRIBUTED_WORKER_FAILED", "the barrier stage ended without a result from rank 0; check the executor logs", "rank 0")
        return results[0]


class _FailureInbox:
    """A one-message listener on the driver: a barrier task that hit a failure no retry can fix sends
    ``{"token", "rank", "code", "tail"}`` here, and ``on_report`` (cancel the job) runs at once.
    Unreachable from the executors (a firewall), it costs only the retries it would have saved."""

    def __init__(self, on_report: Callable[[], None], host: str):
        self.token = uuid.uuid4().hex
        self.report: Optional[Dict[str, Any]] = None
        self._on_report = on_report
        self._server = socket.create_server(("", 0))
        self._server.settimeout(0.5)
        self.address: Tuple[str, int] = (host, self._server.getsockname()[1])
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sparkml-tf-failure-inbox", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            try:
                with conn:
                    conn.settimeout(5)
                    data = b""
                    while not data.endswith(b"\n") and len(data) < 1 << 20:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                message = json.loads(data.decode("utf-8", "replace") or "{}")
            except (OSError, ValueError):
                continue
            if message.get("token") == self.token and self.report is None:
                self.report = message
                LOGGER.info(
                    "barrier worker rank %s failed for good (%s); cancelling the stage instead of retrying it", message.get("rank"), message.get("code")
                )
                try:
                    self._on_report()
                except Exception:  # the job may be over already
                    LOGGER.debug("cancel after a worker report failed", exc_info=True)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._server.close()


def _send_report(address: Tuple[str, int], token: str, rank: int, code: Any, tail: str) -> None:
    """Executor side: tell the driver that this failure will happen again on a retry. Best effort."""
    try:
        with socket.create_connection(tuple(address), timeout=5) as conn:
            conn.sendall((json.dumps({"token": token, "rank": rank, "code": str(code), "tail": tail}) + "\n").encode())
    except OSError:
        pass


def is_retryable(error: BaseException) -> bool:
    """Whether a new attempt of the barrier stage may succeed where the training function raised ``error``.

    No: sparkml_tf's own errors (bad data, bad config) and plain Python bugs (ValueError, KeyError, ...).
    Yes: everything else, TensorFlow's runtime errors above all (a collective whose peer was lost).
    """
    from sparkml_tf.errors import SparkmlTfError

    if isinstance(error, SparkmlTfError):
        return False
    if type(error).__module__.split(".")[0] in ("tensorflow", "grpc"):
        return True
    return not isinstance(error, _DETERMINISTIC)


_DETERMINISTIC = (
    ImportError,
    SyntaxError,
    NameError,
    AttributeError,
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    AssertionError,
    NotImplementedError,
    ZeroDivisionError,
)


def _make_task(fn: Callable, settings: Dict[str, Any], num_workers: int, isolate: bool, tail_lines: int, inbox: Tuple[str, int], token: str) -> Callable:
    def task(_partition):
        from pyspark import BarrierTaskContext

        context = BarrierTaskContext.get()
        rank = context.partitionId()
        host = context.getTaskInfos()[rank].address.rsplit(":", 1)[0]
        addresses = context.allGather(f"{host}:{_free_port()}")
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": rank}}
        # One line per worker in the executor's log: which rank runs where, under which Python.
        print(f"[sparkml_tf.barrier] rank {rank}/{num_workers} task {context.taskAttemptId()} python worker pid {os.getpid()} "
              f"executable {sys.executable} tf worker {addresses[rank]}", file=sys.stderr, flush=True)
        names = ("TF_CONFIG", "SPARKML_TF_RANK", "SPARKML_TF_NUM_WORKERS")
        saved = {name: os.environ.get(name) for name in names}
        try:
            os.environ.update({"TF_CONFIG": json.dumps(tf_config), "SPARKML_TF_RANK": str(rank), "SPARKML_TF_NUM_WORKERS": str(num_workers)})
            try:
                result = _run_isolated(fn, settings, rank, tail_lines) if isolate else _run_here(fn, settings, rank, tail_lines)
            except _WorkerFailure as failure:
                if not failure.retryable:
                    _send_report(inbox, token, rank, failure.code, failure.tail)
                raise _failure(rank, failure.code, failure.tail) from None
        finally:
            for name, value in saved.items():  # Spark reuses this Python process for later tasks
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return [result] if rank == 0 else []

    return task


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _failure(rank: int, code: Any, tail: str) -> RuntimeError:
    # A marked block the driver finds in Spark's exception text, whatever wraps it.
    return RuntimeError(f"{_FAILURE} rank={rank} exit={code}\n{tail}\n{_FAILURE}_END")


class _WorkerFailure(Exception):
    """Inside the task: the training function failed; ``retryable`` says whether a new stage attempt may help."""

    def __init__(self, code: Any, tail: str, retryable: bool):
        super().__init__(code)
        self.code, self.tail, self.retryable = code, tail, retryable


class _Tee:
    """A text stream that writes through and keeps the last lines."""

    def __init__(self, stream, lines: collections.deque):
        self.stream, self.lines, self.partial = stream, lines, ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        parts = (self.partial + text).split("\n")
        self.partial = parts.pop()
        self.lines.extend(parts)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _run_here(fn: Callable, settings: Dict[str, Any], rank: int, tail_lines: int) -> Any:
    lines: collections.deque = collections.deque(maxlen=tail_lines)
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(out, lines), _Tee(err, lines)
    try:
        return fn(settings)
    except Exception as e:
        lines.extend(traceback.format_exc().rstrip().split("\n"))
        raise _WorkerFailure(type(e).__name__, "\n".join(list(lines)[-tail_lines:]), is_retryable(e)) from None
    finally:
        sys.stdout, sys.stderr = out, err


_CHILD = r"""
import os, pickle, sys, threading, time
parent = os.getppid()
def watch():  # die with the Spark task that started us (a killed barrier stage leaves no orphan)
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)
threading.Thread(target=watch, daemon=True).start()
with open(sys.argv[1], "rb") as f:
    fn, settings = pickle.load(f)
try:
    result = fn(settings)
except Exception as e:
    from sparkml_tf.spark.barrier import is_retryable
    with open(sys.argv[2] + ".error", "w") as f:
        f.write("retryable" if is_retryable(e) else "fatal")
    raise
with open(sys.argv[2] + ".tmp", "wb") as f:
    pickle.dump(result, f)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
"""


def _run_isolated(fn: Callable, settings: Dict[str, Any], rank: int, tail_lines: int) -> Any:
    from pyspark import cloudpickle

    workdir = tempfile.mkdtemp(prefix=f"sparkml-tf-worker{rank}-")
    payload, result_path = os.path.join(workdir, "fn.pkl"), os.path.join(workdir, "result.pkl")
    with open(payload, "wb") as f:
        cloudpickle.dump((fn, settings), f)
    from sparkml_tf.console import HOLD, SHOW, NoiseFilter

    lines: collections.deque = collections.deque(maxlen=tail_lines)
    # Library noise stays off the log (the tail keeps every line); the collective runtime's shutdown
    # messages are held until the exit code says whether they belong to a failure.
    noise, held = NoiseFilter(hold_shutdown=True), []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the child imports what this worker can
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, payload, result_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, errors="replace"
        )
        print(f"[sparkml_tf.barrier] rank {rank}: training process pid {process.pid}", file=sys.stderr, flush=True)
        try:
            for line in process.stdout:
                verdict = noise.classify(line)
                if verdict == SHOW:
                    sys.stderr.write(line)  # into the executor's log as well
                elif verdict == HOLD:
                    held.append(line)
                lines.append(line.rstrip("\n"))
            code = process.wait()
        finally:
            if process.poll() is None:  # the task was interrupted: take the child down with it
                process.kill()
                process.wait()
        if code != 0 or not os.path.exists(result_path):
            sys.stderr.write("".join(held))
            # A Python exception the child classified, else a death by signal or exit: retryable.
            kind = open(result_path + ".error").read() if os.path.exists(result_path + ".error") else "retryable"
            raise _WorkerFailure(code, "\n".join(lines), kind != "fatal")
        import pickle

        with open(result_path, "rb") as f:
            return pickle.load(f)
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def run_in_child(fn: Callable, settings: Dict[str, Any], label: str = "trial", tail_lines: int = 40) -> Dict[str, Any]:
    """``fn(settings)`` in a fresh Python process (its own TensorFlow runtime), from a Spark task:
    ``{"result": ...}``, or ``{"error": kind, "tail": last lines of its output}`` when it failed."""
    try:
        return {"result": _run_isolated(fn, settings, 0, tail_lines)}
    except _WorkerFailure as failure:
        return {"error": str(failure.code), "tail": failure.tail[-4000:], "label": label}


class DistributorLauncher:
    """spark-tensorflow-distributor's MirroredStrategyRunner (CPU, our own strategy in ``fn``).

    It runs ``fn`` inside the Spark Python worker (no child process), so a reused worker cannot
    set up TensorFlow's collectives twice, and a failure reaches the driver as Spark's raw
    exception without our rank/tail report. Prefer ``SparkBarrierLauncher``.
    """

    def __init__(self, num_workers: int = 2):
        self.num_workers = int(num_workers)

    def run(self, fn: Callable[[Dict[str, Any]], Any], settings: Dict[str, Any]) -> Any:
        from pyspark.sql import SparkSession

        from sparkml_tf.spark.session import ensure_driver, spark_context

        ensure_driver("DistributorLauncher.run()")
        try:
            from spark_tensorflow_distributor import MirroredStrategyRunner
        except ImportError as e:
            raise DistributedError(
                "DISTRIBUTED_MISSING_PACKAGE",
                "launcher 'distributor' needs spark-tensorflow-distributor; pip install spark-tensorflow-distributor, or use launcher 'spark'",
            ) from e
        spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
        _check_slots(spark_context(spark, "training with launcher 'distributor'"), self.num_workers)
        plain = dict(settings)
        return MirroredStrategyRunner(num_slots=self.num_workers, use_gpu=False, use_custom_strategy=True).run(fn, settings=plain)


def make_launcher(kind: str, num_workers: int) -> Any:
    """``local`` (driver process), ``spark`` (barrier stage) or ``distributor`` (spark-tensorflow-distributor)."""
    if kind == "local":
        return LocalLauncher()
    if kind == "spark":
        return SparkBarrierLauncher(num_workers)
    if kind == "distributor":
        return DistributorLauncher(num_workers)
    raise DistributedError("DISTRIBUTED_UNKNOWN_LAUNCHER", f"unknown launcher '{kind}'; use 'local', 'spark' or 'distributor'", "launcher")
