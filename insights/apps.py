from django.apps import AppConfig


class InsightsConfig(AppConfig):
    """Dashboards: batch progress and agreement, annotator quality and drift, model leaderboards."""

    name = "insights"
    label = "insights"

    def ready(self) -> None:
        from insights.services import response_scores_store
        from sampler.signals import responses_scored

        responses_scored.connect(response_scores_store, dispatch_uid="insights-store-response-scores")
