"""Where the ranking task keeps what: every reader and writer goes through these names.

    <dataset>/feature_index/feature_index.json   the FeatureIndex built on the train split
    <dataset>/splits/, encoded/                   Parquet: raw rows + split; ids + label
    <dataset>/tfrecord/<split>/, stats.json       (:mod:`sparkml_tf.io.layout`)
    <model_dir>/feature_index.json                the index the model was trained on
    <export>/<version>/assets/feature_index.json  the same, inside each serving export
"""

from __future__ import annotations

from sparkml_tf.io.layout import DatasetLayout

FEATURE_INDEX_FILE = "feature_index.json"
FEATURE_INDEX_DIR = "feature_index"
SPLITS_DIR = "splits"
ENCODED_DIR = "encoded"
SPLITS = ("train", "validation", "test")
TFRECORD_SPLITS = ("train", "validation")


class CtrDataset(DatasetLayout):
    task = "ctr"
    job = "the BuildCtrDataset job"

    @property
    def feature_index_dir(self) -> str:
        return f"{self.root}/{FEATURE_INDEX_DIR}"

    @property
    def feature_index(self) -> str:
        return f"{self.feature_index_dir}/{FEATURE_INDEX_FILE}"

    @property
    def splits(self) -> str:
        return f"{self.root}/{SPLITS_DIR}"

    @property
    def encoded(self) -> str:
        return f"{self.root}/{ENCODED_DIR}"


def model_feature_index(model_dir: str) -> str:
    """The feature index copied beside a trained model's weights."""
    return f"{str(model_dir).rstrip('/')}/{FEATURE_INDEX_FILE}"


def export_feature_index(version_path: str) -> str:
    """The feature index inside one serving export version (a SavedModel asset)."""
    return f"{str(version_path).rstrip('/')}/assets/{FEATURE_INDEX_FILE}"
