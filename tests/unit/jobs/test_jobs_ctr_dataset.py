"""BuildCtrDataset end to end on a small Criteo TSV: layout, stats, train-only index, the same ids
offline (Spark executors) and online (Encoder.encode_rows), TFRecords; GenerateCtrCandidates."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sparkml_tf.engine.base import RunContext
from sparkml_tf.errors import DataError
from sparkml_tf.ranking.features.feature_index import Encoder, FeatureIndex, validate_columns
from sparkml_tf.ranking.generate import CATEGORICAL_FIELDS, COLUMNS, NUMERIC_FIELDS, generate_ctr, write_criteo_tsv
from sparkml_tf.ranking.jobs.dataset import BuildCtrDataset, GenerateCtrCandidates, split_rows
from sparkml_tf.ranking.layout import CtrDataset
from sparkml_tf.testing import RecordingTracker

CROSSES = [["C1", "C2"], {"fields": ["C6", "C14"], "buckets": 40}]


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("ctr")
    raw = str(root / "train.tsv")
    write_criteo_tsv(generate_ctr(1500, seed=7, max_cardinality=200), raw)
    with open(raw, "a") as f:
        f.write("1\t2\t3\n")  # a short row: counted, dropped
    out = str(root / "dataset")
    job = BuildCtrDataset(out, path=raw, format="criteo-tsv", min_count=3, num_buckets=5, crosses=CROSSES, cross_buckets=500, num_shards=3, seed=1)
    tracker = RecordingTracker()
    stats = job.run(RunContext(tracker=tracker, _spark=spark))
    return job, out, stats, tracker


def as_tuples(split, label, deep, wide, dense):
    return sorted(
        (s, float(y), tuple(int(v) for v in d), tuple(int(v) for v in w), tuple(np.float32(v).item() for v in x))
        for s, y, d, w, x in zip(split, label, deep, wide, dense)
    )


@pytest.mark.spark
def test_layout_and_stats(spark, built):
    job, out, stats, tracker = built
    assert os.path.exists(os.path.join(out, "_SPARKML_TF_COMPLETE"))
    assert sorted(n for n in os.listdir(out) if not n.startswith((".", "_"))) == ["encoded", "feature_index", "quarantine", "splits", "stats.json", "tfrecord"]
    quarantine = spark.read.parquet(os.path.join(out, "quarantine")).collect()  # the short row, with its line
    assert [(r["reason"], r["line"], r["raw"]) for r in quarantine] == [("wrong_column_count", 1501, "1\t2\t3")]
    assert stats["quality"]["rows_bad"] == 1 and stats["quality"]["bad_by_reason"]["wrong_column_count"] == 1
    assert tracker.metrics["dataset.rows.bad.wrong_column_count"] == 1
    for split in ("train", "validation"):
        names = sorted(n for n in os.listdir(os.path.join(out, "tfrecord", split)) if not n.startswith("."))
        assert names == [f"part-{i:05d}.tfrecord.gz" for i in range(3)]
    assert CtrDataset(out).read_stats() == json.loads(json.dumps(stats))
    assert stats["counts"]["rows.input"] == 1501 and stats["counts"]["rows.bad_columns"] == 1 and stats["counts"]["rows.kept"] == 1500
    assert stats["num_train_examples"] + stats["num_validation_examples"] + stats["num_test_examples"] == 1500
    assert 80 < stats["num_validation_examples"] < 220 and 80 < stats["num_test_examples"] < 220
    splits = spark.read.parquet(os.path.join(out, "splits"))
    assert splits.columns == list(COLUMNS) + ["split"]
    train = splits.where("split = 'train'").toPandas()
    assert stats["positive_rate"] == pytest.approx(train["label"].mean())
    index = FeatureIndex.load(os.path.join(out, "feature_index"))
    assert stats["feature_index_version"] == index.version and stats["task"] == "ctr" and stats["num_shards"] == 3
    assert {k: stats[k] for k in index.sizes()} == index.sizes()
    assert (stats["num_deep"], stats["num_wide"], stats["num_dense"]) == (39, 41, 13)
    assert tracker.artifacts == [CtrDataset(out).feature_index] and os.path.exists(tracker.artifacts[0])
    assert tracker.params["dataset.feature_index_version"] == index.version and tracker.params["dataset.format"] == "criteo-tsv"
    assert tracker.metrics["dataset.num_train_examples"] == stats["num_train_examples"]
    assert tracker.metrics["dataset.rows.bad_columns"] == 1 and tracker.metrics["dataset.wide_size"] == index.wide_size
    assert tracker.metrics["dataset.size.C1_x_C2"] == 500 and "dataset/stats.json" in tracker.dicts


@pytest.mark.spark
def test_feature_index_is_built_on_train_only(spark, built):
    _, out, _, _ = built
    index = FeatureIndex.load(os.path.join(out, "feature_index"))
    train = spark.read.parquet(os.path.join(out, "splits")).where("split = 'train'").toPandas()
    for field in index.fields:
        if field["kind"] == "categorical":
            counts = train[field["name"]].dropna().value_counts()
            kept = counts[counts >= 3]
            expected = sorted(kept.index, key=lambda v: (-kept[v], v))
            assert field["vocab"] == expected, field["name"]
    assert index.crosses == [
        {"name": "C1_x_C2", "fields": ["C1", "C2"], "buckets": 500},
        {"name": "C6_x_C14", "fields": ["C6", "C14"], "buckets": 40},
    ]


@pytest.mark.spark
def test_offline_ids_equal_online_ids(spark, built):
    _, out, _, _ = built
    index = FeatureIndex.load(os.path.join(out, "feature_index"))
    raw = spark.read.parquet(os.path.join(out, "splits")).toPandas()
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()} for row in raw.to_dict("records")]
    online = Encoder(index).encode_rows(rows)  # one dict per row, as a server gets them
    offline = spark.read.parquet(os.path.join(out, "encoded")).toPandas()
    assert list(offline.columns) == ["split", "label", "deep_ids", "wide_ids", "dense"]
    expected = as_tuples(raw["split"], raw["label"], online["deep_ids"], online["wide_ids"], online["dense"])
    assert as_tuples(offline["split"], offline["label"], offline["deep_ids"], offline["wide_ids"], offline["dense"]) == expected
    assert len({t[2] for t in expected}) > 0.9 * len(expected)  # the comparison is not vacuous


@pytest.mark.spark
def test_tfrecords_hold_the_encoded_rows(spark, built):
    import tensorflow as tf

    _, out, stats, _ = built
    spec = {
        "label": tf.io.FixedLenFeature([], tf.float32),
        "deep_ids": tf.io.FixedLenFeature([stats["num_deep"]], tf.int64),
        "wide_ids": tf.io.FixedLenFeature([stats["num_wide"]], tf.int64),
        "dense": tf.io.FixedLenFeature([stats["num_dense"]], tf.float32),
    }
    encoded = spark.read.parquet(os.path.join(out, "encoded")).toPandas()
    for split in ("train", "validation"):
        files = sorted(tf.io.gfile.glob(os.path.join(out, "tfrecord", split, "part-*.tfrecord.gz")))
        records = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
        assert len(records) == stats[f"num_{split}_examples"]
        got = as_tuples([split] * len(records), *[[r[k].numpy() for r in records] for k in ("label", "deep_ids", "wide_ids", "dense")])
        mine = encoded[encoded["split"] == split]
        assert got == as_tuples(mine["split"], mine["label"], mine["deep_ids"], mine["wide_ids"], mine["dense"])


@pytest.mark.spark
def test_split_is_deterministic_across_partitionings(spark, built):
    _, out, _, _ = built
    raw = spark.read.parquet(os.path.join(out, "splits")).drop("split")
    schema = {"label": "label", "numeric": list(NUMERIC_FIELDS), "categorical": list(CATEGORICAL_FIELDS)}
    keys = ["label", "I1", "I2", "C1", "C3", "C4", "C12"]

    def assignment(frame, seed):
        return split_rows(frame, schema, seed, 0.1, 0.1).select(*keys, "split").toPandas().sort_values(keys + ["split"]).reset_index(drop=True)

    first = assignment(raw.repartition(3), 1)
    assert first.equals(assignment(raw.coalesce(1), 1))
    written = spark.read.parquet(os.path.join(out, "splits")).select(*keys, "split").toPandas().sort_values(keys + ["split"]).reset_index(drop=True)
    assert first.equals(written)
    assert not first["split"].equals(assignment(raw, 2)["split"])  # the seed matters


@pytest.mark.spark
def test_complete_output_is_skipped_unless_forced(spark, built, monkeypatch):
    job, out, stats, _ = built
    import sparkml_tf.ranking.criteo as criteo

    def fail(*args, **kwargs):
        raise AssertionError("should have been skipped")

    monkeypatch.setattr(criteo, "read_ctr", fail)
    assert job.run(RunContext(_spark=spark)) == CtrDataset(out).read_stats()
    with pytest.raises(AssertionError, match="skipped"):
        job.run(RunContext(force=True, _spark=spark))
    assert CtrDataset(out).read_stats() == json.loads(json.dumps(stats))  # a failed forced run leaves the old output


@pytest.mark.spark
def test_generated_parquet_input(spark, tmp_path):
    frame = generate_ctr(400, seed=2, max_cardinality=50).rename(columns={"label": "clicked"})[["clicked", "C6", "I2", "C1", "I1"]]
    frame["request_id"] = [f"r{i}" for i in range(len(frame))]
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    schema = {"label": "clicked", "numeric": ["I1", "I2"], "categorical": ["C1", "C6"]}
    out = str(tmp_path / "ds")
    stats = BuildCtrDataset(out, path=str(tmp_path / "in.parquet"), format="parquet", schema=schema, min_count=2, num_shards=1).run(RunContext(_spark=spark))
    assert (stats["num_deep"], stats["num_wide"], stats["num_dense"]) == (4, 4, 2) and stats["schema"] == schema
    splits = spark.read.parquet(os.path.join(out, "splits"))
    assert splits.columns == ["clicked", "I1", "I2", "C1", "C6", "request_id", "split"]  # user names kept


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"format": "libsvm", "path": "x"}, DataError),
        ({"format": "parquet", "path": "x"}, ValueError),  # no schema
        ({"format": "criteo-tsv"}, ValueError),  # no path
        ({"crosses": [["C1", "C99"]]}, ValueError),
        ({"validation_fraction": 0.6, "test_fraction": 0.5}, ValueError),
        ({"validation_fraction": 0.0}, ValueError),
        ({"num_shards": 0}, ValueError),
        ({"min_count": 0}, ValueError),
        ({"generator": {"num_row": 10}}, ValueError),
    ],
)
def test_constructor_checks(kwargs, error):
    with pytest.raises(error):
        BuildCtrDataset("out", **kwargs)


@pytest.mark.spark
def test_generate_candidates(spark, tmp_path):
    out = str(tmp_path / "candidates")
    job = GenerateCtrCandidates(
        out,
        ["2024-05-01", "2024-05-02"],
        requests_per_date=4,
        ads_per_request=10,
        num_ads=30,
        malformed_fraction=0.1,
        generator={"num_rows": 9, "max_cardinality": 200},
        seed=5,
    )
    tracker = RecordingTracker()
    summary = job.run(RunContext(tracker=tracker, _spark=spark))
    assert sorted(n for n in os.listdir(out) if n.startswith("date=")) == ["date=2024-05-01", "date=2024-05-02"]
    assert summary["num_rows"] == 80 and tracker.metrics["candidates.num_rows"] == 80
    table = spark.read.parquet(out)
    assert set(table.columns) == {"request_id", "ad_id", "date", *NUMERIC_FIELDS, *CATEGORICAL_FIELDS}
    frame = table.toPandas()
    assert frame.groupby("request_id").size().tolist() == [10] * 8
    ok, reasons = validate_columns(FeatureIndex([{"name": n, "kind": "numeric", "boundaries": []} for n in NUMERIC_FIELDS]), frame)
    assert (~ok).sum() == summary["num_malformed_rows"] > 0 and all(r for r, good in zip(reasons, ok) if not good)
    before = os.path.getmtime(os.path.join(out, "date=2024-05-01", "part-00000.parquet"))
    assert job.run(RunContext(_spark=spark))["output_dir"] == out  # complete: skipped
    assert os.path.getmtime(os.path.join(out, "date=2024-05-01", "part-00000.parquet")) == before


def test_candidate_constructor_checks():
    for kwargs in (
        {"dates": "2024-05-01"},
        {"dates": []},
        {"dates": ["2024-05-01", "2024-05-01"]},
        {"dates": ["2024-13-01"]},
        {"dates": ["2024-05-01"], "generator": {"requests_per_date": 3}},
    ):
        with pytest.raises(ValueError):
            GenerateCtrCandidates("out", **kwargs)


def test_import_is_light():
    probe = (
        "import sys, sparkml_tf.ranking.jobs.dataset, sparkml_tf.ranking.features; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'pyspark', 'mlflow'}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


