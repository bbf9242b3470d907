"""Who the caller is, and which roles they hold; a token for a username and password."""

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import IsAnyRole
from backend.accounts.roles import user_roles
from backend.api import StrictSerializer


class MeApi(APIView):
    permission_classes = [IsAnyRole]

    @extend_schema_serializer(component_name="Me")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        roles = serializers.ListField(child=serializers.CharField())

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        user = request.user
        return Response({"id": user.pk, "username": user.get_username(), "roles": sorted(user_roles(user))})


class TokenApi(ObtainAuthToken):
    """Exchange a username and password for a token (DRF's exchange, refusing unknown fields as every write does)."""

    @extend_schema_serializer(component_name="AuthToken")
    class InputSerializer(StrictSerializer, AuthTokenSerializer):
        pass

    serializer_class = InputSerializer
