"""Bulk seeding through the ORM and the services: id ranges per table, open batches, a closed annotated history,
annotators with tokens. Call from a process where Django is set up (the imports are inside the functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
# Seeding writes comparisons (one prompt and two responses each, as the sampler does) in chunks.
SEED_CHUNK = 2_000
RESPONSE_CHARS = 900


def seed_ids() -> None:
    """Restart each table of ID_RANGES at its own range (k * ID_BASE)."""
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
