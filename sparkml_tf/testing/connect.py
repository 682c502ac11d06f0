"""A Spark Connect server on this machine, from a Spark installation's ``sbin/start-connect-server.sh``
(the pyspark wheel's by default, which ships it and the server's jar from pyspark 4.0 on), listening on
127.0.0.1, with a ``local[N]`` master. Its Python workers run this interpreter, so they have sparkml_tf.

    with ConnectServer(tmp_dir) as server:
        spark = SparkSession.builder.remote(server.url).getOrCreate()

The server runs in its own process group, killed whole on ``stop()``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, Optional

from sparkml_tf.testing.standalone import clean_env, free_port, spark_home


class ConnectServer:
    def __init__(self, workdir: str, master: str = "local[2]", conf: Optional[Dict[str, str]] = None, home: Optional[str] = None):
        self.workdir = os.path.abspath(workdir)
        self.master = master
        self.conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2", **(conf or {})}
        self.home = home or spark_home()
        self.port = free_port()
        self.url = f"sc://127.0.0.1:{self.port}"
        self.log = os.path.join(self.workdir, "connect-server.log")
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 180.0) -> "ConnectServer":
        script = os.path.join(self.home, "sbin", "start-connect-server.sh")
        if not os.path.exists(script):
            raise RuntimeError(f"{script} is missing: the Spark Connect server ships with pyspark 4.0 and later")
        os.makedirs(self.workdir, exist_ok=True)
        settings = {**self.conf, "spark.connect.grpc.binding.address": "127.0.0.1", "spark.connect.grpc.binding.port": str(self.port)}
        args = ["bash", script, "--wait", "--master", self.master]
        for key, value in settings.items():
            args += ["--conf", f"{key}={value}"]
        env = clean_env({"PYSPARK_PYTHON": sys.executable, "SPARK_LOG_DIR": self.workdir, "SPARK_PID_DIR": self.workdir})
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.workdir, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Spark Connect server exited at start (code {self.process.returncode}); see {self.log}:\n{self.tail()}")
            if self._listening():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Spark Connect server did not listen on 127.0.0.1:{self.port} within {timeout:.0f}s; see {self.log}:\n{self.tail()}")

    def _listening(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        """SIGTERM the server's process group, then SIGKILL what is left."""
        if self.process is None:
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.process.poll() is None:
                time.sleep(0.2)
            if self.process.poll() is not None:
                break
        self.process = None

    def tail(self, lines: int = 30) -> str:
        try:
            with open(self.log, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> "ConnectServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
