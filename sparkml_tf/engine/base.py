"""Job and Pipeline: the units a config describes and a scheduler runs."""

from __future__ import annotations

import abc
import dataclasses
import inspect
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from sparkml_tf.tracking.base import NullTracker, Tracker

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass
class RunContext:
    """What a running job gets from its pipeline: flags, the tracker, a lazily made Spark session.

    The session is made from ``spark_config`` on first use, unless one was handed in
    (``Pipeline.run(spark=...)``): then that session is used as it is and its settings are left alone.
    """

    force: bool = False
    tracker: Tracker = dataclasses.field(default_factory=NullTracker)
    spark_config: Any = None  # a sparkml_tf.spark.SparkConfig; None means the defaults
    results: Dict[str, Any] = dataclasses.field(default_factory=dict)
    lineage: Any = None  # the running job's sparkml_tf.engine.lineage.Decision, when it tracks lineage
    profile: bool = False  # --profile: training traces a window of steps; stage timings saved and shown
    live_settings: Optional[Dict[str, Any]] = None  # plain live-metrics settings (workers build their sender from them)
    live: Any = None  # this process's live-metrics sender (sparkml_tf.telemetry.live), set by the pipeline
    timings: List[Dict[str, Any]] = dataclasses.field(default_factory=list)  # per stage: wall and CPU seconds
    _spark: Any = dataclasses.field(default=None, repr=False)
    _description: str = dataclasses.field(default="", repr=False)

    @property
    def spark(self):
        if self._spark is None:
            from sparkml_tf.spark.session import SparkConfig

            self._spark = (self.spark_config or SparkConfig()).session()
            self.describe(self._description)
        return self._spark

    def uses_connect(self) -> bool:
        """Whether the jobs run over Spark Connect: the session handed in is one, or the config asks for one."""
        if self._spark is not None:
            from sparkml_tf.spark.session import is_connect

            return is_connect(self._spark)
        return bool(getattr(self.spark_config, "remote", None))

    def describe(self, text: str) -> None:
        """Name the Spark jobs that follow (shown in the Spark UI and the progress bar)."""
        self._description = text
        if self._spark is not None:
            from sparkml_tf.spark.session import set_job_description

            set_job_description(self._spark, text or None)


class Job(abc.ABC):
    """One step of a pipeline. Subclasses take their settings in ``__init__`` and act in ``run``.

    A job that declares ``outputs()`` (paths it writes) and ``inputs()`` (paths it reads) gets
    lineage-aware reruns from its pipeline (:mod:`sparkml_tf.engine.lineage`): it is skipped when
    its outputs are complete and were made from the same settings and inputs, rerun otherwise
    (``ctx.force`` is then set when what made the old output changed), and its outputs are locked
    while it runs.
    """

    name: str = ""

    @abc.abstractmethod
    def run(self, ctx: RunContext) -> Any:
        """Do the work; return a small summary (a dict of metrics, paths) or None."""

    def inputs(self) -> List[str]:
        return []

    def outputs(self) -> List[str]:
        return []

    def classic_spark_reason(self) -> str:
        """Why this job cannot run over Spark Connect (it needs ``sparkContext`` or RDDs), or ``""``.

        By default a job with a barrier ``launcher`` (``spark``, ``distributor``: training) needs a
        classic session; ``local`` trains in this process and needs none.
        """
        launcher = getattr(self, "launcher", None)
        if launcher in ("spark", "distributor"):
            return f"launcher '{launcher}' runs its workers as an RDD barrier stage through sparkContext (launcher 'local' trains in this process instead)"
        return ""


def job_name(job: Union[Job, Callable]) -> str:
    return getattr(job, "name", "") or getattr(job, "__name__", "") or type(job).__name__.lower()


class Pipeline(Job):
    """Jobs (or plain callables) run in order, inside one tracked run.

    ``only`` runs a subset by name, which is how one spark-submit per stage works: the
    scheduler runs the same config with ``--job train``, then ``--job index``, and so on.
    """

    def __init__(
        self, jobs: Sequence[Union[Job, Callable]], name: str = "pipeline", spark: Any = None, tracking: Optional[Tracker] = None, live_metrics: Any = None,
    ):
        names = [job_name(j) for j in jobs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"job names must be unique so --job can pick them; repeated: {', '.join(dupes)}")
        self.jobs = list(jobs)
        self.name = name
        self.spark = spark
        self.tracking = tracking or NullTracker()
        if live_metrics is not None and not callable(getattr(live_metrics, "settings", None)):
            from sparkml_tf.errors import ConfigError

            raise ConfigError(
                "CONFIG_BAD_VALUE", f"live_metrics must be a sparkml_tf.tracking.PushGateway or null, got {type(live_metrics).__name__}", "live_metrics"
            )
        self.live_metrics = live_metrics
        self.last_timings: List[Dict[str, Any]] = []  # the stages of the last run: wall and CPU seconds
        self.last_spark_stages: List[Dict[str, Any]] = []  # with --profile: its Spark stages, longest first (spark/stages.py)
        if getattr(spark, "remote", None):
            refused = _classic_only(self.jobs)
            if refused:
                from sparkml_tf.errors import ConfigError, ConfigErrors

                errors = [ConfigError("SPARK_CONNECT_UNSUPPORTED", f"{reason}; {_connect_advice()}", f"jobs[{index}]") for index, reason in refused]
                raise errors[0] if len(errors) == 1 else ConfigErrors(errors)

    def job_names(self) -> List[str]:
        return [job_name(j) for j in self.jobs]

    def classic_spark_reason(self) -> str:
        return "; ".join(reason for _, reason in _classic_only(self.jobs))

    def run(
        self, ctx: Optional[RunContext] = None, only: Sequence[str] = (), force: bool = False, spark: Any = None, profile: bool = False,
    ) -> Dict[str, Any]:
        """Run the jobs (``only``: those named) and return each job's result by name.

        ``spark``: an existing SparkSession to run on (a notebook's ``spark``, a test fixture's);
        the config's ``spark`` settings are then not applied. None: a session is made from them
        when a job first needs one. ``profile``: training traces a window of steps (TensorBoard's
        profile tab), and the stage timings are logged as ``profile/stages.json``.
        Each stage's wall and CPU seconds are in ``last_timings`` afterwards.
        """
        unknown = sorted(set(only) - set(self.job_names()))
        if unknown:
            from sparkml_tf.errors import ConfigError

            raise ConfigError(  # a usage error: exit 2, as under submit
                "PIPELINE_UNKNOWN_JOB", f"no job named {', '.join(unknown)} in pipeline '{self.name}' (jobs: {', '.join(self.job_names())})", "--job"
            )
        ctx = ctx or RunContext(force=force, tracker=self.tracking, spark_config=self.spark)
        ctx.profile = ctx.profile or profile
        if spark is not None:
            ctx._spark = spark
        selected = [j for j in self.jobs if not only or job_name(j) in only]
        if ctx.uses_connect():
            _check_connect(selected)
        from sparkml_tf.telemetry.live import LiveMetrics
        from sparkml_tf.telemetry.resources import cpu_seconds, rss_bytes

        if ctx.live_settings is None and self.live_metrics is not None:
            ctx.live_settings = self.live_metrics.settings(self.name)
        ctx.live = LiveMetrics.from_settings(ctx.live_settings, "driver")
        ctx.timings = []
        ctx.tracker.start(run_name=self.name, tags={"sparkml_tf.pipeline": self.name, "sparkml_tf.jobs": ",".join(job_name(j) for j in selected)})
        status = "FAILED"
        try:
            for index, job in enumerate(selected, 1):
                name = job_name(job)
                LOGGER.info("[%s] step %d/%d: %s", self.name, index, len(selected), name)
                ctx.describe(f"{self.name}: {name}")
                ctx.live.set({"stage_running": 1}, {"stage": name})
                ctx.live.push()
                start, cpu, failed = time.perf_counter(), cpu_seconds(), True
                try:
                    ctx.results[name] = _run_tracked(job, name, ctx)
                    failed = False
                finally:
                    timing = _timing(name, start, cpu, cpu_seconds(), failed)
                    ctx.timings.append(timing)
                    ctx.live.set({"stage_running": 0, "stage_seconds": timing["wall_s"], "stage_cpu_seconds": timing["cpu_s"],
                                  "stage_children_cpu_seconds": timing["children_cpu_s"]}, {"stage": name})
                    ctx.live.set({"driver_rss_bytes": rss_bytes(), "stages_done": sum(1 for t in ctx.timings if not t.get("failed"))})
                    ctx.live.push()
                seconds = timing["wall_s"]
                ctx.tracker.log_metrics({f"time_s.{name}": seconds})
                LOGGER.info("[%s] %s done in %.1fs", self.name, name, seconds)
            status = "FINISHED"
            return ctx.results
        finally:
            self.last_timings = list(ctx.timings)
            if ctx.profile and ctx.timings:
                ctx.tracker.log_metrics({f"cpu_s.{t['stage']}": t["cpu_s"] + t["children_cpu_s"] for t in ctx.timings})
                ctx.tracker.log_dict({"stages": ctx.timings}, "profile/stages.json")
                from sparkml_tf.spark.stages import spark_stage_timings

                self.last_spark_stages = spark_stage_timings(ctx._spark)
                if self.last_spark_stages:
                    ctx.tracker.log_dict({"spark_stages": self.last_spark_stages}, "profile/spark_stages.json")
            ctx.live.set({"pipeline_succeeded": int(status == "FINISHED")})
            ctx.live.close()
            ctx.tracker.end(status)


def _timing(name: str, start: float, before: Dict[str, float], after: Dict[str, float], failed: bool) -> Dict[str, Any]:
    """A stage's wall seconds and CPU seconds: this process's, and its child processes' (a local
    Spark's JVM and Python workers, training processes; executors on other machines are not seen)."""
    timing = {
        "stage": name, "wall_s": round(time.perf_counter() - start, 3), "cpu_s": round(after["process"] - before["process"], 3),
        "children_cpu_s": round(max(after["children"] - before["children"], 0.0), 3),
    }
    if failed:
        timing["failed"] = True
    return timing


def _connect_advice() -> str:
    from sparkml_tf.spark.session import CONNECT_COMPUTE

    return f"a Spark Connect session (Databricks standard access mode or serverless, a sc:// remote) has no sparkContext: run it on {CONNECT_COMPUTE}"


def _classic_only(jobs: Sequence[Union[Job, Callable]]) -> List[Any]:
    """``(index, reason)`` of each job that needs a classic Spark session."""
    return [(index, f"{job_name(job)}: {job.classic_spark_reason()}") for index, job in enumerate(jobs) if isinstance(job, Job) and job.classic_spark_reason()]


def _check_connect(jobs: Sequence[Union[Job, Callable]]) -> None:
    """Before any job runs over Spark Connect: a recent enough client, and no job that needs sparkContext."""
    from sparkml_tf.errors import SparkmlTfError
    from sparkml_tf.spark.session import check_connect_client

    check_connect_client()
    refused = _classic_only(jobs)
    if refused:
        reasons = "; ".join(reason for _, reason in refused)
        raise SparkmlTfError("SPARK_CONNECT_UNSUPPORTED", f"{reasons}; {_connect_advice()}")


def _run_tracked(job: Union[Job, Callable], name: str, ctx: RunContext) -> Any:
    """Run ``job`` with its outputs locked, rerun or skipped by lineage, and record its lineage."""
    from sparkml_tf.engine import lineage

    if not lineage.tracks_lineage(job):
        return _call(job, ctx)
    import contextlib

    from sparkml_tf.io.locks import output_lock

    with contextlib.ExitStack() as locks:
        for path in job.outputs():
            locks.enter_context(output_lock(path))
        decision = lineage.decide(job, ctx.force)
        LOGGER.info("%s: %s (%s)", name, "runs" if decision.run else "skipped", decision.reason)
        user_force = ctx.force
        ctx.force, ctx.lineage = decision.changed_inputs, decision
        try:
            result = _call(job, ctx)
        finally:
            ctx.force, ctx.lineage = user_force, None
        if decision.run:
            lineage.commit(job, decision)
        _tag_data_identity(job, name, decision, ctx)
        return result


def _tag_data_identity(job: Job, name: str, decision: Any, ctx: RunContext) -> None:
    """Tag the run with the data a dataset job read and built (an output holding a ``stats.json``):
    input path, bytes and fingerprint, the dataset's fingerprint and row counts. Skipped or run alike."""
    if isinstance(ctx.tracker, NullTracker):
        return
    from sparkml_tf.engine.lineage import output_is_file
    from sparkml_tf.tracking.provenance import dataset_identity

    for path in job.outputs():
        if output_is_file(path):
            continue
        try:
            tags = dataset_identity(name, job, path, decision.record.get("inputs", {}), decision.fingerprint)
        except Exception as e:  # identity is a courtesy: a store that cannot be read here costs the tags only
            LOGGER.debug("no data identity for %s: %s", path, e)
            continue
        if tags:
            ctx.tracker.set_tags(tags)


def _call(job: Union[Job, Callable], ctx: RunContext) -> Any:
    if isinstance(job, Job):
        return job.run(ctx)
    try:
        takes_context = bool(inspect.signature(job).parameters)
    except (TypeError, ValueError):
        takes_context = False
    return job(ctx) if takes_context else job()
