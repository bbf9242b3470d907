"""Dataset rows streamed from the database in bounded memory, in a fixed order.

Annotations are read with a server-side cursor, in blocks, ordered by comparison, so the annotations
of one comparison arrive together and can be reduced to a consensus row without holding more than
a few blocks of rows. Dialogue turns are fetched per block. On PostgreSQL outside a transaction a
reader thread fetches the blocks, so the database works while the rows are built and written.
"""

import functools
import hashlib
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from backend.batches.models import Annotation, Turn
from exports.models import ExternalPreference
from preference_format import MARGIN_SCHEMES, STRENGTHS, MarginTable, SafetyLabel, Split, Strength

BLOCK = 2000
# Blocks the reader thread may hold ready (PostgreSQL, outside a transaction): memory stays bounded.
READ_AHEAD = 3
# A reader whose blocks nobody takes for this long gives up, closing its transaction (an abandoned export).
READER_PATIENCE_S = 600.0
READER_GAVE_UP = "The export's reader stopped: no block was taken for {seconds:.0f} s."
EXTERNAL_MARGIN = 0.0
"""The margin of imported pairs, which have no strength: that of the weakest level under every scheme."""


class AnnotationRow(NamedTuple):
    """One annotation as the export reads it: the judgement, both responses, the prompt and its batch."""

    comparison_id: int
    annotator_id: int
    strength: str
    safety_label: str
    chosen_response_id: int
    chosen_text: str
    chosen_checkpoint: str
    chosen_temperature: float
    chosen_seed: int
    rejected_text: str
    rejected_checkpoint: str
    rejected_temperature: float
    rejected_seed: int
    prompt_text: str
    dialogue_id: int | None
    batch_name: str
    week: str
    focus: str
    held_out: bool
    prompt_words: int
    chosen_words: int
    rejected_words: int


_LOOKUPS = {
    "comparison_id": "comparison_id",
    "annotator_id": "annotator_id",
    "strength": "strength",
    "safety_label": "safety_label",
    "chosen_response_id": "chosen_response_id",
    "chosen_text": "chosen_response__text",
    "chosen_checkpoint": "chosen_response__checkpoint__name",
    "chosen_temperature": "chosen_response__temperature",
    "chosen_seed": "chosen_response__seed",
    "rejected_text": "rejected_response__text",
    "rejected_checkpoint": "rejected_response__checkpoint__name",
    "rejected_temperature": "rejected_response__temperature",
    "rejected_seed": "rejected_response__seed",
    "prompt_text": "comparison__prompt__text",
    "dialogue_id": "comparison__prompt__dialogue_id",
    "batch_name": "comparison__batch__name",
    "week": "comparison__batch__iso_week",
    "focus": "comparison__batch__focus",
    "held_out": "comparison__is_held_out",
    "prompt_words": "comparison__prompt__word_count",
    "chosen_words": "chosen_response__word_count",
    "rejected_words": "rejected_response__word_count",
}
"""Where each field of an AnnotationRow comes from, as ORM lookups from the annotation."""
_annotation_row = functools.partial(tuple.__new__, AnnotationRow)
"""AnnotationRow._make without its Python frame: a row of the cursor as an AnnotationRow."""
DIALOGUE = AnnotationRow._fields.index("dialogue_id")
"""Where the reader thread finds a raw row's dialogue (it hands raw rows over; the consumer names them)."""
# Safety labels in order of caution: a tied vote settles on the more cautious label.
_SAFETY_ORDER = (SafetyLabel.BOTH_UNSAFE, SafetyLabel.CHOSEN_SAFE_OTHER_UNSAFE, SafetyLabel.BOTH_SAFE, "")
# The values as plain strings, bound once: an Enum member's lookup costs more than the rest of a row's field.
_TEST, _TRAIN = Split.TEST.value, Split.TRAIN.value
_UNSURE = Strength.NEGLIGIBLY_BETTER_OR_UNSURE.value


@dataclass(frozen=True)
class RowFilters:
    """What to export. Skipped comparisons never are (they have no chosen side); gold comparisons (quality
    control with a known answer) only on request.
    """

    batch_ids: tuple[int, ...] = ()
    focus: str = ""
    since: datetime | None = None
    until: datetime | None = None
    drop_unsure: bool = False
    include_gold: bool = False


@dataclass
class ConsensusStats:
    ties_dropped: int = 0
    unsure_dropped: int = 0
    comparisons_seen: int = 0
    agreement: Counter[float] = field(default_factory=Counter)


def pseudonym(annotator_id: int) -> str:
    """A stable pseudonymous annotator id: a salted hash, so datasets can be shared without names."""
    salt = settings.EXPORT_ANNOTATOR_SALT
    return hashlib.sha256(f"{salt}:{annotator_id}".encode()).hexdigest()[:16]


def _filtered(filters: RowFilters) -> Any:
    query = Q(skip_reason="")
    if not filters.include_gold:
        query &= Q(comparison__is_gold=False)
    if filters.batch_ids:
        query &= Q(comparison__batch_id__in=filters.batch_ids)
    if filters.focus:
        query &= Q(comparison__batch__focus=filters.focus)
    if filters.since:
        query &= Q(created_at__gte=filters.since)
    if filters.until:
        query &= Q(created_at__lt=filters.until)
    return Annotation.objects.filter(query)


def _annotations(filters: RowFilters) -> Any:
    return _filtered(filters).order_by("comparison_id", "id").values_list(*(_LOOKUPS[f] for f in AnnotationRow._fields))


def annotation_count(filters: RowFilters) -> int:
    # Without the joins of the export's columns: every one of them follows a non-null foreign key.
    return int(_filtered(filters).count())


# Words of a row as stored (prompt with its dialogue context, chosen, rejected): see exports.stats.
Words = tuple[int, int, int]
# A row and its stored word counts (None where the source stores none).
CountedRow = tuple[dict[str, Any], Words | None]
# A dialogue's turns before the prompt, as messages, and their words.
_Context = tuple[list[dict[str, str]], int]
_NO_CONTEXT: _Context = ([], 0)
_Block = tuple[list[tuple[Any, ...]], dict[int, _Context]]


def _read(filters: RowFilters) -> Iterator[_Block]:
    """Blocks of annotation rows, each with the dialogue turns it needs, on this thread's connection."""
    sql, params = _annotations(filters).query.sql_with_params()
    chunked = not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
    # The raw rows of the values_list: on PostgreSQL a server-side cursor read in blocks.
    with connection.chunked_cursor() if chunked else connection.cursor() as cursor:
        cursor.execute(sql, params)
        while block := cursor.fetchmany(BLOCK):
            yield block, _turns({row[DIALOGUE] for row in block if row[DIALOGUE]})


def _read_ahead(filters: RowFilters) -> Iterator[_Block]:
    """`_read` on a thread of its own, a few blocks ahead of the consumer.

    The thread has its own connection and reads in a transaction, so the server-side cursor streams (outside
    one, Django declares it WITH HOLD and PostgreSQL first copies the whole result aside) while the export's
    progress updates still commit on the caller's connection. PostgreSQL computes and sends the next blocks
    while this thread turns the previous ones into rows.
    """
    blocks: queue.Queue[_Block | BaseException | None] = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()

    def offer(item: _Block | BaseException | None) -> bool:
        deadline = time.monotonic() + READER_PATIENCE_S
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                blocks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            with transaction.atomic():
                for block in _read(filters):
                    if not offer(block):
                        return
        except BaseException as error:  # handed to the consumer, which raises it
            offer(error)
            return
        finally:
            connection.close()
        offer(None)

    reader = threading.Thread(target=read, name="export-rows-reader", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = blocks.get(timeout=1.0)
            except queue.Empty:
                if reader.is_alive():
                    continue
                raise RuntimeError(READER_GAVE_UP.format(seconds=READER_PATIENCE_S)) from None
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def _blocks(filters: RowFilters) -> Iterator[_Block]:
    # Inside a transaction (the caller's, or a test's) only this connection sees its rows: read them here.
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        return _read_ahead(filters)
    return _read(filters)


def _groups(filters: RowFilters) -> Iterator[tuple[list[AnnotationRow], _Context]]:
    """Each comparison's annotations (in id order) with its dialogue context, in comparison order."""
    group: list[AnnotationRow] = []
    current, context = None, _NO_CONTEXT
    for block, turns in _blocks(filters):
        for row in map(_annotation_row, block):
            if row.comparison_id == current:
                group.append(row)
                continue
            if group:
                yield group, context
            group, current = [row], row.comparison_id
            dialogue = row.dialogue_id
            context = turns.get(dialogue, _NO_CONTEXT) if dialogue else _NO_CONTEXT
    if group:
        yield group, context


def _turns(dialogue_ids: set[int]) -> dict[int, _Context]:
    """The context of each dialogue. Plain SQL on the caller's connection: one query per block (composed through
    the ORM, the query cost more to build than to run)."""
    turns: dict[int, _Context] = {}
    if not dialogue_ids:
        return turns
    placeholders = ", ".join(["%s"] * len(dialogue_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT dialogue_id, role, content, word_count FROM {Turn._meta.db_table} "  # noqa: S608 (values go as %s)
            f"WHERE dialogue_id IN ({placeholders}) ORDER BY dialogue_id, {connection.ops.quote_name('index')}",
            sorted(dialogue_ids),
        )
        for dialogue_id, role, content, words in cursor.fetchall():
            messages, before = turns.get(dialogue_id, _NO_CONTEXT)
            turns[dialogue_id] = ([*messages, {"role": role, "content": content}], before + words)
    return turns


def _row(
    first: AnnotationRow,
    context: _Context,
    margins: MarginTable | None,
    annotators: list[str],
    agreement: float | None,
) -> CountedRow:
    """One output row, its keys in the schema's order (the writers rely on it for speed, not correctness), and its
    stored word counts."""
    turns, context_words = context
    question = {"role": "user", "content": first.prompt_text}
    row: dict[str, Any] = {
        "prompt": [*turns, question] if turns else [question],
        "chosen": [{"role": "assistant", "content": first.chosen_text}],
        "rejected": [{"role": "assistant", "content": first.rejected_text}],
        # A judged row always has a strength (a database constraint), so its margin is in the table.
        "margin": None if margins is None else margins[first.strength],
        "strength": first.strength,
        "safety_label": first.safety_label,
        "is_safety": first.focus == "safety",
        "chosen_checkpoint": first.chosen_checkpoint,
        "chosen_temperature": first.chosen_temperature,
        "chosen_seed": first.chosen_seed,
        "rejected_checkpoint": first.rejected_checkpoint,
        "rejected_temperature": first.rejected_temperature,
        "rejected_seed": first.rejected_seed,
        "source": "platform",
        "batch": first.batch_name,
        "week": first.week,
        "comparison_id": first.comparison_id,
        "annotators": annotators,
        "agreement": agreement,
        "split": _TEST if first.held_out else _TRAIN,
    }
    if margins is None:
        del row["margin"]
    return row, (context_words + first.prompt_words, first.chosen_words, first.rejected_words)


def _consensus(
    group: list[AnnotationRow], stats: ConsensusStats, voter: Callable[[int], str] = pseudonym
) -> tuple[AnnotationRow, list[str], float] | None:
    """The majority side of a comparison's annotations, with its strength, label, voters and agreement."""
    votes = Counter(row.chosen_response_id for row in group)
    (winner, top), *rest = votes.most_common()
    if rest and rest[0][1] == top:
        stats.ties_dropped += 1
        return None
    majority = [row for row in group if row.chosen_response_id == winner]
    strengths = Counter(row.strength for row in majority)
    # Most common strength; among equals, the weaker one (a cautious margin).
    strength = max(strengths, key=lambda s: (strengths[s], STRENGTHS.index(s)))
    labels = Counter(row.safety_label for row in majority)
    label = max(labels, key=lambda value: (labels[value], -_SAFETY_ORDER.index(value)))
    representative = next(row for row in majority if row.strength == strength)
    representative = representative._replace(safety_label=label)
    agreement = top / len(group)
    stats.agreement[round(agreement, 4)] += 1
    return representative, sorted(voter(row.annotator_id) for row in majority), agreement


def platform_rows(
    filters: RowFilters, *, granularity: str, margin_scheme: str, stats: ConsensusStats
) -> Iterator[CountedRow]:
    """Rows of the platform's own annotations, ordered by comparison (then annotation), with their word counts."""
    margins = MARGIN_SCHEMES[margin_scheme]
    # One hash per annotator, not per row.
    voter = functools.cache(pseudonym)
    for group, context in _groups(filters):
        stats.comparisons_seen += 1
        if granularity == "annotation":
            for annotation in group:
                if filters.drop_unsure and annotation.strength == _UNSURE:
                    stats.unsure_dropped += 1
                    continue
                yield _row(annotation, context, margins, [voter(annotation.annotator_id)], None)
            continue
        if len(group) == 1:
            # A single vote is its own majority: what _consensus would return, without the counting.
            representative, voters, agreement = group[0], [voter(group[0].annotator_id)], 1.0
            stats.agreement[1.0] += 1
        else:
            consensus = _consensus(group, stats, voter)
            if consensus is None:
                continue
            representative, voters, agreement = consensus
        if filters.drop_unsure and representative.strength == _UNSURE:
            stats.unsure_dropped += 1
            continue
        yield _row(representative, context, margins, voters, agreement)


def external_rows(*, harmless: bool | None, margin_scheme: str) -> Iterator[CountedRow]:
    """Imported open-source pairs (all in the train split), without stored word counts. They carry no strength: under
    a margin scheme their margin is 0, the margin of the weakest level, stated as such in the manifest."""
    preferences = ExternalPreference.objects.order_by("id")
    if harmless is not None:
        preferences = preferences.filter(harmless=harmless)
    with_margin = MARGIN_SCHEMES[margin_scheme] is not None
    for preference in preferences.iterator(chunk_size=BLOCK):
        row: dict[str, Any] = {
            "prompt": preference.prompt,
            "chosen": [{"role": "assistant", "content": preference.chosen}],
            "rejected": [{"role": "assistant", "content": preference.rejected}],
        }
        if with_margin:
            row["margin"] = EXTERNAL_MARGIN
        row.update(
            strength="",
            safety_label="",
            is_safety=preference.harmless,
            chosen_checkpoint="",
            chosen_temperature=None,
            chosen_seed=None,
            rejected_checkpoint="",
            rejected_temperature=None,
            rejected_seed=None,
            source=preference.source,
            batch="",
            week="",
            comparison_id=None,
            annotators=[],
            agreement=None,
            split=_TRAIN,
        )
        yield row, None
