"""``"@self"``, ``"@macros"``, ``"@macros_eval"``: the raw config, the raw macros, the evaluated
macros, for jobs that log what ran. ``"@@x"`` stands for the literal string ``"@x"``."""

from __future__ import annotations

import re
from typing import Any, Dict, List

from sparkml_tf.config.imports import did_you_mean
from sparkml_tf.config.paths import Key, format_path
from sparkml_tf.errors import ConfigError

REFERENCES = ("@self", "@macros", "@macros_eval")
_LOOKS_LIKE_REFERENCE = re.compile(r"@\w+")


def check_references(node: Any, keys: List[Key] = None) -> List[ConfigError]:
    keys = keys or []
    if isinstance(node, str):
        if _LOOKS_LIKE_REFERENCE.fullmatch(node) and node not in REFERENCES:
            return [
                ConfigError(
                    "CONFIG_BAD_REFERENCE",
                    f"unknown reference {node!r}: "
                    f"the references are {', '.join(REFERENCES)}{did_you_mean(node, REFERENCES)} (write '@{node}' for a literal string)",
                    format_path(keys),
                )
            ]
        return []
    if isinstance(node, dict):
        return [e for k, v in node.items() for e in check_references(v, keys + [k])]
    if isinstance(node, list):
        return [e for i, v in enumerate(node) for e in check_references(v, keys + [i])]
    return []


def resolve_reference(node: str, targets: Dict[str, Any]) -> Any:
    if node in targets:
        return targets[node]
    if node.startswith("@@"):
        return node[1:]
    return node
