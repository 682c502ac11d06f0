"""Read a config or macros: a JSON file, an inline JSON string, or an already-parsed dict.

A file is a local path (relative to the working directory: a file shipped with spark-submit
``--files`` is read by its basename) or a URL: hdfs://, s3a:// or s3://, gs://, abfs://,
dbfs:/ (the FUSE mount /dbfs on Databricks), file://, http(s)://. Everything is read through
:mod:`sparkml_tf.io.filesystems`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Tuple

from sparkml_tf.errors import ConfigError, SparkmlTfError
from sparkml_tf.io.filesystems import read_text


def load_json(source: Any, what: str = "config") -> Tuple[Any, str]:
    """Return ``(parsed, origin)``; origin names the file, or ``<inline>``.

    A string that starts with ``{`` or ``[`` is parsed as inline JSON, anything else is a path.
    """
    if source is None:
        return {}, "<none>"
    if isinstance(source, (dict, list)):
        return source, "<object>"
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise ConfigError("CONFIG_BAD_SOURCE", f"expected a path or a JSON string for the {what}, got {type(source).__name__}")
    text, origin = source, "<inline>"
    if not source.lstrip().startswith(("{", "[")):
        origin = source
        try:
            text = read_text(source)
        except (OSError, ValueError, SparkmlTfError) as e:  # ArrowInvalid is a ValueError
            raise ConfigError(
                "CONFIG_FILE_NOT_FOUND",
                f"cannot read the {what} file ({_reason(e)}); check the path or URL, or pass inline JSON starting with '{{'",
                origin,
            ) from e
        if text is None:
            raise ConfigError(
                "CONFIG_FILE_NOT_FOUND",
                f"cannot read the {what} file (No such file or directory); check the path or URL, or pass inline JSON starting with '{{'",
                origin,
            )
    try:
        return json.loads(text), origin
    except json.JSONDecodeError as e:
        raise ConfigError(
            "CONFIG_JSON_INVALID",
            f"malformed JSON in the {what} at line {e.lineno}, column {e.colno}: {e.msg}; "
            "fix the syntax (a trailing comma or a missing quote is the usual cause)",
            f"{origin}:{e.lineno}:{e.colno}",
        ) from e


def _reason(error: Exception) -> str:
    if isinstance(error, SparkmlTfError):
        return error.format()
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
