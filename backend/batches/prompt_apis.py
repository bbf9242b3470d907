"""Prompts and dialogues: annotators write their own prompts and continue dialogues; staff list the pool and import
it from a file."""

from drf_spectacular.utils import (
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import (
    IsAnnotator,
    IsAnyRole,
    IsBatchAdmin,
)
from backend.accounts.roles import Role, authenticated_user, user_has_role
from backend.api import StrictSerializer, UploadSerializer, created_or_ok, paginated
from backend.batches.models import (
    Prompt,
    PromptSource,
)
from backend.batches.selectors import (
    prompt_list,
)
from backend.batches.services.prompts import dialogue_continue, prompt_create, prompts_import


class PromptOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Prompt
        fields = ["id", "text", "source", "is_safety", "is_adversarial", "tags", "dialogue", "created_at"]


class PromptListCreateApi(APIView):
    """GET: the prompt pool (staff) or your own prompts. POST: write a prompt (any role)."""

    permission_classes = [IsAnyRole]

    @extend_schema_serializer(component_name="PromptCreateInput")
    class InputSerializer(StrictSerializer):
        text = serializers.CharField(max_length=20_000)
        is_safety = serializers.BooleanField(default=False)
        is_adversarial = serializers.BooleanField(default=False)
        tags = serializers.ListField(
            child=serializers.CharField(max_length=50), required=False, default=list, max_length=20
        )
        client_key = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)

    @extend_schema(responses=PromptOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated(request, self, prompt_list(user=authenticated_user(request)), PromptOutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: PromptOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        source = (
            PromptSource.POOL if user_has_role(request.user, Role.ADMIN, Role.RESEARCHER) else PromptSource.ANNOTATOR
        )
        prompt, created = prompt_create(author=authenticated_user(request), source=source, **data.validated_data)
        return Response(PromptOutputSerializer(prompt).data, status=created_or_ok(created))


class AnnotationContinueApi(APIView):
    """Continue the dialogue from your annotation: the chosen response becomes context for your next turn."""

    permission_classes = [IsAnnotator]

    @extend_schema_serializer(component_name="DialogueContinueInput")
    class InputSerializer(StrictSerializer):
        next_message = serializers.CharField(max_length=20_000)
        client_key = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)

    @extend_schema(request=InputSerializer, responses={201: PromptOutputSerializer})
    def post(self, request: Request, annotation_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        prompt, created = dialogue_continue(
            annotation_id=annotation_id, annotator=authenticated_user(request), **data.validated_data
        )
        return Response(PromptOutputSerializer(prompt).data, status=created_or_ok(created))


class PromptImportApi(APIView):
    """Add prompts to the pool from a JSONL or CSV file ('text', 'is_safety', 'is_adversarial', 'tags')."""

    permission_classes = [IsBatchAdmin]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="PromptImportInput")
    class InputSerializer(UploadSerializer):
        pass

    @extend_schema(request=InputSerializer, responses=dict)
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        counts = prompts_import(content=data.validated_data["file"].read(), created_by=authenticated_user(request))
        return Response(counts, status=status.HTTP_201_CREATED)
