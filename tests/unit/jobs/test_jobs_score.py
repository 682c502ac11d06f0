import os

import numpy as np
import pytest
from ctr_scoring_fixtures import BAD_REASONS, BAD_ROWS, DAY, OTHER_DAY, feature_index, model_probabilities, save_model, write_candidates

from sparkml_tf.engine.base import RunContext
from sparkml_tf.errors import ConfigError, DataError, OutputError
from sparkml_tf.io.outputs import MARKER
from sparkml_tf.testing import RecordingTracker


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A candidates table (two days), one exported model version."""
    root = tmp_path_factory.mktemp("score")
    good = write_candidates(root / "candidates")
    model_path = save_model(root / "export", feature_index())
    return {"root": root, "good": good, "model_path": model_path}


def make_job(world, out, date=DAY, cls=None, **kwargs):
    from sparkml_tf.ranking.jobs.score import ScoreCandidates

    cls = cls or ScoreCandidates
    return cls(str(world["root"] / "candidates"), str(out / "scores"), str(out / "quarantine"), str(world["root"] / "export"), date, batch_size=7, **kwargs)


def run(spark, job, force=False):
    ctx = RunContext(force=force, tracker=RecordingTracker(), _spark=spark)
    return job.run(ctx), ctx.tracker


def read_partition(path):
    import pyarrow.parquet as pq

    table = pq.read_table(str(path)).to_pandas()
    return table.sort_values(list(table.columns)).reset_index(drop=True)


def files_of(path):
    """{relative file: bytes} of a directory tree."""
    out = {}
    for folder, _, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = f.read()
    return out


def test_date_is_checked_when_the_job_is_built(world, tmp_path):
    from sparkml_tf.config import resolve

    with pytest.raises(ConfigError) as info:
        make_job(world, tmp_path, date="2024-02-30")
    assert (info.value.code, info.value.path) == ("CONFIG_BAD_VALUE", "date")
    with pytest.raises(ConfigError, match="--set run.date") as info:
        make_job(world, tmp_path, date="$run:date")
    assert info.value.code == "CONFIG_BAD_VALUE"
    config = {
        "type": "sparkml_tf.engine.Pipeline",
        "jobs": [
            {
                "type": "sparkml_tf.ranking.ScoreCandidates",
                "candidates_path": "c",
                "output_path": "o",
                "quarantine_path": "q",
                "export_dir": "e",
                "date": "$run:date",
            }
        ],
    }
    pipeline = resolve(config, {"run": {"date": "2024-01-01"}}, ["run.date=2024-05-01"]).build()
    assert pipeline.jobs[0].date == "2024-05-01"
    with pytest.raises(ConfigError) as info:
        resolve(config, {"run": {"date": "20240501"}}).build()
    assert (info.value.code, info.value.path) == ("CONFIG_BAD_VALUE", "run.date (as jobs[0].date)")  # the macro the user sets
    unset = resolve(config, {"run": {"date": None}}).build().jobs[0]  # other stages can still run
    with pytest.raises(ConfigError, match="no date to run for") as info:
        unset.run(RunContext())
    assert (info.value.code, info.value.path) == ("CONFIG_BAD_VALUE", "date")


def test_scores_match_the_model_and_bad_rows_are_quarantined(spark, world, tmp_path):
    result, tracker = run(spark, make_job(world, tmp_path))
    good = world["good"][DAY]
    n = len(good["ad_id"])
    assert (result["scored"], result["quarantined"], result["model_version"], result["skipped"]) == (n, len(BAD_ROWS["ad_id"]), "1", False)
    assert tracker.metrics == {"score.scored": n, "score.quarantined": 4}
    assert tracker.params["score.model_version"] == "1"

    partition = tmp_path / "scores" / f"date={DAY}"
    assert os.path.exists(partition / MARKER)
    scores = read_partition(partition)
    assert list(scores.columns) == ["request_id", "ad_id", "probability", "model_version"]
    assert str(scores["probability"].dtype) == "float32"
    assert set(scores["model_version"]) == {"1"}
    expected = dict(zip(good["ad_id"], model_probabilities(world["model_path"], good)))
    assert sorted(scores["ad_id"]) == sorted(expected)  # every good row once
    np.testing.assert_allclose(scores["probability"], [expected[a] for a in scores["ad_id"]], rtol=1e-6)
    assert dict(zip(scores["ad_id"], scores["request_id"])) == dict(zip(good["ad_id"], good["request_id"]))

    quarantine = read_partition(tmp_path / "quarantine" / f"date={DAY}")
    assert list(quarantine.columns) == [*BAD_ROWS, "reason"]
    reasons = {
        None if r is None else r: reason for r, reason in zip(quarantine["request_id"].where(quarantine["request_id"].notna(), None), quarantine["reason"])
    }
    assert reasons == BAD_REASONS
    row = quarantine[quarantine["request_id"] == "bad-0"].iloc[0]
    assert (row["I1"], row["I2"], row["C1"]) == ("abc", "0.1", "a")  # raw values kept as strings

    # The whole table as a reader sees it: this date only, staging never listed.
    table = spark.read.parquet(str(tmp_path / "scores"))
    assert sorted(table.columns) == sorted(["request_id", "ad_id", "probability", "model_version", "date"])
    assert table.count() == n


def test_rerun_skips_or_replaces_and_leaves_other_dates_alone(spark, world, tmp_path):
    first, _ = run(spark, make_job(world, tmp_path))
    other, _ = run(spark, make_job(world, tmp_path, date=OTHER_DAY))
    assert (other["scored"], other["quarantined"]) == (len(world["good"][OTHER_DAY]["ad_id"]), 0)
    before = read_partition(tmp_path / "scores" / f"date={DAY}")
    other_files = files_of(tmp_path / "scores" / f"date={OTHER_DAY}")

    skipped, tracker = run(spark, make_job(world, tmp_path))
    assert skipped["skipped"] and (skipped["scored"], skipped["quarantined"], skipped["model_version"]) == (first["scored"], first["quarantined"], "1")
    assert tracker.metrics == {}

    again, _ = run(spark, make_job(world, tmp_path), force=True)
    assert (again["scored"], again["quarantined"], again["skipped"]) == (first["scored"], first["quarantined"], False)
    after = read_partition(tmp_path / "scores" / f"date={DAY}")
    assert after.equals(before)  # same rows, same scores, no duplicates
    assert files_of(tmp_path / "scores" / f"date={OTHER_DAY}") == other_files
    assert spark.read.parquet(str(tmp_path / "scores")).count() == first["scored"] + other["scored"]
    assert os.listdir(tmp_path / "scores" / "_staging") == []


class Killed(BaseException):
    """Stands for the driver being killed (not an Exception, so nothing on the way catches it)."""


class CrashAfterWriting:
    """A ScoreCandidates whose run dies once the scores are in the temporary directory."""

    def _write_scores(self, spark, *args):
        count = super()._write_scores(spark, *args)
        tmp = args[-1]
        assert spark.read.parquet(tmp).count() == count > 0  # the partial output is really there
        raise Killed()


def test_a_run_killed_midway_leaves_nothing_visible_and_the_rerun_completes(spark, world, tmp_path):
    from sparkml_tf.ranking.jobs.score import ScoreCandidates

    crashing = type("Crashing", (CrashAfterWriting, ScoreCandidates), {})
    with pytest.raises(Killed):
        run(spark, make_job(world, tmp_path, cls=crashing))
    assert not os.path.exists(tmp_path / "scores" / f"date={DAY}")
    assert not os.path.exists(tmp_path / "quarantine" / f"date={DAY}")
    # A hard kill leaves its temporary directory behind: readers of the table never list it.
    leftover = tmp_path / "scores" / "_staging" / f"date={DAY}.tmp-deadbeef"
    leftover.mkdir(parents=True)
    import shutil

    shutil.copy(next((world["root"] / "candidates" / f"date={DAY}").glob("*.parquet")), leftover / "part-0.parquet")
    with pytest.raises(Exception, match="(?i)unable to infer schema|PATH_NOT_FOUND|empty"):
        spark.read.parquet(str(tmp_path / "scores")).count()  # nothing but staging: no table yet

    result, _ = run(spark, make_job(world, tmp_path))
    assert result["scored"] == len(world["good"][DAY]["ad_id"])
    assert os.listdir(tmp_path / "scores" / "_staging") == []  # the kill's leftovers are cleared
    assert spark.read.parquet(str(tmp_path / "scores")).count() == result["scored"]

    # A forced rerun that dies keeps the published partition as it was.
    before = files_of(tmp_path / "scores" / f"date={DAY}")
    with pytest.raises(Killed):
        run(spark, make_job(world, tmp_path, cls=crashing), force=True)
    assert files_of(tmp_path / "scores" / f"date={DAY}") == before


def test_errors_name_the_problem(spark, world, tmp_path):
    with pytest.raises(DataError) as info:
        run(spark, make_job(world, tmp_path, date="2024-06-01"))
    assert info.value.code == "DATA_NOT_FOUND" and info.value.path.endswith("date=2024-06-01")
    with pytest.raises(DataError) as info:
        run(spark, make_job(world, tmp_path, id_columns=["request_id", "user_id"]))
    assert info.value.code == "DATA_SCHEMA_MISMATCH" and "user_id" in info.value.message
    foreign = tmp_path / "scores" / f"date={DAY}"
    foreign.mkdir(parents=True)
    with pytest.raises(OutputError) as info:
        run(spark, make_job(world, tmp_path))
    assert info.value.code == "OUTPUT_EXISTS"
    with pytest.raises(DataError) as info:
        from sparkml_tf.ranking.jobs.score import ScoreCandidates

        run(spark, ScoreCandidates(str(world["root"] / "candidates"), str(tmp_path / "s"), str(tmp_path / "q"), str(tmp_path / "no-export"), DAY))
    assert info.value.code == "MODEL_NOT_FOUND"


def test_scores_with_the_newest_real_export(spark, world, tmp_path):
    """A Wide & Deep exported by export_ctr_model next to an older version: the job takes the newest."""
    import shutil

    import tensorflow as tf

    from sparkml_tf.ranking.export import export_ctr_model
    from sparkml_tf.ranking.models.wide_deep import WideDeep

    export_dir = tmp_path / "export"
    shutil.copytree(world["model_path"], export_dir / "1")
    spec = WideDeep(embedding_dim=4, hidden_units=[8], seed=3)
    net = spec.build(feature_index())
    net.wide_weights.assign(tf.random.stateless_normal(net.wide_weights.shape, seed=[3, 0]))  # zeros at init
    newest = export_ctr_model(spec, net, feature_index(), str(export_dir), warmup_records=0)
    assert newest.endswith("/2")

    from sparkml_tf.ranking.jobs.score import ScoreCandidates

    job = ScoreCandidates(str(world["root"] / "candidates"), str(tmp_path / "scores"), str(tmp_path / "quarantine"), str(export_dir), OTHER_DAY)
    result, _ = run(spark, job)
    assert (result["model_version"], result["model_path"]) == ("2", newest)
    scores = read_partition(tmp_path / "scores" / f"date={OTHER_DAY}")
    good = world["good"][OTHER_DAY]
    expected = dict(zip(good["ad_id"], model_probabilities(newest, good)))
    assert set(scores["model_version"]) == {"2"} and len(scores) == len(expected)
    np.testing.assert_allclose(scores["probability"], [expected[a] for a in scores["ad_id"]], rtol=1e-5)


def test_executor_helpers_check_the_model_against_its_feature_index(world, tmp_path):
    import shutil

    import pyarrow as pa

    from sparkml_tf.ranking.features.feature_index import FeatureIndex
    from sparkml_tf.ranking.score_remote import id_matrix, load_ctr_model

    fn, encoder = load_ctr_model("check", world["model_path"], threads=0)
    assert fn is load_ctr_model("check", world["model_path"], threads=0)[0]  # cached per worker
    assert encoder.index == feature_index()
    edited = tmp_path / "1"
    shutil.copytree(world["model_path"], edited)
    FeatureIndex([{"name": "C1", "kind": "categorical", "vocab": ["a"]}]).save(str(edited / "assets"))
    with pytest.raises(DataError) as info:
        load_ctr_model("check", str(edited), threads=0)
    assert info.value.code == "MODEL_SIGNATURE_MISMATCH" and "deep_ids: int64 [batch, 1]" in info.value.message
    assert id_matrix(pa.array([[1, 2], [3, 4]], pa.list_(pa.int64())), 2, "wide_ids").tolist() == [[1, 2], [3, 4]]
    with pytest.raises(DataError, match="every wide_ids must be a list of 2 values"):
        id_matrix(pa.array([[1, 2], [3]], pa.list_(pa.int64())), 2, "wide_ids")
