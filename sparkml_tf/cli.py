"""``sparkml-tf``: run | validate | render | from-mlflow | submit | tune.

Exit codes: 0 success, 2 config or usage error, 1 runtime failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import List, Optional, Sequence

from sparkml_tf.errors import ConfigError, SparkmlTfError

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2
LOGGER = logging.getLogger("sparkml_tf.cli")


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config JSON file, or inline JSON starting with '{'")
    parser.add_argument("macros", nargs="?", default=None, help="macros JSON file, or inline JSON (optional)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override an existing key, by dotted path into the config or the macros "
                             "(e.g. --set params.batch_size=1024, --set jobs[2].epochs=3); VALUE is JSON or a string")
    parser.add_argument("--allow-import", dest="allowed", action="append", default=[], metavar="ROOT",
                        help="also allow 'type' import strings under this root (a package, or a dotted prefix such as mypkg.models)")


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", dest="only", action="append", default=[], metavar="NAME",
                        help="run only this job of the pipeline (repeatable): one spark-submit per stage")
    parser.add_argument("--force", action="store_true", help="redo jobs whose outputs are already complete")
    parser.add_argument("--profile", action="store_true",
                        help="trace training steps 10-20 with TensorFlow's profiler (TensorBoard's profile tab), "
                             "and print each stage's wall and CPU seconds at the end (also logged as profile/stages.json)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparkml-tf", description="Config-driven TensorFlow recommenders on Spark.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="validate, then run a pipeline or job config",
                         description="Validate the config (nothing starts if it is invalid), then run it.")
    _add_config_args(run)
    _add_run_args(run)

    validate = sub.add_parser("validate", help="check a config without running anything",
                              description="Report every problem in a config, each with its code and key path. "
                                          "Starts no Spark; imports TensorFlow only for configs that name Keras objects.")
    _add_config_args(validate)

    render = sub.add_parser("render", help="print the resolved config (macros filled) as JSON",
                            description="Print the config with overrides applied and macros filled.")
    _add_config_args(render)
    render.add_argument("--macros-only", action="store_true", help="print the evaluated macros instead")

    rerun = sub.add_parser("from-mlflow", help="download the config and macros logged by an MLflow run and run them again",
                           description="Rerun what an earlier run logged (config/config.json and config/macros.json).")
    rerun.add_argument("run_id", help="the MLflow run id")
    rerun.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db)")
    rerun.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="as for run")
    rerun.add_argument("--allow-import", dest="allowed", action="append", default=[], metavar="ROOT", help="as for run")
    rerun.add_argument("--dry-run", action="store_true", help="download and validate only")
    _add_run_args(rerun)

    submit = sub.add_parser(
        "submit", help="print or run the spark-submit commands of a pipeline for a target cluster",
        description="Validate the config here (nothing runs if it is invalid), then build one spark-submit "
                    "command per stage from a target profile: master, deploy mode, the packed environment "
                    "(--archives), the executors' Python, --files for the config and macros, and each stage's "
                    "resources (the barrier training stage gets train.num_workers executors, one task each). "
                    "With --dry-run, print them in pipeline order; else run them in order, stopping at the "
                    "first that fails, with its exit code.",
        epilog="example: sparkml-tf submit conf/movielens/config.json conf/movielens/macros.json "
               "--target conf/targets/yarn-cluster.json --set paths.run_dir=hdfs:///user/me/runs/ml --dry-run")
    _add_config_args(submit)
    submit.add_argument("--target", required=True, metavar="PROFILE",
                        help="target profile JSON, a path or URL: conf/targets/local.json, standalone.json, "
                             "yarn-client.json, yarn-cluster.json")
    submit.add_argument("--job", dest="only", action="append", default=[], metavar="NAME",
                        help="submit only this stage (repeatable); stages keep their pipeline order")
    submit.add_argument("--force", action="store_true", help="passed to every stage: redo outputs that are already complete")
    submit.add_argument("--env-archive", default=None, metavar="PATH",
                        help="packed Python environment for the executors, shipped as --archives PATH#env "
                             "(replaces the profile's env_archive); they run ./env/bin/python")
    submit.add_argument("--master", default=None, metavar="URL", help="replace the profile's master (e.g. spark://host:7077)")
    submit.add_argument("--conf", dest="spark_conf", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra Spark setting for every stage (e.g. --conf spark.yarn.queue=etl)")
    submit.add_argument("--dry-run", action="store_true", help="print the commands, one line per stage, and run nothing")
    tune = sub.add_parser(
        "tune", help="hyper-parameter search over a pipeline's training job, trials as Spark tasks",
        description="Run the stages before the training job, then a search: Optuna samples the macros named in "
                    "the space, trials train as Spark tasks (validation metric only), successive halving stops "
                    "the weaker ones early, every trial is an MLflow child run. Writes OUTPUT/best_macros.json, "
                    "runnable with `sparkml-tf run CONFIG OUTPUT/best_macros.json`.",
        epilog="example: sparkml-tf tune conf/movielens/config.json conf/movielens/macros.json "
               "--space conf/movielens/space.json --trials 8 --parallelism 2")
    _add_config_args(tune)
    tune.add_argument("--space", required=True, metavar="SPACE", help="search space JSON: macro key -> distribution (docs/tuning.md)")
    tune.add_argument("--trials", type=int, default=8, help="trials to sample (default 8)")
    tune.add_argument("--parallelism", type=int, default=2, help="trials trained at once, one Spark task each (default 2)")
    tune.add_argument("--eta", type=int, default=2, help="successive halving: keep 1/eta of the trials at each rung (default 2)")
    tune.add_argument("--job", dest="train_job", default="train", metavar="NAME", help="the training job to tune (default train)")
    tune.add_argument("--output", default=None, metavar="DIR", help="where trials and best_macros.json go (default: <paths.run_dir>/tune)")
    tune.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    return parser


def _resolve(args):
    from sparkml_tf.config import resolve

    return resolve(args.config, args.macros, args.overrides, args.allowed)


def cmd_validate(args) -> int:
    resolved = _resolve(args)
    resolved.build()  # every job and sub-object, as run builds them: their checks of the settings run too
    for warning in resolved.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"OK: {args.config} is valid")
    return EXIT_OK


def cmd_render(args) -> int:
    resolved = _resolve(args)
    print(json.dumps(resolved.macros if args.macros_only else resolved.config, indent=2))
    return EXIT_OK


def _resolve_to_run(args):
    """As :func:`_resolve`; the ``--allow-import`` roots also go to what builds model specs later
    (:func:`sparkml_tf.train.launch.build_specs`), through the environment of this process."""
    resolved = _resolve(args)
    if args.allowed:
        from sparkml_tf.config.imports import ENV_ALLOWED

        os.environ[ENV_ALLOWED] = ",".join(resolved.roots)
    return resolved


def cmd_run(args) -> int:
    resolved = _resolve_to_run(args)
    target = resolved.build()
    from sparkml_tf.engine.base import Job, Pipeline, RunContext

    if isinstance(target, Pipeline):
        results = target.run(only=args.only, force=args.force, profile=args.profile)
    elif isinstance(target, Job):
        results = target.run(RunContext(force=args.force, profile=args.profile))
    elif callable(target):
        results = target()
    else:
        raise ConfigError(
            "CONFIG_NOT_RUNNABLE",
            f"the config builds a {type(target).__name__}, which has no run(); make the top level a sparkml_tf.engine.Pipeline or a Job",
            "<root>",
        )
    _print_results(results)
    _print_summary(target, resolved, results)
    if args.profile:
        _print_profile(target, results)
    return EXIT_OK


def cmd_from_mlflow(args) -> int:
    from sparkml_tf.tracking import download_configs, run_tags
    from sparkml_tf.tracking.provenance import code_differences

    paths = download_configs(args.run_id, args.tracking_uri)
    print(f"downloaded the config of run {args.run_id} to {paths['config']}")
    differences = code_differences(run_tags(args.run_id, args.tracking_uri))
    if differences:
        print(f"warning: run {args.run_id} was made by other code than this: {'; '.join(differences)}. "
              "The rerun uses the installed code, so its results may differ.", file=sys.stderr)
    args.config = paths["config"]
    args.macros = paths["macros"] if os.path.exists(paths["macros"]) else None
    if args.dry_run:
        return cmd_validate(args)
    return cmd_run(args)


def cmd_submit(args) -> int:
    from sparkml_tf.deploy.submit import cluster_warnings, load_target, parent_run, plan, run_commands

    resolved = _resolve(args)
    target = load_target(args.target).override(master=args.master, env_archive=args.env_archive)
    commands = plan(resolved, target, args.config, args.macros, args.overrides, only=args.only, force=args.force, extra_conf=args.spark_conf)
    for warning in resolved.warnings + cluster_warnings(resolved, target):
        print(f"warning: {warning}", file=sys.stderr)
    if args.dry_run:
        for command in commands:
            print(command.shell())
        return EXIT_OK
    # One MLflow run for all the stages: its id goes to each (the environment here, a YARN driver's conf).
    tracker, run_id = parent_run(resolved)
    if not run_id:
        return run_commands(commands)
    os.environ["MLFLOW_RUN_ID"] = run_id
    code = EXIT_RUNTIME
    try:
        commands = plan(resolved, target, args.config, args.macros, args.overrides, only=args.only, force=args.force, extra_conf=args.spark_conf)
        code = run_commands(commands)
    finally:
        os.environ.pop("MLFLOW_RUN_ID", None)
        tracker.terminate_run(run_id, "FINISHED" if code == 0 else "FAILED")
    print(f"MLflow run {run_id}: every stage logged into it")
    return code


def cmd_tune(args) -> int:
    from sparkml_tf.engine.base import Pipeline
    from sparkml_tf.tuning.search import Tune

    resolved = _resolve_to_run(args)
    base = resolved.build()
    output = args.output or _run_dir(resolved, "tune")
    tune = Tune(args.config, args.space, output, macros=args.macros, overrides=args.overrides, trials=args.trials, parallelism=args.parallelism,
                train_job=args.train_job, eta=args.eta, seed=args.seed, allowed_imports=args.allowed)
    pipeline = Pipeline([tune], name=f"{getattr(base, 'name', 'pipeline')}-tune", spark=getattr(base, "spark", None), tracking=getattr(base, "tracking", None))
    results = pipeline.run()
    summary = results[tune.name]
    print(json.dumps(summary, indent=2))
    print(f"run the best trial's settings with: sparkml-tf run {args.config} {summary['best_macros']}")
    return EXIT_OK


def _run_dir(resolved, leaf: str) -> str:
    run_dir = ((resolved.macros or {}).get("paths") or {}).get("run_dir")
    if not run_dir:
        raise ConfigError("TUNE_NO_OUTPUT", "the macros have no paths.run_dir; give --output DIR", "--output")
    return f"{str(run_dir).rstrip('/')}/{leaf}"


def _print_summary(target, resolved, results) -> None:
    """Where the run went: its MLflow run and how to open it, the run directory, the headline metrics."""
    from sparkml_tf.reporting import run_summary

    tracker = getattr(target, "tracking", None)
    run = tracker.run_info() if tracker is not None and hasattr(tracker, "run_info") else None
    run_dir = ((resolved.macros or {}).get("paths") or {}).get("run_dir")
    text = run_summary(run, run_dir, results)
    if text:
        print(text)


def _print_profile(target, results) -> None:
    """``--profile``: each stage's wall and CPU seconds, and where the training traces are."""
    from sparkml_tf.reporting import profile_table, training_traces

    text = profile_table(getattr(target, "last_timings", []), training_traces(results), getattr(target, "last_spark_stages", None))
    if text:
        print(text)


def _print_results(results) -> None:
    """Print what the last job returned when it is a flat table of numbers (metrics)."""
    if not isinstance(results, dict) or not results:
        return
    from sparkml_tf.reporting import format_results

    text = format_results(results)
    if text:
        print(text)


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "render": cmd_render, "from-mlflow": cmd_from_mlflow, "submit": cmd_submit, "tune": cmd_tune}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from sparkml_tf import console

    # TensorFlow, absl, gRPC and CUDA probing noise off the console (errors still show), in this
    # process and those it starts (local Python workers and training processes inherit the variables).
    console.quiet_environment()
    console.quiet_tensorflow_imports()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:
        console.quiet_loggers()
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        print(e.format(), file=sys.stderr)
        return EXIT_CONFIG
    except SparkmlTfError as e:
        LOGGER.debug("failure", exc_info=True)
        print(e.format(), file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_RUNTIME


def entry(argv: Optional[List[str]] = None) -> None:
    sys.exit(main(argv))


if __name__ == "__main__":
    entry()
