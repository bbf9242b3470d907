"""Short-lived, per-process caches of who a token belongs to and which roles a user holds.

Every API call authenticates and checks a role; uncached, that is two queries a request (the token with its
user, then the user's groups). An entry lives `AUTH_CACHE_SECONDS` (5 by default; 0 turns the caches off).
The process that makes a change sees it at once (the signal receivers below drop what it touches); every
other web process sees it within that time: a deleted token, a deactivated user, a role granted or taken away.
"""

import copy
import threading
import time
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db.models.signals import m2m_changed, post_delete, post_save
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

K = TypeVar("K")
V = TypeVar("V")

# Past this many entries a cache starts afresh: memory stays bounded whatever the number of users.
MAX_ENTRIES = 10_000


class ExpiringCache(Generic[K, V]):
    """A dict whose entries expire `AUTH_CACHE_SECONDS` after they were put."""

    def __init__(self) -> None:
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        seconds = settings.AUTH_CACHE_SECONDS
        if seconds <= 0:
            return
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + seconds, value)

    def discard_where(self, keep: Any) -> None:
        """Drop the entries for which `keep(key, value)` is false."""
        with self._lock:
            self._entries = {key: entry for key, entry in self._entries.items() if keep(key, entry[1])}

    def discard(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


token_users: ExpiringCache[str, tuple[User, Token]] = ExpiringCache()
user_role_names: ExpiringCache[int, frozenset[str]] = ExpiringCache()


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's `Authorization: Token <key>`, with token -> user kept for a few seconds (see the module)."""

    def authenticate_credentials(self, key: str) -> tuple[User, Token]:
        cached = token_users.get(key)
        if cached is None:
            user, token = super().authenticate_credentials(key)  # refuses unknown keys and inactive users
            token_users.put(key, (user, token))
            cached = (user, token)
        # Each request gets its own copy: what a view sets on request.user stays in that request.
        return copy.copy(cached[0]), cached[1]


def _forget_user(user_id: int) -> None:
    user_role_names.discard(user_id)
    token_users.discard_where(lambda _key, value: value[0].pk != user_id)


def _on_token_deleted(instance: Token, **kwargs: Any) -> None:
    token_users.discard(instance.key)


def _on_user_changed(instance: User, **kwargs: Any) -> None:
    # Also on creation: SQLite reuses the ids of rolled-back rows (the tests do that all the time).
    _forget_user(instance.pk)


def _on_memberships_changed(instance: Any, action: str, pk_set: set[int] | None, **kwargs: Any) -> None:
    if not action.startswith("post_"):
        return
    if isinstance(instance, User):
        _forget_user(instance.pk)
    elif pk_set is None:  # group.user_set.clear() names no users
        user_role_names.clear()
    else:  # group.user_set.add(...) and .remove(...) name them
        for user_id in pk_set:
            _forget_user(user_id)


def _on_group_changed(**kwargs: Any) -> None:
    user_role_names.clear()


def connect_invalidation() -> None:
    """Drop cached entries when this process changes tokens, users, memberships or groups."""
    post_delete.connect(_on_token_deleted, sender=Token, dispatch_uid="auth-cache-token-deleted")
    post_save.connect(_on_user_changed, sender=User, dispatch_uid="auth-cache-user-saved")
    post_delete.connect(_on_user_changed, sender=User, dispatch_uid="auth-cache-user-deleted")
    m2m_changed.connect(_on_memberships_changed, sender=User.groups.through, dispatch_uid="auth-cache-memberships")
    post_save.connect(_on_group_changed, sender=Group, dispatch_uid="auth-cache-group-saved")
    post_delete.connect(_on_group_changed, sender=Group, dispatch_uid="auth-cache-group-deleted")
