"""``sparkml-tf submit`` through a subprocess: dry runs, and runs with a stand-in spark-submit."""

import json
import os
import shlex
import stat
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ML = ["conf/movielens/config.json", "conf/movielens/macros.json"]
SHARED = ["--set", "paths.run_dir=hdfs:///user/me/runs/ml", "--set", "mlflow.tracking_uri=http://mlflow:5000"]


def cli(*args, cwd=REPO, env=None):
    # MLflow's own variables from the test session (a run started in this process sets them) would
    # stand in for the config's null tracking settings: a user's shell has none unless they set them.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env = {**clean, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "sparkml_tf.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def test_help():
    rc, out, _ = cli("submit", "--help")
    assert rc == 0 and "usage: sparkml-tf submit" in out and "--target PROFILE" in out and "--dry-run" in out


def test_dry_run_prints_one_command_per_stage_in_pipeline_order():
    rc, out, err = cli("submit", *ML, "--target", "conf/targets/yarn-cluster.json", *SHARED, "--set", "train.num_workers=3", "--dry-run")
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 6
    argvs = [shlex.split(line) for line in lines]
    stages = ("dataset", "train", "index", "predict", "evaluate", "recommend")
    assert [argv[argv.index("--name") + 1] for argv in argvs] == [f"movielens-linear-ae:{s}" for s in stages]
    for argv in argvs:
        assert argv[:5] == ["spark-submit", "--master", "yarn", "--deploy-mode", "cluster"]
        script = next(a for a in argv if a.startswith("jobs/"))
        assert argv[argv.index(script):] == [script, "config.json", "macros.json", *SHARED, "--set", "train.num_workers=3"]
    train = argvs[1]
    assert train[train.index("--num-executors") + 1] == "3" and "spark.dynamicAllocation.enabled=false" in train
    assert err == ""  # shared storage and an MLflow server: nothing to warn about


def test_dry_run_warns_about_local_paths_on_a_cluster():
    rc, out, err = cli("submit", *ML, "--target", "conf/targets/yarn-cluster.json", "--dry-run", "--job", "index")
    assert rc == 0 and len(out.splitlines()) == 1
    assert "warning: paths.run_dir 'runs/movielens' is on local disk" in err
    assert "warning: mlflow.tracking_uri 'sqlite:///mlruns.db' is a file in the driver's container" in err


def fake_spark_submit(tmp_path, fail_stage=None):
    """A spark-submit stand-in: logs its stage, exits 3 for ``fail_stage``."""
    log = tmp_path / "calls.log"
    script = tmp_path / "spark-submit"
    script.write_text(
        "#!/bin/sh\n"
        'name=""; prev=""\n'
        'for a in "$@"; do [ "$prev" = "--name" ] && name="$a"; prev="$a"; done\n'
        f'echo "$name" >> {shlex.quote(str(log))}\n'
        f'case "$name" in *:{fail_stage or "NONE"}) exit 3;; esac\n'
        "exit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    target = tmp_path / "target.json"
    profile = json.load(open(os.path.join(REPO, "conf/targets/yarn-cluster.json")))
    target.write_text(json.dumps({**profile, "spark_submit": str(script)}))
    return target, log


def test_run_stops_at_the_first_failing_stage_with_its_exit_code(tmp_path):
    target, log = fake_spark_submit(tmp_path, fail_stage="index")
    rc, out, err = cli("submit", *ML, "--target", str(target), *SHARED, env={"JAVA_HOME": str(tmp_path)})
    assert rc == 3
    assert log.read_text().split() == ["movielens-linear-ae:dataset", "movielens-linear-ae:train", "movielens-linear-ae:index"]
    assert [line.split()[0] for line in out.splitlines()] == ["+"] * 3
    assert "stage index failed (spark-submit exit 3); not run: predict, evaluate" in err


def test_config_error_exits_2_before_any_command_runs(tmp_path):
    target, log = fake_spark_submit(tmp_path)
    rc, out, err = cli("submit", *ML, "--target", str(target), "--set", "train.epocs=3", env={"JAVA_HOME": str(tmp_path)})
    assert rc == 2 and "[CONFIG_OVERRIDE_UNKNOWN_KEY] train.epocs:" in err
    assert out == "" and not log.exists()


def test_bad_target_and_unknown_stage_exit_2(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"master": "yarn", "deploy_mode": "remote"}))
    rc, _, err = cli("submit", *ML, "--target", str(tmp_path / "t.json"), "--dry-run")
    assert rc == 2 and "[SUBMIT_TARGET_INVALID] deploy_mode:" in err
    rc, _, err = cli("submit", *ML, "--target", "conf/targets/yarn-cluster.json", "--job", "trian", "--dry-run")
    assert rc == 2 and "[PIPELINE_UNKNOWN_JOB] --job: no stage named trian" in err


def test_run_makes_one_mlflow_run_that_every_stage_logs_into(tmp_path):
    import mlflow

    target, log = fake_spark_submit(tmp_path, fail_stage="predict")
    script = tmp_path / "spark-submit"
    # The stand-in also records the run id each stage gets: in its environment, and in a YARN driver's conf.
    conf = '$(echo "$@" | grep -o "appMasterEnv.MLFLOW_RUN_ID=[a-z0-9]*")'
    script.write_text(script.read_text().replace('echo "$name" >>', f'echo "$name $MLFLOW_RUN_ID {conf}" >>'))
    db = f"sqlite:///{tmp_path}/mlruns.db"
    env = {"JAVA_HOME": str(tmp_path), "MLFLOW_RUN_ID": ""}
    rc, out, err = cli("submit", *ML, "--target", str(target), "--set", "paths.run_dir=hdfs:///runs/ml", "--set", f"mlflow.tracking_uri={db}", env=env)
    assert rc == 3, err
    client = mlflow.MlflowClient(db)
    (run,) = client.search_runs([client.get_experiment_by_name("movielens").experiment_id])
    calls = [line.split() for line in log.read_text().splitlines()]
    assert [c[0].split(":")[1] for c in calls] == ["dataset", "train", "index", "predict"]
    assert all(c[1] == run.info.run_id and c[2] == f"appMasterEnv.MLFLOW_RUN_ID={run.info.run_id}" for c in calls), calls
    assert run.info.status == "FAILED" and run.data.tags["sparkml_tf.submit"] == "true" and "sparkml_tf.version" in run.data.tags
