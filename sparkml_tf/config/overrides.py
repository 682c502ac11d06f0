"""``--set a.b[2].c=VALUE`` overrides into the config or the macros.

The value is parsed as JSON when it parses (``3``, ``true``, ``[1,2]``, ``null``), else kept as a
string. The target key must already exist: an override is a change, not a way to add keys
(so a typo cannot pass silently). The path goes to whichever file has it; ``config.`` or
``macros.`` in front picks the file when both do.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Iterable, List, Tuple

from sparkml_tf.config.imports import did_you_mean
from sparkml_tf.config.paths import Key, format_path, parse_path
from sparkml_tf.errors import ConfigError


def parse_value(text: str) -> Any:
    """JSON when it parses; a plain string otherwise. Text that looks like JSON (starts with ``[``,
    ``{`` or ``"``) but does not parse is an error, not a string: ``[popular]`` is a mistake for
    ``["popular"]``, and a string would silently be split into characters later."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if text.strip()[:1] in ("[", "{", '"'):
            raise ValueError(
                f"{text!r} looks like JSON but does not parse ({e.msg} at character {e.pos}); quote strings inside it, "
                'e.g. --set \'evaluate.baselines=["popular","ease"]\''
            ) from e
        return text


def split_override(text: str) -> Tuple[List[Key], Any]:
    if "=" not in text:
        raise ConfigError("CONFIG_BAD_OVERRIDE", f"override {text!r} has no '='; write it as --set key.path=VALUE", "--set")
    key, value = text.split("=", 1)
    try:
        return parse_path(key.strip()), parse_value(value)
    except ValueError as e:
        raise ConfigError("CONFIG_BAD_OVERRIDE", f"{e}", f"--set {key}") from e


def _set(root: Any, keys: List[Key], value: Any, label: str) -> None:
    node = root
    for depth, key in enumerate(keys):
        where = format_path(keys[: depth + 1])
        last = depth == len(keys) - 1
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                size = f"a list of {len(node)}" if isinstance(node, list) else f"a {type(node).__name__}"
                raise ConfigError("CONFIG_OVERRIDE_UNKNOWN_KEY", f"cannot override {label} '{where}': the value there is {size}", where)
        elif not isinstance(node, dict) or key not in node:
            keys_here = list(node) if isinstance(node, dict) else []
            raise ConfigError(
                "CONFIG_OVERRIDE_UNKNOWN_KEY",
                f"cannot override {label} '{format_path(keys)}': '{where}' does not exist{did_you_mean(str(key), keys_here)}; "
                "an override changes an existing key, so add new keys to the file itself",
                where,
            )
        if last:
            node[key] = value
        else:
            node = node[key]


def _exists(root: Any, keys: List[Key]) -> bool:
    node = root
    for key in keys:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            node = node[key]
        elif isinstance(key, str) and isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return False
    return True


def apply_overrides(config: Any, macros: Any, overrides: Iterable[str]) -> Tuple[Any, Any, List[ConfigError]]:
    """Return copies of config and macros with the overrides applied, and the errors found."""
    config, macros = copy.deepcopy(config), copy.deepcopy(macros)
    errors: List[ConfigError] = []
    for text in overrides:
        try:
            keys, value = split_override(text)
            head = keys[0]
            if head in ("config", "macros") and len(keys) > 1 and not (isinstance(config, dict) and head in config):
                target, keys = (config if head == "config" else macros), keys[1:]
                label = head
            else:
                in_config, in_macros = _exists(config, keys), _exists(macros, keys)
                if in_config and in_macros:
                    raise ConfigError(
                        "CONFIG_OVERRIDE_AMBIGUOUS",
                        f"'{format_path(keys)}' exists both in the config and in the macros; write --set config.{text} or --set macros.{text}",
                        format_path(keys),
                    )
                # When neither has the whole path, report against the file whose first key matches.
                use_macros = in_macros or (not in_config and isinstance(macros, dict) and head in macros)
                target, label = (macros, "macro") if use_macros else (config, "config key")
            _set(target, keys, value, label)
        except ConfigError as e:
            errors.append(e)
    return config, macros, errors
