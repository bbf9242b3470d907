"""The reliability suite's harness: sizes from the environment, the report, a private Redis, a Celery worker.

The Django environment and the port picker are the benches' (bench/harness/), as is gunicorn (conftest.py).
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from bench.harness.database import Database, django_environment
from bench.harness.server import free_port

ROOT = Path(__file__).resolve().parents[2]
REPORT_PATH = ROOT / "var" / "reliability-report.txt"
measured: list[str] = []
"""Lines for the terminal summary (conftest.py) and the report file."""


def size(name: str, default: int) -> int:
    """A load size from the environment (RELIABILITY_ANNOTATORS, RELIABILITY_SUBMISSIONS): small while developing."""
    return int(os.environ.get(name, default))


def report(line: str) -> None:
    """A measured figure: printed at once (-s), then in the terminal summary and var/reliability-report.txt."""
    print("\n" + line)
    measured.append(line)


def database_environment() -> dict[str, str]:
    """Production settings on the test database, as the bench runs them; CELERY_BROKER_URL is the test run's."""
    database = settings.DATABASES["default"]
    pg_url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}"
    environment = django_environment(Database(pg_url, database["NAME"]))
    environment["CELERY_BROKER_URL"] = os.environ.get("CELERY_BROKER_URL", environment["CELERY_BROKER_URL"])
    environment["CELERY_TASK_ALWAYS_EAGER"] = "0"  # the test settings put "1" in this process's environment
    return environment


def request(port: int, method: str, path: str, token: str = "", body: dict | None = None) -> tuple[int, dict, float]:
    """One HTTP request; returns the status, the JSON answer and how long it took (seconds)."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Token {token}"} if token else {})
    started = time.monotonic()
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    client.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    answer = client.getresponse()
    payload = answer.read()
    client.close()
    return answer.status, json.loads(payload) if payload else {}, time.monotonic() - started


def redis_available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def wait_for(condition, seconds: float) -> bool:
    """Poll until the condition holds; False when it never did (a bound against hanging, not a timing check)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


class RedisServer:
    """A private redis-server on a free port, no persistence: a test may stop and start it at will."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.workdir = free_port(), workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(100):
            ping = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True, check=False
            )
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError(f"redis-server did not start: {(self.workdir / 'redis.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def start_worker(broker_url: str, log: Path, queues: str = "default", **env: str) -> subprocess.Popen[bytes]:
    """A real Celery worker (solo pool) on the test database, as sampler/tests/test_worker_redelivery.py runs one."""
    environment = database_environment() | {"CELERY_BROKER_URL": broker_url} | env
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "--pool=solo"]
    command += ["--prefetch-multiplier=1", "-n", f"reliability-{os.getpid()}@%h", "--loglevel=info"]
    return subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
