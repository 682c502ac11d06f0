"""Escape attempts against the import allow-list: ``validate`` refuses each one at its key path,
and building (what ``run`` does) executes none of them.

Every payload would leave a trace if it ran: create ``marker``, delete ``victim_file`` or
``victim_dir``. ``Payload.untouched`` checks there is none. Attribute walks go through the modules
the issue named when they still import the walked module, else through any module of the package
that does (modules move; the escape form stays).
"""

import ast
import dataclasses
import functools
import glob
import json
import logging
import os
import pickle
import subprocess
import sys
from typing import Any, Callable, Dict, List

import pytest

from sparkml_tf.config import imports, resolve
from sparkml_tf.config.imports import DEFAULT_ROOTS, import_string
from sparkml_tf.errors import ConfigError, ConfigErrors

T = "cfg_targets"
CODE = "CONFIG_IMPORT_NOT_ALLOWED"
PACKAGE_DIR = os.path.dirname(os.path.abspath(imports.__file__)).rsplit(os.sep, 1)[0]
REPO = os.path.dirname(PACKAGE_DIR)


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO)[: -len(".py")].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


@functools.lru_cache(maxsize=None)
def holder(module: str, prefer: str, alias: str = None) -> str:
    """``prefer`` if it still does ``import module [as alias]`` at top level, else the first module of
    the package that does; the walk then reads ``<holder>.<alias or module>``."""
    name = alias or module

    def imports_it(path: str) -> bool:
        with open(path) as f:
            tree = ast.parse(f.read())
        return any(isinstance(n, ast.Import) and any(a.name == module and (a.asname or a.name) == name for a in n.names) for n in tree.body)

    files = sorted(glob.glob(os.path.join(PACKAGE_DIR, "**", "*.py"), recursive=True))
    by_name = {_module_name(f): f for f in files}
    if prefer in by_name and imports_it(by_name[prefer]):
        return f"{prefer}.{name}"
    found = next((m for m, f in by_name.items() if imports_it(f)), None)
    assert found, f"no module of the package imports {module}: pick another escape form"
    return f"{found}.{name}"


@functools.lru_cache(maxsize=None)
def defined_in(function: str) -> str:
    """The module of the package that defines ``function`` at top level (it may move)."""
    for path in sorted(glob.glob(os.path.join(PACKAGE_DIR, "**", "*.py"), recursive=True)):
        with open(path) as f:
            if any(isinstance(n, ast.FunctionDef) and n.name == function for n in ast.parse(f.read()).body):
                return _module_name(path)
    raise AssertionError(f"no module defines {function}")


class _OpenOnUnpickle:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@dataclasses.dataclass
class Payload:
    marker: str  # must not come to exist
    victim_file: str  # must survive
    victim_dir: str  # must survive
    pickle_file: str  # unpickling it creates marker
    module: str  # importing it creates marker

    def untouched(self) -> None:
        assert not os.path.exists(self.marker), "the payload ran"
        assert os.path.exists(self.victim_file) and os.path.isdir(self.victim_dir), "the payload deleted something"


@pytest.fixture
def payload(tmp_path, monkeypatch):
    marker = str(tmp_path / "pwned")
    victim_file = tmp_path / "keep.txt"
    victim_file.write_text("keep")
    victim_dir = tmp_path / "keep_dir"
    victim_dir.mkdir()
    pickle_file = tmp_path / "evil.pkl"
    pickle_file.write_bytes(pickle.dumps(_OpenOnUnpickle(marker)))
    module = f"cfg_payload_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(f"open({marker!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    p = Payload(marker, str(victim_file), str(victim_dir), str(pickle_file), module)
    yield p
    sys.modules.pop(module, None)
    p.untouched()


def _config_via_cli(p: Payload) -> Dict[str, Any]:
    inner = {"type": "subprocess.run", "*": [["touch", p.marker]]}
    return {"type": "sparkml_tf.cli.main", "argv": ["run", json.dumps(inner), "--allow-import", "subprocess"]}


# id -> the escaping node, given the payload. Each must be refused with CODE at the node's path.
ESCAPES: Dict[str, Callable[[Payload], Dict[str, Any]]] = {
    # attribute walks through allowed modules into other modules' globals
    "subprocess via globals": lambda p: {"type": f"{holder('subprocess', 'sparkml_tf.deploy.submit')}.check_output", "*": [["touch", p.marker]]},
    "os.system via globals": lambda p: {"type": f"{holder('os', 'sparkml_tf.config.imports')}.system", "*": [f"touch {p.marker}"]},
    "builtins.eval via dataclasses": lambda p: {"type": f"{holder('dataclasses', 'sparkml_tf.config')}.builtins.eval", "*": [f"open({p.marker!r}, 'w')"]},
    "builtins.exec via dataclasses": lambda p: {"type": f"{holder('dataclasses', 'sparkml_tf.config')}.builtins.exec", "*": [f"open({p.marker!r}, 'w')"]},
    "np.load allow_pickle": lambda p: {"type": f"{holder('numpy', 'sparkml_tf.index.hnsw', alias='np')}.load", "*": [p.pickle_file], "allow_pickle": True},
    "shutil.rmtree via globals": lambda p: {"type": f"{holder('shutil', 'sparkml_tf.index.hnsw')}.rmtree", "*": [p.victim_dir]},
    "importlib via globals": lambda p: {"type": f"{holder('importlib', 'sparkml_tf.lazy')}.import_module", "*": [p.module]},
    "os via a module's globals inside keras": lambda p: {"type": "keras.src.utils.python_utils.os.system", "*": [f"touch {p.marker}"]},
    "tensorflow.io.write_file": lambda p: {"type": "tensorflow.io.write_file", "*": [p.marker, "x"]},
    "tensorflow.io.gfile.remove": lambda p: {"type": "tensorflow.io.gfile.remove", "*": [p.victim_file]},
    "pickle.load by name": lambda p: {"type": "pickle.load", "*": [{"type": "builtins.open", "*": [p.pickle_file, "rb"]}]},
    # a function imported by an allowed module is vouched for by the module that defines it
    "check_output imported by an allowed module": lambda p: {"type": f"{T}.check_output", "*": [["touch", p.marker]]},
    "rmtree imported by an allowed module": lambda p: {"type": f"{T}.rmtree", "*": [p.victim_dir]},
    "os via a user module's globals": lambda p: {"type": f"{T}.os.system", "*": [f"touch {p.marker}"]},
    # dunders and privates
    "__builtins__": lambda p: {"type": "sparkml_tf.errors.__builtins__", "*": ["eval"]},
    "__loader__": lambda p: {"type": "sparkml_tf.config.__loader__", "*": [p.module]},
    "__init__.__globals__": lambda p: {"type": "sparkml_tf.errors.ConfigError.__init__.__globals__", "*": []},
    "private module attribute": lambda p: {"type": "sparkml_tf.config.imports._refuse", "*": []},
    # eval: partial of a refused callable
    "os.system partial": lambda p: {"type": "os.system", "eval": "partial", "*": [f"touch {p.marker}"]},
    "os.system partial via globals": lambda p: {"type": f"{holder('os', 'sparkml_tf.config.imports')}.system", "eval": "partial", "*": [f"touch {p.marker}"]},
    # inside the package: only what a module exports, never the config machinery
    "run_commands (not exported)": lambda p: {
        "type": f"{defined_in('run_commands')}.run_commands",
        "commands": [{"type": f"{defined_in('run_commands')}.StageCommand", "stage": "x", "argv": ["touch", p.marker]}],
    },
    "the CLI, with its own roots": _config_via_cli,
    "build a raw sub-config with other roots": lambda p: {
        "type": "sparkml_tf.config.build",
        "node": {"type": "subprocess.run", "eval": None, "*": [["touch", p.marker]]},
        "roots": ["subprocess"],
    },
    # refused names of allowed modules: they resolve names held in their arguments
    "keras deserialize": lambda p: {"type": "keras.layers.deserialize", "*": [{"module": "os", "class_name": "system"}]},
}


def delivered(node: Dict[str, Any], how: str, tmp_path) -> Dict[str, Any]:
    """The arguments of resolve() that carry ``node`` to the key path ``payload``: in the config
    file, through a macros file, or as a JSON object in a --set override."""
    config_file, macros_file = tmp_path / "config.json", tmp_path / "macros.json"
    if how == "config":
        config_file.write_text(json.dumps({"type": f"{T}.collect", "payload": node}))
        return {"config": str(config_file), "overrides": []}
    if how == "macros":
        config_file.write_text(json.dumps({"type": f"{T}.collect", "payload": "$evil:node"}))
        macros_file.write_text(json.dumps({"evil": {"node": node}}))
        return {"config": str(config_file), "macros": str(macros_file), "overrides": []}
    config_file.write_text(json.dumps({"type": f"{T}.collect", "payload": 0}))
    return {"config": str(config_file), "overrides": [f"payload={json.dumps(node)}"]}


def refusals(errors: List[ConfigError]):
    return [(e.code, e.path) for e in errors]


@pytest.mark.parametrize("how", ["config", "macros", "set"])
@pytest.mark.parametrize("escape", list(ESCAPES))
def test_escape_is_refused_by_validate_and_build(escape, how, payload, tmp_path):
    args = delivered(ESCAPES[escape](payload), how, tmp_path)
    with pytest.raises(ConfigErrors) as info:
        resolve(args["config"], args.get("macros"), args["overrides"], allowed_imports=[T])
    found = refusals(info.value.errors)
    assert (CODE, "payload") in found and {code for code, _ in found} == {CODE}, info.value.format()
    payload.untouched()
    # run builds only after validation; the build refuses on its own too, before calling anything
    unchecked = resolve(args["config"], args.get("macros"), args["overrides"], allowed_imports=[T], check=False)
    with pytest.raises(ConfigError) as info:
        unchecked.build()
    # a payload that came from a macro is named by the macro's key, then the config's
    assert info.value.code == CODE and info.value.path in ("payload", "evil.node (as payload)"), info.value.format()
    payload.untouched()


def test_refusals_say_what_why_and_how_to_fix(payload):
    cases = {
        f"{holder('os', 'sparkml_tf.config.imports')}.system": ("reaches module 'os' through the globals of", "--allow-import os"),
        "tensorflow.io.gfile.remove": ("is outside the allowed import roots", "--allow-import tensorflow.io.gfile"),
        "sparkml_tf.errors.__builtins__": ("private attribute '__builtins__'", "name the public class or function"),
        f"{holder('dataclasses', 'sparkml_tf.config')}.builtins.eval": ("reaches module 'dataclasses'", "SPARKML_TF_ALLOWED_IMPORTS=dataclasses"),
    }
    for name, (what, fix) in cases.items():
        with pytest.raises(ConfigErrors) as info:
            resolve({"jobs": [{"type": name}]})
        text = info.value.format()
        assert f"[{CODE}] jobs[0]: '{name}' " in text and what in text and fix in text, text


def test_a_refused_builtin_under_an_allowed_root_is_still_refused(payload):
    """Adding a root does not make builtins nameable: os.system is defined in posix, in C."""
    with pytest.raises(ConfigErrors) as info:
        resolve({"a": {"type": "os.system", "*": [f"touch {payload.marker}"]}}, allowed_imports=["os"])
    assert refusals(info.value.errors) == [(CODE, "a")]
    assert "not a class or a Python function" in info.value.errors[0].message


def test_smoke_config_with_one_macro_replaced(payload, repo_root, tmp_path):
    """The issue's form: the shipped smoke config, unchanged, and its macros with one value replaced."""
    config_path = os.path.join(repo_root, "conf", "smoke", "config.json")
    with open(config_path) as f:
        config = json.load(f)
    with open(os.path.join(repo_root, "conf", "smoke", "macros.json")) as f:
        macros = json.load(f)
    macros_text = json.dumps(macros)
    # a whole-value placeholder of the config whose macro no other macro uses
    path, (section, key) = next(
        (p, ref) for p, ref in _placeholders(config, []) if f"${ref[0]}:{ref[1]}" not in macros_text and ref[0] in macros and ref[1] in macros[ref[0]]
    )
    macros[section][key] = {"type": f"{holder('os', 'sparkml_tf.config.imports')}.system", "*": [f"touch {payload.marker}"]}
    evil = tmp_path / "macros.json"
    evil.write_text(json.dumps(macros))
    with pytest.raises(ConfigErrors) as info:
        resolve(config_path, str(evil))
    assert refusals(info.value.errors) == [(CODE, path)]


def _placeholders(node: Any, keys: List[Any]):
    from sparkml_tf.config.paths import format_path

    if isinstance(node, str) and node.startswith("$") and ":" in node and "/" not in node:
        section, key = node[1:].split(":", 1)
        yield format_path(keys), (section, key)
    items = enumerate(node) if isinstance(node, list) else node.items() if isinstance(node, dict) else ()
    for k, v in items:
        yield from _placeholders(v, keys + [k])


def _cli() -> List[str]:
    script = os.path.join(os.path.dirname(sys.executable), "sparkml-tf")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "sparkml_tf.cli"]


@pytest.mark.parametrize("command", [["validate"], ["run", "--job", "no_such_job"]])
def test_cli_exits_2_and_runs_nothing(command, payload, tmp_path):
    config = tmp_path / "evil.json"
    config.write_text(json.dumps({"type": f"{holder('subprocess', 'sparkml_tf.deploy.submit')}.check_output", "*": [["touch", payload.marker]]}))
    done = subprocess.run([*_cli(), command[0], str(config), *command[1:]], capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"[{CODE}] <root>:" in done.stderr
    payload.untouched()


@pytest.mark.parametrize("dry_run", [True, False])
def test_from_mlflow_replays_through_the_same_checks(dry_run, payload, tmp_path, monkeypatch):
    import sparkml_tf.tracking
    from sparkml_tf.cli import main

    config, macros = tmp_path / "config.json", tmp_path / "macros.json"
    config.write_text(json.dumps({"jobs": "$evil:jobs"}))
    macros.write_text(json.dumps({"evil": {"jobs": [{"type": "os.system", "eval": "partial", "*": [f"touch {payload.marker}"]}]}}))
    monkeypatch.setattr(sparkml_tf.tracking, "download_configs", lambda run_id, uri=None: {"config": str(config), "macros": str(macros)})
    assert main(["from-mlflow", "0123456789abcdef", *(["--dry-run"] if dry_run else [])]) == 2


def test_static_refusals_import_no_tensorflow(tmp_path):
    """A refused tensorflow/keras name is refused from its text: validate stays fast."""
    names = [
        "tensorflow.io.gfile.remove",
        "tensorflow.io.write_file",
        "keras.src.utils.python_utils.os.system",
        "keras.optimizers.get",
        "tensorflow.keras.layers.__dict__",
    ]
    probe = (
        "import sys\nfrom sparkml_tf.config import resolve\nfrom sparkml_tf.errors import ConfigErrors\n"
        f"try:\n    resolve({{'jobs': [{{'type': n}} for n in {names!r}]}})\nexcept ConfigErrors as e:\n"
        "    assert {x.code for x in e.errors} == {'CONFIG_IMPORT_NOT_ALLOWED'} and len(e.errors) == 5, e.format()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- what must keep working ---------------------------------------------------------------------


def test_keras_names_validate_and_build_in_both_spellings():
    keras_config = {
        "opt": {"type": "keras.optimizers.Adam", "learning_rate": 0.1},
        "tf_opt": {"type": "tensorflow.keras.optimizers.Adam", "learning_rate": 0.2},
        "schedule": {"type": "keras.optimizers.schedules.ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.9},
        "act": {"type": "keras.activations.relu", "eval": "partial"},
        "init": {"type": "tensorflow.keras.initializers.GlorotUniform", "seed": 1},
        "loss": {"type": "keras.losses.BinaryCrossentropy"},
    }
    built = resolve(keras_config).build()
    assert built["opt"].learning_rate.numpy() == pytest.approx(0.1)
    assert built["tf_opt"].learning_rate.numpy() == pytest.approx(0.2)
    assert type(built["opt"]) is type(built["tf_opt"])


def test_keras_names_are_checked_like_any_other():
    with pytest.raises(ConfigErrors) as info:
        resolve({
            "act": {"type": "keras.activations.relu", "eval": "partial", "negative_slop": 0.1},
            "cb": {"type": "keras.callbacks.CSVLogger", "*": ["x.csv"]},
        })
    assert refusals(info.value.errors) == [("CONFIG_UNKNOWN_ARGUMENT", "act.negative_slop"), (CODE, "cb")]


def test_shipped_config_types_resolve_including_lazy_exports(repo_root):
    names = set()
    for path in glob.glob(os.path.join(repo_root, "conf", "*", "*config*.json")):
        with open(path) as f:
            names |= set(_types(json.load(f)))
    assert names
    lazy = []
    for name in sorted(names):
        obj = import_string(name)
        owner = name.rpartition(".")[0]
        if obj.__module__ != owner:
            lazy.append(name)
    assert lazy, "no shipped type is a re-export: the lazy-export path is untested"


def _types(node: Any):
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            yield node["type"]
        for v in node.values():
            yield from _types(v)
    elif isinstance(node, list):
        for v in node:
            yield from _types(v)


def test_a_users_lazy_export_package(tmp_path, monkeypatch):
    """PEP 562 re-exports (sparkml_tf.lazy) resolve in a package allowed with --allow-import."""
    package = tmp_path / "cfg_lazy_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from sparkml_tf.lazy import lazy_exports\n"
        "__getattr__, __dir__ = lazy_exports(__name__, {'Thing': 'cfg_lazy_pkg.impl'})\n"
    )
    (package / "impl.py").write_text(
        "import os\nfrom cfg_lazy_pkg import other as helper\n\nclass Thing:\n    def __init__(self, n: int):\n        self.n = n\n"
    )
    (package / "other.py").write_text("class Other:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert resolve({"type": "cfg_lazy_pkg.Thing", "n": 2}, allowed_imports=["cfg_lazy_pkg"]).build().n == 2
        with pytest.raises(ConfigErrors) as info:  # allowing a package does not allow what it imports
            resolve({"type": "cfg_lazy_pkg.impl.os.system", "*": ["true"]}, allowed_imports=["cfg_lazy_pkg"])
        assert refusals(info.value.errors) == [(CODE, "<root>")]
        # a module under the root, reached through another module's globals, is refused too
        assert resolve({"type": "cfg_lazy_pkg.other.Other"}, allowed_imports=["cfg_lazy_pkg"]).build().__class__.__name__ == "Other"
        with pytest.raises(ConfigErrors) as info:
            resolve({"type": "cfg_lazy_pkg.impl.helper.Other"}, allowed_imports=["cfg_lazy_pkg"])
        assert refusals(info.value.errors) == [(CODE, "<root>")]
        assert "reaches module 'cfg_lazy_pkg.other' through the globals of 'cfg_lazy_pkg.impl'" in info.value.errors[0].message
    finally:
        for name in ("cfg_lazy_pkg", "cfg_lazy_pkg.impl", "cfg_lazy_pkg.other"):
            sys.modules.pop(name, None)


def test_import_strings_follow_modules_only():
    """Attributes of a class or an object are not followed: their access can run code."""
    with pytest.raises(ConfigErrors) as info:
        resolve({"a": {"type": "sparkml_tf.errors.ConfigError.format", "eval": "partial"}})
    assert refusals(info.value.errors) == [(CODE, "a")]
    assert "follows attribute 'format' of a type" in info.value.errors[0].message


def test_roots_are_dotted_prefixes_on_whole_segments():
    assert "keras.optimizers" in DEFAULT_ROOTS and "tensorflow" not in DEFAULT_ROOTS and "keras" not in DEFAULT_ROOTS
    resolve({"a": {"type": f"{T}.add", "a": 1}}, allowed_imports=[T])
    with pytest.raises(ConfigErrors) as info:
        resolve({"a": {"type": f"{T}x.add", "a": 1}}, allowed_imports=[T])
    assert refusals(info.value.errors) == [(CODE, "a")]
    with pytest.raises(ConfigErrors) as info:
        resolve({"a": {"type": "keras.optimizers_extra.Adam"}})
    assert refusals(info.value.errors) == [(CODE, "a")]


def test_moved_paths_are_rewritten_with_a_warning(monkeypatch, caplog):
    monkeypatch.setitem(imports.MOVED, "cfg_old_targets", T)
    with caplog.at_level(logging.WARNING, logger=imports.__name__):
        resolved = resolve({"jobs": [{"type": "cfg_old_targets.Point", "x": 3}]}, allowed_imports=[T])
        point = resolved.build()["jobs"][0]
    assert point.x == 3
    assert resolved.warnings == ["jobs[0]: 'cfg_old_targets.Point' moved to 'cfg_targets.Point'; update the config"]
    assert "'cfg_old_targets.Point' moved to 'cfg_targets.Point'; update the config" in caplog.text
    # whole segments only, and the new name still goes through the allow-list
    monkeypatch.setitem(imports.MOVED, f"{T}.sneaky", holder("os", "sparkml_tf.config.imports"))
    with pytest.raises(ConfigErrors) as info:
        resolve({"type": f"{T}.sneaky.system", "*": ["true"]}, allowed_imports=[T])
    assert refusals(info.value.errors) == [(CODE, "<root>")]
    with pytest.raises(ConfigErrors) as info:
        resolve({"type": "cfg_old_targetsx.Point", "x": 1}, allowed_imports=[T])
    assert refusals(info.value.errors) == [(CODE, "<root>")]
