import datetime
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparkml_tf.engine.base import RunContext
from sparkml_tf.errors import SparkmlTfError
from sparkml_tf.io.outputs import MARKER
from sparkml_tf.testing import RecordingTracker

NUM_ITEMS, DIM, K = 30, 4, 5
DAY = "2026-03-10"
END = int(datetime.datetime(2026, 3, 11, tzinfo=datetime.timezone.utc).timestamp())  # end of DAY


def _history(rng):
    """(user, item, timestamp) rows: regular users, one with only unknown items, rows without a
    user, and rows after the run date (never read)."""
    rows = []
    for u in range(20):
        for n, i in enumerate(rng.choice(NUM_ITEMS, size=6, replace=False)):
            rows.append((f"u{u}", f"i{i}", END - 86_400 * (n + 1)))
    rows.append(("u0", "i29", END + 10))  # tomorrow: not part of the history of DAY
    rows += [("stranger", "x1", END - 100), ("stranger", "x2", END - 50)]  # nothing the index knows
    rows += [(None, "i1", END - 100), ("  ", "i2", END - 100)]  # no user
    rows.append(("old", "i3", END - 86_400 * 40))  # only visible without a history window
    return rows


@pytest.fixture(scope="module")
def setup(spark, tmp_path_factory):
    from sparkml_tf.retrieval.jobs.index import BuildIndex
    from sparkml_tf.testing.average_model import save_average_model

    tmp = tmp_path_factory.mktemp("recommend")
    rng = np.random.default_rng(0)
    rows = _history(rng)
    users, items, stamps = zip(*rows)
    (tmp / "history").mkdir()
    pq.write_table(pa.table({"user": list(users), "item": list(items), "timestamp": pa.array(stamps, pa.int64())}), tmp / "history" / "p.parquet")
    table = rng.normal(size=(NUM_ITEMS, DIM)).astype(np.float32)
    biases = rng.normal(size=NUM_ITEMS).astype(np.float32)
    save_average_model(tmp / "export", table)
    (tmp / "emb").mkdir()
    pq.write_table(
        pa.table({"id": pa.array(range(NUM_ITEMS), pa.int64()), "item": [f"i{n}" for n in range(NUM_ITEMS)],
                  "vector": pa.array(list(table), pa.list_(pa.float32())), "bias": pa.array(biases)}),
        tmp / "emb" / "p.parquet",
    )
    BuildIndex(str(tmp / "emb"), str(tmp / "index")).run(RunContext(_spark=spark, tracker=RecordingTracker()))
    return {"tmp": tmp, "rows": rows, "table": table, "biases": biases, "spark": spark}


def _job(tmp, **kwargs):
    from sparkml_tf.retrieval.jobs.recommend import Recommend

    arguments = {"export_dir": str(tmp / "export"), "index_dir": str(tmp / "index"), "output_path": str(tmp / "recs"),
                 "quarantine_path": str(tmp / "quarantine"), "date": DAY, "history_path": str(tmp / "history"), "k": K, **kwargs}
    return Recommend(**arguments)


def _read(spark, path):
    return spark.read.parquet(path).toPandas().sort_values(["user", "rank"]).reset_index(drop=True)


@pytest.mark.spark
def test_top_k_from_the_model_without_seen_items_and_counts_that_add_up(setup):
    tmp, spark, table, biases = setup["tmp"], setup["spark"], setup["table"], setup["biases"]
    summary = _job(tmp).run(RunContext(_spark=spark, tracker=RecordingTracker()))
    assert summary["users_read"] == summary["users_model"] + summary["users_popular"] + summary["users_quarantined"] == 22
    assert (summary["users_model"], summary["users_popular"], summary["users_quarantined"], summary["rows_missing_user"]) == (21, 1, 0, 2)
    recs = _read(spark, f"{tmp}/recs/date={DAY}")
    assert set(recs.columns) == {"user", "rank", "item", "score", "source", "model_version", "index_version"}
    assert (recs.model_version == "1").all() and recs.index_version.nunique() == 1

    history = {}
    for user, item, stamp in setup["rows"]:
        if user and user.strip() and stamp < END and item.startswith("i"):
            history.setdefault(user, []).append(int(item[1:]))
    for user, seen in history.items():
        got = recs[recs.user == user]
        assert list(got["rank"]) == list(range(1, K + 1)) and set(got.source) == {"model"}
        scores = table[seen].mean(axis=0) @ table.T + biases  # the exact top-K of the model, own items removed
        scores[seen] = -np.inf
        expected = [f"i{i}" for i in np.argsort(-scores, kind="stable")[:K]]
        assert list(got.item) == expected, user
        np.testing.assert_allclose(got.score, np.sort(scores)[::-1][:K], rtol=1e-4, atol=1e-4)
    assert "i29" not in set(recs[recs.user == "u0"].item) or 29 not in history["u0"]  # tomorrow's item is not history

    # the stranger knows no item: the most frequent items of the window, flagged
    stranger = recs[recs.user == "stranger"]
    counts = np.bincount([i for items in history.values() for i in items], minlength=NUM_ITEMS)
    top = sorted(range(NUM_ITEMS), key=lambda i: (-counts[i], f"i{i}"))[:K]
    assert list(stranger.item) == [f"i{i}" for i in top] and set(stranger.source) == {"popular"}

    quarantine = spark.read.parquet(f"{tmp}/quarantine/date={DAY}").toPandas()
    assert sorted(quarantine.reason) == ["missing_user", "missing_user"] and sorted(quarantine.item) == ["i1", "i2"]
    assert os.path.exists(f"{tmp}/recs/date={DAY}/{MARKER}")

    # a rerun skips; a forced rerun writes the same rows, without duplicates
    again = _job(tmp).run(RunContext(_spark=spark, tracker=RecordingTracker()))
    assert again["skipped"] and again["users_read"] == 22
    _job(tmp).run(RunContext(_spark=spark, tracker=RecordingTracker(), force=True))
    forced = _read(spark, f"{tmp}/recs/date={DAY}")
    assert forced.equals(recs)


@pytest.mark.spark
def test_history_window_and_no_fallback(setup, tmp_path):
    tmp, spark = setup["tmp"], setup["spark"]
    job = _job(tmp, output_path=str(tmp_path / "recs"), quarantine_path=str(tmp_path / "q"), history_days=30, fallback="none")
    summary = job.run(RunContext(_spark=spark, tracker=RecordingTracker()))
    # "old" has only a 40-day-old item: outside the window, so not read at all
    assert (summary["users_read"], summary["users_model"], summary["users_popular"], summary["users_quarantined"]) == (21, 20, 0, 1)
    quarantine = spark.read.parquet(str(tmp_path / "q" / f"date={DAY}")).toPandas()
    assert sorted(quarantine.reason) == ["missing_user", "missing_user", "no_known_item"]
    assert set(quarantine[quarantine.reason == "no_known_item"].user) == {"stranger"}
    assert "old" not in set(spark.read.parquet(str(tmp_path / "recs" / f"date={DAY}")).toPandas().user)


@pytest.mark.spark
def test_a_failed_run_leaves_no_visible_partition(setup, tmp_path):
    from sparkml_tf.testing.average_model import save_average_model

    tmp, spark = setup["tmp"], setup["spark"]
    save_average_model(tmp_path / "export", np.ones((NUM_ITEMS, DIM + 1), np.float32))  # vectors the index cannot take: fails on the executors
    job = _job(tmp, output_path=str(tmp_path / "recs"), quarantine_path=str(tmp_path / "q"), export_dir=str(tmp_path / "export"))
    with pytest.raises(Exception, match="DATA_SCHEMA_MISMATCH|the index's dim"):
        job.run(RunContext(_spark=spark, tracker=RecordingTracker()))
    assert not os.path.exists(tmp_path / "recs" / f"date={DAY}") and not os.path.exists(tmp_path / "q" / f"date={DAY}")
    assert [p for p in os.listdir(tmp_path / "recs") if not p.startswith("_")] == []  # only the staging area, which readers skip


@pytest.mark.parametrize(
    "kwargs, key",
    [({"k": 0}, "k"), ({"history_items": 0}, "history_items"), ({"history_days": 0}, "history_days"), ({"fallback": "random"}, "fallback"),
     ({"date": "2026-02-30"}, "date"), ({"history_format": "csv"}, "history_format"), ({"quarantine_path": "x/recs"}, "quarantine_path"),
     ({"history_path": None}, "history_path")],
)
def test_bad_settings_are_reported_at_their_key(kwargs, key):
    from sparkml_tf.retrieval.jobs.recommend import Recommend

    arguments = {"export_dir": "e", "index_dir": "i", "output_path": "x/recs", "quarantine_path": "x/q", "history_path": "h", **kwargs}
    with pytest.raises(SparkmlTfError) as info:
        Recommend(**arguments)
    assert info.value.code == "CONFIG_BAD_VALUE" and key in info.value.path


@pytest.mark.spark
def test_a_sharded_index_built_on_executors_recommends_what_one_index_does(setup, tmp_path):
    import json

    from sparkml_tf.index.hnsw import HnswIndex, num_index_shards, read_index_items, read_item_embeddings, shard_dir
    from sparkml_tf.retrieval.jobs.index import BuildIndex

    tmp, spark = setup["tmp"], setup["spark"]
    ctx = RunContext(_spark=spark, tracker=RecordingTracker())
    built = BuildIndex(str(tmp / "emb"), str(tmp_path / "index"), num_shards=3, ef=400).run(ctx)
    manifest = json.loads((tmp_path / "index" / "shards.json").read_text())
    assert built["count"] == NUM_ITEMS and num_index_shards(str(tmp_path / "index")) == 3
    assert [s["count"] for s in manifest["shards"]] == [10, 10, 10]  # ids 0..29 by id mod 3
    ids, _ = read_index_items(str(tmp_path / "index"))
    assert sorted(ids) == list(range(NUM_ITEMS))
    # Every shard augments its items to the whole catalogue's largest norm, as one index does.
    _, _, vectors, biases = read_item_embeddings(str(tmp / "emb"))
    largest = float(np.max(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64) + biases.astype(np.float64) ** 2))
    for shard in range(3):
        stored = np.asarray(HnswIndex.load(shard_dir(str(tmp_path / "index"), shard)).index.get_items([0], return_type="numpy"), np.float64)
        assert float(np.sum(stored ** 2)) == pytest.approx(largest, rel=1e-5)

    one = _job(tmp, output_path=str(tmp_path / "one"), quarantine_path=str(tmp_path / "q1")).run(ctx)
    sharded = _job(tmp, output_path=str(tmp_path / "sharded"), quarantine_path=str(tmp_path / "q3"), index_dir=str(tmp_path / "index")).run(ctx)
    assert {k: one[k] for k in ("users_read", "users_model", "users_popular")} == {k: sharded[k] for k in ("users_read", "users_model", "users_popular")}
    a, b = _read(spark, str(tmp_path / "one" / f"date={DAY}")), _read(spark, str(tmp_path / "sharded" / f"date={DAY}"))
    assert a[["user", "rank", "item", "source"]].equals(b[["user", "rank", "item", "source"]])
    np.testing.assert_allclose(a.score, b.score, rtol=1e-5, atol=1e-5)


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "killpg"), reason="kills a process group")
def test_a_run_killed_midway_leaves_no_visible_partition_and_a_rerun_completes(setup, tmp_path):
    """``sparkml-tf run`` of a Recommend pipeline, SIGKILLed (driver, JVM and Python workers) while
    its executors write the date's files: nothing of the date is visible, and the next run of the
    same date publishes every user's list."""
    import glob
    import json
    import signal
    import subprocess
    import sys
    import time

    tmp, spark = setup["tmp"], setup["spark"]
    rng = np.random.default_rng(1)
    users = 6_000
    (tmp_path / "history").mkdir()
    pq.write_table(
        pa.table({
            "user": [f"u{u}" for u in range(users) for _ in range(4)],
            "item": [f"i{i}" for i in rng.integers(0, NUM_ITEMS, users * 4)],
            "timestamp": pa.array(np.full(users * 4, END - 100), pa.int64()),
        }),
        tmp_path / "history" / "p.parquet",
    )
    recs = tmp_path / "recs"
    config = {
        "type": "sparkml_tf.engine.Pipeline", "name": "recommend-kill", "tracking": None,
        # One core and many small tasks, each writing its own file: the write lasts long enough to be killed midway.
        "spark": {"type": "sparkml_tf.spark.SparkConfig", "master": "local[1]", "app_name": "sparkml-tf-recommend-kill",
                  "conf": {"spark.sql.shuffle.partitions": "200", "spark.sql.adaptive.enabled": "false", "spark.ui.enabled": "false"}},
        "jobs": [{"type": "sparkml_tf.retrieval.Recommend", "export_dir": str(tmp / "export"), "index_dir": str(tmp / "index"),
                  "output_path": str(recs), "quarantine_path": str(tmp_path / "quarantine"), "date": DAY,
                  "history_path": str(tmp_path / "history"), "k": K}],
    }
    (tmp_path / "recommend.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with open(tmp_path / "run.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "sparkml_tf.cli", "run", str(tmp_path / "recommend.json")],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not glob.glob(f"{recs}/_staging/date={DAY}.tmp-*/*.parquet"):  # the executors have started writing the date's rows
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    written = len(glob.glob(f"{recs}/_staging/date={DAY}.tmp-*/*.parquet"))
    assert 0 < written < 200, written  # killed midway: some of the 200 tasks' files, not all
    assert not os.path.exists(recs / f"date={DAY}") and not os.path.exists(tmp_path / "quarantine" / f"date={DAY}")
    assert [p for p in os.listdir(recs) if not p.startswith("_")] == []  # only the staging area, which readers skip

    from sparkml_tf.retrieval.jobs.recommend import Recommend

    job = Recommend(**{k: v for k, v in config["jobs"][0].items() if k != "type"})
    summary = job.run(RunContext(_spark=spark, tracker=RecordingTracker()))
    assert summary["users_model"] == users and not summary["skipped"]
    done = _read(spark, str(recs / f"date={DAY}"))
    assert len(done) == users * K and done.groupby("user").size().eq(K).all()  # every list once, whole
    assert os.path.exists(recs / f"date={DAY}" / MARKER) and not glob.glob(f"{recs}/_staging/date={DAY}.tmp-*")  # the killed run's files are gone
