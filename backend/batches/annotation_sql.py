"""The statements of the annotator's loop (lease, show, record), written out in SQL.

Every annotator sends these once per comparison. Built through the ORM, each request spent more time composing
its queries than PostgreSQL spent running them (`bench/api_roundtrip.py --profile`); here each statement is a
constant, run on Django's connection (its transactions, its retries, its `%s` parameters on PostgreSQL and
SQLite alike). Row locks (`FOR UPDATE`) are left out where the database has none (SQLite locks the whole file).
The services in `backend.batches.services.annotations` hold the rules; this module only moves rows.
"""

from datetime import UTC, datetime
from typing import Any

from django.db import connection, models

from backend.batches.models import Assignment, Batch

LEASED = Assignment.Status.LEASED.value
SUBMITTED = Assignment.Status.SUBMITTED.value


_CURRENT_LEASE = """
SELECT a.id, a.comparison_id, a.swap, a.leased_at, a.expires_at
FROM batches_assignment a INNER JOIN batches_comparison c ON c.id = a.comparison_id
WHERE a.annotator_id = %s AND c.batch_id = %s AND a.status = %s AND a.expires_at > %s
ORDER BY a.leased_at LIMIT 1
"""

# Never had by this annotator, overlap not full (the count is taken again under the lock), fewest annotations
# first: the order of the comparison_lease_order index.
_FREE_COMPARISON = """
SELECT c.id FROM batches_comparison c
WHERE c.batch_id = %s AND c.is_gold = %s AND c.annotation_count < %s
  AND NOT EXISTS (SELECT 1 FROM batches_assignment m WHERE m.comparison_id = c.id AND m.annotator_id = %s)
  AND NOT EXISTS (
    SELECT 1 FROM batches_assignment l
    WHERE l.comparison_id = c.id AND (l.status = %s OR (l.status = %s AND l.expires_at > %s))
    LIMIT 1 OFFSET %s
  )
ORDER BY c.annotation_count, c.id LIMIT 1
"""

# The assignments holding a place in a comparison's overlap (as in the NOT EXISTS above): submitted, or leased and
# unexpired.
_LIVE_COUNT = """
SELECT COUNT(*) FROM batches_assignment l
WHERE l.comparison_id = %s AND (l.status = %s OR (l.status = %s AND l.expires_at > %s))
"""

# The lease, inserted only while the comparison's overlap has room: the count and the insert in one statement,
# run under the comparison's row lock (a statement started after taking it sees every lease committed before).
_INSERT_ASSIGNMENT_IF_ROOM = """
INSERT INTO batches_assignment (comparison_id, annotator_id, swap, status, leased_at, expires_at)
SELECT %s, %s, %s, %s, %s, %s
WHERE (
  SELECT COUNT(*) FROM batches_assignment l
  WHERE l.comparison_id = %s AND (l.status = %s OR (l.status = %s AND l.expires_at > %s))
) < %s
RETURNING id
"""

# The texts through scalar subqueries rather than joins: PostgreSQL plans these far faster than the six-table join,
# and on this statement planning, not running, is most of the time (EXPLAIN (ANALYZE, SUMMARY) shows both).
_DISPLAY = """
SELECT a.swap, a.status, a.leased_at, a.expires_at, c.batch_id,
       (SELECT b.focus FROM batches_batch b WHERE b.id = c.batch_id),
       p.text, p.dialogue_id,
       (SELECT r.text FROM batches_response r WHERE r.id = c.first_response_id),
       (SELECT r.text FROM batches_response r WHERE r.id = c.second_response_id)
FROM batches_assignment a
INNER JOIN batches_comparison c ON c.id = a.comparison_id
INNER JOIN batches_prompt p ON p.id = c.prompt_id
WHERE a.id = %s
"""

# The assignment and its comparison, locked in that order (PostgreSQL takes `FOR UPDATE OF` in the order named).
_LOCK_FOR_RECORD = """
SELECT a.comparison_id, a.swap, a.status, a.leased_at, a.expires_at,
       c.first_response_id, c.second_response_id, c.is_gold, c.batch_id, b.focus, b.overlap
FROM batches_assignment a
INNER JOIN batches_comparison c ON c.id = a.comparison_id
INNER JOIN batches_batch b ON b.id = c.batch_id
WHERE a.id = %s AND a.annotator_id = %s
"""

_INSERT_ANNOTATION = """
INSERT INTO batches_annotation (assignment_id, annotator_id, comparison_id, choice, chosen_response_id,
    rejected_response_id, strength, safety_label, skip_reason, comment, time_spent_ms, idempotency_key, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
"""


def _for_update(of: str, skip_locked: bool = False) -> str:
    features = connection.features
    if not features.has_select_for_update:
        return ""
    return f" FOR UPDATE OF {of}" + (" SKIP LOCKED" if skip_locked else "")


def _time(value: datetime) -> Any:
    """A datetime as the database takes it (SQLite: naive UTC text, as the ORM stores it)."""
    return connection.ops.adapt_datetimefield_value(value)


def _aware(value: Any) -> datetime:
    """A datetime column as the ORM returns it: aware, in UTC (SQLite hands back naive UTC or text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def loaded(model: type[models.Model], **values: Any) -> Any:
    """An instance as the ORM loads one from these columns (the model's others deferred, read when touched)."""
    names = [field.attname for field in model._meta.concrete_fields if field.attname in values]
    return model.from_db(connection.alias, names, [values[name] for name in names])


def _one(sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def batch(*, batch_id: int, open_only: bool) -> Batch | None:
    """The batch (only if open, with `open_only`), every column converted as the ORM converts it."""
    sql = "SELECT * FROM batches_batch WHERE id = %s"
    params: list[Any] = [batch_id]
    if open_only:
        sql, params = sql + " AND status = %s", [*params, Batch.Status.OPEN.value]
    return next(iter(Batch.objects.raw(sql, params)), None)


def current_lease(*, annotator_id: int, batch_id: int, now: datetime) -> Assignment | None:
    """The annotator's oldest unexpired, unsubmitted lease in the batch."""
    row = _one(_CURRENT_LEASE, [annotator_id, batch_id, LEASED, _time(now)])
    if row is None:
        return None
    assignment_id, comparison_id, swap, leased_at, expires_at = row
    return loaded(
        Assignment,
        id=assignment_id,
        comparison_id=comparison_id,
        annotator_id=annotator_id,
        swap=bool(swap),
        status=LEASED,
        leased_at=_aware(leased_at),
        expires_at=_aware(expires_at),
    )


def free_comparison(*, batch_id: int, overlap: int, annotator_id: int, now: datetime, lock: bool) -> int | None:
    """The id of the next comparison free for this annotator. With `lock`, row-locked, skipping those that other
    leases hold locked; without, whether or not they are locked (is there anything left at all?)."""
    sql = _FREE_COMPARISON + _for_update("c", skip_locked=True) if lock else _FREE_COMPARISON
    row = _one(sql, [batch_id, False, overlap, annotator_id, SUBMITTED, LEASED, _time(now), overlap - 1])
    return None if row is None else int(row[0])


def live_count(*, comparison_id: int, now: datetime, excluding: int | None = None) -> int:
    """How many places of the comparison's overlap are held (by assignments other than `excluding`)."""
    sql, params = _LIVE_COUNT, [comparison_id, SUBMITTED, LEASED, _time(now)]
    if excluding is not None:
        sql, params = sql + " AND l.id <> %s", [*params, excluding]
    row = _one(sql, params)
    return int(row[0]) if row else 0


def insert_lease_if_room(
    *, comparison_id: int, overlap: int, annotator_id: int, swap: bool, leased_at: datetime, expires_at: datetime
) -> Assignment | None:
    """Lease a comparison whose row lock the caller holds, if fewer than `overlap` places of it are held."""
    row = _one(
        _INSERT_ASSIGNMENT_IF_ROOM,
        [
            *(comparison_id, annotator_id, swap, LEASED, _time(leased_at), _time(expires_at)),
            *(comparison_id, SUBMITTED, LEASED, _time(leased_at), overlap),
        ],
    )
    if row is None:
        return None
    return loaded(
        Assignment,
        id=row[0],
        comparison_id=comparison_id,
        annotator_id=annotator_id,
        swap=swap,
        status=LEASED,
        leased_at=leased_at,
        expires_at=expires_at,
    )


def display_row(*, assignment_id: int, annotator_id: int | None) -> tuple[Any, ...] | None:
    """(swap, status, leased_at, expires_at, batch_id, focus, prompt, dialogue_id, first text, second text)."""
    sql, params = _DISPLAY, [assignment_id]
    if annotator_id is not None:
        sql, params = sql + " AND a.annotator_id = %s", [assignment_id, annotator_id]
    row = _one(sql, params)
    if row is None:
        return None
    return (bool(row[0]), row[1], _aware(row[2]), _aware(row[3]), *row[4:])


def lock_for_record(*, assignment_id: int, annotator_id: int) -> dict[str, Any] | None:
    """The assignment with what recording a judgement on it needs, assignment and comparison row-locked."""
    row = _one(_LOCK_FOR_RECORD + _for_update("a, c"), [assignment_id, annotator_id])
    if row is None:
        return None
    comparison_id, swap, status, leased_at, expires_at, first, second, is_gold, batch_id, focus, overlap = row
    return {
        "comparison_id": comparison_id,
        "swap": bool(swap),
        "status": status,
        "leased_at": _aware(leased_at),
        "expires_at": _aware(expires_at),
        "first_response_id": first,
        "second_response_id": second,
        "is_gold": bool(is_gold),
        "batch_id": batch_id,
        "focus": focus,
        "overlap": overlap,
    }


def insert_annotation(fields: dict[str, Any], created_at: datetime) -> int:
    """Insert an annotation row; its id. `fields` holds every column but the id and created_at."""
    row = _one(
        _INSERT_ANNOTATION,
        [
            fields["assignment_id"],
            fields["annotator_id"],
            fields["comparison_id"],
            fields["choice"],
            fields["chosen_response_id"],
            fields["rejected_response_id"],
            fields["strength"],
            fields["safety_label"],
            fields["skip_reason"],
            fields["comment"],
            fields["time_spent_ms"],
            fields["idempotency_key"],
            _time(created_at),
        ],
    )
    assert row is not None
    return int(row[0])


def close_assignment(*, assignment_id: int, status: str, counts: bool, comparison_id: int) -> None:
    """Mark the assignment submitted or skipped; a judgement adds one to its comparison's annotation count."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE batches_assignment SET status = %s WHERE id = %s", [status, assignment_id])
        if counts:
            cursor.execute(
                "UPDATE batches_comparison SET annotation_count = annotation_count + 1 WHERE id = %s",
                [comparison_id],
            )
