"""gunicorn serving the app on a free loopback port, for the API bench and the reliability suite."""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import LOOPBACK, REPO_ROOT, SetupError

WSGI_APP = "config.wsgi:application"
# gunicorn log lines that say nothing about the run (WhiteNoise without collectstatic).
HARMLESS_LOG = re.compile(r"No directory at: .*staticfiles|mw_instance = middleware")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """gunicorn serving config.wsgi:application on a free loopback port, logging to `workdir`/gunicorn.log.

    Sync workers by default: each takes the next request from the shared listen queue, so the load spreads
    evenly over them. A gthread worker keeps every kept-alive connection it accepted, so with clients that
    keep their connections open one worker (one GIL) ends up with most of the load and the tail grows.
    """

    def __init__(
        self, env: dict[str, str], workdir: Path, *, workers: int = 4, worker_class: str = "sync", threads: int = 8
    ) -> None:
        self.env, self.log_path = env, workdir / "gunicorn.log"
        self.workers, self.worker_class, self.threads = workers, worker_class, threads
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "gunicorn", WSGI_APP]
        command += ["--bind", f"{LOOPBACK}:{self.port}", "--workers", str(self.workers)]
        command += ["--worker-class", self.worker_class, "--keep-alive", "5", "--log-level", "warning"]
        if self.worker_class == "gthread":
            command += ["--threads", str(self.threads)]
        return command

    def describe(self) -> str:
        threads = f" x {self.threads} threads" if self.worker_class == "gthread" else ""
        return f"gunicorn {self.worker_class}, {self.workers} workers{threads}, {LOOPBACK}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start gunicorn and wait until /healthz answers 200; SetupError (with the log's tail) if it does not."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command(), cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SetupError(f"gunicorn did not answer /healthz; its log:\n{self.log_path.read_text()[-4000:]}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        """What gunicorn logged, without the lines that say nothing about the run."""
        return "\n".join(line for line in self.log_path.read_text().splitlines() if not HARMLESS_LOG.search(line))
