"""A Spark standalone cluster on this machine (a master and N one-core workers) from a Spark
installation's ``bin/spark-class``: the pyspark wheel's by default. For tests that need real
executor processes (an environment shipped with ``--archives``, a barrier stage on two workers, an
executor killed mid-stage), which ``local[N]`` cannot give.

    with StandaloneCluster(tmp_dir, workers=2) as cluster:
        cluster.submit(["--archives", "env.tar.gz#env", "jobs/run.py", ...]).wait()

Every process is started in its own process group and the whole group is killed on ``stop()``
(executors are children of their worker), whatever state the cluster is in.
"""

from __future__ import annotations

import glob
import os
import re
import signal
import socket
import subprocess
import time
from typing import Dict, List, Optional, Sequence

#: Variables that would make the cluster's processes use this interpreter or its paths.
_UNSET = ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SPARK_CONF_DIR")


def spark_home() -> str:
    """``$SPARK_HOME``, else the pyspark package's folder (the wheel ships bin/, jars/ and python/lib/)."""
    if os.environ.get("SPARK_HOME"):
        return os.environ["SPARK_HOME"]
    import importlib.util

    spec = importlib.util.find_spec("pyspark")  # finds the package without importing it
    if spec is None or not spec.origin:
        raise RuntimeError("no Spark found: set SPARK_HOME or pip install pyspark")
    return os.path.dirname(spec.origin)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """This process's environment less what would leak its Python into Spark's processes."""
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    env.update({"SPARK_HOME": spark_home(), "SPARK_LOCAL_IP": "127.0.0.1"})
    env.update(extra or {})
    return env


class StandaloneCluster:
    def __init__(self, workdir: str, workers: int = 2, cores: int = 1, memory: str = "2g", home: Optional[str] = None):
        self.workdir = os.path.abspath(workdir)
        self.num_workers, self.cores, self.memory = int(workers), int(cores), memory
        self.home = home or spark_home()
        self.port = free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.worker_dirs = [os.path.join(self.workdir, f"worker{i + 1}") for i in range(self.num_workers)]
        self.processes: List[subprocess.Popen] = []
        self.logs: List[str] = []
        self.submitted: List[subprocess.Popen] = []
        self.driver_dir = os.path.join(self.workdir, "driver-local")  # client-mode drivers' spark.local.dir (their copy of --archives)
        self.executor_tmp = os.path.join(self.workdir, "executor-tmp")  # executors' java.io.tmpdir: Spark copies --archives there (~1 GB each)

    # ---------------------------------------------------------------------------------- lifecycle

    def _launch(self, name: str, args: Sequence[str]) -> None:
        log = os.path.join(self.workdir, f"{name}.log")
        with open(log, "wb") as out:
            process = subprocess.Popen([os.path.join(self.home, "bin", "spark-class"), *args], stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=clean_env(), cwd=self.workdir, start_new_session=True)
        self.processes.append(process)
        self.logs.append(log)

    def start(self, timeout: float = 120.0) -> "StandaloneCluster":
        os.makedirs(self.workdir, exist_ok=True)
        self._launch("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(self.port), "--webui-port", "0"])
        for i, folder in enumerate(self.worker_dirs):
            os.makedirs(folder, exist_ok=True)
            self._launch(f"worker{i + 1}", ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", str(self.cores), "--memory", self.memory,
                                            "--webui-port", "0", "--work-dir", folder, self.url])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [log for process, log in zip(self.processes, self.logs) if process.poll() is not None]
            if dead:
                self.stop()
                raise RuntimeError(f"a cluster process exited at start; see {dead[0]}:\n{_tail(dead[0])}")
            registered = sum("Successfully registered with master" in _read(log) for log in self.logs[1:])
            if registered == self.num_workers:
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the workers did not register with {self.url} within {timeout:.0f}s; see {self.logs[0]}")

    def stop(self) -> None:
        """SIGTERM every process group (a worker stops its executors), then SIGKILL what is left."""
        for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            for process in self.processes:
                try:
                    os.killpg(process.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(p.poll() is None for p in self.processes):
                time.sleep(0.2)
        for process in self.processes:
            try:
                process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass

    def remove_environments(self) -> None:
        """Delete what executors unpacked from ``--archives`` (GBs each), keeping their logs."""
        import shutil

        for folder in self.worker_dirs:
            for unpacked in glob.glob(os.path.join(folder, "app-*", "*", "*")):
                if os.path.isdir(unpacked) and not os.path.islink(unpacked):
                    shutil.rmtree(unpacked, ignore_errors=True)

    def reap(self) -> None:
        """After a test: kill what it submitted and left running, then free the disk its applications
        took (the executors' and the drivers' unpacked archives), keeping the logs."""
        import shutil

        for process in self.submitted:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                process.wait(timeout=30)
        self.submitted.clear()
        self.remove_environments()
        shutil.rmtree(self.driver_dir, ignore_errors=True)
        shutil.rmtree(self.executor_tmp, ignore_errors=True)

    def __enter__(self) -> "StandaloneCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.reap()
        self.stop()

    # ---------------------------------------------------------------------------------- use

    def submit(self, args: Sequence[str], log: str, env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None) -> subprocess.Popen:
        """``spark-submit --master <this cluster> ARGS`` in the background, its output into ``log``."""
        os.makedirs(self.driver_dir, exist_ok=True)
        os.makedirs(self.executor_tmp, exist_ok=True)
        argv = [os.path.join(self.home, "bin", "spark-submit"), "--master", self.url, "--conf", f"spark.local.dir={self.driver_dir}",
                "--conf", f"spark.executor.extraJavaOptions=-Djava.io.tmpdir={self.executor_tmp}", *args]
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=clean_env(env), cwd=cwd,
                                       start_new_session=True)
        self.submitted.append(process)
        return process

    def apps(self) -> List[str]:
        """Application ids that have run executors here, oldest first."""
        return sorted({os.path.basename(p) for folder in self.worker_dirs for p in glob.glob(os.path.join(folder, "app-*"))})

    def executor_dirs(self, app_id: str) -> Dict[str, List[str]]:
        """``{worker dir: [executor dirs of app_id]}``: each holds the executor's stdout, stderr and its ./env."""
        return {folder: sorted(glob.glob(os.path.join(folder, app_id, "*"))) for folder in self.worker_dirs}


def executor_pid(python_pid: int) -> Optional[int]:
    """The executor JVM that a Python worker belongs to (worker -> pyspark daemon -> executor), by /proc."""
    pid = python_pid
    for _ in range(5):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{ppid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            return None
        if b"CoarseGrainedExecutorBackend" in cmdline:
            return ppid
        pid = ppid
    return None


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def grep(paths: Sequence[str], pattern: str) -> List[re.Match]:
    found = []
    for path in paths:
        for match in re.finditer(pattern, _read(path)):
            found.append(match)
    return found


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _tail(path: str, lines: int = 30) -> str:
    return "\n".join(_read(path).splitlines()[-lines:])
