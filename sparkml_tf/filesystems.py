"""Paths that may be local or any URI pyarrow understands (hdfs://, s3://, gs://, file://).

Light: pyarrow is imported on use. Used on the driver and on executors alike.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Optional, Tuple


def resolve(path: str) -> Tuple[Any, str]:
    """``(filesystem, path inside it)``; a plain path is local and made absolute."""
    from pyarrow import fs

    if "://" in path:
        return fs.FileSystem.from_uri(path)
    return fs.LocalFileSystem(), os.path.abspath(path)


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
    """The file's text, or None when it does not exist."""
    filesystem, local = resolve(path)
    if not exists(filesystem, local):
        return None
    with filesystem.open_input_stream(local) as f:
        return f.read().decode("utf-8")


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
