"""Config system: load JSON, apply overrides, fill macros, validate, build.

>>> resolved = resolve("conf/movielens/config.json", "conf/movielens/macros.json", ["params.epochs=2"])
>>> pipeline = resolved.build()
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, Iterable, List, Optional, Tuple

from sparkml_tf.config.imports import allowed_roots, import_string
from sparkml_tf.config.instantiate import build
from sparkml_tf.config.loading import load_json
from sparkml_tf.config.macros import PLACEHOLDER, evaluate_macros, fill, unused
from sparkml_tf.config.overrides import apply_overrides
from sparkml_tf.config.references import check_references
from sparkml_tf.config.validation import check_types, moved_warnings
from sparkml_tf.errors import ConfigError, ConfigErrors

LOGGER = logging.getLogger(__name__)

__all__ = ["ResolvedConfig", "resolve", "build", "import_string", "load_json", "fill_macros"]


@dataclasses.dataclass
class ResolvedConfig:
    raw_config: Any  # as loaded, overrides applied
    raw_macros: Dict[str, Any]
    macros: Dict[str, Any]  # evaluated
    config: Any  # macros filled: what runs
    roots: Tuple[str, ...]
    warnings: List[str] = dataclasses.field(default_factory=list)

    def build(self) -> Any:
        """Build the config; every setting a constructor refuses is reported at once (ConfigErrors),
        at the key the user wrote: a value that came from a macro is named by the macro's key."""
        refs = {"@self": self.raw_config, "@macros": self.raw_macros, "@macros_eval": self.macros}
        errors: List[ConfigError] = []
        built = build(self.config, refs, self.roots, errors=errors)
        if errors:
            raise ConfigErrors([_at_macro(e, self.raw_config) for e in errors]) from errors[0].__cause__
        return built


def resolve(config: Any, macros: Any = None, overrides: Iterable[str] = (), allowed_imports: Iterable[str] = (), check: bool = True) -> ResolvedConfig:
    """Load, override, fill and (with ``check``) validate; raise ConfigErrors listing every problem.

    Has no side effects: nothing is built, no run is started.
    """
    errors: List[ConfigError] = []
    raw_config, _ = _load_or_collect(config, "config", errors)
    raw_macros, _ = _load_or_collect(macros, "macros", errors)
    if errors:
        raise ConfigErrors(errors)
    raw_config, raw_macros, problems = apply_overrides(raw_config, raw_macros, list(overrides))
    errors += problems
    evaluated, problems = evaluate_macros(raw_macros)
    errors += problems
    filled, problems, used = fill(raw_config, evaluated)
    errors += problems
    roots = allowed_roots(allowed_imports)
    if check:
        errors += check_references(filled)
        errors += check_types(filled, roots)
    if errors:
        raise ConfigErrors(errors)
    warnings = [f"macro {name} is not used by the config" for name in unused(raw_macros, used)]
    warnings += moved_warnings(filled)
    for warning in warnings:
        LOGGER.warning(warning)
    return ResolvedConfig(raw_config, raw_macros, evaluated, filled, roots, warnings)


def _at_macro(error: ConfigError, raw_config: Any) -> ConfigError:
    """``error`` at the macro key (``train.num_workers``) when the value at its config path came from
    a macro, whole or as part of a macro's dict or list (``dataset.generator.num_items``), with the
    config path after it; unchanged otherwise."""
    from sparkml_tf.config.paths import parse_path

    try:
        keys = list(parse_path(error.path))
    except ValueError:
        return error
    node = raw_config
    for depth, key in enumerate(keys + [None]):
        match = PLACEHOLDER.fullmatch(node) if isinstance(node, str) else None
        if match:
            rest = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys[depth:])
            return ConfigError(error.code, error.message, f"{match.group(1)}.{match.group(2)}{rest} (as {error.path})")
        if key is None:
            return error
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return error
    return error


def fill_macros(config: Any, macros: Dict[str, Any]) -> Any:
    """The config with placeholders replaced from already-evaluated macros (for logging)."""
    return fill(config, macros)[0]


def _load_or_collect(source: Any, what: str, errors: List[ConfigError]) -> Tuple[Any, Optional[str]]:
    try:
        return load_json(source, what)
    except ConfigError as e:
        errors.append(e)
        return {}, None
