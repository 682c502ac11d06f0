"""The CLI through a subprocess, as a user or scheduler runs it."""

import json
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def cli(*args, cwd=None, timeout=120, env=None):
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable, **(env or {})}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sparkml_tf.cli", *args], capture_output=True, text=True, cwd=cwd or REPO, env=env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start


PIPE = "sparkml_tf.engine.Pipeline"
CHECK = "sparkml_tf.engine.CheckEnvironment"
BAD_CONFIGS = {
    "unknown_type": ({"type": PIPE, "jobs": [{"type": "sparkml_tf.engine.CheckEnviroment"}]}, None, "CONFIG_UNKNOWN_TYPE", "jobs[0]"),
    "misspelled_argument": ({"type": PIPE, "jobs": [{"type": CHECK, "num_task": 2}]}, None, "CONFIG_UNKNOWN_ARGUMENT", "jobs[0].num_task"),
    "missing_argument": ({"type": PIPE, "name": "x"}, None, "CONFIG_MISSING_ARGUMENT", "<root>"),
    "missing_macro": (
        {"type": PIPE, "jobs": [{"type": CHECK, "num_tasks": "$params:tasks"}]},
        {"params": {"task": 2}},
        "CONFIG_MACRO_MISSING",
        "jobs[0].num_tasks",
    ),
    "macro_cycle": ({"type": PIPE, "jobs": [], "name": "$a:x"}, {"a": {"x": "$b:y"}, "b": {"y": "$a:x"}}, "CONFIG_MACRO_CYCLE", "a.x"),
    "disallowed_import": ({"type": PIPE, "jobs": [{"type": "subprocess.call", "*": ["true"]}]}, None, "CONFIG_IMPORT_NOT_ALLOWED", "jobs[0]"),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_configs_exit_2_with_code_and_path_without_spark(tmp_path, case, command):
    config, macros, code, path = BAD_CONFIGS[case]
    (tmp_path / "c.json").write_text(json.dumps(config))
    args = [command, str(tmp_path / "c.json")]
    if macros:
        (tmp_path / "m.json").write_text(json.dumps(macros))
        args.append(str(tmp_path / "m.json"))
    rc, out, err, seconds = cli(*args, cwd=tmp_path)
    assert rc == 2, err
    assert f"[{code}] {path}:" in err
    assert seconds < 10
    assert "Spark" not in err and not (tmp_path / "mlruns.db").exists()


def test_malformed_json_exit_2(tmp_path):
    (tmp_path / "c.json").write_text('{"type": "sparkml_tf.engine.Pipeline",\n "jobs": [}\n')
    rc, _, err, _ = cli("validate", str(tmp_path / "c.json"))
    assert rc == 2
    assert f"[CONFIG_JSON_INVALID] {tmp_path / 'c.json'}:2:11: malformed JSON in the config at line 2, column 11" in err


def test_root_path_is_named():
    # An error on the top-level object names it as <root> so the message is never path-less.
    rc, _, err, _ = cli("validate", json.dumps({"type": PIPE}))
    assert rc == 2 and "[CONFIG_MISSING_ARGUMENT] <root>:" in err


def test_help_for_every_command():
    for command in ("run", "validate", "render", "from-mlflow"):
        rc, out, _, _ = cli(command, "--help")
        assert rc == 0 and "usage: sparkml-tf " + command in out


def test_usage_error_exits_2():
    rc, _, err, _ = cli("frobnicate")
    assert rc == 2 and "invalid choice" in err


def test_render_applies_overrides_and_macros():
    rc, out, err, _ = cli("render", "conf/smoke/config.json", "conf/smoke/macros.json", "--set", "params.num_tasks=1", "--set", "name=renamed")
    assert rc == 0, err
    rendered = json.loads(out)
    assert rendered["jobs"][0]["num_tasks"] == 1 and rendered["name"] == "renamed"
    assert rendered["tracking"]["config"] == "@self"


def test_override_of_missing_key_exits_2():
    rc, _, err, _ = cli("validate", "conf/smoke/config.json", "conf/smoke/macros.json", "--set", "params.num_taks=1")
    assert rc == 2 and "[CONFIG_OVERRIDE_UNKNOWN_KEY] params.num_taks:" in err


@pytest.mark.spark
def test_run_smoke_then_rerun_from_mlflow(tmp_path):
    db = f"sqlite:///{tmp_path}/mlruns.db"
    config, macros = os.path.join(REPO, "conf/smoke/config.json"), os.path.join(REPO, "conf/smoke/macros.json")
    # Only the smoke pipeline's first job (CheckEnvironment): the whole pipeline runs in the integration tests.
    rc, out, err, _ = cli("run", config, macros, "--set", f"tracking.uri={db}", "--set", "params.num_tasks=2", "--job", "check", cwd=tmp_path, timeout=300)
    assert rc == 0, err[-3000:]
    assert "tasks" in out
    import mlflow

    client = mlflow.MlflowClient(db)
    (run,) = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["tasks"] == 2
    rc, out, err, _ = cli("from-mlflow", run.info.run_id, "--tracking-uri", db, "--dry-run", cwd=tmp_path)
    assert rc == 0, err
    assert "is valid" in out and "warning" not in err  # the same code as the run's
    # A run made by other code: the rerun says so (it runs the installed code).
    client.set_tag(run.info.run_id, "sparkml_tf.version", "0.0.1")
    rc, out, err, _ = cli("from-mlflow", run.info.run_id, "--dry-run", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": db})
    assert rc == 0 and "is valid" in out, err
    assert f"warning: run {run.info.run_id} was made by other code than this: sparkml_tf 0.0.1 ran it" in err


def test_an_unknown_job_is_a_usage_error_under_run_as_under_submit(tmp_path):
    config = {"type": PIPE, "jobs": [{"type": CHECK}], "tracking": None, "name": "x"}
    rc, _, err, _ = cli("run", json.dumps(config), "--job", "nope", cwd=tmp_path)
    assert rc == 2 and "[PIPELINE_UNKNOWN_JOB] --job:" in err


def test_runtime_failure_exits_1(tmp_path):
    # A well-formed config whose job fails at run time: an index over item embeddings that are not there.
    job = {"type": "sparkml_tf.retrieval.BuildIndex", "embeddings_dir": str(tmp_path / "no-embeddings"), "output_dir": str(tmp_path / "index")}
    config = {"type": PIPE, "jobs": [job], "tracking": None, "name": "x"}
    rc, _, err, _ = cli("run", json.dumps(config), cwd=tmp_path)
    assert rc == 1 and "[DATA_" in err, err[-2000:]
