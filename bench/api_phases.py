"""The API bench's load phases: clients doing next-then-submit against gunicorn over HTTP (the Django side), and
threads replaying the captured statements on raw psycopg2 connections (the raw side), with what each phase saw.

Each phase runs `warmup` seconds unmeasured, then `seconds` measured; a round trip counts when it completes
inside the measured window; clients start no round trip after it and finish theirs. Errors are counted, never
raised.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from bench.api_replay import NoLease, RequestPlan, event_label, replay_round_trip
from bench.harness.database import Database
from bench.harness.http_client import SUBMIT_BODY, HttpConnection
from bench.harness.meters import CpuMeter, WaitSampler


@dataclass(frozen=True)
class PhaseSpec:
    """How long each phase runs, and where its wait sampler (`sample_waits`) looks."""

    warmup: float
    seconds: float
    database: Database
    sample_waits: bool = False

    def window(self, begin: float) -> Window:
        return Window(begin + self.warmup, begin + self.warmup + self.seconds)

    def sampler(self) -> WaitSampler | None:
        return WaitSampler(self.database) if self.sample_waits else None


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


# ------------------------------------------------------------------------------------------ Django side


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
    spec: PhaseSpec, port: int, batch_id: int, users: list[tuple[int, str]], meter: CpuMeter
) -> PhaseStats:
    """One asyncio client and one keep-alive connection per user, all at once, over one phase."""

    async def phase() -> PhaseStats:
        stats = PhaseStats(spec.window(time.perf_counter()))
        await asyncio.gather(*(django_client(port, batch_id, user, stats) for user in users))
        return stats

    sampler = spec.sampler()
    before, begin = meter.snapshot(), time.perf_counter()
    stats = asyncio.run(phase())
    stats.cpu, stats.wall_s = meter.since(before), time.perf_counter() - begin
    if sampler is not None:
        stats.waits = sampler.finish()
    return stats


# --------------------------------------------------------------------------------------------- raw side


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
    spec: PhaseSpec, plan: list[RequestPlan], batch_id: int, users: list[tuple[int, str]], meter: CpuMeter
) -> PhaseStats:
    """One thread and one psycopg2 connection per user replaying `plan`, over one phase."""
    params = spec.database.params()
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
    sampler = spec.sampler()
    before = meter.snapshot()
    begin = time.perf_counter()
    window = spec.window(begin)
    stats.window.measure_from, stats.window.stop = window.measure_from, window.stop
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


# ---------------------------------------------------------------------------------------------- notes


def step_label(plan: list[RequestPlan], step: tuple[int, int]) -> str:
    request = plan[step[0]]
    return f"{request.name:<6} {event_label(request.events[step[1]])}"


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
