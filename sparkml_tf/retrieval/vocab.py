"""Item vocabulary: ids ``0..n-1`` by descending training count (ties by item string).

On disk, under one folder (local path or any URI pyarrow reads):

- ``items.parquet``: ``item: string, id: int64, count: int64``, one row per item, sorted by id;
- ``items.txt``: one item per line, line ``i`` (from 0) is the item with id ``i``; the form
  TensorFlow Serving assets and ``tf.lookup.TextFileInitializer`` read.

Frequent items get small ids, so a truncated vocabulary is a prefix.
"""

from __future__ import annotations

import io
import logging

from sparkml_tf.errors import DataError
from sparkml_tf.io.filesystems import resolve

LOGGER = logging.getLogger(__name__)

PARQUET = "items.parquet"
TEXT = "items.txt"


def build_vocab(train):
    """Count the items of a Spark DataFrame with an ``item`` column; return a pandas DataFrame.

    The vocabulary is collected to the driver: items number thousands to a few million.
    """
    import pandas as pd
    from pyspark.sql import functions as F

    rows = train.groupBy(F.col("item").cast("string").alias("item")).agg(F.count(F.lit(1)).alias("count")).collect()
    frame = pd.DataFrame({"item": [r["item"] for r in rows], "count": [int(r["count"]) for r in rows]}, columns=["item", "count"])
    return _number(frame)


def _number(frame):
    import numpy as np

    frame = frame.sort_values(["count", "item"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    frame["id"] = np.arange(len(frame), dtype=np.int64)
    frame["count"] = frame["count"].astype(np.int64)
    return frame[["item", "id", "count"]]


def write_vocab(vocab, directory: str) -> None:
    """Write ``items.parquet`` and ``items.txt`` under ``directory`` (created if missing)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = [item for item in vocab["item"] if not isinstance(item, str) or not item]
    if empty:
        raise DataError(
            "DATA_BAD_ROWS", f"the vocabulary holds an empty or null item ({empty[0]!r}); the readers quarantine such rows (missing_item)", directory
        )
    bad = [item for item in vocab["item"] if "\n" in item or "\r" in item]
    if bad:
        raise DataError(
            "DATA_BAD_ROWS", f"item ids may not contain line breaks (items.txt is one per line), found {bad[0]!r}; clean the item column", directory
        )
    filesystem, base = resolve(directory)
    filesystem.create_dir(base, recursive=True)
    table = pa.Table.from_pandas(vocab[["item", "id", "count"]], preserve_index=False).cast(
        pa.schema([("item", pa.string()), ("id", pa.int64()), ("count", pa.int64())])
    )
    pq.write_table(table, f"{base}/{PARQUET}", filesystem=filesystem)
    text = "".join(f"{item}\n" for item in vocab["item"])
    with filesystem.open_output_stream(f"{base}/{TEXT}") as f:
        f.write(text.encode("utf-8"))
    LOGGER.info("vocabulary of %d items written to %s", len(vocab), directory)


def load_vocab(directory: str):
    """Read ``items.parquet`` from ``directory``: a pandas DataFrame ``item, id, count`` sorted by id."""
    import pyarrow.parquet as pq

    filesystem, base = resolve(directory)
    path = f"{base}/{PARQUET}"
    try:
        table = pq.read_table(path, filesystem=filesystem)
    except FileNotFoundError as e:
        raise DataError("DATA_NOT_FOUND", f"no vocabulary at {path}; run the BuildDataset job first (or point to its vocab/ folder)", directory) from e
    return table.to_pandas().sort_values("id").reset_index(drop=True)


def load_vocab_text(directory: str):
    """Read ``items.txt``: the list of items, index = id."""
    filesystem, base = resolve(directory)
    with filesystem.open_input_stream(f"{base}/{TEXT}") as f:
        return io.TextIOWrapper(io.BytesIO(f.read()), encoding="utf-8").read().splitlines()
