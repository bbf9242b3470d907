"""Who the caller is, and which roles they hold."""

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import IsAnyRole
from backend.accounts.roles import user_roles


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
