"""DRF permission classes, one per role; a superuser passes all of them."""

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from backend.accounts.roles import Role, user_has_role


class _HasRole(BasePermission):
    roles: tuple[Role, ...] = ()

    def has_permission(self, request: Request, view: APIView) -> bool:
        return user_has_role(request.user, *self.roles)


class IsAnnotator(_HasRole):
    message = "Only annotators can do this."
    roles = (Role.ANNOTATOR,)


class IsBatchAdmin(_HasRole):
    message = "Only batch admins can do this."
    roles = (Role.ADMIN,)


class IsResearcher(_HasRole):
    message = "Only researchers can do this."
    roles = (Role.RESEARCHER,)


class IsStaffRole(_HasRole):
    """Admins or researchers: the people who may see model identities and everyone's work."""

    message = "Only batch admins and researchers can do this."
    roles = (Role.ADMIN, Role.RESEARCHER)


class IsAnyRole(_HasRole):
    message = "Your account has no role on this platform yet; ask an admin."
    roles = tuple(Role)
