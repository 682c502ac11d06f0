"""spark-submit commands for the MovieLens pipeline, generated from the target profiles (no Spark runs)."""

import io
import json
import os
import sys

import pytest

from sparkml_tf.config import resolve
from sparkml_tf.deploy.submit import StageCommand, cluster_warnings, load_target, pipeline_stages, plan, run_commands
from sparkml_tf.errors import ConfigError, ConfigErrors, SparkmlTfError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CONFIG, MACROS = "conf/movielens/config.json", "conf/movielens/macros.json"
STAGES = ["dataset", "train", "index", "predict", "evaluate", "recommend"]
OVERRIDES = ["paths.run_dir=hdfs:///user/me/runs/ml", "train.num_workers=4", "mlflow.tracking_uri=http://mlflow:5000", "train.epochs=3"]
PY = "./env/bin/python"


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # paths as the launch scripts give them, relative to the repository root


def target(name):
    return load_target(os.path.join(REPO, "conf", "targets", f"{name}.json"))


def commands_for(profile, overrides=OVERRIDES, config=CONFIG, macros=MACROS, **kwargs):
    resolved = resolve(config, macros, overrides)
    return plan(resolved, profile, config, macros, overrides, environ={}, **kwargs)


def split(argv):
    """``(options, tail)``: spark-submit's options as (flag, value) pairs, then the script and its arguments."""
    options, i = [], 1
    while i < len(argv) and argv[i].startswith("--"):
        options.append((argv[i], argv[i + 1]))
        i += 2
    return options, argv[i:]


def values(options, flag):
    return [value for key, value in options if key == flag]


def confs(options):
    pairs = [value.split("=", 1) for value in values(options, "--conf")]
    assert len({key for key, _ in pairs}) == len(pairs), "a setting given twice"
    return dict(pairs)


def test_yarn_cluster_commands():
    commands = commands_for(target("yarn-cluster"))
    assert [c.stage for c in commands] == STAGES
    app_args = ["config.json", "macros.json"] + [arg for o in OVERRIDES for arg in ("--set", o)]
    for command in commands:
        options, tail = split(command.argv)
        assert command.argv[0] == "spark-submit"
        assert values(options, "--master") == ["yarn"] and values(options, "--deploy-mode") == ["cluster"]
        assert values(options, "--name") == [f"movielens-linear-ae:{command.stage}"]
        assert values(options, "--archives") == ["sparkml_tf_env.tar.gz#env"]
        # Shipped into the driver's container, read there by basename; overrides kept, in order.
        assert values(options, "--files") == [f"{CONFIG},{MACROS}"]
        assert tail == [f"jobs/{command.stage}.py"] + app_args
        conf = confs(options)
        assert conf["spark.pyspark.python"] == PY
        assert conf["spark.executorEnv.PYSPARK_PYTHON"] == PY
        assert conf["spark.yarn.appMasterEnv.PYSPARK_PYTHON"] == PY
        assert conf["spark.yarn.maxAppAttempts"] == "1"
        assert "spark.pyspark.driver.python" not in conf
        barrier = command.stage == "train"
        assert command.barrier_workers == (4 if barrier else None)
        assert (conf.get("spark.dynamicAllocation.enabled") == "false") == barrier
        assert ("spark.task.cpus" in conf) == barrier
    train = commands[1]
    options, _ = split(train.argv)
    conf = confs(options)
    assert values(options, "--num-executors") == ["4"]  # = train.num_workers, not the profile's 8
    assert values(options, "--executor-cores") == ["4"] and conf["spark.task.cpus"] == "4"  # one task per executor
    assert values(options, "--executor-memory") == ["16g"]
    assert conf["spark.scheduler.minRegisteredResourcesRatio"] == "1.0"
    assert conf["spark.scheduler.maxRegisteredResourcesWaitingTime"] == "300s"
    assert values(split(commands[0].argv)[0], "--num-executors") == ["8"]
    assert values(split(commands[2].argv)[0], "--num-executors") == ["1"]  # index: built on the driver
    assert values(split(commands[2].argv)[0], "--driver-memory") == ["8g"]


def test_yarn_cluster_train_command_exactly():
    (train,) = commands_for(target("yarn-cluster"), overrides=["train.num_workers=3"], only=["train"])
    assert train.shell() == (
        "spark-submit --master yarn --deploy-mode cluster --name movielens-linear-ae:train "
        "--archives 'sparkml_tf_env.tar.gz#env' --files conf/movielens/config.json,conf/movielens/macros.json "
        "--driver-memory 4g --driver-cores 2 --num-executors 3 --executor-cores 4 --executor-memory 16g "
        "--conf spark.pyspark.python=./env/bin/python --conf spark.executorEnv.PYSPARK_PYTHON=./env/bin/python "
        "--conf spark.yarn.appMasterEnv.PYSPARK_PYTHON=./env/bin/python --conf spark.yarn.maxAppAttempts=1 "
        "--conf spark.yarn.submit.waitAppCompletion=true --conf spark.scheduler.maxRegisteredResourcesWaitingTime=300s "
        "--conf spark.dynamicAllocation.enabled=false --conf spark.scheduler.minRegisteredResourcesRatio=1.0 "
        "--conf spark.task.cpus=4 jobs/train.py config.json macros.json --set train.num_workers=3"
    )


def test_yarn_client_commands():
    commands = commands_for(target("yarn-client"))
    assert [c.stage for c in commands] == STAGES
    for command in commands:
        options, tail = split(command.argv)
        assert values(options, "--master") == ["yarn"] and values(options, "--deploy-mode") == ["client"]
        assert values(options, "--archives") == ["sparkml_tf_env.tar.gz#env"]
        # The driver runs here: it reads the files where they are, with this interpreter.
        assert values(options, "--files") == []
        assert tail[1:3] == [CONFIG, MACROS] and tail[3:] == [arg for o in OVERRIDES for arg in ("--set", o)]
        conf = confs(options)
        assert conf["spark.pyspark.python"] == PY and conf["spark.executorEnv.PYSPARK_PYTHON"] == PY
        assert conf["spark.pyspark.driver.python"] == sys.executable
        assert not any(key.startswith("spark.yarn.appMasterEnv.") for key in conf)
        assert values(options, "--driver-cores") == []  # a client-mode driver is this process
    options, _ = split(commands[1].argv)
    assert values(options, "--num-executors") == ["4"] and confs(options)["spark.dynamicAllocation.enabled"] == "false"


def test_env_archive_with_its_own_alias_sets_the_python():
    commands = commands_for(target("yarn-cluster").override(env_archive="hdfs:///envs/tf.tar.gz#py"), only=["index"])
    options, _ = split(commands[0].argv)
    assert values(options, "--archives") == ["hdfs:///envs/tf.tar.gz#py"]
    assert confs(options)["spark.yarn.appMasterEnv.PYSPARK_PYTHON"] == "./py/bin/python"


def test_job_selection_keeps_pipeline_order_and_flags_pass_through():
    commands = commands_for(target("yarn-cluster"), only=["evaluate", "dataset"], force=True, extra_conf=["spark.yarn.queue=etl"])
    assert [c.stage for c in commands] == ["dataset", "evaluate"]
    options, tail = split(commands[0].argv)
    assert tail[-1] == "--force" and confs(options)["spark.yarn.queue"] == "etl"
    with pytest.raises(ConfigError) as info:
        commands_for(target("yarn-cluster"), only=["trian"])
    assert info.value.code == "PIPELINE_UNKNOWN_JOB" and info.value.path == "--job"


def test_urls_and_inline_json_are_passed_as_they_are():
    resolved = resolve(CONFIG, MACROS, OVERRIDES)
    inline = json.dumps({"run": {"seed": 1}})
    (command,) = plan(resolved, target("yarn-cluster"), "hdfs:///conf/config.json", inline, only=["index"], environ={})
    options, tail = split(command.argv)
    assert values(options, "--files") == [] and tail == ["jobs/index.py", "hdfs:///conf/config.json", inline]


def test_local_target_runs_this_python_without_executor_settings():
    commands = commands_for(target("local"), overrides=["train.epochs=1"])
    assert [c.stage for c in commands] == STAGES
    for command in commands:
        options, tail = split(command.argv)
        assert values(options, "--master") == ["local[2]"] and values(options, "--deploy-mode") == []
        assert {flag for flag, _ in options} == {"--master", "--name", "--driver-memory", "--conf"}
        assert confs(options) == {"spark.pyspark.python": sys.executable, "spark.executorEnv.PYSPARK_PYTHON": sys.executable}
        assert tail == [f"jobs/{command.stage}.py", CONFIG, MACROS, "--set", "train.epochs=1"]


def test_standalone_barrier_stage_takes_whole_executors():
    commands = commands_for(target("standalone"), overrides=["train.num_workers=2"], only=["dataset", "train"])
    dataset, _ = split(commands[0].argv)
    train, _ = split(commands[1].argv)
    assert values(dataset, "--total-executor-cores") == ["2"] and "spark.task.cpus" not in confs(dataset)
    assert values(train, "--total-executor-cores") == ["2"] and values(train, "--executor-cores") == ["1"]
    assert confs(train)["spark.task.cpus"] == "1" and confs(train)["spark.dynamicAllocation.enabled"] == "false"
    assert values(train, "--num-executors") == []  # a YARN/Kubernetes option


def test_local_launcher_is_not_a_barrier_stage():
    stages = pipeline_stages(resolve(CONFIG, MACROS, ["train.launcher=local"]).config)
    assert [s["barrier_workers"] for s in stages] == [None] * 6


def test_stage_without_its_own_entry_point_goes_through_run_py():
    config = {"type": "sparkml_tf.engine.Pipeline", "name": "smoke", "jobs": [{"type": "sparkml_tf.engine.CheckEnvironment"}], "tracking": None}
    resolved = resolve(config)
    (command,) = plan(resolved, target("yarn-cluster"), json.dumps(config), environ={})
    assert command.stage == "check"  # CheckEnvironment's default name, as --job names it
    assert split(command.argv)[1] == ["jobs/run.py", json.dumps(config), "--job", "check"]


def test_a_config_that_pins_the_master_is_refused():
    resolved = resolve("conf/smoke/config.json", "conf/smoke/macros.json")
    with pytest.raises(ConfigErrors) as info:
        plan(resolved, target("yarn-cluster"), "conf/smoke/config.json", "conf/smoke/macros.json", environ={})
    assert info.value.code == "SUBMIT_MASTER_CONFLICT" and info.value.path == "spark.master"
    assert "--set macros.spark.master=null" in info.value.message
    plan(resolved, target("local"), "conf/smoke/config.json", "conf/smoke/macros.json", environ={})  # local[2] both


def test_same_file_names_cannot_both_be_shipped(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.json").write_text("{}")
    resolved = resolve(CONFIG, MACROS)
    with pytest.raises(ConfigError) as info:
        plan(resolved, target("yarn-cluster"), str(tmp_path / "a/x.json"), str(tmp_path / "b/x.json"), environ={})
    assert info.value.code == "SUBMIT_FILES_CLASH"


def test_target_profile_problems_are_listed_together(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"master": "yarn", "deploy_mod": "cluster", "resources": {"train": {"executor_cors": 4, "num_executors": "4"}}}))
    with pytest.raises(ConfigErrors) as info:
        load_target(str(path))
    found = [(e.code, e.path) for e in info.value.errors]
    assert found == [
        ("SUBMIT_TARGET_INVALID", "deploy_mod"),
        ("SUBMIT_TARGET_INVALID", "resources.train.executor_cors"),
        ("SUBMIT_TARGET_INVALID", "resources.train.num_executors"),
    ]
    assert "did you mean 'deploy_mode'?" in info.value.errors[0].message
    assert "did you mean 'executor_cores'?" in info.value.errors[1].message


def test_every_shipped_target_loads():
    for name in ("local", "standalone", "yarn-client", "yarn-cluster"):
        assert target(name).master


def test_cluster_warnings_name_local_run_dirs_and_sqlite():
    local = cluster_warnings(resolve(CONFIG, MACROS), target("yarn-cluster"))
    assert [w.split(" ")[0] for w in local] == ["paths.run_dir", "mlflow.tracking_uri"]
    assert cluster_warnings(resolve(CONFIG, MACROS, OVERRIDES), target("yarn-cluster")) == []
    assert cluster_warnings(resolve(CONFIG, MACROS), target("local")) == []


def test_entry_points_exist_for_every_stage_name():
    for stage in ("dataset", "train", "export", "index", "predict", "evaluate", "score", "recommend"):
        text = open(f"jobs/{stage}.py").read()
        assert f'"--job", "{stage}"' in text


def test_run_stops_at_the_first_failure_with_its_exit_code(monkeypatch):
    monkeypatch.setenv("JAVA_HOME", "/opt/java")
    commands = [StageCommand(name, ["spark-submit", name]) for name in ("a", "b", "c")]
    calls, out, err = [], io.StringIO(), io.StringIO()

    def call(argv):
        calls.append(argv[1])
        return 3 if argv[1] == "b" else 0

    assert run_commands(commands, out, err, call) == 3
    assert calls == ["a", "b"]
    assert out.getvalue().splitlines() == ["+ spark-submit a", "+ spark-submit b"]
    assert err.getvalue().strip() == "stage b failed (spark-submit exit 3); not run: c"
    assert run_commands(commands, out, err, lambda argv: 0) == 0


def test_run_reports_a_missing_spark_submit(monkeypatch):
    monkeypatch.setenv("JAVA_HOME", "/opt/java")

    def call(argv):
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(SparkmlTfError) as info:
        run_commands([StageCommand("dataset", ["nope-submit"])], io.StringIO(), io.StringIO(), call)
    assert info.value.code == "SUBMIT_NO_SPARK_SUBMIT"


def test_entry_points_must_be_here(tmp_path, monkeypatch):
    resolved = resolve(CONFIG, MACROS)
    monkeypatch.chdir(tmp_path)  # no jobs/ here
    with pytest.raises(ConfigError) as info:
        plan(resolved, target("local").override(jobs_dir="jobs"), CONFIG, MACROS, environ={})
    assert info.value.code == "SUBMIT_NO_ENTRY_POINT"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "run.py").write_text("")
    commands = plan(resolved, target("local").override(jobs_dir="elsewhere"), CONFIG, MACROS, environ={})
    assert split(commands[0].argv)[1] == ["elsewhere/run.py", CONFIG, MACROS, "--job", "dataset"]


def test_barrier_stage_found_from_the_jobs_defaults():
    # No num_workers or launcher in the config: Train's defaults (2, "spark") make it a barrier stage.
    train = {"type": "sparkml_tf.retrieval.Train", "dataset_dir": "d", "export_dir": "e", "embeddings_dir": "m", "checkpoint_dir": "c",
             "model": {"type": "sparkml_tf.retrieval.AverageModel", "eval": None}}
    stages = pipeline_stages(resolve({"type": "sparkml_tf.engine.Pipeline", "jobs": [train], "tracking": None}).config)
    assert stages == [{"name": "train", "barrier_workers": 2, "whole": False}]
