"""Where a built dataset keeps what: the one owner of the names both tasks share.

    <dataset>/stats.json                           counts and sizes the trainers read (``task`` names the task)
    <dataset>/tfrecord/<split>/part-NNNNN.tfrecord.gz   training shards (:mod:`sparkml_tf.io.tfrecords`)
    <dataset>/quarantine/                          Parquet: the bad input rows with their reason (:mod:`sparkml_tf.io.rows`)

Task layouts (:class:`sparkml_tf.retrieval.layout.RetrievalDataset`,
:class:`sparkml_tf.ranking.layout.CtrDataset`) add their own folders; no other module spells
these names. Light: usable on executors and in the driver alike.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Optional, Sequence

from sparkml_tf.errors import DataError

STATS_FILE = "stats.json"
TFRECORD_DIR = "tfrecord"
QUARANTINE_DIR = "quarantine"


class DatasetLayout:
    """The paths inside one dataset directory (a local path or any URI the file systems read).

    ``task``: the ``task`` value its ``stats.json`` must carry (None: not checked).
    """

    task: ClassVar[Optional[str]] = None
    job: ClassVar[str] = "the dataset job"

    def __init__(self, root: str):
        self.root = str(root).rstrip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"

    @property
    def stats(self) -> str:
        return f"{self.root}/{STATS_FILE}"

    @property
    def quarantine(self) -> str:
        return f"{self.root}/{QUARANTINE_DIR}"

    def tfrecord_dir(self, split: str) -> str:
        return f"{self.root}/{TFRECORD_DIR}/{split}"

    def read_stats(self, required: Sequence[str] = ()) -> Dict[str, Any]:
        """``stats.json``, checked to be this task's and to hold the ``required`` keys."""
        from sparkml_tf.io.filesystems import read_json

        stats = read_json(self.stats)
        if stats is None:
            raise DataError("DATA_MISSING_STATS", f"no {STATS_FILE} in the dataset directory; run {self.job} first (it writes {self.stats})", self.stats)
        if self.task is not None and stats.get("task") != self.task:
            raise DataError(
                "DATA_SCHEMA_MISMATCH",
                f"{STATS_FILE} is for task '{stats.get('task')}', not '{self.task}'; point dataset_dir at the output of {self.job}",
                self.stats,
            )
        for key in required:
            if key not in stats:
                raise DataError("DATA_SCHEMA_MISMATCH", f"{STATS_FILE} lacks '{key}'; rebuild the dataset with this version of sparkml_tf", self.stats)
        return stats

    def write_stats(self, root: str, stats: Dict[str, Any]) -> str:
        """Write ``stats`` as the stats file of the dataset being written at ``root`` (a temp path)."""
        import json

        from sparkml_tf.io.filesystems import write_text

        path = f"{str(root).rstrip('/')}/{STATS_FILE}"
        write_text(path, json.dumps(stats, indent=2, sort_keys=True))
        return path

    def shard_files(self, split: str) -> List[str]:
        """The TFRecord shards of ``split``, sorted; DATA_MISSING_SPLIT when there are none."""
        from sparkml_tf.io.tfrecords import list_shards

        directory = self.tfrecord_dir(split)
        files = list_shards(directory)
        if not files:
            raise DataError("DATA_MISSING_SPLIT", f"no TFRecord shards in {directory}; run {self.job} first or fix dataset_dir", directory)
        return files
