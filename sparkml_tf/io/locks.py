"""One writer per output: a lock file beside it, naming its owner (host, pid, start time).

A second run that wants the same output stops with OUTPUT_LOCKED and the owner's name, instead of
rebuilding under the first one's feet. A lock whose owner is gone (same host, process not alive)
is stale: it is taken over, and the log says so. A lock from another host cannot be checked; it is
taken over when older than ``stale_after_s``, and the message says how to remove it by hand.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from typing import Any, Dict, Iterator, Optional

from sparkml_tf.errors import OutputError
from sparkml_tf.io.filesystems import delete, exists, normalize, read_json, resolve

LOGGER = logging.getLogger(__name__)
SUFFIX = ".lock"
STALE_AFTER_S = 24 * 3600


def lock_path(path: str) -> str:
    return f"{str(path).rstrip('/')}{SUFFIX}"


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner() -> Dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}


def stale_reason(owner: Optional[Dict[str, Any]], stale_after_s: float = STALE_AFTER_S) -> Optional[str]:
    """Why the lock held by ``owner`` can be taken over, or None when it is live."""
    if not owner:
        return "the lock file is unreadable"
    if owner.get("host") == socket.gethostname():
        if owner.get("pid") == os.getpid():
            return None  # ours: a nested lock of the same run
        if not alive(int(owner.get("pid", -1))):
            return f"its process {owner.get('pid')} on this host is gone"
        return None
    age = time.time() - float(owner.get("started", 0))
    return f"it is {age / 3600:.1f} h old" if age > stale_after_s else None


def _create_exclusive(path: str, text: str) -> bool:
    """Create ``path`` holding ``text`` unless it exists; True when created."""
    local = normalize(path)
    if "://" not in local:
        os.makedirs(os.path.dirname(os.path.abspath(local)), exist_ok=True)
        try:
            fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True
    filesystem, inner = resolve(path)  # no exclusive create in pyarrow: check, then write
    if exists(filesystem, inner):
        return False
    with filesystem.open_output_stream(inner) as f:
        f.write(text.encode())
    return True


@contextlib.contextmanager
def output_lock(path: str, stale_after_s: float = STALE_AFTER_S) -> Iterator[None]:
    """Hold the lock of the output ``path`` for the duration of the block."""
    target = lock_path(path)
    me = _owner()
    for _ in range(2):
        if _create_exclusive(target, json.dumps(me)):
            break
        owner = read_json(target)
        if owner and owner.get("host") == me["host"] and owner.get("pid") == me["pid"]:
            yield  # already ours (a job that locks what its pipeline locked)
            return
        reason = stale_reason(owner, stale_after_s)
        if reason is None:
            raise OutputError(
                "OUTPUT_LOCKED",
                f"another run is writing this output: host {owner.get('host')}, pid {owner.get('pid')}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(owner.get('started', 0))))}; wait for it to "
                f"finish, or use another paths.run_dir (if that run is dead, delete {target})",
                path,
            )
        LOGGER.warning("taking over the lock %s: %s", target, reason)
        filesystem, inner = resolve(target)
        delete(filesystem, inner)
    else:
        raise OutputError("OUTPUT_LOCKED", f"could not take the lock {target}; another run may have taken it just now", path)
    try:
        yield
    finally:
        filesystem, inner = resolve(target)
        if (read_json(target) or {}).get("pid") == me["pid"]:
            delete(filesystem, inner)
