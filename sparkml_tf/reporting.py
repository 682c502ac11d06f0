"""Plain-text tables of what a pipeline returned, for the terminal."""

from __future__ import annotations

import numbers
from typing import Any, Dict, List


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
