"""Callables that config tests build (importable as ``cfg_targets`` from this folder)."""

import os  # noqa: F401  (walked through by the escape tests: a module global, not a submodule)
from shutil import rmtree  # noqa: F401  (imported, not defined here: the allow-list must refuse it)
from subprocess import check_output  # noqa: F401  (same)
from typing import Optional


class Point:
    def __init__(self, x: int, y: int = 0, label: Optional[str] = None):
        self.x, self.y, self.label = x, y, label


def add(a: float, b: float = 1.0) -> float:
    return a + b


def collect(*items, **named):
    return list(items), dict(named)


def explode(value: int):
    raise RuntimeError(f"cannot take {value}")


NOT_CALLABLE = 3


def refuse(mode: str):
    from sparkml_tf.errors import SparkmlTfError

    raise SparkmlTfError("SOME_BAD_VALUE", "mode must be 'even'", "mode")
