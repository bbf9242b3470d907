"""The checkpoint registry API: admins and researchers only (annotators never see model identity)."""

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import IsStaffRole
from backend.accounts.roles import authenticated_user
from backend.checkpoints.models import Checkpoint, CheckpointKind
from backend.checkpoints.services import checkpoint_register


class CheckpointOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Checkpoint
        fields = ["id", "name", "kind", "path", "parent", "produced_by", "notes", "created_at"]


class CheckpointListCreateApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema_serializer(component_name="CheckpointRegisterInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        path = serializers.CharField(max_length=1000)
        kind = serializers.ChoiceField(choices=CheckpointKind.choices, default=CheckpointKind.POLICY)
        parent = serializers.IntegerField(required=False, allow_null=True, min_value=1)  # type: ignore[assignment]
        produced_by = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)

    @extend_schema(responses=CheckpointOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        checkpoints = Checkpoint.objects.all()
        kind = request.query_params.get("kind")
        if kind:
            checkpoints = checkpoints.filter(kind=kind)
        return Response(CheckpointOutputSerializer(checkpoints, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: CheckpointOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        checkpoint, created = checkpoint_register(
            name=values["name"],
            path=values["path"],
            kind=values["kind"],
            parent_id=values.get("parent"),
            produced_by=values["produced_by"],
            notes=values["notes"],
            created_by=authenticated_user(request),
        )
        return Response(
            CheckpointOutputSerializer(checkpoint).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class CheckpointDetailApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=CheckpointOutputSerializer)
    def get(self, request: Request, checkpoint_id: int) -> Response:
        return Response(CheckpointOutputSerializer(get_object_or_404(Checkpoint, pk=checkpoint_id)).data)
