"""Resolve ``"type"`` import strings, only under allowed roots.

A config can name any callable under this package, tensorflow or keras; other roots must be
declared (``--allow-import mypkg`` or ``SPARKML_TF_ALLOWED_IMPORTS=mypkg,other``), so a config
from somewhere else cannot make the driver import arbitrary code.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
from typing import Any, Iterable, Tuple

from sparkml_tf.errors import ConfigError

DEFAULT_ROOTS = ("sparkml_tf", "tensorflow", "keras")
# Importing these costs seconds (TensorFlow) or needs a JVM-backed package; validation checks
# that the root is installed and defers the rest to run time.
HEAVY_ROOTS = ("tensorflow", "keras", "tf_keras", "pyspark")
ENV_ALLOWED = "SPARKML_TF_ALLOWED_IMPORTS"


def allowed_roots(extra: Iterable[str] = ()) -> Tuple[str, ...]:
    from_env = [r.strip() for r in os.environ.get(ENV_ALLOWED, "").split(",") if r.strip()]
    return tuple(dict.fromkeys([*DEFAULT_ROOTS, *from_env, *extra]))


def root_of(import_string: str) -> str:
    return import_string.split(".", 1)[0]


def check_allowed(import_string: str, roots: Tuple[str, ...], path: str = "") -> None:
    if root_of(import_string) not in roots:
        raise ConfigError(
            "CONFIG_IMPORT_NOT_ALLOWED",
            f"'{import_string}' is outside the allowed import roots ({', '.join(roots)}); "
            f"if you trust it, allow it with --allow-import {root_of(import_string)} "
            f"or {ENV_ALLOWED}={root_of(import_string)}",
            path,
        )


def is_heavy(import_string: str) -> bool:
    return root_of(import_string) in HEAVY_ROOTS


def check_installed(import_string: str, path: str = "") -> None:
    """Check a heavy root is installed without importing it."""
    if importlib.util.find_spec(root_of(import_string)) is None:
        raise ConfigError(
            "CONFIG_UNKNOWN_TYPE",
            f"cannot import '{import_string}': package '{root_of(import_string)}' is not installed",
            path,
        )


def import_string(name: str, path: str = "") -> Any:
    """Import ``pkg.module.Attr``: the longest importable module prefix, then attributes."""
    if not isinstance(name, str) or not name or name.startswith(".") or ".." in name:
        raise ConfigError("CONFIG_UNKNOWN_TYPE", f"'type' must be a dotted import string like 'sparkml_tf.jobs.Pipeline', got {name!r}", path)
    parts = name.split(".")
    module, error = None, None
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            # Only a missing *target* module means "try a shorter prefix"; a missing dependency
            # inside an existing module is a real error to surface.
            if e.name and not module_name.startswith(e.name) and not e.name.startswith(module_name):
                raise ConfigError("CONFIG_IMPORT_FAILED", f"importing '{module_name}' failed: {e}", path) from e
            error = e
            continue
        except Exception as e:  # a module that raises at import: chain it, with where it came from
            raise ConfigError("CONFIG_IMPORT_FAILED", f"importing '{module_name}' raised {type(e).__name__}: {e}", path) from e
        obj = module
        for i, attr in enumerate(parts[cut:], start=cut):
            owner = ".".join(parts[:i])
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                hint = did_you_mean(attr, [a for a in dir(obj) if not a.startswith("_")])
                raise ConfigError("CONFIG_UNKNOWN_TYPE", f"'{owner}' has no attribute '{attr}', so '{name}' cannot be imported{hint}", path) from None
            except ImportError as e:  # a lazily exported name whose module fails to import
                raise ConfigError("CONFIG_IMPORT_FAILED", f"importing '{owner}.{attr}' failed: {type(e).__name__}: {e}", path) from e
        return obj
    raise ConfigError("CONFIG_UNKNOWN_TYPE", f"cannot import '{name}': {error}", path)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
