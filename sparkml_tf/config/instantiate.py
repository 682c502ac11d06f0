"""Build objects from a filled config: ``"type"`` is called with the other keys."""

from __future__ import annotations

import functools
from typing import Any, Dict, List, Tuple

from sparkml_tf.config.imports import allowed_roots, import_string
from sparkml_tf.config.paths import Key, format_path
from sparkml_tf.config.references import resolve_reference
from sparkml_tf.config.validation import RESERVED
from sparkml_tf.errors import ConfigError, SparkmlTfError


def build(node: Any, references: Dict[str, Any] = None, roots: Tuple[str, ...] = None, keys: List[Key] = None) -> Any:
    """Build ``node`` depth first. A constructor that raises gets the path and type added and is chained."""
    references = references or {}
    roots = roots or allowed_roots()
    keys = keys or []
    if isinstance(node, str):
        return resolve_reference(node, references)
    if isinstance(node, list):
        return [build(v, references, roots, keys + [i]) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if "type" not in node:
        return {k: build(v, references, roots, keys + [k]) for k, v in node.items()}
    mode = node.get("eval", "call")
    if mode is None:
        return dict(node)  # built later, e.g. on an executor, with build() again
    path = format_path(keys)
    target = import_string(node["type"], path, roots)  # the allow-list, for "call" and "partial" alike
    args = [build(v, references, roots, keys + ["*", i]) for i, v in enumerate(node.get("*", []))]
    kwargs = {k: build(v, references, roots, keys + [k]) for k, v in node.items() if k not in RESERVED}
    if mode == "partial":
        return functools.partial(target, *args, **kwargs)
    try:
        return target(*args, **kwargs)
    except SparkmlTfError as e:
        # A constructor refusing a value is a config error (exit 2, before anything runs): keep its
        # code and message, and point at the key in the config.
        where = f"{path}.{e.path}" if e.path in node else path
        raise ConfigError(e.code, e.message, where) from e
    except Exception as e:
        raise ConfigError("CONFIG_BUILD_FAILED", f"building {node['type']} raised {type(e).__name__}: {e}", path) from e
