"""The platform's roles, held as Django groups, and the one way to ask whether a user has one."""
from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


class Role(StrEnum):
    ANNOTATOR = "annotator"
    ADMIN = "admin"
    RESEARCHER = "researcher"


def user_roles(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    """The role names a user holds, cached on the user object for the rest of the request.

    A superuser holds every role.
    """
    if not user.is_authenticated:
        return frozenset()
    cached: frozenset[str] | None = getattr(user, "_role_names", None)
    if cached is None:
        if user.is_superuser:  # type: ignore[union-attr]
            cached = frozenset(Role)
        else:
            cached = frozenset(user.groups.values_list("name", flat=True))  # type: ignore[union-attr]
        user._role_names = cached  # type: ignore[union-attr]
    return cached


def user_has_role(user: AbstractBaseUser | AnonymousUser, *roles: Role) -> bool:
    return bool(user_roles(user) & set(roles))
