import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparkml_tf.engine.base import RunContext
from sparkml_tf.errors import DataError
from sparkml_tf.io.outputs import MARKER
from sparkml_tf.testing import RecordingTracker


def write_embeddings(path, n=40, d=6, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    biases = rng.normal(size=n).astype(np.float32)
    table = pa.table(
        {
            "id": pa.array(np.arange(n), pa.int64()),
            "item": pa.array([f"m{i}" for i in range(n)]),
            "vector": pa.array(list(vectors), pa.list_(pa.float32())),
            "bias": pa.array(biases, pa.float32()),
        }
    )
    path.mkdir(parents=True)
    pq.write_table(table, path / "part-0.parquet")
    return vectors, biases


def test_importing_the_job_loads_neither_tensorflow_nor_pyspark():
    code = (
        "import sys, sparkml_tf.retrieval.jobs.index, sparkml_tf.retrieval.jobs.predict, sparkml_tf.retrieval.jobs.evaluate; "
        "print([m for m in ('tensorflow', 'pyspark', 'hnswlib') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_build_index_writes_logs_and_skips(tmp_path):
    from sparkml_tf.index.hnsw import HnswIndex, exact_search
    from sparkml_tf.retrieval.jobs.index import BuildIndex

    vectors, biases = write_embeddings(tmp_path / "emb")
    out = tmp_path / "index"
    tracker = RecordingTracker()
    job = BuildIndex(str(tmp_path / "emb"), str(out), M=8, ef_construction=64, ef=64, num_threads=1)
    result = job.run(RunContext(tracker=tracker))
    assert result["count"] == 40 and (out / MARKER).exists()
    assert {p.name for p in out.iterdir()} >= {"index.bin", "ids.parquet", "params.json"}
    artifacts = [c for c in tracker.calls if c[0] == "artifact"]
    assert len(artifacts) == 1 and artifacts[0][2] == "index"
    params = next(c[1] for c in tracker.calls if c[0] == "params")
    assert params["index.M"] == 8 and params["index.fold_bias"] is True

    index = HnswIndex.load(str(out))
    queries = np.random.default_rng(3).normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_array_equal(index.query(queries, 5)[0], exact_search(vectors, biases, queries, 5)[0])
    assert index.items[:2].tolist() == ["m0", "m1"]

    mtime = (out / "index.bin").stat().st_mtime_ns
    assert job.run(RunContext())["skipped"] is True
    assert (out / "index.bin").stat().st_mtime_ns == mtime
    job.run(RunContext(force=True))
    assert (out / MARKER).exists()


def test_missing_embeddings_raise_data_error(tmp_path):
    from sparkml_tf.retrieval.jobs.index import BuildIndex

    with pytest.raises(DataError) as e:
        BuildIndex(str(tmp_path / "nope"), str(tmp_path / "index")).run(RunContext())
    assert e.value.code == "DATA_NOT_FOUND"
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize("num_shards", [2, 3, 4, 8])
def test_each_shard_is_built_by_its_own_task(spark, num_shards):
    """One shard number per partition: the shards build in parallel, one task each."""
    from sparkml_tf.retrieval.jobs.index import shard_tasks

    assert shard_tasks(spark, num_shards).rdd.glom().map(lambda rows: [row.id for row in rows]).collect() == [[s] for s in range(num_shards)]
