from django.apps import AppConfig


class InsightsConfig(AppConfig):
    """Dashboards: batch progress and agreement, annotator quality and drift, model leaderboards."""

    name = "backend.insights"
    label = "insights"
