"""Check every ``"type"`` of a filled config against its callable's signature, without building it.

Every problem is collected, each with a code and its key path, so a user fixes them in one go.
Every ``"type"`` is resolved by :func:`~sparkml_tf.config.imports.import_string` under the same
allow-list as ``run``, ``tensorflow``/``keras`` names included (importing Keras costs a few
seconds, and only when a config names it).
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Dict, List, Tuple

from sparkml_tf.config.imports import did_you_mean, import_string, moved
from sparkml_tf.config.paths import Key, format_path
from sparkml_tf.errors import ConfigError

RESERVED = ("type", "*", "eval")
EVAL_MODES = ("call", "partial", None)
_SIMPLE = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}


def check_types(node: Any, roots: Tuple[str, ...], keys: List[Key] = None) -> List[ConfigError]:
    keys = keys or []
    errors: List[ConfigError] = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            errors += check_types(item, roots, keys + [i])
    elif isinstance(node, dict):
        if "type" in node:
            errors += _check_callable(node, roots, keys)
        for k, v in node.items():
            if k != "type":
                errors += check_types(v, roots, keys + [k])
    return errors


def moved_warnings(node: Any, keys: List[Key] = None) -> List[str]:
    """A warning for each ``"type"`` under an old import path (see ``imports.MOVED``)."""
    keys = keys or []
    found: List[str] = []
    if isinstance(node, dict) and isinstance(node.get("type"), str) and moved(node["type"]):
        found.append(f"{format_path(keys)}: '{node['type']}' moved to '{moved(node['type'])}'; update the config")
    items = enumerate(node) if isinstance(node, list) else node.items() if isinstance(node, dict) else ()
    for key, value in items:
        found += moved_warnings(value, keys + [key])
    return found


def _check_callable(node: Dict[str, Any], roots: Tuple[str, ...], keys: List[Key]) -> List[ConfigError]:
    path = format_path(keys)
    name = node["type"]
    if not isinstance(name, str):
        return [ConfigError("CONFIG_UNKNOWN_TYPE", f"'type' must be an import string, got {name!r}", path)]
    errors = []
    mode = node.get("eval", "call")
    if mode not in EVAL_MODES:
        errors.append(
            ConfigError(
                "CONFIG_BAD_EVAL",
                f"'eval' is {mode!r}; use \"call\" (build it), \"partial\" (a partial to call later) or null (keep the dict)",
                format_path(keys + ["eval"]),
            )
        )
    positional = node.get("*", [])
    if not isinstance(positional, list):
        errors.append(ConfigError("CONFIG_BAD_POSITIONAL", "'*' holds positional arguments and must be a list", format_path(keys + ["*"])))
        positional = []
    try:
        target = import_string(name, path, roots)
    except ConfigError as e:
        return errors + [e]
    if not callable(target):
        return errors + [ConfigError("CONFIG_NOT_CALLABLE", f"'{name}' is a {type(target).__name__}, not a class or function", path)]
    errors += check_arguments(target, name, positional, {k: v for k, v in node.items() if k not in RESERVED}, partial=mode == "partial", keys=keys)
    return errors


def check_arguments(target: Any, name: str, positional: list, kwargs: Dict[str, Any], partial: bool, keys: List[Key]) -> List[ConfigError]:
    path = format_path(keys)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return []  # builtins without a signature: checked when called
    params = list(signature.parameters.values())
    takes_var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    takes_var_pos = any(p.kind is p.VAR_POSITIONAL for p in params)
    by_position = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    by_name = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    errors = []
    if len(positional) > len(by_position) and not takes_var_pos:
        errors.append(
            ConfigError(
                "CONFIG_TOO_MANY_POSITIONAL", f"{name} takes {len(by_position)} positional argument(s), '*' gives {len(positional)}", format_path(keys + ["*"])
            )
        )
    filled = {p.name for p in by_position[: len(positional)]}
    hints = _type_hints(target)
    for key, value in kwargs.items():
        if key in by_name:
            if key in filled:
                errors.append(ConfigError("CONFIG_DUPLICATE_ARGUMENT", f"'{key}' is given both in '*' and by name", format_path(keys + [key])))
            filled.add(key)
            errors += _check_value(name, key, value, hints.get(key), keys + [key])
        elif not takes_var_kw:
            errors.append(ConfigError(
                "CONFIG_UNKNOWN_ARGUMENT",
                f"{name} has no parameter '{key}'{did_you_mean(key, by_name)} (it takes: {', '.join(by_name) or 'nothing by name'})",
                format_path(keys + [key]),
            ))
    if not partial:
        for p in params:
            if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in filled and p.name != "self":
                errors.append(
                    ConfigError("CONFIG_MISSING_ARGUMENT", f"{name} needs '{p.name}', which the config does not give; add \"{p.name}\": ... here", path)
                )
    return errors


def _type_hints(target: Any) -> Dict[str, Any]:
    try:
        return typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # unresolvable annotations only disable the value check
        return {}


def _check_value(name: str, key: str, value: Any, hint: Any, keys: List[Key]) -> List[ConfigError]:
    """Catch a literal of the wrong JSON type for a plain int/float/str/bool parameter."""
    if hint is None or isinstance(value, (dict, list)) or (isinstance(value, str) and value.startswith(("$", "@"))):
        return []
    allowed: Tuple[type, ...] = ()
    options = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)
    for option in options:
        if option is type(None):
            allowed += (type(None),)
        elif option in _SIMPLE:
            allowed += _SIMPLE[option]
        else:
            return []  # a richer type: not checked here
    ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
    if ok:
        return []
    wanted = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    return [ConfigError("CONFIG_WRONG_VALUE_TYPE", f"{name}.{key} expects {wanted}, got {value!r}", format_path(keys))]
