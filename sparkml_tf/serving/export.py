"""The serving export of a CTR model: a versioned SavedModel TF Serving loads as it is.

    <export_dir>/<version>/              version = 1, 2, ...: written to a temp sibling, then renamed
        saved_model.pb, variables/       signature serving_default:
                                           deep_ids int64 [None, num_deep], wide_ids int64 [None, num_wide],
                                           dense float32 [None, num_dense]
                                           -> probability float32 [None], logit float32 [None]
        assets/feature_index.json        a SavedModel asset: TF Serving and copies of the model keep it
        assets.extra/tf_serving_warmup_requests   PredictionLog records TF Serving replays on load
        metadata.json                    model_version, feature_index_version, checkpoint_id, ...
        history.json                     the training history, when given

Light to import: TensorFlow and tensorflow-serving-api are imported where used.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional

from sparkml_tf.errors import DataError

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many warm-up records
METADATA_FILE = "metadata.json"
INDEX_FILE = "feature_index.json"
SIGNATURE = "serving_default"


def _tf_path(path: str) -> str:
    from sparkml_tf.filesystems import normalize

    return normalize(path)


def _versions(export_dir: str, complete_only: bool) -> List[int]:
    from pyarrow import fs

    from sparkml_tf.filesystems import exists, resolve

    filesystem, path = resolve(export_dir)
    infos = filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
    versions = [int(i.base_name) for i in infos if i.type == fs.FileType.Directory and i.base_name.isdigit()]
    if complete_only:
        versions = [v for v in versions if exists(filesystem, f"{path}/{v}/saved_model.pb")]
    return sorted(versions)


def version_path(export_dir: str, version: int) -> str:
    return f"{str(export_dir).rstrip('/')}/{int(version)}"


def latest_version(export_dir: str) -> str:
    """``<export_dir>/<version>`` of the highest complete version (one holding saved_model.pb)."""
    versions = _versions(export_dir, complete_only=True)
    if not versions:
        raise DataError("MODEL_NOT_FOUND", "no SavedModel version directory (an integer name such as 1/) found; run the TrainCtr and ExportCtr jobs first or fix export_dir", export_dir)
    return version_path(export_dir, versions[-1])


def next_version(export_dir: str) -> int:
    return max(_versions(export_dir, complete_only=False), default=0) + 1


def read_metadata(path: str) -> Optional[Dict[str, Any]]:
    """A version's metadata.json, or None when it has none (exported by something else)."""
    from sparkml_tf.filesystems import read_json

    return read_json(f"{str(path).rstrip('/')}/{METADATA_FILE}")


def find_export(export_dir: str, checkpoint_id: str) -> Optional[str]:
    """The newest complete version exported from the model with ``checkpoint_id``, if any."""
    for version in reversed(_versions(export_dir, complete_only=True)):
        path = version_path(export_dir, version)
        if (read_metadata(path) or {}).get("checkpoint_id") == checkpoint_id:
            return path
    return None


def publish_version(export_dir: str, write: Callable[[str, int], None]) -> str:
    """Call ``write(tmp, version)`` on a temp sibling of the next version, then rename it into place, so a
    reader listing versions never sees a half-written one. Returns ``<export_dir>/<version>``."""
    import tensorflow as tf

    version = next_version(export_dir)
    base = _tf_path(str(export_dir).rstrip("/"))
    tmp = f"{base}/.{version}.tmp-{uuid.uuid4().hex[:8]}"
    tf.io.gfile.makedirs(base)
    try:
        write(tmp, version)
        tf.io.gfile.rename(tmp, f"{base}/{version}")
    except BaseException:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.rmtree(tmp)
        raise
    return version_path(export_dir, version)


def serving_module(net: Any, sizes: Dict[str, int], index_file: str):
    """A tf.Module over ``net`` with the ``serve`` function and the feature index as an asset."""
    import tensorflow as tf

    module = tf.Module()
    module.net = net
    module.feature_index = tf.saved_model.Asset(index_file)  # copied into assets/ on save

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, sizes["num_deep"]], tf.int64, name="deep_ids"),
            tf.TensorSpec([None, sizes["num_wide"]], tf.int64, name="wide_ids"),
            tf.TensorSpec([None, sizes["num_dense"]], tf.float32, name="dense"),
        ]
    )
    def serve(deep_ids, wide_ids, dense):
        logit = tf.reshape(net({"deep_ids": deep_ids, "wide_ids": wide_ids, "dense": dense}, training=False), [-1])
        return {"probability": tf.sigmoid(logit), "logit": logit}

    module.serve = serve
    return module


def random_features(feature_index: Any, num_rows: int, seed: int = 0) -> Dict[str, Any]:
    """Valid inputs drawn at random: each column's ids within its own feature's range."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def ids(offsets: List[int], sizes: List[int]):
        columns = [offset + rng.integers(0, size, num_rows) for offset, size in zip(offsets, sizes)]
        return np.stack(columns, axis=1).astype(np.int64) if columns else np.zeros((num_rows, 0), np.int64)

    return {
        "deep_ids": ids(feature_index.deep_offsets, feature_index.deep_sizes),
        "wide_ids": ids(feature_index.wide_offsets, feature_index.wide_sizes),
        "dense": np.log1p(rng.exponential(5.0, (num_rows, feature_index.num_dense))).astype(np.float32),
    }


def warmup_logs(features: Mapping[str, Any], num_records: int, model_name: str = "") -> List[Any]:
    """``num_records`` (at most 1000) PredictionLog protos, one single-row request each, cycling
    through the rows of ``features``."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    arrays = {
        "deep_ids": np.asarray(features["deep_ids"], np.int64),
        "wide_ids": np.asarray(features["wide_ids"], np.int64),
        "dense": np.asarray(features["dense"], np.float32),
    }
    rows = len(arrays["deep_ids"])
    if rows == 0:
        raise ValueError("warm-up requests need at least one example row")
    logs = []
    for i in range(min(int(num_records), MAX_WARMUP_RECORDS)):
        request = predict_pb2.PredictRequest()
        if model_name:
            request.model_spec.name = model_name
        request.model_spec.signature_name = SIGNATURE
        for name, array in arrays.items():
            row = array[i % rows : i % rows + 1]
            request.inputs[name].CopyFrom(tf.make_tensor_proto(row, dtype=tf.as_dtype(array.dtype), shape=row.shape))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup_requests(version_dir: str, logs: List[Any]) -> str:
    """``<version_dir>/assets.extra/tf_serving_warmup_requests`` (a TFRecord file of PredictionLog)."""
    import tensorflow as tf

    directory = f"{_tf_path(version_dir)}/assets.extra"
    tf.io.gfile.makedirs(directory)
    path = f"{directory}/{WARMUP_FILE}"
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def export_ctr_model(
    spec: Any,
    net: Any,
    feature_index: Any,
    export_dir: str,
    warmup_records: int = 100,
    history: Optional[List[Dict[str, Any]]] = None,
    *,
    warmup_features: Optional[Mapping[str, Any]] = None,
    metadata: Optional[Dict[str, Any]] = None,
    model_name: str = "",
) -> str:
    """Export ``net`` (distributed or not) as ``<export_dir>/<next version>``; return that path.

    ``feature_index``: a FeatureIndex or its dict. ``warmup_features``: example inputs for the
    warm-up requests (e.g. validation rows); random valid ids when None. ``metadata``: extra keys
    for metadata.json (``checkpoint_id`` of the source model, ...).
    """
    import tensorflow as tf

    from sparkml_tf.features.index import as_index
    from sparkml_tf.train.runner import copy_weights

    index = as_index(feature_index)
    sizes = index.sizes()
    trained = getattr(net, "sizes", None)
    if trained is not None and dict(trained) != sizes:
        raise DataError("DATA_SCHEMA_MISMATCH", f"the model takes inputs {dict(trained)} but the feature index gives {sizes}; export with the index the model was trained on")
    # A plain (undistributed) copy: saving distributed variables would need every worker to save.
    plain = spec.build(sizes)
    copy_weights(plain, net)
    if warmup_features is None:
        warmup_features = random_features(index, min(max(int(warmup_records), 1), MAX_WARMUP_RECORDS))
    logs = warmup_logs(warmup_features, warmup_records, model_name) if warmup_records > 0 else []
    scratch = tempfile.mkdtemp(prefix="sparkml-tf-export-")
    try:
        index_file = os.path.join(scratch, INDEX_FILE)  # the asset keeps this base name
        with open(index_file, "w") as f:
            f.write(index.to_json())
        module = serving_module(plain, sizes, index_file)

        def write(tmp: str, version: int) -> None:
            tf.saved_model.save(module, tmp, signatures={SIGNATURE: module.serve})
            if logs:
                write_warmup_requests(tmp, logs)
            info = {
                "model_version": version,
                "feature_index_version": index.version,
                "model": repr(spec),
                "inputs": sizes,
                "warmup_records": len(logs),
                "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                **(metadata or {}),
            }
            with tf.io.gfile.GFile(f"{tmp}/{METADATA_FILE}", "w") as f:
                json.dump(info, f, indent=1)
            if history is not None:
                with tf.io.gfile.GFile(f"{tmp}/history.json", "w") as f:
                    json.dump(history, f, indent=1)

        return publish_version(export_dir, write)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
