"""Plain-text tables of what a pipeline returned, for the terminal."""

from __future__ import annotations

import numbers
from typing import Any, Dict, List


def _flat_numbers(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, numbers.Number) for v in value.values())


def metrics_table(metrics: Dict[str, float], default_row: str = "model") -> str:
    """``{"recall@20": .3, "popular/recall@20": .1}`` -> rows model / popular, a column per metric."""
    rows: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        row, _, name = key.rpartition("/")
        rows.setdefault(row or default_row, {})[name] = value
    columns: List[str] = []
    for row in rows.values():
        columns += [c for c in row if c not in columns]
    width = max(len(r) for r in rows)
    header = " ".join([" " * width] + [f"{c:>12}" for c in columns])
    lines = [header]
    for name, row in rows.items():
        cells = [f"{_fmt(row[c]):>12}" if c in row else " " * 12 for c in columns]
        lines.append(" ".join([f"{name:<{width}}"] + cells))
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if isinstance(value, numbers.Integral):
        return str(value)
    return f"{value:.4f}"


def format_results(results: Dict[str, Any]) -> str:
    """A table for each job that returned flat numeric metrics, the last one (evaluation) first."""
    blocks = [f"== {name} ==\n{metrics_table(value, 'model' if any('/' in k for k in value) else name)}" for name, value in reversed(list(results.items())) if _flat_numbers(value)]
    return "\n\n".join(blocks[:1])
