import os

import pytest

from sparkml_tf.errors import SparkmlTfError
from sparkml_tf.io import filesystems
from sparkml_tf.io.filesystems import delete, exists, normalize, read_json, read_text, resolve, uri_for, write_json, write_text


def test_json_round_trip_is_atomic_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "sub" / "metrics.json")
    assert read_json(path) is None
    write_json(path, {"b": 1, "a": [1.5]})
    write_json(path, {"c": 2})
    assert read_json(path) == {"c": 2}
    assert os.listdir(tmp_path / "sub") == ["metrics.json"]


def test_uri_and_relative_paths_resolve_to_the_same_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_text("a.txt", "x")
    filesystem, local = resolve(f"file://{tmp_path}/a.txt")
    assert exists(filesystem, local)
    assert resolve("a.txt")[1] == str(tmp_path / "a.txt")


def test_delete_files_and_trees(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "f").write_text("x")
    filesystem, _ = resolve(str(tmp_path))
    for name in ("d", "f", "missing"):
        delete(filesystem, str(tmp_path / name))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "given, expected",
    [
        ("s3a://bucket/runs/ml", "s3://bucket/runs/ml"),  # Hadoop's name for S3; pyarrow's is s3
        ("s3n://bucket/k", "s3://bucket/k"),
        ("S3A://bucket/k", "s3://bucket/k"),
        ("dbfs:/runs/ml", "/dbfs/runs/ml"),  # the FUSE mount of DBFS on Databricks nodes
        ("dbfs:///runs/ml", "/dbfs/runs/ml"),
        ("file:///tmp/x", "/tmp/x"),
        ("file:/tmp/x", "/tmp/x"),
        ("file://localhost/tmp/x", "/tmp/x"),
        ("hdfs://nn:8020/x", "hdfs://nn:8020/x"),
        ("s3://bucket/k", "s3://bucket/k"),
        ("gs://bucket/k", "gs://bucket/k"),
        ("/Volumes/main/default/v/x", "/Volumes/main/default/v/x"),
        ("runs/a:b", "runs/a:b"),
        ("relative/path", "relative/path"),
    ],
)
def test_normalize(given, expected):
    assert normalize(given) == expected


def test_s3a_resolves_to_pyarrows_s3_without_network():
    from pyarrow import fs

    filesystem, path = resolve("s3a://bucket/runs/ml/metrics.json?region=us-east-1")  # a region: no lookup
    assert isinstance(filesystem, fs.S3FileSystem) and path == "bucket/runs/ml/metrics.json"


def test_dbfs_resolves_to_the_local_mount(tmp_path, monkeypatch):
    monkeypatch.setattr(filesystems, "DBFS_MOUNT", str(tmp_path))
    write_text("dbfs:/runs/a.txt", "x")
    assert (tmp_path / "runs" / "a.txt").read_text() == "x" and read_text("dbfs:/runs/a.txt") == "x"


def test_unknown_scheme_is_reported_with_a_code():
    with pytest.raises(SparkmlTfError) as info:
        resolve("nosuchfs://bucket/x")
    assert info.value.code == "FS_UNSUPPORTED_URI"


@pytest.mark.parametrize(
    "original, inner, expected",
    [
        ("dbfs:/runs/out", "/dbfs/runs/out.tmp-1", "dbfs:/runs/out.tmp-1"),  # Spark writes it as dbfs:/
        ("s3a://bucket/out", "bucket/out.tmp-1", "s3a://bucket/out.tmp-1"),  # and s3a://, as given
        ("hdfs://nn:8020/out", "/out.tmp-1", "hdfs://nn:8020/out.tmp-1"),
        ("file:///tmp/out", "/tmp/out.tmp-1", "file:///tmp/out.tmp-1"),
        ("runs/out", "/abs/runs/out.tmp-1", "/abs/runs/out.tmp-1"),
    ],
)
def test_uri_for_keeps_the_callers_scheme(original, inner, expected):
    assert uri_for(original, inner) == expected
