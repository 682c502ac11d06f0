"""Date partitions of scheduled outputs (the CTR scoring job, the retrieval recommend job): one owner
for how a day's partition is named, staged, published and recognised.

A day's output is written under ``<root>/_staging/date=<day>/`` (which Spark and pyarrow never list:
a leading underscore and no '=') with :func:`~sparkml_tf.io.outputs.atomic_output`, then renamed into
``<root>/date=<day>/`` whole, so readers of the table never see a half-written partition, whatever
happens to the run. The partition's completion marker is what says the day is done.
"""

from __future__ import annotations

import datetime
from typing import Any

from sparkml_tf.errors import ConfigError, OutputError
from sparkml_tf.io.outputs import MARKER, is_complete

STAGING = "_staging"


def parse_day(value: str) -> str:
    """``value`` if it is a YYYY-MM-DD date, else ValueError."""
    try:
        parsed = datetime.date.fromisoformat(str(value))
    except ValueError as e:
        raise ValueError(f"dates must be YYYY-MM-DD strings, got {value!r}") from e
    if parsed.isoformat() != str(value):
        raise ValueError(f"dates must be YYYY-MM-DD strings, got {value!r}")
    return str(value)


def check_date(date: Any, where: str = "date") -> str:
    """``date`` as ``YYYY-MM-DD`` (a real calendar day), or CONFIG_BAD_VALUE saying how to pass it."""
    if date is None or date == "":
        raise ConfigError("CONFIG_BAD_VALUE", "no date to run for; pass the day, e.g. --set run.date=2024-05-01", where)
    text = str(date)
    if "$" in text:
        raise ConfigError("CONFIG_BAD_VALUE", f"date is the unfilled macro {text!r}; pass the day, e.g. --set run.date=2024-05-01", where)
    try:
        return parse_day(text)
    except ValueError as e:
        raise ConfigError("CONFIG_BAD_VALUE", f"date must be a day as YYYY-MM-DD, got {text!r}; e.g. --set run.date=2024-05-01", where) from e


def partition_path(root: str, date: str) -> str:
    return f"{root.rstrip('/')}/date={date}"


def staging_path(root: str, date: str) -> str:
    return f"{root.rstrip('/')}/{STAGING}/date={date}"


def clear_staging(root: str, date: str) -> None:
    """Remove what an earlier run of ``date`` left in ``_staging`` (a killed run's temp dirs)."""
    from pyarrow import fs

    from sparkml_tf.io.filesystems import delete, resolve

    filesystem, local = resolve(f"{root.rstrip('/')}/{STAGING}")
    name = f"date={date}"
    for info in filesystem.get_file_info(fs.FileSelector(local, allow_not_found=True)):
        if info.base_name == name or info.base_name.startswith(f"{name}.tmp-"):
            delete(filesystem, info.path)


def publish(staged: str, final: str) -> None:
    """Move a complete staged partition to ``final``, replacing what was there."""
    from sparkml_tf.io.filesystems import delete, resolve

    filesystem, staged_local = resolve(staged)
    _, final_local = resolve(final)
    delete(filesystem, final_local)  # some object stores cannot move over a directory
    filesystem.move(staged_local, final_local)


def refuse_foreign(path: str, force: bool) -> None:
    """OUTPUT_EXISTS when ``path`` holds a partition not written by this job (no marker)."""
    from sparkml_tf.io.filesystems import exists, resolve

    filesystem, local = resolve(path)
    if not force and exists(filesystem, local) and not is_complete(path):
        raise OutputError(
            "OUTPUT_EXISTS",
            f"the partition exists but was not written to completion by sparkml_tf (no {MARKER} marker); move it away, or pass --force to replace it",
            path,
        )
