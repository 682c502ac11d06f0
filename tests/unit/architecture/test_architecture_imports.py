"""The architecture, enforced: every module belongs to the core or to exactly one task; a task never
imports the other; executor-side modules never import the config system or the job engine; no
import circles. Imports are read from the source (module level and inside functions alike)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3] / "sparkml_tf"
TASKS = ("sparkml_tf.retrieval", "sparkml_tf.ranking")
# What runs in Spark's Python workers or barrier tasks (docs/architecture.md, "Driver and executors").
EXECUTOR_MODULES = (
    "sparkml_tf.spark.executor",
    "sparkml_tf.io.tfrecords",
    "sparkml_tf.io.layout",
    "sparkml_tf.io.outputs",
    "sparkml_tf.io.filesystems",
    "sparkml_tf.train.loop",
    "sparkml_tf.telemetry",
    "sparkml_tf.telemetry.live",
    "sparkml_tf.telemetry.resources",
    "sparkml_tf.telemetry.tensorboard",
    "sparkml_tf.index.hnsw",
    "sparkml_tf.metrics.ranking",
    "sparkml_tf.serving.export",
    "sparkml_tf.retrieval.trainer",
    "sparkml_tf.retrieval.records",
    "sparkml_tf.retrieval.petastorm_input",
    "sparkml_tf.retrieval.remote",
    "sparkml_tf.retrieval.layout",
    "sparkml_tf.ranking.trainer",
    "sparkml_tf.ranking.model_dir",
    "sparkml_tf.ranking.encode_remote",
    "sparkml_tf.ranking.score_remote",
    "sparkml_tf.ranking.layout",
    "sparkml_tf.ranking.features.feature_index",
)
DRIVER_ONLY = ("sparkml_tf.config", "sparkml_tf.engine", "sparkml_tf.cli", "sparkml_tf.deploy", "sparkml_tf.tracking")


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


MODULES = modules()


def imports_of(name: str):
    """Every sparkml_tf module ``name`` imports, resolved to a module of the package."""
    tree = ast.parse(MODULES[name].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("sparkml_tf") and target != name:
                found.add(target)
    return found


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def task_of(name: str):
    return next((t for t in TASKS if under(name, t)), None)


def test_every_module_is_core_or_one_task():
    assert set(MODULES) >= set(EXECUTOR_MODULES), sorted(set(EXECUTOR_MODULES) - set(MODULES))
    for name in MODULES:
        assert sum(under(name, t) for t in TASKS) <= 1


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_task_to_task_and_no_core_to_task_imports(name):
    mine = task_of(name)
    for target in imports_of(name):
        other = task_of(target)
        if other is None:
            continue
        if name == "sparkml_tf.lazy":
            continue
        assert other == mine, f"{name} imports {target}: {'a task never imports the other task' if mine else 'the core never imports a task'}"


@pytest.mark.parametrize("name", EXECUTOR_MODULES)
def test_executor_modules_do_not_import_the_config_system_or_engine(name):
    bad = [t for t in imports_of(name) if any(under(t, d) for d in DRIVER_ONLY)]
    assert not bad, f"{name} runs on executors but imports {bad}"


def test_no_import_circles():
    graph = {name: imports_of(name) for name in MODULES}
    # Package __init__ files re-export their children: an edge parent -> child is not a circle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not under(t, name)}
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_walk_sees_function_level_imports():
    # A guard on the guard: lazy imports inside functions count too.
    assert "sparkml_tf.config" in {t.rsplit(".", 1)[0] if t not in MODULES else t for t in imports_of("sparkml_tf.train.launch")} or any(
        under(t, "sparkml_tf.config") for t in imports_of("sparkml_tf.train.launch")
    )


ONE_OWNER = {
    '"stats.json"': "sparkml_tf/io/layout.py",
    '"quarantine"': "sparkml_tf/io/layout.py",
    '"feature_index.json"': "sparkml_tf/ranking/layout.py",
    '"saved_model.pb"': "sparkml_tf/serving/export.py",
}


@pytest.mark.parametrize("literal", sorted(ONE_OWNER))
def test_each_on_disk_name_has_one_owner(literal):
    owners = sorted(str(p.relative_to(ROOT.parent)) for p in MODULES.values() if literal in p.read_text())
    assert owners == [ONE_OWNER[literal]]
