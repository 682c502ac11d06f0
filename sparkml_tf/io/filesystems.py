"""Paths that may be local or a URI: hdfs://, s3:// (and Hadoop's s3a://), gs://, abfs://,
dbfs:/ (Databricks), file://; http(s):// for reading only.

Light: pyarrow is imported on use. Used on the driver and on executors alike.

:func:`normalize` maps the names pyarrow does not know onto ones it does:

- ``s3a://bucket/key`` and ``s3n://bucket/key`` (Hadoop's S3 connectors, what Spark wants) are
  ``s3://bucket/key`` for pyarrow, same bucket and key;
- ``dbfs:/x`` is the local path ``/dbfs/x``: pyarrow has no DBFS filesystem, and Databricks mounts
  DBFS there (FUSE) on the driver and on every executor. Off Databricks that path does not exist;
- ``file:///x``, ``file:/x`` and ``file://localhost/x`` are the local path ``/x``.

Only the Python side (pyarrow, hnswlib, TensorFlow) sees the normalized form; a path handed to
Spark keeps the user's scheme (see :func:`uri_for`), since Hadoop knows s3a:// and dbfs:/.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Optional, Tuple

from sparkml_tf.errors import SparkmlTfError

SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3"}
DBFS_MOUNT = "/dbfs"
HTTP_TIMEOUT_S = 60


def normalize(path: str) -> str:
    """``path`` in the form pyarrow reads it (see the module docstring); others unchanged."""
    path = os.fspath(path)
    scheme, colon, rest = path.partition(":")
    if not colon or len(scheme) < 2 or not scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        return path  # a plain path (``C:`` is a drive letter, ``runs/a:b`` a file name)
    scheme = scheme.lower()
    if scheme in SCHEME_ALIASES and rest.startswith("//"):
        return f"{SCHEME_ALIASES[scheme]}:{rest}"
    if scheme == "dbfs":
        return f"{DBFS_MOUNT}/{rest.lstrip('/')}"
    if scheme == "file":
        if rest.startswith("//"):
            authority, _, inner = rest[2:].partition("/")
            return f"/{inner}" if authority in ("", "localhost") else path
        return f"/{rest.lstrip('/')}"
    return path


def resolve(path: str) -> Tuple[Any, str]:
    """``(filesystem, path inside it)``; a plain path is local and made absolute.

    pyarrow's filesystems first; a scheme pyarrow does not know goes to fsspec when it is
    installed (wrapped as a pyarrow filesystem), else FS_UNSUPPORTED_URI.
    """
    from pyarrow import fs

    path = normalize(path)
    if "://" not in path:
        return fs.LocalFileSystem(), os.path.abspath(path)
    try:
        return fs.FileSystem.from_uri(path)
    except ValueError as e:  # pyarrow.ArrowInvalid: a scheme it has no filesystem for
        try:
            import fsspec
        except ImportError:
            fsspec = None
        if fsspec is not None:
            try:
                filesystem, inner = fsspec.core.url_to_fs(path)
            except (ValueError, ImportError):
                pass
            else:
                return fs.PyFileSystem(fs.FSSpecHandler(filesystem)), inner
        raise SparkmlTfError(
            "FS_UNSUPPORTED_URI",
            f"no filesystem for this URI ({e}); use a scheme pyarrow knows (hdfs://, s3://, s3a://, gs://, abfs://, "
            "file://, dbfs:/ on Databricks) or install fsspec with an implementation of the scheme",
            path,
        ) from e


def uri_for(original: str, inner: str) -> str:
    """A path ``inner`` of the filesystem :func:`resolve` gave for ``original``, written in
    ``original``'s scheme so that Spark reads it: ``dbfs:/x.tmp`` rather than ``/dbfs/x.tmp``,
    ``s3a://b/x.tmp`` rather than ``b/x.tmp``, ``file:///x.tmp`` rather than ``/x.tmp`` (which a
    cluster whose default filesystem is HDFS would read from HDFS)."""
    original = os.fspath(original)
    lower = original.lower()
    if lower.startswith("dbfs:") and inner.startswith(DBFS_MOUNT + "/"):
        return "dbfs:" + inner[len(DBFS_MOUNT):]
    if lower.startswith("file:"):
        return "file://" + inner
    if "://" not in original:
        return inner
    scheme, rest = original.split("://", 1)
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}{inner}" if not inner.startswith(authority) else f"{scheme}://{inner}"


def exists(filesystem, path: str) -> bool:
    from pyarrow import fs

    return filesystem.get_file_info(path).type != fs.FileType.NotFound


def delete(filesystem, path: str) -> None:
    """Remove a file or a directory tree; nothing if it is not there."""
    from pyarrow import fs

    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.Directory:
        filesystem.delete_dir(path)
    elif info.type != fs.FileType.NotFound:
        filesystem.delete_file(path)


def read_text(path: str) -> Optional[str]:
    """The file's text, or None when it does not exist. http(s):// URLs are read (only read) with
    the standard library."""
    if normalize(path).lower().startswith(("http://", "https://")):
        return _read_http(path)
    filesystem, local = resolve(path)
    if not exists(filesystem, local):
        return None
    with filesystem.open_input_stream(local) as f:
        return f.read().decode("utf-8")


def _read_http(url: str) -> Optional[str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        if e.code in (404, 410):
            return None
        raise


def write_text(path: str, text: str, atomic: bool = False) -> None:
    """Write ``text``; with ``atomic`` through a temporary sibling renamed over the target, so a
    reader never sees half a file."""
    filesystem, final = resolve(path)
    parent = final.rsplit("/", 1)[0] if "/" in final else "."
    filesystem.create_dir(parent, recursive=True)
    target = f"{final}.tmp-{uuid.uuid4().hex[:8]}" if atomic else final
    try:
        with filesystem.open_output_stream(target) as f:
            f.write(text.encode("utf-8"))
        if atomic:
            delete(filesystem, final)  # some object stores cannot move over a file
            filesystem.move(target, final)
    except BaseException:
        if atomic:
            delete(filesystem, target)
        raise


def read_json(path: str) -> Any:
    text = read_text(path)
    return None if text is None else json.loads(text)


def write_json(path: str, data: Any, atomic: bool = True) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True), atomic=atomic)
