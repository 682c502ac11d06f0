import pytest

from sparkml_tf.engine import Job, Pipeline, RunContext
from sparkml_tf.errors import SparkmlTfError
from sparkml_tf.testing import RecordingTracker


class Record(Job):
    def __init__(self, name, log):
        self.name, self.log = name, log

    def run(self, ctx):
        self.log.append((self.name, ctx.force))
        return {"n": len(self.log)}


def test_runs_jobs_and_callables_in_order():
    log = []

    def plain():
        log.append(("plain", None))

    def with_ctx(ctx):
        log.append(("with_ctx", ctx.force))

    tracker = RecordingTracker()
    results = Pipeline([Record("a", log), plain, with_ctx, Record("b", log)], name="p", tracking=tracker).run(force=True)
    assert log == [("a", True), ("plain", None), ("with_ctx", True), ("b", True)]
    assert results["b"] == {"n": 4}
    assert tracker.calls[0] == ("start", "p", {"sparkml_tf.pipeline": "p", "sparkml_tf.jobs": "a,plain,with_ctx,b"})
    assert tracker.calls[-1] == ("end", "FINISHED")
    assert "time_s.a" in tracker.metrics


def test_only_runs_the_named_jobs():
    log = []
    Pipeline([Record("a", log), Record("b", log), Record("c", log)]).run(only=["c", "a"])
    assert [n for n, _ in log] == ["a", "c"]


def test_unknown_job_name_is_refused():
    with pytest.raises(SparkmlTfError) as info:
        Pipeline([Record("a", [])]).run(only=["z"])
    assert info.value.code == "PIPELINE_UNKNOWN_JOB"


def test_failure_ends_the_run_as_failed_and_propagates():
    class Boom(Job):
        name = "boom"

        def run(self, ctx):
            raise RuntimeError("no")

    tracker = RecordingTracker()
    with pytest.raises(RuntimeError):
        Pipeline([Boom()], tracking=tracker).run()
    assert tracker.calls[-1] == ("end", "FAILED")


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="repeated: a"):
        Pipeline([Record("a", []), Record("a", [])])


def test_context_creates_no_session_until_asked():
    ctx = RunContext()
    ctx.describe("step")
    assert ctx._spark is None


def test_run_uses_the_session_it_is_given():
    class Session:  # stands in for a notebook's `spark`: only what the pipeline touches
        class sparkContext:
            descriptions = []

            @classmethod
            def setJobDescription(cls, text):
                cls.descriptions.append(text)

    given = Session()
    results = Pipeline([lambda ctx: ctx.spark], name="p").run(spark=given)
    assert results["<lambda>"] is given
    assert Session.sparkContext.descriptions == ["p: <lambda>"]
