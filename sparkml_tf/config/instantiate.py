"""Build objects from a filled config: ``"type"`` is called with the other keys."""

from __future__ import annotations

import functools
from typing import Any, Dict, List, Optional, Tuple

from sparkml_tf.config.imports import allowed_roots, import_string
from sparkml_tf.config.paths import ROOT, Key, format_path
from sparkml_tf.config.references import resolve_reference
from sparkml_tf.config.validation import RESERVED
from sparkml_tf.errors import ConfigError, ConfigErrors, SparkmlTfError


def build(
    node: Any, references: Dict[str, Any] = None, roots: Tuple[str, ...] = None, keys: List[Key] = None, errors: Optional[List[ConfigError]] = None
) -> Any:
    """Build ``node`` depth first. A constructor that raises gets the path and type added and is chained.

    ``errors``: collect every constructor's error there and go on (None stands for what failed),
    so one pass reports every refused setting; without it, the first error is raised."""
    references = references or {}
    roots = roots or allowed_roots()
    keys = keys or []
    if isinstance(node, str):
        return resolve_reference(node, references)
    if isinstance(node, list):
        return [build(v, references, roots, keys + [i], errors) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if "type" not in node:
        return {k: build(v, references, roots, keys + [k], errors) for k, v in node.items()}
    mode = node.get("eval", "call")
    if mode is None:
        return dict(node)  # built later (model specs: on the driver, when training starts)
    path = format_path(keys)
    try:
        target = import_string(node["type"], path, roots)  # the allow-list, for "call" and "partial" alike
    except ConfigError as e:
        if errors is None:
            raise
        errors.append(e)
        return None
    before = len(errors) if errors is not None else 0
    args = [build(v, references, roots, keys + ["*", i], errors) for i, v in enumerate(node.get("*", []))]
    kwargs = {k: build(v, references, roots, keys + [k], errors) for k, v in node.items() if k not in RESERVED}
    if errors is not None and len(errors) > before:
        return None  # a part failed: its errors are reported, and the whole is not built on top of them
    if mode == "partial":
        return functools.partial(target, *args, **kwargs)
    try:
        return target(*args, **kwargs)
    except ConfigErrors as e:
        # A constructor refusing several values: each is a config error at its key.
        problems = [_at(node, path, p) for p in e.errors]
        cause: BaseException = e
    except SparkmlTfError as e:
        # A constructor refusing a value is a config error (exit 2, before anything runs): keep its
        # code and message, and point at the key in the config.
        problems = [_at(node, path, e)]
        cause = e
    except Exception as e:
        problems = [ConfigError("CONFIG_BUILD_FAILED", f"building {node['type']} raised {type(e).__name__}: {e}", path)]
        cause = e
    if errors is None:
        if len(problems) == 1:
            raise problems[0] from cause
        raise ConfigErrors(problems) from cause
    for problem in problems:
        problem.__cause__ = cause
    errors.extend(problems)
    return None


def _at(node: Dict[str, Any], path: str, error: SparkmlTfError) -> ConfigError:
    """``error`` at its key under the node's path when it names one of the node's keys."""
    head = str(error.path).split(".")[0].split("[")[0]
    where = (f"{path}.{error.path}" if path != ROOT else error.path) if head in node else path
    return ConfigError(error.code, error.message, where)
