import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparkml_tf.engine.base import RunContext
from sparkml_tf.errors import DataError
from sparkml_tf.io.outputs import MARKER
from sparkml_tf.testing.average_model import save_average_model

NUM_ITEMS, DIM = 12, 4


def write_dataset(root, rows):
    """rows: (user, item, timestamp, split); vocab item ``i<n>`` has id n."""
    users, items, stamps, splits = zip(*rows)
    (root / "interactions").mkdir(parents=True)
    pq.write_table(
        pa.table({"user": list(users), "item": list(items), "rating": [1.0] * len(rows), "timestamp": pa.array(stamps, pa.int64()), "split": list(splits)}),
        root / "interactions" / "part-0.parquet",
    )
    (root / "vocab").mkdir()
    pq.write_table(
        pa.table({"item": [f"i{n}" for n in range(NUM_ITEMS)], "id": pa.array(range(NUM_ITEMS), pa.int64()), "count": pa.array([1] * NUM_ITEMS, pa.int64())}),
        root / "vocab" / "items.parquet",
    )


def test_padded_from_list_array_uses_offsets_of_slices_and_nulls():
    from sparkml_tf.spark.executor import float_list_array, padded_from_list_array

    array = pa.array([[1, 2], None, [], [3, 4, 5], [6]], pa.list_(pa.int64()))
    assert padded_from_list_array(array).tolist() == [[1, 2, -1], [-1, -1, -1], [-1, -1, -1], [3, 4, 5], [6, -1, -1]]
    assert padded_from_list_array(array.slice(3, 2)).tolist() == [[3, 4, 5], [6, -1, -1]]
    back = float_list_array(np.arange(6, dtype=np.float32).reshape(3, 2))
    assert back.to_pylist() == [[0, 1], [2, 3], [4, 5]]


def test_embed_buckets_by_length_and_keeps_row_order(tmp_path):
    """Rows are sorted by length into model calls trimmed to their own width; results come back in
    input order and equal the unbucketed model output, from a padded matrix or from list offsets."""
    import tensorflow as tf

    from sparkml_tf.retrieval.remote import embed, embed_lists, load_model, used_lengths
    from sparkml_tf.spark.executor import list_offsets_values, padded_from_list_array

    table = np.random.default_rng(0).normal(size=(NUM_ITEMS, DIM)).astype(np.float32)
    fn = load_model("bucket", save_average_model(tmp_path / "export", table))
    widths = []
    recording = lambda items: widths.append(items.shape[1]) or fn(items=items)  # noqa: E731
    lists = [[1, 2, 3, 4, 5], [6], [], [7, 8], [9, 10, 11], [0], [3, 3, 3, 3]]
    array = pa.array(lists + [None], pa.list_(pa.int64()))
    padded = padded_from_list_array(array)
    assert used_lengths(padded).tolist() == [5, 1, 0, 2, 3, 1, 4, 0]
    expected = fn(items=tf.constant(padded))["user_embedding"].numpy()
    got = embed(recording, padded, batch_size=3)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert widths == [1, 3, 5]  # lengths sorted 0 0 1 | 1 2 3 | 4 5
    widths.clear()
    np.testing.assert_allclose(embed_lists(recording, *list_offsets_values(array), batch_size=3), expected, rtol=1e-6)
    assert widths == [1, 3, 5]
    sliced = array.slice(3, 4)  # offsets of a slice start past 0
    np.testing.assert_allclose(embed_lists(fn, *list_offsets_values(sliced), batch_size=2), expected[3:7], rtol=1e-6)
    # explicit -1 pads inside the lists (a padded column) are trimmed like a padded matrix
    widths.clear()
    padded_lists = pa.array([row + [-1] * (5 - len(row)) for row in lists], pa.list_(pa.int64()))
    np.testing.assert_allclose(embed_lists(recording, *list_offsets_values(padded_lists), batch_size=3), expected[:7], rtol=1e-6)
    assert widths == [1, 4, 5]  # lengths sorted 0 1 1 | 2 3 4 | 5
    assert embed(fn, np.zeros((0, 0), np.int64), 4).shape[0] == 0


def test_embed_lists_gathers_each_call_from_the_flat_values(tmp_path):
    """Model calls of one length (strided rows of the flat values) and of several (pads after the
    shorter rows), empty rows, a sliced array: the same embeddings as the padded matrix, in order."""
    import tensorflow as tf

    from sparkml_tf.retrieval.remote import embed_lists, load_model
    from sparkml_tf.spark.executor import list_offsets_values, padded_from_list_array

    table = np.random.default_rng(0).normal(size=(NUM_ITEMS, DIM)).astype(np.float32)
    fn = load_model("gather", save_average_model(tmp_path / "export", table))
    rng = np.random.default_rng(1)
    lists = [rng.integers(NUM_ITEMS, size=n).tolist() for n in rng.choice([0, 1, 3, 3, 3, 6], size=60)]
    array = pa.array(lists, pa.list_(pa.int64()))
    expected = fn(items=tf.constant(padded_from_list_array(array)))["user_embedding"].numpy()
    for batch_size in (1, 4, 7, 60, 100):
        chunks = []
        recording = lambda items: chunks.append(items.numpy()) or fn(items=items)  # noqa: E731
        np.testing.assert_allclose(embed_lists(recording, *list_offsets_values(array), batch_size), expected, rtol=1e-6)
        assert sum(len(c) for c in chunks) == len(lists) and all(len(c) <= batch_size for c in chunks)
        for chunk in chunks:  # each call is as wide as its longest row, pads only at row ends
            used = chunk != -1
            assert used[:, -1].any() or chunk.shape[1] == 1
            assert (np.sort(used, axis=1)[:, ::-1] == used).all()
    sliced = array.slice(10, 30)
    np.testing.assert_allclose(embed_lists(fn, *list_offsets_values(sliced), 8), expected[10:40], rtol=1e-6)


def test_freeze_heap_moves_live_objects_out_of_collections():
    import gc

    from sparkml_tf.spark.executor import freeze_heap

    try:
        freeze_heap()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.mark.spark
def test_arrow_batch_rows_is_restored(spark):
    from sparkml_tf.retrieval.jobs.predict import arrow_batch_rows

    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    with arrow_batch_rows(spark, 1234):
        assert spark.conf.get(key) == "1234"
    assert spark.conf.get(key) == before
    with pytest.raises(ValueError):
        with arrow_batch_rows(spark, 77):
            raise ValueError
    assert spark.conf.get(key) == before


def test_signature_is_checked(tmp_path):
    from sparkml_tf.retrieval.remote import load_model
    from sparkml_tf.serving.export import latest_version

    save_average_model(tmp_path / "export", np.zeros((3, 2), np.float32), version=2, input_name="ids")
    save_average_model(tmp_path / "export", np.zeros((3, 2), np.float32), version=10)
    assert latest_version(str(tmp_path / "export")).endswith("/10")  # numeric, not lexicographic
    with pytest.raises(DataError) as e:
        load_model("k", str(tmp_path / "export" / "2"))
    assert e.value.code == "MODEL_SIGNATURE_MISMATCH" and "'items'" in e.value.message
    with pytest.raises(DataError) as e:
        latest_version(str(tmp_path / "empty"))
    assert e.value.code == "MODEL_NOT_FOUND"


@pytest.mark.spark
def test_predict_embeds_users_of_the_split(spark, tmp_path):
    from sparkml_tf.retrieval.jobs.predict import Predict

    table = np.random.default_rng(0).normal(size=(NUM_ITEMS, DIM)).astype(np.float32)
    save_average_model(tmp_path / "export", table)
    rows = [("u0", "i1", 5, "test_input"), ("u0", "i3", 1, "test_input"), ("u0", "i9", 3, "test_target"),
            ("u1", "i2", 1, "test_input"), ("u1", "unknown", 2, "test_input"), ("u2", "i4", 1, "train")]
    rows += [(f"v{n}", f"i{n % NUM_ITEMS}", n, "test_input") for n in range(20)]
    write_dataset(tmp_path / "data", rows)
    out = tmp_path / "pred"
    job = Predict(str(tmp_path / "data"), str(tmp_path / "export"), str(out), batch_size=3)
    result = job.run(RunContext(_spark=spark))
    assert result["num_users"] == 22 and (out / MARKER).exists()
    df = spark.read.parquet(str(out))
    assert dict(df.dtypes) == {"user": "string", "vector": "array<float>"}
    got = {r["user"]: np.array(r["vector"]) for r in df.collect()}
    np.testing.assert_allclose(got["u0"], table[[1, 3]].mean(0), rtol=1e-5)
    np.testing.assert_allclose(got["u1"], table[2], rtol=1e-5)  # the unknown item is dropped
    np.testing.assert_allclose(got["v13"], table[1], rtol=1e-5)
    assert "u2" not in got
    assert job.run(RunContext(_spark=spark))["skipped"] is True


@pytest.mark.spark
def test_items_are_ordered_by_timestamp(spark, tmp_path):
    from sparkml_tf.retrieval.jobs.predict import group_items, read_interactions

    write_dataset(tmp_path / "data", [("u", "i5", 30, "train"), ("u", "i7", 10, "train"), ("u", "i1", 20, "train")])
    row = group_items(read_interactions(spark, str(tmp_path / "data"), ["train"])).first()
    assert row["items"] == [7, 1, 5]


def test_bad_arguments_raise_with_paths():
    from sparkml_tf.retrieval.jobs.predict import Predict

    with pytest.raises(DataError) as e:
        Predict("d", "e", "o", arrow_batch_rows=0)
    assert e.value.path == "arrow_batch_rows"
    with pytest.raises(DataError) as e:
        Predict("d", "e", "o", split="tests")
    assert e.value.code == "PREDICT_UNKNOWN_SPLIT" and e.value.path == "split"
    with pytest.raises(DataError) as e:
        Predict("d", "e", "o", batch_size=0)
    assert e.value.path == "batch_size"
