"""The platform's roles, held as Django groups, and the one way to ask whether a user has one."""

from enum import StrEnum

from django.contrib.auth.models import AnonymousUser, User
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request

from backend.accounts.auth_cache import user_role_names


class Role(StrEnum):
    ANNOTATOR = "annotator"
    ADMIN = "admin"
    RESEARCHER = "researcher"


def user_roles(user: User | AnonymousUser) -> frozenset[str]:
    """The role names a user holds, cached on the user object for the rest of the request.

    A superuser holds every role. Between requests the names stay a few seconds in this process's
    `user_role_names` (see backend.accounts.auth_cache for how soon a change of role is seen).
    """
    if not user.is_authenticated:
        return frozenset()
    cached: frozenset[str] | None = getattr(user, "_role_names", None)
    if cached is None:
        if user.is_superuser:
            cached = frozenset(Role)
        else:
            cached = user_role_names.get(user.pk)
            if cached is None:
                cached = frozenset(user.groups.values_list("name", flat=True))
                user_role_names.put(user.pk, cached)
        user._role_names = cached  # type: ignore[union-attr,attr-defined]
    return cached


def authenticated_user(request: Request) -> User:
    """The signed-in user of a request that a role permission already let through."""
    if not isinstance(request.user, User):
        raise NotAuthenticated()
    return request.user


def user_has_role(user: User | AnonymousUser, *roles: Role) -> bool:
    return bool(user_roles(user) & set(roles))
