"""Atomic outputs: write to a temporary sibling, rename at the end.

A finished output holds a marker file, so a half-written one (a crash, a killed executor) is
never mistaken for a finished one, and a rerun of a finished job is a no-op unless forced.
Paths may be local or any URI :mod:`sparkml_tf.io.filesystems` understands (hdfs://, s3://, s3a://,
gs://, dbfs:/, ...); the temporary path handed to writers keeps the caller's scheme, for Spark.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Iterator

from sparkml_tf.errors import OutputError
from sparkml_tf.io.filesystems import delete, exists, resolve, uri_for

LOGGER = logging.getLogger(__name__)
MARKER = "_SPARKML_TF_COMPLETE"


def is_complete(path: str) -> bool:
    filesystem, local = resolve(path)
    return exists(filesystem, f"{local}/{MARKER}")


@contextlib.contextmanager
def atomic_output(path: str, force: bool = False) -> Iterator[str]:
    """Yield a temporary directory path to write into; on success it becomes ``path``.

    Raises OUTPUT_EXISTS when ``path`` holds something not written by a job here (no marker),
    unless ``force``. Callers check :func:`is_complete` first to skip finished work.
    """
    filesystem, final = resolve(path)
    if exists(filesystem, final) and not force and not exists(filesystem, f"{final}/{MARKER}"):
        raise OutputError(
            "OUTPUT_EXISTS",
            "the output path exists but was not written to completion by sparkml_tf (no "
            f"{MARKER} marker); move it away, or pass --force to replace it",
            path,
        )
    parent, name = final.rsplit("/", 1)
    # Not hidden: Spark and pyarrow skip paths starting with '.' or '_' when reading, and jobs
    # read their temporary output back (row counts) before the rename.
    tmp = f"{parent}/{name}.tmp-{uuid.uuid4().hex[:8]}"
    filesystem.create_dir(parent, recursive=True)
    try:
        yield uri_for(path, tmp)
        filesystem.create_dir(tmp, recursive=True)  # a writer may have produced nothing
        with filesystem.open_output_stream(f"{tmp}/{MARKER}") as f:
            f.write(b"")
        delete(filesystem, final)
        filesystem.move(tmp, final)
    except BaseException:
        delete(filesystem, tmp)
        raise
    LOGGER.info("wrote %s", path)
