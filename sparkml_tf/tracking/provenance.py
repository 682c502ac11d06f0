"""What a run was made from: the code (package version, git commit) and the data (input path,
size, fingerprint, row counts), as tags of the tracked run, so that a rerun of a logged config
(``sparkml-tf from-mlflow``) can say when the installed code is not the code that ran.

Tags, not parameters: a run resumed by another stage (``MLFLOW_RUN_ID``) may see other values,
and parameters cannot change once logged.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from typing import Any, Dict, List, Optional

from sparkml_tf.version import __version__

VERSION_TAG = "sparkml_tf.version"
COMMIT_TAG = "sparkml_tf.git_commit"
DIRTY_TAG = "sparkml_tf.git_dirty"
DIFF_TAG = "sparkml_tf.git_diff_sha256"  # of ``git diff HEAD``: uncommitted changes, told apart
MLFLOW_COMMIT_TAG = "mlflow.source.git.commit"  # what the MLflow UI shows as the run's git commit


def code_version() -> Dict[str, str]:
    """``{sparkml_tf.version: ...}``, plus the git commit (and whether the checkout had uncommitted
    changes, with a hash of them) when this package is imported from a git checkout of its own repository."""
    tags = {VERSION_TAG: __version__}
    commit, diff = _git_state()
    if commit:
        tags.update({COMMIT_TAG: commit, MLFLOW_COMMIT_TAG: commit, DIRTY_TAG: "true" if diff else "false"})
        if diff:
            tags[DIFF_TAG] = diff
    return tags


@functools.lru_cache(maxsize=1)
def _git_state():
    """(commit, sha256 of its uncommitted changes or "") of the checkout holding this package;
    (None, "") when it is not one (an installed wheel, a packed environment) or git is missing."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../sparkml_tf

    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", package, *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    # The package's own repository only (not, say, a virtualenv that happens to sit in another one).
    if not top or os.path.realpath(os.path.join(top, "sparkml_tf")) != os.path.realpath(package):
        return None, ""
    commit = git("rev-parse", "HEAD")
    diff = git("diff", "HEAD", "--no-ext-diff", "--no-color")
    return commit, hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else ""


def code_differences(logged: Dict[str, str], current: Optional[Dict[str, str]] = None) -> List[str]:
    """How the code a run logged (its tags) differs from ``current`` (this installation's), in words."""
    current = code_version() if current is None else current
    found: List[str] = []
    if logged.get(VERSION_TAG) and logged[VERSION_TAG] != current.get(VERSION_TAG):
        found.append(f"sparkml_tf {logged[VERSION_TAG]} ran it, {current.get(VERSION_TAG)} is installed")
    was, now = logged.get(COMMIT_TAG), current.get(COMMIT_TAG)
    if was and now and was != now:
        found.append(f"it ran at git commit {was[:12]}, this checkout is at {now[:12]}")
    elif was and not now:
        found.append(f"it ran at git commit {was[:12]}; the installed sparkml_tf is not a git checkout")
    elif was and logged.get(DIRTY_TAG) == "true" and logged.get(DIFF_TAG) != current.get(DIFF_TAG):
        found.append(f"it ran with uncommitted changes to {was[:12]} that this checkout does not have")
    return found


def dataset_identity(job_name: str, job: Any, output_dir: str, inputs: Dict[str, str], fingerprint: str = "") -> Dict[str, str]:
    """Tags naming the data a dataset job read (path or ``generated``, bytes, listing fingerprint)
    and what it built (fingerprint, row counts from its ``stats.json``); {} when ``output_dir``
    holds no ``stats.json``."""
    from sparkml_tf.io.filesystems import read_json
    from sparkml_tf.io.layout import STATS_FILE

    stats = read_json(f"{str(output_dir).rstrip('/')}/{STATS_FILE}")
    if not isinstance(stats, dict):
        return {}
    prefix = f"sparkml_tf.data.{job_name}"
    paths = list(inputs)
    tags = {f"{prefix}.path": ", ".join(paths) if paths else str(getattr(job, "format", "") or "none"), f"{prefix}.output": str(output_dir)}
    if paths:
        sizes = [input_size(p) for p in paths]
        if all(s is not None for s in sizes):
            tags[f"{prefix}.size_bytes"] = str(sum(sizes))
        tags[f"{prefix}.input_fingerprint"] = ", ".join(inputs[p] for p in paths)  # names, sizes, modification times
    if fingerprint:
        tags[f"{prefix}.fingerprint"] = fingerprint
    counts = stats.get("counts") if isinstance(stats.get("counts"), dict) else stats
    rows = [(k[len("rows.") :], v) for k, v in counts.items() if str(k).startswith("rows.") and isinstance(v, (int, float))]
    if rows:
        tags[f"{prefix}.rows"] = ", ".join(f"{k} {int(v)}" for k, v in rows)
    return tags


def input_size(path: str) -> Optional[int]:
    """Bytes in a raw input (a file, or every file under a folder); None when it cannot be listed."""
    try:
        from pyarrow import fs

        from sparkml_tf.io.filesystems import resolve

        filesystem, local = resolve(path)
        info = filesystem.get_file_info(local)
        if info.type == fs.FileType.File:
            return int(info.size)
        if info.type == fs.FileType.Directory:
            listing = filesystem.get_file_info(fs.FileSelector(local, recursive=True, allow_not_found=True))
            return int(sum(i.size or 0 for i in listing if i.type == fs.FileType.File))
    except Exception:  # a store this process cannot list: the tag is left out
        return None
    return None
