"""Plain-text tables of what a pipeline returned, for the terminal."""

from __future__ import annotations

import numbers
from typing import Any, Dict, List, Optional


def _flat_numbers(value: Any) -> bool:
    """Flat metrics: numbers, with perhaps a few notes about a baseline (``"ease/skipped": "why"``);
    a summary with other text (a scoring run's date and paths) is not a metrics table."""
    return (
        isinstance(value, dict)
        and any(isinstance(v, numbers.Number) for v in value.values())
        and all(isinstance(v, numbers.Number) or (isinstance(v, str) and "/" in str(k)) for k, v in value.items())
    )


def metrics_table(metrics: Dict[str, float], default_row: str = "model") -> str:
    """``{"recall@20": .3, "popular/recall@20": .1}`` -> a row per metric, a column per model."""
    columns: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        column, _, name = key.rpartition("/")
        columns.setdefault(column or default_row, {})[name] = value
    rows: List[str] = []
    for column in columns.values():
        rows += [r for r in column if r not in rows]
    width = max(len(r) for r in rows)
    widths = [max(12, len(c)) for c in columns]
    lines = [" ".join([" " * width] + [f"{c:>{w}}" for c, w in zip(columns, widths)])]
    for row in rows:
        cells = [f"{_fmt(column[row]) if row in column else '':>{w}}" for column, w in zip(columns.values(), widths)]
        lines.append(" ".join([f"{row:<{width}}"] + cells))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return str(value)
    return f"{value:.4f}"


def _compares_models(metrics: Dict[str, Any]) -> bool:
    """Ranking metrics (``recall@20``) or baseline columns (``popular/auc``): the rest is the model's."""
    return any("@" in key or "/" in key for key in metrics)


def format_results(results: Dict[str, Any]) -> str:
    """A table for each job that returned flat numeric metrics, the last one (evaluation) first."""
    blocks = [
        f"== {name} ==\n{metrics_table(value, 'model' if _compares_models(value) else name)}"
        for name, value in reversed(list(results.items()))
        if _flat_numbers(value)
    ]
    return "\n\n".join(blocks[:1])


HEADLINE = ("ndcg@100", "recall@20", "auc", "logloss")


def headline(metrics: Dict[str, Any], limit: int = 2) -> str:
    """``ndcg@100 0.4437 (popular 0.1301, ease 0.4446), recall@20 ...``: the model's main numbers,
    each with the baselines' beside it."""
    own = {k: v for k, v in metrics.items() if "/" not in k and isinstance(v, numbers.Number) and not isinstance(v, bool)}
    names = [k for k in HEADLINE if k in own] or [k for k in own if "@" in k] or list(own)
    parts = []
    for name in names[:limit]:
        others = [f"{k.rpartition('/')[0]} {_fmt(v)}" for k, v in metrics.items() if k.endswith("/" + name) and isinstance(v, numbers.Number)]
        parts.append(f"{name} {_fmt(own[name])}" + (f" ({', '.join(others)})" if others else ""))
    return ", ".join(parts)


def open_hint(run: Dict[str, str]) -> str:
    """How to look at an MLflow run: the URL of a tracking server, else the ``mlflow ui`` command."""
    # MLflow 3's UI opens experiments on its GenAI view unless told otherwise: ask for the runs view.
    uri, path = run.get("tracking_uri") or "", f"#/experiments/{run.get('experiment_id')}/runs/{run.get('run_id')}?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{path}"
    if uri.startswith("databricks"):
        return f"the workspace's Experiments page, experiment {run.get('experiment')}"
    return f"mlflow ui --backend-store-uri {uri}   (then http://127.0.0.1:5000/{path})"


def tensorboard_dirs(results: Any) -> List[str]:
    """The TensorBoard log dirs the training jobs of a run wrote (``tensorboard_dir`` in their summaries)."""
    if not isinstance(results, dict):
        return []
    return [str(v["tensorboard_dir"]) for v in results.values() if isinstance(v, dict) and v.get("tensorboard_dir")]


def tensorboard_hint(results: Any) -> str:
    """``tensorboard --logdir runs/x/tensorboard``: the folder holding every training job's logs."""
    dirs = tensorboard_dirs(results)
    if not dirs:
        return ""
    parents = sorted({d.rstrip("/").rpartition("/")[0] or d for d in dirs})
    return f"tensorboard --logdir {','.join(parents)}   (pip install tensorboard; then http://localhost:6006)"


def training_traces(results: Any) -> List[str]:
    """The profiler traces (``*.xplane.pb``) of a ``--profile`` run's training jobs, newest per job."""
    import glob
    import os

    traces = []
    for logdir in tensorboard_dirs(results):
        local = logdir[len("file://") :] if logdir.startswith("file://") else logdir
        runs = sorted(glob.glob(os.path.join(local, "plugins", "profile", "*")))
        if runs:
            traces += sorted(glob.glob(os.path.join(runs[-1], "*.xplane.pb")))
    return traces


def profile_table(timings: List[Dict[str, Any]], traces: List[str], spark_stages: Optional[List[Dict[str, Any]]] = None, longest: int = 5) -> str:
    """``--profile``'s table: each stage's wall seconds, this process's CPU seconds and its child
    processes' (a local Spark's JVM and Python workers, the training processes), the ``longest``
    Spark stages (from the Spark UI's REST API), then the traces."""
    if not timings:
        return ""
    width = max(len("total"), *(len(t["stage"]) for t in timings))
    lines = ["== profile ==", f"{'stage':<{width}} {'wall s':>9} {'cpu s':>9} {'child cpu s':>12}"]
    for t in timings:
        note = "  (failed)" if t.get("failed") else ""
        lines.append(f"{t['stage']:<{width}} {t['wall_s']:>9.1f} {t['cpu_s']:>9.1f} {t['children_cpu_s']:>12.1f}{note}")
    total = {k: sum(t[k] for t in timings) for k in ("wall_s", "cpu_s", "children_cpu_s")}
    lines.append(f"{'total':<{width}} {total['wall_s']:>9.1f} {total['cpu_s']:>9.1f} {total['children_cpu_s']:>12.1f}")
    if spark_stages:
        lines.append(f"longest Spark stages of {len(spark_stages)} (wall s, executor run s summed over tasks, tasks):")
        for stage in spark_stages[:longest]:
            where = stage["description"] or stage["name"]
            numbers = f"{stage['wall_s'] or 0.0:>8.1f} {stage['executor_run_s']:>8.1f} {stage['tasks']:>6}"
            lines.append(f"  {numbers}  stage {stage['stage_id']}: {where} ({stage['name']})")
    for trace in traces:
        lines.append(f"trace  {trace}")
    if traces:
        lines.append("open the traces in TensorBoard's Profile tab (pip install tensorboard tensorboard-plugin-profile)")
    return "\n".join(lines)


def run_summary(run: Optional[Dict[str, str]], run_dir: Optional[str], results: Any) -> str:
    """The end of ``sparkml-tf run``: the MLflow run and how to open it, the run directory, the
    TensorBoard command, the headline metrics."""
    rows = []
    if run and run.get("run_id"):
        rows.append(("MLflow run", f"{run['run_id']} (experiment {run.get('experiment')}, {run.get('tracking_uri')})"))
        rows.append(("open it", open_hint(run)))
    if run_dir:
        rows.append(("run directory", str(run_dir)))
    hint = tensorboard_hint(results)
    if hint:
        rows.append(("TensorBoard", hint))
    if isinstance(results, dict):
        last = next((value for value in reversed(list(results.values())) if _flat_numbers(value)), None)
        if last:
            rows.append(("metrics", headline(last)))
    if not rows:
        return ""
    width = max(len(name) for name, _ in rows)
    return "\n".join(["== run =="] + [f"{name:<{width}}  {value}" for name, value in rows])
