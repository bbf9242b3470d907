"""Export throughput and memory on PostgreSQL: `export_build` to JSONL and to Parquet against `COPY ... TO STDOUT`.

One run, in order:

1. A database (`--db-name`), dropped, created and migrated with `manage.py migrate`, then filled with COPY FROM
   STDIN from Python generators: 2 policy checkpoints, `--annotators` annotators, one open batch per size in
   `--rows` (the sizes are cumulative: `--rows 100000,1000000` gives a batch of 100,000 comparisons and one of
   900,000), a prompt per comparison (20-60 words; every 100th continues a two-turn dialogue), two responses
   per prompt (50-150 words, half of them in two paragraphs; one per checkpoint), one submitted assignment and
   one annotation per comparison (overlap 1, strengths spread over the four levels, safety labels in the safety
   batches, 1,000 held out per batch). Foreign keys hold by construction (their triggers are off during the
   load: `session_replication_role = replica`); unique and check constraints are enforced as usual. Then
   VACUUM (FREEZE, ANALYZE), so the first timed read does not pay for hint bits. `--reuse` skips all this when
   the database already holds the sizes.
2. For each size N (the first batches that add up to N):
   - COPY: `COPY (the join that exports/rows.py reads, same filter, same order) TO STDOUT` into a sink that
     counts bytes; best of two runs (the first warms the caches for everyone). PostgreSQL may plan it with
     parallel workers; the export reads through a cursor, which it never runs in parallel, so one more COPY
     with `max_parallel_workers_per_gather = 0` is shown beside it, for reference (the verdict uses the first).
   - JSONL and Parquet: `export_create` + `export_build` (comparison granularity, margin scheme 'small',
     whitespace tokens) in a child process each, timed end to end (count, stream, write, hash, manifest); the
     child reports its peak RSS (VmHWM, the high-water mark of its own address space) and its CPU time.
3. Prints one table: rows/s for each, the ratios to both COPYs, CPU seconds, peak RSS, and PASS/FAIL against
   TARGET (printed, never asserted): at least 0.5x COPY's rows/s, peak RSS under 500 MB, and peak RSS flat in the
   number of rows (the largest size within 10% or 25 MB of the smallest).

Other work on the machine slows COPY and the exports differently (COPY runs three processes on two cores): read
the ratios from a quiet machine, and the CPU seconds when it is not.

Exit status: 0 when every step ran (whatever the targets say), 2 when setup or an export failed.

Usage:
    .venv/bin/python bench/export.py                               # 100k and 1M, fresh database
    .venv/bin/python bench/export.py --reuse                       # same, keeping an already-filled database
    .venv/bin/python bench/export.py --rows 20000,100000 --profile  # and where each export spends its time
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and bench/sampler.py would shadow the
# ``sampler`` app that Django loads in the export child: import from the repository root instead.
_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(_ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != _ROOT / "bench")]

import psycopg2  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.export_fill import CopySink, fill  # noqa: E402
from bench.harness import REPO_ROOT, SetupError  # noqa: E402
from bench.harness.database import DEFAULT_PG_URL, Database, django_environment  # noqa: E402

FORMATS = ("jsonl", "parquet")
MARGIN_SCHEME = "small"
# The join that exports/rows.py reads (`_annotations(...)`: Django's SQL for its values_list), as one COPY.
JOIN_SQL = """
SELECT a.comparison_id, a.annotator_id, a.strength, a.safety_label, a.chosen_response_id,
       cr.text, cc.name, cr.temperature, cr.seed,
       rr.text, rc.name, rr.temperature, rr.seed,
       p.text, p.dialogue_id, b.name, b.iso_week, b.focus, c.is_held_out,
       p.word_count, cr.word_count, rr.word_count
FROM batches_annotation a
INNER JOIN batches_comparison c ON a.comparison_id = c.id
INNER JOIN batches_batch b ON c.batch_id = b.id
LEFT OUTER JOIN batches_response cr ON a.chosen_response_id = cr.id
LEFT OUTER JOIN checkpoints_checkpoint cc ON cr.checkpoint_id = cc.id
LEFT OUTER JOIN batches_response rr ON a.rejected_response_id = rr.id
LEFT OUTER JOIN checkpoints_checkpoint rc ON rr.checkpoint_id = rc.id
INNER JOIN batches_prompt p ON c.prompt_id = p.id
WHERE a.skip_reason = '' AND NOT c.is_gold AND c.batch_id IN ({batch_ids})
ORDER BY a.comparison_id ASC, a.id ASC
"""


@dataclass(frozen=True)
class Target:
    """What an export must reach on this 2-core machine (from the issue)."""

    min_ratio: float = 0.5
    """Export rows/s over COPY rows/s, for the same rows."""
    max_rss_mb: float = 500.0
    """Peak resident memory of the export process."""
    flat_fraction: float = 0.10
    """Peak RSS at the largest size may exceed the smallest size's by this fraction (or flat_slack_mb)."""
    flat_slack_mb: float = 25.0


TARGET = Target()


@dataclass(frozen=True)
class Config:
    rows: tuple[int, ...] = (100_000, 1_000_000)
    """Cumulative sizes measured: one batch per size, each export reads the batches up to its size."""
    annotators: int = 50
    """Annotators the annotations are spread over (pseudonyms are hashed per annotator)."""
    pg_url: str = DEFAULT_PG_URL
    """PostgreSQL server (loopback only); the bench database is created on it."""
    db_name: str = "rlhf_bench_export"
    """Database dropped, created and filled for the run (kept afterwards, for --reuse)."""
    reuse: bool = False
    """Keep the database when it already holds exactly the batches that --rows asks for."""
    formats: tuple[str, ...] = FORMATS
    """Export formats measured, each in its own child process."""
    copy_runs: int = 2
    """COPY baseline runs per size; the fastest counts (the first also warms the caches)."""
    profile: bool = False
    """Run each export child under cProfile and print its top functions."""
    keep_files: bool = False
    """Keep the exported files (large at the default sizes) instead of deleting each after it is measured."""
    seed: int = 0
    """Seed of the generated data."""

    @property
    def database(self) -> Database:
        return Database(self.pg_url, self.db_name)


@dataclass(frozen=True)
class ExportResult:
    seconds: float
    rows: int
    bytes: int
    peak_rss_mb: float
    baseline_rss_mb: float
    cpu_seconds: float
    profile: str = ""

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class CopyResult:
    seconds: float
    rows: int
    bytes: int
    workers: int

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------------------------------------- database


def export_environment(config: Config, storage: Path) -> dict[str, str]:
    """The bench's Django environment (production settings, DEBUG off) against its database, exports under
    `storage`."""
    return django_environment(config.database, EXPORT_ANNOTATOR_SALT="bench-export", STORAGE_ROOT=str(storage))


def connect(config: Config, dbname: str | None = None) -> Any:
    return config.database.connect(dbname)


def batch_sizes(config: Config) -> list[int]:
    """The comparisons of each batch: the differences between the cumulative sizes."""
    return [size - before for before, size in itertools.pairwise((0, *config.rows))]


def filled_sizes(config: Config) -> list[int] | None:
    """The bench batches' comparison counts, in id order, or None when the database is missing or empty."""
    try:
        conn = connect(config)
    except psycopg2.OperationalError:
        return None
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT to_regclass('batches_batch') IS NOT NULL")
            if not cursor.fetchone()[0]:
                return None
            cursor.execute(
                "SELECT b.id, count(a.id) FROM batches_batch b "
                "LEFT JOIN batches_comparison c ON c.batch_id = b.id "
                "LEFT JOIN batches_annotation a ON a.comparison_id = c.id GROUP BY b.id ORDER BY b.id"
            )
            return [int(count) for _, count in cursor.fetchall()] or None
    finally:
        conn.close()


def database_recreate(config: Config) -> None:
    """Drop the bench database (closing whatever is still connected to it), create it and migrate it."""
    config.database.recreate()
    config.database.migrate(django_environment(config.database))


# ---------------------------------------------------------------------------------------------- measuring


def copy_baseline(config: Config, batch_ids: list[int], *, parallel: bool = True) -> CopyResult:
    """`COPY (the export's join) TO STDOUT` into a byte counter; the fastest of `copy_runs`.

    As PostgreSQL plans it (parallel workers, when it wants them), or with `max_parallel_workers_per_gather = 0`:
    one process, as a cursor runs (PostgreSQL never runs a cursor's query in parallel).
    """
    sql = JOIN_SQL.format(batch_ids=", ".join(str(batch) for batch in batch_ids))
    conn = connect(config)
    best: CopyResult | None = None
    try:
        with conn.cursor() as cursor:
            if not parallel:
                cursor.execute("SET max_parallel_workers_per_gather = 0")
            cursor.execute(f"EXPLAIN (COSTS OFF) {sql}")
            plan = "\n".join(line for (line,) in cursor.fetchall())
        workers = int(match.group(1)) if (match := re.search(r"Workers Planned: (\d+)", plan)) else 0
        for _ in range(config.copy_runs if parallel else 1):
            sink = CopySink()
            started = time.perf_counter()
            with conn.cursor() as cursor:
                cursor.copy_expert(f"COPY ({sql}) TO STDOUT", sink, size=1 << 20)
            result = CopyResult(
                seconds=time.perf_counter() - started, rows=sink.rows, bytes=sink.bytes, workers=workers
            )
            if best is None or result.seconds < best.seconds:
                best = result
        conn.rollback()
    finally:
        conn.close()
    assert best is not None
    return best


def run_export_child(config: Config, fmt: str, batch_ids: list[int], storage: Path) -> ExportResult:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child-export",
        fmt,
        "--child-batches",
        ",".join(map(str, batch_ids)),
    ]
    if config.profile:
        command.append("--profile")
    env = export_environment(config, storage)
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise SetupError(f"the {fmt} export child failed (exit {done.returncode})")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return ExportResult(**report)


def peak_rss_mb() -> float:
    """The high-water mark of this process's own address space (VmHWM; exec starts a new one)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def child_export(fmt: str, batch_ids: list[int], profile: bool) -> None:
    """In the child: one export run through the services, then one JSON line of figures on stdout."""
    import cProfile
    import io
    import pstats

    import django

    django.setup()
    from exports.services import export_build, export_create

    run, _ = export_create(
        created_by=None,
        enqueue=lambda _: None,
        filters={"batches": batch_ids},
        formats=[fmt],
        margin_scheme=MARGIN_SCHEME,
    )
    baseline = current_rss_mb()
    bar = tqdm(total=None, desc=f"export {fmt}", unit="row", unit_scale=True, leave=False, mininterval=1, disable=None)

    def on_progress(written: int, expected: int) -> None:
        bar.total = expected
        bar.update(written - bar.n)

    profiler = cProfile.Profile() if profile else None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    built = export_build(run_id=run.pk, on_progress=on_progress)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    bar.close()
    text = ""
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        text = out.getvalue()
    files = built.manifest["files"]
    report = {
        "seconds": seconds,
        "rows": built.rows_written,
        "bytes": sum(f["bytes"] for f in files),
        "peak_rss_mb": peak_rss_mb(),
        "baseline_rss_mb": baseline,
        "cpu_seconds": after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime,
        "profile": text,
    }
    print(json.dumps(report))


# ---------------------------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_table(
    config: Config,
    copies: dict[int, CopyResult],
    serial: dict[int, CopyResult],
    exports: dict[tuple[int, str], ExportResult],
) -> None:
    print()
    print(
        f"Targets: export >= {TARGET.min_ratio:.2f}x COPY rows/s; peak RSS < {TARGET.max_rss_mb:.0f} MB; peak RSS flat "
        f"in rows (largest size within {TARGET.flat_fraction:.0%} or {TARGET.flat_slack_mb:.0f} MB of the smallest)"
    )
    header = (
        f"{'rows':>10}  {'what':<14} {'seconds':>8} {'rows/s':>9} {'MB/s':>7} {'x COPY':>7} {'x 1-proc':>8} "
        f"{'CPU s':>6} {'peak RSS':>9}  verdict"
    )
    print(header)
    print("-" * len(header))
    for size in config.rows:
        copied, alone = copies[size], serial[size]
        for label, result in ((f"COPY ({copied.workers} wkrs)", copied), ("COPY 1-proc", alone)):
            rows = f"{size:,}" if result is copied else ""
            print(
                f"{rows:>10}  {label:<14} {result.seconds:8.1f} {result.rate:9,.0f} "
                f"{result.bytes / result.seconds / 1e6:7.1f} {result.rate / copied.rate:7.2f} "
                f"{result.rate / alone.rate:8.2f}"
            )
        for fmt in config.formats:
            exported = exports[(size, fmt)]
            ratio = exported.rate / copied.rate if copied.rate else 0.0
            ok = ratio >= TARGET.min_ratio and exported.peak_rss_mb < TARGET.max_rss_mb
            print(
                f"{'':>10}  {'export ' + fmt:<14} {exported.seconds:8.1f} {exported.rate:9,.0f} "
                f"{exported.bytes / exported.seconds / 1e6:7.1f} {ratio:7.2f} {exported.rate / alone.rate:8.2f} "
                f"{exported.cpu_seconds:6.1f} {exported.peak_rss_mb:6.0f} MB  {verdict(ok)}"
                + ("" if exported.rows == copied.rows else f"  ({exported.rows:,} rows written)")
            )
    if len(config.rows) > 1:
        smallest, largest = config.rows[0], config.rows[-1]
        for fmt in config.formats:
            low, high = exports[(smallest, fmt)].peak_rss_mb, exports[(largest, fmt)].peak_rss_mb
            flat = high <= low + max(low * TARGET.flat_fraction, TARGET.flat_slack_mb)
            print(
                f"{fmt:<8} peak RSS {low:.0f} MB at {smallest:,} rows, {high:.0f} MB at {largest:,} rows "
                f"({high - low:+.0f} MB): flat {verdict(flat)}"
            )
    print(
        "x COPY: against COPY as PostgreSQL plans it (the verdict); x 1-proc: against COPY in one process, as the "
        "export's cursor\nruns. CPU s: the export process's own (all threads). Peak RSS: its VmHWM, Django and "
        f"pyarrow included (after django.setup: {min(r.baseline_rss_mb for r in exports.values()):.0f} MB)."
    )


def run(config: Config) -> int:
    started = time.perf_counter()
    sizes = batch_sizes(config)
    if config.reuse and filled_sizes(config) == sizes:
        print(f"reusing {config.db_name}: batches of {', '.join(f'{size:,}' for size in sizes)} comparisons")
    else:
        print(f"creating {config.db_name}: batches of {', '.join(f'{size:,}' for size in sizes)} comparisons")
        database_recreate(config)
        fill(config.database, batch_sizes(config), annotators=config.annotators, seed=config.seed)
    copies: dict[int, CopyResult] = {}
    serial: dict[int, CopyResult] = {}
    exports: dict[tuple[int, str], ExportResult] = {}
    storage = Path(tempfile.mkdtemp(prefix="bench-export-", dir=REPO_ROOT / "var"))
    try:
        for count, size in enumerate(config.rows, start=1):
            batch_ids = list(range(1, count + 1))
            copies[size] = copied = copy_baseline(config, batch_ids)
            serial[size] = alone = copy_baseline(config, batch_ids, parallel=False)
            print(
                f"{size:>10,} rows  COPY     {copied.seconds:6.1f} s  {copied.bytes / 1e6:8.0f} MB  "
                f"({copied.workers} parallel workers planned; {alone.seconds:.1f} s in one process)",
                flush=True,
            )
            for fmt in config.formats:
                exports[(size, fmt)] = result = run_export_child(config, fmt, batch_ids, storage)
                print(
                    f"{size:>10,} rows  {fmt:<8} {result.seconds:6.1f} s  {result.bytes / 1e6:8.0f} MB  "
                    f"peak RSS {result.peak_rss_mb:.0f} MB",
                    flush=True,
                )
                if result.profile:
                    print(result.profile)
                if not config.keep_files:
                    shutil.rmtree(storage / "exports", ignore_errors=True)
    finally:
        if not config.keep_files:
            shutil.rmtree(storage, ignore_errors=True)
        else:
            print(f"files kept under {storage}")
    print_table(config, copies, serial, exports)
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s (load average {os.getloadavg()[0]:.1f})")
    return 0


def parse_args(argv: list[str] | None = None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Config()
    parser.add_argument("--rows", default=",".join(map(str, defaults.rows)), help="cumulative sizes, comma-separated")
    parser.add_argument("--annotators", type=int, default=defaults.annotators)
    parser.add_argument("--pg-url", default=defaults.pg_url)
    parser.add_argument("--db-name", default=defaults.db_name)
    parser.add_argument("--reuse", action="store_true", help="keep an already-filled database of the same sizes")
    parser.add_argument("--formats", default=",".join(defaults.formats))
    parser.add_argument("--copy-runs", type=int, default=defaults.copy_runs)
    parser.add_argument("--profile", action="store_true", help="cProfile each export child, print the top")
    parser.add_argument("--keep-files", action="store_true")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--child-export", choices=FORMATS, help=argparse.SUPPRESS)
    parser.add_argument("--child-batches", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rows = tuple(int(size.replace("_", "")) for size in args.rows.split(",") if size.strip())
    if not rows or any(b <= a for a, b in itertools.pairwise((0, *rows))):
        parser.error("--rows must be increasing positive sizes, e.g. 100000,1000000")
    formats = tuple(fmt for fmt in args.formats.split(",") if fmt)
    if set(formats) - set(FORMATS):
        parser.error(f"--formats must be among {', '.join(FORMATS)}")
    config = Config(
        rows=rows,
        annotators=args.annotators,
        pg_url=args.pg_url,
        db_name=args.db_name,
        reuse=args.reuse,
        formats=formats,
        copy_runs=max(1, args.copy_runs),
        profile=args.profile,
        keep_files=args.keep_files,
        seed=args.seed,
    )
    return config, args


def main(argv: list[str] | None = None) -> int:
    config, args = parse_args(argv)
    if args.child_export:
        child_export(args.child_export, [int(batch) for batch in args.child_batches.split(",")], config.profile)
        return 0
    try:
        return run(config)
    except SetupError as error:
        print(f"setup failed: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
