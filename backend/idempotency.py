"""Idempotent creates: a client may retry a POST (a timeout, a dropped connection) with the same client_key.

The retry must get the row the first request made, not a second one; the unique constraint on
(owner, client_key) settles two requests that race past the lookup.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.db import IntegrityError, models, transaction

M = TypeVar("M", bound=models.Model)


def create_once(
    objects: "models.Manager[M]",
    *,
    owner: User | None,
    client_key: str,
    create: Callable[[], M],
    owner_field: str = "created_by",
) -> tuple[M, bool]:
    """Return (the row `owner` already made under `client_key`, False), or (create() in a transaction, True).

    `create` runs only when no such row exists (a keyless or ownerless create always runs it); work it
    defers with `transaction.on_commit` happens only on the created path. When a concurrent retry wins
    the race, the unique constraint's IntegrityError is answered with the row stored under the key.
    """
    key: dict[str, Any] = {owner_field: owner, "client_key": client_key}
    if client_key and owner is not None:
        existing = objects.filter(**key).first()
        if existing:
            return existing, False
    try:
        with transaction.atomic():
            return create(), True
    except IntegrityError:
        return objects.get(**key), False
