"""The loop's API: iterations (researchers start and retry them; staff read them, their report and plots) and
batch templates (admins; their temperatures may be set from a temperature scan)."""

from django.http import FileResponse
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.accounts.permissions import IsBatchAdmin, IsResearcher, IsStaffRole
from backend.accounts.roles import authenticated_user
from backend.api import StrictSerializer, created_or_ok, queued_or_ok, refuse_input
from backend.batches.models import Focus
from loop.models import BatchTemplate, Iteration, Method
from loop.selectors import (
    iteration_by_id,
    iteration_list,
    iteration_plot_path,
    iteration_plots,
    iteration_progress,
    iteration_report,
    temperature_scan_by_id,
    template_by_id,
    template_list,
)
from loop.services.iterations import iteration_create, iteration_retry
from loop.services.temperature_scans import TEMPLATE_TEMPERATURES, template_temperatures_from_scan
from loop.services.templates import template_create
from loop.tasks import enqueue_iteration


class IterationOutputSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    plots = serializers.SerializerMethodField()
    evaluation = serializers.SerializerMethodField()

    class Meta:
        model = Iteration
        fields = [
            "id",
            "status",
            "step",
            "progress",
            "error",
            "batches",
            "given_export",
            "base_policy",
            "methods",
            "reward_backbone",
            "reward_builtin_backbone",
            "config",
            "helpfulness_export",
            "safety_export",
            "reward_helpfulness_run",
            "reward_safety_run",
            "rejection_sampling_run",
            "ppo_run",
            "scan_temperatures",
            "temperature_scan",
            "new_policy",
            "evaluation_reward_models",
            "evaluation",
            "plots",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_progress(self, iteration: Iteration) -> float:
        return iteration_progress(iteration=iteration)

    def get_plots(self, iteration: Iteration) -> list[str]:
        return sorted(iteration_plots(iteration=iteration))

    def get_evaluation(self, iteration: Iteration) -> dict:
        return {key: value for key, value in iteration.evaluation.items() if key != "samples"}


class IterationListCreateApi(APIView):
    """GET: iterations (admins, researchers). POST: start one turn of the loop (researchers)."""

    @extend_schema_serializer(component_name="IterationCreateInput")
    class InputSerializer(StrictSerializer):
        batches = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list)
        export = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
        base_policy = serializers.IntegerField(min_value=1)
        methods = serializers.ListField(child=serializers.ChoiceField(choices=Method.choices), min_length=1)
        reward_backbone = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
        reward_builtin_backbone = serializers.CharField(required=False, default="", allow_blank=True, max_length=100)
        config = serializers.DictField(required=False, default=dict)
        evaluation_reward_models = serializers.ListField(
            child=serializers.IntegerField(min_value=1),
            required=False,
            default=list,
            help_text="Reward-model checkpoint ids that also score the held-out answers (not optimised against).",
        )
        scan_temperatures = serializers.BooleanField(
            required=False,
            default=False,
            help_text='Scan the base policy\'s temperatures after the reward models (RS temperature "scan" uses it).',
        )
        client_key = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)

    def get_permissions(self) -> list[BasePermission]:
        return [IsResearcher()] if self.request.method == "POST" else [IsStaffRole()]

    @extend_schema(responses=IterationOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(IterationOutputSerializer(iteration_list(), many=True).data)

    @extend_schema(request=InputSerializer, responses={202: IterationOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        iteration, created = iteration_create(
            created_by=authenticated_user(request),
            enqueue=enqueue_iteration,
            base_policy_id=values["base_policy"],
            methods=values["methods"],
            batch_ids=values["batches"],
            export_id=values["export"],
            reward_backbone_id=values["reward_backbone"],
            reward_builtin_backbone=values["reward_builtin_backbone"],
            config=values["config"],
            evaluation_reward_model_ids=values["evaluation_reward_models"],
            scan_temperatures=values["scan_temperatures"],
            client_key=values["client_key"],
        )
        iteration = iteration_by_id(iteration_id=iteration.pk)
        code = queued_or_ok(created)
        return Response(IterationOutputSerializer(iteration).data, status=code)


class IterationDetailApi(APIView):
    permission_classes = [IsStaffRole]

    @extend_schema(responses=IterationOutputSerializer)
    def get(self, request: Request, iteration_id: int) -> Response:
        return Response(IterationOutputSerializer(iteration_by_id(iteration_id=iteration_id)).data)


class IterationRetryApi(APIView):
    """Continue a failed iteration from the step that failed; a queued or running one is returned as it is."""

    permission_classes = [IsResearcher]

    @extend_schema(request=None, responses={202: IterationOutputSerializer})
    def post(self, request: Request, iteration_id: int) -> Response:
        refuse_input(request.data)
        iteration = iteration_by_id(iteration_id=iteration_id)
        iteration = iteration_retry(iteration=iteration, enqueue=enqueue_iteration, actor=authenticated_user(request))
        return Response(
            IterationOutputSerializer(iteration_by_id(iteration_id=iteration.pk)).data, status=status.HTTP_202_ACCEPTED
        )


class IterationReportApi(APIView):
    """Reward-model accuracy by strength, held-out reward of new vs previous policy, human win rate, leaderboard."""

    permission_classes = [IsStaffRole]

    @extend_schema(responses=dict)
    def get(self, request: Request, iteration_id: int) -> Response:
        return Response(iteration_report(iteration=iteration_by_id(iteration_id=iteration_id)))


class IterationPlotApi(APIView):
    """One of the iteration's plots (PNG): reward-model accuracy by strength, PPO curves, ..."""

    permission_classes = [IsStaffRole]

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request: Request, iteration_id: int, name: str) -> FileResponse:
        iteration = iteration_by_id(iteration_id=iteration_id)
        path = iteration_plot_path(iteration=iteration, name=name)
        return FileResponse(path.open("rb"), content_type="image/png", filename=name)


class BatchTemplateOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = BatchTemplate
        fields = [
            "id",
            "name",
            "focus",
            "size",
            "overlap",
            "temperatures",
            "max_new_tokens",
            "guidelines",
            "prompt_source",
            "prompt_tags",
            "annotator_quota",
            "held_out_size",
            "active",
            "created_at",
        ]


class BatchTemplateListCreateApi(APIView):
    """Weekly batch templates (admins): the weekly job makes one batch per active template and ISO week."""

    permission_classes = [IsBatchAdmin]

    @extend_schema_serializer(component_name="BatchTemplateCreateInput")
    class InputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=100)
        focus = serializers.ChoiceField(choices=Focus.choices, default=Focus.HELPFULNESS)
        size = serializers.IntegerField(min_value=1)
        overlap = serializers.IntegerField(min_value=1, default=1)
        temperatures = serializers.ListField(child=serializers.FloatField(), required=False, default=list)
        max_new_tokens = serializers.IntegerField(min_value=1, default=512)
        guidelines = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)
        prompt_source = serializers.ChoiceField(
            choices=BatchTemplate.PromptSource.choices, default=BatchTemplate.PromptSource.POOL
        )
        prompt_tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)
        annotator_quota = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
        held_out_size = serializers.IntegerField(min_value=0, default=1000)
        active = serializers.BooleanField(default=True)

    @extend_schema(responses=BatchTemplateOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(BatchTemplateOutputSerializer(template_list(), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: BatchTemplateOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        template, created = template_create(created_by=authenticated_user(request), **data.validated_data)
        code = created_or_ok(created)
        return Response(BatchTemplateOutputSerializer(template).data, status=code)


class BatchTemplateTemperaturesFromScanApi(APIView):
    """Set a template's temperatures to a temperature scan's best ones, from next week's batch on (admins). Without
    `scan`: the newest finished scan of the newest policy checkpoint, the one the weekly batch samples from."""

    permission_classes = [IsBatchAdmin]

    @extend_schema_serializer(component_name="TemplateTemperaturesFromScanInput")
    class InputSerializer(StrictSerializer):
        scan = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
        count = serializers.IntegerField(
            required=False, default=TEMPLATE_TEMPERATURES, min_value=1, help_text="How many of the best temperatures."
        )

    @extend_schema(request=InputSerializer, responses=BatchTemplateOutputSerializer)
    def post(self, request: Request, template_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        template = template_temperatures_from_scan(
            template=template_by_id(template_id=template_id),
            scan=temperature_scan_by_id(scan_id=values["scan"]) if values["scan"] else None,
            count=values["count"],
            actor=authenticated_user(request),
        )
        return Response(BatchTemplateOutputSerializer(template).data)
