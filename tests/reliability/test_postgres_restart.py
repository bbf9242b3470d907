"""PostgreSQL restarted under load: clients retry with their idempotency keys, the app reconnects
(CONN_HEALTH_CHECKS), and afterwards every acknowledged annotation is there exactly once.

Restarting needs root and pg_ctlcluster, as on the CI machine (docs/reliability.md says so); elsewhere the test fails
under CI and is skipped locally. The server is left running whatever happens: restarted in `finally`, and
waited for until it accepts connections. Other test runs against the same server see a blip.
"""

import os
import shutil
import subprocess
import threading
import time

import psycopg2
import pytest
from django.db import connection

from bench.harness.seeding import seed_annotators, seed_batch
from tests.reliability.annotators import Plan, Tally, run_annotators
from tests.reliability.checks import assert_database_matches
from tests.reliability.harness import report, request, size, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

RESTART_AFTER = 0.25
"""The restart comes once this share of the submissions is acknowledged, so that load runs on both sides of it."""


def postgres_cluster(port: int) -> tuple[str, str] | None:
    """(version, name) of the cluster on `port`, when this process may restart it."""
    if os.geteuid() != 0 or shutil.which("pg_lsclusters") is None:
        return None
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        version, name, cluster_port, *_ = line.split()
        if cluster_port == str(port):
            return version, name
    return None


def accepts_connections(params: dict) -> bool:
    try:
        psycopg2.connect(connect_timeout=2, **params).close()
    except psycopg2.OperationalError:
        return False
    return True


def test_a_postgres_restart_under_load_loses_and_doubles_nothing(serve):
    database = connection.settings_dict
    params = {"host": database["HOST"], "port": database["PORT"], "user": database["USER"], "dbname": "postgres"}
    cluster = postgres_cluster(int(database["PORT"]))
    if cluster is None:
        message = "restarting PostgreSQL needs root and pg_ctlcluster"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    annotators, submissions = size("RELIABILITY_RESTART_ANNOTATORS", 20), size("RELIABILITY_RESTART_SUBMISSIONS", 30)
    batch_id = seed_batch("restart", annotators * submissions)
    users = seed_annotators("restart", annotators)
    app = serve()
    tally, fault = Tally(), {}

    def restart_under_load() -> None:
        wait_for(lambda: len(tally.acknowledged) >= RESTART_AFTER * annotators * submissions, 300)
        fault["start"] = time.monotonic()
        try:
            subprocess.run(["pg_ctlcluster", *cluster, "restart", "-m", "fast"], check=True, timeout=120)
        finally:
            subprocess.run(["pg_ctlcluster", *cluster, "start"], check=False, capture_output=True, timeout=120)
            wait_for(lambda: accepts_connections(params), 120)
            fault["end"] = time.monotonic()

    restarter = threading.Thread(target=restart_under_load)
    restarter.start()
    try:
        run_annotators(app.port, users, Plan(batch_id=batch_id, submissions=submissions, tolerate_failures=True), tally)
    finally:
        restarter.join()
    connection.close()  # the test's own connection died with the server

    assert "end" in fault, "the restart never happened"
    last_failure = max(tally.failure_times, default=fault["start"])
    answered = [moment for moment in tally.success_times if moment > last_failure]
    recovered = f"{min(answered) - fault['start']:.1f} s" if answered else "n/a (the load ended first)"
    report(
        f"postgres restart: pg_ctlcluster restart and first accepted connection {fault['end'] - fault['start']:.1f} s;"
        f" the app answered again {recovered} after the restart began; {tally.retries} requests retried "
        f"({len(tally.failure_times)} 5xx, dropped or timed out); statuses {dict(sorted(tally.statuses.items()))}"
    )
    assert not tally.problems, tally.problems[:5]
    assert 500 not in tally.statuses, "a database outage must answer 503 (retry), never 500"
    assert len(tally.acknowledged) == annotators * submissions
    assert_database_matches(batch_id, tally)
    status, health, _ = request(app.port, "GET", "/healthz")
    assert (status, health["status"]) == (200, "ok"), health
