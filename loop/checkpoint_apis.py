"""The checkpoint registry API: admins and researchers only (annotators never see model identity). A policy
checkpoint's temperature scans are started (researchers) and read here too."""

from typing import Any

from django.db import transaction
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import IsBatchAdmin, IsResearcher, IsStaffRole
from backend.accounts.roles import authenticated_user
from backend.api import StrictSerializer, created_or_ok, queued_or_ok
from backend.checkpoints.models import Checkpoint, CheckpointKind, TrainingRun
from backend.checkpoints.selectors import checkpoint_by_id, checkpoint_list, training_run_by_id, training_run_list
from backend.checkpoints.services import checkpoint_register, checkpoint_serving_set, serving_url_check
from loop.models import TemperatureScan
from loop.selectors import temperature_scan_by_id, temperature_scan_plot_path, temperature_scans_of
from loop.services.temperature_scans import temperature_scan_create
from loop.services.training_runs import training_run_create
from loop.tasks import enqueue_temperature_scan, enqueue_training_run


class CheckpointOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Checkpoint
        fields = [
            "id",
            "name",
            "kind",
            "path",
            "parent",
            "produced_by",
            "serving_url",
            "served_model_name",
            "notes",
            "created_at",
        ]


class CheckpointListCreateApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema_serializer(component_name="CheckpointRegisterInput")
    class InputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200)
        path = serializers.CharField(max_length=1000)
        kind = serializers.ChoiceField(choices=CheckpointKind.choices, default=CheckpointKind.POLICY)
        parent = serializers.IntegerField(required=False, allow_null=True, min_value=1)  # type: ignore[assignment]
        produced_by = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        serving_url = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
        served_model_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)

    @extend_schema(responses=CheckpointOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        checkpoints = checkpoint_list(kind=request.query_params.get("kind", ""))
        return Response(CheckpointOutputSerializer(checkpoints, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: CheckpointOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        serving_url_check(values["serving_url"])  # before anything is registered
        with transaction.atomic():
            checkpoint, created = checkpoint_register(
                name=values["name"],
                path=values["path"],
                kind=values["kind"],
                parent_id=values.get("parent"),
                produced_by=values["produced_by"],
                notes=values["notes"],
                created_by=authenticated_user(request),
            )
            if created:
                checkpoint_serving_set(
                    checkpoint=checkpoint,
                    serving_url=values["serving_url"],
                    served_model_name=values["served_model_name"],
                    actor=authenticated_user(request),
                )
        return Response(
            CheckpointOutputSerializer(checkpoint).data,
            status=created_or_ok(created),
        )


class TemperatureScanOutputSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)
    best_temperature = serializers.FloatField(read_only=True, allow_null=True)
    plot = serializers.SerializerMethodField()

    class Meta:
        model = TemperatureScan
        fields = [
            "id",
            "checkpoint",
            "status",
            "progress",
            "step",
            "total_steps",
            "reward_helpfulness",
            "reward_safety",
            "prompts_path",
            "config",
            "best_temperature",
            "result",
            "plot",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_plot(self, scan: TemperatureScan) -> str | None:
        """The URL of the curve's PNG once the scan has finished."""
        if scan.status != TemperatureScan.Status.DONE:
            return None
        return reverse("temperature-scan-plot", kwargs={"scan_id": scan.pk})


class CheckpointDetailOutputSerializer(CheckpointOutputSerializer):
    temperature_scans = serializers.SerializerMethodField()

    class Meta(CheckpointOutputSerializer.Meta):
        fields = [*CheckpointOutputSerializer.Meta.fields, "temperature_scans"]

    @extend_schema_field(TemperatureScanOutputSerializer(many=True))
    def get_temperature_scans(self, checkpoint: Checkpoint) -> list[dict[str, Any]]:
        scans = temperature_scans_of(checkpoint=checkpoint)
        return list(TemperatureScanOutputSerializer(scans, many=True).data)


class CheckpointDetailApi(APIView):
    """GET: one checkpoint, with its temperature scans (newest first: status, progress, curve, best temperature).
    PATCH (batch admins): where it is served, for the openai engine (`serving_url`, `served_model_name`)."""

    @extend_schema_serializer(component_name="CheckpointServingInput")
    class ServingSerializer(StrictSerializer):
        serving_url = serializers.CharField(max_length=500, allow_blank=True)
        served_model_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    def get_permissions(self) -> list[BasePermission]:
        return [IsBatchAdmin()] if self.request.method == "PATCH" else [IsStaffRole()]

    @extend_schema(responses=CheckpointDetailOutputSerializer)
    def get(self, request: Request, checkpoint_id: int) -> Response:
        return Response(CheckpointDetailOutputSerializer(checkpoint_by_id(checkpoint_id=checkpoint_id)).data)

    @extend_schema(request=ServingSerializer, responses=CheckpointDetailOutputSerializer)
    def patch(self, request: Request, checkpoint_id: int) -> Response:
        checkpoint = checkpoint_by_id(checkpoint_id=checkpoint_id)
        data = self.ServingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        checkpoint_serving_set(
            checkpoint=checkpoint,
            serving_url=data.validated_data["serving_url"],
            served_model_name=data.validated_data["served_model_name"],
            actor=authenticated_user(request),
        )
        return Response(CheckpointDetailOutputSerializer(checkpoint).data)


class CheckpointTemperatureScanListCreateApi(APIView):
    """GET: a checkpoint's temperature scans (admins, researchers). POST: scan a policy checkpoint's sampling
    temperatures on the `training` queue (researchers): the best reward among N samples against N, per temperature
    (Llama 2, Figure 8). Reward models default to the newest registered ones, prompts to the newest iteration's."""

    @extend_schema_serializer(component_name="TemperatureScanCreateInput")
    class InputSerializer(StrictSerializer):
        reward_helpfulness = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
        reward_safety = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
        prompts_path = serializers.CharField(required=False, default="", allow_blank=True, max_length=1000)
        config = serializers.DictField(
            required=False,
            default=dict,
            help_text='e.g. {"temperatures": [0.6, 0.8, 1.0, 1.2, 1.4], "max_samples": 16, "max_prompts": 64}',
        )
        client_key = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)

    def get_permissions(self) -> list[BasePermission]:
        return [IsResearcher()] if self.request.method == "POST" else [IsStaffRole()]

    @extend_schema(responses=TemperatureScanOutputSerializer(many=True))
    def get(self, request: Request, checkpoint_id: int) -> Response:
        checkpoint = checkpoint_by_id(checkpoint_id=checkpoint_id)
        return Response(TemperatureScanOutputSerializer(temperature_scans_of(checkpoint=checkpoint), many=True).data)

    @extend_schema(request=InputSerializer, responses={202: TemperatureScanOutputSerializer})
    def post(self, request: Request, checkpoint_id: int) -> Response:
        checkpoint = checkpoint_by_id(checkpoint_id=checkpoint_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        scan, created = temperature_scan_create(
            checkpoint_id=checkpoint.pk,
            reward_helpfulness_id=values["reward_helpfulness"],
            reward_safety_id=values["reward_safety"],
            prompts_path=values["prompts_path"],
            config=values["config"],
            client_key=values["client_key"],
            created_by=authenticated_user(request),
            enqueue=enqueue_temperature_scan,
        )
        scan.refresh_from_db()
        return Response(TemperatureScanOutputSerializer(scan).data, status=queued_or_ok(created))


class TemperatureScanDetailApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=TemperatureScanOutputSerializer)
    def get(self, request: Request, scan_id: int) -> Response:
        return Response(TemperatureScanOutputSerializer(temperature_scan_by_id(scan_id=scan_id)).data)


class TemperatureScanPlotApi(APIView):
    """The scan's curve (PNG): max reward among N samples against N, one line per temperature."""

    permission_classes = [IsStaffRole]

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request: Request, scan_id: int) -> FileResponse:
        path = temperature_scan_plot_path(scan=temperature_scan_by_id(scan_id=scan_id))
        return FileResponse(path.open("rb"), content_type="image/png", filename=path.name)


class TrainingRunOutputSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "kind",
            "status",
            "progress",
            "step",
            "total_steps",
            "export",
            "base_checkpoint",
            "builtin_backbone",
            "config",
            "metrics",
            "log_tail",
            "error",
            "output_checkpoint",
            "created_at",
            "started_at",
            "finished_at",
        ]


class TrainingRunListCreateApi(APIView):
    """GET: training runs (admins, researchers). POST: train a reward model on a finished export (researchers)."""

    @extend_schema_serializer(component_name="TrainingRunCreateInput")
    class InputSerializer(StrictSerializer):
        kind = serializers.ChoiceField(choices=TrainingRun.Kind.choices)
        export = serializers.IntegerField(min_value=1)
        base_checkpoint = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
        builtin_backbone = serializers.CharField(required=False, default="", allow_blank=True, max_length=100)
        config = serializers.DictField(required=False, default=dict)
        client_key = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)

    def get_permissions(self) -> list[BasePermission]:
        return [IsResearcher()] if self.request.method == "POST" else [IsStaffRole()]

    @extend_schema(responses=TrainingRunOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(TrainingRunOutputSerializer(training_run_list(), many=True).data)

    @extend_schema(request=InputSerializer, responses={202: TrainingRunOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        run, created = training_run_create(
            kind=values["kind"],
            export_id=values["export"],
            base_checkpoint_id=values["base_checkpoint"],
            builtin_backbone=values["builtin_backbone"],
            config=values["config"],
            client_key=values["client_key"],
            created_by=authenticated_user(request),
            enqueue=enqueue_training_run,
        )
        run.refresh_from_db()
        code = queued_or_ok(created)
        return Response(TrainingRunOutputSerializer(run).data, status=code)


class TrainingRunDetailApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=TrainingRunOutputSerializer)
    def get(self, request: Request, run_id: int) -> Response:
        return Response(TrainingRunOutputSerializer(training_run_by_id(run_id=run_id)).data)
