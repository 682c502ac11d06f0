import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparkml_tf.engine.base import RunContext
from sparkml_tf.errors import DataError
from sparkml_tf.testing import RecordingTracker

NUM_ITEMS, DIM = 30, 4




def _dataset(root, rng):
    rows = []
    for u in range(40):  # train users
        for i in rng.choice(NUM_ITEMS, size=8, replace=False):
            rows.append((f"t{u}", f"i{i}", int(rng.integers(100)), "train"))
    for u in range(12):  # held-out users: 3 fold-in, 4 target items
        chosen = rng.choice(NUM_ITEMS, size=7, replace=False)
        rows += [(f"h{u}", f"i{i}", n, "test_input") for n, i in enumerate(chosen[:3])]
        rows += [(f"h{u}", f"i{i}", 10 + n, "test_target") for n, i in enumerate(chosen[3:])]
    users, items, stamps, splits = zip(*rows)
    (root / "interactions").mkdir(parents=True)
    pq.write_table(
        pa.table({"user": list(users), "item": list(items), "rating": [1.0] * len(rows), "timestamp": pa.array(stamps, pa.int64()), "split": list(splits)}),
        root / "interactions" / "p.parquet",
    )
    (root / "vocab").mkdir()
    pq.write_table(
        pa.table({"item": [f"i{n}" for n in range(NUM_ITEMS)], "id": pa.array(range(NUM_ITEMS), pa.int64()), "count": pa.array([1] * NUM_ITEMS, pa.int64())}),
        root / "vocab" / "items.parquet",
    )
    return rows


@pytest.fixture(scope="module")
def evaluated(spark, tmp_path_factory):
    """Dataset -> Predict -> BuildIndex -> Evaluate on a toy catalogue, run once for the module."""
    from sparkml_tf.retrieval.jobs.evaluate import Evaluate
    from sparkml_tf.retrieval.jobs.index import BuildIndex
    from sparkml_tf.retrieval.jobs.predict import Predict
    from sparkml_tf.testing.average_model import save_average_model

    tmp = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    rows = _dataset(tmp / "data", rng)
    table = rng.normal(size=(NUM_ITEMS, DIM)).astype(np.float32)
    biases = rng.normal(size=NUM_ITEMS).astype(np.float32)
    save_average_model(tmp / "export", table)
    (tmp / "emb").mkdir()
    pq.write_table(
        pa.table(
            {
                "id": pa.array(range(NUM_ITEMS), pa.int64()),
                "item": [f"i{n}" for n in range(NUM_ITEMS)],
                "vector": pa.array(list(table), pa.list_(pa.float32())),
                "bias": pa.array(biases),
            }
        ),
        tmp / "emb" / "p.parquet",
    )
    ctx = RunContext(_spark=spark, tracker=RecordingTracker())
    Predict(str(tmp / "data"), str(tmp / "export"), str(tmp / "users")).run(ctx)
    BuildIndex(str(tmp / "emb"), str(tmp / "index")).run(ctx)
    job = Evaluate(str(tmp / "data"), str(tmp / "users"), str(tmp / "index"), str(tmp / "emb"), str(tmp / "out" / "metrics.json"), ks=[5, 10], ease_lambda=10.0)
    metrics = job.run(ctx)
    return {"tmp": tmp, "rows": rows, "table": table, "biases": biases, "metrics": metrics, "tracker": ctx.tracker, "job": job, "spark": spark}


@pytest.mark.spark
def test_metrics_match_a_direct_numpy_computation(evaluated):
    from sparkml_tf.index.hnsw import exact_search
    from sparkml_tf.metrics.ranking import batch_metrics, mean_metrics, pad_lists, top_k_excluding

    rows, table, biases = evaluated["rows"], evaluated["table"], evaluated["biases"]
    users = sorted({u for u, _, _, s in rows if s == "test_target"})
    foldin = pad_lists([[int(i[1:]) for u2, i, _, s in rows if u2 == u and s == "test_input"] for u in users])
    targets = pad_lists([[int(i[1:]) for u2, i, _, s in rows if u2 == u and s == "test_target"] for u in users])
    user_vectors = np.stack([table[[i for i in row if i >= 0]].mean(0) for row in foldin])
    scores = user_vectors @ table.T + biases
    ranked = top_k_excluding(scores, foldin, 10)
    expected = mean_metrics(batch_metrics(ranked, targets, [5, 10]))
    metrics = evaluated["metrics"]
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-6), name
    assert metrics["num_users"] == 12 and metrics["num_users_without_embedding"] == 0
    assert metrics["ann_recall@30"] == pytest.approx(1.0)  # k clamps to the 30-item catalogue
    assert exact_search(table, biases, user_vectors, 3)[0].shape == (12, 3)


@pytest.mark.spark
def test_baselines_are_reported_with_prefixes(evaluated):
    from sparkml_tf.metrics.baselines import Popular, recommend
    from sparkml_tf.metrics.ranking import batch_metrics, mean_metrics, pad_lists

    rows, metrics = evaluated["rows"], evaluated["metrics"]
    train = [(u, int(i[1:])) for u, i, _, s in rows if s == "train"]
    users = sorted({u for u, _, _, s in rows if s == "test_target"})
    foldin = pad_lists([[int(i[1:]) for u2, i, _, s in rows if u2 == u and s == "test_input"] for u in users])
    targets = pad_lists([[int(i[1:]) for u2, i, _, s in rows if u2 == u and s == "test_target"] for u in users])
    popular = Popular(NUM_ITEMS).fit(np.array([u for u, _ in train]), np.array([i for _, i in train]))
    # Same counts give the same scores, so the same tie-breaking as in the job.
    expected = mean_metrics(batch_metrics(recommend(popular, foldin, 10), targets, [5, 10]))
    for name, value in expected.items():
        assert metrics[f"popular/{name}"] == pytest.approx(value), name
    assert metrics["popular/num_users"] == 12
    for key in ("ease/recall@10", "ease/ndcg@5", "ease/recall_spark@10"):
        assert 0.0 <= metrics[key] <= 1.0


@pytest.mark.spark
def test_output_file_tracking_and_skip(evaluated):
    tmp, metrics, tracker = evaluated["tmp"], evaluated["metrics"], evaluated["tracker"]
    on_disk = json.loads((tmp / "out" / "metrics.json").read_text())
    assert on_disk == metrics
    assert all(not isinstance(v, (dict, list)) for v in on_disk.values())  # flat
    assert [p.name for p in (tmp / "out").iterdir()] == ["metrics.json"]  # no temp file left
    assert tracker.figures == ["plots/recall_at_k.png"]
    assert tracker.metrics["recall@10"] == metrics["recall@10"] and str(tmp / "out" / "metrics.json") in tracker.artifacts
    again = evaluated["job"].run(RunContext(_spark=evaluated["spark"], tracker=RecordingTracker()))
    assert again == metrics


@pytest.mark.spark
def test_ease_skipped_above_max_items_and_no_users_error(evaluated, tmp_path):
    from sparkml_tf.retrieval.jobs.evaluate import Evaluate

    tmp, spark = evaluated["tmp"], evaluated["spark"]
    job = Evaluate(
        str(tmp / "data"), str(tmp / "users"), str(tmp / "index"), str(tmp / "emb"), str(tmp_path / "m.json"), ks=[3], ease_max_items=10, ann_check_users=0
    )
    metrics = job.run(RunContext(_spark=spark))
    assert "popular/recall@3" in metrics and "ann_recall@100" not in metrics
    # EASE was not fitted, and the metrics say why
    assert [k for k in metrics if k.startswith("ease/")] == ["ease/skipped"] and "> ease_max_items=10" in metrics["ease/skipped"]
    spark.createDataFrame([("nobody", [0.0] * DIM)], "user string, vector array<float>").write.parquet(str(tmp_path / "no_users"))
    with pytest.raises(DataError) as e:
        Evaluate(
            str(tmp / "data"), str(tmp_path / "no_users"), str(tmp / "index"), str(tmp / "emb"), str(tmp_path / "n.json"), baselines=[]
        ).run(RunContext(_spark=spark))
    assert e.value.code == "EVALUATE_NO_USERS"
    assert not (tmp_path / "n.json").exists()


def test_bad_arguments():
    from sparkml_tf.retrieval.jobs.evaluate import Evaluate

    with pytest.raises(DataError) as e:
        Evaluate("d", "u", "i", "e", "m.json", baselines=["svd"])
    assert e.value.path == "baselines"
    with pytest.raises(DataError) as e:
        Evaluate("d", "u", "i", "e", "m.json", split="train")
    assert e.value.code == "EVALUATE_UNKNOWN_SPLIT"


@pytest.mark.spark
def test_a_sharded_index_gives_the_metrics_of_one_index(evaluated, tmp_path):
    from sparkml_tf.retrieval.jobs.evaluate import Evaluate
    from sparkml_tf.retrieval.jobs.index import BuildIndex

    tmp, spark = evaluated["tmp"], evaluated["spark"]
    ctx = RunContext(_spark=spark, tracker=RecordingTracker())
    BuildIndex(str(tmp / "emb"), str(tmp_path / "index"), num_shards=3, ef=400).run(ctx)
    job = Evaluate(str(tmp / "data"), str(tmp / "users"), str(tmp_path / "index"), str(tmp / "emb"), str(tmp_path / "metrics.json"), ks=[5, 10],
                   ease_lambda=10.0, baselines=[])
    sharded = job.run(ctx)
    for name in ("recall@5", "ndcg@10", "recall_spark@10", "num_users"):
        assert sharded[name] == pytest.approx(evaluated["metrics"][name], abs=1e-9), name
    assert sharded["ann_recall@30"] == pytest.approx(1.0)
