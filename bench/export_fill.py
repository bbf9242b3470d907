"""The data set of bench/export.py: batches of comparisons with prompts, dialogues, responses and annotations,
generated in Python and loaded with COPY FROM STDIN (see bench/export.py's docstring for its shape)."""

from __future__ import annotations

import itertools
import random
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from bench.harness.database import Database
from preference_format import SAFETY_LABELS, STRENGTHS

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


# long: one COPY generator per table, nested so that they share the fill's random stream and the batch sizes;
# they are consumed in load order, and the generated data depends on that order.
def fill(database: Database, sizes: list[int], *, annotators: int, seed: int) -> None:
    """Load the whole data set with COPY in one transaction (one batch per size), then restart identities and
    vacuum."""
    total = sum(sizes)
    rng = random.Random(seed)
    started = time.perf_counter()
    words = Words(rng)
    batch_of = list(itertools.chain.from_iterable([index + 1] * size for index, size in enumerate(sizes)))
    batch_start = list(itertools.accumulate(sizes, initial=0))
    focus = ["helpfulness" if index % 2 == 0 else "safety" for index in range(len(sizes))]
    held_out_every = [max(1, size // min(HELD_OUT_PER_BATCH, max(1, size // 10))) for size in sizes]
    dialogues = total // DIALOGUE_EVERY

    def users() -> Iterator[str]:
        for user in range(1, annotators + 1):
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
        for comparison, judged in enumerate(judgements(seed, total, annotators), start=1):
            swap = "t" if judged.swap else "f"
            yield f"{comparison}\t{swap}\tsubmitted\t{NOW}\t{NOW}\t{judged.annotator}\t{comparison}\n"

    def annotations() -> Iterator[str]:
        for comparison, judged in enumerate(judgements(seed, total, annotators), start=1):
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
            annotators,
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
    conn = database.connect()
    try:
        with conn.cursor() as cursor:
            # Foreign keys hold by construction; their per-row triggers would only slow the load down.
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
