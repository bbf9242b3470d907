"""Simulated annotators over real HTTP: lease, submit with an idempotency key, retry what failed with the same key.

Built on the benches' keep-alive client (bench/harness/http_client.py). Each client records what the server
acknowledged (2xx), so a test can check the database afterwards, and how long each round trip took.
"""

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.harness.http_client import SUBMIT_BODY, HttpConnection

REQUEST_TIMEOUT_SECONDS = 30.0
"""A request with no answer by then counts as failed and is sent again (same body, same key)."""
RETRY_PAUSE_SECONDS = 0.2
RETRY_LATER = 503
"""The API's "ask again in a moment" (with Retry-After)."""
MAX_ATTEMPTS = 600
"""Per request: a server that never comes back ends the run (about two minutes of failures) instead of hanging it."""


@dataclass
class Tally:
    acknowledged: dict[tuple[int, str], int] = field(default_factory=dict)
    """(annotator id, idempotency key) -> annotation id, for every 2xx submit."""
    statuses: Counter = field(default_factory=Counter)
    """HTTP status of every answer; 0 for a dropped connection or a timeout."""
    retries: int = 0
    deliberate_retries: int = 0
    """Submits sent again on purpose after a 2xx, as a client that lost the reply would."""
    round_trips: list[float] = field(default_factory=list)
    """Seconds from asking for a lease to the acknowledged submit (retries included)."""
    problems: list[str] = field(default_factory=list)
    """What no retry can explain: a 5xx or dropped connection when not tolerated, a 4xx, a key answered twice."""
    failure_times: list[float] = field(default_factory=list)
    success_times: list[float] = field(default_factory=list)
    """Monotonic times of failed and answered requests (to see when a fault started and ended)."""

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.round_trips)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


@dataclass(frozen=True)
class Plan:
    batch_id: int
    submissions: int
    """Per annotator."""
    retry_every: int = 5
    """Every n-th submit is sent twice (a client retry after a lost reply): 5 is a 20 % share."""
    tolerate_failures: bool = False
    """Retry 5xx and dropped connections (a fault test); otherwise each one is a problem, and still retried."""


async def _post(connection: HttpConnection, path: str, headers: bytes, body: bytes, plan: Plan, tally: Tally):
    """POST until the server answers below 500; connection errors, timeouts and 5xx are retried (same body).

    A 503 is the server asking for a retry (a lease that lost every race under contention, the database away
    for a moment), as the annotator page does: it is counted, never a problem. Any other 5xx is one.
    """
    for _ in range(MAX_ATTEMPTS):
        try:
            status, answer = await asyncio.wait_for(connection.post(path, headers, body), REQUEST_TIMEOUT_SECONDS)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
            connection.close()
            status, answer = 0, f"{type(error).__name__}: {error}".encode()
        tally.statuses[status] += 1
        if 0 < status < 500:
            tally.success_times.append(time.monotonic())
            return status, answer
        tally.failure_times.append(time.monotonic())
        if status != RETRY_LATER and not plan.tolerate_failures:
            tally.problems.append(f"{path} {status} {answer[:300]!r}")
        tally.retries += 1
        await asyncio.sleep(RETRY_PAUSE_SECONDS)
    raise RuntimeError(f"{path}: no answer below 500 after {MAX_ATTEMPTS} attempts")


async def annotate(port: int, user: tuple[int, str], plan: Plan, tally: Tally) -> None:
    """Lease and submit `plan.submissions` times; a 204 (nothing left) or a 4xx ends this annotator's run."""
    connection = HttpConnection(port)
    headers = f"Authorization: Token {user[1]}\r\nContent-Type: application/json\r\n".encode()
    try:
        for number in range(plan.submissions):
            started = time.perf_counter()
            status, body = await _post(connection, f"/api/v1/batches/{plan.batch_id}/next/", headers, b"", plan, tally)
            if status != 200:
                tally.problems.append(f"next {status} {body[:300]!r}")
                return
            key = f"rel-{user[0]}-{number}"
            payload = json.dumps({**SUBMIT_BODY, "idempotency_key": key}).encode()
            path = f"/api/v1/assignments/{json.loads(body)['id']}/submit/"
            sends = 2 if number % plan.retry_every == 0 else 1
            for send in range(sends):
                status, body = await _post(connection, path, headers, payload, plan, tally)
                if status not in (200, 201):
                    tally.problems.append(f"submit {key} {status} {body[:300]!r}")
                    return
                tally.deliberate_retries += send
                annotation_id = json.loads(body)["id"]
                if tally.acknowledged.setdefault((user[0], key), annotation_id) != annotation_id:
                    tally.problems.append(f"submit {key} answered with two different annotations")
            tally.round_trips.append(time.perf_counter() - started)
    finally:
        connection.close()


def run_annotators(port: int, users: list[tuple[int, str]], plan: Plan, tally: Tally | None = None) -> Tally:
    """Every user annotates at once (one asyncio task and one keep-alive connection each), counting into `tally`."""
    tally = tally if tally is not None else Tally()

    async def everyone() -> None:
        await asyncio.gather(*(annotate(port, user, plan, tally) for user in users))

    asyncio.run(everyone())
    return tally
