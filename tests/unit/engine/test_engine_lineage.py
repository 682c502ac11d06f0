"""Lineage-aware reruns, output locks and the publish protocol, on small jobs without Spark."""

import json
import logging
import os

import pytest

from sparkml_tf.engine import Job, Pipeline, RunContext
from sparkml_tf.errors import ConfigError, OutputError
from sparkml_tf.io.locks import lock_path, output_lock
from sparkml_tf.io.outputs import atomic_output, check_location, is_complete


class Copy(Job):
    """Reads a file or a folder written by another job, writes ``<output>/data.txt``."""

    def __init__(self, source, output_dir, suffix="", name="copy"):
        self.source, self.output_dir, self.suffix, self.name = source, output_dir, suffix, name
        self.runs = 0

    def inputs(self):
        return [self.source]

    def outputs(self):
        return [self.output_dir]

    def fingerprint_settings(self):
        return {"suffix": self.suffix}

    def run(self, ctx):
        if is_complete(self.output_dir) and not ctx.force:
            return {"skipped": True}
        self.runs += 1
        source = self.source if os.path.isfile(self.source) else os.path.join(self.source, "data.txt")
        with atomic_output(self.output_dir, ctx.force) as tmp:
            os.makedirs(tmp, exist_ok=True)
            with open(os.path.join(tmp, "data.txt"), "w") as f:
                f.write(open(source).read() + self.suffix)
        return {"skipped": False}


def pipeline(tmp_path, suffix=""):
    raw = str(tmp_path / "raw.txt")
    first = Copy(raw, str(tmp_path / "a"), name="a")
    second = Copy(str(tmp_path / "a"), str(tmp_path / "b"), suffix=suffix, name="b")
    return Pipeline([first, second], name="p"), first, second


def test_reruns_what_changed_and_its_dependents_and_skips_the_rest(tmp_path, caplog):
    (tmp_path / "raw.txt").write_text("one")
    p, a, b = pipeline(tmp_path)
    p.run()
    assert (a.runs, b.runs) == (1, 1) and (tmp_path / "b" / "data.txt").read_text() == "one"

    p, a, b = pipeline(tmp_path)
    with caplog.at_level(logging.INFO, logger="sparkml_tf.engine.base"):
        p.run()
    assert (a.runs, b.runs) == (0, 0)
    assert "a: skipped (up to date)" in caplog.text and "b: skipped (up to date)" in caplog.text

    (tmp_path / "raw.txt").write_text("two!")  # a new input file: both stages rebuild, and say why
    p, a, b = pipeline(tmp_path)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sparkml_tf.engine.base"):
        p.run()
    assert (a.runs, b.runs) == (1, 1) and (tmp_path / "b" / "data.txt").read_text() == "two!"
    assert f"a: runs (input {tmp_path / 'raw.txt'} changed)" in caplog.text
    assert f"b: runs (input {tmp_path / 'a'} changed)" in caplog.text

    p, a, b = pipeline(tmp_path, suffix="+")  # a setting of the second stage only
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sparkml_tf.engine.base"):
        p.run()
    assert (a.runs, b.runs) == (0, 1) and "b: runs (setting(s) suffix changed)" in caplog.text

    p, a, b = pipeline(tmp_path, suffix="+")
    p.run(force=True)
    assert (a.runs, b.runs) == (1, 1)
    record = json.loads((tmp_path / "b" / "_SPARKML_TF_LINEAGE.json").read_text())
    assert record["settings"] == {"suffix": "+"} and set(record["inputs"]) == {str(tmp_path / "a")}


def test_an_interrupted_stage_runs_again_without_force(tmp_path):
    (tmp_path / "raw.txt").write_text("one")
    p, a, b = pipeline(tmp_path)
    p.run()
    import shutil

    shutil.move(str(tmp_path / "b"), str(tmp_path / "b.tmp-0badf00d"))  # as if killed before its swap
    p, a, b = pipeline(tmp_path)
    p.run()
    assert (a.runs, b.runs) == (0, 1)
    assert not (tmp_path / "b.tmp-0badf00d").exists()  # the dead attempt's folder was cleaned


def test_a_second_run_on_the_same_output_stops_with_the_owner(tmp_path):
    out = str(tmp_path / "a")
    with output_lock(out):
        with open(lock_path(out)) as f:
            owner = json.load(f)
        with open(lock_path(out), "w") as f:  # the same lock, held by another live process on this host
            json.dump({**owner, "pid": 1}, f)
        with pytest.raises(OutputError) as info:
            with output_lock(out):
                pass
        assert info.value.code == "OUTPUT_LOCKED" and "pid 1" in info.value.message
        with open(lock_path(out), "w") as f:
            json.dump(owner, f)
    assert not os.path.exists(lock_path(out))


def test_a_stale_lock_is_taken_over(tmp_path, caplog):
    out = str(tmp_path / "a")
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    import socket
    import time

    with open(lock_path(out), "w") as f:
        json.dump({"host": socket.gethostname(), "pid": dead, "started": time.time()}, f)
    with caplog.at_level(logging.WARNING):
        with output_lock(out):
            pass
    assert f"its process {dead} on this host is gone" in caplog.text


def test_publish_moves_the_old_output_aside_and_cleans_dead_attempts(tmp_path):
    out = tmp_path / "out"
    with atomic_output(str(out)) as tmp:
        os.makedirs(tmp)
        (tmp_path / "out.tmp-deadbeef").mkdir()  # a killed attempt's leftover
    assert (tmp_path / "out.tmp-deadbeef").exists()
    with atomic_output(str(out), force=True) as tmp:
        os.makedirs(tmp, exist_ok=True)
        open(os.path.join(tmp, "new"), "w").close()
        assert not (tmp_path / "out.tmp-deadbeef").exists()  # cleaned when the stage ran again
    assert (out / "new").exists() and is_complete(str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_swap_puts_the_old_output_back(tmp_path):
    from pyarrow import fs

    from sparkml_tf.io.outputs import swap_in

    class FailingMove:
        """A local file system whose move of the new attempt fails (a full disk, a lost mount)."""

        def __init__(self):
            self.local, self.moves = fs.LocalFileSystem(), []

        def __getattr__(self, name):
            return getattr(self.local, name)

        def move(self, src, dst):
            self.moves.append((src, dst))
            if ".tmp-" in src:
                raise OSError("disk full")
            return self.local.move(src, dst)

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("complete")
    (tmp_path / "out.tmp-1").mkdir()
    failing = FailingMove()
    with pytest.raises(OSError):
        swap_in(failing, str(tmp_path / "out.tmp-1"), str(tmp_path / "out"), "1")
    assert (tmp_path / "out" / "old").read_text() == "complete"
    assert [dst for _, dst in failing.moves] == [str(tmp_path / "out.old-1"), str(tmp_path / "out"), str(tmp_path / "out")]


@pytest.mark.parametrize("url", ["s3a://bucket/runs/x", "s3://b/x", "gs://b/x", "abfss://c@a.dfs.core.windows.net/x"])
def test_object_store_outputs_are_refused_with_the_alternative(url):
    with pytest.raises(ConfigError) as info:
        check_location(url, "paths.run_dir")
    assert info.value.code == "CONFIG_UNSUPPORTED_STORE" and info.value.path == "paths.run_dir"
    assert "HDFS" in info.value.message


def test_jobs_refuse_object_store_outputs_when_built(tmp_path):
    from sparkml_tf.retrieval.jobs.index import BuildIndex

    with pytest.raises(ConfigError) as info:
        BuildIndex(str(tmp_path / "emb"), "s3a://bucket/index")
    assert info.value.code == "CONFIG_UNSUPPORTED_STORE" and info.value.path == "output_dir"
    assert BuildIndex(str(tmp_path / "emb"), "hdfs:///user/me/index").output_dir.startswith("hdfs")


def test_run_context_force_is_restored_after_each_job(tmp_path):
    (tmp_path / "raw.txt").write_text("one")
    p, a, b = pipeline(tmp_path)
    ctx = RunContext()
    p.run(ctx)
    assert ctx.force is False and ctx.lineage is None


def test_an_mlflow_run_whose_process_died_is_marked_killed_at_the_next_start(tmp_path):
    import socket

    import mlflow

    from sparkml_tf.tracking import MLflowTracker

    db = f"sqlite:///{tmp_path}/mlruns.db"
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    client = mlflow.MlflowClient(db)
    experiment = client.create_experiment("stuck")
    stuck = client.create_run(experiment, tags={"sparkml_tf.host": socket.gethostname(), "sparkml_tf.pid": str(dead)})
    other_host = client.create_run(experiment, tags={"sparkml_tf.host": "elsewhere", "sparkml_tf.pid": str(dead)})
    tracker = MLflowTracker(tracking_uri=db, experiment="stuck", strict=True)
    tracker.start("next")
    tracker.end()
    assert client.get_run(stuck.info.run_id).info.status == "KILLED"
    assert client.get_run(other_host.info.run_id).info.status == "RUNNING"  # cannot be checked from here
