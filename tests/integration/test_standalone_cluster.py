"""The smoke pipeline on a real Spark standalone cluster: a master and two 1-core workers on
127.0.0.1 (separate JVMs, each executor with its own Python processes), the environment packed by
sparkml_tf.deploy.pack and shipped with --archives, submitted with spark-submit as a user would.

One cluster and one packed environment serve every test here (the archive is cached under
.cache/pack by a content key, or $SPARKML_TF_PACK_CACHE). The fault test kills the executor JVM of
the worker running training rank 0 once the first checkpoints exist, and checks that Spark retried
the barrier stage, that training resumed from the last checkpoint, and that the pipeline finished.
The scoring fault test kills an executor while it runs a task of ScoreCandidates' score pass, and
checks that the run completes and that the date's partition was never visible before, nor partial.
"""

import glob
import json
import os
import re
import signal
import sys
import time

import pytest

from sparkml_tf.testing.standalone import StandaloneCluster, alive, executor_pid

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; Linux only")]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG, MACROS = "conf/smoke/config.json", "conf/smoke/macros.json"
SUBMIT_TIMEOUT_S = 900
RANK_LINE = re.compile(r"\[sparkml_tf\.barrier\] rank (\d+)/(\d+) task (\d+) python worker pid (\d+) executable (\S+)")
CHILD_LINE = re.compile(r"\[sparkml_tf\.barrier\] rank (\d+): training process pid (\d+)")


@pytest.fixture(scope="module")
def packed_env():
    from sparkml_tf.deploy.pack import cached_pack

    report = cached_pack(os.environ.get("SPARKML_TF_PACK_CACHE") or os.path.join(REPO, ".cache", "pack"))
    print(f"\npacked environment: {report.describe()}")
    return report.path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = StandaloneCluster(str(tmp_path_factory.mktemp("standalone")), workers=2, cores=1, memory="2g").start()
    try:
        yield cluster
    finally:
        cluster.reap()
        cluster.stop()


@pytest.fixture(autouse=True)
def reaped(cluster):
    """After each test, whatever it left running is killed and the unpacked environments (2.4 GB per
    executor and per driver) are removed, so the next test starts on an idle cluster and a free disk;
    the logs stay for a look after a failure."""
    yield
    cluster.reap()


def submit(cluster, archive, work, *args):
    """spark-submit jobs/run.py of the smoke config, executors on the packed environment."""
    argv = [
        "--archives", f"{archive}#env",
        "--conf", "spark.pyspark.python=./env/bin/python",  # executors: the unpacked archive in their work dir
        "--conf", f"spark.pyspark.driver.python={sys.executable}",  # client mode: the driver runs here
        "--driver-memory", "1g", "--executor-memory", "1g",
        "--conf", "spark.ui.enabled=false",
        "jobs/run.py", CONFIG, MACROS,
        "--set", "macros.spark.master=null",  # the master spark-submit was given
        "--set", f"tracking.uri=sqlite:///{work}/mlruns.db",
        *args,
    ]
    return cluster.submit(argv, os.path.join(work, "submit.log"), cwd=REPO)


def new_app(cluster, before, process, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        apps = [a for a in cluster.apps() if a not in before]
        if apps:
            return apps[0]
        assert process.poll() is None, "spark-submit exited before an executor started"
        time.sleep(0.5)
    raise AssertionError("no executor started for the application")


def executor_logs(cluster, app):
    return {worker: [os.path.join(d, "stderr") for d in dirs] for worker, dirs in cluster.executor_dirs(app).items()}


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def diagnostics(cluster, work, app=None):
    """The submit log's tail and each executor log's tail, for assertion messages."""
    parts = [f"--- {work}/submit.log\n" + "\n".join(read(os.path.join(work, "submit.log")).splitlines()[-60:])]
    for logs in (executor_logs(cluster, app) if app else {}).values():
        for log in logs:
            parts.append(f"--- {log}\n" + "\n".join(read(log).splitlines()[-30:]))
    return "\n".join(parts)


def wait(process, cluster, work, app=None):
    try:
        return process.wait(timeout=SUBMIT_TIMEOUT_S)
    except Exception:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("spark-submit did not finish in time\n" + diagnostics(cluster, work, app))


def mlflow_metrics(work, experiment="smoke"):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work}/mlruns.db")
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FINISHED"
    return run.data.metrics


@pytest.fixture(scope="module")
def smoke_run(cluster, packed_env, tmp_path_factory):
    """The whole smoke pipeline (check, dataset, train on 2 barrier workers, index, predict, evaluate), once."""
    work = str(tmp_path_factory.mktemp("smoke"))
    before = cluster.apps()
    start = time.monotonic()
    process = submit(cluster, packed_env, work, "--set", f"paths.run_dir={work}/run")
    app = new_app(cluster, before, process)
    rc = wait(process, cluster, work, app)
    print(f"\nsmoke pipeline on the standalone cluster: {time.monotonic() - start:.0f}s")
    return {"work": work, "run_dir": f"{work}/run", "app": app, "rc": rc}


def test_smoke_pipeline_on_two_workers_with_the_packed_environment(cluster, smoke_run):
    work, run_dir, app = smoke_run["work"], smoke_run["run_dir"], smoke_run["app"]
    assert smoke_run["rc"] == 0, diagnostics(cluster, work, app)

    # Executors ran the packed interpreter, unpacked from the archive into their own work dir,
    # with pyspark from the cluster's Spark (the archive has none).
    executors = json.load(open(os.path.join(run_dir, "executors.json")))
    assert len(executors) == 2
    for report in executors:
        assert any(report["executable"].startswith(w + os.sep) for w in cluster.worker_dirs), report["executable"]
        assert report["executable"].endswith(os.path.join("env", "bin", f"python{sys.version_info.major}.{sys.version_info.minor}"))
        assert not report["executable"].startswith(sys.prefix)
        assert "pyspark.zip" in report["pyspark_from"] and "/env/" not in report["pyspark_from"], report["pyspark_from"]
        assert report["tensorflow"][0].isdigit() and report["sparkml_tf"][0].isdigit(), report

    # The barrier training stage ran one rank in each worker: each worker's executor log has the
    # launcher's line for a different rank, from a different Python process, on the packed Python.
    ranks = {}
    for worker, logs in executor_logs(cluster, app).items():
        for log in logs:
            for rank, size, _task, pid, executable in RANK_LINE.findall(read(log)):
                assert size == "2"
                ranks[int(rank)] = (worker, int(pid), executable)
    assert sorted(ranks) == [0, 1], diagnostics(cluster, work, app)
    (worker0, pid0, exe0), (worker1, pid1, exe1) = ranks[0], ranks[1]
    assert worker0 != worker1 and pid0 != pid1
    assert exe0.startswith(worker0 + os.sep) and exe1.startswith(worker1 + os.sep)

    # Metrics came back.
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["num_users"] > 0 and 0 <= metrics["recall@20"] <= 1 and "popular/recall@20" in metrics
    logged = mlflow_metrics(work)
    assert logged["train_steps"] > 0 and logged["tasks"] == 2


def checkpoint_steps(folder):
    return sorted(int(m.group(1)) for m in (re.search(r"ckpt-(\d+)\.index$", p) for p in glob.glob(os.path.join(folder, "ckpt-*.index"))) if m)


def latest_checkpoint_step(folder):
    text = read(os.path.join(folder, "checkpoint"))  # TF's state file, replaced atomically after each save
    return int(re.search(r'^model_checkpoint_path: ".*?ckpt-(\d+)"', text, re.M).group(1))


def test_training_resumes_after_an_executor_is_killed(cluster, packed_env, smoke_run, tmp_path):
    """kill -9 the executor JVM running rank 0 mid-training: Spark retries the barrier stage on a new
    executor, training resumes from the last checkpoint, and the pipeline finishes."""
    assert smoke_run["rc"] == 0, "the smoke run failed: see the other test"
    work, every, kill_after = str(tmp_path), 10, 30
    ckpt = f"{work}/run/checkpoints"
    before = cluster.apps()
    process = submit(
        cluster, packed_env, work,
        "--set", f"paths.run_dir={work}/run",
        "--set", f"paths.dataset_dir={smoke_run['run_dir']}/dataset",  # built by the smoke run
        # Slow enough to be killed midway: 8 epochs of ~30 steps, a checkpoint every 10 steps, no early stop.
        "--set", "train.batch_size=8", "--set", "train.epochs=8", "--set", f"train.checkpoint_every_steps={every}", "--set", "train.patience=100",
        "--job", "train", "--job", "index", "--job", "predict", "--job", "evaluate",
    )
    app = new_app(cluster, before, process)
    deadline = time.monotonic() + SUBMIT_TIMEOUT_S
    while not [s for s in checkpoint_steps(ckpt) if s >= kill_after]:
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint before the job ended\n" + diagnostics(cluster, work, app)
        time.sleep(0.1)

    logs = [log for worker_logs in executor_logs(cluster, app).values() for log in worker_logs]
    lines = [m for log in logs for m in RANK_LINE.finditer(read(log))]
    (rank0,) = [m for m in lines if m.group(1) == "0"]
    children = [int(m.group(2)) for log in logs for m in CHILD_LINE.finditer(read(log))]
    assert len(children) == 2
    jvm = executor_pid(int(rank0.group(4)))
    assert jvm, "no executor JVM above rank 0's Python worker"
    os.kill(jvm, signal.SIGKILL)
    killed = time.monotonic()

    # The training processes of the failed attempt die with their tasks: no orphan to collide with the retry.
    while any(alive(pid) for pid in children):
        assert time.monotonic() - killed < 30, f"training processes {children} outlived their tasks"
        time.sleep(0.2)
    orphans_gone_s = time.monotonic() - killed
    at_kill = latest_checkpoint_step(ckpt)
    assert at_kill >= kill_after

    rc = wait(process, cluster, work, app)
    recovery_s = time.monotonic() - killed
    assert rc == 0, diagnostics(cluster, work, app)
    logs = [log for worker_logs in executor_logs(cluster, app).values() for log in worker_logs]
    assert len(logs) == 3  # the killed executor was replaced by a new one on the same worker
    attempts = [m for log in logs for m in RANK_LINE.finditer(read(log))]
    assert sorted(m.group(1) for m in attempts) == ["0", "0", "1", "1"]  # the whole barrier stage ran again

    logged = mlflow_metrics(work)
    resumed = int(logged["resumed_from_step"])
    # Resumed from the checkpoint that was the latest when the executor died. The chief saves every
    # `every` steps, so it had run fewer than `every` steps past it: at most one interval was redone.
    assert resumed == at_kill, (resumed, at_kill)
    assert logged["train_steps"] > resumed
    assert os.path.exists(f"{work}/run/metrics.json")
    print(f"\nfault test: killed at checkpoint {at_kill} (every {every} steps), resumed from step {resumed} of {int(logged['train_steps'])}; "
          f"orphans gone {orphans_gone_s:.1f}s after the kill, pipeline done {recovery_s:.0f}s after it")


def executor_jvms(executor_dir):
    """Pids of executor JVMs whose working directory is ``executor_dir`` (Linux /proc)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if (
                os.path.realpath(f"/proc/{pid}/cwd") == os.path.realpath(executor_dir)
                and b"CoarseGrainedExecutorBackend" in open(f"/proc/{pid}/cmdline", "rb").read()
            ):
                found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def scoring_world(tmp_path_factory):
    """A CTR export (a tiny SavedModel with the export contract) and one day of candidates, big
    enough (many small model calls) that scoring runs for a while on two 1-core executors.

    Each file is one Parquet row group (about 0.5 MB), so the test reads one file per task: smaller
    splits of a one-row-group file are empty tasks that end in milliseconds, and a kill aimed at a
    running task could land after it (the executor lost between tasks, no task to rerun)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, os.path.join(REPO, "tests", "unit", "jobs"))
    from ctr_scoring_fixtures import DAY, candidate_rows, feature_index, save_model

    root = tmp_path_factory.mktemp("scoring")
    save_model(root / "export", feature_index())
    folder = root / "candidates" / f"date={DAY}"
    folder.mkdir(parents=True)
    rows_per_file, files = 40_000, 6
    for i in range(files):
        rows = candidate_rows(DAY, rows_per_file, seed=i)
        rows["ad_id"] = [f"f{i}-{a}" for a in rows["ad_id"]]
        pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in rows.items()}), str(folder / f"part-{i}.parquet"))
    return {"root": str(root), "day": DAY, "rows": rows_per_file * files}


def test_scoring_survives_a_killed_executor_and_never_shows_a_partial_partition(cluster, packed_env, scoring_world, tmp_path):
    """kill -9 one executor JVM while ScoreCandidates writes its scores: Spark reruns the lost tasks,
    the run completes, and the date's partition appears only then, whole."""
    work, root, day = str(tmp_path), scoring_world["root"], scoring_world["day"]
    scores = f"{work}/scores"
    config = {
        "type": "sparkml_tf.engine.Pipeline", "name": "score", "tracking": None,
        "spark": {"type": "sparkml_tf.spark.SparkConfig", "app_name": "sparkml-tf-score-fault", "conf": {"spark.sql.files.maxPartitionBytes": "1048576"}},
        "jobs": [{"type": "sparkml_tf.ranking.ScoreCandidates", "candidates_path": f"{root}/candidates", "output_path": scores,
                  "quarantine_path": f"{work}/quarantine", "export_dir": f"{root}/export", "date": day, "batch_size": 32}],
    }
    with open(f"{work}/score.json", "w") as f:
        json.dump(config, f)
    before = cluster.apps()
    argv = ["--archives", f"{packed_env}#env", "--conf", "spark.pyspark.python=./env/bin/python", "--conf", f"spark.pyspark.driver.python={sys.executable}",
            "--driver-memory", "1g", "--executor-memory", "1g", "--conf", "spark.ui.enabled=false", "jobs/run.py", f"{work}/score.json"]
    process = cluster.submit(argv, os.path.join(work, "submit.log"), cwd=REPO)
    app = new_app(cluster, before, process)
    final = f"{scores}/date={day}"
    deadline = time.monotonic() + SUBMIT_TIMEOUT_S
    # The score pass has started once its staging directory has Spark's _temporary in it.
    while not glob.glob(f"{scores}/_staging/date={day}.tmp-*/_temporary"):
        assert process.poll() is None and time.monotonic() < deadline, "scoring never started\n" + diagnostics(cluster, work, app)
        time.sleep(0.05)
    # Kill the first worker's executor while it runs one of the score pass's tasks.
    victim = executor_logs(cluster, app)[cluster.worker_dirs[0]][0]
    while True:
        log = read(victim)
        started = re.findall(r"Running task \S+ in stage \S+ \(TID (\d+)\)", log)
        if started and f"(TID {started[-1]})" not in log.split(f"(TID {started[-1]})", 1)[1]:
            break  # its latest task has not finished
        assert process.poll() is None and time.monotonic() < deadline, "no scoring task on the first worker\n" + diagnostics(cluster, work, app)
        time.sleep(0.02)
    (jvm,) = executor_jvms(os.path.dirname(victim))
    os.kill(jvm, signal.SIGKILL)
    killed = time.monotonic()

    seen_early = False
    while process.poll() is None:  # the partition must not appear before the run is done
        seen_early = seen_early or os.path.exists(final) and not os.path.exists(f"{final}/_SPARKML_TF_COMPLETE")
        assert time.monotonic() < deadline, "spark-submit did not finish\n" + diagnostics(cluster, work, app)
        time.sleep(0.05)
    recovery_s = time.monotonic() - killed
    assert process.returncode == 0, diagnostics(cluster, work, app)
    assert not seen_early, "a partial score partition was visible"
    assert "ExecutorLostFailure" in read(os.path.join(work, "submit.log"))  # a running task was lost and run again
    assert os.path.exists(f"{final}/_SPARKML_TF_COMPLETE")
    import pyarrow.parquet as pq

    assert pq.read_table(final).num_rows == scoring_world["rows"]  # every row once: no lost or doubled task output
    assert len([d for logs in executor_logs(cluster, app).values() for d in logs]) == 3  # the killed executor was replaced
    print(f"\nscoring fault test: {scoring_world['rows']} rows, executor killed mid-write, run done {recovery_s:.0f}s after the kill")
