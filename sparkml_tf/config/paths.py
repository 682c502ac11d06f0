"""Key paths into a config: ``jobs[2].trainer.epochs`` <-> ``["jobs", 2, "trainer", "epochs"]``."""

from __future__ import annotations

import re
from typing import List, Sequence, Union

Key = Union[str, int]
ROOT = "<root>"  # the path of the top-level object itself

_NAME = r"[^.\[\]=]+"
_WHOLE = re.compile(rf"{_NAME}(\.{_NAME}|\[\d+\])*")
_TOKEN = re.compile(rf"({_NAME})|\[(\d+)\]")


def format_path(keys: Sequence[Key]) -> str:
    if not keys:
        return ROOT
    out = ""
    for key in keys:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else str(key)
    return out


def parse_path(text: str) -> List[Key]:
    """Parse ``a.b[2].c``; raises ValueError on anything else (``a..b``, ``a[x]``, ``[0]``)."""
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"cannot parse key path {text!r}; expected names joined by '.' and list indexes like [2]")
    return [name if name else int(index) for name, index in _TOKEN.findall(text)]
