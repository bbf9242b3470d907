"""Simulated annotators doing next-then-submit against gunicorn on PostgreSQL, beside raw psycopg2.

One run, in order:

1. A fresh database (`--db-name`, dropped and created again), migrated with `manage.py migrate`.
2. A child process seeds it through the ORM and the services: one open batch per side (Django and
   raw SQL, so neither side eats the other's comparisons or races on its overlap), `--comparisons`
   comparisons in each (one prompt and two responses apiece), overlap 1, one annotator with a token
   per simulated client and level, and a closed, fully annotated earlier batch of the same size, so
   that the assignment and annotation tables are not empty; then VACUUM ANALYZE. Without statistics
   the planner joins the lease query's NOT EXISTS against a sequential scan of assignments, and each
   lease slows down as the run adds rows (0.5 ms to 1.3 ms here with 60 open leases; 0.46 ms analysed).
3. The same child sends one next+submit round trip through `backend.wsgi.application` (the very
   callable gunicorn runs) and records, in order, everything Django does on its database connection:
   each statement with its parameters and result rows, the health check (CONN_HEALTH_CHECKS), and
   every autocommit switch and commit (`transaction.atomic()`; psycopg2 sends BEGIN on the first
   statement after autocommit goes off). The parameters are turned into a template: ids are
   recognised by value (each table's ids start in a range of their own, see ID_BASE), the
   comparison, its responses and the new assignment are read back from the replayed statement that
   first returned them, timestamps become "request start + offset", the idempotency key is fresh.
   The child also times single-client round trips in-process (time on the connection against
   Python, and the process's CPU) and, with `--profile`, profiles them.
4. gunicorn starts on a free port of 127.0.0.1 and answers `/healthz`.
5. For each level of `--clients`: the Django phase (asyncio clients, raw HTTP/1.1 keep-alive), then the
   raw phase (one thread and one psycopg2 connection per client replaying the captured statements:
   the same SQL, the same locking, the same transactions, the lease's retry when its overlap filled included).
   Each phase starts with ANALYZE (the tables grow during the run, as autovacuum would follow), runs
   `--warmup` seconds unmeasured, then `--seconds` measured; a round trip counts when it completes
   inside the measured window; clients start no round trip after it and finish theirs. Beside each
   phase: the CPU used by the load generator, gunicorn (and each worker), PostgreSQL and the rest of
   the machine, and on the raw side the slowest replayed steps; `--sample-waits` adds what the
   backends wait on (pg_stat_activity every 50 ms).
6. Prints one table row per level with PASS/FAIL against TARGETS (printed, never asserted), the
   errors (must be 0), then checks the database: no comparison above its overlap, no duplicate
   annotation, annotation_count in step, every 201 stored once, no lease left open.

Exit status: 0 when there were no errors and the database checks passed (whatever the targets say),
1 otherwise, 2 when setup failed (database, migrate, seeding, capture or gunicorn).

gunicorn workers: sync, 4 (two per core). Measured here before the loop's statements were written in SQL (8 s
windows, a quiet machine, rt/s at 8 / 64 clients): sync x 4: 91 / 67 and 77 / 61 (p99 124-135 / 1043-1057 ms);
sync x 6: 77 / 48 (p99 141 / 1666 ms); gthread 2 x 8 threads: 52 / 47 (p99 237 / 1561 ms); gthread 4 x 4 (5 s
windows): 89 / 49 (p99 148 / 2638 ms). gthread loses because the clients keep their connections alive and each
connection stays with the worker that accepted it: the per-worker CPU column showed one gthread worker at 0.90
core and the other at 0.00, i.e. one GIL for everything. Sync workers take each request from the shared listen
queue, so the four share the load evenly (0.30-0.35 core each) and the tail stays flat (p95 close to p99).
After (backend/batches/hot_path_sql.py, serializers made once), four runs each on a machine with other load:
sync x 4: 133-161 / 98-144 rt/s (p99 69-96 / 577-798 ms); sync x 3: 106-214 / 109-170 (p99 52-106 / 519-751 ms):
no worker count wins clearly at this noise, so the default stays at two per core.
On a faster 2-core machine (2026-11-23, quiet; three runs, sync x 4): 8 clients 298-303 rt/s, p99 36-38 ms;
64 clients 293-296 rt/s, p99 253-277 ms; ratio 0.51-0.52; per round trip gunicorn used 3.3 ms of CPU and
PostgreSQL 2.7 ms (7.5-7.9 and 4.6 ms on the machine above).
Override with --worker-class/--workers/--threads.

Usage:
    .venv/bin/python bench/api_roundtrip.py
    .venv/bin/python bench/api_roundtrip.py --clients 8,16,64 --seconds 15 --profile --show-sql
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import http.client
import io
import json
import math
import os
import pstats
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import psycopg2
import psycopg2.extensions

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
SIDES = ("django", "raw")

# Ids of each table start at (k * ID_BASE), so a captured integer parameter tells which row it is.
ID_BASE = 10_000_000
ID_RANGES = {
    "auth_user": 1,
    "checkpoints_checkpoint": 2,
    "batches_batch": 3,
    "batches_prompt": 4,
    "batches_response": 5,
    "batches_comparison": 6,
    "batches_assignment": 7,
    "batches_annotation": 8,
}
# Row ids the replay reads back from the statement that first returned them (user_id, token, batch_id
# and idempotency_key it knows already).
DYNAMIC_NAMES = ("comparison_id", "prompt_id", "first_response_id", "second_response_id", "assignment_id")
# As in backend.batches.services.annotations: the lease transaction is tried this many times.
LEASE_ATTEMPTS = 8
# Seeding writes comparisons (one prompt and two responses each, as the sampler does) in chunks.
SEED_CHUNK = 2_000
RESPONSE_CHARS = 900
# gunicorn log lines that say nothing about the run (WhiteNoise without collectstatic).
HARMLESS_LOG = re.compile(r"No directory at: .*staticfiles|mw_instance = middleware")
SUBMIT_BODY = {"choice": "a", "strength": "better", "time_spent_ms": 1000}


@dataclass(frozen=True)
class Target:
    """What a level must reach on this 2-core machine (from the issue)."""

    p99_ms: float
    min_ratio: float | None = None

    def describe(self) -> str:
        ratio = f"ratio >= {self.min_ratio:.2f}, " if self.min_ratio is not None else ""
        return f"{ratio}p99 < {self.p99_ms:.0f} ms"


TARGETS = {8: Target(p99_ms=100), 64: Target(p99_ms=500, min_ratio=0.3)}


@dataclass(frozen=True)
class Config:
    clients: tuple[int, ...] = (8, 64)
    """Concurrency levels; each runs the Django phase, then the raw-SQL phase."""
    seconds: float = 8.0
    """Measured window of each phase."""
    warmup: float = 2.0
    """Unmeasured lead-in of each phase (workers, caches and connections warm up)."""
    comparisons: int = 15_000
    """Comparisons per batch (one batch per side); the database checks print how many were used."""
    worker_class: str = "sync"
    """gunicorn worker class: sync or gthread (see the module docstring for why sync)."""
    workers: int = 4
    """gunicorn worker processes."""
    threads: int = 8
    """Threads per gthread worker (ignored for sync)."""
    pg_url: str = "postgres://postgres@127.0.0.1:5432"
    """PostgreSQL server (loopback only); the bench database is created on it."""
    db_name: str = "rlhf_bench"
    """Database dropped and created for the run (and dropped after it unless --keep-db)."""
    keep_db: bool = False
    """Leave the bench database in place after the run, for inspection."""
    sequential: int = 40
    """Single-client in-process round trips timed for the SQL/Python breakdown (0: none)."""
    profile: bool = False
    """Also profile that many round trips with cProfile and print where the time goes."""
    show_sql: bool = False
    """Print the captured statements in full (with their parameter templates), not abbreviated."""
    sample_waits: bool = False
    """Sample pg_stat_activity every 50 ms during each phase and print where the backends wait."""


# ---------------------------------------------------------------------------------------------- setup


def pg_params(config: Config, dbname: str) -> dict[str, Any]:
    """psycopg2 connection parameters for `--pg-url`; refuses anything but the loopback interface."""
    url = urlparse(config.pg_url)
    host = url.hostname or LOOPBACK
    if host not in {LOOPBACK, "localhost"}:
        raise SetupError(f"--pg-url must point at {LOOPBACK}; got {host!r}")
    params: dict[str, Any] = {"host": LOOPBACK, "port": url.port or 5432, "dbname": dbname}
    params["user"] = unquote(url.username or "postgres")
    if url.password:
        params["password"] = unquote(url.password)
    return params


def database_url(config: Config) -> str:
    url = urlparse(config.pg_url)
    return url._replace(path=f"/{config.db_name}").geturl()


def django_environment(config: Config) -> dict[str, str]:
    """The environment of every Django process of the run: production settings against the bench database."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="backend.settings.production",
        SECRET_KEY=secrets.token_hex(25),
        DEBUG="0",
        ALLOWED_HOSTS=f"{LOOPBACK},localhost",
        SECURE_COOKIES="0",
        DATABASE_URL=database_url(config),
        CELERY_BROKER_URL=f"redis://{LOOPBACK}:6379/0",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


def database_recreate(config: Config, *, create: bool = True) -> None:
    """Drop the bench database (closing whatever is still connected to it) and create it again."""
    admin = psycopg2.connect(**pg_params(config, "postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            name = psycopg2.extensions.quote_ident(config.db_name, cursor)
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            if create:
                cursor.execute(f"CREATE DATABASE {name}")
    finally:
        admin.close()


def database_analyze(config: Config) -> None:
    """Fresh planner statistics before a phase, as autovacuum would keep them (the tables grow during the run)."""
    conn = psycopg2.connect(**pg_params(config, config.db_name))
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("ANALYZE")
    finally:
        conn.close()


def run_checked(command: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SetupError(f"{what} failed (exit {done.returncode})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """gunicorn serving backend.wsgi:application on a free loopback port, logging to a file."""

    def __init__(self, config: Config, env: dict[str, str], workdir: Path) -> None:
        self.config, self.env, self.log_path = config, env, workdir / "gunicorn.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "gunicorn", "backend.wsgi:application"]
        command += ["--bind", f"{LOOPBACK}:{self.port}", "--workers", str(self.config.workers)]
        command += ["--worker-class", self.config.worker_class, "--keep-alive", "5", "--log-level", "warning"]
        if self.config.worker_class == "gthread":
            command += ["--threads", str(self.config.threads)]
        return command

    def describe(self) -> str:
        threads = f" x {self.config.threads} threads" if self.config.worker_class == "gthread" else ""
        return f"gunicorn {self.config.worker_class}, {self.config.workers} workers{threads}, {LOOPBACK}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
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


# ------------------------------------------------------------------------- the captured round trip


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


@dataclass
class Seeded:
    """What the seeding child hands back."""

    batch_ids: dict[str, int]
    overlap: int
    users: dict[str, dict[str, list[tuple[int, str]]]]
    """side -> level -> [(user id, token key)]."""
    plan: list[RequestPlan]
    breakdown: list[str]
    """Printable lines: the single-client SQL/Python split and, with --profile, the profile."""

    @classmethod
    def load(cls, path: Path) -> Seeded:
        raw = json.loads(path.read_text())
        plan = [RequestPlan(r["name"], [Event(**e) for e in r["events"]]) for r in raw["plan"]]
        users = {
            side: {level: [(int(uid), str(key)) for uid, key in pairs] for level, pairs in levels.items()}
            for side, levels in raw["users"].items()
        }
        return cls(raw["batch_ids"], raw["overlap"], users, plan, raw["breakdown"])


class SetupError(RuntimeError):
    """The run could not start: the message says which step failed and why."""


class CaptureError(RuntimeError):
    """The captured round trip cannot be replayed faithfully (the message says why)."""


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


def find_producers(
    events: list[tuple[str, Event, list[tuple[Any, ...]], list[Any]]], names: dict[str, Any]
) -> dict[tuple[int, str], int]:
    """For each dynamic name: the first statement whose first row holds it, checked to come before any use.

    `events` holds (request name, event, result rows, raw params); returns {(event index, name): column}.
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


def build_plan(
    recorded: list[tuple[str, Event, list[tuple[Any, ...]], list[Any]]],
    names: dict[str, Any],
    starts: dict[str, datetime],
) -> list[RequestPlan]:
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


# ------------------------------------------------------------------------------ the seeding child


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


def seed_ids() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table, k in ID_RANGES.items():
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, false)", [table, k * ID_BASE])


def seed_batch(name: str, comparisons: int) -> int:
    """An open helpfulness batch, overlap 1: one prompt and two responses per comparison, in bulk."""
    from backend.batches.models import Comparison, Prompt, Response
    from backend.batches.services.batches import batch_create, batch_open
    from backend.checkpoints.services import checkpoint_register

    checkpoints = [checkpoint_register(name=f"{name}-{k}", path=f"/models/{name}-{k}")[0] for k in ("a", "b")]
    batch, _ = batch_create(
        name=name,
        target_comparisons=comparisons,
        created_by=None,
        checkpoint_ids=[c.pk for c in checkpoints],
        temperatures=[0.7, 1.0],
        overlap=1,
    )
    text = ("The answer weighs both options and explains each step in plain words. " * 20)[:RESPONSE_CHARS]
    for first in range(0, comparisons, SEED_CHUNK):
        numbers = range(first, min(first + SEED_CHUNK, comparisons))
        prompts = Prompt.objects.bulk_create([Prompt(text=f"{name} prompt {i}: how would you do it?") for i in numbers])
        responses = Response.objects.bulk_create(
            [
                Response(prompt=prompt, checkpoint=checkpoint, temperature=temperature, seed=1, text=text)
                for prompt in prompts
                for checkpoint, temperature in zip(checkpoints, (0.7, 1.0), strict=True)
            ]
        )
        Comparison.objects.bulk_create(
            [
                Comparison(batch=batch, prompt=prompt, first_response=first_row, second_response=second_row)
                for prompt, first_row, second_row in zip(prompts, responses[::2], responses[1::2], strict=True)
            ]
        )
    return batch_open(batch=batch).pk


def seed_history(comparisons: int) -> None:
    """A closed earlier batch, fully annotated: a live database's tables are never empty, and plans depend on it."""
    from backend.batches.models import Annotation, Assignment, Batch, Comparison
    from backend.batches.services.batches import batch_close

    batch = Batch.objects.get(pk=seed_batch("bench-history", comparisons))
    annotators = seed_annotators("bench-history", 10)
    comparisons_done = list(Comparison.objects.filter(batch=batch).order_by("id"))
    now = datetime.now(UTC)
    assignments = Assignment.objects.bulk_create(
        [
            Assignment(
                comparison=comparison,
                annotator_id=annotators[i % len(annotators)][0],
                swap=bool(i % 2),
                status=Assignment.Status.SUBMITTED,
                leased_at=now,
                expires_at=now + timedelta(minutes=15),
            )
            for i, comparison in enumerate(comparisons_done)
        ],
        batch_size=5_000,
    )
    Annotation.objects.bulk_create(
        [
            Annotation(
                assignment=assignment,
                annotator_id=assignment.annotator_id,
                comparison=comparison,
                choice="a",
                chosen_response_id=comparison.first_response_id,
                rejected_response_id=comparison.second_response_id,
                strength="better",
                time_spent_ms=1000,
                idempotency_key=f"history-{assignment.pk}",
            )
            for assignment, comparison in zip(assignments, comparisons_done, strict=True)
        ],
        batch_size=5_000,
    )
    Comparison.objects.filter(batch=batch).update(annotation_count=1)
    batch_close(batch=batch)


def seed_annotators(prefix: str, count: int) -> list[tuple[int, str]]:
    """Annotators with tokens, in bulk (no password hashing: they authenticate by token only)."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from rest_framework.authtoken.models import Token

    from backend.accounts.roles import Role

    users = User.objects.bulk_create(
        [User(username=f"{prefix}-{i}", password=make_password(None)) for i in range(count)]
    )
    group = Group.objects.get(name=Role.ANNOTATOR.value)
    membership = User.groups.through
    membership.objects.bulk_create([membership(user_id=user.pk, group_id=group.pk) for user in users])
    tokens = Token.objects.bulk_create([Token(key=Token.generate_key(), user=user) for user in users])
    return [(user.pk, token.key) for user, token in zip(users, tokens, strict=True)]


def capture_plan(
    app: Callable[..., Any], batch_id: int, warm: tuple[int, str], user: tuple[int, str]
) -> list[RequestPlan]:
    """Record one next+submit round trip of `user` (after a warm one by `warm`) and template it."""
    from backend.batches.models import Assignment

    wsgi_round_trip(app, batch_id, warm[1], "capture-warm")
    # A client in steady state has called within AUTH_CACHE_SECONDS, so its worker knows its token and roles;
    # the load's first call and one a worker sees after the cache expired pay two statements more.
    wsgi_post(app, "/api/v1/me/", user[1], method="GET")
    recorded: list[tuple[str, Event, list[tuple[Any, ...]], list[Any]]] = []
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


def time_breakdown(app: Callable[..., Any], batch_id: int, user: tuple[int, str], rounds: int) -> list[str]:
    """Single-client round trips in-process: wall time per request against time spent on the connection."""
    totals: dict[str, Counter[str]] = {"next": Counter(), "submit": Counter()}
    seconds: dict[str, float] = {}
    slowest: dict[str, float] = {}
    current = {"request": "next"}

    def on_event(event: Event, rows: list[tuple[Any, ...]], params: list[Any], elapsed: float) -> None:
        request = current["request"]
        totals[request][event.kind] += 1
        seconds[f"{request} db"] = seconds.get(f"{request} db", 0.0) + elapsed
        if event.kind != "autocommit":
            label = f"{request:<6} " + (
                abbreviate_sql(event.sql)
                if event.kind == "sql"
                else "SELECT 1 (health)"
                if event.kind == "health"
                else event.kind.upper()
            )
            slowest[label] = slowest.get(label, 0.0) + elapsed

    def timed_post(name: str, path: str, body: bytes = b"") -> bytes:
        current["request"] = name
        start, cpu = time.perf_counter(), time.process_time()
        status, content = wsgi_post(app, path, user[1], body)
        seconds[f"{name} wall"] = seconds.get(f"{name} wall", 0.0) + time.perf_counter() - start
        seconds[f"{name} cpu"] = seconds.get(f"{name} cpu", 0.0) + time.process_time() - cpu
        if status not in (200, 201):
            raise CaptureError(f"{name} answered {status}: {content[:300]!r}")
        return content

    with connection_recorder(on_event, keep_rows=False):
        for i in range(rounds):
            body = timed_post("next", f"/api/v1/batches/{batch_id}/next/")
            payload = json.dumps({**SUBMIT_BODY, "idempotency_key": f"timing-{i}"}).encode()
            timed_post("submit", f"/api/v1/assignments/{json.loads(body)['id']}/submit/", payload)
    lines = [f"Single client, in-process through backend.wsgi (no HTTP, no contention), {rounds} round trips:"]
    for name, counts in totals.items():
        wall, db, cpu = (seconds[f"{name} {part}"] * 1000 / rounds for part in ("wall", "db", "cpu"))
        lines.append(
            f"  {name:<7} {wall:6.2f} ms = on the connection {db:5.2f} ms ({counts['sql'] / rounds:.1f} statements, "
            f"{counts['health'] / rounds:.0f} health check, {counts['commit'] / rounds:.0f} commit) "
            f"+ Python {wall - db:5.2f} ms; CPU of the Django process {cpu:5.2f} ms"
        )
    lines.append("  the slowest steps on the connection (ms per round trip):")
    for label, spent in sorted(slowest.items(), key=lambda item: -item[1])[:6]:
        lines.append(f"    {spent * 1000 / rounds:6.2f}  {label}")
    return lines


def profile_lines(app: Callable[..., Any], batch_id: int, user: tuple[int, str], rounds: int) -> list[str]:
    """cProfile over `rounds` round trips: own time by package, the project's functions, the top functions."""
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(rounds):
        wsgi_round_trip(app, batch_id, user[1], f"profile-{i}")
    profiler.disable()
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values())
    by_area: Counter[str] = Counter()
    for (filename, _, function), entry in entries.items():
        by_area[code_area(filename, function)] += entry[2]  # type: ignore[assignment]
    per_round = 1000 / rounds
    lines = [f"cProfile, {rounds} in-process round trips, {total * per_round:.2f} ms each under the profiler:"]
    lines += [f"  {share / total:6.1%}  {area}" for area, share in by_area.most_common(10)]
    lines.append("  the project's functions, by cumulative ms per round trip (nested calls counted in each):")
    ours = sorted(
        (
            (entry[3], f"{Path(filename).relative_to(REPO_ROOT)}:{line} {function}")
            for (filename, line, function), entry in entries.items()
            if filename.startswith(str(REPO_ROOT / "backend"))
        ),
        reverse=True,
    )
    lines += [f"    {cumulative * per_round:7.2f}  {where}" for cumulative, where in ours[:14]]
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(10)
    lines.append("  top functions by own time:")
    lines += ["    " + line for line in buffer.getvalue().splitlines() if line.strip() and "function calls" not in line]
    return lines


def code_area(filename: str, function: str) -> str:
    """A coarse place in the stack for a profiled function."""
    if "psycopg2" in function or "psycopg2" in filename:
        return "psycopg2 (driver, network wait, server)"
    for marker, area in (
        ("/django/db/models/sql/", "django ORM: SQL compiler"),
        ("/django/db/models/", "django ORM: querysets, models"),
        ("/django/db/", "django db: backend, transactions"),
        ("/rest_framework/", "DRF: views, auth, serializers"),
        ("/django/", "django: handler, middleware, urls, other"),
        ("/backend/", "backend (this project)"),
    ):
        if marker in filename:
            return area
    return "Python stdlib and builtins"


def child_seed(config: Config, out: Path) -> int:
    """Seed, capture and time; write a Seeded as JSON to `out`. Runs in its own process."""
    sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()
    from django.db import connection

    from backend.wsgi import application

    seed_ids()
    extra = config.sequential * (2 if config.profile else 1)
    batch_ids = {
        side: seed_batch(f"bench-{side}", config.comparisons + (extra + 2 if side == "django" else 0)) for side in SIDES
    }
    users = {side: {str(n): seed_annotators(f"bench-{side}-{n}", n) for n in config.clients} for side in SIDES}
    helpers = seed_annotators("bench-capture", 3)
    seed_history(config.comparisons)
    with connection.cursor() as cursor:  # what autovacuum keeps up in a live database: statistics, visibility map
        cursor.execute("VACUUM ANALYZE")
    plan = capture_plan(application, batch_ids["django"], helpers[0], helpers[1])
    breakdown: list[str] = []
    if config.sequential:
        breakdown += time_breakdown(application, batch_ids["django"], helpers[2], config.sequential)
        if config.profile:
            breakdown += profile_lines(application, batch_ids["django"], helpers[2], config.sequential)
    connection.close()
    seeded = Seeded(batch_ids, 1, {s: {k: list(v) for k, v in u.items()} for s, u in users.items()}, plan, breakdown)
    out.write_text(json.dumps(asdict(seeded)))
    return 0


# ---------------------------------------------------------------------------------------- load: stats


@dataclass
class Window:
    """Phase timing on time.perf_counter(): warm-up until `measure_from`, measured until `stop`."""

    measure_from: float
    stop: float


@dataclass
class PhaseStats:
    """What the clients of one phase saw."""

    window: Window
    latencies: list[tuple[float, float]] = field(default_factory=list)
    """(end, seconds) of each completed round trip, warm-up and tail included."""
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    submitted: int = 0
    """201s (Django) or committed submit transactions (raw), over the whole phase."""
    statements: int = 0
    retries: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds used during the phase, by who (CpuMeter)."""
    wall_s: float = 0.0
    waits: dict[str, float] = field(default_factory=dict)
    """Average client backends per state and wait event (--sample-waits)."""
    spent: dict[tuple[int, int], float] = field(default_factory=dict)
    """Raw side: seconds per replayed step, keyed by (request index, event index) in the plan."""

    def merge(self, other: PhaseStats) -> None:
        self.latencies += other.latencies
        self.errors.update(other.errors)
        self.samples += other.samples[: max(0, 5 - len(self.samples))]
        self.submitted += other.submitted
        self.statements += other.statements
        self.retries += other.retries
        for step, seconds in other.spent.items():
            self.spent[step] = self.spent.get(step, 0.0) + seconds

    def error(self, what: str, detail: str) -> None:
        self.errors[what] += 1
        if len(self.samples) < 5:
            self.samples.append(f"{what}: {detail[:300]}")

    @property
    def measured(self) -> list[float]:
        return sorted(s for end, s in self.latencies if self.window.measure_from <= end <= self.window.stop)

    @property
    def rate(self) -> float:
        return len(self.measured) / (self.window.stop - self.window.measure_from)

    def percentile_ms(self, q: float) -> float:
        values = self.measured
        if not values:
            return math.nan
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))] * 1000

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class NoLease(RuntimeError):
    """The replayed lease found nothing, or gave up after LEASE_ATTEMPTS tries: Django answers 204 then."""


# ---------------------------------------------------------------------------------- load: Django side


class StaleConnection(ConnectionError):
    """The server closed a kept-alive connection before answering; the request was not handled."""


class HttpConnection:
    """One HTTP/1.1 keep-alive connection, reopened when the server closes it (sync workers always do)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, path: str, headers: bytes, body: bytes = b"") -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(LOOPBACK, self.port)
            assert self.reader is not None
            head = f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Length: {len(body)}\r\n".encode()
            self.writer.write(head + headers + b"\r\n" + body)
            try:
                return await self.read_response(self.reader)
            except StaleConnection:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def read_response(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise StaleConnection() from exc
            raise
        except ConnectionResetError as exc:
            raise StaleConnection() from exc
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, close = None, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = value == b"close"
        if status == 204 or status == 304 or status < 200:
            body = b""
        elif chunked:
            body = await self.read_chunked(reader)
        elif length is not None:
            body = await reader.readexactly(length)
        else:
            body, close = await reader.read(), True
        if close:
            self.close()
        return status, body

    @staticmethod
    async def read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)


async def django_client(port: int, batch_id: int, user: tuple[int, str], stats: PhaseStats) -> None:
    """Next then submit, again and again, until the window closes; errors are counted, never raised."""
    connection = HttpConnection(port)
    headers = f"Authorization: Token {user[1]}\r\nContent-Type: application/json\r\n".encode()
    round_number = 0
    try:
        while time.perf_counter() < stats.window.stop:
            start = time.perf_counter()
            try:
                status, body = await connection.post(f"/api/v1/batches/{batch_id}/next/", headers)
                if status != 200:
                    detail = "nothing left for this client" if status == 204 else body.decode(errors="replace")
                    stats.error(f"next {status}", detail)
                    await asyncio.sleep(0.05)
                    continue
                assignment_id = json.loads(body)["id"]
                round_number += 1
                key = f"dj-{user[0]}-{round_number}"
                payload = json.dumps({**SUBMIT_BODY, "idempotency_key": key}).encode()
                status, body = await connection.post(f"/api/v1/assignments/{assignment_id}/submit/", headers, payload)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                connection.close()
                stats.error(f"http {type(exc).__name__}", str(exc))
                await asyncio.sleep(0.05)
                continue
            if status != 201:
                stats.error(f"submit {status}", body.decode(errors="replace"))
                continue
            stats.submitted += 1
            end = time.perf_counter()
            stats.latencies.append((end, end - start))
    finally:
        connection.close()


def run_django_phase(
    config: Config, port: int, batch_id: int, users: list[tuple[int, str]], meter: CpuMeter
) -> PhaseStats:
    async def phase() -> PhaseStats:
        begin = time.perf_counter()
        stats = PhaseStats(Window(begin + config.warmup, begin + config.warmup + config.seconds))
        await asyncio.gather(*(django_client(port, batch_id, user, stats) for user in users))
        return stats

    sampler = WaitSampler(config) if config.sample_waits else None
    before, begin = meter.snapshot(), time.perf_counter()
    stats = asyncio.run(phase())
    stats.cpu, stats.wall_s = meter.since(before), time.perf_counter() - begin
    if sampler is not None:
        stats.waits = sampler.finish()
    return stats


# ------------------------------------------------------------------------------------- load: raw side


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


@dataclass
class RawSync:
    """Barriers of a raw phase: all connected before the clock starts; connections kept until CPU is read."""

    ready: threading.Barrier
    finished: threading.Barrier
    release: threading.Barrier
    lock: threading.Lock = field(default_factory=threading.Lock)


def raw_client(
    params: dict[str, Any],
    plan: list[RequestPlan],
    static: dict[str, Any],
    stats: PhaseStats,
    sync: RawSync,
) -> None:
    """Replay round trips on one connection until the window closes; errors are counted, never raised."""
    try:
        conn = psycopg2.connect(**params)
        conn.autocommit = True
        with conn.cursor() as cursor:  # what Django does once per new connection (backend._configure_timezone)
            cursor.execute("SET TIME ZONE %s", ["UTC"])
    except psycopg2.Error:
        sync.ready.abort()
        raise
    local = PhaseStats(stats.window)
    round_number = 0
    try:
        sync.ready.wait()
        while time.perf_counter() < local.window.stop:
            start = time.perf_counter()
            round_number += 1
            values = {**static, "idempotency_key": f"raw-{static['user_id']}-{round_number}"}
            try:
                statements, retries = replay_round_trip(conn, plan, values, local.spent)
            except NoLease as exc:
                conn.rollback()
                conn.autocommit = True
                local.error(str(exc), f"user {static['user_id']}")
                time.sleep(0.05)
                continue
            except psycopg2.Error as exc:
                conn.rollback()
                conn.autocommit = True
                local.error(f"sql {type(exc).__name__}", str(exc))
                continue
            local.statements += statements
            local.retries += retries
            local.submitted += 1
            end = time.perf_counter()
            local.latencies.append((end, end - start))
    finally:
        with sync.lock:
            stats.merge(local)
        try:
            sync.finished.wait(timeout=120)
            sync.release.wait(timeout=120)
        except threading.BrokenBarrierError:
            pass
        conn.close()


def run_raw_phase(
    config: Config,
    plan: list[RequestPlan],
    batch_id: int,
    users: list[tuple[int, str]],
    meter: CpuMeter,
) -> PhaseStats:
    params = pg_params(config, config.db_name)
    parties = len(users) + 1
    sync = RawSync(threading.Barrier(parties), threading.Barrier(parties), threading.Barrier(parties))
    stats = PhaseStats(Window(0.0, 0.0))
    threads = [
        threading.Thread(
            target=raw_client,
            args=(params, plan, {"user_id": uid, "token": key, "batch_id": batch_id}, stats, sync),
            daemon=True,
        )
        for uid, key in users
    ]
    for thread in threads:
        thread.start()
    sampler = WaitSampler(config) if config.sample_waits else None
    before = meter.snapshot()
    begin = time.perf_counter()
    stats.window.measure_from, stats.window.stop = begin + config.warmup, begin + config.warmup + config.seconds
    sync.ready.wait()
    sync.finished.wait()
    stats.cpu = meter.since(before)
    stats.wall_s = time.perf_counter() - begin
    if sampler is not None:
        stats.waits = sampler.finish()
    sync.release.wait()
    for thread in threads:
        thread.join()
    return stats


# ---------------------------------------------------------------------------------- where time goes


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent during a phase by the load generator, gunicorn, PostgreSQL, and everything else.

    Counted per process that lives at the end of the phase (raw clients keep their connections open
    until then), so a process that exits in between takes nothing away.
    """

    def __init__(self, gunicorn_pid: int) -> None:
        self.gunicorn_pid = gunicorn_pid

    def owner(self, pid: int, parent: int, name: str) -> str:
        if pid == os.getpid():
            return "load generator"
        if pid == self.gunicorn_pid:
            return "gunicorn"
        if parent == self.gunicorn_pid:
            return f"worker {pid}"
        if name == "postgres" or name.startswith("postgres:"):
            return "postgres"
        return ""

    def snapshot(self) -> dict[int, tuple[str, float]]:
        """pid -> (owner, user + system seconds); pid 0 holds the whole machine's busy seconds."""
        seen: dict[int, tuple[str, float]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text[text.rindex(")") + 2 :].split()
            owner = self.owner(int(entry.name), int(fields[1]), name)
            if owner:
                seen[int(entry.name)] = (owner, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
        ticks = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        seen[0] = ("machine", (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS)
        return seen

    def since(self, before: dict[int, tuple[str, float]]) -> dict[str, float]:
        """Seconds per owner; gunicorn's total includes its workers, each also listed as "worker PID"."""
        used = dict.fromkeys(("load generator", "gunicorn", "postgres", "other processes"), 0.0)
        machine = 0.0
        for pid, (owner, seconds) in self.snapshot().items():
            spent = seconds - before[pid][1] if pid in before and before[pid][0] == owner else seconds
            if pid == 0:
                machine = spent
            elif owner.startswith("worker"):
                used["gunicorn"] += spent
                used[owner] = spent
            else:
                used[owner] += spent
        accounted = sum(spent for owner, spent in used.items() if not owner.startswith("worker"))
        used["other processes"] = max(0.0, machine - accounted)
        return used


class WaitSampler:
    """Samples what the bench database's client backends are doing, every 50 ms, on a connection of its own."""

    def __init__(self, config: Config) -> None:
        self.conn = psycopg2.connect(**pg_params(config, config.db_name))
        self.conn.autocommit = True
        self.name = config.db_name
        self.counts: Counter[str] = Counter()
        self.samples = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        with self.conn.cursor() as cursor:
            while not self.stop.wait(0.05):
                cursor.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                    "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                    [self.name],
                )
                self.samples += 1
                for state, wait_type, wait in cursor.fetchall():
                    self.counts[f"{state} {wait_type or 'on CPU'}{':' + wait if wait else ''}"] += 1

    def finish(self) -> dict[str, float]:
        """Average number of backends in each state over the phase."""
        self.stop.set()
        self.thread.join()
        self.conn.close()
        return {key: count / max(self.samples, 1) for key, count in self.counts.most_common(6)}


# ------------------------------------------------------------------------------------------ reporting


def print_plan(plan: list[RequestPlan], full: bool) -> None:
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


def verdict(level: int, django: PhaseStats, ratio: float) -> str:
    target = TARGETS.get(level)
    if target is None:
        return "(no target)"
    misses = []
    if target.min_ratio is not None and not ratio >= target.min_ratio:
        misses.append(f"ratio {ratio:.2f} < {target.min_ratio:.2f}")
    p99 = django.percentile_ms(0.99)
    if not p99 < target.p99_ms:
        misses.append(f"p99 {p99:.0f} >= {target.p99_ms:.0f} ms")
    return f"{target.describe()}: " + ("PASS" if not misses else "FAIL (" + "; ".join(misses) + ")")


def print_table(results: list[tuple[int, PhaseStats, PhaseStats]], seconds: float) -> None:
    header = (
        f"{'clients':>7} | {'django rt/s':>11} {'p50':>7} {'p95':>7} {'p99':>7} {'err':>4} | "
        f"{'raw rt/s':>9} {'p50':>7} {'p95':>7} {'p99':>7} {'err':>4} | {'ratio':>5} | target"
    )
    print(f"\nRound trips (next + submit) per second and latency in ms, {seconds:g} s measured per phase:")
    print(header)
    print("-" * len(header))
    for level, django, raw in results:
        ratio = django.rate / raw.rate if raw.rate else math.nan
        cells = []
        for stats in (django, raw):
            p = [stats.percentile_ms(q) for q in (0.50, 0.95, 0.99)]
            width = 11 if stats is django else 9
            cells.append(f"{stats.rate:>{width}.1f} {p[0]:7.1f} {p[1]:7.1f} {p[2]:7.1f} {stats.error_count:4d}")
        print(f"{level:>7} | {cells[0]} | {cells[1]} | {ratio:5.2f} | {verdict(level, django, ratio)}")
    bounds = [
        f"{level} clients under {target.p99_ms:.0f} ms need more than {level / (target.p99_ms / 1000):.0f} rt/s"
        for level, target in TARGETS.items()
        if level in {result[0] for result in results}
    ]
    if bounds:
        print(
            "(Clients send the next round trip as soon as one ends, so mean latency = clients / rate (Little's law): "
            + "; ".join(bounds)
            + ", before any tail.)"
        )


def step_label(plan: list[RequestPlan], step: tuple[int, int]) -> str:
    request = plan[step[0]]
    event = request.events[step[1]]
    what = (
        abbreviate_sql(event.sql)
        if event.kind == "sql"
        else "SELECT 1 (health)"
        if event.kind == "health"
        else event.kind.upper()
    )
    return f"{request.name:<6} {what}"


def print_phase_notes(results: list[tuple[int, PhaseStats, PhaseStats]], plan: list[RequestPlan]) -> None:
    """Per phase: round trips, errors, where the CPU went, the raw side's slowest steps, the waits (--sample-waits)."""
    for level, django, raw in results:
        for side, stats in (("django", django), ("raw", raw)):
            problems = dict(stats.errors)
            extra = ""
            if side == "raw" and stats.submitted:
                extra = f", {stats.statements / stats.submitted:.1f} statements and {stats.retries} lease retries"
            elif side == "raw":
                extra = ", 0 statements"
            cores = ", ".join(
                f"{who} {used / stats.wall_s:.2f}" for who, used in stats.cpu.items() if not who.startswith("worker")
            )
            workers = [used / stats.wall_s for who, used in stats.cpu.items() if who.startswith("worker")]
            if side == "django" and workers:
                cores += " (gunicorn workers: " + " ".join(f"{used:.2f}" for used in sorted(workers)) + ")"
            print(f"  {level:>3} clients {side:<6} {stats.submitted} round trips in all{extra}; errors {problems or 0}")
            print(f"      CPU in cores (2 in all): {cores}")
            if stats.waits:
                waits = ", ".join(f"{state} {count:.1f}" for state, count in stats.waits.items())
                print(f"      backends on average: {waits}")
            if stats.spent and stats.submitted:
                slowest = sorted(stats.spent.items(), key=lambda item: -item[1])[:4]
                steps = "; ".join(
                    f"{seconds * 1000 / stats.submitted:.1f} {step_label(plan, step)}" for step, seconds in slowest
                )
                print(f"      slowest steps, ms per round trip: {steps}")
            for sample in stats.samples:
                print(f"      e.g. {sample}")


def verify_database(config: Config, seeded: Seeded, submitted: dict[str, int]) -> bool:
    """The integrity checks after the load, per side; True when all hold."""
    conn = psycopg2.connect(**pg_params(config, config.db_name))
    conn.autocommit = True
    checks = {
        "comparisons above their overlap": """
            SELECT count(*) FROM (
                SELECT a.comparison_id FROM batches_annotation a JOIN batches_comparison c ON c.id = a.comparison_id
                WHERE c.batch_id = %(batch)s AND a.skip_reason = ''
                GROUP BY a.comparison_id HAVING count(*) > %(overlap)s
            ) t""",
        "annotator annotated a comparison twice": """
            SELECT count(*) FROM (
                SELECT 1 FROM batches_annotation a JOIN batches_comparison c ON c.id = a.comparison_id
                WHERE c.batch_id = %(batch)s GROUP BY a.comparison_id, a.annotator_id HAVING count(*) > 1
            ) t""",
        "idempotency key stored twice": """
            SELECT count(*) FROM (
                SELECT 1 FROM batches_annotation a JOIN batches_comparison c ON c.id = a.comparison_id
                WHERE c.batch_id = %(batch)s GROUP BY a.annotator_id, a.idempotency_key HAVING count(*) > 1
            ) t""",
        "annotation_count out of step": """
            SELECT count(*) FROM batches_comparison c WHERE c.batch_id = %(batch)s AND c.annotation_count <> (
                SELECT count(*) FROM batches_annotation a WHERE a.comparison_id = c.id AND a.skip_reason = '')""",
        "leases left open by the clients": """
            SELECT count(*) FROM batches_assignment s JOIN auth_user u ON u.id = s.annotator_id
            WHERE s.status = 'leased' AND u.username LIKE %(prefix)s""",
    }
    ok = True
    print("\nDatabase checks after the load:")
    try:
        with conn.cursor() as cursor:
            for side in SIDES:
                args = {"batch": seeded.batch_ids[side], "overlap": seeded.overlap, "prefix": f"bench-{side}-%"}
                for label, sql in checks.items():
                    cursor.execute(sql, args)
                    count = cursor.fetchone()[0]  # type: ignore[index]
                    ok = ok and count == 0
                    print(f"  {side:<6} {label:<40} {count:>6}  {'ok' if count == 0 else 'FAIL'}")
                cursor.execute(
                    "SELECT count(*) FROM batches_annotation a JOIN auth_user u ON u.id = a.annotator_id "
                    "WHERE u.username LIKE %(prefix)s",
                    args,
                )
                stored = cursor.fetchone()[0]  # type: ignore[index]
                same = stored == submitted[side]
                ok = ok and same
                print(
                    f"  {side:<6} {'annotations stored / submits answered':<40} "
                    f"{stored:>6} / {submitted[side]}  {'ok' if same else 'FAIL'}"
                )
                cursor.execute(
                    "SELECT count(*) FILTER (WHERE annotation_count > 0), count(*) FROM batches_comparison "
                    "WHERE batch_id = %(batch)s",
                    args,
                )
                used, total = cursor.fetchone()  # type: ignore[misc]
                print(f"  {side:<6} {'comparisons used':<40} {used:>6} of {total}")
    finally:
        conn.close()
    return ok


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    defaults = Config()
    parser = argparse.ArgumentParser(
        description="Simulated annotators doing next-then-submit against gunicorn on PostgreSQL, "
        "beside raw psycopg2 replaying the same statements; prints rates, p50/p95/p99 and their ratio.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--clients", default=",".join(map(str, defaults.clients)), help="concurrency levels, comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=defaults.warmup, help="unmeasured seconds before each phase")
    parser.add_argument("--comparisons", type=int, default=defaults.comparisons, help="comparisons per side's batch")
    parser.add_argument("--worker-class", choices=("gthread", "sync"), default=defaults.worker_class)
    parser.add_argument("--workers", type=int, default=defaults.workers, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="threads per gthread worker")
    parser.add_argument("--pg-url", default=defaults.pg_url, help="PostgreSQL server (loopback only), no database")
    parser.add_argument("--db-name", default=defaults.db_name, help="bench database, dropped and re-created")
    parser.add_argument("--keep-db", action="store_true", help="keep the bench database after the run")
    parser.add_argument(
        "--sequential", type=int, default=defaults.sequential, help="in-process round trips for the SQL/Python split"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process round trips too")
    parser.add_argument("--show-sql", action="store_true", help="print the captured statements in full")
    parser.add_argument(
        "--sample-waits", action="store_true", help="sample pg_stat_activity wait events during each phase"
    )
    parser.add_argument("--internal", choices=("seed",), help=argparse.SUPPRESS)
    parser.add_argument("--internal-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    clients = tuple(int(c) for c in args.clients.split(",") if c.strip())
    if not clients or min(clients) < 1:
        parser.error("--clients needs positive integers")
    config = Config(
        clients=clients,
        seconds=args.seconds,
        warmup=args.warmup,
        comparisons=args.comparisons,
        worker_class=args.worker_class,
        workers=args.workers,
        threads=args.threads,
        pg_url=args.pg_url,
        db_name=args.db_name,
        keep_db=args.keep_db,
        sequential=args.sequential,
        profile=args.profile,
        show_sql=args.show_sql,
        sample_waits=args.sample_waits,
    )
    return config, args


def seed_in_child(config: Config, env: dict[str, str], workdir: Path) -> Seeded:
    out = workdir / "seeded.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--internal", "seed", "--internal-out", str(out)]
    command += ["--clients", ",".join(map(str, config.clients)), "--comparisons", str(config.comparisons)]
    command += ["--sequential", str(config.sequential)] + (["--profile"] if config.profile else [])
    run_checked(command, env, "seeding")
    return Seeded.load(out)


def step(message: str) -> float:
    print(f"- {message}", flush=True)
    return time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    config, args = parse_args(argv)
    if args.internal == "seed":
        return child_seed(config, args.internal_out)
    try:
        return run(config)
    except (SetupError, psycopg2.OperationalError) as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2


def run(config: Config) -> int:
    """The whole bench: setup, the phases, the report, the checks; returns the exit status."""
    env = django_environment(config)
    started = step(f"database {config.db_name}: drop, create, migrate")
    database_recreate(config)
    run_checked([sys.executable, "manage.py", "migrate", "--noinput"], env, "migrate")
    step(f"seeding {config.comparisons} comparisons per side and {sum(config.clients)} annotators per side")
    with tempfile.TemporaryDirectory(prefix="api-roundtrip-") as tmp:
        workdir = Path(tmp)
        seeded = seed_in_child(config, env, workdir)
        print_plan(seeded.plan, config.show_sql)
        server = Gunicorn(config, env, workdir)
        step(f"starting {server.describe()}")
        server.start()
        meter = CpuMeter(server.pid)
        results: list[tuple[int, PhaseStats, PhaseStats]] = []
        try:
            for level in config.clients:
                users = {side: seeded.users[side][str(level)] for side in SIDES}
                step(f"{level} clients, Django over HTTP: {config.warmup:g} s warm-up + {config.seconds:g} s")
                database_analyze(config)
                django = run_django_phase(config, server.port, seeded.batch_ids["django"], users["django"], meter)
                step(f"{level} clients, raw psycopg2: {config.warmup:g} s warm-up + {config.seconds:g} s")
                database_analyze(config)
                raw = run_raw_phase(config, seeded.plan, seeded.batch_ids["raw"], users["raw"], meter)
                print(f"    django {django.rate:.1f} rt/s, raw {raw.rate:.1f} rt/s", flush=True)
                results.append((level, django, raw))
        finally:
            server.stop()
            log = "\n".join(line for line in server.log_path.read_text().splitlines() if not HARMLESS_LOG.search(line))
    print_table(results, config.seconds)
    print(f"({server.describe()}; the load generator shares the machine's 2 cores)")
    print_phase_notes(results, seeded.plan)
    submitted = {side: sum((d if side == "django" else r).submitted for _, d, r in results) for side in SIDES}
    ok = verify_database(config, seeded, submitted)
    errors = sum(d.error_count + r.error_count for _, d, r in results)
    if seeded.breakdown:
        print()
        print("\n".join(seeded.breakdown))
    if log:
        print(f"\ngunicorn log (tail):\n{log[-2000:]}")
    if not config.keep_db:
        database_recreate(config, create=False)
    print(
        f"\nErrors: {errors}. Database checks: {'passed' if ok else 'FAILED'}. ({time.perf_counter() - started:.0f} s)"
    )
    return 0 if ok and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
