"""The annotation core's staff API: batches and their comparisons. Each view validates its input, calls one
service or selector, serializes. (The annotator's loop is in annotation_apis, prompts in prompt_apis.)"""

from typing import Any

from drf_spectacular.utils import (
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import (
    IsAnyRole,
    IsBatchAdmin,
    IsStaffRole,
)
from backend.accounts.roles import Role, authenticated_user, user_has_role
from backend.api import StrictSerializer, created_or_ok, paginated, refuse_input
from backend.batches.models import (
    Batch,
    Focus,
)
from backend.batches.selectors import (
    batch_by_id,
    batch_comparisons,
    batch_get,
    batch_list,
    batch_live_pairs,
    batch_progress,
    prompt_by_id,
)
from backend.batches.services.batches import batch_close, batch_create, batch_open
from backend.batches.services.comparisons import ResponseInput, comparison_create
from backend.checkpoints.models import Checkpoint
from preference_format import FinishReason, Reproducibility, choices

# --- batches ---------------------------------------------------------------------------------


class BatchProgressSerializer(serializers.Serializer):
    comparisons = serializers.IntegerField()
    held_out = serializers.IntegerField()
    complete = serializers.IntegerField()
    annotations = serializers.IntegerField()
    skips = serializers.IntegerField()
    live_leases = serializers.IntegerField()
    target_annotations = serializers.IntegerField()
    fraction_done = serializers.FloatField()


class LivePairFailureSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    prompt = serializers.IntegerField()
    requested_by = serializers.IntegerField()
    error = serializers.CharField(help_text="The engine's error, whole (its author was told a generic reason).")
    finished_at = serializers.DateTimeField(allow_null=True)


class BatchLivePairsSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    done = serializers.IntegerField()
    failed = serializers.IntegerField()
    recent_failures = LivePairFailureSerializer(many=True)


class BatchAnnotatorSerializer(serializers.ModelSerializer):
    """What an annotator sees of a batch: no sampling plan."""

    class Meta:
        model = Batch
        fields = [
            "id",
            "name",
            "iso_week",
            "focus",
            "status",
            "opens_at",
            "closes_at",
            "guidelines",
            "annotators_write_prompts",
            "annotator_quota",
        ]


class BatchStaffSerializer(serializers.ModelSerializer):
    class Meta:
        model = Batch
        fields = [
            "id",
            "name",
            "iso_week",
            "focus",
            "status",
            "checkpoints",
            "temperatures",
            "top_p",
            "max_new_tokens",
            "target_comparisons",
            "overlap",
            "annotator_quota",
            "held_out_size",
            "held_out_fraction",
            "opens_at",
            "closes_at",
            "guidelines",
            "annotators_write_prompts",
            "gold_rate",
            "selection",
            "selection_checkpoint",
            "sampling_error",
            "sampled_at",
            "created_at",
            "opened_at",
            "closed_at",
        ]


def _batch_serializer(request: Request) -> type[serializers.ModelSerializer]:
    if user_has_role(request.user, Role.ADMIN, Role.RESEARCHER):
        return BatchStaffSerializer
    return BatchAnnotatorSerializer


class BatchListCreateApi(APIView):
    """GET: batches you may see (annotators: open ones). POST: create a draft batch (admins)."""

    @extend_schema_serializer(component_name="BatchCreateInput")
    class InputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200)
        focus = serializers.ChoiceField(choices=Focus.choices, default=Focus.HELPFULNESS)
        iso_week = serializers.CharField(max_length=8, required=False, default="", allow_blank=True)
        checkpoints = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list)
        temperatures = serializers.ListField(
            child=serializers.FloatField(), required=False, default=list, max_length=32
        )
        top_p = serializers.FloatField(default=0.9)
        max_new_tokens = serializers.IntegerField(default=512)
        target_comparisons = serializers.IntegerField(min_value=1, max_value=10_000_000)
        overlap = serializers.IntegerField(default=1)
        annotator_quota = serializers.IntegerField(required=False, allow_null=True, default=None)
        held_out_size = serializers.IntegerField(default=1000, min_value=0)
        held_out_fraction = serializers.FloatField(default=0.1)
        opens_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        closes_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        guidelines = serializers.CharField(required=False, allow_blank=True, default="", max_length=100_000)
        annotators_write_prompts = serializers.BooleanField(default=False)
        gold_rate = serializers.FloatField(default=0.05, help_text="Share of leases that serve gold, 0 to 0.5.")
        selection = serializers.ChoiceField(choices=Batch.Selection.choices, default=Batch.Selection.BALANCED)
        selection_checkpoint = serializers.IntegerField(
            required=False,
            allow_null=True,
            default=None,
            min_value=1,
            help_text="The reward model for 'uncertain' selection.",
        )

    def get_permissions(self) -> list[BasePermission]:
        return [IsBatchAdmin()] if self.request.method == "POST" else [IsAnyRole()]

    @extend_schema(responses=BatchStaffSerializer(many=True))
    def get(self, request: Request) -> Response:
        batches = batch_list(user=authenticated_user(request)).prefetch_related("checkpoints")
        return paginated(request, self, batches, _batch_serializer(request))

    @extend_schema(request=InputSerializer, responses={201: BatchStaffSerializer, 200: BatchStaffSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        batch, created = batch_create(
            checkpoint_ids=values.pop("checkpoints"),
            selection_checkpoint_id=values.pop("selection_checkpoint"),
            created_by=authenticated_user(request),
            **values,
        )
        return Response(BatchStaffSerializer(batch).data, status=created_or_ok(created))


class BatchDetailApi(APIView):
    permission_classes = [IsAnyRole]

    @extend_schema_serializer(component_name="BatchDetail")
    class OutputSerializer(BatchStaffSerializer):
        progress = serializers.SerializerMethodField()
        live_pairs = serializers.SerializerMethodField()

        class Meta(BatchStaffSerializer.Meta):
            fields = [*BatchStaffSerializer.Meta.fields, "progress", "live_pairs"]

        def get_progress(self, batch: Batch) -> dict[str, Any]:
            progress = batch_progress(batch=batch)
            return dict(BatchProgressSerializer(progress).data)

        @extend_schema_field(BatchLivePairsSerializer)
        def get_live_pairs(self, batch: Batch) -> dict[str, Any]:
            return dict(BatchLivePairsSerializer(batch_live_pairs(batch=batch)).data)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, batch_id: int) -> Response:
        batch = batch_get(batch_id=batch_id, user=authenticated_user(request))
        serializer = (
            self.OutputSerializer
            if user_has_role(request.user, Role.ADMIN, Role.RESEARCHER)
            else (BatchAnnotatorSerializer)
        )
        return Response(serializer(batch).data)


class BatchOpenApi(APIView):
    permission_classes = [IsBatchAdmin]

    @extend_schema(request=None, responses=BatchStaffSerializer)
    def post(self, request: Request, batch_id: int) -> Response:
        refuse_input(request.data)
        batch = batch_open(batch=batch_by_id(batch_id=batch_id), actor=authenticated_user(request))
        return Response(BatchStaffSerializer(batch).data)


class BatchCloseApi(APIView):
    permission_classes = [IsBatchAdmin]

    @extend_schema(request=None, responses=BatchStaffSerializer)
    def post(self, request: Request, batch_id: int) -> Response:
        refuse_input(request.data)
        batch = batch_close(batch=batch_by_id(batch_id=batch_id), actor=authenticated_user(request))
        return Response(BatchStaffSerializer(batch).data)


# --- comparisons (staff view, with provenance) ---------------------------------------------------


class ResponseProvenanceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    checkpoint = serializers.IntegerField(source="checkpoint_id")
    text = serializers.CharField()
    temperature = serializers.FloatField()
    top_p = serializers.FloatField()
    seed = serializers.IntegerField(allow_null=True)
    max_new_tokens = serializers.IntegerField(allow_null=True)
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    finish_reason = serializers.CharField()
    latency_ms = serializers.IntegerField(allow_null=True)
    engine = serializers.CharField()
    engine_version = serializers.CharField()
    device = serializers.CharField()
    dtype = serializers.CharField()
    reproducibility = serializers.CharField()


class ComparisonStaffSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    batch = serializers.IntegerField(source="batch_id")
    prompt = serializers.IntegerField(source="prompt_id")
    prompt_text = serializers.CharField(source="prompt.text")
    first_response = ResponseProvenanceSerializer()
    second_response = ResponseProvenanceSerializer()
    is_held_out = serializers.BooleanField()
    annotation_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class ResponseInputSerializer(StrictSerializer):
    checkpoint = serializers.PrimaryKeyRelatedField(queryset=Checkpoint.objects.all())
    text = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=100_000)
    temperature = serializers.FloatField(min_value=0, max_value=2)
    top_p = serializers.FloatField(default=1.0)
    seed = serializers.IntegerField(required=False, allow_null=True, default=None)
    max_new_tokens = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    prompt_tokens = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0)
    completion_tokens = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0)
    finish_reason = serializers.ChoiceField(choices=choices(FinishReason), default=FinishReason.STOP)
    latency_ms = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0)
    engine = serializers.CharField(required=False, default="", allow_blank=True, max_length=32)
    engine_version = serializers.CharField(required=False, default="", allow_blank=True, max_length=100)
    device = serializers.CharField(required=False, default="", allow_blank=True, max_length=200)
    dtype = serializers.CharField(required=False, default="", allow_blank=True, max_length=16)
    reproducibility = serializers.ChoiceField(choices=choices(Reproducibility), default=Reproducibility.NONE)


class BatchComparisonListCreateApi(APIView):
    """GET: the batch's comparisons with full provenance (staff). POST: add a pair (admins)."""

    @extend_schema_serializer(component_name="ComparisonCreateInput")
    class InputSerializer(StrictSerializer):
        prompt = serializers.IntegerField(min_value=1)
        first_response = ResponseInputSerializer()
        second_response = ResponseInputSerializer()

    def get_permissions(self) -> list[BasePermission]:
        return [IsBatchAdmin()] if self.request.method == "POST" else [IsStaffRole()]

    @extend_schema(responses=ComparisonStaffSerializer(many=True))
    def get(self, request: Request, batch_id: int) -> Response:
        comparisons = batch_comparisons(batch=batch_by_id(batch_id=batch_id))
        return paginated(request, self, comparisons, ComparisonStaffSerializer)

    @extend_schema(request=InputSerializer, responses={201: ComparisonStaffSerializer})
    def post(self, request: Request, batch_id: int) -> Response:
        batch = batch_by_id(batch_id=batch_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        comparison, created = comparison_create(
            batch=batch,
            prompt=prompt_by_id(prompt_id=values["prompt"]),
            first=ResponseInput(**values["first_response"]),
            second=ResponseInput(**values["second_response"]),
        )
        return Response(ComparisonStaffSerializer(comparison).data, status=created_or_ok(created))
