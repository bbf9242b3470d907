"""Exports and imports over the API. Export files are served to researchers only."""

from pathlib import Path
from typing import Any

from django.http import FileResponse
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import IsResearcher, IsStaffRole
from backend.accounts.roles import authenticated_user
from backend.api import StrictSerializer, UploadSerializer, queued_or_ok
from backend.batches.selectors import batch_by_id
from backend.errors import NotFound
from exports.imports import preferences_import
from exports.models import ExportRun
from exports.selectors import export_run_by_id, export_run_list
from exports.services import _FILTER_KEYS, batch_statistics, export_create
from exports.stats import WHITESPACE
from exports.tasks import enqueue_export
from exports.writers import FORMATS
from preference_format import MARGIN_SCHEME_NAMES

FILE_NOT_FOUND = "This export has no such file."
FILTER_OUTSIDE = 'It is one of the filters: send it inside "filters", e.g. {{"filters": {{"{name}": ...}}}}.'


class ExportRunSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)
    files = serializers.SerializerMethodField()

    class Meta:
        model = ExportRun
        fields = [
            "id",
            "status",
            "progress",
            "rows_written",
            "rows_expected",
            "filters",
            "formats",
            "granularity",
            "margin_scheme",
            "mix",
            "test_mix",
            "seed",
            "created_at",
            "started_at",
            "finished_at",
            "error",
            "manifest",
            "files",
        ]

    def get_files(self, run: ExportRun) -> list[dict[str, Any]]:
        names = [entry["name"] for entry in run.manifest.get("files", [])]
        return [{"name": name, "url": f"/api/v1/exports/{run.pk}/files/{name}"} for name in [*names, "manifest.json"]]


class ExportListCreateApi(APIView):
    """GET: export runs. POST: queue an export (filters, formats, granularity, margin, mix)."""

    permission_classes = [IsResearcher]

    @extend_schema_serializer(component_name="ExportCreateInput")
    class InputSerializer(StrictSerializer):
        field_hints = {name: FILTER_OUTSIDE.format(name=name) for name in sorted(_FILTER_KEYS)}

        filters = serializers.JSONField(required=False, default=dict)
        formats = serializers.ListField(child=serializers.ChoiceField(choices=FORMATS), default=list(FORMATS))
        granularity = serializers.ChoiceField(choices=ExportRun.Granularity.choices, default="comparison")
        margin_scheme = serializers.ChoiceField(choices=MARGIN_SCHEME_NAMES, default="none")
        mix = serializers.ChoiceField(choices=ExportRun.Mix.choices, default="", allow_blank=True)
        test_mix = serializers.BooleanField(default=False)
        seed = serializers.IntegerField(default=0)
        tokenizer = serializers.CharField(default=WHITESPACE, max_length=1000)
        client_key = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)

    @extend_schema(responses=ExportRunSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(ExportRunSerializer(export_run_list(), many=True).data)

    @extend_schema(request=InputSerializer, responses={202: ExportRunSerializer, 200: ExportRunSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run, created = export_create(
            created_by=authenticated_user(request), enqueue=enqueue_export, **data.validated_data
        )
        run.refresh_from_db()
        return Response(ExportRunSerializer(run).data, status=queued_or_ok(created))


class ExportDetailApi(APIView):
    permission_classes = [IsResearcher]

    @extend_schema(responses=ExportRunSerializer)
    def get(self, request: Request, export_id: int) -> Response:
        return Response(ExportRunSerializer(export_run_by_id(export_id=export_id)).data)


class ExportFileApi(APIView):
    """Download one file of a finished export (streamed from disk)."""

    permission_classes = [IsResearcher]

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request: Request, export_id: int, name: str) -> FileResponse:
        run = export_run_by_id(export_id=export_id, done=True)
        allowed = {entry["name"] for entry in run.manifest.get("files", [])} | {"manifest.json"}
        if name not in allowed:
            raise NotFound(FILE_NOT_FOUND)
        return FileResponse((Path(run.directory) / name).open("rb"), as_attachment=True, filename=name)


class BatchStatisticsApi(APIView):
    """The export manifest's figures for one batch, live: counts by split, strength, label; Table 6."""

    permission_classes = [IsStaffRole]

    @extend_schema(responses=dict)
    def get(self, request: Request, batch_id: int) -> Response:
        return Response(batch_statistics(batch=batch_by_id(batch_id=batch_id)))


class PreferenceImportApi(APIView):
    """Import open-source preference pairs (Anthropic HH 'chosen'/'rejected' JSONL), kept apart from ours."""

    permission_classes = [IsResearcher]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="PreferenceImportInput")
    class InputSerializer(UploadSerializer):
        source = serializers.CharField(max_length=100)  # type: ignore[assignment]
        harmless = serializers.BooleanField()

    @extend_schema(request=InputSerializer, responses=dict)
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        counts = preferences_import(
            content=values["file"].read(),
            source=values["source"],
            harmless=values["harmless"],
            created_by=authenticated_user(request),
        )
        return Response(counts, status=status.HTTP_201_CREATED)
