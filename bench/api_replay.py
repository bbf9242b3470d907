"""The API bench's SQL replay: record what Django does on its database connection during one next+submit round
trip, turn it into a plan of templated statements, and replay that plan on a raw psycopg2 connection.

Capture (in the seeding child, Django set up): `capture_plan` sends the round trip through the WSGI callable and
records, in order, each statement with its parameters and result rows, the health check (CONN_HEALTH_CHECKS),
and every autocommit switch and commit (`transaction.atomic()`; psycopg2 sends BEGIN on the first statement
after autocommit goes off). The parameters become templates: ids are recognised by value (each table's ids
start in a range of their own, see bench/harness/seeding.py), the comparison, its responses and the new
assignment are read back from the replayed statement that first returned them, timestamps become "request
start + offset", the idempotency key is fresh.

Replay (in the bench, no Django): `replay_round_trip` sends the same SQL with the same locking and the same
transactions, the lease's retry when its overlap filled meanwhile included.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2.extensions

from bench.harness import LOOPBACK
from bench.harness.http_client import SUBMIT_BODY
from bench.harness.seeding import ID_BASE

# Row ids the replay reads back from the statement that first returned them (user_id, token, batch_id
# and idempotency_key it knows already).
DYNAMIC_NAMES = ("comparison_id", "prompt_id", "first_response_id", "second_response_id", "assignment_id")
# As in backend.batches.services.annotations: the lease transaction is tried this many times.
LEASE_ATTEMPTS = 8


@dataclass
class Event:
    """One thing Django did on its database connection during a request, in order."""

    kind: str
    """sql, health (the CONN_HEALTH_CHECKS `SELECT 1`), autocommit, commit or rollback."""
    sql: str = ""
    params: list[dict[str, Any]] = field(default_factory=list)
    """Templates: {"lit": value}, {"ref": name}, or {"now": seconds after the request started}."""
    autocommit: bool = True
    produces: dict[str, int] = field(default_factory=dict)
    """Names the replay reads from this statement's first row: name -> column."""
    lease_if_room: bool = False
    """The lease's insert under the comparison lock, which recounts the overlap: no row back means it filled
    meanwhile, and the lease transaction is retried."""


@dataclass
class RequestPlan:
    name: str
    events: list[Event]

    @property
    def statements(self) -> int:
        """Statements sent to the server, the health check included (BEGIN and COMMIT counted apart)."""
        return sum(event.kind in {"sql", "health"} for event in self.events)

    @property
    def transactions(self) -> int:
        return sum(event.kind == "commit" for event in self.events)


# What the recorder saw: (request name, event, result rows, raw params).
Recorded = list[tuple[str, Event, list[tuple[Any, ...]], list[Any]]]


class CaptureError(RuntimeError):
    """The captured round trip cannot be replayed faithfully (the message says why)."""


class NoLease(RuntimeError):
    """The replayed lease found nothing, or gave up after LEASE_ATTEMPTS tries: Django answers 204 then."""


# ------------------------------------------------------------------------------------------ describing


def abbreviate_sql(sql: str) -> str:
    """Statement kind, main table, and the clauses that matter for cost and locking."""
    words = sql.split()
    verb = words[0].upper()
    table = ""
    for marker in ("FROM", "INTO", "UPDATE"):
        if marker in words:
            table = words[words.index(marker) + 1].strip('"')
            break
    flags = [
        flag
        for flag in ("JOIN", "EXISTS", "COUNT(", "ORDER BY", "LIMIT", "RETURNING", "FOR UPDATE", "SKIP LOCKED")
        if flag in sql.upper()
    ]
    return f"{verb} {table} [{', '.join(flags)}] ({len(sql)} chars)"


def event_label(event: Event) -> str:
    """A short name for a step on the connection: the abbreviated statement, the health check, COMMIT..."""
    if event.kind == "sql":
        return abbreviate_sql(event.sql)
    return "SELECT 1 (health)" if event.kind == "health" else event.kind.upper()


def print_plan(plan: list[RequestPlan], full: bool) -> None:
    """The captured statements per request, abbreviated unless `full` (then with their parameter templates)."""
    total = sum(r.statements for r in plan)
    transactions = sum(r.transactions for r in plan)
    print(
        f"Statements per round trip, the same on each side: {total} ("
        + " + ".join(f"{r.name} {r.statements}" for r in plan)
        + f", a health check in each), plus BEGIN/COMMIT of {transactions} transactions. The raw side replays "
        "them (its own ids, fresh timestamps and keys) on one psycopg2 connection per client:"
    )
    for request in plan:
        print(f"  {request.name}:")
        for event in request.events:
            if event.kind == "autocommit":
                text = "(autocommit off: BEGIN goes with the next statement)" if not event.autocommit else ""
                if not text:
                    continue
            elif event.kind in {"commit", "rollback"}:
                text = event.kind.upper()
            elif event.kind == "health":
                text = "SELECT 1  -- health check (CONN_HEALTH_CHECKS)"
            else:
                text = " ".join(event.sql.split())
                if not full:
                    text = abbreviate_sql(text)
                extras = []
                if full:
                    extras.append("params " + json.dumps(event.params))
                if event.produces:
                    extras.append("reads " + ", ".join(event.produces))
                if event.lease_if_room:
                    extras.append("no row: the overlap filled, retry the transaction")
                text += f"  -- {'; '.join(extras)}" if extras else ""
            print(f"    {text}")


# -------------------------------------------------------------------------- through the WSGI callable


def wsgi_post(
    app: Callable[..., Any], path: str, token: str, body: bytes = b"", *, method: str = "POST"
) -> tuple[int, bytes]:
    """One POST (or `method`) through the WSGI callable as gunicorn calls it (signals, middleware, close() included)."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": LOOPBACK,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": LOOPBACK,
        "HTTP_HOST": LOOPBACK,
        "HTTP_AUTHORIZATION": f"Token {token}",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        statuses.append(status)

    result = app(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        result.close()
    return int(statuses[0].split()[0]), content


def wsgi_round_trip(app: Callable[..., Any], batch_id: int, token: str, key: str) -> tuple[int, int]:
    """next then submit; returns (assignment id, submit status)."""
    status, body = wsgi_post(app, f"/api/v1/batches/{batch_id}/next/", token)
    if status != 200:
        raise CaptureError(f"next answered {status}: {body[:300]!r}")
    assignment_id = int(json.loads(body)["id"])
    payload = json.dumps({**SUBMIT_BODY, "idempotency_key": key}).encode()
    status, body = wsgi_post(app, f"/api/v1/assignments/{assignment_id}/submit/", token, payload)
    if status != 201:
        raise CaptureError(f"submit answered {status}: {body[:300]!r}")
    return assignment_id, status


@contextmanager
def connection_recorder(
    on_event: Callable[[Event, list[tuple[Any, ...]], list[Any], float], None], *, keep_rows: bool = True
) -> Iterator[None]:
    """Report every statement, health check, autocommit switch, commit and rollback of Django's connection.

    With keep_rows, each statement's result rows are read (and the cursor rewound for Django).
    """
    from django.db import connections

    wrapper = connections["default"]
    originals = {name: getattr(wrapper, name) for name in ("set_autocommit", "commit", "rollback", "is_usable")}

    def timed(event: Event, call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = call()
        on_event(event, [], [], time.perf_counter() - start)
        return result

    def set_autocommit(autocommit: bool, *args: Any, **kwargs: Any) -> Any:
        event = Event("autocommit", autocommit=autocommit)
        return timed(event, lambda: originals["set_autocommit"](autocommit, *args, **kwargs))

    def execute(run: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if many:
            raise CaptureError(f"executemany is not replayed: {sql[:200]}")
        start = time.perf_counter()
        result = run(sql, params, many, context)
        elapsed = time.perf_counter() - start
        cursor = context["cursor"].cursor
        rows: list[tuple[Any, ...]] = []
        if keep_rows and cursor.description is not None:
            rows = cursor.fetchall()
            if rows:
                cursor.scroll(0, mode="absolute")
        on_event(Event("sql", sql=sql), rows, list(params or ()), elapsed)
        return result

    wrapper.set_autocommit = set_autocommit  # type: ignore[method-assign]
    wrapper.commit = lambda: timed(Event("commit"), originals["commit"])  # type: ignore[method-assign]
    wrapper.rollback = lambda: timed(Event("rollback"), originals["rollback"])  # type: ignore[method-assign]
    wrapper.is_usable = lambda: timed(Event("health", sql="SELECT 1"), originals["is_usable"])  # type: ignore[method-assign]
    try:
        with wrapper.execute_wrapper(execute):
            yield
    finally:
        for name in originals:
            delattr(wrapper, name)


# ------------------------------------------------------------------------------------------- capture


def param_template(value: Any, names: dict[str, Any], request_start: datetime) -> dict[str, Any]:
    """How the replay rebuilds one captured parameter."""
    if value is None or isinstance(value, bool | float):
        return {"lit": value}
    if isinstance(value, datetime):
        return {"now": round((value - request_start).total_seconds())}
    if isinstance(value, int | str):
        matches = [name for name, known in names.items() if type(known) is type(value) and known == value]
        if len(matches) > 1:
            raise CaptureError(f"parameter {value!r} is ambiguous: {matches}")
        if matches:
            return {"ref": matches[0]}
        if isinstance(value, int) and value >= ID_BASE:
            raise CaptureError(f"parameter {value} looks like a row id the bench does not know; extend ID_RANGES")
        return {"lit": value}
    raise CaptureError(f"parameter of type {type(value).__name__} has no template: {value!r}")


def find_producers(events: Recorded, names: dict[str, Any]) -> dict[tuple[int, str], int]:
    """For each dynamic name: the first statement whose first row holds it, checked to come before any use.

    Returns {(event index, name): column}.
    """
    produced: dict[str, tuple[int, int]] = {}
    first_use: dict[str, int] = {}
    for index, (_, event, rows, params) in enumerate(events):
        for name in DYNAMIC_NAMES:
            value = names[name]
            if name not in first_use and any(type(p) is int and p == value for p in params):
                first_use[name] = index
            if name not in produced and rows:
                for column, cell in enumerate(rows[0]):
                    if type(cell) is int and cell == value and event.kind == "sql":
                        produced[name] = (index, column)
                        break
    for name, used_at in first_use.items():
        if name not in produced or produced[name][0] >= used_at:
            raise CaptureError(f"{name} is used by statement {used_at} before any statement returned it")
    return {(index, name): column for name, (index, column) in produced.items() if name in first_use}


def build_plan(recorded: Recorded, names: dict[str, Any], starts: dict[str, datetime]) -> list[RequestPlan]:
    """Templates for the recorded events of a round trip, grouped by request."""
    producers = find_producers(recorded, names)
    plans: dict[str, RequestPlan] = {}
    in_lease_transaction = False
    for index, (request, event, _, params) in enumerate(recorded):
        if event.kind == "sql":
            event.params = [param_template(p, names, starts[request]) for p in params]
            event.produces = {name: column for (at, name), column in producers.items() if at == index}
            in_lease_transaction = in_lease_transaction or "SKIP LOCKED" in event.sql
            event.lease_if_room = in_lease_transaction and event.sql.lstrip().upper().startswith(
                "INSERT INTO BATCHES_ASSIGNMENT"
            )
        elif event.kind == "commit":
            in_lease_transaction = False
        plans.setdefault(request, RequestPlan(request, [])).events.append(event)
    return list(plans.values())


def capture_plan(
    app: Callable[..., Any], batch_id: int, warm: tuple[int, str], user: tuple[int, str]
) -> list[RequestPlan]:
    """Record one next+submit round trip of `user` (after a warm one by `warm`) and template it."""
    from backend.batches.models import Assignment

    wsgi_round_trip(app, batch_id, warm[1], "capture-warm")
    # A client in steady state has called within AUTH_CACHE_SECONDS, so its worker knows its token and roles;
    # the load's first call and one a worker sees after the cache expired pay two statements more.
    wsgi_post(app, "/api/v1/me/", user[1], method="GET")
    recorded: Recorded = []
    current = {"request": "next"}
    starts: dict[str, datetime] = {}

    def on_event(event: Event, rows: list[tuple[Any, ...]], params: list[Any], _: float) -> None:
        recorded.append((current["request"], event, rows, params))

    key = "capture-round-trip"
    with connection_recorder(on_event):
        starts["next"] = datetime.now(UTC)
        status, body = wsgi_post(app, f"/api/v1/batches/{batch_id}/next/", user[1])
        if status != 200:
            raise CaptureError(f"next answered {status}: {body[:300]!r}")
        assignment_id = int(json.loads(body)["id"])
        current["request"] = "submit"
        starts["submit"] = datetime.now(UTC)
        payload = json.dumps({**SUBMIT_BODY, "idempotency_key": key}).encode()
        status, body = wsgi_post(app, f"/api/v1/assignments/{assignment_id}/submit/", user[1], payload)
        if status != 201:
            raise CaptureError(f"submit answered {status}: {body[:300]!r}")
    assignment = Assignment.objects.select_related("comparison").get(pk=assignment_id)
    names = {
        "user_id": user[0],
        "token": user[1],
        "batch_id": batch_id,
        "idempotency_key": key,
        "assignment_id": assignment.pk,
        "comparison_id": assignment.comparison_id,
        "prompt_id": assignment.comparison.prompt_id,
        "first_response_id": assignment.comparison.first_response_id,
        "second_response_id": assignment.comparison.second_response_id,
    }
    if any(e.kind == "rollback" for _, e, _, _ in recorded):
        raise CaptureError("the captured round trip rolled back; it is not the success path")
    if sum("SKIP LOCKED" in e.sql for _, e, _, _ in recorded) != 1:
        raise CaptureError("the captured round trip did not lease in exactly one attempt")
    return build_plan(recorded, names, starts)


# -------------------------------------------------------------------------------------------- replay


def resolve(template: dict[str, Any], values: dict[str, Any], start: datetime) -> Any:
    if "ref" in template:
        return values[template["ref"]]
    if "now" in template:
        return start + timedelta(seconds=template["now"])
    return template["lit"]


def replay_round_trip(
    conn: psycopg2.extensions.connection,
    plan: list[RequestPlan],
    values: dict[str, Any],
    spent: dict[tuple[int, int], float],
) -> tuple[int, int]:
    """Send the captured statements of one round trip, as Django would; returns (statements, lease retries).

    Adds the seconds each step took to `spent`, keyed by (request index, event index).
    """
    statements = retries = 0
    cursor = conn.cursor()
    for request_index, request in enumerate(plan):
        start = datetime.now(UTC)
        events, index, transaction_start = request.events, 0, 0
        while index < len(events):
            event, step, began = events[index], (request_index, index), time.perf_counter()
            index += 1
            if event.kind == "autocommit":
                conn.autocommit = event.autocommit
                transaction_start = step[1]
                continue
            if event.kind == "commit":
                conn.commit()
            elif event.kind == "rollback":
                conn.rollback()
            else:
                cursor.execute(event.sql, [resolve(p, values, start) for p in event.params])
                statements += 1
                rows = cursor.fetchall() if cursor.description is not None else []
                if event.lease_if_room and not rows:
                    retries += 1
                    if retries >= LEASE_ATTEMPTS:
                        raise NoLease(f"204: the lease gave up after {LEASE_ATTEMPTS} attempts")
                    conn.commit()
                    conn.autocommit = True
                    index = transaction_start
                    spent[step] = spent.get(step, 0.0) + time.perf_counter() - began
                    continue
                for name, column in event.produces.items():
                    if not rows:
                        raise NoLease("204: no free comparison (is --comparisons too small?)")
                    values[name] = rows[0][column]
            spent[step] = spent.get(step, 0.0) + time.perf_counter() - began
    cursor.close()
    return statements, retries
