import os

import pytest

from sparkml_tf.errors import OutputError
from sparkml_tf.io.outputs import MARKER, atomic_output, is_complete


def test_output_appears_only_when_complete(tmp_path):
    final = str(tmp_path / "out")
    with atomic_output(final) as tmp:
        os.makedirs(tmp)
        open(os.path.join(tmp, "data"), "w").write("x")
        assert not os.path.exists(final)
    assert is_complete(final)
    assert sorted(os.listdir(final)) == sorted(["data", MARKER])
    assert os.listdir(tmp_path) == ["out"]


def test_failure_leaves_nothing_behind(tmp_path):
    final = str(tmp_path / "out")
    with pytest.raises(RuntimeError):
        with atomic_output(final) as tmp:
            os.makedirs(tmp)
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == []
    assert not is_complete(final)


def test_foreign_output_is_refused_unless_forced(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "theirs").write_text("keep")
    with pytest.raises(OutputError) as info:
        with atomic_output(str(final)):
            pass
    assert info.value.code == "OUTPUT_EXISTS"
    assert (final / "theirs").exists()
    with atomic_output(str(final), force=True) as tmp:
        os.makedirs(tmp)
    assert is_complete(str(final)) and not (final / "theirs").exists()


def test_complete_output_is_replaced_on_rerun(tmp_path):
    final = str(tmp_path / "out")
    for content in ("one", "two"):
        with atomic_output(final) as tmp:
            os.makedirs(tmp)
            open(os.path.join(tmp, "v"), "w").write(content)
    assert open(os.path.join(final, "v")).read() == "two"


@pytest.mark.spark
def test_spark_reads_the_temporary_output_back(spark, tmp_path):
    # A hidden temporary name ('.out.tmp') would make Spark ignore the path and read nothing.
    with atomic_output(str(tmp_path / "out")) as tmp:
        spark.range(5).write.parquet(tmp)
        assert spark.read.parquet(tmp).count() == 5
