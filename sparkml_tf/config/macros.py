"""Macros: ``"$name:key"`` placeholders filled from a second JSON file.

A placeholder that is a whole string takes the macro's value with its type (``"$params:epochs"``
-> ``3``); one inside a longer string is formatted into it (``"$paths:run_dir/dataset"``).
Macro values may use other macros; they are resolved in dependency order, and a cycle is
reported with its chain.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Set, Tuple

from sparkml_tf.config.imports import did_you_mean
from sparkml_tf.config.paths import Key, format_path
from sparkml_tf.errors import ConfigError

PLACEHOLDER = re.compile(r"\$([A-Za-z_]\w*):([A-Za-z_]\w*)")

Ref = Tuple[str, str]


def find_refs(item: Any) -> List[Tuple[Ref, List[Key]]]:
    """Every ``(macro, key)`` used in ``item``, with the key path where it sits."""
    found: List[Tuple[Ref, List[Key]]] = []

    def walk(node: Any, keys: List[Key]) -> None:
        if isinstance(node, str):
            found.extend(((m.group(1), m.group(2)), keys) for m in PLACEHOLDER.finditer(node))
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, keys + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, keys + [i])

    walk(item, [])
    return found


def missing_error(ref: Ref, macros: Dict[str, Any], where: str) -> ConfigError:
    name, key = ref
    if name not in macros:
        hint = did_you_mean(name, macros)
        why = f"there is no macro '{name}' (defined: {', '.join(sorted(macros)) or 'none'}){hint}"
    else:
        hint = did_you_mean(key, macros[name])
        why = f"macro '{name}' has no key '{key}' (it has: {', '.join(sorted(macros[name]))}){hint}"
    return ConfigError("CONFIG_MACRO_MISSING", f"'${name}:{key}' is not filled: {why}; add it to the macros file or pass --set {name}.{key}=VALUE", where)


def substitute(node: Any, values: Dict[Ref, Any]) -> Any:
    """Replace placeholders with ``values``; unknown refs are left in place (validation reports them)."""
    if isinstance(node, str):
        whole = PLACEHOLDER.fullmatch(node)
        if whole:
            ref = (whole.group(1), whole.group(2))
            return values[ref] if ref in values else node

        def one(match: "re.Match[str]") -> str:
            ref = (match.group(1), match.group(2))
            return str(values[ref]) if ref in values else match.group(0)

        return PLACEHOLDER.sub(one, node)
    if isinstance(node, dict):
        return {k: substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values) for v in node]
    return node


def evaluate_macros(macros: Dict[str, Any]) -> Tuple[Dict[str, Any], List[ConfigError]]:
    """Fill macros that use other macros, in dependency order.

    Returns the evaluated macros and every problem found (missing refs, cycles); values that
    could not be resolved keep their placeholders.
    """
    errors: List[ConfigError] = []
    if not isinstance(macros, dict) or any(not isinstance(v, dict) for v in macros.values()):
        bad = [k for k, v in (macros.items() if isinstance(macros, dict) else []) if not isinstance(v, dict)]
        return {}, [
            ConfigError(
                "CONFIG_MACROS_INVALID",
                "macros must be a JSON object of objects, like {\"params\": {\"epochs\": 3}}",
                format_path(bad[:1]) if bad else "<macros>",
            )
        ]

    raw: Dict[Ref, Any] = {(name, key): value for name, group in macros.items() for key, value in group.items()}
    deps: Dict[Ref, List[Tuple[Ref, str]]] = {
        ref: [(dep, format_path([ref[0], ref[1], *keys])) for dep, keys in find_refs(value)] for ref, value in raw.items()
    }
    resolved: Dict[Ref, Any] = {}
    state: Dict[Ref, str] = {}
    reported_cycles: Set[frozenset] = set()

    def visit(ref: Ref, chain: List[Ref]) -> None:
        if state.get(ref) == "done":
            return
        if state.get(ref) == "active":
            cycle = chain[chain.index(ref):] + [ref]
            key = frozenset(cycle)
            if key not in reported_cycles:
                reported_cycles.add(key)
                text = " -> ".join(f"${n}:{k}" for n, k in cycle)
                errors.append(
                    ConfigError(
                        "CONFIG_MACRO_CYCLE",
                        f"macros refer to each other in a cycle: {text}; break the cycle by giving one of them a plain value",
                        format_path(list(cycle[0])),
                    )
                )
            return
        state[ref] = "active"
        for dep, where in deps[ref]:
            if dep not in raw:
                errors.append(missing_error(dep, macros, where))
            else:
                visit(dep, chain + [ref])
        resolved[ref] = substitute(raw[ref], resolved)
        state[ref] = "done"

    for ref in raw:
        visit(ref, [])
    evaluated = {name: {key: resolved[(name, key)] for key in group} for name, group in macros.items()}
    return evaluated, errors


def fill(config: Any, evaluated: Dict[str, Any]) -> Tuple[Any, List[ConfigError], Set[Ref]]:
    """Fill the config from evaluated macros; returns (filled, missing-macro errors, refs used)."""
    values = {(name, key): value for name, group in evaluated.items() for key, value in group.items()}
    errors, used = [], set()
    for ref, keys in find_refs(config):
        used.add(ref)
        if ref not in values:
            errors.append(missing_error(ref, evaluated, format_path(keys)))
    return substitute(config, values), errors, used


def unused(macros: Dict[str, Any], used_by_config: Set[Ref]) -> List[str]:
    """Macro values nothing refers to (neither the config nor another macro): worth a warning."""
    used = set(used_by_config)
    for group in macros.values():
        if isinstance(group, dict):
            used.update(ref for ref, _ in find_refs(group))
    return [f"${name}:{key}" for name, group in macros.items() if isinstance(group, dict) for key in group if (name, key) not in used]
