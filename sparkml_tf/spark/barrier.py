"""Launchers: the seam between the driver and the training workers.

``LocalLauncher`` runs the function in the driver process (N=1: ``local`` runs and tests).
``SparkBarrierLauncher`` runs it on N barrier tasks: rank = partition id, every ``host:port`` via
``allGather``, ``TF_CONFIG`` from that list, environment restored in ``finally`` (Spark reuses
Python workers), only rank 0's result returned. With ``isolate`` (the default) each task runs the
function in a child Python process: TensorFlow's collective runtime can be set up once per process
only, so a reused Spark Python worker could not train twice, and the child's whole output (C++
logs included) is kept for error reports. ``DistributorLauncher`` delegates to
spark-tensorflow-distributor's MirroredStrategyRunner.
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
import traceback
import uuid
from typing import Any, Callable, Dict

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
    task_cpus = int(sc.getConf().get("spark.task.cpus", "1") or 1)
    return max(sc.defaultParallelism // max(task_cpus, 1), 0)


def _check_slots(sc, num_workers: int) -> None:
    slots = available_slots(sc)
    if num_workers > slots:
        raise DistributedError(
            "SPARK_NOT_ENOUGH_SLOTS",
            f"{num_workers} barrier workers need {num_workers} concurrent task slots, but the cluster offers {slots} "
            f"(defaultParallelism {sc.defaultParallelism} / spark.task.cpus {sc.getConf().get('spark.task.cpus', '1')}); "
            "a barrier stage would wait for slots forever: ask for fewer workers (num_workers) or give Spark more cores/executors",
            "num_workers",
        )


class SparkBarrierLauncher:
    """Run ``fn(settings)`` on ``num_workers`` Spark barrier tasks at once."""

    def __init__(self, num_workers: int = 2, isolate: bool = True, tail_lines: int = TAIL_LINES, spark: Any = None):
        if num_workers < 1:
            raise DistributedError("DISTRIBUTED_BAD_WORKERS", f"num_workers must be at least 1, got {num_workers}", "num_workers")
        self.num_workers = int(num_workers)
        self.isolate = bool(isolate)
        self.tail_lines = int(tail_lines)
        self.spark = spark

    def run(self, fn: Callable[[Dict[str, Any]], Any], settings: Dict[str, Any]) -> Any:
        from sparkml_tf.spark.session import ensure_driver

        ensure_driver("SparkBarrierLauncher.run()")
        spark = self.spark
        if spark is None:
            from pyspark.sql import SparkSession

            spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
        sc = spark.sparkContext
        _check_slots(sc, self.num_workers)
        # Plain locals only: the closure Spark pickles must not hold self, the session or TF objects.
        task = _make_task(fn, dict(settings), self.num_workers, self.isolate, self.tail_lines)
        group = f"sparkml-tf-train-{uuid.uuid4().hex[:8]}"
        sc.setJobGroup(group, f"sparkml_tf: {self.num_workers} barrier workers", interruptOnCancel=True)
        try:
            results = sc.parallelize(range(self.num_workers), self.num_workers).barrier().mapPartitions(task).collect()
        except BaseException as e:
            sc.cancelJobGroup(group)  # leave no task running when the driver fails or is interrupted
            match = _FAILURE_RE.search(str(e))
            if match:
                rank, code, tail = match.groups()
                raise DistributedError(
                    "DISTRIBUTED_WORKER_FAILED",
                    f"barrier worker rank {rank} failed (exit {code}); the other workers were stopped. "
                    f"Fix the cause below and rerun (training resumes from the last checkpoint). Last lines of its output:\n{tail}",
                    f"rank {rank}",
                ) from e
            if isinstance(e, Exception):  # not an interrupt: the stage failed before a worker could report
                raise DistributedError(
                    "DISTRIBUTED_WORKER_FAILED",
                    f"the barrier stage failed before a worker reported ({type(e).__name__}: {str(e)[-2000:]}); check the executor logs",
                ) from e
            raise
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)
            sc.setLocalProperty("spark.job.description", None)
        if not results:
            raise DistributedError("DISTRIBUTED_WORKER_FAILED", "the barrier stage ended without a result from rank 0; check the executor logs", "rank 0")
        return results[0]


def _make_task(fn: Callable, settings: Dict[str, Any], num_workers: int, isolate: bool, tail_lines: int) -> Callable:
    def task(_partition):
        from pyspark import BarrierTaskContext

        context = BarrierTaskContext.get()
        rank = context.partitionId()
        host = context.getTaskInfos()[rank].address.rsplit(":", 1)[0]
        addresses = context.allGather(f"{host}:{_free_port()}")
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": rank}}
        names = ("TF_CONFIG", "SPARKML_TF_RANK", "SPARKML_TF_NUM_WORKERS")
        saved = {name: os.environ.get(name) for name in names}
        try:
            os.environ.update({"TF_CONFIG": json.dumps(tf_config), "SPARKML_TF_RANK": str(rank), "SPARKML_TF_NUM_WORKERS": str(num_workers)})
            result = _run_isolated(fn, settings, rank, tail_lines) if isolate else _run_here(fn, settings, rank, tail_lines)
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
        raise _failure(rank, type(e).__name__, "\n".join(list(lines)[-tail_lines:])) from None
    finally:
        sys.stdout, sys.stderr = out, err


_CHILD = r"""
import os, pickle, sys, threading, time
parent = os.getppid()
def watch():  # die with the Spark task that started us (a killed barrier stage leaves no orphan)
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)
threading.Thread(target=watch, daemon=True).start()
with open(sys.argv[1], "rb") as f:
    fn, settings = pickle.load(f)
result = fn(settings)
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
    lines: collections.deque = collections.deque(maxlen=tail_lines)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the child imports what this worker can
    try:
        process = subprocess.Popen([sys.executable, "-c", _CHILD, payload, result_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, errors="replace")
        try:
            for line in process.stdout:
                sys.stderr.write(line)  # into the executor's log as well
                lines.append(line.rstrip("\n"))
            code = process.wait()
        finally:
            if process.poll() is None:  # the task was interrupted: take the child down with it
                process.kill()
                process.wait()
        if code != 0 or not os.path.exists(result_path):
            raise _failure(rank, code, "\n".join(lines))
        import pickle

        with open(result_path, "rb") as f:
            return pickle.load(f)
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


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

        from sparkml_tf.spark.session import ensure_driver

        ensure_driver("DistributorLauncher.run()")
        try:
            from spark_tensorflow_distributor import MirroredStrategyRunner
        except ImportError as e:
            raise DistributedError("DISTRIBUTED_MISSING_PACKAGE", "launcher 'distributor' needs spark-tensorflow-distributor; pip install spark-tensorflow-distributor, or use launcher 'spark'") from e
        spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
        _check_slots(spark.sparkContext, self.num_workers)
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
