"""The API bench's seeding child: seed the bench database, capture the round trip's plan (bench/api_replay.py),
and time (and profile) single-client round trips in-process through the WSGI callable gunicorn runs.

Runs in a process of its own (`api_roundtrip.py --internal seed`), with the bench's Django environment; what it
found goes back to the bench as JSON (Seeded).
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.api_replay import (
    CaptureError,
    Event,
    RequestPlan,
    capture_plan,
    connection_recorder,
    event_label,
    wsgi_post,
    wsgi_round_trip,
)
from bench.harness import REPO_ROOT
from bench.harness.http_client import SUBMIT_BODY
from bench.harness.seeding import seed_annotators, seed_batch, seed_history, seed_ids

SIDES = ("django", "raw")
"""Each side has a batch and annotators of its own, so neither eats the other's comparisons or races on its
overlap."""


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


def child_seed(out: Path, *, clients: tuple[int, ...], comparisons: int, sequential: int, profile: bool) -> int:
    """Seed, capture and time; write a Seeded as JSON to `out`. Runs in its own process."""
    import django

    django.setup()
    from django.db import connection

    from config.wsgi import application

    seed_ids()
    extra = sequential * (2 if profile else 1)
    sizes = {side: comparisons + (extra + 2 if side == "django" else 0) for side in SIDES}
    batch_ids = {side: seed_batch(f"bench-{side}", size) for side, size in sizes.items()}
    users = {side: {str(n): seed_annotators(f"bench-{side}-{n}", n) for n in clients} for side in SIDES}
    helpers = seed_annotators("bench-capture", 3)
    seed_history(comparisons)
    with connection.cursor() as cursor:  # what autovacuum keeps up in a live database: statistics, visibility map
        cursor.execute("VACUUM ANALYZE")
    plan = capture_plan(application, batch_ids["django"], helpers[0], helpers[1])
    breakdown: list[str] = []
    if sequential:
        breakdown += time_breakdown(application, batch_ids["django"], helpers[2], sequential)
        if profile:
            breakdown += profile_lines(application, batch_ids["django"], helpers[2], sequential)
    connection.close()
    seeded = Seeded(batch_ids, 1, {s: {k: list(v) for k, v in u.items()} for s, u in users.items()}, plan, breakdown)
    out.write_text(json.dumps(asdict(seeded)))
    return 0


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
            label = f"{request:<6} {event_label(event)}"
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
    lines = [f"Single client, in-process through config.wsgi (no HTTP, no contention), {rounds} round trips:"]
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
