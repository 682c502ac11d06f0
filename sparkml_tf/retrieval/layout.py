"""Where a retrieval dataset keeps what: every reader and writer of these folders goes through
:class:`RetrievalDataset`.

    <dataset>/interactions/         Parquet: user, item, rating, timestamp, split
    <dataset>/vocab/                items.parquet (item, id, count) + items.txt (:mod:`sparkml_tf.retrieval.vocab`)
    <dataset>/tfrecord/<split>/     training shards (``training_format="tfrecord"``)
    <dataset>/petastorm/<split>/    Parquet for Petastorm (``training_format="petastorm"``)
    <dataset>/stats.json            (:mod:`sparkml_tf.io.layout`)
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

from sparkml_tf.io.layout import DatasetLayout

INTERACTIONS_DIR = "interactions"
VOCAB_DIR = "vocab"
PETASTORM_DIR = "petastorm"
# The keys every retrieval trainer needs from stats.json.
TRAINING_STATS = ("num_items", "num_train_examples")


class RetrievalDataset(DatasetLayout):
    job = "the BuildDataset job"

    @property
    def interactions(self) -> str:
        return f"{self.root}/{INTERACTIONS_DIR}"

    @property
    def vocab(self) -> str:
        return f"{self.root}/{VOCAB_DIR}"

    @property
    def vocab_table(self) -> str:
        from sparkml_tf.retrieval.vocab import PARQUET

        return f"{self.vocab}/{PARQUET}"

    def petastorm_dir(self, split: str) -> str:
        return f"{self.root}/{PETASTORM_DIR}/{split}"

    def read_stats(self, required: Sequence[str] = TRAINING_STATS) -> Dict[str, Any]:
        return super().read_stats(required)
