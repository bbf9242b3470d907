"""Simulated annotators doing next-then-submit against gunicorn on PostgreSQL, beside raw psycopg2.

One run, in order:

1. A fresh database (`--db-name`, dropped and created again), migrated with `manage.py migrate`.
2. A child process seeds it through the ORM and the services: one open batch per side (Django and
   raw SQL, so neither side eats the other's comparisons or races on its overlap), `--comparisons`
   comparisons in each (one prompt and two responses apiece), overlap 1, one annotator with a token
   per simulated client and level, and a closed, fully annotated earlier batch of the same size, so
   that the assignment and annotation tables are not empty; then VACUUM ANALYZE. Without statistics
   the planner joins the lease query's NOT EXISTS against a sequential scan of assignments, and each
   lease slows down as the run adds rows.
3. The same child sends one next+submit round trip through `config.wsgi.application` (the very
   callable gunicorn runs), records everything Django does on its database connection and turns it
   into a plan the raw side replays (bench/api_replay.py). The child also times single-client round
   trips in-process (time on the connection against Python, and the process's CPU) and, with
   `--profile`, profiles them (bench/api_inprocess.py).
4. gunicorn starts on a free port of 127.0.0.1 and answers `/healthz` (bench/harness/server.py).
5. For each level of `--clients`: the Django phase (asyncio clients, raw HTTP/1.1 keep-alive), then the
   raw phase (one thread and one psycopg2 connection per client replaying the captured statements:
   the same SQL, the same locking, the same transactions, the lease's retry when its overlap filled included).
   Each phase starts with ANALYZE (the tables grow during the run, as autovacuum would follow), runs
   `--warmup` seconds unmeasured, then `--seconds` measured; a round trip counts when it completes
   inside the measured window; clients start no round trip after it and finish theirs. Beside each
   phase: the CPU used by the load generator, gunicorn (and each worker), PostgreSQL and the rest of
   the machine, and on the raw side the slowest replayed steps; `--sample-waits` adds what the
   backends wait on (pg_stat_activity every 50 ms). See bench/api_phases.py.
6. Prints one table row per level with PASS/FAIL against TARGETS (printed, never asserted), the
   errors (must be 0), then checks the database: no comparison above its overlap, no duplicate
   annotation, annotation_count in step, every 201 stored once, no lease left open.

Exit status: 0 when there were no errors and the database checks passed (whatever the targets say),
1 otherwise, 2 when setup failed (database, migrate, seeding, capture or gunicorn).

gunicorn workers: sync, 4 (two per core). Sync rather than gthread because the clients keep their connections
alive and each connection stays with the worker that accepted it: with gthread one worker ends up serving nearly
everything under one GIL while the other idles (the per-worker CPU in the phase notes shows it). Sync workers take
each request from the shared listen queue, so the load spreads evenly over them and the tail stays flat (p95
close to p99). No worker count won clearly over the noise of runs on a shared machine, so the default stays at
two per core. Override with --worker-class/--workers/--threads.

Usage:
    .venv/bin/python bench/api_roundtrip.py
    .venv/bin/python bench/api_roundtrip.py --clients 8,16,64 --seconds 15 --profile --show-sql
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and bench/sampler.py would shadow the `sampler`
# app that Django loads in the seeding child: import from the repository root instead.
_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(_ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != _ROOT / "bench")]

import psycopg2  # noqa: E402

from bench.api_inprocess import SIDES, Seeded, child_seed  # noqa: E402
from bench.api_phases import PhaseSpec, PhaseStats, print_phase_notes, run_django_phase, run_raw_phase  # noqa: E402
from bench.api_replay import print_plan  # noqa: E402
from bench.harness import SetupError, run_checked  # noqa: E402
from bench.harness.database import DEFAULT_PG_URL, Database, django_environment  # noqa: E402
from bench.harness.meters import CpuMeter  # noqa: E402
from bench.harness.server import Gunicorn  # noqa: E402


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
    pg_url: str = DEFAULT_PG_URL
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

    @property
    def database(self) -> Database:
        return Database(self.pg_url, self.db_name)

    @property
    def phase(self) -> PhaseSpec:
        return PhaseSpec(self.warmup, self.seconds, self.database, self.sample_waits)


# ------------------------------------------------------------------------------------------ reporting


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


# ------------------------------------------------------------------------------------- database checks

CHECKS = {
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


def verify_database(config: Config, seeded: Seeded, submitted: dict[str, int]) -> bool:
    """The integrity checks after the load, per side; True when all hold."""
    conn = config.database.connect()
    conn.autocommit = True
    ok = True
    print("\nDatabase checks after the load:")
    try:
        with conn.cursor() as cursor:
            for side in SIDES:
                args = {"batch": seeded.batch_ids[side], "overlap": seeded.overlap, "prefix": f"bench-{side}-%"}
                for label, sql in CHECKS.items():
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
        return child_seed(
            args.internal_out,
            clients=config.clients,
            comparisons=config.comparisons,
            sequential=config.sequential,
            profile=config.profile,
        )
    try:
        return run(config)
    except (SetupError, psycopg2.OperationalError) as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2


def run_phases(config: Config, seeded: Seeded, server: Gunicorn) -> list[tuple[int, PhaseStats, PhaseStats]]:
    """Each level of --clients: the Django phase, then the raw phase, each after a fresh ANALYZE."""
    meter = CpuMeter(server.pid)
    results: list[tuple[int, PhaseStats, PhaseStats]] = []
    for level in config.clients:
        users = {side: seeded.users[side][str(level)] for side in SIDES}
        step(f"{level} clients, Django over HTTP: {config.warmup:g} s warm-up + {config.seconds:g} s")
        config.database.analyze()
        django = run_django_phase(config.phase, server.port, seeded.batch_ids["django"], users["django"], meter)
        step(f"{level} clients, raw psycopg2: {config.warmup:g} s warm-up + {config.seconds:g} s")
        config.database.analyze()
        raw = run_raw_phase(config.phase, seeded.plan, seeded.batch_ids["raw"], users["raw"], meter)
        print(f"    django {django.rate:.1f} rt/s, raw {raw.rate:.1f} rt/s", flush=True)
        results.append((level, django, raw))
    return results


def run(config: Config) -> int:
    """The whole bench: setup, the phases, the report, the checks; returns the exit status."""
    database = config.database
    env = django_environment(database)
    started = step(f"database {config.db_name}: drop, create, migrate")
    database.recreate()
    database.migrate(env)
    step(f"seeding {config.comparisons} comparisons per side and {sum(config.clients)} annotators per side")
    with tempfile.TemporaryDirectory(prefix="api-roundtrip-") as tmp:
        workdir = Path(tmp)
        seeded = seed_in_child(config, env, workdir)
        print_plan(seeded.plan, config.show_sql)
        server = Gunicorn(
            env, workdir, workers=config.workers, worker_class=config.worker_class, threads=config.threads
        )
        step(f"starting {server.describe()}")
        server.start()
        try:
            results = run_phases(config, seeded, server)
        finally:
            server.stop()
            log = server.log()
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
        database.drop()
    print(
        f"\nErrors: {errors}. Database checks: {'passed' if ok else 'FAILED'}. ({time.perf_counter() - started:.0f} s)"
    )
    return 0 if ok and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
