"""Fixtures for the reliability suite: the app under gunicorn on the test database, a private Redis.

Tests that serve must be transactional (`django_db(transaction=True)`): gunicorn sees only committed rows.
What each test measured is printed at the end of the run and written to var/reliability-report.txt.
"""

from collections.abc import Iterator

import pytest
from django.db import connection

from bench.harness.server import Gunicorn
from tests.reliability.harness import REPORT_PATH, RedisServer, database_environment, measured, redis_available


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not measured:
        return
    terminalreporter.section("reliability figures")
    for line in measured:
        terminalreporter.write_line(line)
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text("\n".join(measured) + "\n")


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """start(workers=4, **env) runs gunicorn on the test database and returns it; stopped afterwards."""
    started: list[Gunicorn] = []

    def start(workers: int = 4, **env: str) -> Gunicorn:
        app = Gunicorn(database_environment() | env, tmp_path, workers=workers)
        app.start(timeout=60)
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()
    connection.close()  # a fault test may have restarted the server under the test's own connection


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisServer]:
    if not redis_available():
        pytest.fail("redis-server and redis-cli are needed for the broker outage test")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
