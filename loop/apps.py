from django.apps import AppConfig


class LoopConfig(AppConfig):
    """The closed RLHF loop: iterations (export, reward models, policy training), weekly batch templates."""

    name = "loop"
    label = "loop"
