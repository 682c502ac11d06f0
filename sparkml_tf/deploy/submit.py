"""``sparkml-tf submit``: the spark-submit commands of a pipeline for a target, one per stage.

A *target profile* (``conf/targets/*.json``) says where the stages run and with what::

    {
      "master": "yarn", "deploy_mode": "cluster",
      "spark_submit": "spark-submit",              # null: $SPARK_HOME/bin, pyspark's own, then PATH
      "env_archive": "sparkml_tf_env.tar.gz",      # packed environment: --archives PATH#env
      "python": null,                              # executors' Python; null: ./env/bin/python with an
                                                   # archive, else this interpreter
      "jobs_dir": "jobs",                          # the spark-submit entry points
      "conf": {"spark.yarn.maxAppAttempts": "1"},  # --conf for every stage
      "resources": {                               # "default", then one entry per stage name
        "default": {"driver_memory": "4g", "num_executors": 8, "executor_cores": 4, "executor_memory": "8g"},
        "train": {"executor_memory": "16g", "conf": {...}}
      }
    }

The config is resolved and validated here first (the caller does it), so a bad config stops
before any command runs. A *barrier* stage (a job with ``num_workers`` whose ``launcher`` is not
``local``) gets exactly ``num_workers`` executors of ``executor_cores`` cores each, one task per
executor (``spark.task.cpus`` = executor cores), dynamic allocation off, and the scheduler waits
for all executors before the stage starts (``spark.scheduler.minRegisteredResourcesRatio=1.0``).

In YARN cluster mode the driver runs in a container: a local config and macros are shipped with
``--files`` and the stage reads them by basename in its working directory. In client mode (and
locally) the driver runs here and reads them where they are. URLs (hdfs://, s3a://, dbfs:/,
http(s)://) and inline JSON are passed as they are.

Light to import: no pyspark, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from sparkml_tf.config.imports import DEFAULT_ROOTS, did_you_mean, import_string, is_heavy
from sparkml_tf.config.loading import load_json
from sparkml_tf.errors import ConfigError, ConfigErrors, SparkmlTfError

LOGGER = logging.getLogger(__name__)

TARGET_KEYS = ("description", "master", "deploy_mode", "spark_submit", "env_archive", "python", "driver_python", "jobs_dir", "conf", "resources")
RESOURCE_KEYS = ("driver_memory", "driver_cores", "num_executors", "executor_cores", "executor_memory", "conf")
INT_RESOURCES = ("driver_cores", "num_executors", "executor_cores")
ARCHIVE_ALIAS = "env"
BARRIER_CONF = {"spark.dynamicAllocation.enabled": "false", "spark.scheduler.minRegisteredResourcesRatio": "1.0"}


@dataclasses.dataclass
class Target:
    """A parsed target profile; see the module docstring."""

    master: str
    deploy_mode: Optional[str] = None
    spark_submit: Optional[str] = None
    env_archive: Optional[str] = None
    python: Optional[str] = None
    driver_python: Optional[str] = None
    jobs_dir: str = "jobs"
    conf: Dict[str, str] = dataclasses.field(default_factory=dict)
    resources: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)
    description: str = ""
    origin: str = "<target>"

    @property
    def kind(self) -> str:
        """``local``, ``yarn``, ``standalone`` (spark://) or ``other`` (k8s://, ...)."""
        if self.master.startswith("local"):
            return "local"
        if self.master == "yarn":
            return "yarn"
        if self.master.startswith("spark://"):
            return "standalone"
        return "other"

    @property
    def cluster_mode(self) -> bool:
        return self.deploy_mode == "cluster"

    def override(self, **values: Optional[str]) -> "Target":
        """A copy with the given settings replaced (None leaves a setting as it is)."""
        return dataclasses.replace(self, **{key: value for key, value in values.items() if value is not None})

    def stage_resources(self, stage: str) -> Dict[str, Any]:
        """``resources.default`` updated with ``resources.<stage>`` (``conf`` merged key by key)."""
        default, own = self.resources.get("default", {}), self.resources.get(stage, {})
        merged = {**default, **own}
        merged["conf"] = {**default.get("conf", {}), **own.get("conf", {})}
        return merged


@dataclasses.dataclass
class StageCommand:
    """One spark-submit command: the stage it runs, its argv, and its barrier worker count."""

    stage: str
    argv: List[str]
    barrier_workers: Optional[int] = None

    def shell(self) -> str:
        return shlex.join(self.argv)


def load_target(source: Any) -> Target:
    """Read a target profile (a path, a URL or a dict) and check every key; ConfigErrors lists
    every problem (SUBMIT_TARGET_INVALID), each with its key path."""
    data, origin = load_json(source, "target profile")
    errors: List[ConfigError] = []

    def bad(path: str, message: str) -> None:
        errors.append(ConfigError("SUBMIT_TARGET_INVALID", f"{message} (in the target profile {origin})", path))

    if not isinstance(data, dict):
        raise ConfigErrors([ConfigError("SUBMIT_TARGET_INVALID", f"a target profile is a JSON object, got {type(data).__name__} (in {origin})", "<root>")])
    for key in data:
        if key not in TARGET_KEYS:
            bad(key, f"unknown setting '{key}'{did_you_mean(key, TARGET_KEYS)}; known: {', '.join(TARGET_KEYS)}")
    if not isinstance(data.get("master"), str) or not data.get("master"):
        bad("master", "'master' must be a Spark master URL such as yarn, local[2] or spark://host:7077")
    if data.get("deploy_mode") not in (None, "client", "cluster"):
        bad("deploy_mode", f"'deploy_mode' must be client, cluster or null, got {data.get('deploy_mode')!r}")
    for key in ("spark_submit", "env_archive", "python", "driver_python", "jobs_dir", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            bad(key, f"'{key}' must be a string or null, got {type(data[key]).__name__}")
    _check_conf(data.get("conf", {}), "conf", bad)
    resources = data.get("resources", {})
    if not isinstance(resources, dict):
        bad("resources", "'resources' must map stage names (and 'default') to resource settings")
        resources = {}
    for stage, settings in resources.items():
        if not isinstance(settings, dict):
            bad(f"resources.{stage}", f"resources of '{stage}' must be an object, got {type(settings).__name__}")
            continue
        for key, value in settings.items():
            path = f"resources.{stage}.{key}"
            if key not in RESOURCE_KEYS:
                bad(path, f"unknown resource '{key}'{did_you_mean(key, RESOURCE_KEYS)}; known: {', '.join(RESOURCE_KEYS)}")
            elif key == "conf":
                _check_conf(value, path, bad)
            elif key in INT_RESOURCES and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                bad(path, f"'{key}' must be a positive integer, got {value!r}")
            elif key not in INT_RESOURCES and not isinstance(value, str):
                bad(path, f"'{key}' must be a size string such as \"8g\", got {value!r}")
    if errors:
        raise ConfigErrors(errors)
    fields = {key: data[key] for key in TARGET_KEYS if key in data and data[key] is not None}
    fields["conf"] = {k: _conf_value(v) for k, v in fields.get("conf", {}).items()}
    fields["resources"] = {stage: {**s, "conf": {k: _conf_value(v) for k, v in s.get("conf", {}).items()}} for stage, s in resources.items()}
    return Target(origin=origin, **fields)


def _check_conf(conf: Any, path: str, bad: Callable[[str, str], None]) -> None:
    if not isinstance(conf, dict):
        bad(path, f"'{path}' must map Spark setting names to values, got {type(conf).__name__}")
        return
    for key, value in conf.items():
        if isinstance(value, (dict, list)) or value is None:
            bad(f"{path}.{key}", f"Spark setting '{key}' must be a string, number or boolean, got {value!r}")


def _conf_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def pipeline_stages(config: Any, roots: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """The stages of a resolved config, in order: ``{"name", "barrier_workers", "whole"}`` each.

    A Pipeline's jobs are its stages, named as ``--job`` names them (the ``name`` key, else the
    default of the job's ``name`` parameter); any other config is one stage, ``run``. A job is a
    barrier stage when it has ``num_workers`` (given, or its parameter's default) and its
    ``launcher`` is not ``local``.
    """
    jobs = config.get("jobs") if isinstance(config, dict) else None
    if not isinstance(jobs, list):
        return [{"name": "run", "barrier_workers": None, "whole": True}]
    stages = []
    for index, job in enumerate(jobs):
        job = job if isinstance(job, dict) else {}
        settings = {**_defaults(job, f"jobs[{index}]", roots), **job}
        workers = settings.get("num_workers")
        barrier = isinstance(workers, int) and not isinstance(workers, bool) and settings.get("launcher", "spark") != "local"
        name = settings.get("name") if isinstance(settings.get("name"), str) and settings.get("name") else None
        if name is None:
            kind = job.get("type")
            name = kind.rsplit(".", 1)[-1].lower() if isinstance(kind, str) else f"jobs[{index}]"
        stages.append({"name": name, "barrier_workers": int(workers) if barrier else None, "whole": False})
    return stages


def _defaults(job: Dict[str, Any], path: str, roots: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The defaults of the job's parameters (and a function's own name), from its ``"type"``."""
    kind = job.get("type")
    if not isinstance(kind, str) or is_heavy(kind):
        return {}
    target = import_string(kind, path, tuple(roots) if roots else None)  # validation imported it already: light
    found: Dict[str, Any] = {"name": target.__name__} if inspect.isfunction(target) else {}
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return found
    found.update({key: p.default for key, p in parameters.items() if p.default is not inspect.Parameter.empty})
    return found


def plan(
    resolved: Any,
    target: Target,
    config: Any,
    macros: Any = None,
    overrides: Sequence[str] = (),
    only: Sequence[str] = (),
    force: bool = False,
    extra_conf: Sequence[str] = (),
    environ: Optional[Dict[str, str]] = None,
) -> List[StageCommand]:
    """The spark-submit commands, one per stage in pipeline order (``only``: those stages).

    ``resolved`` is the :class:`~sparkml_tf.config.ResolvedConfig` of ``config``/``macros`` with
    ``overrides``; ``config`` and ``macros`` are the sources as given (paths, URLs or inline
    JSON), passed on to the stages with the overrides and the import roots the config was
    validated with. ``extra_conf``: ``KEY=VALUE`` Spark settings for every stage. Raises
    ConfigError (exit 2) for a request that cannot work.
    """
    environ = dict(os.environ if environ is None else environ)
    _check_request(resolved, target)
    stages = pipeline_stages(resolved.config, resolved.roots)
    names = [s["name"] for s in stages]
    unknown = [name for name in only if name not in names]
    if unknown:
        raise ConfigError("PIPELINE_UNKNOWN_JOB", f"no stage named {', '.join(unknown)} in the config (stages: {', '.join(names)})", "--job")
    selected = [s for s in stages if not only or s["name"] in only]

    config_arg, macros_arg, shipped = _config_args(config, macros, target)
    app_args = [config_arg] + ([macros_arg] if macros_arg is not None else [])
    for override in overrides:
        app_args += ["--set", override]
    # Roots from SPARKML_TF_ALLOWED_IMPORTS too: a YARN container does not get this shell's environment.
    for root in resolved.roots:
        if root not in DEFAULT_ROOTS:
            app_args += ["--allow-import", root]
    if force:
        app_args.append("--force")

    common = _common_conf(target, environ)
    given = {}  # --conf on the command line: over the profile's settings, under the barrier's
    for item in extra_conf:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("SUBMIT_BAD_CONF", f"--conf takes KEY=VALUE, got {item!r}", "--conf")
        given[key] = value
    name = resolved.config.get("name") if isinstance(resolved.config, dict) else None
    commands = []
    for stage in selected:
        argv = [_spark_submit(target, environ), "--master", target.master]
        if target.deploy_mode and target.kind != "local":
            argv += ["--deploy-mode", target.deploy_mode]
        argv += ["--name", f"{name or 'sparkml-tf'}:{stage['name']}"]
        if target.env_archive:
            argv += ["--archives", _archive_arg(target.env_archive)]
        if shipped:
            argv += ["--files", ",".join(shipped)]
        resources = target.stage_resources(stage["name"])
        argv += _resource_args(target, resources, stage["barrier_workers"])
        conf = {**common, **resources["conf"], **given}
        if stage["barrier_workers"] and target.kind != "local":
            conf.update(BARRIER_CONF)
            conf["spark.task.cpus"] = str(resources.get("executor_cores", 1))
        for key, value in conf.items():
            argv += ["--conf", f"{key}={value}"]
        script, job_args = _entry(target, stage)
        argv += [script, *app_args, *job_args]
        commands.append(StageCommand(stage["name"], argv, stage["barrier_workers"]))
    return commands


def cluster_warnings(resolved: Any, target: Target) -> List[str]:
    """What works on this machine but not in cluster containers: a run directory on local disk,
    an MLflow sqlite file (macros ``paths.run_dir`` and ``mlflow.tracking_uri``, as the shipped
    configs name them)."""
    if target.kind not in ("yarn", "other"):
        return []
    macros = resolved.macros if isinstance(resolved.macros, dict) else {}
    found = []
    run_dir = (macros.get("paths") or {}).get("run_dir") if isinstance(macros.get("paths"), dict) else None
    if isinstance(run_dir, str) and _is_local_file(run_dir) and not run_dir.startswith(("/dbfs/", "/Volumes/")):
        found.append(
            f"paths.run_dir '{run_dir}' is on local disk, and each {target.master} container has its own: "
            "put it on shared storage (--set paths.run_dir=hdfs:///user/$USER/runs/NAME)"
        )
    uri = (macros.get("mlflow") or {}).get("tracking_uri") if isinstance(macros.get("mlflow"), dict) else None
    if uri is None and isinstance(macros.get("mlflow"), dict):  # null: MLFLOW_TRACKING_URI, else the sqlite default
        from sparkml_tf.tracking.mlflow_tracker import tracking_uri_in_force

        uri = tracking_uri_in_force(None)
    if isinstance(uri, str) and uri.startswith("sqlite:") and target.cluster_mode:
        found.append(
            f"mlflow.tracking_uri '{uri}' is a file in the driver's container, gone when the stage ends: "
            "point it at an MLflow server (--set mlflow.tracking_uri=http://HOST:5000)"
        )
    return found


def _check_request(resolved: Any, target: Target) -> None:
    errors = []
    spark = resolved.config.get("spark") if isinstance(resolved.config, dict) else None
    config_master = spark.get("master") if isinstance(spark, dict) else None
    if config_master and config_master != target.master:
        where = (
            "macros.spark.master" if isinstance(resolved.raw_macros.get("spark"), dict) and "master" in resolved.raw_macros["spark"] else "config.spark.master"
        )
        errors.append(ConfigError(
            "SUBMIT_MASTER_CONFLICT",
            f"the config sets the Spark master to '{config_master}', which would replace spark-submit's --master {target.master}; "
            f"leave it null so the stages run where they are submitted (--set {where}=null)",
            "spark.master",
        ))
    if target.env_archive and target.kind == "local":
        errors.append(
            ConfigError(
                "SUBMIT_TARGET_INVALID",
                f"an environment archive needs a cluster master (yarn, spark://, k8s://); {target.master} runs this machine's Python: drop --env-archive",
                "env_archive",
            )
        )
    if target.kind == "standalone" and target.cluster_mode:
        errors.append(
            ConfigError(
                "SUBMIT_TARGET_INVALID", "Spark standalone cannot run Python applications in cluster deploy mode; use deploy_mode client", "deploy_mode"
            )
        )
    if errors:
        raise ConfigErrors(errors)


def _is_local_file(source: str) -> bool:
    scheme, colon, _ = source.partition(":")
    return not colon or len(scheme) < 2 or "/" in scheme or scheme.lower() == "file"


def _config_args(config: Any, macros: Any, target: Target):
    """The config and macros arguments of each stage, and the files to ship with --files."""
    shipped, args = [], []
    for what, source in (("config", config), ("macros", macros)):
        if source is None:
            args.append(None)
            continue
        if not isinstance(source, str):
            raise ConfigError(
                "CONFIG_BAD_SOURCE",
                f"submit passes the {what} on to spark-submit, so it must be a path, a URL or inline JSON, got {type(source).__name__}",
                what,
            )
        inline = source.lstrip().startswith(("{", "["))
        if inline or not _is_local_file(source) or not (target.kind == "yarn" and target.cluster_mode):
            args.append(source)
            continue
        shipped.append(source)
        args.append(os.path.basename(source.rstrip("/")))
    if len(shipped) == 2 and args[0] == args[1]:
        raise ConfigError(
            "SUBMIT_FILES_CLASH",
            f"the config and the macros have the same file name '{args[0]}', and --files puts both in one working directory; rename one",
            "macros",
        )
    return args[0], args[1], shipped


def _archive_arg(archive: str) -> str:
    return archive if "#" in archive else f"{archive}#{ARCHIVE_ALIAS}"


def _executor_python(target: Target) -> str:
    if target.python:
        return target.python
    if target.env_archive:
        alias = target.env_archive.split("#", 1)[1] if "#" in target.env_archive else ARCHIVE_ALIAS
        return f"./{alias}/bin/python"
    return sys.executable


def _common_conf(target: Target, environ: Dict[str, str]) -> Dict[str, str]:
    python = _executor_python(target)
    conf = {"spark.pyspark.python": python, "spark.executorEnv.PYSPARK_PYTHON": python}
    if target.kind == "yarn" and target.cluster_mode:
        conf["spark.yarn.appMasterEnv.PYSPARK_PYTHON"] = python
        # The container does not get this shell's environment: MLFLOW_RUN_ID (stages log into one run) and
        # MLflow's tracking URI and experiment (a config with null mlflow settings reads them) go along.
        for name in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
            if environ.get(name):
                conf[f"spark.yarn.appMasterEnv.{name}"] = environ[name]
    elif python != sys.executable and target.kind != "local":
        # Client mode: the driver runs here, where the archive's ./env does not exist.
        conf["spark.pyspark.driver.python"] = target.driver_python or sys.executable
    conf.update(target.conf)
    return conf


def _resource_args(target: Target, resources: Dict[str, Any], barrier_workers: Optional[int]) -> List[str]:
    args = []
    if resources.get("driver_memory"):
        args += ["--driver-memory", resources["driver_memory"]]
    if resources.get("driver_cores") and target.cluster_mode:
        args += ["--driver-cores", str(resources["driver_cores"])]
    if target.kind == "local":
        return args  # executors are threads of the driver's JVM
    cores = resources.get("executor_cores")
    executors = barrier_workers or resources.get("num_executors")
    if barrier_workers:
        cores = cores or 1
    if target.kind == "standalone":
        if cores:
            args += ["--executor-cores", str(cores)]
        if executors and cores:
            args += ["--total-executor-cores", str(executors * cores)]
    else:
        if executors:
            args += ["--num-executors", str(executors)]
        if cores:
            args += ["--executor-cores", str(cores)]
    if resources.get("executor_memory"):
        args += ["--executor-memory", resources["executor_memory"]]
    return args


def _entry(target: Target, stage: Dict[str, Any]) -> Tuple[str, List[str]]:
    """``jobs/<stage>.py``, else ``jobs/run.py`` with ``--job <stage>``: spark-submit uploads it from here."""
    jobs_dir = target.jobs_dir.rstrip("/") or "."
    own = f"{jobs_dir}/{stage['name']}.py"
    if not stage["whole"] and re.fullmatch(r"[A-Za-z0-9_.-]+", stage["name"]) and os.path.isfile(own):
        return own, []
    if not os.path.isfile(f"{jobs_dir}/run.py"):
        raise ConfigError(
            "SUBMIT_NO_ENTRY_POINT",
            f"no {jobs_dir}/run.py in {os.getcwd()}: spark-submit needs the entry points of jobs/ on this machine; "
            "run from the repository root (the spark-submit/*.sh scripts do), or set jobs_dir in the target profile",
            "jobs_dir",
        )
    return f"{jobs_dir}/run.py", [] if stage["whole"] else ["--job", stage["name"]]


def _spark_submit(target: Target, environ: Dict[str, str]) -> str:
    """The profile's spark-submit, else $SPARK_HOME/bin/spark-submit, the installed pyspark's own
    (the Spark this environment's pyspark matches), or one on PATH."""
    if target.spark_submit:
        return target.spark_submit
    if environ.get("SPARK_HOME"):
        return os.path.join(environ["SPARK_HOME"], "bin", "spark-submit")
    spec = importlib.util.find_spec("pyspark")  # finds the package without importing it
    if spec is not None and spec.origin:
        bundled = os.path.join(os.path.dirname(spec.origin), "bin", "spark-submit")
        if os.path.isfile(bundled):
            return bundled
    return shutil.which("spark-submit", path=environ.get("PATH")) or "spark-submit"


def parent_run(resolved: Any, environ: Optional[Dict[str, str]] = None) -> Tuple[Any, Optional[str]]:
    """``(tracker, run_id)``: one MLflow run that every stage of a submit logs into (its id goes to
    each stage as ``MLFLOW_RUN_ID``), in the experiment the config's tracker uses. ``(None, None)``
    when ``MLFLOW_RUN_ID`` is set already (the stages log into that run), when the config tracks
    nothing, or when MLflow cannot be reached (each stage then opens its own run)."""
    environ = os.environ if environ is None else environ
    if environ.get("MLFLOW_RUN_ID"):
        return None, None
    try:
        tracker = getattr(resolved.build(), "tracking", None)
    except Exception as e:  # validated already; a build that fails here costs the shared run only
        LOGGER.warning("no MLflow run shared by the stages (%s: %s); each stage opens its own", type(e).__name__, e)
        return None, None
    if not callable(getattr(tracker, "create_run", None)):
        return None, None
    name = resolved.config.get("name") if isinstance(resolved.config, dict) else None
    try:
        run_id = tracker.create_run(str(name or "sparkml-tf"), tags={"sparkml_tf.submit": "true"})
    except SparkmlTfError as e:  # strict tracking: the stages will say so themselves
        LOGGER.warning("no MLflow run shared by the stages: %s", e)
        run_id = None
    if run_id:
        LOGGER.info("MLflow run %s: every stage logs into it (MLFLOW_RUN_ID)", run_id)
    return (tracker, run_id) if run_id else (None, None)


def run_commands(
    commands: Sequence[StageCommand], out: TextIO = sys.stdout, err: TextIO = sys.stderr, call: Callable[[List[str]], int] = subprocess.call
) -> int:
    """Run the commands in order; stop at the first that fails and return its exit code."""
    from sparkml_tf.spark.session import check_java

    check_java()  # spark-submit is a JVM launcher, whatever the master
    for index, command in enumerate(commands):
        print(f"+ {command.shell()}", file=out, flush=True)
        try:
            code = call(command.argv)
        except FileNotFoundError as e:
            raise SparkmlTfError(
                "SUBMIT_NO_SPARK_SUBMIT",
                f"cannot run {command.argv[0]} ({e.strerror}); install Spark or pyspark, set SPARK_HOME, or name it in the target's spark_submit",
                command.stage,
            ) from e
        if code != 0:
            code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
            rest = [c.stage for c in commands[index + 1:]]
            print(
                f"stage {command.stage} failed (spark-submit exit {code})" + (f"; not run: {', '.join(rest)}" if rest else ""),
                file=err,
            )
            return code
    return 0
