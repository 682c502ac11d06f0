"""The barrier launcher, for real on the session's local[2]: a cheap function first, then one small
MultiWorkerMirroredStrategy training run."""

import json
import os

import pytest

from sparkml_tf.errors import DistributedError
from sparkml_tf.spark.barrier import LocalLauncher, SparkBarrierLauncher, make_launcher
from sparkml_tf.train.launch import build_specs

pytestmark = pytest.mark.spark


def _by_value():
    # Test modules are not importable on Spark's Python workers: ship these functions by value.
    import sys

    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def report_env(settings):
    import os

    return {"tf_config": json.loads(os.environ["TF_CONFIG"]), "rank": os.environ["SPARKML_TF_RANK"], "pid": os.getpid(), "echo": settings["echo"]}


def fail_on_rank_one(settings):
    import os

    rank = int(os.environ["SPARKML_TF_RANK"])
    for i in range(60):
        print(f"rank {rank} line {i}")
    if rank == 1:
        raise ValueError("boom from rank one")
    return "ok"


def env_now(_partition):
    import os

    yield os.environ.get("TF_CONFIG")


@pytest.mark.parametrize("isolate", [False, True])
def test_barrier_runs_every_rank_and_restores_env(spark, isolate):
    _by_value()
    result = SparkBarrierLauncher(2, isolate=isolate, spark=spark).run(report_env, {"echo": 7})
    assert result["rank"] == "0" and result["echo"] == 7
    config = result["tf_config"]
    assert config["task"] == {"type": "worker", "index": 0}
    assert len(config["cluster"]["worker"]) == 2 and len(set(config["cluster"]["worker"])) == 2
    # Both ranks took part (allGather needs both), and the reused Python workers got their env back.
    leftovers = spark.sparkContext.parallelize(range(2), 2).mapPartitions(env_now).collect()
    assert leftovers == [None, None]


@pytest.mark.parametrize("isolate", [False, True])
def test_failing_worker_reports_rank_and_tail(spark, isolate):
    _by_value()
    with pytest.raises(DistributedError) as info:
        SparkBarrierLauncher(2, isolate=isolate, spark=spark).run(fail_on_rank_one, {})
    error = info.value
    assert error.code == "DISTRIBUTED_WORKER_FAILED"
    assert error.path == "rank 1"
    assert "boom from rank one" in error.message
    assert "rank 1 line 59" in error.message
    assert "rank 1 line 5\n" not in error.message  # only the tail is kept


def test_too_many_workers_is_refused(spark):
    with pytest.raises(DistributedError) as info:
        SparkBarrierLauncher(3, spark=spark).run(report_env, {"echo": 0})
    assert info.value.code == "SPARK_NOT_ENOUGH_SLOTS"
    assert info.value.path == "num_workers"


def test_local_launcher_and_factory():
    assert LocalLauncher().run(lambda s: s["x"] + 1, {"x": 1}) == 2
    assert isinstance(make_launcher("spark", 2), SparkBarrierLauncher)
    with pytest.raises(DistributedError) as info:
        make_launcher("mpi", 2)
    assert info.value.code == "DISTRIBUTED_UNKNOWN_LAUNCHER"


def test_two_worker_training(spark, tmp_path):
    from sparkml_tf.retrieval.toy import toy_train_settings, write_toy_dataset
    from sparkml_tf.retrieval.trainer import train_worker

    write_toy_dataset(str(tmp_path / "ds"), num_users=128, num_items=60, num_shards=2, num_validation=32)
    settings = toy_train_settings(str(tmp_path), checkpoint_every_steps=3)
    result = SparkBarrierLauncher(2, spark=spark).run(train_worker, build_specs(settings))
    assert result["num_workers"] == 2
    assert result["steps"] == 2 * result["steps_per_epoch"] == 8
    assert result["epochs_run"] == 2
    assert os.path.isdir(result["export_path"])
    assert os.path.exists(tmp_path / "embeddings" / "_SPARKML_TF_COMPLETE")


def crash_once(settings):
    """Dies like a killed process on the first stage attempt (no Python exception), succeeds on the next."""
    import os

    rank = int(os.environ["SPARKML_TF_RANK"])
    marker = os.path.join(settings["dir"], f"attempted-{rank}")
    with open(os.path.join(settings["dir"], "calls"), "a") as f:
        f.write(f"{rank}\n")
    if rank == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)
    return "second time lucky"


def fail_for_good(settings):
    import os

    with open(os.path.join(settings["dir"], "calls"), "a") as f:
        f.write(os.environ["SPARKML_TF_RANK"] + "\n")
    if os.environ["SPARKML_TF_RANK"] == "1":
        raise KeyError("no such column")
    import time

    time.sleep(30)  # rank 0 would wait for its peer: Spark stops it when rank 1 fails
    return "never"


def test_a_crashed_worker_is_retried_by_spark(spark, tmp_path):
    """A worker that dies without a Python exception (killed, out of memory): Spark retries the whole
    barrier stage (it runs as a shuffle-map stage, which Spark retries; a result stage it would not)."""
    _by_value()
    assert SparkBarrierLauncher(2, spark=spark).run(crash_once, {"dir": str(tmp_path)}) == "second time lucky"
    calls = (tmp_path / "calls").read_text().split()
    assert sorted(calls) == ["0", "0", "1", "1"]  # both ranks ran twice: the stage was retried as a whole


def test_a_bug_is_reported_at_once_not_retried(spark, tmp_path):
    _by_value()
    with pytest.raises(DistributedError) as info:
        SparkBarrierLauncher(2, spark=spark).run(fail_for_good, {"dir": str(tmp_path)})
    assert info.value.code == "DISTRIBUTED_WORKER_FAILED" and info.value.path == "rank 1"
    assert "KeyError: 'no such column'" in info.value.message
    calls = (tmp_path / "calls").read_text().split()
    assert calls.count("1") == 1  # the driver cancelled the job instead of letting Spark retry the stage


def test_retryable_errors():
    from sparkml_tf.errors import DataError
    from sparkml_tf.spark.barrier import is_retryable

    class UnavailableError(Exception):  # stands for tf.errors.UnavailableError: a collective lost its peer
        pass

    UnavailableError.__module__ = "tensorflow.python.framework.errors_impl"
    assert is_retryable(UnavailableError("peer gone"))
    assert is_retryable(OSError("connection reset")) and is_retryable(RuntimeError("?"))
    assert not is_retryable(DataError("DATA_MISSING_STATS", "no stats"))
    assert not is_retryable(ValueError("bad shape")) and not is_retryable(KeyError("x"))
