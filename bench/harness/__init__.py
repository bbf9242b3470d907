"""What the benchmarks (bench/api_roundtrip.py, bench/export.py) and the reliability suite (tests/reliability/)
share: a bench database on the local PostgreSQL and the Django environment pointed at it (database.py), gunicorn
on a free loopback port (server.py), a keep-alive HTTP/1.1 client (http_client.py), bulk seeding through the ORM
(seeding.py), and CPU and wait meters (meters.py).

Every server a bench talks to is on the loopback interface; every child process runs in the repository root.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


class SetupError(RuntimeError):
    """The run could not start or go on: the message says which step failed and why."""


def run_checked(command: list[str], env: dict[str, str], what: str) -> None:
    """Run `command` in the repository root; on failure print its output and raise SetupError naming `what`."""
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SetupError(f"{what} failed (exit {done.returncode})")
