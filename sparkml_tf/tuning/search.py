"""The Tune job: a hyper-parameter search over a pipeline's training job, on Spark.

1. The stages before the training job (the dataset) run once, as in ``sparkml-tf run``.
2. Optuna's TPE sampler proposes ``trials`` settings of the macros named in the space.
3. Successive halving: every trial trains for a first rung of the step budget, each trial a
   Spark task (in its own Python process, one TensorFlow thread pool, checkpoints under
   ``<output_dir>/trials/<n>/``); the best ``1/eta`` go on, resuming from their checkpoints, to a
   rung ``eta`` times longer, until the last rung ends the schedule. The others are pruned. A trial
   that early-stops has finished and keeps its score.
4. Only the training job's validation metric is used (``val_ndcg@100``, ``val_auc``): never test.
5. Every trial is an MLflow child run of this job's run (params, the validation curve by step,
   FINISHED, KILLED when pruned, FAILED with the error's last lines); a failed trial does not
   stop the search.
6. ``<output_dir>/best_macros.json`` is the macros file with the best trial's values, runnable as
   ``sparkml-tf run CONFIG <output_dir>/best_macros.json``; ``trials.json`` lists every trial.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.errors import ConfigError, DataError, SparkmlTfError

LOGGER = logging.getLogger(__name__)


def _nearest(spec: Dict[str, Any], value: Any) -> Any:
    """``value`` itself when the space holds it; a number outside a numeric range moves to the
    nearer bound (a config's ``l2`` of 0 against a log range from 1e-8: 1e-8); otherwise None."""
    if spec["type"] == "categorical":
        return value if value in spec["choices"] else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if spec["type"] == "int" and not float(value).is_integer():
        return None
    return min(max(value, spec["low"]), spec["high"])


class Tune(Job):
    def __init__(
        self,
        config: Any,
        space: Any,
        output_dir: str,
        macros: Any = None,
        overrides: Sequence[str] = (),
        trials: int = 8,
        parallelism: int = 2,
        train_job: str = "train",
        eta: int = 2,
        seed: int = 0,
        allowed_imports: Sequence[str] = (),
        enqueue: Sequence[Dict[str, Any]] = (),
        include_defaults: bool = True,
        name: str = "tune",
    ):
        from sparkml_tf.tuning.space import load_space

        for key, value, least in (("trials", trials, 1), ("parallelism", parallelism, 1), ("eta", eta, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise SparkmlTfError("CONFIG_BAD_VALUE", f"{key} must be a whole number of at least {least}, got {value!r}", key)
        self.config, self.macros, self.overrides = config, macros, list(overrides)
        self.space = load_space(space)
        self.output_dir = str(output_dir).rstrip("/")
        self.trials, self.parallelism, self.train_job, self.eta, self.seed = trials, parallelism, train_job, eta, int(seed)
        self.allowed_imports = list(allowed_imports)
        self.enqueue = [dict(e) for e in enqueue]
        self.include_defaults = bool(include_defaults)
        self.name = name

    # ---- building trials -------------------------------------------------------------------

    def _resolve(self, extra: Sequence[str] = ()):
        from sparkml_tf.config import resolve

        return resolve(self.config, self.macros, [*self.overrides, *extra], self.allowed_imports)

    def _train_job(self, pipeline) -> Any:
        jobs = {getattr(j, "name", ""): j for j in getattr(pipeline, "jobs", [])}
        job = jobs.get(self.train_job)
        if job is None or not hasattr(job, "worker"):
            raise ConfigError(
                "TUNE_NO_TRAIN_JOB", f"the config has no training job named '{self.train_job}' (jobs: {', '.join(jobs)}); set train_job", "train_job"
            )
        return job

    def trial_settings(self, number: int, params: Dict[str, Any]) -> Dict[str, Any]:
        """The training job's settings with ``params`` applied and its outputs under the trial's folder."""
        from sparkml_tf.train.launch import build_specs

        overrides = [f"{key}={json.dumps(value)}" for key, value in params.items()]
        job = self._train_job(self._resolve(overrides).build())
        settings = job.settings(force=True)
        folder = f"{self.output_dir}/trials/{number}"
        for key in list(settings):
            if key.endswith("_dir") and key != "dataset_dir":
                settings[key] = f"{folder}/{key[: -len('_dir')]}"
        settings["tf_threads"] = 1  # trials share the executor's cores
        return build_specs(settings)

    # ---- the search ------------------------------------------------------------------------

    def classic_spark_reason(self) -> str:
        return "tuning runs its trials as Spark tasks through sparkContext"

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        import optuna

        from sparkml_tf.engine.base import Pipeline
        from sparkml_tf.io.layout import DatasetLayout
        from sparkml_tf.tracking.base import NullTracker
        from sparkml_tf.train.schedule import plan
        from sparkml_tf.tuning.space import distributions

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        base = self._resolve().build()
        job = self._train_job(base)
        before = [j.name for j in base.jobs[: base.jobs.index(job)]]
        if before:
            ctx.describe(f"{self.name}: {', '.join(before)}")
            Pipeline(base.jobs, name=base.name).run(RunContext(tracker=NullTracker(), _spark=ctx.spark), only=before)
        settings = job.settings()
        stats = DatasetLayout(settings["dataset_dir"]).read_stats(["num_train_examples"])
        schedule = plan(int(stats["num_train_examples"]), 1, settings)
        rungs = max(1, math.ceil(math.log(self.trials, self.eta)))
        budgets = [max(1, int(schedule.max_steps * self.eta ** (r - rungs))) for r in range(rungs)] + [None]
        LOGGER.info(
            "%s: %d trials, rungs at steps %s of %d (eta %d), %d at a time",
            self.name, self.trials, budgets[:-1], schedule.max_steps, self.eta, self.parallelism,
        )
        params = {"trials": self.trials, "eta": self.eta, "space": self.space, "train_job": self.train_job, "rungs": budgets[:-1]}
        ctx.tracker.log_params({f"{self.name}.{k}": v for k, v in params.items()})

        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.seed))
        dists = distributions(self.space)
        for params in self._first_trials():
            study.enqueue_trial(params, skip_if_exists=True)
        records: List[Dict[str, Any]] = []
        for number in range(self.trials):
            trial = study.ask(dists)
            record = {"number": number, "params": dict(trial.params), "trial": trial, "state": "RUNNING", "value": None, "history": [], "error": None}
            try:
                record["settings"] = self.trial_settings(number, trial.params)
            except SparkmlTfError as e:  # this trial's values are refused: record it, go on
                self._close(ctx, study, record, "FAILED", error=e.format())
            records.append(record)

        metric = job.objective
        for rung, budget in enumerate(budgets):
            active = [r for r in records if r["state"] == "RUNNING"]
            if not active:
                break
            ctx.describe(f"{self.name}: rung {rung + 1}/{len(budgets)}, {len(active)} trial(s)" + (f" to step {budget}" if budget else " to the end"))
            for record, outcome in zip(active, self._run_rung(ctx, job.worker(), active, budget)):
                self._absorb(record, outcome, metric)
                if record["error"]:
                    self._close(ctx, study, record, "FAILED", error=record["error"])
                elif record["finished"] or budget is None:
                    self._close(ctx, study, record, "FINISHED")
            running = sorted((r for r in records if r["state"] == "RUNNING"), key=lambda r: r["value"], reverse=True)
            keep = max(1, math.ceil(len(running) / self.eta))
            for record in running[keep:]:
                self._close(ctx, study, record, "PRUNED", step=budget)

        return self._report(ctx, study, records, metric)

    def _first_trials(self) -> List[Dict[str, Any]]:
        """Trials to try first: the config's own values of the space's keys (a number outside its
        range at the nearer bound), so the search starts from what the user has, then ``enqueue``."""
        first = []
        if self.include_defaults:
            macros = self._resolve().macros
            current = {}
            for key in self.space:
                node = macros
                for part in key.split("."):
                    node = node.get(part) if isinstance(node, dict) else None
                current[key] = node
            nearest = {key: _nearest(self.space[key], value) for key, value in current.items()}
            if all(value is not None for value in nearest.values()):
                moved = {key: (current[key], value) for key, value in nearest.items() if value != current[key]}
                if moved:
                    LOGGER.info("%s: the config's own values tried first, moved into the space: %s", self.name,
                                ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in moved.items()))
                first.append(nearest)
            else:
                LOGGER.info("%s: the config's own values %s are not all in the space; not tried first", self.name, current)
        return first + self.enqueue

    def _run_rung(self, ctx: RunContext, worker, active: List[Dict[str, Any]], budget: Optional[int]) -> List[Dict[str, Any]]:
        """Each active trial trains to ``budget`` (None: to the end) as one Spark task, at most
        ``parallelism`` at a time; a list of ``{"result": summary}`` or ``{"error", "tail"}``."""
        from sparkml_tf.spark.barrier import run_in_child
        from sparkml_tf.spark.session import spark_context

        payloads = []
        for record in active:
            settings = dict(record["settings"], pause_at_step=budget, force=False)
            payloads.append((f"trial {record['number']}", settings))
        outcomes: List[Dict[str, Any]] = []
        sc = spark_context(ctx.spark, "tuning")
        for start in range(0, len(payloads), self.parallelism):
            chunk = payloads[start : start + self.parallelism]
            fn = worker  # plain locals only in the closure Spark pickles
            outcomes += sc.parallelize(chunk, len(chunk)).map(lambda item: run_in_child(fn, item[1], item[0])).collect()
        return outcomes

    @staticmethod
    def _absorb(record: Dict[str, Any], outcome: Dict[str, Any], metric: str) -> None:
        if "error" in outcome:
            tail = outcome.get("tail", "").strip().splitlines()
            record["error"] = f"{outcome['error']}: " + " | ".join(tail[-6:])
            return
        summary = outcome["result"]
        record["history"] = summary.get("history", [])
        value = summary.get(metric)
        record["value"] = float(value) if value is not None and math.isfinite(float(value)) else float("-inf")
        record["finished"] = bool(summary.get("finished", True))
        record["steps"] = summary.get("steps")

    def _close(self, ctx: RunContext, study, record: Dict[str, Any], state: str, error: Optional[str] = None, step: Optional[int] = None) -> None:
        import optuna

        record["state"] = state
        trial = record["trial"]
        if state == "FINISHED":
            study.tell(trial, record["value"])
        elif state == "PRUNED":
            trial.report(record["value"], step or 0)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            record["error"] = error
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            LOGGER.warning("%s: trial %d failed (the search goes on): %s", self.name, record["number"], error)
        tags = {"sparkml_tf.tune": self.name, "trial": str(record["number"])}
        if error:
            tags["error"] = error[:4000]
        params = {**record["params"], **({"best_value": record["value"]} if record["value"] is not None else {})}
        status = state if state != "PRUNED" else "KILLED"
        ctx.tracker.log_child_run(f"{self.name}-trial-{record['number']}", params, record["history"], status=status, tags=tags)

    def _report(self, ctx: RunContext, study, records: List[Dict[str, Any]], metric: str) -> Dict[str, Any]:
        from sparkml_tf.config.overrides import apply_overrides
        from sparkml_tf.io.filesystems import write_json

        done = [r for r in records if r["state"] == "FINISHED"]
        table = [{k: r.get(k) for k in ("number", "params", "state", "value", "steps", "error")} for r in records]
        write_json(f"{self.output_dir}/trials.json", table)
        if not done:
            raise DataError(
                "TUNE_NO_TRIAL_FINISHED", f"none of the {len(records)} trials finished; see {self.output_dir}/trials.json for their errors", self.output_dir
            )
        best = max(done, key=lambda r: r["value"])
        raw = self._resolve()
        overrides = [f"{key}={json.dumps(value)}" for key, value in best["params"].items()]
        _, macros, problems = apply_overrides(raw.raw_config, raw.raw_macros, overrides)
        if problems:
            raise problems[0]
        path = f"{self.output_dir}/best_macros.json"
        write_json(path, macros)
        summary = {
            "best_trial": best["number"],
            f"best_{metric}": best["value"],
            "best_params": best["params"],
            "best_macros": path,
            "finished": len(done),
            "pruned": sum(r["state"] == "PRUNED" for r in records),
            "failed": sum(r["state"] == "FAILED" for r in records),
        }
        counts = {"trials_finished": len(done), "trials_pruned": summary["pruned"], "trials_failed": summary["failed"]}
        ctx.tracker.log_metrics({f"best_{metric}": best["value"], **counts})
        ctx.tracker.log_params({f"{self.name}.best.{k}": v for k, v in best["params"].items()})
        if "://" not in path and os.path.exists(path):
            ctx.tracker.log_artifact(path, "tune")
        LOGGER.info(
            "%s: best trial %d, %s %.4f, params %s; run it with: sparkml-tf run CONFIG %s",
            self.name, best["number"], metric, best["value"], best["params"], path,
        )
        return summary
