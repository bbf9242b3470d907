from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "backend.batches"
    label = "batches"
