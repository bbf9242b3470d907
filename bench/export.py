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
     counts bytes; best of two runs (the first warms the caches for everyone). PostgreSQL plans it with parallel
     workers at 1M rows; the export reads through a cursor, which it never runs in parallel, so one more COPY
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

The full run (1M rows, fill included) takes about five minutes on two cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import psycopg2
import psycopg2.extensions
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path and bench/sampler.py would shadow the
# ``sampler`` app that Django loads in the export child: import from the repository root instead.
sys.path[:] = [str(REPO_ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != REPO_ROOT / "bench")]
LOOPBACK = "127.0.0.1"
FORMATS = ("jsonl", "parquet")
MARGIN_SCHEME = "small"
STRENGTHS = ("significantly_better", "better", "slightly_better", "negligibly_better_or_unsure")
SAFETY_LABELS = ("chosen_safe_other_unsafe", "both_safe", "both_unsafe")
CHECKPOINTS = (("policy-w01-sft", 0.7), ("policy-w02-ppo", 1.0))
HELD_OUT_PER_BATCH = 1000
DIALOGUE_EVERY = 100
PROMPT_WORDS = (20, 60)
RESPONSE_WORDS = (50, 150)
TURN_WORDS = (10, 40)
NOW = "2026-11-23 10:00:00+00"
COPY_CHUNK_ROWS = 2000
# Tables the fill writes, in load order (parents first); their identities restart after the largest id.
FILLED = (
    "auth_user",
    "checkpoints_checkpoint",
    "batches_batch",
    "batches_batch_checkpoints",
    "batches_dialogue",
    "batches_turn",
    "batches_prompt",
    "batches_response",
    "batches_comparison",
    "batches_assignment",
    "batches_annotation",
)

# The join that exports/rows.py reads (`_annotations(...)`: Django's SQL for its values_list), as one COPY.
JOIN_SQL = """
SELECT a.comparison_id, a.annotator_id, a.strength, a.safety_label, a.chosen_response_id,
       cr.text, cc.name, cr.temperature, cr.seed,
       rr.text, rc.name, rr.temperature, rr.seed,
       p.text, p.dialogue_id, b.name, b.iso_week, b.focus, c.is_held_out
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


class SetupError(Exception):
    """The database, the migration, the fill or an export child failed: the run cannot go on."""


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
    pg_url: str = f"postgres://postgres@{LOOPBACK}:5432"
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
    """Keep the exported files (several GB at 1M rows) instead of deleting each after it is measured."""
    seed: int = 0
    """Seed of the generated data."""


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
    return url._replace(netloc=url.netloc.replace("localhost", LOOPBACK), path=f"/{config.db_name}").geturl()


def django_environment(config: Config, storage: Path) -> dict[str, str]:
    """Production settings (DEBUG off) against the bench database, exports under `storage`."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="backend.settings.production",
        SECRET_KEY=secrets.token_hex(25),
        EXPORT_ANNOTATOR_SALT="bench-export",
        DEBUG="0",
        DATABASE_URL=database_url(config),
        CELERY_BROKER_URL=f"redis://{LOOPBACK}:6379/0",
        STORAGE_ROOT=str(storage),
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


def connect(config: Config, dbname: str | None = None) -> Any:
    return psycopg2.connect(**pg_params(config, dbname or config.db_name))


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
    admin = connect(config, "postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            name = psycopg2.extensions.quote_ident(config.db_name, cursor)
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cursor.execute(f"CREATE DATABASE {name}")
    finally:
        admin.close()
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="backend.settings.test",
        DATABASE_URL=database_url(config),
        SECRET_KEY=secrets.token_hex(25),
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SetupError(f"manage.py migrate failed (exit {done.returncode})")


# ---------------------------------------------------------------------------------------------- fill


class Words:
    """Cheap text of a given number of words: slices of one long stream of Zipf-distributed pseudo-words."""

    def __init__(self, rng: random.Random, stream_words: int = 1_000_000, vocabulary: int = 5000) -> None:
        syllables = ("ka", "lo", "mi", "re", "su", "ten", "an", "ver", "ing", "pro", "ti", "ca", "de", "mon", "sel")
        words = []
        for rank in range(vocabulary):
            word = "".join(rng.choice(syllables) for _ in range(1 + rank % 3 + (rank % 7 == 0)))
            words.append(word + ("." if rank % 11 == 5 else "," if rank % 13 == 7 else ""))
        weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(vocabulary)))
        picked = rng.choices(words, cum_weights=weights, k=stream_words)
        self.stream = " ".join(picked)
        # starts[i]: where word i begins; a text of n words from i ends one character before starts[i + n].
        self.starts = array("q", itertools.accumulate((len(word) + 1 for word in picked), initial=0))
        self.rng = rng

    def text(self, low: int, high: int, *, paragraphs: bool = False) -> str:
        """Between low and high words, in COPY's text format, then a tab and the word count (the column the app
        stores beside each text); `paragraphs`: two, split by a blank line."""
        count = self.rng.randint(low, high)
        first = self.rng.randrange(len(self.starts) - count - 1)
        start, end = self.starts[first], self.starts[first + count] - 1
        if not paragraphs:
            return f"{self.stream[start:end]}\t{count}"
        space = self.starts[first + self.rng.randrange(1, count)] - 1
        return f"{self.stream[start:space]}\\n\\n{self.stream[space + 1 : end]}\t{count}"


class CopySource:
    """A file-like object over an iterator of COPY text lines; psycopg2's copy_expert reads it in chunks."""

    def __init__(self, lines: Iterator[str], progress: tqdm) -> None:  # type: ignore[type-arg]
        self.lines = lines
        self.progress = progress

    def read(self, size: int = -1) -> str:
        chunk = list(itertools.islice(self.lines, COPY_CHUNK_ROWS))
        self.progress.update(len(chunk))
        return "".join(chunk)


class CopySink:
    """Where COPY TO STDOUT writes: counts the bytes and the rows (one line each), keeps nothing."""

    def __init__(self) -> None:
        self.bytes = 0
        self.rows = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        self.rows += data.count(b"\n")
        return len(data)


@dataclass(frozen=True)
class Judgement:
    annotator: int
    swap: bool
    choice: str
    strength: str
    label_index: int
    time_spent_ms: int


def judgements(seed: int, count: int, annotators: int) -> Iterator[Judgement]:
    """The same sequence for the assignments and the annotations (one of each per comparison)."""
    rng = random.Random(seed * 7919 + 1)
    for _ in range(count):
        yield Judgement(
            annotator=rng.randrange(annotators) + 1,
            swap=rng.random() < 0.5,
            choice="a" if rng.random() < 0.5 else "b",
            strength=STRENGTHS[rng.randrange(len(STRENGTHS))],
            label_index=rng.randrange(len(SAFETY_LABELS)),
            time_spent_ms=rng.randrange(5_000, 180_000),
        )


def copy_in(cursor: Any, table: str, columns: str, lines: Iterator[str], total: int) -> None:
    with tqdm(
        total=total, desc=f"fill {table}", unit="row", unit_scale=True, leave=False, mininterval=1, disable=None
    ) as bar:
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", CopySource(lines, bar))


def fill(config: Config) -> None:
    """Load the whole data set with COPY in one transaction, then restart identities and vacuum."""
    sizes = batch_sizes(config)
    total = sum(sizes)
    rng = random.Random(config.seed)
    started = time.perf_counter()
    words = Words(rng)
    batch_of = list(itertools.chain.from_iterable([index + 1] * size for index, size in enumerate(sizes)))
    batch_start = list(itertools.accumulate(sizes, initial=0))
    focus = ["helpfulness" if index % 2 == 0 else "safety" for index in range(len(sizes))]
    held_out_every = [max(1, size // min(HELD_OUT_PER_BATCH, max(1, size // 10))) for size in sizes]
    dialogues = total // DIALOGUE_EVERY

    def users() -> Iterator[str]:
        for user in range(1, config.annotators + 1):
            yield f"{user}\t!\tf\tannotator-{user:03d}\t\t\tannotator-{user:03d}@example.org\tf\tt\t{NOW}\n"

    def checkpoints() -> Iterator[str]:
        for index, (name, _) in enumerate(CHECKPOINTS, start=1):
            parent = index - 1 if index > 1 else "\\N"
            yield f"{index}\t{name}\tpolicy\t/models/{name}\timport\t\t{NOW}\t{parent}\n"

    def batches() -> Iterator[str]:
        for index, size in enumerate(sizes, start=1):
            yield (
                f"{index}\tbench-export-{index}\t2026-W{index:02d}\t{focus[index - 1]}\topen\t[0.7, 1.0]\t0.9\t512\t"
                f"{size}\t1\t{HELD_OUT_PER_BATCH}\t0.1\t{NOW}\t\t\tf\t0.05\tbalanced\t{NOW}\t{NOW}\t{NOW}\n"
            )

    def batch_checkpoints() -> Iterator[str]:
        for index in range(len(sizes)):
            for checkpoint in range(1, len(CHECKPOINTS) + 1):
                yield f"{index * len(CHECKPOINTS) + checkpoint}\t{index + 1}\t{checkpoint}\n"

    def dialogue_rows() -> Iterator[str]:
        for dialogue in range(1, dialogues + 1):
            yield f"{dialogue}\t{NOW}\n"

    def turns() -> Iterator[str]:
        for dialogue in range(1, dialogues + 1):
            yield f"{2 * dialogue - 1}\t0\tuser\t{words.text(*TURN_WORDS)}\t{dialogue}\n"
            yield f"{2 * dialogue}\t1\tassistant\t{words.text(*RESPONSE_WORDS)}\t{dialogue}\n"

    def prompts() -> Iterator[str]:
        for prompt in range(1, total + 1):
            dialogue = prompt // DIALOGUE_EVERY if prompt % DIALOGUE_EVERY == 0 else "\\N"
            safety = "t" if focus[batch_of[prompt - 1] - 1] == "safety" else "f"
            yield f"{prompt}\t{words.text(*PROMPT_WORDS)}\tpool\t{safety}\tf\t[]\t\t{NOW}\t{dialogue}\n"

    def responses() -> Iterator[str]:
        for prompt in range(1, total + 1):
            for side, (_, temperature) in enumerate(CHECKPOINTS):
                # Half the responses have two paragraphs: real ones have line breaks, which JSON escapes.
                text = words.text(*RESPONSE_WORDS, paragraphs=rng.random() < 0.5)
                seed = rng.randrange(2**31)
                yield (
                    f"{2 * prompt - 1 + side}\t{text}\t{temperature}\t0.9\t{seed}\t512\tstop\tvllm\t{NOW}\t"
                    f"{side + 1}\t{prompt}\n"
                )

    def comparisons() -> Iterator[str]:
        for comparison in range(1, total + 1):
            batch = batch_of[comparison - 1]
            held = "t" if (comparison - 1 - batch_start[batch - 1]) % held_out_every[batch - 1] == 0 else "f"
            first = 2 * comparison - 1
            yield f"{comparison}\t{held}\t1\tf\tf\t{NOW}\t{batch}\t{comparison}\t{first}\t{first + 1}\n"

    def assignments() -> Iterator[str]:
        for comparison, judged in enumerate(judgements(config.seed, total, config.annotators), start=1):
            swap = "t" if judged.swap else "f"
            yield f"{comparison}\t{swap}\tsubmitted\t{NOW}\t{NOW}\t{judged.annotator}\t{comparison}\n"

    def annotations() -> Iterator[str]:
        for comparison, judged in enumerate(judgements(config.seed, total, config.annotators), start=1):
            first, second = 2 * comparison - 1, 2 * comparison
            # Response A is the second response when the assignment swapped them.
            picked_first = (judged.choice == "a") != judged.swap
            chosen, rejected = (first, second) if picked_first else (second, first)
            safety = focus[batch_of[comparison - 1] - 1] == "safety"
            label = SAFETY_LABELS[judged.label_index] if safety else ""
            yield (
                f"{comparison}\t{judged.choice}\t{judged.strength}\t{label}\t\t\t{judged.time_spent_ms}\t"
                f"bench-{comparison}\t{NOW}\t{judged.annotator}\t{comparison}\t{comparison}\t{chosen}\t{rejected}\n"
            )

    loads: list[tuple[str, str, Iterator[str], int]] = [
        (
            "auth_user",
            "id, password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined",
            users(),
            config.annotators,
        ),
        (
            "checkpoints_checkpoint",
            "id, name, kind, path, produced_by, notes, created_at, parent_id",
            checkpoints(),
            len(CHECKPOINTS),
        ),
        (
            "batches_batch",
            "id, name, iso_week, focus, status, temperatures, top_p, max_new_tokens, target_comparisons, overlap, "
            "held_out_size, held_out_fraction, opens_at, guidelines, sampling_error, annotators_write_prompts, "
            "gold_rate, selection, sampled_at, created_at, opened_at",
            batches(),
            len(sizes),
        ),
        ("batches_batch_checkpoints", "id, batch_id, checkpoint_id", batch_checkpoints(), len(sizes) * 2),
        ("batches_dialogue", "id, created_at", dialogue_rows(), dialogues),
        ("batches_turn", "id, index, role, content, word_count, dialogue_id", turns(), 2 * dialogues),
        (
            "batches_prompt",
            "id, text, word_count, source, is_safety, is_adversarial, tags, client_key, created_at, dialogue_id",
            prompts(),
            total,
        ),
        (
            "batches_response",
            "id, text, word_count, temperature, top_p, seed, max_new_tokens, finish_reason, engine, created_at, "
            "checkpoint_id, prompt_id",
            responses(),
            2 * total,
        ),
        (
            "batches_comparison",
            "id, is_held_out, annotation_count, responses_identical, is_gold, created_at, batch_id, prompt_id, "
            "first_response_id, second_response_id",
            comparisons(),
            total,
        ),
        (
            "batches_assignment",
            "id, swap, status, leased_at, expires_at, annotator_id, comparison_id",
            assignments(),
            total,
        ),
        (
            "batches_annotation",
            "id, choice, strength, safety_label, skip_reason, comment, time_spent_ms, idempotency_key, created_at, "
            "annotator_id, assignment_id, comparison_id, chosen_response_id, rejected_response_id",
            annotations(),
            total,
        ),
    ]
    conn = connect(config)
    try:
        with conn.cursor() as cursor:
            # Foreign keys hold by construction; their per-row triggers would double the load time.
            cursor.execute("SET session_replication_role = replica")
            for table, columns, lines, count in loads:
                loaded = time.perf_counter()
                copy_in(cursor, table, columns, lines, count)
                print(f"  {table:<28} {count:>10,} rows  {time.perf_counter() - loaded:6.1f} s", flush=True)
            for table in FILLED:
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cursor:
            vacuumed = time.perf_counter()
            cursor.execute(f"VACUUM (FREEZE, ANALYZE) {', '.join(FILLED)}")
            print(f"  {'VACUUM (FREEZE, ANALYZE)':<28} {'':>15}  {time.perf_counter() - vacuumed:6.1f} s")
    finally:
        conn.close()
    print(f"filled {total:,} annotated comparisons in {time.perf_counter() - started:.1f} s", flush=True)


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
    env = django_environment(config, storage)
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
        fill(config)
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
