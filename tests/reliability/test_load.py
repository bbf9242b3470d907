"""Many annotators at once against gunicorn on PostgreSQL: nothing acknowledged is lost, nothing is doubled.

RELIABILITY_ANNOTATORS (200) simulated annotators x RELIABILITY_SUBMISSIONS (50) over real HTTP with token
auth: lease, submit with an idempotency key, every fifth submit sent twice as a client that lost the reply
would. Wall time, throughput and round-trip percentiles are reported (-s, the summary, var/), never asserted.
"""

import time

import pytest

from bench.harness.seeding import seed_annotators, seed_batch
from tests.reliability.annotators import RETRY_LATER, Plan, run_annotators
from tests.reliability.checks import assert_database_matches
from tests.reliability.harness import report, size

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_many_annotators_lose_and_double_nothing(serve):
    annotators, submissions = size("RELIABILITY_ANNOTATORS", 200), size("RELIABILITY_SUBMISSIONS", 50)
    batch_id = seed_batch("load", annotators * submissions)
    users = seed_annotators("load", annotators)
    app = serve()

    started = time.monotonic()
    tally = run_annotators(app.port, users, Plan(batch_id=batch_id, submissions=submissions))
    wall = time.monotonic() - started

    requests = sum(tally.statuses.values())
    report(
        f"load: {annotators} annotators x {submissions} submissions, {app.describe()}: "
        f"{len(tally.acknowledged)} annotations ({tally.deliberate_retries} deliberate retries), {requests} requests "
        f"in {wall:.1f} s = {len(tally.round_trips) / wall:.1f} round trips/s, {requests / wall:.0f} requests/s; "
        f"round trip p50 {tally.percentile(0.5) * 1000:.0f} ms, p99 {tally.percentile(0.99) * 1000:.0f} ms; "
        f"statuses {dict(sorted(tally.statuses.items()))}"
    )
    assert not tally.problems, tally.problems[:5]
    # 503 asks the client to retry (a lease that lost every race); no other 5xx and no dropped connection.
    assert not [status for status in tally.statuses if (status >= 500 and status != RETRY_LATER) or status == 0]
    assert len(tally.acknowledged) == annotators * submissions
    assert_database_matches(batch_id, tally)
