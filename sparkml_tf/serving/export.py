"""Serving exports: versioned SavedModels that TF Serving loads as they are.

    <export_dir>/<version>/              version = 1, 2, ...: written to a temp sibling, then renamed
        saved_model.pb, variables/       signature serving_default (inputs and outputs: the task's)
        assets/                          files the model needs at serving time (the ranking task's feature index)
        assets.extra/tf_serving_warmup_requests   PredictionLog records TF Serving replays on load
        metadata.json                    model_version, checkpoint_id, ...

This module owns that layout and the one rule for "newest version": the highest integer
directory holding ``saved_model.pb`` (:func:`latest_version`). Batch inference, scoring,
evaluation and the in-process scorers all go through it.

Light to import: TensorFlow and tensorflow-serving-api are imported where used.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional

from sparkml_tf.errors import DataError

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many warm-up records
METADATA_FILE = "metadata.json"
SIGNATURE = "serving_default"
SAVED_MODEL_FILE = "saved_model.pb"


def _tf_path(path: str) -> str:
    from sparkml_tf.io.filesystems import normalize

    return normalize(path)


def _versions(export_dir: str, complete_only: bool) -> List[int]:
    from pyarrow import fs

    from sparkml_tf.io.filesystems import exists, resolve

    filesystem, path = resolve(export_dir)
    infos = filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
    versions = [int(i.base_name) for i in infos if i.type == fs.FileType.Directory and i.base_name.isdigit()]
    if complete_only:
        versions = [v for v in versions if exists(filesystem, f"{path}/{v}/{SAVED_MODEL_FILE}")]
    return sorted(versions)


def list_versions(export_dir: str) -> List[int]:
    """The complete versions under ``export_dir``, ascending: integer folders holding the SavedModel
    file (a version still being written sits under a temporary non-integer name, or lacks it)."""
    return _versions(export_dir, complete_only=True)


def version_path(export_dir: str, version: int) -> str:
    return f"{str(export_dir).rstrip('/')}/{int(version)}"


def latest_version(export_dir: str) -> str:
    """``<export_dir>/<version>`` of the highest complete version (an integer folder holding
    saved_model.pb), or ``export_dir`` itself when it is a SavedModel. The one rule every reader uses."""
    from sparkml_tf.io.filesystems import exists, resolve

    filesystem, path = resolve(export_dir)
    if exists(filesystem, f"{path.rstrip('/')}/{SAVED_MODEL_FILE}"):
        return export_dir
    versions = list_versions(export_dir)
    if not versions:
        raise DataError(
            "MODEL_NOT_FOUND",
            "no SavedModel version directory (an integer name such as 1/) found; run the training (or export) job first or fix export_dir",
            export_dir,
        )
    return version_path(export_dir, versions[-1])


def next_version(export_dir: str) -> int:
    return max(_versions(export_dir, complete_only=False), default=0) + 1


def read_metadata(path: str) -> Optional[Dict[str, Any]]:
    """A version's metadata.json, or None when it has none (exported by something else)."""
    from sparkml_tf.io.filesystems import read_json

    return read_json(f"{str(path).rstrip('/')}/{METADATA_FILE}")


def find_export(export_dir: str, checkpoint_id: str) -> Optional[str]:
    """The newest complete version exported from the model with ``checkpoint_id``, if any."""
    for version in reversed(list_versions(export_dir)):
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


def warmup_logs(features: Mapping[str, Any], num_records: int, model_name: str = "") -> List[Any]:
    """``num_records`` (at most 1000) PredictionLog protos, one single-row request each, cycling
    through the rows of ``features`` (input name -> array of the signature's dtype)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    arrays = {name: np.asarray(value) for name, value in features.items()}
    rows = len(next(iter(arrays.values()))) if arrays else 0
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


def write_metadata(version_dir: str, info: Dict[str, Any], history: Optional[List[Dict[str, Any]]] = None) -> None:
    """``metadata.json`` (and ``history.json`` when given) in a version being written."""
    import tensorflow as tf

    with tf.io.gfile.GFile(f"{version_dir}/{METADATA_FILE}", "w") as f:
        json.dump(info, f, indent=1)
    if history is not None:
        with tf.io.gfile.GFile(f"{version_dir}/history.json", "w") as f:
            json.dump(history, f, indent=1)
