"""Pack this Python environment into one archive for Spark executors.

    python -m sparkml_tf.deploy.pack -o sparkml_tf_env.tar.gz      (or spark-submit/pack_env.sh, make pack)
    spark-submit --archives sparkml_tf_env.tar.gz#env --conf spark.pyspark.python=./env/bin/python ...

What goes in, so that a cluster needs Java and Spark and nothing else:

- the interpreter: ``bin/python3.X``, its ``libpython`` when it is a shared build, and the standard
  library (less ``test/``, IDLE, tkinter, ensurepip and the static ``config-*/`` dir). ``bin/python``
  is a small sh wrapper that puts the bundled ``lib/`` on ``LD_LIBRARY_PATH`` and execs it. This is
  why the packer is our own and not venv-pack: a venv-pack archive keeps only a symlink to the base
  interpreter, so every node would need the same Python at the same absolute path;
- ``sparkml_tf`` as a regular package (its files and a dist-info in ``site-packages``), not the editable
  install of a development checkout, whose ``.pth`` points at a source tree executors do not have;
- the runtime closure of sparkml_tf's requirements (and the extras asked for), file by file from each
  distribution's ``RECORD``: what only tests or notebooks use (pytest, ipykernel, ...) stays out;
- not pyspark and py4j: the cluster's Spark puts its own ``pyspark.zip`` and py4j zip first on every
  Python worker's ``PYTHONPATH`` (``$SPARK_HOME/python/lib``), and a pyspark that differs from the
  cluster's JVM side would not work anyway;
- not TensorFlow's C++ headers (``tensorflow/include``, for building custom ops, 430 MB) nor packages'
  ``tests/`` directories. Bytecode (``__pycache__``) stays: without it every executor would compile
  TensorFlow's Python on its first import.

Format: ``.tar.gz`` at gzip level 1 (the default). Spark unpacks ``.tar.gz`` with the system ``tar``,
which keeps the executable bit, but unpacks ``.tar`` and ``.zip`` with Java code that drops it (a
``bin/python`` that cannot run); a plain ``.tar`` is accepted for YARN, whose NodeManager unpacks it
with ``tar``. Level 1 packs several times faster than gzip's default 6 for a slightly bigger file.
The archive is built for this machine's OS and CPU architecture (Linux x86_64 here), like the wheels in it.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import json
import os
import sys
import sysconfig
import tarfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from sparkml_tf.errors import SparkmlTfError

FORMAT_VERSION = 1  # bump when the archive layout changes: cached archives get a new key
PROJECT = "sparkml-tf"
PACKAGE = "sparkml_tf"
#: Provided on executors by the cluster's Spark ($SPARK_HOME/python/lib), never packed.
PROVIDED_BY_SPARK = ("pyspark", "py4j")
#: Directories dropped wherever they are in site-packages (tests), or at these paths.
EXCLUDED_DIR_NAMES = ("tests",)
EXCLUDED_PREFIXES = ("tensorflow/include/",)
STDLIB_EXCLUDED = ("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages", "dist-packages", "lib2to3/tests", "__phello__")
MANIFEST = "sparkml_tf_env.json"
_WRAPPER = """#!/bin/sh
# Written by sparkml_tf.deploy.pack: run the bundled interpreter with the bundled libpython.
here=$(cd "$(dirname "$0")" && pwd)
LD_LIBRARY_PATH="$here/../lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
export LD_LIBRARY_PATH
exec "$here/{binary}" "$@"
"""


class PackError(SparkmlTfError):
    """The environment cannot be packed as asked."""


@dataclass
class PackReport:
    path: str
    key: str
    files: int
    bytes: int
    uncompressed_bytes: int
    seconds: float
    reused: bool = False

    def describe(self) -> str:
        if self.reused:
            return f"{self.path}: {self.bytes / 1e9:.2f} GB, reused (key {self.key})"
        return (
            f"{self.path}: {self.files} files, {self.uncompressed_bytes / 1e9:.2f} GB -> {self.bytes / 1e9:.2f} GB, "
            f"packed in {self.seconds:.1f}s (key {self.key})"
        )


# ---------------------------------------------------------------------------------------------- content


def _canonical(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def site_packages() -> List[str]:
    """This environment's site-packages directories (a venv's own, not the base interpreter's)."""
    import site

    prefix = os.path.realpath(sys.prefix)
    dirs = [d for d in site.getsitepackages() if os.path.realpath(d).startswith(prefix) and os.path.isdir(d)]
    if not dirs:
        raise PackError("PACK_NO_SITE_PACKAGES", f"no site-packages directory under {sys.prefix}; run the packer with the environment's own python")
    return dirs


def _distributions(paths: Sequence[str]) -> Dict[str, Any]:
    import importlib.metadata as metadata

    found: Dict[str, Any] = {}
    for dist in metadata.distributions(path=list(paths)):
        name = dist.metadata["Name"]
        if name:
            found.setdefault(_canonical(name), dist)
    return found


def dependency_closure(extras: Iterable[str] = (), paths: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``{canonical name: Distribution}`` of sparkml-tf and everything it needs at run time, less what Spark provides."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    dists = _distributions(paths or site_packages())
    if PROJECT not in dists:
        raise PackError(
            "PACK_PROJECT_NOT_INSTALLED", f"{PROJECT} is not installed in this environment ({sys.prefix}); run `pip install -e .` (or `make venv`) first"
        )
    seen: Dict[str, Any] = {}
    missing: List[str] = []
    stack: List[Tuple[str, Tuple[str, ...], str]] = [(PROJECT, tuple(extras), "")]
    visited = set()
    while stack:
        name, wanted, parent = stack.pop()
        if (name, wanted) in visited:
            continue
        visited.add((name, wanted))
        if name in PROVIDED_BY_SPARK:
            continue
        dist = dists.get(name)
        if dist is None:
            missing.append(f"{name} (needed by {parent})")
            continue
        seen[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None:
                envs = [dict(default_environment(), extra=e) for e in ("", *wanted)]
                if not any(req.marker.evaluate(env) for env in envs):
                    continue
            stack.append((_canonical(req.name), tuple(sorted(req.extras)), name))
    if missing:
        raise PackError(
            "PACK_MISSING_DEPENDENCY",
            f"this environment lacks {', '.join(sorted(set(missing)))}; install them (pip install -e '.[EXTRAS]') before packing",
        )
    return seen


def _excluded(relpath: str) -> bool:
    parts = relpath.split("/")
    if any(p in EXCLUDED_DIR_NAMES for p in parts[:-1]):
        return True
    return relpath.startswith(EXCLUDED_PREFIXES)


def _dist_files(dist, site_dirs: Sequence[str]) -> Iterator[Tuple[str, str]]:
    """(absolute path, path relative to site-packages) of one installed distribution, pyc included."""
    base = os.path.realpath(str(dist.locate_file("")))
    if base not in {os.path.realpath(d) for d in site_dirs}:
        return
    listed = set()
    for entry in dist.files or []:
        rel = os.path.normpath(str(entry)).replace(os.sep, "/")
        if rel.startswith("../") or _excluded(rel):
            continue  # scripts and data outside site-packages are not needed by executors
        listed.add(rel)
    # RECORD lists the .py files; pick up the bytecode pip compiled next to them too.
    for rel in list(listed):
        if rel.endswith(".py"):
            folder, name = os.path.split(rel)
            cache = os.path.join(base, folder, "__pycache__")
            if os.path.isdir(cache):
                stem = name[:-3] + "."
                listed.update(f"{folder}/__pycache__/{n}".lstrip("/") for n in os.listdir(cache) if n.startswith(stem) and n.endswith(".pyc"))
    for rel in sorted(listed):
        path = os.path.join(base, rel)
        if os.path.isfile(path):
            yield path, rel


def _project_files() -> Iterator[Tuple[str, str]]:
    """The sparkml_tf package as it is in this checkout (an editable install points here)."""
    import sparkml_tf

    root = os.path.dirname(os.path.abspath(sparkml_tf.__file__))
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(folder, name)
            yield path, PACKAGE + "/" + os.path.relpath(path, root).replace(os.sep, "/")


def _project_dist_info(dist, files: Sequence[str]) -> Dict[str, bytes]:
    """A dist-info for the non-editable copy: the installed metadata, less direct_url.json (an editable source path)."""
    version = dist.version
    folder = f"{PACKAGE}-{version}.dist-info"
    out: Dict[str, bytes] = {}
    for name in ("METADATA", "WHEEL", "top_level.txt", "entry_points.txt"):
        text = dist.read_text(name)
        if text is not None:
            out[f"{folder}/{name}"] = text.encode()
    out[f"{folder}/INSTALLER"] = b"sparkml_tf.deploy.pack\n"
    record = [f"{f},," for f in list(files) + sorted(out)] + [f"{folder}/RECORD,,"]
    out[f"{folder}/RECORD"] = ("\n".join(record) + "\n").encode()
    return out


def _interpreter() -> Dict[str, str]:
    """Where this environment's base interpreter, its libpython and its standard library are."""
    binary = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    paths = sysconfig.get_paths(
        vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix, "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix}
    )
    stdlib = paths["stdlib"]
    if not os.path.exists(os.path.join(stdlib, "os.py")):
        raise PackError("PACK_NO_STDLIB", f"the standard library of {binary} was not found at {stdlib}")
    libpython = ""
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
        for folder in (sysconfig.get_config_var("LIBDIR"), os.path.join(sys.base_prefix, "lib")):
            if folder and name and os.path.exists(os.path.join(folder, name)):
                libpython = os.path.join(folder, name)
                break
        if not libpython:
            raise PackError("PACK_NO_LIBPYTHON", f"{binary} is a shared-library build, but its libpython ({name}) was not found")
    return {"binary": binary, "version": version, "stdlib": stdlib, "libpython": libpython}


def _stdlib_files(stdlib: str, version: str) -> Iterator[Tuple[str, str]]:
    for folder, dirs, files in os.walk(stdlib):
        rel_folder = os.path.relpath(folder, stdlib).replace(os.sep, "/")
        rel_folder = "" if rel_folder == "." else rel_folder + "/"
        dirs[:] = sorted(d for d in dirs if not (rel_folder + d in STDLIB_EXCLUDED or (not rel_folder and d.startswith("config-"))))
        for name in sorted(files):
            if name.startswith("_tkinter"):
                continue
            yield os.path.join(folder, name), f"lib/python{version}/{rel_folder}{name}"


def plan(extras: Iterable[str] = ()) -> Dict[str, Any]:
    """Every file of the archive as ``arcname -> absolute path`` (or ``bytes`` for generated ones)."""
    interp = _interpreter()
    version = interp["version"]
    site_dirs = site_packages()
    closure = dependency_closure(extras, site_dirs)
    members: Dict[str, Any] = {}
    binary = f"python{version}"
    members[f"bin/{binary}"] = interp["binary"]
    members["bin/python"] = _WRAPPER.format(binary=binary).encode()
    members["bin/python3"] = members["bin/python"]
    if interp["libpython"]:
        members[f"lib/{os.path.basename(interp['libpython'])}"] = interp["libpython"]
    for path, arc in _stdlib_files(interp["stdlib"], version):
        members[arc] = path
    site = f"lib/python{version}/site-packages/"
    for name, dist in sorted(closure.items()):
        if name == PROJECT:
            continue
        for path, rel in _dist_files(dist, site_dirs):
            members[site + rel] = path
    project = list(_project_files())
    for path, rel in project:
        members[site + rel] = path
    for rel, data in _project_dist_info(closure[PROJECT], [rel for _, rel in project]).items():
        members[site + rel] = data
    members[MANIFEST] = json.dumps(
        {
            "format": FORMAT_VERSION,
            "python": sys.version.split()[0],
            "platform": sysconfig.get_platform(),
            "distributions": {name: dist.version for name, dist in sorted(closure.items())},
            "extras": sorted(extras),
            "excluded": {"provided_by_spark": list(PROVIDED_BY_SPARK), "dirs": list(EXCLUDED_DIR_NAMES), "prefixes": list(EXCLUDED_PREFIXES)},
        },
        indent=1,
        sort_keys=True,
    ).encode()
    return members


def environment_key(extras: Iterable[str] = (), compresslevel: int = 1) -> str:
    """A content key: interpreter, every packed distribution and version, sparkml_tf's source, options."""
    digest = hashlib.sha256()
    interp = _interpreter()
    closure = dependency_closure(extras)
    digest.update(json.dumps([FORMAT_VERSION, sys.version, interp["binary"], sorted(extras), compresslevel, sysconfig.get_platform()]).encode())
    for name, dist in sorted(closure.items()):
        digest.update(f"{name}=={dist.version}\n".encode())
    for path, rel in _project_files():
        digest.update(rel.encode())
        with open(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- writing


def _tarinfo(name: str, size: int, mode: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _check_output(path: str) -> None:
    if not path.endswith((".tar.gz", ".tgz", ".tar")):
        raise PackError(
            "PACK_BAD_OUTPUT",
            "the archive name must end in .tar.gz or .tgz (or .tar, for YARN only: Spark's own unpacking drops the executable bit of a plain .tar's files)",
            path,
        )


def _open(path: str, compresslevel: int) -> tarfile.TarFile:
    if path.endswith((".tar.gz", ".tgz")):
        return tarfile.open(path, "w:gz", compresslevel=compresslevel, format=tarfile.PAX_FORMAT)
    return tarfile.open(path, "w", format=tarfile.PAX_FORMAT)


def pack(output: str, extras: Iterable[str] = (), compresslevel: int = 1, key: Optional[str] = None) -> PackReport:
    """Write the archive to ``output`` (atomically: a partial archive never has the final name)."""
    _check_output(output)
    extras = tuple(extras)
    start = time.perf_counter()
    members = plan(extras)
    key = key or environment_key(extras, compresslevel)
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(output)
    tmp = os.path.join(folder, f".{base}.tmp-{os.getpid()}" + (".tar.gz" if base.endswith((".tar.gz", ".tgz")) else ".tar"))
    total = 0
    try:
        with _open(tmp, compresslevel) as tar:
            now = time.time()
            for arc in sorted(members):
                source = members[arc]
                if isinstance(source, bytes):
                    mode = 0o755 if arc.startswith("bin/") else 0o644
                    tar.addfile(_tarinfo(arc, len(source), mode, now), io.BytesIO(source))
                    total += len(source)
                    continue
                stat = os.stat(source)  # follows symlinks: the archive holds plain files only
                with open(source, "rb") as f:
                    tar.addfile(_tarinfo(arc, stat.st_size, stat.st_mode & 0o777, stat.st_mtime), f)
                total += stat.st_size
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return PackReport(output, key, len(members), os.path.getsize(output), total, time.perf_counter() - start)


def cached_pack(cache_dir: str, extras: Iterable[str] = (), compresslevel: int = 1, keep_hours: float = 1.0) -> PackReport:
    """The archive for this environment's current content, packed once per content key into ``cache_dir``.

    Concurrent callers wait on a lock instead of packing twice. Archives of other keys older than
    ``keep_hours`` are removed: a younger one may still be in use by a run that started before a
    change (Spark serves the archive from its path to executors that start later).
    """
    extras = tuple(extras)
    os.makedirs(cache_dir, exist_ok=True)
    key = environment_key(extras, compresslevel)
    path = os.path.join(cache_dir, f"sparkml_tf_env-{key}.tar.gz")
    with open(os.path.join(cache_dir, ".pack.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path):
            report = PackReport(path, key, 0, os.path.getsize(path), 0, 0.0, reused=True)
        else:
            report = pack(path, extras, compresslevel, key=key)
        for name in os.listdir(cache_dir):
            old = os.path.join(cache_dir, name)
            if name.startswith("sparkml_tf_env-") and old != path and time.time() - os.path.getmtime(old) > keep_hours * 3600:
                os.remove(old)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sparkml_tf.deploy.pack",
        description="Pack this Python environment (interpreter included, pyspark left to the cluster) for spark-submit --archives.",
    )
    parser.add_argument("-o", "--output", default="sparkml_tf_env.tar.gz", help="archive path, .tar.gz (default sparkml_tf_env.tar.gz) or .tar (YARN only)")
    parser.add_argument(
        "--extra",
        dest="extras",
        action="append",
        default=[],
        metavar="NAME",
        help="also pack this extra of sparkml-tf's requirements (e.g. serving); repeatable",
    )
    parser.add_argument("--level", type=int, default=1, help="gzip level, 1 (fast, default) to 9")
    parser.add_argument("--cache-dir", default=None, help="reuse or build the archive in this directory, keyed by content; prints its path")
    parser.add_argument("--list", action="store_true", help="print what would be packed (distributions and versions) and exit")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of the archive path")
    args = parser.parse_args(argv)
    try:
        if args.list:
            for name, dist in sorted(dependency_closure(args.extras).items()):
                print(f"{name}=={dist.version}")
            return 0
        report = cached_pack(args.cache_dir, args.extras, args.level) if args.cache_dir else pack(args.output, args.extras, args.level)
    except SparkmlTfError as e:
        print(e.format(), file=sys.stderr)
        return 1
    print(report.describe(), file=sys.stderr)
    print(json.dumps(asdict(report)) if args.json else report.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
