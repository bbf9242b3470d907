"""The audit log API: staff (admins and researchers) read it; nobody writes it over HTTP."""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView

from backend.accounts.permissions import IsStaffRole
from backend.audit.models import AuditEvent
from backend.audit.selectors import audit_event_list


class AuditEventListApi(ListAPIView):
    permission_classes = [IsStaffRole]

    class FilterSerializer(serializers.Serializer):
        action = serializers.CharField(required=False, default="", max_length=100)
        actor = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
        target_type = serializers.CharField(required=False, default="", max_length=100)
        target_id = serializers.CharField(required=False, default="", max_length=64)

    class OutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = AuditEvent
            fields = [
                "id",
                "created_at",
                "actor",
                "actor_username",
                "action",
                "target_type",
                "target_id",
                "target_repr",
                "details",
            ]

    serializer_class = OutputSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("action", OpenApiTypes.STR, description='Exact action, or a prefix ending in "."'),
            OpenApiParameter("actor", OpenApiTypes.INT, description="The acting user's id."),
            OpenApiParameter("target_type", OpenApiTypes.STR, description='e.g. "batches.batch"'),
            OpenApiParameter("target_id", OpenApiTypes.STR),
        ]
    )
    def get(self, *args: Any, **kwargs: Any) -> Any:
        return super().get(*args, **kwargs)

    def get_queryset(self) -> QuerySet[AuditEvent]:
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        return audit_event_list(
            action=values["action"],
            actor_id=values["actor"],
            target_type=values["target_type"],
            target_id=values["target_id"],
        )
