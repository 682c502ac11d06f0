"""The serving export of a CTR model: a versioned SavedModel (layout and version rule:
:mod:`sparkml_tf.serving.export`) with

    signature serving_default:  deep_ids int64 [None, num_deep], wide_ids int64 [None, num_wide],
                                dense float32 [None, num_dense] -> probability float32 [None], logit float32 [None]
    assets/feature_index.json   the feature index the model was trained with (TF Serving and copies keep it)
    metadata.json               + feature_index_version, inputs

Light to import: TensorFlow is imported where used.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from typing import Any, Dict, List, Mapping, Optional

from sparkml_tf.errors import DataError
from sparkml_tf.ranking.layout import FEATURE_INDEX_FILE
from sparkml_tf.serving.export import MAX_WARMUP_RECORDS, SIGNATURE, publish_version, warmup_logs, write_metadata, write_warmup_requests

INPUT_DTYPES = (("deep_ids", "int64"), ("wide_ids", "int64"), ("dense", "float32"))


def warmup_arrays(features: Mapping[str, Any]) -> Dict[str, Any]:
    """The three inputs of ``features`` in the signature's dtypes."""
    import numpy as np

    return {name: np.asarray(features[name], dtype) for name, dtype in INPUT_DTYPES}


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

    from sparkml_tf.ranking.features.feature_index import as_index
    from sparkml_tf.train.loop import copy_weights

    index = as_index(feature_index)
    sizes = index.sizes()
    trained = getattr(net, "sizes", None)
    if trained is not None and dict(trained) != sizes:
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"the model takes inputs {dict(trained)} but the feature index gives {sizes}; export with the index the model was trained on",
        )
    # A plain (undistributed) copy: saving distributed variables would need every worker to save.
    plain = spec.build(sizes)
    copy_weights(plain, net)
    if warmup_features is None:
        warmup_features = random_features(index, min(max(int(warmup_records), 1), MAX_WARMUP_RECORDS))
    logs = warmup_logs(warmup_arrays(warmup_features), warmup_records, model_name) if warmup_records > 0 else []
    scratch = tempfile.mkdtemp(prefix="sparkml-tf-export-")
    try:
        index_file = os.path.join(scratch, FEATURE_INDEX_FILE)  # the asset keeps this base name
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
            write_metadata(tmp, info, history)

        return publish_version(export_dir, write)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
