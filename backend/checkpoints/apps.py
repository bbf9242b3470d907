from django.apps import AppConfig


class CheckpointsConfig(AppConfig):
    name = "backend.checkpoints"
    label = "checkpoints"
