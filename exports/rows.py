"""Dataset rows streamed from the database in bounded memory, in a fixed order.

Annotations are read with a server-side cursor (`iterator`) ordered by comparison, so the annotations
of one comparison arrive together and can be reduced to a consensus row without holding more than
one block of rows. Dialogue turns are fetched per block.
"""

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Q

from backend.batches.models import Annotation, Turn
from exports.models import ExternalPreference
from exports.schema import MARGINS, STRENGTHS

BLOCK = 2000
_FIELDS = (
    "comparison_id",
    "annotator_id",
    "strength",
    "safety_label",
    "chosen_response_id",
    "chosen_response__text",
    "chosen_response__checkpoint__name",
    "chosen_response__temperature",
    "chosen_response__seed",
    "rejected_response__text",
    "rejected_response__checkpoint__name",
    "rejected_response__temperature",
    "rejected_response__seed",
    "comparison__prompt__text",
    "comparison__prompt__dialogue_id",
    "comparison__batch__name",
    "comparison__batch__iso_week",
    "comparison__batch__focus",
    "comparison__is_held_out",
)
# Safety labels in order of caution: a tied vote settles on the more cautious label.
_SAFETY_ORDER = ("both_unsafe", "chosen_safe_other_unsafe", "both_safe", "")


@dataclass(frozen=True)
class RowFilters:
    """What to export. Skipped comparisons never are (they have no chosen side)."""

    batch_ids: tuple[int, ...] = ()
    focus: str = ""
    since: datetime | None = None
    until: datetime | None = None
    drop_unsure: bool = False


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


def _annotations(filters: RowFilters) -> Any:
    query = Q(skip_reason="")
    if filters.batch_ids:
        query &= Q(comparison__batch_id__in=filters.batch_ids)
    if filters.focus:
        query &= Q(comparison__batch__focus=filters.focus)
    if filters.since:
        query &= Q(created_at__gte=filters.since)
    if filters.until:
        query &= Q(created_at__lt=filters.until)
    return Annotation.objects.filter(query).order_by("comparison_id", "id").values_list(*_FIELDS)


def annotation_count(filters: RowFilters) -> int:
    return int(_annotations(filters).count())


def _blocks(filters: RowFilters) -> Iterator[list[tuple[Any, ...]]]:
    block: list[tuple[Any, ...]] = []
    for row in _annotations(filters).iterator(chunk_size=BLOCK):
        block.append(row)
        if len(block) >= BLOCK:
            yield block
            block = []
    if block:
        yield block


def _turns(dialogue_ids: set[int]) -> dict[int, list[dict[str, str]]]:
    turns: dict[int, list[dict[str, str]]] = {}
    for dialogue_id, role, content in (
        Turn.objects.filter(dialogue_id__in=dialogue_ids)
        .order_by("dialogue_id", "index")
        .values_list("dialogue_id", "role", "content")
    ):
        turns.setdefault(dialogue_id, []).append({"role": role, "content": content})
    return turns


def _row(first: tuple[Any, ...], context: list[dict[str, str]], margins: dict[str, float] | None) -> dict[str, Any]:
    (
        comparison_id,
        _annotator,
        strength,
        safety_label,
        _chosen_id,
        chosen_text,
        chosen_checkpoint,
        chosen_temperature,
        chosen_seed,
        rejected_text,
        rejected_checkpoint,
        rejected_temperature,
        rejected_seed,
        prompt_text,
        _dialogue_id,
        batch_name,
        week,
        focus,
        held_out,
    ) = first
    row: dict[str, Any] = {
        "prompt": [*context, {"role": "user", "content": prompt_text}],
        "chosen": [{"role": "assistant", "content": chosen_text}],
        "rejected": [{"role": "assistant", "content": rejected_text}],
    }
    if margins is not None:
        row["margin"] = margins[strength]
    row.update(
        strength=strength,
        safety_label=safety_label,
        is_safety=focus == "safety",
        chosen_checkpoint=chosen_checkpoint,
        chosen_temperature=chosen_temperature,
        chosen_seed=chosen_seed,
        rejected_checkpoint=rejected_checkpoint,
        rejected_temperature=rejected_temperature,
        rejected_seed=rejected_seed,
        source="platform",
        batch=batch_name,
        week=week,
        comparison_id=comparison_id,
        split="test" if held_out else "train",
    )
    return row


def _consensus(group: list[tuple[Any, ...]], stats: ConsensusStats) -> tuple[tuple[Any, ...], list[str], float] | None:
    """The majority side of a comparison's annotations, with its strength, label, voters and agreement."""
    votes = Counter(row[4] for row in group)
    (winner, top), *rest = votes.most_common()
    if rest and rest[0][1] == top:
        stats.ties_dropped += 1
        return None
    majority = [row for row in group if row[4] == winner]
    strengths = Counter(row[2] for row in majority)
    # Most common strength; among equals, the weaker one (a cautious margin).
    strength = max(strengths, key=lambda s: (strengths[s], STRENGTHS.index(s)))
    labels = Counter(row[3] for row in majority)
    label = max(labels, key=lambda value: (labels[value], -_SAFETY_ORDER.index(value)))
    representative = next(row for row in majority if row[2] == strength)
    representative = (*representative[:2], strength, label, *representative[4:])
    agreement = top / len(group)
    stats.agreement[round(agreement, 4)] += 1
    return representative, sorted(pseudonym(row[1]) for row in majority), agreement


def platform_rows(
    filters: RowFilters, *, granularity: str, margin_scheme: str, stats: ConsensusStats
) -> Iterator[dict[str, Any]]:
    """Rows of the platform's own annotations, ordered by comparison (then annotation)."""
    margins = MARGINS[margin_scheme]
    pending: list[tuple[Any, ...]] = []

    def emit(group: list[tuple[Any, ...]], turns: dict[int, list[dict[str, str]]]) -> Iterator[dict[str, Any]]:
        stats.comparisons_seen += 1
        context = turns.get(group[0][14], []) if group[0][14] else []
        if granularity == "annotation":
            for annotation in group:
                if filters.drop_unsure and annotation[2] == "negligibly_better_or_unsure":
                    stats.unsure_dropped += 1
                    continue
                row = _row(annotation, context, margins)
                row.update(annotators=[pseudonym(annotation[1])], agreement=None)
                yield row
            return
        consensus = _consensus(group, stats)
        if consensus is None:
            return
        representative, voters, agreement = consensus
        if filters.drop_unsure and representative[2] == "negligibly_better_or_unsure":
            stats.unsure_dropped += 1
            return
        row = _row(representative, context, margins)
        row.update(annotators=voters, agreement=agreement)
        yield row

    for block in _blocks(filters):
        rows = pending + block
        turns = _turns({row[14] for row in rows if row[14]})
        # The last comparison of a block may go on in the next one: keep it back.
        last = rows[-1][0]
        complete = [row for row in rows if row[0] != last]
        pending = [row for row in rows if row[0] == last]
        start = 0
        for index in range(1, len(complete) + 1):
            if index == len(complete) or complete[index][0] != complete[start][0]:
                yield from emit(complete[start:index], turns)
                start = index
    if pending:
        yield from emit(pending, _turns({pending[0][14]} if pending[0][14] else set()))


def external_rows(*, harmless: bool | None, margin_scheme: str) -> Iterator[dict[str, Any]]:
    """Imported open-source pairs (all in the train split); they carry no strength, so their margin is 0."""
    preferences = ExternalPreference.objects.order_by("id")
    if harmless is not None:
        preferences = preferences.filter(harmless=harmless)
    with_margin = MARGINS[margin_scheme] is not None
    for preference in preferences.iterator(chunk_size=BLOCK):
        row: dict[str, Any] = {
            "prompt": preference.prompt,
            "chosen": [{"role": "assistant", "content": preference.chosen}],
            "rejected": [{"role": "assistant", "content": preference.rejected}],
        }
        if with_margin:
            row["margin"] = 0.0
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
            split="train",
        )
        yield row
