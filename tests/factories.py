"""Test data builders: small functions that make valid objects through the services."""

import itertools
from datetime import datetime

from django.contrib.auth.models import Group, User

from backend.accounts.roles import Role
from backend.batches.models import Batch, Comparison, Focus, Prompt
from backend.batches.services.batches import batch_create, batch_open
from backend.batches.services.comparisons import ResponseInput, comparison_create
from backend.batches.services.prompts import prompt_create
from backend.checkpoints.models import Checkpoint, CheckpointKind
from backend.checkpoints.services import checkpoint_register

_counter = itertools.count(1)


def make_user(role: Role | None = Role.ANNOTATOR, *, username: str = "", password: str = "pw") -> User:
    user = User.objects.create_user(username=username or f"user{next(_counter)}", password=password)
    if role is not None:
        user.groups.add(Group.objects.get(name=role.value))
    if role in (Role.ADMIN, Role.RESEARCHER):
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return user


def make_checkpoint(name: str = "", kind: str = CheckpointKind.POLICY) -> Checkpoint:
    name = name or f"policy-{next(_counter)}"
    checkpoint, _ = checkpoint_register(name=name, path=f"/models/{name}", kind=kind)
    return checkpoint


def make_prompt(text: str = "", **kwargs: object) -> Prompt:
    prompt, _ = prompt_create(text=text or f"Prompt number {next(_counter)}?", author=None, **kwargs)  # type: ignore[arg-type]
    return prompt


def make_comparison(
    batch: Batch,
    *,
    prompt: Prompt | None = None,
    checkpoints: tuple[Checkpoint, Checkpoint] | None = None,
    texts: tuple[str, str] = ("first answer", "second answer"),
) -> Comparison:
    first_ckpt, second_ckpt = checkpoints or tuple(batch.checkpoints.order_by("id")[:2])  # type: ignore[misc]
    comparison, _ = comparison_create(
        batch=batch,
        prompt=prompt or make_prompt(),
        first=ResponseInput(checkpoint=first_ckpt, text=texts[0], temperature=0.7, seed=1),
        second=ResponseInput(checkpoint=second_ckpt, text=texts[1], temperature=1.0, seed=2),
    )
    return comparison


def make_batch(
    *,
    comparisons: int = 3,
    overlap: int = 1,
    focus: str = Focus.HELPFULNESS,
    open_it: bool = True,
    opens_at: datetime | None = None,
    closes_at: datetime | None = None,
    held_out_size: int = 0,
    held_out_fraction: float = 0.1,
) -> Batch:
    checkpoints = [make_checkpoint(), make_checkpoint()]
    batch, _ = batch_create(
        name=f"batch-{next(_counter)}",
        target_comparisons=max(comparisons, 1),
        created_by=None,
        focus=focus,
        checkpoint_ids=[c.pk for c in checkpoints],
        temperatures=[0.7, 1.0],
        overlap=overlap,
        held_out_size=held_out_size,
        held_out_fraction=held_out_fraction,
        opens_at=opens_at,
        closes_at=closes_at,
    )
    for _ in range(comparisons):
        make_comparison(batch, checkpoints=(checkpoints[0], checkpoints[1]))
    if open_it:
        batch = batch_open(batch=batch)
    return batch
