import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from sparkml_tf.errors import DataError
from sparkml_tf.ranking.export import export_ctr_model, random_features
from sparkml_tf.ranking.features.feature_index import FeatureIndex
from sparkml_tf.ranking.models.dcn import DCNv2
from sparkml_tf.ranking.models.wide_deep import WideDeep
from sparkml_tf.ranking.testing import ctr_feature_index
from sparkml_tf.serving.export import MAX_WARMUP_RECORDS, find_export, latest_version, read_metadata


@pytest.fixture(autouse=True)
def _fresh():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


@pytest.fixture
def index():
    return ctr_feature_index()


def trained_like(spec, index):
    """A net whose weights all differ from a fresh build's, so a copy that missed one shows."""
    net = spec.build(index)
    for w in net.weights:
        w.assign(tf.random.normal(w.shape, stddev=0.3, seed=11))
    return net


def warmup_requests(path):
    logs = []
    for record in tf.data.TFRecordDataset(os.path.join(path, "assets.extra", "tf_serving_warmup_requests")):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs


def test_export_layout_signature_and_warmup(index, tmp_path):
    spec = WideDeep(embedding_dim=3, hidden_units=[8, 4])
    net = trained_like(spec, index)
    history = [{"epoch": 0, "loss": 0.5, "val_auc": 0.7}]
    path = export_ctr_model(spec, net, index, str(tmp_path / "export"), warmup_records=20, history=history, metadata={"checkpoint_id": "abc"})
    assert path == str(tmp_path / "export" / "1")
    assert {"saved_model.pb", "variables", "assets", "assets.extra", "metadata.json", "history.json"} <= set(os.listdir(path))
    assert [n for n in os.listdir(tmp_path / "export")] == ["1"]  # no temp sibling left behind

    # The feature index is a real SavedModel asset, readable as a FeatureIndex.
    assert FeatureIndex.load(os.path.join(path, "assets", "feature_index.json")) == index
    loaded = tf.saved_model.load(path)
    assert loaded.feature_index.asset_path.numpy().decode().endswith(os.path.join("assets", "feature_index.json"))

    serve = loaded.signatures["serving_default"]
    inputs = serve.structured_input_signature[1]
    assert {k: (v.dtype, v.shape.as_list()) for k, v in inputs.items()} == {
        "deep_ids": (tf.int64, [None, index.num_deep]),
        "wide_ids": (tf.int64, [None, index.num_wide]),
        "dense": (tf.float32, [None, index.num_dense]),
    }
    features = random_features(index, 7, seed=3)
    out = serve(**{k: tf.constant(v) for k, v in features.items()})
    assert set(out) == {"probability", "logit"} and out["logit"].shape == (7,) and out["probability"].dtype == tf.float32
    expected = net(features).numpy()
    np.testing.assert_allclose(out["logit"].numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["probability"].numpy(), 1 / (1 + np.exp(-expected)), rtol=1e-5)

    # Warm-up: PredictionLog records whose requests the signature accepts.
    logs = warmup_requests(path)
    assert len(logs) == 20
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        arrays = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        assert set(arrays) == {"deep_ids", "wide_ids", "dense"}
        result = serve(**{k: tf.constant(v) for k, v in arrays.items()})
        np.testing.assert_allclose(result["logit"].numpy(), net(arrays).numpy(), rtol=1e-5, atol=1e-6)
        for j, (offset, size) in enumerate(zip(index.deep_offsets, index.deep_sizes)):  # valid ids, each in its feature's range
            assert offset <= arrays["deep_ids"][0, j] < offset + size

    metadata = read_metadata(path)
    assert metadata["model_version"] == 1 and metadata["feature_index_version"] == index.version and metadata["checkpoint_id"] == "abc"
    assert metadata["inputs"] == index.sizes() and metadata["warmup_records"] == 20
    assert json.loads(open(os.path.join(path, "history.json")).read()) == history


def test_versions_warmup_rows_and_latest(index, tmp_path):
    export_dir = str(tmp_path / "export")
    with pytest.raises(DataError) as info:
        latest_version(export_dir)
    assert info.value.code == "MODEL_NOT_FOUND" and info.value.path == export_dir
    spec = DCNv2(embedding_dim=2, cross_layers=1, hidden_units=[4])
    net = trained_like(spec, index)
    rows = random_features(index, 3, seed=9)
    first = export_ctr_model(spec, net, index.to_dict(), export_dir, warmup_records=5000, warmup_features=rows, metadata={"checkpoint_id": "one"})
    logs = warmup_requests(first)
    assert len(logs) == MAX_WARMUP_RECORDS  # TF Serving reads no more
    sent = [tf.make_ndarray(log.predict_log.request.inputs["deep_ids"]) for log in logs[:4]]
    np.testing.assert_array_equal(np.concatenate(sent), np.concatenate([rows["deep_ids"], rows["deep_ids"][:1]]))  # the given rows, cycled
    second = export_ctr_model(spec, net, index, export_dir, warmup_records=0, metadata={"checkpoint_id": "two"})
    assert second.endswith("/2") and not os.path.exists(os.path.join(second, "assets.extra"))
    os.makedirs(os.path.join(export_dir, "7"))  # an incomplete version (no saved_model.pb) is never the latest
    os.makedirs(os.path.join(export_dir, ".3.tmp-abc"))
    assert latest_version(export_dir) == second
    assert find_export(export_dir, "one") == first and find_export(export_dir, "three") is None
    third = export_ctr_model(spec, net, index, export_dir, warmup_records=1)
    assert third.endswith("/8")  # after every numbered directory, complete or not


def test_index_must_match_the_model(index, tmp_path):
    other = FeatureIndex(index.fields[:-1], index.crosses)
    spec = WideDeep(embedding_dim=2, hidden_units=[3])
    with pytest.raises(DataError) as info:
        export_ctr_model(spec, spec.build(index), other, str(tmp_path / "export"))
    assert info.value.code == "DATA_SCHEMA_MISMATCH"
    assert not os.path.exists(tmp_path / "export")
