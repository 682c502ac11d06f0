"""Resolve ``"type"`` import strings, only inside the allowed roots, at every hop.

A root is a dotted prefix matched on whole segments: ``keras.optimizers`` allows
``keras.optimizers.Adam`` but not ``keras.optimizers_x.Y`` nor ``keras.src.utils...``. The defaults
(:data:`DEFAULT_ROOTS`) name what a config needs: this package and the Keras parts a model or
trainer takes, in both spellings (``keras.layers``, ``tensorflow.keras.layers``), not all of
TensorFlow. Other roots must be declared (``--allow-import mypkg.models`` or
``SPARKML_TF_ALLOWED_IMPORTS=mypkg,other``), so a config from somewhere else (a colleague, an
MLflow run) cannot make the driver run arbitrary code.

The rule, checked by :func:`import_string` for ``validate``, ``run`` and ``from-mlflow`` alike:

1. The name is under an allowed root; no segment after the root starts with ``_`` (no dunders,
   no privates: ``__globals__``, ``__builtins__``, ``_impl``); the last segment is not one of
   :data:`REFUSED_NAMES` (functions that resolve names held in their arguments or load code from
   files, stepping around this list).
2. The longest importable prefix is imported by its own name, and its ``__name__`` lies on the way
   to an allowed root. Each further hop is ``getattr``: every hop before the last must be a
   module, and a module reached by a hop must be the submodule of that name
   (``obj.__name__ == owner.__name__ + "." + attr``); ``os`` reached through the globals of
   ``sparkml_tf.config.imports`` is refused.
3. A callable at the end is a class or a Python function (builtins such as ``os.system`` or
   ``eval`` are refused) whose defining module (``__module__``) is under an allowed root, or in
   the same package as the module that exports it (``keras.optimizers.Adam`` is defined in
   ``keras.src.optimizers.adam``; ``tensorflow.keras`` is Keras under TensorFlow's name).
4. In this package, a config may name only what a module lists in ``__all__`` (lazy exports
   included: ``sparkml_tf.retrieval.Train``), and never the config machinery itself (building a
   nested config with roots of its choosing would bypass the rule).

A refusal is a ConfigError ``CONFIG_IMPORT_NOT_ALLOWED`` at the key path of the ``"type"``.
Old import strings of moved objects are rewritten through :data:`MOVED`, with a warning.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import logging
import os
import sys
from typing import Any, Dict, Iterable, Optional, Tuple

from sparkml_tf.errors import ConfigError

LOGGER = logging.getLogger(__name__)

PACKAGE = __name__.split(".")[0]  # this package: "sparkml_tf"
CONFIG_PACKAGE = __name__.rpartition(".")[0]  # the config machinery: never named by a config
_KERAS_PARTS = ("optimizers", "layers", "losses", "metrics", "initializers", "regularizers", "constraints", "activations")
DEFAULT_ROOTS = (PACKAGE, *(f"keras.{p}" for p in _KERAS_PARTS), *(f"tensorflow.keras.{p}" for p in _KERAS_PARTS))
# tf.keras is Keras published under TensorFlow's name: what it exports is defined in Keras.
PACKAGE_ALIASES = {"tensorflow.keras": "keras"}
# Roots whose modules say what a config may name through ``__all__``.
EXPORTS_ONLY = (PACKAGE,)
# ``get``/``deserialize`` build objects named inside their argument; TFSMLayer loads a SavedModel.
REFUSED_NAMES = ("get", "deserialize", "TFSMLayer")
# Old dotted prefix -> new dotted prefix, for import strings of objects that moved (whole segments).
# Import strings of earlier versions (before the task packages): they resolve, with a warning.
MOVED: Dict[str, str] = {
    "sparkml_tf.jobs.BuildCtrDataset": "sparkml_tf.ranking.BuildCtrDataset",
    "sparkml_tf.jobs.BuildDataset": "sparkml_tf.retrieval.BuildDataset",
    "sparkml_tf.jobs.BuildIndex": "sparkml_tf.retrieval.BuildIndex",
    "sparkml_tf.jobs.CheckEnvironment": "sparkml_tf.engine.CheckEnvironment",
    "sparkml_tf.jobs.Evaluate": "sparkml_tf.retrieval.Evaluate",
    "sparkml_tf.jobs.EvaluateCtr": "sparkml_tf.ranking.EvaluateCtr",
    "sparkml_tf.jobs.ExportCtr": "sparkml_tf.ranking.ExportCtr",
    "sparkml_tf.jobs.GenerateCtrCandidates": "sparkml_tf.ranking.GenerateCtrCandidates",
    "sparkml_tf.jobs.Job": "sparkml_tf.engine.Job",
    "sparkml_tf.jobs.Pipeline": "sparkml_tf.engine.Pipeline",
    "sparkml_tf.jobs.Predict": "sparkml_tf.retrieval.Predict",
    "sparkml_tf.jobs.RunContext": "sparkml_tf.engine.RunContext",
    "sparkml_tf.jobs.ScoreCandidates": "sparkml_tf.ranking.ScoreCandidates",
    "sparkml_tf.jobs.Train": "sparkml_tf.retrieval.Train",
    "sparkml_tf.jobs.TrainCtr": "sparkml_tf.ranking.TrainCtr",
    "sparkml_tf.models.AverageModel": "sparkml_tf.retrieval.AverageModel",
    "sparkml_tf.models.BPRLoss": "sparkml_tf.retrieval.BPRLoss",
    "sparkml_tf.models.DCNv2": "sparkml_tf.ranking.DCNv2",
    "sparkml_tf.models.MultVAE": "sparkml_tf.retrieval.MultVAE",
    "sparkml_tf.models.WideDeep": "sparkml_tf.ranking.WideDeep",
    "sparkml_tf.serving.Scorer": "sparkml_tf.ranking.Scorer",
}
# Importing these costs seconds (TensorFlow) or needs a JVM-backed package.
HEAVY_ROOTS = ("tensorflow", "keras", "tf_keras", "pyspark")
ENV_ALLOWED = "SPARKML_TF_ALLOWED_IMPORTS"


def allowed_roots(extra: Iterable[str] = ()) -> Tuple[str, ...]:
    """The default roots, then those of ``SPARKML_TF_ALLOWED_IMPORTS``, then ``extra``."""
    from_env = os.environ.get(ENV_ALLOWED, "").split(",")
    given = [r.strip().strip(".") for r in [*from_env, *extra] if r and r.strip().strip(".")]
    return tuple(dict.fromkeys([*DEFAULT_ROOTS, *given]))


def root_of(import_string: str) -> str:
    return import_string.split(".", 1)[0]


def under(name: str, prefix: str) -> bool:
    """``name`` is ``prefix`` or inside it, on whole dotted segments."""
    return name == prefix or name.startswith(prefix + ".")


def matching_root(name: str, roots: Iterable[str]) -> Optional[str]:
    """The longest root ``name`` is under, or None."""
    return max((r for r in roots if under(name, r)), key=len, default=None)


def is_heavy(import_string: str) -> bool:
    return root_of(import_string) in HEAVY_ROOTS


def check_installed(import_string: str, path: str = "") -> None:
    """Check a name's top-level package is installed, without importing it."""
    if importlib.util.find_spec(root_of(import_string)) is None:
        raise ConfigError(
            "CONFIG_UNKNOWN_TYPE",
            f"cannot import '{import_string}': package '{root_of(import_string)}' is not installed; install it or fix the name",
            path,
        )


def describe(roots: Iterable[str]) -> str:
    """``a, b.{c,d}``: the roots, siblings grouped under their parent."""
    groups: Dict[str, list] = {}
    for root in roots:
        parent, _, leaf = root.rpartition(".")
        groups.setdefault(parent, []).append(leaf)
    return ", ".join(
        (f"{parent}.{{{','.join(leaves)}}}" if len(leaves) > 1 else f"{parent}.{leaves[0]}") if parent else ", ".join(leaves)
        for parent, leaves in groups.items()
    )


def _refuse(name: str, what: str, why: str, fix: str, path: str) -> ConfigError:
    return ConfigError("CONFIG_IMPORT_NOT_ALLOWED", f"'{name}' {what}; {why}; {fix}", path)


def _trust(root: str) -> str:
    return f"only if you trust all of '{root}', allow it with --allow-import {root} or {ENV_ALLOWED}={root}"


def check_allowed(import_string: str, roots: Tuple[str, ...], path: str = "") -> None:
    """Rule 1, on the text alone (no import): under a root, no private segment, no refused name."""
    root = matching_root(import_string, roots)
    if root is None:
        owner = import_string.rpartition(".")[0] or import_string
        raise _refuse(
            import_string, "is outside the allowed import roots",
            f"a config may only name objects under {describe(roots)}",
            f"name an object there, or, {_trust(owner)}", path,
        )
    rest = import_string[len(root):].split(".")[1:]
    private = [s for s in rest if s.startswith("_")]
    if private:
        raise _refuse(
            import_string, f"names the private attribute '{private[0]}'",
            "private and dunder attributes reach interpreter internals and other modules' globals, so no config may name them",
            "name the public class or function instead", path,
        )
    if rest and rest[-1] in REFUSED_NAMES:
        raise _refuse(
            import_string, f"names '{rest[-1]}', which builds or loads objects named by its arguments or in files",
            "that would step around the import allow-list",
            "name the class itself (for example keras.optimizers.Adam) with its arguments", path,
        )


def moved(name: str) -> Optional[str]:
    """The new import string of a name under a :data:`MOVED` prefix (the longest match), else None."""
    old = max((p for p in MOVED if under(name, p)), key=len, default=None)
    return None if old is None else MOVED[old] + name[len(old):]


def import_string(name: str, path: str = "", roots: Optional[Tuple[str, ...]] = None) -> Any:
    """Import ``pkg.module.Attr`` under ``roots`` (default :func:`allowed_roots`) by the module rule."""
    roots = allowed_roots() if roots is None else tuple(roots)
    if not isinstance(name, str) or not name or name.startswith(".") or name.endswith(".") or ".." in name:
        raise ConfigError("CONFIG_UNKNOWN_TYPE", f"'type' must be a dotted import string like 'sparkml_tf.engine.Pipeline', got {name!r}", path)
    new = moved(name)
    if new is not None:
        LOGGER.warning("'%s' moved to '%s'; update the config", name, new)
        name = new
    check_allowed(name, roots, path)
    parts = name.split(".")
    error = None
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
        _check_module(name, module, roots, path)
        return _walk(name, module, parts[cut:], roots, path)
    check_installed(name, path)
    raise ConfigError("CONFIG_UNKNOWN_TYPE", f"cannot import '{name}': {error}", path)


def _check_module(name: str, module: Any, roots: Tuple[str, ...], path: str) -> None:
    """A module on the way: under a root, or a package a root lies in (``keras`` for ``keras.layers``)."""
    if matching_root(module.__name__, roots) is None and not any(under(r, module.__name__) for r in roots):
        raise _refuse(
            name, f"reaches module '{module.__name__}'", "that module is outside the allowed import roots",
            _trust(module.__name__), path,
        )


def _walk(name: str, obj: Any, attrs: Iterable[str], roots: Tuple[str, ...], path: str) -> Any:
    """Rules 2 to 4 along the attribute hops after the imported module."""
    attrs = list(attrs)
    for i, attr in enumerate(attrs):
        owner = obj
        if not inspect.ismodule(owner):
            raise _refuse(
                name, f"follows attribute '{attr}' of a {type(owner).__name__}",
                "an import string names a class or function in a module, not an attribute of an object",
                "name the class or function by its module", path,
            )
        try:
            obj = getattr(owner, attr)
        except AttributeError:
            hint = did_you_mean(attr, [a for a in dir(owner) if not a.startswith("_")])
            raise ConfigError("CONFIG_UNKNOWN_TYPE", f"'{owner.__name__}' has no attribute '{attr}', so '{name}' cannot be imported{hint}", path) from None
        except ImportError as e:  # a lazily exported name whose module fails to import
            raise ConfigError("CONFIG_IMPORT_FAILED", f"importing '{owner.__name__}.{attr}' failed: {type(e).__name__}: {e}", path) from e
        if inspect.ismodule(obj):
            if obj.__name__ != f"{owner.__name__}.{attr}":
                raise _refuse(
                    name, f"reaches module '{obj.__name__}' through the globals of '{owner.__name__}'",
                    f"'{attr}' is not a submodule of '{owner.__name__}', so being under an allowed root does not vouch for it",
                    f"name objects by the module that defines them (here '{obj.__name__}') and, {_trust(obj.__name__)}", path,
                )
            _check_module(name, obj, roots, path)
        elif i == len(attrs) - 1 and callable(obj):
            _check_callable(name, owner, attr, obj, roots, path)
    return obj


def _package(module_name: str) -> str:
    for alias, package in PACKAGE_ALIASES.items():
        if under(module_name, alias):
            return package
    return root_of(module_name)


def _check_callable(name: str, owner: Any, attr: str, obj: Any, roots: Tuple[str, ...], path: str) -> None:
    """Rules 3 and 4 for the object at the end of the walk."""
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        home = getattr(obj, "__module__", None) or "?"
        raise _refuse(
            name, f"is a {type(obj).__name__} (from '{home}'), not a class or a Python function",
            "builtins and other callables (os.system, eval) cannot be vouched for by their module",
            "name a class or function written in Python, or wrap it in a module of your own and allow that", path,
        )
    home = obj.__module__ if isinstance(getattr(obj, "__module__", None), str) else "?"
    if under(home, CONFIG_PACKAGE):
        raise _refuse(
            name, f"is part of the config machinery ('{home}')",
            "a config that builds or resolves another config could choose its own import roots",
            "name the job or object to build directly", path,
        )
    if matching_root(home, roots) is None and _package(home) != _package(owner.__name__):
        raise _refuse(
            name, f"is defined in '{home}', outside the allowed import roots, and '{owner.__name__}' only imports it",
            "an object is vouched for by the module that defines it, not by one that uses it",
            f"write '{home}.{getattr(obj, '__qualname__', attr)}' instead and, {_trust(home)}", path,
        )
    exporter = matching_root(owner.__name__, EXPORTS_ONLY)
    if exporter is not None and attr not in getattr(owner, "__all__", ()):
        exported = [a for a in getattr(owner, "__all__", ()) if isinstance(a, str)]
        public = _exported_as(owner.__name__, attr, obj)
        raise _refuse(
            name, f"is not exported by '{owner.__name__}' (its __all__ lists: {', '.join(exported) or 'nothing'})",
            f"a config may name only what a {exporter} module lists in __all__",
            f"write '{public}'" if public else "name a class or function that its package exports", path,
        )


def _exported_as(module_name: str, attr: str, obj: Any) -> Optional[str]:
    """The name a package above ``module_name`` exports ``obj`` under, if one does."""
    parts = module_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        package = sys.modules.get(".".join(parts[:cut]))
        if package is not None and attr in getattr(package, "__all__", ()) and getattr(package, attr, None) is obj:
            return f"{package.__name__}.{attr}"
    return None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
