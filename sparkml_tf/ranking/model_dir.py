"""``<model_dir>``: what TrainCtr leaves for ExportCtr, written atomically by the training chief.

    <model_dir>/best.index, best.data-*   the best epoch's weights (tf.train.Checkpoint, prefix "best")
    <model_dir>/spec.json                 the raw model sub-config (rebuilt with the config system)
    <model_dir>/history.json              one entry per epoch: loss, val_auc, val_logloss, timings
    <model_dir>/feature_index.json        the dataset's feature index the model was trained on
    <model_dir>/model.json                checkpoint_id (sha256 of the weights' files), sizes,
                                          feature_index_version, best_val_auc, epochs_run, steps

``checkpoint_id`` names these weights: an export records it, so exporting the same model twice
is a no-op.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Dict, List, Optional

from sparkml_tf.errors import DataError
from sparkml_tf.ranking.layout import FEATURE_INDEX_FILE, CtrDataset, model_feature_index

PREFIX = "best"


@dataclasses.dataclass
class LoadedModel:
    spec: Any
    net: Any
    feature_index: Any  # a sparkml_tf.ranking.features.feature_index.FeatureIndex
    info: Dict[str, Any]
    history: List[Dict[str, Any]]


def _tf_path(path: str) -> str:
    from sparkml_tf.io.filesystems import normalize

    return normalize(path)


def checkpoint_id(directory: str, prefix: str = PREFIX) -> str:
    """First 16 hex digits of the sha256 of the checkpoint's files (their names and bytes)."""
    import tensorflow as tf

    digest = hashlib.sha256()
    for path in sorted(tf.io.gfile.glob(f"{_tf_path(directory)}/{prefix}.*")):
        digest.update(path.rsplit("/", 1)[-1].encode())
        with tf.io.gfile.GFile(path, "rb") as f:
            while True:
                chunk = f.read(1 << 22)
                if not chunk:
                    break
                digest.update(chunk)
    return digest.hexdigest()[:16]


def write_model_dir(
    model_dir: str,
    spec: Any,
    raw_spec: Dict[str, Any],
    net: Any,
    sizes: Dict[str, int],
    dataset_dir: str,
    history: List[Dict[str, Any]],
    extra: Optional[Dict[str, Any]] = None,
    force: bool = False,
) -> Dict[str, Any]:
    """Write ``model_dir`` from ``net`` (distributed or not); return model.json's content."""
    import tensorflow as tf

    from sparkml_tf.io.outputs import atomic_output
    from sparkml_tf.train.loop import copy_weights

    index_source = CtrDataset(dataset_dir).feature_index
    if not tf.io.gfile.exists(_tf_path(index_source)):
        raise DataError("DATA_NOT_FOUND", f"no {FEATURE_INDEX_FILE} beside the training data; rebuild the dataset with BuildCtrDataset", index_source)
    # A plain (undistributed) copy: saving distributed variables would need every worker to save.
    plain = spec.build(sizes)
    copy_weights(plain, net)
    with atomic_output(model_dir, force=force) as tmp:
        out = _tf_path(tmp)
        tf.io.gfile.makedirs(out)
        tf.train.Checkpoint(model=plain).write(f"{out}/{PREFIX}")
        tf.io.gfile.copy(_tf_path(index_source), model_feature_index(out), overwrite=True)
        with tf.io.gfile.GFile(model_feature_index(out)) as f:
            index_version = json.load(f).get("version")
        info = {
            "checkpoint_id": checkpoint_id(out),
            "feature_index_version": index_version,
            "sizes": dict(sizes),
            "model": repr(spec),
            "dataset_dir": dataset_dir,
            **(extra or {}),
        }
        for name, data in (("spec.json", raw_spec), ("history.json", history), ("model.json", info)):
            with tf.io.gfile.GFile(f"{out}/{name}", "w") as f:
                json.dump(data, f, indent=1)
    return info


def read_json(model_dir: str, name: str) -> Any:
    import tensorflow as tf

    path = f"{_tf_path(model_dir)}/{name}"
    if not tf.io.gfile.exists(path):
        raise DataError("MODEL_NOT_FOUND", f"no {name} in the model directory; run the TrainCtr job first, or fix model_dir", f"{model_dir}/{name}")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def load_model_dir(model_dir: str, spec: Any) -> LoadedModel:
    """Build ``spec`` (the model spec built from ``spec.json`` by the caller) and restore the best weights
    (plain variables, no strategy)."""
    import tensorflow as tf

    from sparkml_tf.io.outputs import is_complete
    from sparkml_tf.ranking.features.feature_index import FeatureIndex

    if not is_complete(model_dir):
        raise DataError(
            "MODEL_NOT_FOUND", "the model directory is missing or was not written to completion; run the TrainCtr job first, or fix model_dir", model_dir
        )
    info = read_json(model_dir, "model.json")
    feature_index = FeatureIndex.load(model_feature_index(model_dir))
    if feature_index.sizes() != info["sizes"]:
        raise DataError(
            "DATA_SCHEMA_MISMATCH",
            f"the model was trained on inputs {info['sizes']} but its feature index gives {feature_index.sizes()}; retrain the model",
            model_dir,
        )
    net = spec.build(info["sizes"])
    tf.train.Checkpoint(model=net).read(f"{_tf_path(model_dir)}/{PREFIX}").assert_existing_objects_matched()
    return LoadedModel(spec=spec, net=net, feature_index=feature_index, info=info, history=read_json(model_dir, "history.json"))
