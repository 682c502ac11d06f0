"""One error type for the whole package: a stable code, where it happened, and how to fix it.

Messages follow PySpark's guideline: what failed, why, and how to fix it, shaped as
``[CODE] path: message``. ``path`` is a key path into the config (``jobs[2].trainer``) when
the error comes from one, else a file or an empty string.
"""

from __future__ import annotations

from typing import Iterable, List, Optional


class SparkmlTfError(Exception):
    """Base error: ``code`` is a stable UPPER_SNAKE identifier users can grep and catch on."""

    def __init__(self, code: str, message: str, path: Optional[str] = None):
        self.code = code
        self.path = path or ""
        self.message = message
        super().__init__(self.format())

    def format(self) -> str:
        where = f" {self.path}:" if self.path else ""
        return f"[{self.code}]{where} {self.message}"


class ConfigError(SparkmlTfError):
    """A problem with a config or macros file, found before anything runs."""


class Checks:
    """Collect every refused setting of one constructor, then raise them together::

        checks = Checks()
        with checks.at("format"):
            check_format(format)          # any SparkmlTfError (or ValueError) in the block is kept
        checks.require(batch_size >= 1, "batch_size", "batch_size must be at least 1")
        checks.done()                     # ConfigErrors of all of them, or nothing
    """

    def __init__(self):
        self.errors: List[ConfigError] = []

    def require(self, ok: bool, key: str, message: str) -> bool:
        if not ok:
            self.errors.append(bad_value(key, message))
        return bool(ok)

    def at(self, key: str) -> "_Collect":
        return _Collect(self, key)

    def done(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


class _Collect:
    def __init__(self, checks: Checks, key: str):
        self.checks, self.key = checks, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None:
            return False
        if isinstance(error, ConfigErrors):
            self.checks.errors.extend(error.errors)
        elif isinstance(error, SparkmlTfError):
            self.checks.errors.append(ConfigError(error.code, error.message, error.path or self.key))
        elif isinstance(error, (ValueError, TypeError)):
            self.checks.errors.append(bad_value(self.key, str(error)))
        else:
            return False
        return True


def bad_value(key: str, message: str) -> ConfigError:
    """The one error for a setting a constructor refuses: CONFIG_BAD_VALUE at the parameter ``key``
    (the config builder prefixes the job's path, or names the macro the value came from)."""
    return ConfigError("CONFIG_BAD_VALUE", message, key)


class ConfigErrors(ConfigError):
    """Every problem found in one pass over a config, reported together."""

    def __init__(self, errors: Iterable[ConfigError]):
        self.errors: List[ConfigError] = list(errors)
        if not self.errors:
            raise ValueError("ConfigErrors needs at least one error")
        first = self.errors[0]
        Exception.__init__(self, self.format())
        self.code, self.path, self.message = first.code, first.path, first.message

    def format(self) -> str:
        lines = [f"{len(self.errors)} problem(s) in the config:"]
        lines += [f"  {e.format()}" for e in self.errors]
        return "\n".join(lines)


class DataError(SparkmlTfError):
    """Input data does not match what a job expects."""


class DistributedError(SparkmlTfError):
    """A barrier worker or the launcher failed."""


class OutputError(SparkmlTfError):
    """An output path is in a state a job refuses to overwrite."""


class TrackingError(SparkmlTfError):
    """MLflow tracking failed (fatal only when tracking is strict)."""
