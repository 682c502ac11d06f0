"""The output commit protocol: write to a temporary sibling, swap it in at the end.

A finished output holds a marker file, so a half-written one (a crash, a killed executor) is
never mistaken for a finished one. It may also hold a lineage record (what settings and inputs
made it: :mod:`sparkml_tf.engine.lineage`), so a rerun can tell whether it is up to date. For an
output that is one file (``metrics.json``), the record is a sibling ``<file>.lineage.json``.

Publishing never leaves a moment without a complete output: the old one is moved aside, the new
one moved in, and only then is the old one deleted. Leftover temporary folders of dead attempts
(``<name>.tmp-*``, ``<name>.old-*``) are removed at the next publish of that output.

Paths may be local or any URI :mod:`sparkml_tf.io.filesystems` understands (hdfs://, gs://, ...);
the temporary path handed to writers keeps the caller's scheme, for Spark. Object stores without a
directory rename (s3://, s3a://, gs://, abfs://) are refused by :func:`check_location`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from typing import Any, Dict, Iterator, Optional

from sparkml_tf.errors import ConfigError, OutputError
from sparkml_tf.io.filesystems import delete, exists, read_json, resolve, uri_for, write_text

LOGGER = logging.getLogger(__name__)
MARKER = "_SPARKML_TF_COMPLETE"
LINEAGE = "_SPARKML_TF_LINEAGE.json"
FILE_LINEAGE_SUFFIX = ".lineage.json"
# Stores whose "rename" of a directory is a copy and delete, object by object: an atomic swap is impossible.
OBJECT_STORES = ("s3", "s3a", "s3n", "gs", "gcs", "abfs", "abfss", "wasb", "wasbs")


def check_location(path: str, key: str = "") -> None:
    """CONFIG_UNSUPPORTED_STORE for an output on an object store (no atomic directory rename)."""
    scheme = str(path).partition("://")[0].lower() if "://" in str(path) else ""
    if scheme in OBJECT_STORES:
        raise ConfigError(
            "CONFIG_UNSUPPORTED_STORE",
            f"outputs cannot live on {scheme}:// ({path}): the commit protocol swaps directories by renaming them, which "
            "object stores do as a copy that a crash can leave half done, and training reads paths through tf.io.gfile; "
            "put paths.run_dir on HDFS, a local or shared file system, or a Databricks Volume/DBFS path, "
            "and copy finished outputs to the object store afterwards",
            key,
        )


def is_complete(path: str) -> bool:
    filesystem, local = resolve(path)
    return exists(filesystem, f"{local}/{MARKER}")


def lineage_path(path: str, is_file: bool = False) -> str:
    """Where the lineage record of the output ``path`` lives."""
    return f"{path}{FILE_LINEAGE_SUFFIX}" if is_file else f"{str(path).rstrip('/')}/{LINEAGE}"


def read_lineage(path: str, is_file: bool = False) -> Optional[Dict[str, Any]]:
    record = read_json(lineage_path(path, is_file))
    return record if isinstance(record, dict) else None


def write_lineage(path: str, record: Dict[str, Any], is_file: bool = False) -> None:
    write_text(lineage_path(path, is_file), json.dumps(record, indent=1, sort_keys=True), atomic=True)


def clean_leftovers(path: str) -> int:
    """Delete ``<name>.tmp-*`` and ``<name>.old-*`` siblings of ``path`` (dead attempts); their count."""
    from pyarrow import fs

    filesystem, final = resolve(path)
    parent, name = final.rstrip("/").rsplit("/", 1)
    infos = filesystem.get_file_info(fs.FileSelector(parent, allow_not_found=True))
    leftovers = [i.path for i in infos if i.base_name.startswith((f"{name}.tmp-", f"{name}.old-"))]
    for leftover in leftovers:
        LOGGER.info("removing %s, left by an attempt that did not finish", leftover)
        delete(filesystem, leftover)
    return len(leftovers)


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
    clean_leftovers(path)
    parent, name = final.rstrip("/").rsplit("/", 1)
    # Not hidden: Spark and pyarrow skip paths starting with '.' or '_' when reading, and jobs
    # read their temporary output back (row counts) before the rename.
    attempt = uuid.uuid4().hex[:8]
    tmp = f"{parent}/{name}.tmp-{attempt}"
    filesystem.create_dir(parent, recursive=True)
    try:
        yield uri_for(path, tmp)
        filesystem.create_dir(tmp, recursive=True)  # a writer may have produced nothing
        with filesystem.open_output_stream(f"{tmp}/{MARKER}") as f:
            f.write(b"")
        swap_in(filesystem, tmp, final, attempt)
    except BaseException:
        delete(filesystem, tmp)
        raise
    LOGGER.info("wrote %s", path)


def swap_in(filesystem, tmp: str, final: str, attempt: str) -> None:
    """Move ``tmp`` to ``final``; an existing ``final`` is moved aside first and deleted last."""
    old = f"{final}.old-{attempt}"
    had_old = exists(filesystem, final)
    if had_old:
        filesystem.move(final, old)
    try:
        filesystem.move(tmp, final)
    except BaseException:
        if had_old:
            filesystem.move(old, final)  # put the complete output back
        raise
    if had_old:
        delete(filesystem, old)


__all__ = [
    "MARKER",
    "LINEAGE",
    "atomic_output",
    "is_complete",
    "check_location",
    "read_lineage",
    "write_lineage",
    "lineage_path",
    "clean_leftovers",
]
