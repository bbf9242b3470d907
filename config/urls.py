"""URL configuration: the admin, `/healthz`, and the API under /api/v1/ with its schema and docs."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from backend.accounts.apis import MeApi, TokenApi
from backend.audit.apis import AuditEventListApi
from backend.batches import annotation_apis, gold_apis, prompt_apis
from backend.batches import apis as batch_apis
from backend.health import healthz
from exports import apis as export_apis
from insights import apis as insight_apis
from loop import apis as loop_apis
from loop import checkpoint_apis
from sampler import apis as sampler_apis

api_v1 = [
    path("auth/token/", TokenApi.as_view(), name="auth-token"),
    path("me/", MeApi.as_view(), name="me"),
    path("batches/", batch_apis.BatchListCreateApi.as_view(), name="batch-list"),
    path("batches/<int:batch_id>/", batch_apis.BatchDetailApi.as_view(), name="batch-detail"),
    path("batches/<int:batch_id>/open/", batch_apis.BatchOpenApi.as_view(), name="batch-open"),
    path("batches/<int:batch_id>/close/", batch_apis.BatchCloseApi.as_view(), name="batch-close"),
    path(
        "batches/<int:batch_id>/comparisons/",
        batch_apis.BatchComparisonListCreateApi.as_view(),
        name="batch-comparisons",
    ),
    path("batches/<int:batch_id>/next/", annotation_apis.AssignmentNextApi.as_view(), name="assignment-next"),
    path("batches/<int:batch_id>/sample/", sampler_apis.BatchSampleApi.as_view(), name="batch-sample"),
    path("batches/<int:batch_id>/live-pairs/", sampler_apis.LivePairCreateApi.as_view(), name="live-pair-create"),
    path("live-pairs/<int:live_pair_id>/", sampler_apis.LivePairDetailApi.as_view(), name="live-pair-detail"),
    path("assignments/<int:assignment_id>/", annotation_apis.AssignmentDetailApi.as_view(), name="assignment-detail"),
    path(
        "assignments/<int:assignment_id>/submit/",
        annotation_apis.AssignmentSubmitApi.as_view(),
        name="assignment-submit",
    ),
    path("assignments/<int:assignment_id>/skip/", annotation_apis.AssignmentSkipApi.as_view(), name="assignment-skip"),
    path("annotations/", annotation_apis.AnnotationListApi.as_view(), name="annotation-list"),
    path(
        "annotations/<int:annotation_id>/continue/",
        prompt_apis.AnnotationContinueApi.as_view(),
        name="annotation-continue",
    ),
    path("prompts/", prompt_apis.PromptListCreateApi.as_view(), name="prompt-list"),
    path("checkpoints/", checkpoint_apis.CheckpointListCreateApi.as_view(), name="checkpoint-list"),
    path("checkpoints/<int:checkpoint_id>/", checkpoint_apis.CheckpointDetailApi.as_view(), name="checkpoint-detail"),
    path(
        "checkpoints/<int:checkpoint_id>/temperature-scans/",
        checkpoint_apis.CheckpointTemperatureScanListCreateApi.as_view(),
        name="checkpoint-temperature-scans",
    ),
    path(
        "temperature-scans/<int:scan_id>/", checkpoint_apis.TemperatureScanDetailApi.as_view(), name="temperature-scan"
    ),
    path(
        "temperature-scans/<int:scan_id>/plot.png",
        checkpoint_apis.TemperatureScanPlotApi.as_view(),
        name="temperature-scan-plot",
    ),
    path("batches/<int:batch_id>/statistics/", export_apis.BatchStatisticsApi.as_view(), name="batch-statistics"),
    path("batches/<int:batch_id>/gold/", gold_apis.GoldComparisonCreateApi.as_view(), name="batch-gold"),
    path("dashboards/", insight_apis.DashboardAnnotatorListApi.as_view(), name="dashboard-overview-api"),
    path("dashboards/batches/<int:batch_id>/", insight_apis.DashboardBatchApi.as_view(), name="dashboard-batch-api"),
    path(
        "dashboards/annotators/<int:annotator_id>/",
        insight_apis.DashboardAnnotatorDetailApi.as_view(),
        name="dashboard-annotator-api",
    ),
    path("dashboards/models/", insight_apis.DashboardModelsApi.as_view(), name="dashboard-models-api"),
    path("dashboards/reward-scores/", insight_apis.ResponseScoresRequestApi.as_view(), name="reward-scores"),
    path("lineage/<str:kind>/<int:node_id>/", insight_apis.LineageApi.as_view(), name="lineage-api"),
    path("exports/", export_apis.ExportListCreateApi.as_view(), name="export-list"),
    path("exports/<int:export_id>/", export_apis.ExportDetailApi.as_view(), name="export-detail"),
    path("exports/<int:export_id>/files/<str:name>", export_apis.ExportFileApi.as_view(), name="export-file"),
    path("prompts/import/", prompt_apis.PromptImportApi.as_view(), name="prompt-import"),
    path("external-preferences/import/", export_apis.PreferenceImportApi.as_view(), name="preference-import"),
    path("training-runs/", checkpoint_apis.TrainingRunListCreateApi.as_view(), name="training-run-list"),
    path("training-runs/<int:run_id>/", checkpoint_apis.TrainingRunDetailApi.as_view(), name="training-run-detail"),
    path("audit-events/", AuditEventListApi.as_view(), name="audit-event-list"),
    path("iterations/", loop_apis.IterationListCreateApi.as_view(), name="iteration-list"),
    path("iterations/<int:iteration_id>/", loop_apis.IterationDetailApi.as_view(), name="iteration-detail"),
    path("iterations/<int:iteration_id>/retry/", loop_apis.IterationRetryApi.as_view(), name="iteration-retry"),
    path("iterations/<int:iteration_id>/report/", loop_apis.IterationReportApi.as_view(), name="iteration-report"),
    path("iterations/<int:iteration_id>/plots/<str:name>", loop_apis.IterationPlotApi.as_view(), name="iteration-plot"),
    path("batch-templates/", loop_apis.BatchTemplateListCreateApi.as_view(), name="batch-template-list"),
    path(
        "batch-templates/<int:template_id>/temperatures-from-scan/",
        loop_apis.BatchTemplateTemperaturesFromScanApi.as_view(),
        name="batch-template-temperatures-from-scan",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api-auth/", include("rest_framework.urls")),
    path("dashboards/", include("insights.urls")),
    path("", include("annotator.urls")),
]

handler500 = "backend.server_errors.server_error_handler"
