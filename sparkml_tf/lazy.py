"""Lazy re-exports (PEP 562), so ``sparkml_tf.retrieval.Train`` stays a short import string while
``import sparkml_tf.retrieval`` loads nothing heavy."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List


def lazy_exports(package: str, names: Dict[str, str]) -> "tuple[Callable[[str], Any], Callable[[], List[str]]]":
    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> List[str]:
        return sorted(list(names) + list(importlib.import_module(package).__dict__))

    return __getattr__, __dir__
