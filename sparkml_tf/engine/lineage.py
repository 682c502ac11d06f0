"""Lineage: is a job's output up to date with its settings and inputs?

A job that declares ``outputs()`` (and ``inputs()``) gets a fingerprint before it runs:

    sha256 of {the job's settings, the fingerprint of each input, the package version}

An input written by another job carries the lineage record that job wrote (its fingerprint), so a
rebuilt dataset changes the fingerprint of everything downstream; a raw input (a ratings file, a
table folder) is fingerprinted by its listing (names, sizes, modification times), like make.
After the job succeeds, the record is written into each output (:mod:`sparkml_tf.io.outputs`).
On the next run, a job whose outputs are complete and carry the same fingerprint is skipped;
otherwise it runs, and the log says why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from sparkml_tf.version import __version__

RECORD_VERSION = 1


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def job_settings(job: Any) -> Dict[str, Any]:
    """The settings that define a job's output: ``job.fingerprint_settings()`` when it has one, else
    the ``params()`` it logs, else its public attributes (the constructor's values)."""
    for method in ("fingerprint_settings", "params"):
        if callable(getattr(job, method, None)):
            return getattr(job, method)()
    return {k: v for k, v in sorted(vars(job).items()) if not k.startswith("_")}


def listing_fingerprint(path: str) -> str:
    """A raw input's fingerprint: its file listing (relative names, sizes, modification times);
    ``missing`` when it does not exist. Cheap: no content is read."""
    from pyarrow import fs

    from sparkml_tf.io.filesystems import resolve

    filesystem, local = resolve(path)
    info = filesystem.get_file_info(local)
    if info.type == fs.FileType.NotFound:
        return "missing"
    if info.type == fs.FileType.File:
        entries = [("", info.size, info.mtime_ns)]
    else:
        infos = filesystem.get_file_info(fs.FileSelector(local, recursive=True, allow_not_found=True))
        entries = sorted((i.path[len(local) :], i.size, i.mtime_ns) for i in infos if i.type == fs.FileType.File)
    return hashlib.sha256(_canonical(entries).encode()).hexdigest()[:16]


def input_fingerprint(path: str) -> str:
    """The recorded fingerprint of an input another job wrote, else its listing fingerprint."""
    from sparkml_tf.io.outputs import read_lineage

    for is_file in (False, True):
        record = read_lineage(path, is_file)
        if record and "fingerprint" in record:
            return record["fingerprint"]
    return listing_fingerprint(path)


@dataclasses.dataclass
class Decision:
    run: bool
    reason: str
    fingerprint: str
    record: Dict[str, Any]
    changed_inputs: bool = False  # settings or inputs differ from what made the existing output


def output_is_file(path: str) -> bool:
    return str(path).endswith((".json", ".txt", ".csv"))


def recorded(outputs: Sequence[str]) -> List[Optional[Dict[str, Any]]]:
    from sparkml_tf.io.outputs import read_lineage

    return [read_lineage(p, output_is_file(p)) for p in outputs]


def complete(path: str) -> bool:
    from sparkml_tf.io.filesystems import exists, resolve
    from sparkml_tf.io.outputs import is_complete

    if output_is_file(path):
        filesystem, local = resolve(path)
        return exists(filesystem, local)
    return is_complete(path)


def decide(job: Any, force: bool = False) -> Decision:
    """Whether ``job`` must run, and why."""
    settings = job_settings(job)
    inputs = {str(p): input_fingerprint(p) for p in job.inputs()}
    record = {"record_version": RECORD_VERSION, "settings": json.loads(_canonical(settings)), "inputs": inputs, "package_version": __version__}
    fingerprint = hashlib.sha256(_canonical(record).encode()).hexdigest()[:16]
    record["fingerprint"] = fingerprint
    outputs = list(job.outputs())
    if force:
        return Decision(True, "forced (--force)", fingerprint, record, changed_inputs=True)
    missing = [p for p in outputs if not complete(p)]
    if missing:
        return Decision(True, f"no complete output at {missing[0]}", fingerprint, record)
    old = recorded(outputs)
    if any(r is None for r in old):
        return Decision(True, "the output has no lineage record (written by an older version)", fingerprint, record, changed_inputs=True)
    previous = old[0]
    if previous.get("fingerprint") == fingerprint:
        return Decision(False, "up to date", fingerprint, record)
    return Decision(True, explain(previous, record), fingerprint, record, changed_inputs=True)


def explain(previous: Dict[str, Any], current: Dict[str, Any]) -> str:
    """What differs between two lineage records, in words."""
    reasons: List[str] = []
    old_inputs, new_inputs = previous.get("inputs", {}), current["inputs"]
    for path in sorted(set(old_inputs) | set(new_inputs)):
        if old_inputs.get(path) != new_inputs.get(path):
            reasons.append(f"input {path} changed")
    old_settings, new_settings = previous.get("settings", {}), current["settings"]
    changed = sorted(k for k in set(old_settings) | set(new_settings) if old_settings.get(k) != new_settings.get(k))
    if changed:
        reasons.append(f"setting(s) {', '.join(changed)} changed")
    if previous.get("package_version") != current["package_version"]:
        reasons.append(f"sparkml_tf {previous.get('package_version')} -> {current['package_version']}")
    return "; ".join(reasons) or "the lineage record differs"


def commit(job: Any, decision: Decision) -> None:
    """Record ``decision``'s fingerprint in every output of ``job`` (after it succeeded)."""
    from sparkml_tf.io.outputs import write_lineage

    for path in job.outputs():
        if complete(path):
            write_lineage(path, decision.record, output_is_file(path))


def tracks_lineage(job: Any) -> bool:
    return callable(getattr(job, "outputs", None)) and callable(getattr(job, "inputs", None)) and bool(list(job.outputs()))


__all__: Tuple[str, ...] = ("Decision", "decide", "commit", "tracks_lineage", "input_fingerprint", "listing_fingerprint", "job_settings")
